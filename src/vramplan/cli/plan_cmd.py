"""``vramplan plan``, ``vramplan fit`` and ``vramplan hardware`` (issue 4).

Exit codes: 0 when something fits, 1 when nothing does, 2 on bad input (one line).
"""

from __future__ import annotations

from typing import Any

import click

from vramplan.cli.app import emit_json
from vramplan.cli.options import TOKENS, host_options


class RamType(click.ParamType[Any, Any]):
    """``128GiB``, ``64GB`` or ``auto`` (detect); sizes must be positive."""

    name = "size|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or value is None:
            return value
        text = str(value).strip()
        if text.lower() == "auto":
            return "auto"
        if text.startswith("-"):
            from vramplan.errors import InputError

            raise InputError("--ram", f"must be a positive size, got {text!r}", "e.g. --ram 64GiB")
        from vramplan.units import parse_bytes

        return parse_bytes(text, "--ram")


RAM = RamType()


def _gib(n: int | float) -> str:
    from vramplan.units import fmt_bytes

    return fmt_bytes(n)


def _rate(v: float | None, unit: str = "tok/s") -> str:
    return "?" if v is None else (f"{v:,.1f} {unit}" if v < 1000 else f"{v:,.0f} {unit}")


def _option_lines(o: Any, rank: int | None = None) -> list[str]:
    head = f"{rank}. " if rank is not None else ""
    fits = "fits" if o.fits else "DOES NOT FIT"
    lines = [f"{head}{o.engine} {o.quant_label} on {o.gpu_count} x {o.gpu_name}"
             + (f" (TP={o.tp}" + (f", PP={o.pp}" if o.pp > 1 else "") + ")" if o.tp > 1 or
                o.pp > 1 else "") + f": {fits}, {o.placement}"]
    gpus = [d for d in o.devices if d.kind == "gpu"]
    worst = max(gpus, key=lambda d: d.total_bytes) if gpus else None
    vram = (f"VRAM {_gib(worst.total_bytes)} of {_gib(worst.capacity_bytes)} per GPU"
            if worst else "no GPU")
    lines.append(f"   {vram}; host RAM {_gib(o.host_ram_bytes)}")
    ttft = "?" if o.ttft_s is None else f"{o.ttft_s:,.2f} s"
    lines.append(f"   decode ~{_rate(o.decode_tokens_per_s)}, prefill ~"
                 f"{_rate(o.prefill_tokens_per_s)}, TTFT {ttft} at {o.context_tokens:,} tokens"
                 + ("" if o.meets_min_tokens_per_s else "  (below --min-tokens-per-s)"))
    lines.append(f"   max context {o.max_context_tokens:,} tokens, max concurrency "
                 f"{o.max_concurrency}; binding: {o.binding_constraint} ({o.binding_detail})")
    lines.append(f"   $ {o.command}")
    lines += [f"   note: {n}" for n in o.notes]
    return lines


def _render_plan(res: Any) -> str:
    from vramplan.units import fmt_count

    hw = (f"{res.gpu_count or 'N'} x {res.gpu}" if res.gpu else "the GPU catalog") + (
        f" + {_gib(res.ram_bytes)} RAM" if res.ram_bytes else "")
    ctx = f"{res.context_tokens:,} tokens" if res.context_tokens else "largest that fits"
    out = [f"{res.model} ({fmt_count(res.params_total)} params, "
           f"{fmt_count(res.params_active)} active) on {hw}; context {ctx}, concurrency "
           f"{res.concurrency}", ""]
    fitting = [o for o in res.options if o.fits]
    if fitting:
        for i, o in enumerate(res.options, 1):
            out += _option_lines(o, i)
    else:
        out.append("NOTHING FITS on this hardware.")
    if res.rejected:
        out += ["", "Cannot work here:"] + [f" - {r.reason}" for r in res.rejected]
    if res.alternatives:
        out += ["", "Smallest GPU-only setups:"]
        for r in res.alternatives:
            if r.option is not None:
                o = r.option
                out.append(f" - {r.gpu_count} x {r.gpu_name}: {o.engine} {o.quant_label}, "
                           f"~{_rate(o.decode_tokens_per_s)}  $ {o.command}")
            else:
                out.append(f" - {r.gpu_name}: {r.reason}")
    if res.suggestions:
        out += ["", "Smallest changes that would help:"] + [f" - {s.detail}"
                                                              for s in res.suggestions]
    out += [""] + [f"assumption: {a}" for a in res.assumptions]
    return "\n".join(out)


@click.command("plan")
@click.argument("model")
@click.option("--gpu", default=None, help="GPU kind, fuzzy ('4090'), or 'auto' to detect "
              "(default: search the whole GPU catalog).")
@click.option("--gpus", type=int, default=None, help="Number of GPUs (default: 1 of a named --gpu; "
              "without --gpu,"
              " the fewest needed of each kind).")
@click.option("--ram", type=RAM, default=None, help="Host RAM for offload, e.g. 128GiB, or auto.")
@host_options
@click.option("--context", type=TOKENS, default=None, help="Tokens per sequence (default: the "
              "largest each option has room for, up to 32k).")
