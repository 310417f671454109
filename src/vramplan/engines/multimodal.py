"""Multimodal memory per engine: vision / audio towers, what an image costs, encoder budgets.

Works over the inventory's tower tensors (roles ``inventory.TOWER_ROLES``) and the spec's towers
(``ModelSpec.towers`` / ``TowerSpec.tokens_per_item``; Llama 4's ``ModelSpec.vision``), so every
family with a tower is handled the same way.

Which engine loads a tower (``towers_loaded``):

* vLLM builds the tower with the model (``Llama4ForConditionalGeneration.__init__`` inside
  ``_mark_tower_model(vllm_config, "image")``, vllm/model_executor/models/mllama4.py). A tower is
  skipped when ``--limit-mm-per-prompt`` sets every one of its modalities to 0 (or with
  ``--language-model-only``, which sets them all to 0): ``SupportsMultiModal._mark_tower_model``
  ("Tower model components are automatically skipped when --limit-mm-per-prompt is set to zero
  for all of their modalities"). ASSUMPTION: from vLLM 0.19.1 (the oldest release in which a
  published log shows ``--language-model-only`` skipping the vision weights); older releases
  still load the tower and only skip its profiling (``compute_mm_encoder_budget`` returns 0, 0
  when every modality is disabled).
* ``--mm-encoder-tp-mode`` (vllm/config/multimodal.py@01230b40128e570a58e54e75f7e55c4d5cd9246d
  ``MultiModalConfig.mm_encoder_tp_mode``, default ``"weights"``): ``weights`` splits each encoder
  layer over the TP ranks (Llama 4: QKVParallelLinear / ColumnParallelLinear / RowParallelLinear,
  mllama4.py@00dd54939bec83c9db7221c28d22060999edff4f), ``data`` keeps the full encoder on every
  rank (ReplicatedLinear) and splits the images instead.
* SGLang turns multimodal off by default for Gemma3ForConditionalGeneration,
  Llama4ForConditionalGeneration and Step3VLForConditionalGeneration (python/sglang/srt/configs/
  model_config.py ModelConfig.__init__ ``mm_disabled_models``: "Multimodal is disabled for ...
  To enable it, set --enable-multimodal"); its Llama 4 then builds no vision model
  (models/mllama4.py@0076e713398e6fbb7279a61940428b611b800a24: ``has_vision = has_vision_weights
  and enable_multimodal``). ASSUMPTION: the same for Gemma 3 and Step3-VL. With the tower on,
  SGLang's Llama 4 encoder uses its parallel linears (VisionAttention qkv parallel,
  ColumnParallelLinear / RowParallelLinear), split over TP like vLLM's ``weights`` mode, while
  ``multi_modal_projector`` is transformers' own nn.Linear, whole on every rank. Other models:
  ``--language-only`` (SGLang's encoder/prefill disaggregation) serves the language model alone.
  ASSUMPTION: every SGLang multimodal model honours it (seen in qwen3_vl.py).
* transformers: ``AutoModelForImageTextToText`` builds the full model; ``AutoModelForCausalLM``
  builds the text model alone only where it maps to a text-only class
  (models/auto/modeling_auto.py@5.25.0 MODEL_FOR_CAUSAL_LM_MAPPING_NAMES: llama4 ->
  Llama4ForCausalLM, mllama -> MllamaForCausalLM, qwen3_5 / qwen3_5_moe -> *ForCausalLM; gemma3,
  gemma3n, gemma4 map to the full ForConditionalGeneration, Qwen-VL and Mistral3 have none).
* llama.cpp keeps the tower in a separate mmproj GGUF, loaded only with ``--mmproj``
  (tools/mtmd/clip.cpp): its own model buffer on the first GPU (``--no-mmproj-offload`` keeps it
  on the CPU) plus its own compute buffer, allocated after the text model and outside ``--fit``.
* Ollama passes the model's projector to its runner whenever the model has one (llm/server.go:
  ``--mmproj`` for each projector); it has no switch to leave it out. ASSUMPTION: the projector
  is added on top of the layer placement in every Ollama era (before v0.30 Ollama's own estimate
  also reserved it on the first GPU, which could move a layer off; not modelled).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from vramplan.engines.base import EngineResult, Setup
from vramplan.errors import InputError
from vramplan.inventory import TOWER_ROLES, TensorGroup, TensorInventory
from vramplan.model.spec import ModelSpec
from vramplan.quant.schemes import QuantizedModel
from vramplan.result import Component, DeviceEstimate
from vramplan.units import fmt_bytes

# Modalities a tower kind serves (vLLM's limit_mm_per_prompt keys; ProcessingInfo.
# get_supported_mm_limits): a vision tower takes images, and videos for the architectures below.
VIDEO_ARCHITECTURES = frozenset({
    "Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
    "Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration",
    "Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration",
    "Gemma4ForConditionalGeneration"})


def modalities(kind: str, spec: ModelSpec) -> tuple[str, ...]:
    """The vLLM modalities a tower of ``kind`` serves for this model (Llama 4: image only,
    Mllama4ProcessingInfo.get_supported_mm_limits; ASSUMPTION for Gemma 4's video)."""
    if kind == "vision":
        return ("image", "video") if spec.architecture in VIDEO_ARCHITECTURES else ("image",)
    return (kind,)
# SOURCE: vllm/config/multimodal.py get_limit_per_prompt: an unspecified modality allows 999.
VLLM_DEFAULT_LIMIT = 999
# ASSUMPTION: the release from which vLLM skips a tower whose modalities are all limited to 0
# (see the module docstring).
VLLM_TOWER_SKIP_FROM = (0, 19, 1)
# SOURCE: transformers Llama4ImageProcessorFast max_patches default (16 tiles); vLLM's dummy image
# for the profile run is max_patches tiles tall (Mllama4ProcessingInfo.
# get_image_size_with_most_features) and adds one global tile (patches_per_image = 1 + h x w).
# ASSUMPTION: the checkpoint's preprocessor_config.json (not read) keeps the default.
LLAMA4_MAX_TILES = 16
# transformers architectures whose AutoModelForCausalLM class is the text model alone
# (models/auto/modeling_auto.py@5.25.0).
TRANSFORMERS_TEXT_ONLY_CLASS: dict[str, str] = {
    "Llama4ForConditionalGeneration": "Llama4ForCausalLM",
    "MllamaForConditionalGeneration": "MllamaForCausalLM",
    "Qwen3_5ForConditionalGeneration": "Qwen3_5ForCausalLM",
    "Qwen3_5MoeForConditionalGeneration": "Qwen3_5MoeForCausalLM",
}
# SOURCE: sglang python/sglang/srt/configs/model_config.py mm_disabled_models: multimodal off
# unless --enable-multimodal.
SGLANG_MM_DISABLED = frozenset({"Gemma3ForConditionalGeneration",
                                "Llama4ForConditionalGeneration",
                                "Step3VLForConditionalGeneration"})
# ggml bytes per element of an mmproj file type (Q8_0: 34-byte blocks of 32).
MMPROJ_TYPES: dict[str, float] = {"f16": 2.0, "bf16": 2.0, "f32": 4.0, "q8_0": 34 / 32}
F32 = 4


@dataclass(frozen=True, slots=True)
class Tower:
    """One encoder (vision or audio) with its projector, as an engine sees it."""

    kind: str  # vision | audio
    model_type: str
    params: int
    tokens_per_item: int  # context tokens one image / clip costs at most (0: not stated)
    tokens_formula: str
    encoder_tokens_per_item: int = 0  # positions the encoder itself runs over per item (0: unknown)
    hidden_size: int = 0
    intermediate_size: int = 0
    num_heads: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model_type": self.model_type, "params": self.params,
                "tokens_per_item": self.tokens_per_item, "tokens_formula": self.tokens_formula}


