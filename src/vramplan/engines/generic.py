"""Generic engine: weights + KV cache + a labelled activation estimate + CUDA context.

Used when no engine is named and as the baseline other engine models refine. It preallocates
nothing: the KV cache is exactly ``context x batch``. Activation and overhead terms are generic
estimates (ASSUMPTION-marked below), never zero.
"""

from __future__ import annotations

from vramplan.engines.base import EngineResult, Setup, register_engine
from vramplan.kv import kv_cache_bytes
from vramplan.model.spec import ModelSpec
from vramplan.result import Component, DeviceEstimate
from vramplan.units import MIB, fmt_bytes

# ASSUMPTION: CUDA context + cuBLAS workspace per GPU process; Ollama reserves 457 MiB per CUDA
# GPU for the same thing (ollama/ollama ml/device.go DeviceInfo.MinimumMemory).
CUDA_CONTEXT_BYTES = 457 * MIB
# ASSUMPTION: NCCL communicators + custom all-reduce buffers when tp*pp > 1; vLLM's "non-torch"
# memory measured 0.13 GiB at TP=1 vs 0.55 GiB at TP=2 on H100 (shared/research/engines.md §1).
NCCL_BYTES = 420 * MIB
# ASSUMPTION: prefill processed in chunks of at most this many tokens (vLLM's default
# max_num_batched_tokens on <70 GiB GPUs is 2048; transformers prefills the whole prompt).
PREFILL_CHUNK_TOKENS = 2048


def ffn_width_per_token(spec: ModelSpec, tp: int) -> int:
    """Widest per-token MLP intermediate on one rank: dense n_ff, or top_k*n_ff_exp + shared."""
    w = 0
    for layer in spec.layers:
        m = layer.mlp
        if m.kind == "moe":
            w = max(w, m.top_k * m.expert_intermediate_size + m.shared_intermediate_size)
        else:
            w = max(w, m.intermediate_size)
    return max(1, w // tp)


def activation_peak_bytes(spec: ModelSpec, tokens: int, sequences: int, tp: int) -> int:
    """Transient peak of one forward over ``tokens`` tokens plus the sampler's logits.

    tokens * (2*hidden + 2*ffn/tp + qkv_width/tp) * 2 B   (residual, normed input, gate/up
    outputs, q/k/v) + sequences * vocab/tp * 4 B * 2 (fp32 logits and the softmax copy).
    ASSUMPTION: a generic transformer forward with fused attention (no T^2 score matrix).
    """
    a = spec.layers[0].attention
    qkv = (a.num_heads + 2 * a.num_kv_heads) * a.head_dim
    per_token = 2 * spec.hidden_size + 2 * ffn_width_per_token(spec, tp) + qkv // tp
    return tokens * per_token * 2 + sequences * (spec.vocab_size // tp) * 4 * 2


class GenericEngine:
    name = "generic"
    version = "1"
    tensor_parallel = True

    def estimate(self, setup: Setup) -> EngineResult:
        qm, wl, par = setup.model, setup.workload, setup.parallel
        spec = qm.inventory.spec
        chunk = min(wl.context_tokens * wl.batch, PREFILL_CHUNK_TOKENS)
        act = activation_peak_bytes(spec, chunk, wl.batch, par.tp)
        devices = []
        for shard in setup.shards:
            kv = kv_cache_bytes(spec, wl.context_tokens, wl.batch, wl.kv_dtype, par.tp,
                                shard.layers)
            over = [Component("cuda_context", CUDA_CONTEXT_BYTES, "457 MiB per GPU process",
                              "ollama ml/device.go MinimumMemory (ASSUMPTION)", "overhead")]
            if par.devices > 1:
                over.append(Component("nccl", NCCL_BYTES, "420 MiB with tp*pp > 1",
                                      "vLLM non-torch TP=2 vs TP=1 (ASSUMPTION)", "overhead"))
            comps = (
                Component("weights", shard.weights_bytes,
                          f"layers {shard.layers.start}-{shard.layers.stop - 1}, 1/{par.tp} of "
                          "split tensors", "vramplan.placement", "weights"),
                Component("kv_cache", kv, f"{wl.context_tokens} tokens x {wl.batch} seq, "
                          f"{wl.kv_dtype}", "vramplan.kv", "kv_cache"),
                Component("activations", act, f"prefill chunk {chunk} tokens + logits "
                          f"{wl.batch} x {spec.vocab_size // par.tp} fp32 (generic estimate)",
                          "vramplan.engines.generic (ASSUMPTION)", "activation"),
                *over,
            )
            for r in range(par.tp):
                idx = shard.stage * par.tp + r
                devices.append(DeviceEstimate(f"GPU{idx}", "gpu", setup.gpu.name,
                                              min(setup.gpu.memory_reported_bytes,
                                                  setup.gpu.usable_bytes), comps))
        assumptions = (
            f"generic engine: KV cache sized exactly for {wl.context_tokens} tokens x {wl.batch} "
            "sequences (no preallocation)",
            f"activations: generic estimate for a {chunk}-token prefill chunk "
            f"({fmt_bytes(act)} per GPU)",
            "overhead: CUDA context 457 MiB per GPU" + (" + NCCL 420 MiB" if par.devices > 1
                                                         else ""),
        )
        return EngineResult(devices=tuple(devices), host_ram_bytes=0, figures={},
                            assumptions=assumptions, command="")


register_engine("generic", lambda version: GenericEngine())
