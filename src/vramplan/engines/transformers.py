"""Hugging Face transformers ``generate()`` with ``device_map="auto"``: weights + a growing cache.

Nothing is preallocated and nothing reserves room for the cache. Per GPU the peak is
  weights (accelerate placement) + DynamicCache (context x batch, layers on that GPU)
  + max(prefill transient, decode transient) + CUDA context.
Prefill transient (one decoder layer, b sequences x t prompt tokens, d = activation bytes):
  residual b*t*h*(2d + 4 fp32 norm) + max(attention, MLP)
  attention: q/k/v + RoPE copies + output; eager adds scores b*H*t*t*(d + 4) (softmax in fp32)
  MLP: gate, up and their product live together: 3 * b*t*n_ff*d (MoE: routed share + shared)
  logits: generate() sets logits_to_keep=1 -> [b, 1, V] (+ fp32 copy); before v4.45 the full
  [b, t, V] logits were computed and upcast to fp32.
Decode transient: DynamicCache.update concatenates, so one layer's K/V exists twice; before
v4.36 the tuple cache of the previous step stayed referenced, duplicating the whole cache.
Placement (accelerate infer_auto_device_map via transformers' get_balanced_memory): GPUs are
filled in module order, a decoder layer is never split, the largest layer's size is kept free on
GPU 0 (and the CPU), balanced mode caps every GPU but the last at size/n + 1.25 * layer, one GPU
gets 90 % of its free memory, bitsandbytes scales every budget by 0.9; what does not fit goes to
CPU RAM (then disk) and runs on GPU 0.

Sources (file@commit):
  huggingface/transformers src/transformers/generation/utils.py@000034a4 (logits_to_keep = 1,
    fp32 copy of next-token logits); cache_utils.py@004999d9 (DynamicLayer.update torch.cat,
    DynamicSlidingWindowLayer keeps sliding_window - 1 tokens); integrations/accelerate.py@ca9ec50c
    (get_balanced_memory, _get_device_map); models/llama/modeling_llama.py@5dd4a635 (eager
    attention: matmul in model dtype, softmax in fp32, repeat_kv); quantizers/quantizer_bnb_4bit.py
    @009ba7ca (adjust_max_memory * 0.90, CPU-offload ValueError)
  huggingface/accelerate src/accelerate/utils/modeling.py@16cb6eb8 (infer_auto_device_map,
    get_max_layer_size, main_devices = [gpu0, "cpu"])
Older-version behaviour (v4.32-v4.44) is restated from ../shared/research/engines.md section 6
and the measured optimum GPTQ benchmark (secondary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vramplan.engines.base import EngineResult, Setup, register_engine
from vramplan.engines.generic import CUDA_CONTEXT_BYTES
from vramplan.engines.multimodal import transformers_auto_class as auto_cls
from vramplan.errors import InputError
from vramplan.kv import compressed_bytes, has_state, linear_state_bytes, mamba_state_elems
from vramplan.model.spec import AttentionSpec, LayerSpec, ModelSpec
from vramplan.quant.schemes import QuantizedModel
from vramplan.result import Component, DeviceEstimate
from vramplan.units import fmt_bytes

SRC_MAP = "accelerate utils/modeling.py@16cb6eb8 infer_auto_device_map; transformers " \
          "integrations/accelerate.py@ca9ec50c get_balanced_memory"
SRC_GEN = "transformers generation/utils.py@000034a4; cache_utils.py@004999d9"
QUANT_LINEAR = ("gptq", "awq", "bnb-nf4", "bnb-fp4", "bnb-int8")


# SOURCE: transformers modeling_utils _get_device_map: the string strategies it accepts.
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")

@dataclass(frozen=True, slots=True)
class HfProfile:
    version: str
    attn: str  # default attn_implementation
    last_token_logits: bool  # generate() passes logits_to_keep=1 (v4.45+)
    whole_cache_copy: bool  # tuple past_key_values: the previous step's cache stays alive (< v4.36)
    sliding_cap: bool  # DynamicSlidingWindowLayer keeps window - 1 tokens
    rotary_buffers: bool  # per-layer cos/sin buffers [max_pos, head_dim] (v4.32 Llama)
    mask_4d: bool  # a [b, 1, t, t] additive mask is materialized


PROFILES = {
    "4.33": HfProfile("4.33", "eager", False, True, False, True, True),
    "4.44": HfProfile("4.44", "sdpa", False, False, False, False, False),
    "4.57": HfProfile("4.57", "sdpa", True, False, True, False, False),
}


def module_sizes(qm: QuantizedModel) -> list[tuple[str, int]]:
    """Top-level placement units in module order: embedding, decoder layers (never split),
    final norm, lm_head (absent when tied: it shares the embedding's device)."""
    spec = qm.inventory.spec
    by: dict[str, int] = {}
    for e in qm.entries:
        g = e.group
        key = (f"{spec.prefix}.layers.{g.layer}" if g.layer is not None else "vision"
               if g.role in ("vision", "audio") else f"{spec.prefix}.embed_tokens" if g.role == "embedding"
               else spec.lm_head_name if g.role == "lm_head" else f"{spec.prefix}.norm")
        by[key] = by.get(key, 0) + e.bytes
    order = ["vision", f"{spec.prefix}.embed_tokens",
             *(f"{spec.prefix}.layers.{i}" for i in range(spec.num_layers)),
             f"{spec.prefix}.norm", spec.lm_head_name]
    return [(k, by[k]) for k in order if k in by]


def balanced_budgets(sizes: list[tuple[str, int]], free: int, n_gpus: int, leaves: int,
                     strategy: str, quant_scale: float) -> list[int]:
    """max_memory per GPU: one GPU -> 90 % of free; several ('auto'/'balanced') -> every GPU but
    the last capped at total/n + int(1.25 * max(layer, mean leaf)); 'sequential' -> free."""
    total = sum(s for _, s in sizes)
    if strategy == "sequential":
        budgets = [free] * n_gpus
    elif n_gpus == 1:
        budgets = [int(free * 0.9)]
    else:
        layer = next((s for n, s in sizes if ".layers." in n), 0)
        buffer = int(1.25 * max(layer, total // max(leaves, 1)))
        budgets = [min(total // n_gpus + buffer, free)] * (n_gpus - 1) + [free]
    return [int(b * quant_scale) for b in budgets]


def place_modules(sizes: list[tuple[str, int]], budgets: list[int], cpu_budget: int | None
                  ) -> dict[str, str]:
    """accelerate's loop: fill devices in order; on GPU 0 and the CPU keep the largest remaining
    layer's size free; a module that does not fit moves on to the next device (CPU, then disk)."""
    devices = [str(i) for i in range(len(budgets))] + ["cpu", "disk"]
    caps = {**{str(i): b for i, b in enumerate(budgets)}, "cpu": cpu_budget}
    used = dict.fromkeys(devices, 0)
    todo = list(sizes)
    max_size = max((s for _, s in todo), default=0)
    max_names = [n for n, s in todo if s == max_size]
    out: dict[str, str] = {}
    cur = 0
    while todo:
        name, size = todo.pop(0)
        max_names = [n for n in max_names if n != name]
        if not max_names:
            max_size = max((s for _, s in todo), default=0)
            max_names = [n for n, s in todo if s == max_size]
        dev = devices[cur]
        cap = caps.get(dev)
        if dev == "disk" or (dev == "cpu" and cap is None):
            out[name] = dev
            continue
        assert cap is not None
        if dev in ("0", "cpu"):
            cap -= max_size
        if used[dev] + size <= cap:
            used[dev] += size
            out[name] = dev
            continue
        cur += 1
        todo.insert(0, (name, size))
    return out


def cache_bytes_per_token(a: AttentionSpec, d: int) -> int:
    """K+V bytes per token of one layer in transformers: MLA is cached decompressed per head
    (ASSUMPTION: k = qk_nope + qk_rope, v = v_head_dim per head, as DeepseekV3Attention builds)."""
    if a.kind == "mla":
        return a.num_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim) * d
    if a.kind in ("linear", "none"):
        return 0
    return a.num_kv_heads * (a.head_dim + a.v_head_dim) * d


def hf_state_bytes(a: AttentionSpec, d: int) -> int:
    """Recurrent state one sequence keeps in one layer of transformers' cache.

    Mamba / short conv (cache_utils.py LinearAttentionLayer.lazy_initialization, v5.25.0): the
    conv state keeps the full ``conv_kernel`` columns (not kernel - 1) x conv channels in the
    activation dtype; the SSM state is a copy of the kernel's final state. ASSUMPTION: fp32
    for Mamba-2 (the chunked scan runs in float, modeling_nemotron_h.py torch path), the model
    dtype for Mamba-1 (modeling_jamba.py slow path builds it in the input dtype). Gated
    DeltaNet: ``kv.linear_state_bytes`` in the model dtype. 0 for layers without state.
    """
    if a.mamba is not None:
        conv, ssm = mamba_state_elems(a.mamba)
        conv_full = conv // max(1, a.mamba.conv_kernel - 1) * a.mamba.conv_kernel
        return conv_full * d + ssm * (4 if a.mamba.kind == "mamba2" else d)
    if a.linear is not None:
        return linear_state_bytes(a, "bf16" if d == 2 else "fp32")
    return 0


def layer_cache(layer: LayerSpec, tokens: int, batch: int, d: int, cap: bool) -> int:
    a = layer.attention
    state = hf_state_bytes(a, d) * batch if has_state(a) else 0
    if a.kind in ("linear", "none"):
        return state
    if a.kind == "cross":  # MllamaCrossAttention caches the encoder tokens' K/V
        return cache_bytes_per_token(a, d) * a.encoder_tokens * batch
    t = min(tokens, a.window_tokens - 1) if cap and a.window_tokens and a.kind in (
        "sliding", "chunked") else tokens
    comp = compressed_bytes(a, "fp32" if d == 4 else "bf16", tokens) * batch  # DeepSeek-V4
    return cache_bytes_per_token(a, d) * t * batch + state + comp


def layer_transient(spec: ModelSpec, layer: LayerSpec, b: int, t: int, d: int, attn: str,
                    p: HfProfile) -> int:
    """Prefill transient of one decoder layer (module docstring formula)."""
    a, m, h = layer.attention, layer.mlp, spec.hidden_size
    heads, kvh = a.num_heads, (a.num_heads if a.kind == "mla" else a.num_kv_heads)
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim if a.kind == "mla" else a.head_dim
    q, k, v = b * t * heads * qk * d, b * t * kvh * qk * d, b * t * kvh * a.v_head_dim * d
    attn_b = 2 * q + 2 * k + v + b * t * heads * a.v_head_dim * d
    if kvh < heads and (attn == "eager" or p.version == "4.44"):  # repeat_kv expands K and V
        attn_b += b * t * heads * (qk + a.v_head_dim) * d
    if attn == "eager":
        attn_b += b * heads * t * t * (d + 4)
    if a.kind == "none":  # Nemotron-H MLP/MoE-only block
        attn_b = 0
    elif a.kind == "linear" and a.mamba is not None:
        # ASSUMPTION: in_proj output (z, xBC, dt) and the conv output live together
        mb = a.mamba
        attn_b = 2 * b * t * (2 * mb.d_inner + 2 * mb.n_groups * mb.d_state + mb.num_heads) * d
    if m.kind == "moe":
        share = min(1.0, 2 * m.top_k / max(m.num_experts, 1))  # ASSUMPTION: 2x routing imbalance
        width = int(share * m.expert_intermediate_size) + m.shared_intermediate_size
    else:
        width = m.intermediate_size
    return b * t * h * (2 * d + 4) + max(attn_b, 3 * b * t * width * d)


def logits_bytes(spec: ModelSpec, b: int, t: int, d: int, p: HfProfile) -> int:
    if p.last_token_logits:
        return b * spec.vocab_size * (d + 8) + b * t * spec.hidden_size * d
    return b * t * spec.vocab_size * (d + 4) + b * t * spec.hidden_size * d


class TransformersEngine:
    tensor_parallel = False  # device_map="auto" spreads whole layers over the GPUs
    name = "transformers"

    def __init__(self, profile: HfProfile, requested: str | None = None) -> None:
        self.profile = profile
        self.version = requested or profile.version

    def estimate(self, setup: Setup) -> EngineResult:
        qm, wl, gpu, p = setup.model, setup.workload, setup.gpu, self.profile
        spec, scheme, opts = qm.inventory.spec, qm.scheme, wl.options
        d = 4 if spec.torch_dtype == "float32" and scheme.method == "none" else 2
        notes = []
        if scheme.method == "gguf":
            raise InputError("--quant", "transformers dequantizes GGUF files when loading them "
                             "(gguf_file=...), so GGUF weights are not kept quantized",
                             "use --engine llamacpp for GGUF, or the safetensors checkpoint")
        if wl.kv_dtype.startswith("fp8"):
            notes.append(f"DynamicCache keeps K/V in the model dtype: {wl.kv_dtype} KV ignored")
        elif wl.kv_dtype not in ("bf16", "fp16", "fp32"):
            raise InputError("--kv-dtype", f"transformers' DynamicCache keeps K/V in the model "
                             f"dtype, not {wl.kv_dtype}", "use --kv-dtype auto")
        attn = str(opts.get("attn_implementation") or p.attn)
        if attn not in ("eager", "sdpa", "flash_attention_2"):
            raise InputError("--attn-implementation", f"unknown {attn!r}",
                             "use eager, sdpa or flash_attention_2")
        strategy = str(opts.get("device_map") or "auto")
        if strategy not in DEVICE_MAP_STRATEGIES:
            raise InputError("--device-map", f"{strategy!r} is not a device_map strategy",
                             f"use one of {', '.join(DEVICE_MAP_STRATEGIES)}")
        ctx, b = wl.context_tokens, wl.batch
        prompt = min(int(opts.get("prompt_tokens") or ctx), ctx)
        decode = ctx - prompt >= 2
        n = setup.gpu_count
        total = min(gpu.memory_reported_bytes, gpu.usable_bytes)
        free = total - CUDA_CONTEXT_BYTES
        sizes = module_sizes(qm)
        leaves = sum(e.group.count for e in qm.entries if not e.group.name.endswith(".bias"))
        bnb = scheme.method.startswith("bnb")
        budgets = balanced_budgets(sizes, free, n, leaves, strategy, 0.9 if bnb else 1.0)
        cpu = int(setup.host_ram_bytes * (0.9 if bnb else 1.0)) if setup.host_ram_bytes else None
        dmap = place_modules(sizes, budgets, cpu)
        size_of = dict(sizes)
        head = spec.lm_head_name if spec.lm_head_name in dmap else f"{spec.prefix}.embed_tokens"
        offloaded = [k for k, v in dmap.items() if v in ("cpu", "disk")]
        # layers run on their GPU; offloaded layers run on GPU 0 (accelerate's execution device)
        run_on = {i: int(v) if v.isdigit() else 0 for i, v in (
            (int(k.rsplit(".", 1)[1]), v) for k, v in dmap.items() if ".layers." in k)}
        quant_ws = max((e.group.shape[0] * e.group.shape[1] * 2 for e in qm.entries
                        if e.group.linear and e.fmt.startswith(QUANT_LINEAR)
                        and len(e.group.shape) == 2), default=0)
        devices, peaks = [], []
        for g in range(n):
            mine = [la for la in spec.layers if run_on.get(la.index) == g]
            w = sum(s for k, s in sizes if dmap.get(k) == str(g))
            kv_ctx = sum(layer_cache(la, ctx, b, d, p.sliding_cap) for la in mine)
            kv_pre = sum(layer_cache(la, prompt, b, d, p.sliding_cap) for la in mine)
            pre_t = max((layer_transient(spec, la, b, prompt, d, attn, p) for la in mine), default=0)
            if p.mask_4d or attn == "eager":
                pre_t += b * prompt * prompt * d if mine else 0
            lg = logits_bytes(spec, b, prompt, d, p) if dmap.get(head) == str(g) or (
                dmap.get(head) in ("cpu", "disk") and g == 0) else 0
            dec_t = 0
            if decode and mine:
                dec_t = kv_ctx if p.whole_cache_copy else max(
                    layer_cache(la, ctx, b, d, p.sliding_cap) for la in mine)
                dec_t += b * spec.vocab_size * (d + 8) if lg else 0
            peak_rt = max(kv_pre + max(pre_t, lg), kv_ctx + dec_t if decode else 0)
            act = max(0, peak_rt - kv_ctx)
            comps = [
                Component("weights", w, f"modules placed on cuda:{g} by device_map='{strategy}'",
                          SRC_MAP, "weights"),
                Component("kv_cache", kv_ctx, f"DynamicCache {ctx} tokens x {b} seq, "
                          f"{len(mine)} layers, {d} B/elem", SRC_GEN, "kv_cache"),
                Component("activations", act, f"generate() peak beyond the cache: prefill {prompt} "
                          f"tokens ({attn})" + (", decode concat copy" if decode else ""), SRC_GEN,
                          "activation", (Component("prefill layer", pre_t), Component("logits", lg),
                                         Component("decode copy", dec_t))),
                Component("cuda_context", CUDA_CONTEXT_BYTES, "CUDA context per GPU",
                          "vramplan.engines.generic (ASSUMPTION)", "overhead"),
            ]
            if quant_ws and (mine or w):
                comps.append(Component("dequant_workspace", quant_ws, "largest quantized linear "
                             "dequantized to fp16 (ASSUMPTION)", scheme.name, "activation"))
            if p.rotary_buffers and mine:
                a0 = mine[0].attention
                comps.append(Component("rotary_cache", len(mine) * 2 * spec.max_position_embeddings
                             * a0.head_dim * d, "per-layer cos/sin [max_pos, head_dim]",
                             "transformers v4.32 LlamaRotaryEmbedding", "overhead"))
            if g == 0 and offloaded:
                comps.append(Component("offload_staging", max(size_of[k] for k in offloaded),
                             "largest offloaded module copied in for its forward", SRC_MAP,
                             "activation"))
            dev = DeviceEstimate(f"GPU{g}", "gpu", gpu.name, total, tuple(comps))
            devices.append(dev)
            peaks.append(dev.total_bytes)
        host = sum(size_of[k] for k in offloaded if dmap[k] == "cpu")
        figures = self._figures(spec, dmap, peaks, gpu.memory_bytes - gpu.memory_reported_bytes,
                                budgets, attn, prompt, devices)
        failure, fix = self._failure(devices, bnb, offloaded, dmap)
        if offloaded:
            notes.append(f"{len(offloaded)} modules offloaded ({fmt_bytes(host)} in host RAM"
                         + (", rest on disk" if "disk" in dmap.values() else "") + "): every "
                         "forward streams them over PCIe to GPU 0")
        if setup.parallel.devices > 1:
            notes.append("transformers runs one process: --tp/--pp are ignored; layers are spread "
                         f"over {n} GPUs by device_map='auto' and run one GPU at a time")
        assumptions = (
            f"transformers {p.version} profile: attention {attn}, "
            + ("logits_to_keep=1" if p.last_token_logits else "full-prompt fp32 logits"),
            f"prompt {prompt} tokens prefilled at once" + (f", then decode to {ctx}" if decode else ""),
            f"CUDA context {fmt_bytes(CUDA_CONTEXT_BYTES)} per GPU (ASSUMPTION)",
        ) + ((f"no profile recorded for transformers {self.version}: using {p.version}",)
             if self.version != p.version else ())
        return EngineResult(devices=tuple(devices), host_ram_bytes=host, figures=figures,
                            assumptions=assumptions, command=self._command(spec.model_id, scheme.method,
                                                                           attn, opts,
                                                                           auto_cls(setup.model)),
                            failure=failure, fix=fix, notes=tuple(notes))

    @staticmethod
    def _figures(spec: ModelSpec, dmap: dict[str, str], peaks: list[int], driver_reserved: int,
                 budgets: list[int], attn: str, prompt: int, devices: list[DeviceEstimate]
                 ) -> dict[str, Any]:
        per: dict[str, list[str]] = {}
        layers: dict[str, int] = {}
        for k, v in dmap.items():
            dev = v if v in ("cpu", "disk") else f"cuda:{v}"
            per.setdefault(dev, []).append(k)
            layers[dev] = layers.get(dev, 0) + (".layers." in k)
        peak = max(peaks)
        d = 4 if spec.torch_dtype == "float32" else 2
        state = sum(hf_state_bytes(la.attention, d) for la in spec.layers)
        return {
            "device_map": {dev: _compact(names, spec.prefix) for dev, names in per.items()},
            "layers_per_device": layers,
            "peak_bytes": peak, "peak_bytes_per_gpu": {d.name: d.total_bytes for d in devices},
            "peak_allocated_bytes": peak - CUDA_CONTEXT_BYTES,
            "peak_nvml_bytes": peak + driver_reserved,
            "kv_cache_bytes": sum(d.kv_cache_bytes for d in devices),
            "weights_bytes": sum(d.weights_bytes for d in devices),
            "max_memory_bytes": {f"cuda:{i}": b for i, b in enumerate(budgets)},
            "attn_implementation": attn, "prompt_tokens": prompt,
            **({"state_bytes_per_sequence": state} if state else {}),
        }

    @staticmethod
    def _failure(devices: list[DeviceEstimate], bnb: bool, offloaded: list[str],
                 dmap: dict[str, str]) -> tuple[str | None, str | None]:
        if bnb and offloaded:
            return ("ValueError: Some modules are dispatched on the CPU or the disk; bitsandbytes "
                    "needs enough GPU RAM for the quantized model (from_pretrained refuses)",
                    "add GPUs, or pass llm_int8_enable_fp32_cpu_offload=True with a device_map")
        over = [d for d in devices if not d.fits]
        if not over:
            return None, None
        d = over[0]
        runtime = d.total_bytes - d.weights_bytes
        fail = (f"torch.OutOfMemoryError: CUDA out of memory on {d.name} during generate(): peak "
                f"{fmt_bytes(d.total_bytes)} > {fmt_bytes(d.capacity_bytes)} (device_map='auto' "
                "leaves no room for the growing KV cache)")
        if runtime >= d.capacity_bytes * 0.9:
            return fail, (f"lower batch x context: the cache and activations alone need "
                          f"{fmt_bytes(runtime)} on {d.name}; or use more GPUs")
        room = (d.capacity_bytes - runtime) * 9 // 10 // 2**30
        return fail, (f"pass max_memory={{{d.name[3:]}: '{room}GiB'}} so layers move to the next "
                      "device, lower batch/context, or quantize (load_in_4bit)")

    @staticmethod
    def _command(model_id: str, method: str, attn: str, opts: Any,
                 cls: str = "AutoModelForCausalLM") -> str:
        q = {"bnb-nf4": ", quantization_config=BitsAndBytesConfig(load_in_4bit=True, "
                        "bnb_4bit_quant_type='nf4')",
             "bnb-fp4": ", quantization_config=BitsAndBytesConfig(load_in_4bit=True)",
             "bnb-int8": ", quantization_config=BitsAndBytesConfig(load_in_8bit=True)"}.get(method, "")
        imp = cls + (", BitsAndBytesConfig" if q else "")
        a = f", attn_implementation='{attn}'" if opts.get("attn_implementation") else ""
        return (f"python -c \"from transformers import {imp}; m = {cls}."
                f"from_pretrained('{model_id}', dtype='auto', device_map='auto'{q}{a}); "
                "print(m.hf_device_map)\"")


def _compact(names: list[str], prefix: str) -> str:
    layers = [int(n.rsplit(".", 1)[1]) for n in names if ".layers." in n]
    other = [n for n in names if ".layers." not in n]
    if layers:
        other.insert(0 if not other or not other[0].endswith("embed_tokens") else 1,
                     f"{prefix}.layers.{min(layers)}-{max(layers)}")
    return ", ".join(other)


def factory(version: str | None) -> TransformersEngine:
    """``transformers`` (newest profile) or ``transformers==4.40``: before 4.36 tuple cache + eager,
    before 4.45 full-prompt logits."""
    if version is None:
        return TransformersEngine(PROFILES["4.57"])
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        raise InputError("--engine", f"cannot read transformers version {version!r}",
                         "write it like transformers==4.57") from None
    key = "4.33" if (major, minor) < (4, 36) else "4.44" if (major, minor) < (4, 45) else "4.57"
    return TransformersEngine(PROFILES[key], version if version != key else None)


register_engine("transformers", factory)