def _cfg_int(get: Any, *keys: str) -> int:
    for k in keys:
        v = get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return 0


def llama4_image_tokens(spec: ModelSpec) -> tuple[int, int, str]:
    """(context tokens of the largest image, encoder positions per image, formula), Llama 4.

    Per tile: (image_size / patch_size)^2 patches, pixel shuffle keeps ratio^2 of them
    (vLLM Mllama4ProcessingInfo.get_patch_per_chunk; transformers Llama4VisionPixelShuffleMLP);
    the largest image is LLAMA4_MAX_TILES tiles + 1 global tile. The encoder runs over
    (image_size / patch_size)^2 + 1 positions (class token) per tile. Separator tokens
    (<|tile_y_separator|>, <|image_start|> ...) are text tokens, not encoder outputs.
    """
    v = spec.vision
    assert v is not None
    side = v.image_size // v.patch_size
    ds = round(1.0 / (v.pixel_shuffle_ratio ** 2))
    per_tile = side * side // ds
    tiles = LLAMA4_MAX_TILES + 1
    formula = (f"({v.image_size}/{v.patch_size})^2 = {side * side} patches x pixel shuffle "
               f"{v.pixel_shuffle_ratio}^2 = {per_tile} tokens per {v.image_size}px tile; the "
               f"largest image is {LLAMA4_MAX_TILES} tiles + 1 global = {tiles} x {per_tile}")
    return per_tile * tiles, (side * side + 1) * tiles, formula


