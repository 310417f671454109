"""``vramplan`` command line: estimate, info, models, gpus.

Exit codes follow grep: 0 fits, 1 does not fit, 2 usage or input error (one line, no traceback;
``--debug`` shows it).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from vramplan.errors import VramplanError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Will this LLM run on my hardware? Memory, explained, per engine.")
_DEBUG = {"on": False}


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False
          ) -> None:
    _DEBUG["on"] = debug


def _parse_size(text: str | None, field: str) -> int | None:
    if text is None:
        return None
    from vramplan.units import parse_bytes

    return parse_bytes(text, field)


def _parse_ctx(text: str | None) -> int | None:
    if text is None:
        return None
    from vramplan.units import parse_tokens

    return parse_tokens(text, "--context")


@app.command()
def estimate(
    model: Annotated[str, typer.Argument(help="Catalog name/alias, HF id, or path to a "
                                              "config.json / model folder.")],
    gpu: Annotated[str | None, typer.Option(help="GPU name, fuzzy (default: H100 SXM).")] = None,
    gpus: Annotated[int | None, typer.Option(help="Number of GPUs (default: tp x pp).")] = None,
    vram: Annotated[str | None, typer.Option(help="Custom GPU memory, e.g. 24GiB or 80GB.")]
    = None,
    quant: Annotated[str | None, typer.Option(help="Quantize an unquantized model: bf16, fp8, "
                                                   "int8, awq, gptq, nf4, q4_k_m, ...")] = None,
    context: Annotated[str | None, typer.Option(help="Tokens per sequence, e.g. 8192 or 32k "
                                                     "(default: trained context, capped at "
                                                     "32k).")] = None,
    batch: Annotated[int, typer.Option(help="Concurrent sequences.")] = 1,
    kv_dtype: Annotated[str, typer.Option("--kv-dtype", help="KV cache dtype: auto, fp16, bf16, "
                                                             "fp8, q8_0, q4_0.")] = "auto",
    tp: Annotated[int | None, typer.Option(help="Tensor parallel size (default: --gpus).")]
    = None,
    pp: Annotated[int, typer.Option(help="Pipeline parallel size.")] = 1,
    engine: Annotated[str, typer.Option(help="Engine model (generic; more as they land).")]
    = "generic",
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON result.")] = False,
    explain: Annotated[bool, typer.Option(help="Show the math behind each number.")] = False,
    offline: Annotated[bool, typer.Option(help="Never contact the Hugging Face Hub.")] = False,
) -> None:
    """Estimate GPU memory for running MODEL; exit 0 if it fits, 1 if not."""
    from vramplan.api import estimate as run
    from vramplan.cli import render
    from vramplan.report import to_dict

    est = run(model, gpu=gpu, gpus=gpus, vram=_parse_size(vram, "--vram"), quant=quant,
              context=_parse_ctx(context), batch=batch, kv_dtype=kv_dtype, tp=tp, pp=pp,
              engine=engine, allow_hub=not offline)
    if as_json:
        _emit_json(to_dict(est))
    elif render.is_tty():
        render.rich_estimate(est, explain)
    else:
        print(render.plain_estimate(est, explain))
    raise typer.Exit(0 if est.fits else 1)


@app.command()
def info(
    model: Annotated[str, typer.Argument(help="Catalog name/alias, HF id, or path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    offline: Annotated[bool, typer.Option(help="Never contact the Hugging Face Hub.")] = False,
) -> None:
    """Parameters by role, active parameters, KV bytes per token, quantization found."""
    from vramplan.api import load
    from vramplan.kv import resolve_kv_dtype, summarize
    from vramplan.quant.schemes import scheme_from_config
    from vramplan.units import fmt_count

    lm = load(model, allow_hub=not offline)
    spec, inv = lm.spec, lm.inventory
    kvs = summarize(spec, resolve_kv_dtype("auto", spec))
    q = scheme_from_config(spec.quantization_config) if spec.quantization_config else None
    data = {
        "id": lm.source.model_id, "origin": lm.source.origin, "source": lm.source.source,
        "model_type": spec.model_type, "architecture": spec.architecture,
        "layers": spec.num_layers, "hidden_size": spec.hidden_size, "vocab_size": spec.vocab_size,
        "max_context_tokens": spec.max_position_embeddings,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "params_total": inv.params_total, "params_active": inv.params_active,
        "params_by_role": inv.params_by_role(), "params_mtp": inv.params_mtp,
        "buffers_total": inv.buffers_total,
        "kv_cache_bytes_per_token": kvs.bytes_per_token,
        "kv_cache_bytes_per_token_all_layers": kvs.bytes_per_token_all_layers,
        "kv_window_bytes_per_sequence": kvs.window_bytes_per_sequence,
        "kv_state_bytes_per_sequence": kvs.state_bytes_per_sequence,
        "attention_layers": {"full": kvs.full_layers, "windowed": kvs.windowed_layers,
                             "linear": kvs.linear_layers},
        "quantization": q.name if q else "none", "notes": list(spec.notes),
    }
    if as_json:
        _emit_json(data)
        return
    print(f"{data['id']}  ({data['origin']}: {data['source']})")
    print(f"  {spec.model_type} / {spec.architecture}, {spec.num_layers} layers, hidden "
          f"{spec.hidden_size}, vocab {spec.vocab_size}, context {spec.max_position_embeddings:,}")
    print(f"  params: {inv.params_total:,} ({fmt_count(inv.params_total)}), active/token "
          f"{fmt_count(inv.params_active)}")
    for role, n in inv.params_by_role().items():
        print(f"    {role:14s} {n:>18,}")
    if inv.buffers_total:
        print(f"  buffers (checkpoint, not parameters): {inv.buffers_total:,}")
    print(f"  KV cache: {kvs.bytes_per_token:,} B/token ({kvs.kv_dtype}); layers full "
          f"{kvs.full_layers}, windowed {kvs.windowed_layers}, linear {kvs.linear_layers}")
    print(f"  quantization: {data['quantization']}")
    for n in spec.notes:
        print(f"  note: {n}")


@app.command()
def models(query: Annotated[str | None, typer.Argument(help="Filter by substring.")] = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List or search the built-in model catalog."""
    from vramplan.cli.render import print_rows
    from vramplan.model.catalog import search

    rows = [{"id": e.id, "alias": e.aliases[0], "params": e.official_params.split(" ")[0],
             "source": e.source.split(" ")[0]} for e in search(query)]
    if as_json:
        _emit_json(rows)
    else:
        print_rows(rows, ["id", "alias", "params", "source"])