@click.option("--concurrency", type=int, default=1, show_default=True,
              help="Concurrent sequences.")
@click.option("--min-tokens-per-s", "min_tps", type=float, default=None,
              help="Decode rate each sequence must reach.")
@click.option("--engine", "engines", multiple=True, help="Only these engines (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result.")
@click.option("--offline", is_flag=True, help="Never contact the Hugging Face Hub.")
def plan_cmd(model: str, gpu: str | None, gpus: int | None, ram: Any, ram_kind: str | None,
             ram_channels: int | None, pcie_gen: int | None, context: int | None,
             concurrency: int, min_tps: float | None, engines: tuple[str, ...], as_json: bool,
             offline: bool) -> None:
    """The best ways to run MODEL on your hardware, how fast, and what else would work."""
    from vramplan import api
    from vramplan.plan.planner import plan
    from vramplan.plan.report import plan_to_dict

    if offline:
        api.load(model, allow_hub=False)  # resolve now, offline; later loads hit the cache
    res = plan(model, gpu=gpu, gpus=gpus, ram_bytes=ram, context=context,
               concurrency=concurrency, min_tokens_per_s=min_tps, engines=engines or None,
               ram_kind=ram_kind, ram_channels=ram_channels, pcie_gen=pcie_gen)
    if as_json:
        emit_json(plan_to_dict(res))
    else:
        click.echo(_render_plan(res))
    raise click.exceptions.Exit(0 if res.fits else 1)


@click.command("fit")
@click.option("--gpu", required=True, help="GPU kind, fuzzy, or 'auto' to detect.")
@click.option("--gpus", type=int, default=None, help="Number of GPUs (default 1).")
@click.option("--ram", type=RAM, default=None, help="Host RAM for offload, e.g. 64GiB, or auto.")
@host_options
@click.option("--context", type=TOKENS, default=None, help="Tokens per sequence.")
@click.option("--engine", "engines", multiple=True, help="Only these engines (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def fit_cmd(gpu: str, gpus: int | None, ram: Any, ram_kind: str | None, ram_channels: int | None,
            pcie_gen: int | None, context: int | None, engines: tuple[str, ...],
            as_json: bool) -> None:
    """Which catalog models run on this hardware, at which quantization and context, how fast."""
    from vramplan.plan.planner import fit
    from vramplan.plan.report import fit_to_dict
    from vramplan.units import fmt_count

    rows = fit(gpu=gpu, gpus=gpus, ram_bytes=ram, context=context, engines=engines or None,
               ram_kind=ram_kind, ram_channels=ram_channels, pcie_gen=pcie_gen)
    if as_json:
        emit_json(fit_to_dict(rows))
    else:
        for r in rows:
            o = r.option
            if o is None:
                click.echo(f"  no  {r.model}: {r.reason}")
            else:
                click.echo(f"  yes {r.model} ({fmt_count(r.params_total)}): {o.engine} "
                           f"{o.quant_label}, {o.context_tokens:,} ctx (max "
                           f"{o.max_context_tokens:,}), ~{_rate(o.decode_tokens_per_s)}; "
                           f"{o.placement}")
    raise click.exceptions.Exit(0 if any(r.option for r in rows) else 1)


@click.command("hardware")
@click.argument("model")
@click.option("--context", type=TOKENS, default=None, help="Tokens per sequence.")
@click.option("--concurrency", type=int, default=1, show_default=True,
              help="Concurrent sequences.")
@click.option("--gpu", "kinds", multiple=True, help="Only these GPU kinds (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def hardware_cmd(model: str, context: int | None, concurrency: int, kinds: tuple[str, ...],
                 as_json: bool) -> None:
    """Fewest GPUs of each kind that run MODEL GPU-only (4-bit or better)."""
    from vramplan import api
    from vramplan.hardware.gpus import get_gpu
    from vramplan.plan.planner import hardware
    from vramplan.plan.report import hardware_to_dict

    keys = [get_gpu(k).key for k in kinds] or None
    rows = hardware(model, context=context, concurrency=concurrency, kinds=keys)
    if as_json:
        emit_json(hardware_to_dict(api.load(model).spec.model_id, rows))
    else:
        ok = sorted((r for r in rows if r.option), key=lambda r: (r.gpu_count or 0,
                                                                   -(r.option.decode_tokens_per_s
                                                                     or 0) if r.option else 0))
        for r in ok:
            o = r.option
            assert o is not None
            click.echo(f"{r.gpu_count:>3} x {r.gpu_name:45s} {o.engine:12s} {o.quant_label:22s}"
                       f" ~{_rate(o.decode_tokens_per_s)}")
        for r in rows:
            if r.option is None:
                click.echo(f"  - {r.gpu_name}: {r.reason}")
    raise click.exceptions.Exit(0 if any(r.option for r in rows) else 1)


COMMANDS = (plan_cmd, fit_cmd, hardware_cmd)