@lru_cache(maxsize=256)
def towers(inv: TensorInventory) -> tuple[Tower, ...]:
    """The towers of a model: parameters from the inventory (by role), tokens from the spec."""
    spec = inv.spec
    by_role = inv.params_by_role()
    out: list[Tower] = []
    seen: set[str] = set()
    if spec.vision is not None and by_role.get("vision"):
        v = spec.vision
        tokens, enc, formula = llama4_image_tokens(spec)
        out.append(Tower("vision", v.model_type, by_role["vision"], tokens, formula, enc,
                         v.hidden_size, v.intermediate_size, v.num_heads))
        seen.add("vision")
    for t in spec.towers:
        if t.kind in seen or not by_role.get(t.kind):
            continue
        seen.add(t.kind)
        image, patch = _cfg_int(t.get, "image_size"), _cfg_int(t.get, "patch_size")
        enc = (image // patch) ** 2 if image and patch else 0
        if t.tokens_per_item:
            formula = f"{t.tokens_per_item} tokens per {'image' if t.kind == 'vision' else 'clip'}" \
                      f" ({t.model_type} config)"
        else:
            formula = "not stated by the config"
        out.append(Tower(t.kind, t.model_type, by_role[t.kind], t.tokens_per_item, formula, enc,
                         _cfg_int(t.get, "hidden_size", "d_model"),
                         _cfg_int(t.get, "intermediate_size", "encoder_ffn_dim"),
                         _cfg_int(t.get, "num_attention_heads", "encoder_attention_heads")))
    return tuple(out)


def has_towers(qm: QuantizedModel) -> bool:
    """True when the priced model still holds tower weights (the engine loads them)."""
    return any(e.group.role in TOWER_ROLES for e in qm.entries)


def tower_bytes(qm: QuantizedModel) -> int:
    """Bytes of the tower weights as priced (model dtype; towers are never quantized)."""
    return sum(e.bytes for e in qm.entries if e.group.role in TOWER_ROLES)


# ---------------------------------------------------------------- which engine loads what

def parse_limits(value: object) -> dict[str, int]:
    """``--limit-mm-per-prompt`` JSON (``'{"image":0,"video":0}'``, counts or {"count": n}) or
    ``image=0,video=0`` -> modality -> count."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        raw: Any = value
    else:
        text = str(value).strip()
        try:
            raw = json.loads(text) if text.startswith("{") else \
                {k.strip(): int(v) for k, _, v in (p.partition("=") for p in text.split(",")) if k}
        except ValueError:
            raise InputError("--limit-mm-per-prompt", f"cannot read {text!r}",
                             "write it as JSON, e.g. '{\"image\":0,\"video\":0}'") from None
    if not isinstance(raw, dict):
        raise InputError("--limit-mm-per-prompt", "must be a JSON object",
                         "e.g. '{\"image\":0,\"video\":0}'")
    out: dict[str, int] = {}
    for k, v in raw.items():
        n = v.get("count", VLLM_DEFAULT_LIMIT) if isinstance(v, dict) else v
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InputError("--limit-mm-per-prompt", f"{k}: {n!r} is not a count",
                             "use a whole number >= 0")
        out[str(k)] = n
    return out


def limit_for(kind: str, limits: dict[str, int], spec: ModelSpec) -> int:
    """The largest per-prompt limit over a tower kind's modalities (0: the tower is disabled)."""
    return max(limits.get(m, VLLM_DEFAULT_LIMIT) for m in modalities(kind, spec))


def vllm_limits(options: dict[str, Any], spec: ModelSpec, kinds: tuple[str, ...]
                ) -> dict[str, int]:
    """``--limit-mm-per-prompt`` as given; ``--text-only`` sets every modality to 0."""
    limits = parse_limits(options.get("limit_mm_per_prompt"))
    if options.get("text_only"):
        limits.update({m: 0 for k in kinds for m in modalities(k, spec)})
    return limits


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for p in text.lstrip("v").split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(p):
            break
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class LoadDecision:
    """Which tower kinds an engine loads, and the engine's own mechanism for it."""

    dropped: frozenset[str]  # tower kinds the engine does not load
    mechanism: str  # how the engine is told (flag, class), shown in the JSON
    notes: tuple[str, ...] = ()


def towers_loaded(engine: str, version: str, spec: ModelSpec, kinds: tuple[str, ...],
                  options: dict[str, Any]) -> LoadDecision:
    """Which of ``kinds`` (the model's tower kinds) ``engine`` loads (see the module docstring)."""
    text_only = bool(options.get("text_only"))
    every = frozenset(kinds)
    if not kinds:
        return LoadDecision(frozenset(), "")
    if engine == "vllm":
        limits = vllm_limits(options, spec, kinds)
        off = frozenset(k for k in kinds if limit_for(k, limits, spec) == 0)
        flag = "--limit-mm-per-prompt " + json.dumps(
            {m: 0 for k in sorted(off) for m in modalities(k, spec)}, separators=(",", ":"))
        if not off:
            return LoadDecision(frozenset(), "towers loaded with the model")
        if _version(version) < VLLM_TOWER_SKIP_FROM:
            return LoadDecision(frozenset(), flag, (
                f"vLLM {version} still loads the {'/'.join(sorted(off))} tower with {flag}: only "
                "its profiling is skipped (tower skipping assumed from vLLM 0.19.1)",))
        return LoadDecision(off, f"'{flag}' (or --language-model-only): the tower is not built")
    if engine == "sglang":
        off_by_default = spec.architecture in SGLANG_MM_DISABLED
        if text_only:
            return LoadDecision(every, f"SGLang's default for {spec.architecture}: multimodal off"
                                if off_by_default else
                                "--language-only: the language model alone (ASSUMPTION)")
        if off_by_default and not options.get("enable_multimodal"):
            return LoadDecision(every, f"SGLang's default for {spec.architecture}: multimodal "
                                "off (--enable-multimodal loads the tower)", (
                f"SGLang disables multimodal for {spec.architecture} by default: the vision "
                "tower is not loaded; pass --enable-multimodal to serve images",))
        return LoadDecision(frozenset(), "towers loaded"
                            + (" (--enable-multimodal)" if off_by_default else ""))
    if engine == "transformers":
        cls = TRANSFORMERS_TEXT_ONLY_CLASS.get(spec.architecture)
        if not text_only:
            return LoadDecision(frozenset(), "AutoModelForImageTextToText: towers loaded")
        if cls:
            return LoadDecision(every, f"AutoModelForCausalLM builds {cls}: the text model alone")
        return LoadDecision(frozenset(), "no text-only class", (
            f"transformers has no text-only class for {spec.architecture} "
            "(AutoModelForCausalLM builds the full model or none): the towers stay loaded",))
    if engine == "llamacpp":
        if text_only or not options.get("mmproj"):
            return LoadDecision(every, "no --mmproj: the tower (mmproj GGUF) is not loaded")
        return LoadDecision(frozenset(), f"--mmproj {options['mmproj']}")
    if engine == "ollama":
        notes = ("Ollama loads the model's projector whenever it has one: --text-only has no "
                 "Ollama switch, the tower stays loaded",) if text_only else ()
        return LoadDecision(frozenset(), "projector passed to the runner (--mmproj)", notes)
    if text_only:
        return LoadDecision(every, "--text-only")
    return LoadDecision(frozenset(), "towers loaded with the model")


@lru_cache(maxsize=256)
def without_towers(qm: QuantizedModel, kinds: frozenset[str]) -> QuantizedModel:
    """The priced model without the tower weights of ``kinds`` (cached: stages key on identity)."""
    keep = tuple(e for e in qm.entries if e.group.role not in kinds)
    return replace(qm, entries=keep)


# ---------------------------------------------------------------- vLLM

@dataclass(frozen=True, slots=True)
class VllmMultimodal:
    """vLLM's multimodal terms for one setup."""

    weights_delta_bytes: int  # change of the first stage's per-rank weights (encoder TP split)
    held_bytes: int  # dummy encoder outputs kept alive through the text profile run
    encoder_peak_bytes: int  # transient of the dummy encoder forward (ASSUMPTION)
    figures: dict[str, Any]
    flags: tuple[str, ...]

    def activation(self, text_peak: int) -> int:
        """Torch peak of the profile run (vllm/v1/worker/gpu_model_runner.py profile_run): the
        encoder runs first on the dummy items, its outputs stay cached (``encoder_cache["tmp"]``)
        through the text dummy run and the dummy sampler, then are cleared."""
        return max(text_peak + self.held_bytes, self.encoder_peak_bytes)


def vllm_encoder_budget(max_tokens_per_item: int, max_num_batched_tokens: int) -> tuple[int, int]:
    """(encoder compute budget, encoder cache size) in encoder embeddings.

    vllm/v1/core/encoder_cache_manager.py@003ad86e237cfccb7846111921a0230a45005196
    compute_mm_encoder_budget: both default to max_num_batched_tokens
    (max_num_batched_encoder_embeds / encoder_cache_size unset) and are raised to the largest
    item: compute = max(max_num_batched_tokens, max tokens per item), cache likewise; (0, 0) when
    every modality is disabled.
    """
    if max_tokens_per_item <= 0:
        return 0, 0
    return (max(max_num_batched_tokens, max_tokens_per_item),
            max(max_num_batched_tokens, max_tokens_per_item))


def vllm_items_per_batch(budget: int, tokens_per_item: int, limit: int, max_model_len: int,
                         max_num_seqs: int) -> int:
    """Dummy items of the profile run (vllm/multimodal/encoder_budget.py@042a4d3ee43ed07875505b
    04e93a5a14ddf86964 MultiModalBudget._get_max_items, chunked prefill on):
    max(1, min(budget // tokens, max_num_seqs x max(1, min(limit, max_model_len // tokens)))),
    budget = min(compute budget, cache size); tokens per item count encoder embeddings
    (get_mm_max_toks_per_item: placeholder get_num_embeds), not separator text tokens."""
    if tokens_per_item <= 0 or budget <= 0:
        return 0
    per_prompt = max(1, min(limit, max_model_len // tokens_per_item))
    return max(1, min(budget // tokens_per_item, max_num_seqs * per_prompt))


def encoder_forward_bytes(t: Tower, items: int, tp: int, act_bytes: int) -> int:
    """ASSUMPTION: transient of one encoder forward over ``items`` items: positions x dtype x
    (3 x hidden (residual, normed input, output) + max(3 x hidden / tp (q, k, v), intermediate /
    tp)); flash/SDPA attention keeps no positions^2 scores. 0 when the config does not say."""
    if not (t.encoder_tokens_per_item and t.hidden_size):
        return 0
    n = items * t.encoder_tokens_per_item
    h = t.hidden_size
    return n * act_bytes * (3 * h + max(3 * h // tp, t.intermediate_size // tp))


def _linear_tower_bytes(qm: QuantizedModel) -> int:
    return sum(e.bytes for e in qm.entries if e.group.role in TOWER_ROLES and e.group.linear)


def vllm_multimodal(qm: QuantizedModel, options: dict[str, Any], tp: int, max_model_len: int,
                    max_num_batched_tokens: int, max_num_seqs: int) -> VllmMultimodal:
    """Encoder TP split, encoder budget and the profile run's multimodal terms (per rank)."""
    inv = qm.inventory
    spec = inv.spec
    act_bytes = spec.bytes_per_param
    loaded = {e.group.role for e in qm.entries if e.group.role in TOWER_ROLES}
    mode = str(options.get("mm_encoder_tp_mode") or "weights")
    if mode not in ("weights", "data"):
        raise InputError("--mm-encoder-tp-mode", f"{mode!r} is not a mode", "use weights or data")
    all_towers = towers(inv)
    limits = vllm_limits(options, spec, tuple(t.kind for t in all_towers))
    active = [t for t in all_towers if t.kind in loaded and limit_for(t.kind, limits, spec) > 0]
    lin = _linear_tower_bytes(qm)
    delta = 0
    if tp > 1 and mode == "weights" and lin:
        # linears split 1/tp (column/row/QKV parallel); norms, biases of row layers, class and
        # position embeddings stay replicated
        delta = -(lin - math.ceil(lin / tp))
    figures: dict[str, Any] = {
        "tower_weights_bytes": tower_bytes(qm), "mm_encoder_tp_mode": mode,
        "tower_weights_per_rank_bytes": tower_bytes(qm) + delta,
    }
    flags: list[str] = []
    if options.get("limit_mm_per_prompt") is not None:
        flags.append(f"--limit-mm-per-prompt '{options['limit_mm_per_prompt']}'")
    elif options.get("text_only") and all_towers:
        off = {m: 0 for t in all_towers for m in modalities(t.kind, spec)}
        flags.append(f"--limit-mm-per-prompt '{json.dumps(off, separators=(',', ':'))}'")
    if options.get("mm_encoder_tp_mode") is not None:
        flags.append(f"--mm-encoder-tp-mode {mode}")
    known = [t for t in active if t.tokens_per_item]
    if not known:
        if active:
            figures["encoder_budget_note"] = ("tokens per item not stated by the config: the "
                                              "encoder profile run is not modelled")
        return VllmMultimodal(delta, 0, 0, figures, tuple(flags))
    top = max(known, key=lambda t: t.tokens_per_item)
    compute, cache = vllm_encoder_budget(top.tokens_per_item, max_num_batched_tokens)
    if options.get("skip_mm_profiling"):
        # MultiModalConfig.skip_mm_profiling: only the language model is profiled; the encoder's
        # activations and cached outputs later come out of the KV headroom
        flags.append("--skip-mm-profiling")
        figures.update({"max_tokens_per_item": top.tokens_per_item,
                        "encoder_cache_size_tokens": cache, "encoder_compute_budget_tokens":
                        compute, "encoder_profiling": "skipped (--skip-mm-profiling): up to "
                        f"{cache:,} cached encoder embeddings x hidden {spec.hidden_size} are not "
                        "reserved"})
        return VllmMultimodal(delta, 0, 0, figures, tuple(flags))
    budget = min(compute, cache)
    items = vllm_items_per_batch(budget, top.tokens_per_item, limit_for(top.kind, limits, spec),
                                 max_model_len, max_num_seqs)
    held = items * top.tokens_per_item * spec.hidden_size * act_bytes
    enc_tp = 1 if mode == "data" else tp
    # data mode splits the dummy items over the ranks (run_dp_sharded_vision_model)
    enc_items = -(-items // tp) if mode == "data" else items
    peak = encoder_forward_bytes(top, enc_items, enc_tp, act_bytes)
    figures.update({
        "max_tokens_per_item": top.tokens_per_item, "profiled_modality": top.kind,
        "encoder_compute_budget_tokens": compute, "encoder_cache_size_tokens": cache,
        "profiled_items": items, "encoder_output_bytes": held,
        "encoder_forward_peak_bytes": peak,
        "encoder_output_formula": (f"{items} items x {top.tokens_per_item} tokens x hidden "
                                   f"{spec.hidden_size} x {act_bytes} B"),
    })
    return VllmMultimodal(delta, held, peak, figures, tuple(flags))


NO_VLLM_MULTIMODAL = VllmMultimodal(0, 0, 0, {}, ())


def vllm_stage(setup: Setup, st: dict[str, Any], stage: int) -> VllmMultimodal:
    """The multimodal terms of one vLLM pipeline stage: the towers live on and the encoder runs
    on the first stage only; nothing for a text model."""
    if stage != 0 or not towers(setup.model.inventory):
        return NO_VLLM_MULTIMODAL
    return vllm_multimodal(setup.model, dict(setup.workload.options), setup.parallel.tp,
                           int(st["mml"]), int(st["tokens"]), int(st["seqs"]))


# ---------------------------------------------------------------- SGLang

def sglang_weights_delta(qm: QuantizedModel, tp: int) -> int:
    """Change of the first stage's per-rank weights: the encoder linears split 1/tp, the
    ``multi_modal_projector`` whole (see the module docstring); 0 at tp 1 or with no tower."""
    if tp <= 1:
        return 0
    lin = sum(e.bytes for e in qm.entries if e.group.role in TOWER_ROLES and e.group.linear
              and not e.group.name.startswith("multi_modal_projector"))
    return -(lin - math.ceil(lin / tp))


def sglang_flags(spec: ModelSpec, options: dict[str, Any], has_tower: bool) -> list[str]:
    """SGLang command-line flags for the towers: --enable-multimodal / --language-only."""
    if options.get("text_only"):
        return [] if spec.architecture in SGLANG_MM_DISABLED or not spec_has_towers(spec) \
            else ["--language-only"]
    return ["--enable-multimodal"] if options.get("enable_multimodal") and has_tower else []


def spec_has_towers(spec: ModelSpec) -> bool:
    return spec.vision is not None or bool(spec.towers)


# ---------------------------------------------------------------- llama.cpp mmproj

def mmproj_type(path: str) -> str:
    """The mmproj file's tensor type from its name (``mmproj-...-f16.gguf``); f16 by default,
    the type ``convert_hf_to_gguf.py --mmproj`` writes unless told otherwise."""
    low = path.lower()
    for t in ("q8_0", "bf16", "f32", "f16"):
        if t in low:
            return t
    return "f16"


def mmproj_model_bytes(groups: list[TensorGroup], typ: str) -> int:
    """mmproj model buffer: every 2-D+ tower tensor at the file's type, 1-D tensors (norms,
    biases, class embedding) in F32 as the converter stores them."""
    per = MMPROJ_TYPES[typ]
    total = 0
    for g in groups:
        total += g.numel * F32 if len(g.shape) < 2 else math.ceil(g.numel * per)
    return total


def clip_compute_bytes(t: Tower) -> int:
    """ASSUMPTION: the CLIP compute buffer (clip.cpp reserves its graph for one warm-up image of
    image_size): F32 activations of one encoder layer over T positions, T = encoder positions
    of one tile: 4 x (heads x T^2 (scores) + T x intermediate + 4 x T x hidden). 0 if unknown."""
    tiles = LLAMA4_MAX_TILES + 1 if t.model_type.startswith("llama4") else 1
    n = t.encoder_tokens_per_item // tiles
    if not (n and t.hidden_size):
        return 0
    return F32 * (max(t.num_heads, 1) * n * n + n * t.intermediate_size + 4 * n * t.hidden_size)


def add_mmproj(setup: Setup, res: EngineResult, add_flag: bool) -> EngineResult:
    """llama.cpp / Ollama: when the tower is loaded, add the mmproj model buffer and the CLIP
    compute buffer to the first GPU (the device clip.cpp picks; the CPU with
    ``--no-mmproj-offload``), after the text model's own placement; a device pushed past its
    size becomes the engine's failure."""
    qm = setup.model
    if not has_towers(qm):
        return res
    inv = qm.inventory
    groups = [g for g in inv.tensors if g.role in TOWER_ROLES]
    path = str(setup.workload.options.get("mmproj") or f"mmproj-{inv.spec.model_id.split('/')[-1]}"
                                                      "-f16.gguf")
    typ = mmproj_type(path)
    model_b = mmproj_model_bytes(groups, typ)
    ts = towers(inv)
    compute_b = sum(clip_compute_bytes(t) for t in ts)
    devices = list(res.devices)
    on_cpu = bool(setup.workload.options.get("no_mmproj_offload"))
    idx = next((i for i, d in enumerate(devices) if d.kind == ("cpu" if on_cpu else "gpu")),
               len(devices) - 1)
    d: DeviceEstimate = devices[idx]
    src = "ggml-org/llama.cpp tools/mtmd/clip.cpp"
    comps = (
        Component("mmproj model buffer", model_b, f"{sum(g.numel for g in groups):,} tower params,"
                  f" 2-D tensors {typ}, 1-D F32 ({path})", src, "weights"),
        Component("CLIP compute buffer", compute_b, "one warm-up image through one encoder layer "
                  "in F32 (ASSUMPTION)" if compute_b else "NOT modelled: the tower config gives no "
                  "image_size / patch_size / hidden_size", src, "activation"),
    )
    devices[idx] = replace(d, components=d.components + comps)
    host = res.host_ram_bytes + (model_b + compute_b if d.kind == "cpu" else 0)
    figures = dict(res.figures)
    figures["multimodal"] = {**figures.get("multimodal", {}), "mmproj": {
        "file": path, "type": typ, "device": d.name, "model_bytes": model_b,
        "compute_bytes": compute_b}}
    command = res.command if not add_flag or "--mmproj" in res.command else \
        f"{res.command} --mmproj {path}" + (" --no-mmproj-offload" if on_cpu else "")
    failure, fix = res.failure, res.fix
    new = devices[idx]
    if failure is None and new.capacity_known and new.total_bytes > new.capacity_bytes:
        failure = (f"{new.name}: out of memory loading the mmproj ({fmt_bytes(model_b)} + "
                   f"{fmt_bytes(compute_b)} compute) after the text model "
                   f"({fmt_bytes(new.total_bytes)} > {fmt_bytes(new.capacity_bytes)})")
        fix = "--no-mmproj-offload (projector on the CPU), fewer GPU layers, or --text-only"
    return replace(res, devices=tuple(devices), figures=figures, command=command,
                   failure=failure, fix=fix, host_ram_bytes=host)


# ---------------------------------------------------------------- transformers

def transformers_auto_class(qm: QuantizedModel) -> str:
    """The Auto class the transformers command names: AutoModelForImageTextToText when the
    towers are loaded, else AutoModelForCausalLM (the text model alone where it maps to one)."""
    return "AutoModelForImageTextToText" if has_towers(qm) else "AutoModelForCausalLM"


# ---------------------------------------------------------------- summary for every engine

def summary(inv: TensorInventory, qm: QuantizedModel, decision: LoadDecision) -> dict[str, Any]:
    """The engine-independent multimodal figures (JSON ``engine.multimodal``)."""
    ts = towers(inv)
    return {
        "towers": [t.as_dict() for t in ts],
        "tower_params": inv.params_towers,
        "towers_loaded": has_towers(qm),
        "tower_weights_bytes": tower_bytes(qm),
        "text_only": bool(decision.dropped) and not has_towers(qm),
        "mechanism": decision.mechanism,
    }


def explain_lines(figures: dict[str, Any]) -> list[Any]:
    """--explain lines for the towers: tokens per item, what is loaded, vLLM's encoder budget,
    llama.cpp's mmproj (from the JSON figures ``engine.multimodal``)."""
    from vramplan.result import ExplainLine

    mm = figures.get("multimodal")
    if not mm:
        return []
    out: list[Any] = []
    for t in mm.get("towers", []):
        item = "image" if t["kind"] == "vision" else "clip"
        out.append(ExplainLine(f"{t['kind']} tower", f"{t['model_type']}, {t['params']:,} params;"
                               f" one {item} costs {t['tokens_formula']}",
                               f"{t['tokens_per_item']:,} tokens per {item}" if t["tokens_per_item"]
                               else "tokens not stated", "config.json"))
    loaded = "loaded" if mm.get("towers_loaded") else "not loaded"
    out.append(ExplainLine("tower weights", f"{loaded}: {mm.get('mechanism', '')}",
                           fmt_bytes(int(mm.get("tower_weights_bytes", 0)))))
    if "tower_weights_per_rank_bytes" in mm and mm.get("towers_loaded"):
        out.append(ExplainLine("encoder TP", f"--mm-encoder-tp-mode {mm['mm_encoder_tp_mode']}: "
                               "weights splits each encoder linear over the TP ranks, data keeps "
                               "the whole encoder on every rank",
                               fmt_bytes(int(mm["tower_weights_per_rank_bytes"])) + " per rank",
                               "vllm config/multimodal.py"))
    if "encoder_profiling" in mm:
        out.append(ExplainLine("encoder budget", str(mm["encoder_profiling"]), "not reserved",
                               "vllm config/multimodal.py skip_mm_profiling"))
    elif "encoder_cache_size_tokens" in mm:
        out.append(ExplainLine(
            "encoder budget", f"encoder cache = max(max_num_batched_tokens, {mm['max_tokens_per_item']:,}"
            f" tokens per item) = {mm['encoder_cache_size_tokens']:,} embeddings; the profile run "
            f"keeps {mm['encoder_output_formula']} alive through the text dummy run",
            fmt_bytes(int(mm["encoder_output_bytes"])),
            "vllm v1/core/encoder_cache_manager.py compute_mm_encoder_budget"))
    if "mmproj" in mm:
        p = mm["mmproj"]
        out.append(ExplainLine("mmproj", f"{p['file']} ({p['type']}) on {p['device']} + CLIP compute"
                               " buffer (ASSUMPTION)", f"{fmt_bytes(int(p['model_bytes']))} + "
                               f"{fmt_bytes(int(p['compute_bytes']))}", "llama.cpp tools/mtmd"))
    return out
