"""llama.cpp's memory, restated: tensor placement, KV cells, compute buffers, host buffers.

Read at ggml-org/llama.cpp ec98e2002 (vendored in ollama/ollama at 9db4bdbad^) and, for ``--fit``,
common/fit.cpp at 08033df02cc32f3706271c068aaeaeecf94922a1; see ``engines/llamacpp.py`` for the
search and the result. Every function states what it restates; sizes are bytes.

Placement (src/llama-model.cpp ``llama_model::load_tensors``): the input layer (``token_embd``) is
always on the CPU; repeating layer ``il`` goes to a GPU iff ``il >= n_layer - ngl`` (at most
``n_layer + 1`` layers count, the output layer being number ``n_layer``); the GPU is the first whose
cumulative split exceeds ``(il - i_gpu_start) / act_gpu_layers`` (splits default to free memory);
``-ot`` overrides are matched first (``std::regex_search`` on the tensor name); a tied output
(no ``output.weight``) is the token embedding created again on the output layer's device.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from vramplan.errors import InputError
from vramplan.kv import linear_state_bytes, shares_kv
from vramplan.model.spec import ModelSpec
from vramplan.quant.ggml_types import ggml_type
from vramplan.quant.schemes import QuantizedModel, WeightEntry

CPU = "CPU"
F32 = 4
# op_offload: the CUDA backend takes an op whose weight sits in host memory once its batch
# reaches 32 tokens (ggml-cuda.cu ggml_backend_cuda_device_offload_op, min_batch_size = 32)
OFFLOAD_MIN_BATCH = 32
# llama.cpp sliding-window KV caches exist only for these model types (iSWA archs); Mistral /
# Qwen2 "sliding_window" configs are ignored by llama.cpp (no SWA in their hparams)
SWA_MODEL_TYPES = frozenset({"gemma2", "gemma3", "gemma3_text", "gpt_oss", "llama4_text",
                             "cohere2", "gemma4", "gemma4_text", "gemma3n", "gemma3n_text",
                             "exaone4"})
_BLK = re.compile(r"^blk\.(\d+)\.")
# fit.cpp layer fractions: which FFN tensors of a partial layer leave the device
FRACTIONS: dict[str, str] = {
    "moe": r"ffn_(up|down|gate_up|gate)_(ch|)exps",  # only routed experts
    "attn": r"ffn_(gate|up|gate_up|down).*",  # all FFN weights: attention stays
    "up": r"ffn_(gate|gate_up|down).*",  # attention + up stay
    "gate": r"ffn_down.*",  # attention + up + gate stay
}
_FRACTION_RE = {k: re.compile(r"^blk\.\d+\." + v) for k, v in FRACTIONS.items()}


@dataclass(frozen=True, slots=True)
class Tensor:
    """One GGUF tensor: llama.cpp name, layer (None: input, n_layer: output), exact bytes."""

    name: str
    layer: int | None
    nbytes: int
    ggml_type: str
    matmul: bool  # a 2-D+ weight used by a matrix multiplication (op_offload candidate)
    fractions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """What one repeating layer needs beyond its weights."""

    k_width: int  # elements per token in the K cache (n_embd_k_gqa); 0: no KV
    v_width: int
    swa: bool
    rs_bytes: int  # recurrent state per sequence (f32), 0 for attention layers
    n_head: int
    q_width: int  # n_head * head_dim_k
    o_width: int  # n_head * head_dim_v
    ffn_dense: int  # n_ff of a dense FFN (0 for MoE)
    n_expert: int
    n_expert_used: int
    n_ff_exp: int
    n_ff_shexp: int


@dataclass(frozen=True, slots=True)
class ModelView:
    """The model as llama.cpp sees it."""

    model_type: str
    n_layer: int
    n_embd: int
    n_vocab: int
    n_ctx_train: int
    n_swa: int
    mla: bool
    kv_lora_rank: int
    layers: tuple[LayerInfo, ...]
    tensors: tuple[Tensor, ...]
    has_output: bool  # False: tied embeddings (output = token_embd duplicated)
    n_expert: int
    notes: tuple[str, ...] = ()

    @property
    def output_layer(self) -> int:
        return self.n_layer


def _tensor(e: WeightEntry, n_layer: int) -> Tensor | None:
    name = e.group.name
    if e.group.role in ("vision", "audio"):
        return None
    m = _BLK.match(name)
    layer: int | None
    if m:
        layer = int(m.group(1))
        if layer >= n_layer:
            return None
    elif name.startswith("output"):
        layer = n_layer
    else:
        layer = None
    matmul = len(e.group.shape) >= 2 and name.endswith(".weight") and "norm" not in name \
        and not name.startswith("token_embd")
    fr = frozenset(k for k, rx in _FRACTION_RE.items() if rx.match(name)) if m else frozenset()
    return Tensor(name, layer, e.bytes, e.fmt, matmul, fr)


def is_gguf_priced(qm: QuantizedModel) -> bool:
    """True when the entries carry llama.cpp tensor names (a GGUF file or ``--quant q4_k_m``)."""
    return any(e.group.name.startswith(("blk.", "token_embd")) for e in qm.entries)


def _out_dim(entries: Mapping[str, WeightEntry], name: str) -> int | None:
    e = entries.get(name)
    return e.group.shape[0] if e is not None and e.group.shape else None


def build_view(spec: ModelSpec, entries: Sequence[WeightEntry]) -> ModelView:
    """ModelView from a spec and GGUF-named weight entries (per-layer K/V widths from the tensors
    ``blk.N.attn_k`` / ``attn_v`` where present, so per-layer head counts are exact)."""
    n_layer = spec.num_layers
    by_name = {e.group.name: e for e in entries}
    swa_arch = spec.model_type in SWA_MODEL_TYPES
    layers: list[LayerInfo] = []
    n_swa = 0
    mla = False
    kv_lora = 0
    for ls in spec.layers:
        a, m = ls.attention, ls.mlp
        il = ls.index
        # recurrent layers (and Falcon-H1's parallel Mamba branch): r_l + s_l rows, f32
        rs = linear_state_bytes(a, "fp32")
        if a.kind in ("linear", "none", "cross") or shares_kv(a):  # no cache of its own: no
            k_w = v_w = 0  # mixer (n_head_kv = 0), no cross-attention cache, Gemma-3n sharing
        elif a.kind == "mla":
            mla, kv_lora = True, a.kv_lora_rank
            k_w, v_w = a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank
        else:
            k_w = _out_dim(by_name, f"blk.{il}.attn_k.weight") or a.num_kv_heads * a.head_dim
            v_w = _out_dim(by_name, f"blk.{il}.attn_v.weight") or a.num_kv_heads * a.v_head_dim
        swa = swa_arch and a.kind in ("sliding", "chunked") and bool(a.window_tokens)
        if swa:
            n_swa = n_swa or int(a.window_tokens or 0)
        moe = m.kind == "moe"
        heads = 0 if a.kind == "none" else a.num_heads  # MLP/MoE-only block: no attention ops
        layers.append(LayerInfo(
            k_width=k_w, v_width=v_w, swa=swa, rs_bytes=rs, n_head=heads,
            q_width=heads * a.head_dim, o_width=heads * a.v_head_dim,
            ffn_dense=0 if moe else m.intermediate_size, n_expert=m.num_experts if moe else 0,
            n_expert_used=m.top_k if moe else 0, n_ff_exp=m.expert_intermediate_size if moe else 0,
            n_ff_shexp=m.shared_intermediate_size if moe else 0))
    tensors = tuple(t for t in (_tensor(e, n_layer) for e in entries) if t is not None)
    has_out = any(t.name == "output.weight" for t in tensors)
    n_exp = max((la.n_expert for la in layers), default=0)
    return ModelView(spec.model_type, n_layer, spec.hidden_size, spec.vocab_size,
                     spec.max_position_embeddings, n_swa, mla, kv_lora, tuple(layers), tensors,
                     has_out, n_exp)


# ------------------------------------------------------------------------------ configuration

@dataclass(frozen=True, slots=True)
class Config:
    """One llama-server configuration (what the flags resolve to)."""

    n_ctx: int  # after padding
    n_seq: int  # n_seq_max (-np)
    unified: bool  # --kv-unified
    type_k: str
    type_v: str
    flash_attn: bool
    n_ubatch: int
    n_batch: int
    ngl: int  # requested -ngl (clamped to n_layer + 1 in placement)
    n_gpu: int
    split: tuple[float, ...] = ()  # --tensor-split weights (empty: free memory)
    overrides: tuple[tuple[str, str], ...] = ()  # user -ot (regex, device)
    layer_fraction: tuple[tuple[int, str, str], ...] = ()  # fit: (layer, fraction, device)
    offload_kqv: bool = True
    mmap: bool = True
    op_offload: bool = True
    v_less_mla: bool = True
    gpu_names: tuple[str, ...] = ("CUDA0",)
    free_bytes: tuple[int, ...] = ()  # per GPU, for the default split

    @property
    def n_stream(self) -> int:
        return 1 if self.unified else self.n_seq

    @property
    def n_ctx_seq(self) -> int:
        return self.n_ctx if self.unified else self.n_ctx // self.n_seq

    @property
    def n_tokens(self) -> int:
        """Worst-case graph size reserved: min(n_ctx, n_ubatch) (llama_context ctor)."""
        return min(self.n_ctx, self.n_ubatch, self.n_batch)


def row(type_name: str, n: int, what: str) -> int:
    """Bytes of ``n`` cache elements of a ggml type (blocks never split a row)."""
    t = ggml_type(type_name)
    if n % t.block_elems:
        raise InputError(what, f"{t.name} blocks of {t.block_elems} do not divide the {n}-wide "
                         "K/V rows of this model", "use f16 or q8_0 for the KV cache")
    return n // t.block_elems * t.block_bytes


def swa_cells(view: ModelView, cfg: Config, pad: int) -> int:
    """SWA cache cells per stream: pad(min(n_ctx_seq, n_swa * (unified ? n_seq : 1) + n_ubatch)).

    Source: src/llama-kv-cache-iswa.cpp (the SWA cache is always padded to 256 since #17037).
    """
    n = view.n_swa * (cfg.n_seq if cfg.unified else 1) + cfg.n_ubatch
    return min(cfg.n_ctx_seq, -(-n // pad) * pad)


def with_ctx(cfg: Config, n_ctx: int, pad: int) -> Config:
    """n_ctx padded (llama_context ctor); per-slot streams padded to 256 and n_ctx re-derived."""
    n = max(pad, -(-n_ctx // pad) * pad)
    if not cfg.unified and cfg.n_seq > 1:
        per = max(256, -(-(n // cfg.n_seq) // 256) * 256)
        n = per * cfg.n_seq
    return replace(cfg, n_ctx=n, n_batch=min(cfg.n_batch, n), n_ubatch=min(cfg.n_ubatch, n))


# ------------------------------------------------------------------------------ layout

@dataclass(slots=True)
class Layout:
    """Bytes per device and buffer, as llama.cpp would log them."""

    model: dict[str, int] = field(default_factory=dict)
    kv: dict[str, int] = field(default_factory=dict)
    rs: dict[str, int] = field(default_factory=dict)
    compute: dict[str, int] = field(default_factory=dict)
    layer_dev: list[str] = field(default_factory=list)  # index n_layer: output layer
    cpu_tensors: list[Tensor] = field(default_factory=list)
    kv_k: int = 0
    kv_v: int = 0
    cells: int = 0
    swa_cells: int = 0
    output_bytes: int = 0  # host output buffer
    gpu_layers: int = 0  # layers counted in "offloaded N/M layers"
    pipeline_copies: int = 1
    dup_output: int = 0

    def total(self, dev: str) -> int:
        return (self.model.get(dev, 0) + self.kv.get(dev, 0) + self.rs.get(dev, 0)
                + self.compute.get(dev, 0))

    def host_total(self) -> int:
        """Host buffers: the CPU model buffer (mapped or not), KV/RS of CPU layers, the CPU
        (CUDA_Host) compute buffer and the output (logits) buffer."""
        return self.total(CPU) + self.output_bytes


def layer_devices(n_layer: int, cfg: Config) -> list[str]:
    """Device of each layer 0..n_layer (the last entry is the output layer)."""
    if cfg.n_gpu == 0:
        return [CPU] * (n_layer + 1)
    ngl = n_layer + 1 if cfg.ngl < 0 else cfg.ngl
    start = max(n_layer - ngl, 0)
    act = min(ngl, n_layer + 1)
    weights = list(cfg.split) if cfg.split and any(cfg.split) else \
        [float(f) for f in (cfg.free_bytes or (1,) * cfg.n_gpu)]
    total = sum(weights) or 1.0
    cum, acc = [], 0.0
    for w in weights[:cfg.n_gpu]:
        acc += w
        cum.append(acc / total)
    out = []
    for il in range(n_layer + 1):
        if il < start or il - start >= act:
            out.append(CPU)
        else:
            g = min(bisect.bisect_right(cum, (il - start) / act), cfg.n_gpu - 1)
            out.append(cfg.gpu_names[g])
    return out


def _tensor_device(t: Tensor, ldev: list[str], cfg: Config,
                   user_rx: Sequence[tuple[re.Pattern[str], str]],
                   frac: Mapping[int, tuple[str, str]]) -> str:
    for rx, dev in user_rx:
        if rx.search(t.name):
            return dev
    if t.layer is not None and t.layer in frac and t.layer < len(ldev) - 1:
        kind, dev = frac[t.layer]
        if kind in t.fractions:
            return dev
    if t.layer is None:
        return CPU
    return ldev[t.layer]


def layout(view: ModelView, cfg: Config, ctx_pad: int = 256) -> Layout:
    """Place every tensor, size the KV cache and the compute buffers for ``cfg``."""
    lo = Layout()
    ldev = layer_devices(view.n_layer, cfg)
    lo.layer_dev = ldev
    lo.gpu_layers = sum(1 for d in ldev if d != CPU)
    user_rx = [(re.compile(p), d) for p, d in cfg.overrides]
    frac = {il: (k, d) for il, k, d in cfg.layer_fraction}
    on_dev: dict[str, list[Tensor]] = {}
    for t in view.tensors:
        d = _tensor_device(t, ldev, cfg, user_rx, frac)
        on_dev.setdefault(d, []).append(t)
        lo.model[d] = lo.model.get(d, 0) + t.nbytes
    lo.cpu_tensors = on_dev.get(CPU, [])
    out_dev = ldev[view.n_layer]
    if not view.has_output and out_dev != CPU:
        emb = next((t for t in view.tensors if t.name == "token_embd.weight"), None)
        if emb is not None:  # TENSOR_DUPLICATED: token_embd created again as the output
            lo.model[out_dev] = lo.model.get(out_dev, 0) + emb.nbytes
            lo.dup_output = emb.nbytes
    _kv(view, cfg, lo, ldev, ctx_pad)
    _compute(view, cfg, lo, ldev, on_dev, frac, user_rx)
    lo.output_bytes = view.n_vocab * cfg.n_seq * F32
    return lo


def _kv(view: ModelView, cfg: Config, lo: Layout, ldev: list[str], ctx_pad: int) -> None:
    """KV per device: Σ_layers n_stream * cells * (row(type_k, k_w) + row(type_v, v_w)).

    src/llama-kv-cache.cpp: one K and one V tensor [n_embd_{k,v}_gqa(il), kv_size, n_stream] per
    layer on the layer's device (CPU with --no-kv-offload); without flash attention V is stored
    transposed and padded to the widest V; MLA keeps the latent in K and (since PR #19067) no V;
    recurrent layers hold an f32 state per sequence in the "RS buffer": per recurrent layer one
    r_l tensor [n_embd_r, mem_size] and one s_l tensor [n_embd_s, mem_size], GGML_TYPE_F32,
    mem_size = max(1, n_seq_max), on the layer's device (src/llama-memory-recurrent.cpp@0054ee8ca80b
    constructor, n_rs_seq = 0 without speculative rollback; src/llama-hparams.cpp@01b77b579398
    n_embd_r / n_embd_s; restated by ``kv.linear_state_bytes(attn, "fp32")``). Layers without a
    mixer (Nemotron-H MLP/MoE blocks) have n_head_kv = 0 and add nothing.
    """
    cells = cfg.n_ctx_seq
    sw = swa_cells(view, cfg, ctx_pad) if any(la.swa for la in view.layers) else 0
    lo.cells, lo.swa_cells = cells, sw
    v_max = max((la.v_width for la in view.layers), default=0)
    for il, la in enumerate(view.layers):
        dev = ldev[il] if cfg.offload_kqv else CPU
        if la.rs_bytes:
            lo.rs[dev] = lo.rs.get(dev, 0) + la.rs_bytes * max(1, cfg.n_seq)
        if not la.k_width:
            continue
        n = (sw if la.swa else cells) * cfg.n_stream
        k = row(cfg.type_k, la.k_width, "--cache-type-k") * n
        v_w = 0 if (view.mla and cfg.v_less_mla) else (la.v_width if cfg.flash_attn else v_max)
        v = row(cfg.type_v, v_w, "--cache-type-v") * n if v_w else 0
        lo.kv[dev] = lo.kv.get(dev, 0) + k + v
        lo.kv_k += k
        lo.kv_v += v


def _layer_act(view: ModelView, la: LayerInfo, n_tok: int, n_kv: int, fa: bool) -> int:
    """Live activations of one layer's graph (f32): residual + normed input + the larger of the
    attention part (q, k, v, output; without flash attention the n_kv x n_tok x n_head scores,
    soft_max runs in place) and the FFN part (gate, up, activation; MoE: router logits and
    probabilities, top-k gate/up/activation and the per-expert down outputs, plus the shared
    expert). ASSUMPTION: a restatement of ggml-alloc's peak for one layer, calibrated on the
    measured cases in tests/data/measured_llamacpp.json, not a simulation of the allocator."""
    hidden = 2 * view.n_embd
    if la.rs_bytes:
        attn = 4 * la.q_width
    else:
        attn = la.q_width + la.k_width + la.v_width + la.o_width
        if not fa:
            attn += n_kv * la.n_head
    if la.n_expert:
        ffn = 2 * la.n_expert + la.n_expert_used * (3 * la.n_ff_exp + view.n_embd) \
            + 3 * la.n_ff_shexp
    else:
        ffn = 3 * la.ffn_dense
    return n_tok * (hidden + max(attn, ffn)) * F32


def _compute(view: ModelView, cfg: Config, lo: Layout, ldev: list[str],
             on_dev: Mapping[str, list[Tensor]], frac: Mapping[int, tuple[str, str]],
             user_rx: Sequence[tuple[re.Pattern[str], str]]) -> None:
    """Compute buffers: the peak over the worst-case graph of n_tokens = min(n_ctx, n_ubatch)
    tokens, all producing logits (llama_context ctor -> graph_reserve(n_tokens, n_seqs,
    n_tokens)).

    Per GPU: inputs copied in from other backends (the f32 KQ mask [n_kv, n_tokens], cast to f16
    there under flash attention, and the hidden state), times 4 copies under pipeline parallelism
    (ggml_backend_sched, GGML_SCHED_MAX_COPIES), plus the larger of the layer peak and the output
    phase: logits n_vocab x n_tokens f32 + the normed hidden state. Under partial offload the
    first GPU runs the matmuls of host-resident weights once n_tokens >= 32 (op_offload), so it
    also holds a copy of the largest such weight (and of a CPU layer's K/V). The CPU backend's
    buffer (CUDA_Host when a GPU exists) holds the f32 mask and the token embeddings lookup.
    """
    n_tok = cfg.n_tokens
    gpus = [g for g in cfg.gpu_names[:cfg.n_gpu]]
    n_kv = lo.cells
    mask = n_kv * n_tok * F32 + (lo.swa_cells * n_tok * F32 if lo.swa_cells else 0)
    mask_f16 = mask // 2 if cfg.flash_attn else 0
    embd = view.n_embd * n_tok * F32
    offload = bool(gpus) and cfg.op_offload and n_tok >= OFFLOAD_MIN_BATCH
    pp = len(gpus) > 1 and lo.gpu_layers == view.n_layer + 1 and cfg.offload_kqv \
        and not cfg.overrides and not cfg.layer_fraction
    lo.pipeline_copies = 4 if pp else 1
    cpu_w: dict[int | None, int] = {}
    for t in on_dev.get(CPU, []):
        if t.matmul:
            cpu_w[t.layer] = max(cpu_w.get(t.layer, 0), t.nbytes)
    if not view.has_output and ldev[view.n_layer] == CPU:
        emb = next((t.nbytes for t in view.tensors if t.name == "token_embd.weight"), 0)
        cpu_w[view.n_layer] = max(cpu_w.get(view.n_layer, 0), emb)
    peak: dict[str, int] = {}
    inputs = {g: lo.pipeline_copies * (mask + embd) + mask_f16 for g in gpus}
    for il, la in enumerate(view.layers):
        dev = ldev[il]
        n_kv_l = lo.swa_cells if la.swa else n_kv
        act = _layer_act(view, la, n_tok, n_kv_l, cfg.flash_attn)
        if dev == CPU:
            if not offload:
                peak[CPU] = max(peak.get(CPU, 0), act)
                continue
            dev = gpus[0]
            kv_copy = 0
            if la.k_width:
                v_w = 0 if (view.mla and cfg.v_less_mla) else la.v_width
                kv_copy = n_kv_l * cfg.n_stream * (row(cfg.type_k, la.k_width, "--cache-type-k")
                                                    + (row(cfg.type_v, v_w, "--cache-type-v")
                                                       if v_w else 0))
            act += cpu_w.get(il, 0) + kv_copy
        elif offload:
            act += cpu_w.get(il, 0)  # experts/FFN of this layer overridden to the CPU
        peak[dev] = max(peak.get(dev, 0), inputs.get(dev, 0) + act)
    out = view.n_vocab * n_tok * F32 + view.n_embd * n_tok * F32
    odev = ldev[view.n_layer]
    if odev == CPU and offload:
        odev, out = gpus[0], out + cpu_w.get(view.n_layer, 0)
    peak[odev] = max(peak.get(odev, 0), out)
    # CPU backend: graph inputs (f32 mask, token embeddings lookup) + whatever it computes
    peak[CPU] = peak.get(CPU, 0) + mask + embd
    lo.compute = {d: v for d, v in peak.items() if v}


def logged_mapped_span(view: ModelView, cpu_names: set[str]) -> int:
    """What "CPU_Mapped model buffer size" logs: the file span from the first to the last CPU
    tensor (llama-model-loader maps one range per file), which over-counts GPU tensors lying in
    between. Tensors are taken in the order of the entries: the header's order for a GGUF file;
    for a priced model, ASSUMPTION: convert_hf_to_gguf's order (token_embd, blocks, output)."""
    idx = [i for i, t in enumerate(view.tensors) if t.name in cpu_names]
    if not idx:
        return 0
    return sum(t.nbytes for t in view.tensors[idx[0]: idx[-1] + 1])


__all__ = ["CPU", "FRACTIONS", "Config", "Layout", "ModelView", "Tensor", "build_view",
           "is_gguf_priced", "layer_devices", "layout", "logged_mapped_span", "row",
           "swa_cells", "with_ctx"]