@app.command()
def gpus(query: Annotated[str | None, typer.Argument(help="Filter by substring.")] = None,
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List or search the hardware catalog."""
    from vramplan.cli.render import print_rows
    from vramplan.hardware.gpus import search_gpus
    from vramplan.units import fmt_bytes

    rows = [{"key": g.key, "name": g.name, "memory": fmt_bytes(g.memory_bytes),
             "reported": fmt_bytes(g.memory_reported_bytes),
             "bandwidth": f"{g.bandwidth_bytes_per_s / 1e9:.0f} GB/s",
             "bf16_tflops": g.bf16_dense_tflops, "source": g.source} for g in search_gpus(query)]
    if as_json:
        _emit_json(rows)
    else:
        print_rows(rows, ["key", "name", "memory", "reported", "bandwidth", "bf16_tflops"])


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, map errors to one line and exit codes 0/1/2."""
    _DEBUG["on"] = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rc = app(args=argv, standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except VramplanError as e:
        if _DEBUG["on"]:
            raise
        print(f"vramplan: error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # click usage errors and anything unexpected
        if e.__class__.__name__ == "Abort":
            sys.exit(130)
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # click/typer UsageError
            e.show()
            sys.exit(2)
        if _DEBUG["on"]:
            raise
        print(f"vramplan: internal error: {e.__class__.__name__}: {e} (rerun with --debug and "
              "report it)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
