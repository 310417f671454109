"""Where each priced weight lives and how a decode step reads it (GPU stages, host RAM, streamed).

Two engines put weights in host RAM, in different ways:

* llama.cpp (and Ollama) *compute* on the CPU whatever tensors sit in a CPU buffer:
  ``-ngl N`` keeps the last N repeating layers on the GPU(s) (the output layer too once
  ``N > n_layer``) and runs the others on the CPU, their KV cache included
  (``src/llama-model.cpp`` ``load_tensors``: ``i_gpu_start = max(n_layer - n_gpu_layers, 0)``);
  ``--n-cpu-moe N`` moves the routed experts (``blk.<i>.ffn_(up|down|gate)_exps``) of layers
  ``0..N-1`` to the CPU, ``--cpu-moe`` all of them (``common/arg.cpp``, they add ``-ot``
  patterns), ``-ot REGEX=CPU`` any tensor whose GGUF name matches. The token embedding is always
  in host RAM (``dev_input`` is the CPU). With several GPUs the GPU layers are split evenly
  (``--tensor-split`` default: proportional to free memory, equal for equal cards).
* vLLM ``--cpu-offload-gb X`` keeps X GiB of each GPU's parameters in pinned host RAM and copies
  them to the GPU at every forward (``vllm/model_executor/models/utils.py``
  ``maybe_offload_to_cpu``: whole modules, from the first layer on, until X GiB), so those bytes
  cross PCIe once per step, experts included.

Everything here is per TP rank: a stage's bytes are what one GPU of that stage holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vramplan.inventory import TensorGroup
from vramplan.placement import Parallelism, place, shard_fraction
from vramplan.quant.schemes import QuantizedModel
from vramplan.units import GIB, fmt_bytes

__all__ = ["LLAMACPP_ENGINES", "Residence", "WeightSplit", "activation_bytes", "describe",
           "gguf_like_name", "options_from_figures",
           "split_cached",
           "split_weights", "uses_llamacpp_layout"]

LLAMACPP_ENGINES = frozenset({"llamacpp", "ollama"})
_LLAMA_OPTS = ("n_gpu_layers", "n_cpu_moe", "cpu_moe", "override_tensor")


@dataclass(frozen=True, slots=True)
class Residence:
    """Weights one place holds, split by how a decode step reads them.

    ``dense``: read in full at every step (attention, dense MLP, shared experts, norms, routers,
    output head). ``expert``: routed experts, of which a step reads those its tokens route to.
    ``embedding``: the input embedding, one row per token (negligible reads). ``*_params`` count
    parameters (for FLOPs); ``layers`` are the decoder layers computed here.
    """

    dense_bytes: int = 0
    expert_bytes: int = 0
    embedding_bytes: int = 0
    dense_params: int = 0
    expert_params: int = 0
    layers: tuple[int, ...] = ()

    @property
    def total_bytes(self) -> int:
        return self.dense_bytes + self.expert_bytes + self.embedding_bytes

    def plus(self, other: Residence) -> Residence:
        return Residence(self.dense_bytes + other.dense_bytes,
                         self.expert_bytes + other.expert_bytes,
                         self.embedding_bytes + other.embedding_bytes,
                         self.dense_params + other.dense_params,
                         self.expert_params + other.expert_params,
                         tuple(sorted(set(self.layers) | set(other.layers))))


@dataclass(frozen=True, slots=True)
class WeightSplit:
    """Per GPU stage (one TP rank each), host-computed and PCIe-streamed weights."""

    stages: tuple[Residence, ...]
    host: Residence  # in host RAM, computed by the CPU (llama.cpp); layers: any tensor there
    streamed: Residence  # in host RAM, copied to the GPU each forward (vLLM --cpu-offload-gb)
    tp: int
    expert_fraction: float  # top_k / num_experts (0 for dense models)
    kv_host_layers: tuple[int, ...] = ()  # layers whose KV cache lives in host RAM
    notes: tuple[str, ...] = field(default=())

    @property
    def gpu_layers(self) -> tuple[int, ...]:
        return tuple(i for s in self.stages for i in s.layers)


def uses_llamacpp_layout(engine: str, options: Mapping[str, Any]) -> bool:
    return engine in LLAMACPP_ENGINES or any(options.get(k) is not None for k in _LLAMA_OPTS)


_PART = re.compile(r"(gate_up|gate|up|down)_proj")


def gguf_like_name(g: TensorGroup) -> str:
    """A GGUF-style name for ``-ot`` matching: ``blk.3.ffn_up_exps.weight``, ``output.weight``."""
    if g.name.startswith("blk.") or g.name in ("token_embd.weight", "output.weight",
                                                "output_norm.weight"):
        return g.name  # already a GGUF name (quant.gguf_pricing entries)
    if g.role == "embedding":
        return "token_embd.weight"
    if g.role == "lm_head":
        return "output.weight"
    if g.layer is None:
        return "output_norm.weight" if g.role == "norm" else g.name
    b = f"blk.{g.layer}."
    m = _PART.search(g.name)
    part = m.group(1) if m else "up"
    if g.role == "routed_expert":
        return b + f"ffn_{part}_exps.weight"
    if g.role == "shared_expert":
        return b + f"ffn_{part}_shexp.weight"
    if g.role == "mlp":
        return b + f"ffn_{part}.weight"
    if g.role == "router":
        return b + "ffn_gate_inp.weight"
    if g.role == "norm":
        return b + ("ffn_norm.weight" if "post_attention" in g.name else "attn_norm.weight")
    leaf = g.name.rsplit(".", 2)[-2] if g.name.count(".") >= 2 else g.name
    return b + "attn_" + leaf.replace("_proj", "") + ".weight"


def _ot_patterns(options: Mapping[str, Any]) -> list[re.Pattern[str]]:
    """CPU-bound ``-ot`` patterns (``regex=CPU``), comma-separated as llama.cpp accepts them."""
    raw = options.get("override_tensor")
    if not raw:
        return []
    items = raw if isinstance(raw, list | tuple) else [raw]
    pats = []
    for item in items:
        for part in str(item).split(","):
            pat, _, buft = part.rpartition("=")
            if pat and buft.strip().upper().startswith("CPU"):
                pats.append(re.compile(pat.strip().strip("'\"")))
    return pats


def _add(acc: dict[str, int], g: TensorGroup, nbytes: int, frac: float) -> None:
    params = int(g.numel * frac)
    if g.role == "routed_expert":
        acc["expert_bytes"] += nbytes
        acc["expert_params"] += params
    elif g.role == "embedding":
        acc["embedding_bytes"] += nbytes
    elif g.role not in ("vision", "audio", "mtp"):
        acc["dense_bytes"] += nbytes
        acc["dense_params"] += params


def _residence(acc: dict[str, int], layers: set[int]) -> Residence:
    return Residence(acc["dense_bytes"], acc["expert_bytes"],
                     acc["embedding_bytes"], acc["dense_params"], acc["expert_params"],
                     tuple(sorted(layers)))


def _zero() -> dict[str, int]:
    return dict.fromkeys(("dense_bytes", "expert_bytes", "embedding_bytes", "dense_params",
                          "expert_params"), 0)


def _expert_fraction(qm: QuantizedModel) -> float:
    for layer in qm.inventory.spec.layers:
        if layer.mlp.kind == "moe" and layer.mlp.num_experts:
            return layer.mlp.top_k / layer.mlp.num_experts
    return 0.0


@dataclass(frozen=True, slots=True)
class _Table:
    """Per-layer (bytes, params) of a priced model, for the llama.cpp split without -ot."""

    dense: tuple[tuple[int, int], ...]
    expert: tuple[tuple[int, int], ...]
    head: tuple[int, int]  # output head + final norm
    embedding: tuple[int, int]


_TABLES: dict[int, tuple[QuantizedModel, _Table]] = {}


def _table(qm: QuantizedModel) -> _Table:
    hit = _TABLES.get(id(qm))
    if hit is not None and hit[0] is qm:
        return hit[1]
    n = qm.inventory.spec.num_layers
    dense, expert = [[0, 0] for _ in range(n)], [[0, 0] for _ in range(n)]
    head, embd = [0, 0], [0, 0]
    for e in qm.entries:
        g = e.group
        if g.role in ("vision", "audio", "mtp"):
            continue
        acc = embd if g.role == "embedding" else head if g.layer is None else (
            expert[g.layer] if g.role == "routed_expert" else dense[g.layer])
        acc[0] += e.bytes
        acc[1] += g.numel
    t = _Table(tuple((a, b) for a, b in dense), tuple((a, b) for a, b in expert),
               (head[0], head[1]), (embd[0], embd[1]))
    if len(_TABLES) > 512:
        _TABLES.clear()
    _TABLES[id(qm)] = (qm, t)
    return t


def _fast_llamacpp(qm: QuantizedModel, gpu_count: int, stage_of: dict[int, int],
                   n_cpu_moe: int, output_on_gpu: bool) -> tuple[list[dict[str, int]],
                                                                 list[set[int]],
                                                                 dict[str, int], set[int]]:
    """The entry loop of ``_llamacpp_split`` done per layer (same result without -ot)."""
    t = _table(qm)
    stages = [_zero() for _ in range(max(gpu_count, 1))]
    layers: list[set[int]] = [set() for _ in stages]
    host, host_layers = _zero(), set()
    host["embedding_bytes"] += t.embedding[0]
    if qm.inventory.spec.tie_word_embeddings:
        acc = stages[-1] if output_on_gpu else host
        acc["dense_bytes"] += t.embedding[0]
        acc["dense_params"] += t.embedding[1]
    acc = stages[-1] if output_on_gpu else host
    acc["dense_bytes"] += t.head[0]
    acc["dense_params"] += t.head[1]
    for i, (db, dp) in enumerate(t.dense):
        eb, ep = t.expert[i]
        s = stage_of.get(i)
        where = host if s is None else stages[s]
        where["dense_bytes"] += db
        where["dense_params"] += dp
        (host if s is None or i < n_cpu_moe else where)["expert_bytes"] += eb
        (host if s is None or i < n_cpu_moe else where)["expert_params"] += ep
        if s is None or (eb and i < n_cpu_moe):
            host_layers.add(i)
        if s is not None:
            layers[s].add(i)
    return stages, layers, host, host_layers


def _llamacpp_split(qm: QuantizedModel, gpu_count: int, options: Mapping[str, Any],
                    ) -> WeightSplit:
    spec = qm.inventory.spec
    n = spec.num_layers
    ngl = options.get("n_gpu_layers")
    ngl = n + 1 if ngl is None or int(ngl) < 0 or int(ngl) > n else int(ngl)
    if gpu_count <= 0:
        ngl = 0
    first_gpu = max(n - ngl, 0)  # i_gpu_start; the output layer (il = n) needs ngl > n
    n_cpu_moe = n if options.get("cpu_moe") else int(options.get("n_cpu_moe") or 0)
    pats = _ot_patterns(options)
    gpu_layers = [i for i in range(n) if i >= first_gpu]
    per_gpu = max(1, -(-len(gpu_layers) // max(gpu_count, 1))) if gpu_layers else 1
    stage_of = {i: min(k // per_gpu, max(gpu_count, 1) - 1) for k, i in enumerate(gpu_layers)}
    if not pats:
        return _finish(qm, gpu_count, *_fast_llamacpp(qm, gpu_count, stage_of, n_cpu_moe,
                                                      ngl > n and gpu_count > 0),
                       n_cpu_moe, stage_of)
    stages = [_zero() for _ in range(max(gpu_count, 1))]
    stage_layers: list[set[int]] = [set() for _ in stages]
    host, host_layers = _zero(), set()
    output_on_gpu = ngl > n and gpu_count > 0
    for e in qm.entries:
        g = e.group
        if g.role in ("vision", "audio", "mtp"):
            continue
        on_cpu = False
        if g.role == "embedding":
            _add(host, g, e.bytes, 1.0)  # the input layer is always a CPU buffer
            if not spec.tie_word_embeddings:
                continue
            # tied: llama.cpp duplicates token_embd as the output head (TENSOR_DUPLICATED)
            acc = stages[-1] if output_on_gpu else host
            acc["dense_bytes"] += e.bytes
            acc["dense_params"] += g.numel
            continue
        if g.layer is None:
            on_cpu = not output_on_gpu
        elif g.layer not in stage_of:
            on_cpu = True
        elif g.role == "routed_expert" and g.layer < n_cpu_moe:
            on_cpu = True
        if not on_cpu and pats:
            name = gguf_like_name(g)
            on_cpu = any(p.search(name) for p in pats)
        if on_cpu:
            _add(host, g, e.bytes, 1.0)
            if g.layer is not None:
                host_layers.add(g.layer)
        else:
            s = stage_of[g.layer] if g.layer is not None else len(stages) - 1
            _add(stages[s], g, e.bytes, 1.0)
            if g.layer is not None:
                stage_layers[s].add(g.layer)
    return _finish(qm, gpu_count, stages, stage_layers, host, host_layers, n_cpu_moe, stage_of)


def _finish(qm: QuantizedModel, gpu_count: int, stages: list[dict[str, int]],
            stage_layers: list[set[int]], host: dict[str, int], host_layers: set[int],
            n_cpu_moe: int, stage_of: dict[int, int]) -> WeightSplit:
    n = qm.inventory.spec.num_layers
    if gpu_count <= 0:
        stages = []
        stage_layers = []
    notes = []
    if host["expert_bytes"] and n_cpu_moe:
        notes.append(f"routed experts of layers 0-{min(n_cpu_moe, n) - 1} in host RAM "
                     "(--n-cpu-moe)")
    return WeightSplit(tuple(_residence(a, s) for a, s in zip(stages, stage_layers, strict=True)),
                       _residence(host, host_layers), Residence(), 1, _expert_fraction(qm),
                       tuple(i for i in range(n) if i not in stage_of), tuple(notes))


def _vllm_split(qm: QuantizedModel, par: Parallelism, options: Mapping[str, Any]) -> WeightSplit:
    spec = qm.inventory.spec
    shards = place(qm, par)
    stages = []
    for sh in shards:
        acc = _zero()
        for e in qm.entries:
            g = e.group
            if g.layer is not None and g.layer not in sh.layers:
                continue
            if g.layer is None and g.role in ("lm_head", "norm") and not sh.has_head:
                continue
            if g.role == "embedding" and not (sh.has_embedding or (
                    spec.tie_word_embeddings and sh.has_head)):
                continue
            frac = shard_fraction(g, spec, par.tp)
            _add(acc, g, int(e.bytes * frac), frac)
        if spec.tie_word_embeddings and sh.has_head:  # the tied embedding is the output head
            acc["dense_bytes"] += acc["embedding_bytes"]
            acc["embedding_bytes"] = 0
        stages.append(acc)
    offload = int(float(options.get("cpu_offload_gb") or 0) * GIB)
    streamed = _zero()
    if offload > 0:
        for acc in stages:
            total = acc["dense_bytes"] + acc["expert_bytes"]
            take = min(offload, total)
            share = take / total if total else 0.0
            for k in ("dense_bytes", "expert_bytes"):
                moved = int(acc[k] * share)
                acc[k] -= moved
                streamed[k] += moved
    res = tuple(_residence(a, set(sh.layers)) for a, sh in zip(stages, shards, strict=True))
    return WeightSplit(res, Residence(), _residence(streamed, set()), par.tp,
                       _expert_fraction(qm))


def split_weights(qm: QuantizedModel, par: Parallelism, gpu_count: int, engine: str,
                  options: Mapping[str, Any] | None = None) -> WeightSplit:
    """Where the weights of ``qm`` live under ``engine`` with ``options`` (see module docstring)."""
    opts = dict(options or {})
    if uses_llamacpp_layout(engine, opts):
        return _llamacpp_split(qm, gpu_count, opts)
    return _vllm_split(qm, par, opts)


_CACHE: dict[tuple[Any, ...], tuple[QuantizedModel, WeightSplit]] = {}
_CACHE_MAX = 4096


def split_cached(qm: QuantizedModel, par: Parallelism, gpu_count: int, engine: str,
                 options: Mapping[str, Any] | None = None) -> WeightSplit:
    """``split_weights`` memoized by the identity of ``qm`` (priced models are themselves cached,
    and hashing one by value would walk every tensor)."""
    opts = dict(options or {})
    llama = uses_llamacpp_layout(engine, opts)
    key = (id(qm), par.tp, par.pp, par.ep, gpu_count if llama else 0, llama,
           repr(sorted((k, v) for k, v in opts.items() if k in _LLAMA_OPTS + ("cpu_offload_gb",))))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is qm:
        return hit[1]
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    sp = split_weights(qm, par, gpu_count, engine, opts)
    _CACHE[key] = (qm, sp)
    return sp


def describe(sp: WeightSplit, n_layers: int, gpus: int = 1) -> str:
    """One phrase for an option: where the layers/experts are."""
    where = "the GPU" if gpus == 1 else f"{gpus} GPUs"
    if sp.streamed.total_bytes:
        return f"{fmt_bytes(sp.streamed.total_bytes)} of weights streamed from host RAM " \
            "(--cpu-offload-gb)"
    h = sp.host
    if sp.kv_host_layers:
        k = len(sp.kv_host_layers)
        return f"{n_layers - k} of {n_layers} layers on {where}, {k} in host RAM " \
            f"({fmt_bytes(h.total_bytes)})"
    if h.expert_bytes:
        k = len(h.layers)
        return (f"routed experts of {k} layers in host RAM ({fmt_bytes(h.total_bytes)}), "
                f"{n_layers - k} expert layers on {where}")
    return f"all layers on {where}"


_ACT: dict[tuple[int, int, int, int], tuple[Any, int]] = {}


def activation_bytes(spec: Any, tokens: int, seqs: int, tp: int) -> int:
    """``engines.generic.activation_peak_bytes`` memoized by the identity of ``spec`` (its
    widest-MLP scan over every layer is the planner's hottest loop otherwise)."""
    from vramplan.engines.generic import activation_peak_bytes

    key = (id(spec), tokens, seqs, tp)
    hit = _ACT.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_ACT) > 8192:
        _ACT.clear()
    v = activation_peak_bytes(spec, tokens, seqs, tp)
    _ACT[key] = (spec, v)
    return v


def options_from_figures(figures: dict[str, Any], n_layers: int) -> dict[str, Any] | None:
    """The placement a llama.cpp-family engine chose (its --fit flags), as engine options."""
    fit = figures.get("fit")
    flags = fit.get("equivalent_flags") if isinstance(fit, dict) else None
    out: dict[str, Any] = {}
    if isinstance(flags, str):
        m = re.search(r"-ngl (\d+)", flags)
        if m and int(m.group(1)) <= n_layers:
            out["n_gpu_layers"] = int(m.group(1))
        m = re.search(r"-ot '([^']*)'", flags)
        if m:
            out["override_tensor"] = m.group(1)
        return out
    ngl = figures.get("n_gpu_layers")
    if isinstance(ngl, int) and ngl <= n_layers:
        out["n_gpu_layers"] = ngl
    return out if out else None
