"""--explain: each term of the estimate, its formula with the real numbers, and its source."""

from __future__ import annotations

from functools import lru_cache

from vramplan.inventory import TensorInventory
from vramplan.kv import KvSummary, kv_cache_bytes, layer_bytes_per_token
from vramplan.model.spec import ModelSpec
from vramplan.quant.schemes import QuantizedModel
from vramplan.result import Estimate, ExplainLine
from vramplan.units import fmt_bytes, fmt_count


def _bpw(bytes_: int, params: int) -> str:
    return f"{8 * bytes_ / params:.3f}" if params else "-"


@lru_cache(maxsize=256)
def _unquantized_roles(qm: QuantizedModel) -> list[str]:
    if qm.scheme.method == "none":
        return []
    return sorted({e.group.role for e in qm.entries if e.fmt in ("bf16", "fp32", "F32", "F16")})


def explain_lines(est: Estimate, spec: ModelSpec, inv: TensorInventory, qm: QuantizedModel,
                  kvs: KvSummary) -> list[ExplainLine]:
    out: list[ExplainLine] = []
    roles = inv.params_by_role()
    role_txt = ", ".join(f"{r} {fmt_count(n)}" for r, n in roles.items() if r != "mtp")
    out.append(ExplainLine("parameters", f"Σ tensors of the inventory: {role_txt}",
                           f"{inv.params_total:,}", "config.json -> vramplan.inventory"))
    moe = [layer.mlp for layer in spec.layers if layer.mlp.kind == "moe"]
    if moe:
        m = moe[0]
        out.append(ExplainLine(
            "MoE residency",
            f"all {m.num_experts} experts of {len(moe)} MoE layers must be resident; top-{m.top_k} "
            f"per token ({fmt_count(inv.params_active)} active) changes speed, not memory",
            f"{fmt_count(inv.params_total)} resident", "router picks experts per token"))
    if inv.params_mtp:
        out.append(ExplainLine("MTP layers", "next-token-prediction weights in the checkpoint, "
                               "not loaded for plain decoding", fmt_count(inv.params_mtp)))
    # weights by format
    params_fmt = qm.params_by_format()
    for fmt, b in sorted(qm.bytes_by_format().items(), key=lambda kv: -kv[1]):
        n = params_fmt[fmt]
        out.append(ExplainLine(f"weights [{fmt}]", f"{fmt_count(n)} params x {_bpw(b, n)} bits "
                               f"/ 8", fmt_bytes(b), "vramplan.quant.schemes"))
    unq = _unquantized_roles(qm)
    if unq:
        out.append(ExplainLine("kept unquantized", ", ".join(unq), "",
                               "embeddings, lm_head, norms and routers stay in the model dtype"))
    out.append(ExplainLine("weights total", f"{qm.scheme.name} ({qm.scheme.source})",
                           f"{fmt_bytes(qm.weights_bytes)} = {qm.weights_bytes / 1e9:.2f} GB"))
    # KV per token
    attn = next((la.attention for la in spec.layers
                 if la.attention.kind not in ("linear", "none")), None)
    if attn is not None:
        per_layer = layer_bytes_per_token(attn, est.kv_dtype)
        if attn.kind == "mla":
            f = (f"(kv_lora_rank {attn.kv_lora_rank} + rope {attn.qk_rope_head_dim}) x "
                 f"{kvs.full_layers} layers x {est.kv_dtype}: MLA caches one latent, no x2 "
                 "for K and V")
        else:
            n_layers = kvs.full_layers
            f = (f"2 (K,V) x {attn.num_kv_heads} KV heads x {attn.head_dim} head_dim x "
                 f"{est.kv_dtype} x {n_layers} full-attention layers ({per_layer:,} B/layer)")
            if attn.num_kv_heads < attn.num_heads:
                mha = per_layer * attn.num_heads // attn.num_kv_heads * n_layers
                f += (f"; GQA: {attn.num_kv_heads} KV heads, not {attn.num_heads}: counting all "
                      f"{attn.num_heads} heads would give {mha:,} B/token, "
                      f"{attn.num_heads // attn.num_kv_heads}x too much")
        out.append(ExplainLine("KV bytes/token", f, f"{kvs.bytes_per_token:,} B",
                               "vllm v1/kv_cache_interface.py page_size_bytes"))
    if kvs.windowed_layers:
        out.append(ExplainLine("sliding-window layers", f"{kvs.windowed_layers} layers hold at "
                               "most their window of tokens per sequence",
                               fmt_bytes(kvs.window_bytes_per_sequence) + " per sequence"))
    if kvs.linear_layers:
        out.append(ExplainLine("recurrent-state layers", f"{kvs.linear_layers} Mamba / "
                               "linear-attention layers keep a constant conv + SSM state per "
                               "sequence", fmt_bytes(est.kv_state_bytes_per_sequence)
                               + " per sequence"))
    kv_total = sum(d.kv_cache_bytes for d in est.devices)
    pool_tokens = est.engine_figures.get("kv_cache_tokens") or est.engine_figures.get(
        "kv_pool_tokens")
    if pool_tokens:
        conc = est.engine_figures.get("max_concurrency")
        f = (f"{est.engine} preallocates what its budget leaves after weights, activations and "
             f"graphs: {int(pool_tokens):,} tokens")
        if conc:
            f += f", {conc}x requests of {est.context_tokens:,} tokens"
        out.append(ExplainLine("KV cache", f, fmt_bytes(kv_total), est.engine))
    else:
        needed = kv_cache_bytes(spec, est.context_tokens, est.batch, est.kv_dtype)
        value = fmt_bytes(kv_total) if kv_total else \
            f"{fmt_bytes(needed)} needed; none allocated (start-up fails first)"
        out.append(ExplainLine("KV cache", f"{kvs.bytes_per_token:,} B/token x "
                               f"{est.context_tokens:,} tokens x {est.batch} seq (+ windows/"
                               f"states), over {est.tp} TP ranks", value))
    from vramplan.engines.multimodal import explain_lines as multimodal_lines

    out += multimodal_lines(est.engine_figures)
    for d in est.devices[:8]:
        parts = " + ".join(f"{c.name} {fmt_bytes(c.bytes)}" for c in d.components)
        verdict = "fits" if d.fits else "DOES NOT FIT"
        out.append(ExplainLine(f"{d.name} ({d.label})", parts,
                               f"{fmt_bytes(d.total_bytes)} of {fmt_bytes(d.capacity_bytes)}: "
                               f"{verdict}"))
    return out
