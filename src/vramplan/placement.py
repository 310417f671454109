"""Placement: split the priced weights over devices by tensor and pipeline parallelism.

Tensor parallel (vLLM linear layer classes, vllm/model_executor/layers/linear.py):
column/row-parallel linears hold 1/tp of the tensor; K/V projections hold max(1, kv//tp) of the
kv heads (replicated once tp > kv heads); vocab-parallel embedding/head hold ceil(pad64(V)/tp)
rows (vocab_parallel_embedding.py, padding 64); norms, routers and MLA a-projections are
replicated; MoE experts are split on the intermediate dim (TP) or by expert (EP), 1/tp either way.
Pipeline parallel: contiguous layer ranges, embedding on the first stage, final norm + lm_head on
the last (vllm/distributed/utils.py get_pp_indices: remainder layers go to the last stages).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from vramplan.errors import ParallelismError
from vramplan.inventory import TensorGroup
from vramplan.model.spec import ModelSpec
from vramplan.quant.schemes import QuantizedModel

VOCAB_PAD = 64  # SOURCE: vllm vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE


@dataclass(frozen=True, slots=True)
class Parallelism:
    tp: int = 1  # tensor parallel size
    pp: int = 1  # pipeline parallel size
    ep: bool = False  # expert parallel over the TP ranks (vLLM --enable-expert-parallel)

    @property
    def devices(self) -> int:
        return self.tp * self.pp


@dataclass(frozen=True, slots=True)
class StageShard:
    """What one TP rank of one pipeline stage holds."""

    stage: int
    layers: range  # decoder layer indices on this stage
    weights_bytes: int
    bytes_by_role: dict[str, int]
    has_embedding: bool
    has_head: bool


def pp_layer_ranges(n_layers: int, pp: int) -> list[range]:
    """Even split; the remainder goes to the last stages (vLLM get_pp_indices)."""
    if pp > n_layers:
        raise ParallelismError("--pp", f"{pp} stages for {n_layers} layers",
                               f"use --pp {n_layers} or fewer")
    base, rem = divmod(n_layers, pp)
    sizes = [base + (1 if i >= pp - rem else 0) for i in range(pp)]
    out, start = [], 0
    for s in sizes:
        out.append(range(start, start + s))
        start += s
    return out


def check_tp(spec: ModelSpec, par: Parallelism) -> None:
    """Divisibility rules vLLM enforces (ModelConfig.verify_with_parallel_config)."""
    tp = par.tp
    if tp < 1 or par.pp < 1:
        raise ParallelismError("--tp/--pp", "must be at least 1", "use --tp 1")
    if tp == 1:
        return
    heads = spec.layers[0].attention.num_heads
    if heads % tp:
        raise ParallelismError("--tp", f"{heads} attention heads are not divisible by tp={tp}",
                               f"use a --tp that divides {heads}")
    for layer in spec.layers:
        a = layer.attention
        if a.kind in ("full", "sliding", "chunked") and a.num_kv_heads % tp and tp % a.num_kv_heads:
            raise ParallelismError("--tp", f"{a.num_kv_heads} KV heads and tp={tp} do not divide "
                                   "each other", "use a --tp that divides the KV heads or is a "
                                   "multiple of them")
        m = layer.mlp
        if m.kind == "moe":
            if par.ep and m.num_experts % tp:
                raise ParallelismError("--enable-expert-parallel", f"{m.num_experts} experts are "
                                       f"not divisible by {tp} ranks", "use another --tp")
            if not par.ep and m.expert_intermediate_size % tp:
                raise ParallelismError("--tp", f"expert width {m.expert_intermediate_size} is not "
                                       f"divisible by tp={tp}", "use expert parallel or another tp")
        elif m.intermediate_size % tp:
            raise ParallelismError("--tp", f"intermediate_size {m.intermediate_size} is not "
                                   f"divisible by tp={tp}", "use another --tp")


def shard_fraction(g: TensorGroup, spec: ModelSpec, tp: int) -> float:
    """Share of a tensor one TP rank holds (see module docstring)."""
    if tp == 1 or g.split == "replicated":
        return 1.0
    if g.split == "vocab":
        padded = math.ceil(spec.vocab_size / VOCAB_PAD) * VOCAB_PAD
        return math.ceil(padded / tp) / spec.vocab_size
    if g.split == "kv":
        kv = spec.layers[g.layer or 0].attention.num_kv_heads
        return max(1, kv // tp) / kv
    return 1.0 / tp


@lru_cache(maxsize=512)
def place(qm: QuantizedModel, par: Parallelism) -> tuple[StageShard, ...]:
    """Per pipeline stage, the weights one TP rank holds (cached per priced model)."""
    spec = qm.inventory.spec
    check_tp(spec, par)
    ranges = pp_layer_ranges(spec.num_layers, par.pp)
    shards = []
    for s, rng in enumerate(ranges):
        first, last = s == 0, s == par.pp - 1
        by_role: dict[str, int] = {}
        total = 0
        for e in qm.entries:
            g = e.group
            if g.layer is not None:
                if g.layer not in rng:
                    continue
            elif g.role in ("embedding", "vision", "audio"):
                if not first and not (g.role == "embedding" and spec.tie_word_embeddings and last):
                    continue
            elif not last:  # final norm, lm_head
                continue
            b = math.ceil(e.bytes * shard_fraction(g, spec, par.tp))
            total += b
            by_role[g.role] = by_role.get(g.role, 0) + b
        shards.append(StageShard(s, rng, total, by_role, first, last))
    return tuple(shards)
