"""``vramplan estimate`` and ``vramplan info``."""

from __future__ import annotations

from typing import Any

import click

from vramplan.cli.app import emit_json
from vramplan.cli.options import SIZE, TOKENS, collect_engine_options, engine_options, host_options


@click.command()
@click.argument("model")
@click.option("--gpu", default=None, help="GPU name, fuzzy, e.g. '4090', 'h100 sxm' "
              "(default: H100 SXM).")
@click.option("--gpus", type=int, default=None, help="Number of GPUs (default: tp x pp).")
@click.option("--vram", type=SIZE, default=None, help="Custom GPU memory, e.g. 24GiB or 80GB.")
@click.option("--quant", default=None, help="Quantize an unquantized model: bf16, fp8, "
              "fp8-block, int8, awq, gptq, gptq-8bit, nf4, nf4-dq, bnb-int8, mxfp4, q4_k_m, "
              "q8_0, ... (a quantized checkpoint's own config wins).")
@click.option("--context", type=TOKENS, default=None, help="Tokens per sequence, e.g. 8192 or 32k "
              "(default: trained context capped at 32k, or the engine's own default).")
@click.option("--batch", type=int, default=1, show_default=True, help="Concurrent sequences.")
@click.option("--kv-dtype", default="auto", show_default=True,
              help="KV cache dtype: auto, fp16, bf16, fp8, q8_0, q4_0.")
@click.option("--tp", type=int, default=None, help="Tensor parallel size (default: --gpus / pp).")
@click.option("--pp", type=int, default=1, show_default=True, help="Pipeline parallel size.")
@click.option("--engine", default="auto", show_default=True,
              help="Engine model, optionally versioned: vllm, vllm==0.10.2, llamacpp, ollama, "
              "sglang, transformers, generic (auto: vLLM for safetensors, llama.cpp for GGUF).")
@click.option("--ram", type=SIZE, default=None, help="Host RAM, e.g. 128GiB (for offload).")
@host_options
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result.")
@click.option("--explain", is_flag=True, help="Show the math behind each number.")
@click.option("--offline", is_flag=True, help="Never contact the Hugging Face Hub.")
@engine_options
def estimate(model: str, gpu: str | None, gpus: int | None, vram: int | None, quant: str | None,
             context: int | None, batch: int, kv_dtype: str, tp: int | None, pp: int,
             engine: str, ram: int | None, ram_kind: str | None, ram_channels: int | None,
             pcie_gen: int | None, as_json: bool, explain: bool, offline: bool,
             **kwargs: Any) -> None:
    """Estimate memory for running MODEL; exit 0 if it fits, 1 if not, 2 on bad input."""
    from vramplan.api import estimate as run
    from vramplan.cli import render
    from vramplan.report import to_dict

    opts = collect_engine_options(kwargs)
    est = run(model, gpu=gpu, gpus=gpus, vram=vram, quant=quant, context=context, batch=batch,
              kv_dtype=kv_dtype, tp=tp, pp=pp, ep=bool(opts.get("enable_expert_parallel")),
              engine=engine, engine_options=opts, allow_hub=not offline, ram=ram,
              ram_kind=ram_kind, ram_channels=ram_channels, pcie_gen=pcie_gen)
    if as_json:
        emit_json(to_dict(est))
    elif render.is_tty():
        render.rich_estimate(est, explain)
    else:
        click.echo(render.plain_estimate(est, explain))
    raise click.exceptions.Exit(0 if est.fits else 1)


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--offline", is_flag=True, help="Never contact the Hugging Face Hub.")
def info(model: str, as_json: bool, offline: bool) -> None:
    """Parameters by role, active parameters, KV bytes per token, quantization found."""
    from vramplan.api import model_info
    from vramplan.units import fmt_count

    data = model_info(model, allow_hub=not offline)
    if as_json:
        emit_json(data)
        return
    click.echo(f"{data['id']}  ({data['origin']}: {data['source']})")
    click.echo(f"  {data['model_type']} / {data['architecture']}, {data['layers']} layers, hidden "
               f"{data['hidden_size']}, vocab {data['vocab_size']}, context "
               f"{data['max_context_tokens']:,}")
    click.echo(f"  params: {data['params_total']:,} ({fmt_count(data['params_total'])}), "
               f"active/token {fmt_count(data['params_active'])}")
    for role, n in data["params_by_role"].items():
        click.echo(f"    {role:14s} {n:>18,}")
    if data["buffers_total"]:
        click.echo(f"  buffers (stored in the checkpoint, not parameters): "
                   f"{data['buffers_total']:,}")
    a = data["attention_layers"]
    click.echo(f"  KV cache: {data['kv_cache_bytes_per_token']:,} B/token at 16-bit; layers: "
               f"full {a['full']}, windowed {a['windowed']}, linear {a['linear']}")
    if data["kv_window_bytes_per_sequence"]:
        click.echo(f"    + {data['kv_window_bytes_per_sequence']:,} B per sequence in windowed "
                   "layers (capped at the window)")
    if data["kv_state_bytes_per_sequence"]:
        click.echo(f"    + {data['kv_state_bytes_per_sequence']:,} B per sequence of "
                   "linear-attention state")
    for t in data.get("towers", []):
        item = "image" if t["kind"] == "vision" else "clip"
        cost = f"{t['tokens_per_item']:,} context tokens per {item}" if t["tokens_per_item"] \
            else "tokens per item not stated"
        click.echo(f"  {t['kind']} tower: {t['model_type']}, {t['params']:,} params; {cost}")
    click.echo(f"  quantization: {data['quantization']}")
    for n in data["notes"]:
        click.echo(f"  note: {n}")


COMMANDS = (estimate, info)
