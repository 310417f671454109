"""config.json (a dict) -> ModelSpec.

Each architecture's defaults follow the transformers configuration class of the same
``model_type`` (``transformers/models/<type>/configuration_<type>.py``); where a config omits a
key, the class default is used and the spec's ``notes`` say so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from vramplan.errors import ConfigError
from vramplan.model import structure
from vramplan.model.spec import (
    AttentionSpec,
    AttnKind,
    LayerSpec,
    LinearAttnSpec,
    MlpSpec,
    ModelSpec,
    VisionSpec,
)

# model_type -> inventory family (tensor naming and per-layer structure)
FAMILIES: dict[str, str] = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "gemma2": "llama",
    "gemma": "llama",
    "phi3": "phi3",
    "qwen2_moe": "qwen_moe",
    "qwen3_moe": "qwen_moe",
    "mixtral": "mixtral",
    "deepseek_v2": "deepseek",
    "deepseek_v3": "deepseek",
    "kimi_k2": "deepseek",
    "glm4_moe": "glm4_moe",
    "gpt_oss": "gpt_oss",
    "llama4": "llama4",
    "llama4_text": "llama4",
    "qwen3_next": "qwen3_next",
}

# tie_word_embeddings default of each transformers config class when the key is absent.
# SOURCE: transformers/models/<type>/configuration_<type>.py (__init__ defaults), v4.57.
TIE_DEFAULTS: dict[str, bool] = {
    "gemma": True,
    "gemma2": True,
    "qwen3": False,
    "qwen2": False,
    "llama": False,
    "mistral": False,
    "phi3": False,
    "mixtral": False,
    "qwen2_moe": False,
    "qwen3_moe": False,
    "deepseek_v2": False,
    "deepseek_v3": False,
    "kimi_k2": False,
    "glm4_moe": False,
    "gpt_oss": False,
    "llama4_text": False,
    "qwen3_next": False,
}

# Which attention projections carry a bias, per model_type: (q/k/v, o_proj); a string names the
# config key read (its class default after the colon), a bool is fixed by the modeling code.
# SOURCE: transformers 5.25.0 models/<type>/modeling_<type>.py, the *Attention __init__ (MLA:
# q_a_proj and kv_a_proj_with_mqa count as q/k/v). Types not listed follow Llama: both
# ``attention_bias`` (default False).
ATTENTION_BIAS: dict[str, tuple[str | bool, str | bool]] = {
    "mistral": (False, False), "mixtral": (False, False), "phi3": (False, False),
    "qwen2": (True, False), "qwen2_moe": ("qkv_bias:1", False),
    "glm4_moe": ("attention_bias:0", False),
    "gpt_oss": ("attention_bias:1", "attention_bias:1"),
}
# model types whose dense MLP reads ``mlp_bias`` (their modeling_*.py MLP: bias=config.mlp_bias);
# all others have none
MLP_BIAS_TYPES = frozenset({"llama", "smollm3", "falcon_h1", "nemotron_h"})


def _bias_rule(text: Mapping[str, Any], rule: str | bool) -> bool:
    if isinstance(rule, bool):
        return rule
    key, _, default = rule.partition(":")
    val = text.get(key)
    return bool(int(default or 0)) if val is None else bool(val)


def attention_biases(text: Mapping[str, Any], model_type: str) -> tuple[bool, bool]:
    """(q/k/v projections have biases, o_proj has a bias) for ``model_type`` (``ATTENTION_BIAS``)."""
    qkv, out = ATTENTION_BIAS.get(model_type, ("attention_bias:0", "attention_bias:0"))
    return _bias_rule(text, qkv), _bias_rule(text, out)


def mlp_bias(text: Mapping[str, Any], model_type: str) -> bool:
    """Dense-MLP biases: only the types in ``MLP_BIAS_TYPES`` read ``mlp_bias``."""
    if model_type in ("deepseek_v2", "deepseek_v4") and text.get("mlp_bias"):
        raise ConfigError("config.json mlp_bias", f"is true: {model_type}'s expert MLPs would "
                          "carry biases vramplan does not lay out", "set mlp_bias to false")
    return model_type in MLP_BIAS_TYPES and bool(text.get("mlp_bias", False))


# model types whose attention takes hidden_size // num_attention_heads (floor) without head_dim
FLOOR_HEAD_DIM = frozenset({"glm4_moe"})

# Max sane values: beyond these a config is almost surely broken.
_MAX_DIM = 1 << 20
_MAX_LAYERS = 10_000


def _int(cfg: Mapping[str, Any], key: str, default: int | None = None, *, allow_zero: bool = False,
         field_prefix: str = "") -> int:
    """Read a positive integer field, or raise a one-line ConfigError naming it."""
    val = cfg.get(key, default)
    name = f"config.json {field_prefix}{key}"
    if val is None:
        raise ConfigError(name, "is missing", "add it to config.json (see the model card)")
    if isinstance(val, bool) or not isinstance(val, int | float) or int(val) != val:
        raise ConfigError(name, f"must be an integer, got {val!r}", "fix the value in config.json")
    ival = int(val)
    if ival < 0 or (ival == 0 and not allow_zero):
        raise ConfigError(name, f"must be positive, got {ival}", "fix the value in config.json")
    if ival > _MAX_DIM and key not in ("max_position_embeddings", "vocab_size"):
        raise ConfigError(name, f"is implausibly large ({ival})", "fix the value in config.json")
    return ival


def _int0(cfg: Mapping[str, Any], key: str, default: int) -> int:
    """An optional non-negative integer field; absent or null means ``default``."""
    if cfg.get(key) is None:
        return default
    return _int(cfg, key, allow_zero=True)


def _int_list(cfg: Mapping[str, Any], key: str) -> list[int]:
    """An optional list of non-negative integers (mlp_only_layers, no_rope_layers)."""
    val = cfg.get(key)
    if val is None:
        return []
    if not isinstance(val, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                            and x >= 0 for x in val):
        raise ConfigError(f"config.json {key}", "must be a list of layer indices or flags",
                          "fix the value in config.json")
    return list(val)


def _opt_int(cfg: Mapping[str, Any], key: str) -> int | None:
    val = cfg.get(key)
    if val is None:
        return None
    return _int(cfg, key)


def _window(cfg: Mapping[str, Any]) -> int | None:
    """``sliding_window``; 0 or null means none (transformers 5 Qwen2MoeConfig stores 0 when
    use_sliding_window is off)."""
    return _int0(cfg, "sliding_window", 0) or None


def _dtype(cfg: Mapping[str, Any]) -> str:
    raw = cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"
    raw = str(raw).replace("torch.", "")
    if raw in ("float16", "bfloat16", "float32"):
        return raw
    return "bfloat16"


def _text_config(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    tc = cfg.get("text_config")
    if isinstance(tc, Mapping):
        merged = dict(tc)
        for key in ("torch_dtype", "dtype", "quantization_config", "tie_word_embeddings"):
            if key in cfg and key not in merged:
                merged[key] = cfg[key]
        return merged
    return cfg


# Structure categories (``model/structure.py``) each built-in family interprets.
_MOE = frozenset({"moe"})
BUILTIN_HANDLES: dict[str, frozenset[str]] = {
    "llama": frozenset(),
    "mistral": frozenset({"sliding_window"}),
    "qwen2": frozenset({"sliding_window"}),
    "qwen3": frozenset({"sliding_window"}),
    "gemma": frozenset(),
    "gemma2": frozenset({"sliding_window"}),
    "phi3": frozenset({"sliding_window"}),
    "qwen2_moe": _MOE | {"sliding_window"},
    "qwen3_moe": _MOE | {"sliding_window"},
    "mixtral": _MOE | {"sliding_window"},
    "deepseek_v2": _MOE | {"mla"},
    "deepseek_v3": _MOE | {"mla"},
    "kimi_k2": _MOE | {"mla"},
    "glm4_moe": _MOE,
    "gpt_oss": _MOE | {"sliding_window"},
    "llama4_text": _MOE | {"pattern", "vision", "layer_types"},
    "qwen3_next": _MOE | {"linear_attention", "layer_types", "sliding_window"},
}

# architectures[0] -> model_type of the built-in families (recovers a renamed model_type).
BUILTIN_ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3", "GemmaForCausalLM": "gemma", "Gemma2ForCausalLM": "gemma2",
    "Phi3ForCausalLM": "phi3", "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe", "MixtralForCausalLM": "mixtral",
    "DeepseekV2ForCausalLM": "deepseek_v2", "DeepseekV3ForCausalLM": "deepseek_v3",
    "Glm4MoeForCausalLM": "glm4_moe", "GptOssForCausalLM": "gpt_oss",
    "Llama4ForConditionalGeneration": "llama4", "Llama4ForCausalLM": "llama4_text",
    "Qwen3NextForCausalLM": "qwen3_next",
}

def _recovered_types(types: list[str], arch: str, wrapped: bool) -> tuple[str | None, str | None]:
    """(top-level model_type, text_config model_type) for a config recovered by its
    ``architectures`` class, among the ``types`` its family registers.

    The base type is the one whose name is the class name's stem (``Qwen3VLMoeForConditional
    Generation`` -> ``qwen3_vl_moe``, ignoring case and underscores), else the first registered.
    A multimodal wrapper (a ``text_config``) keeps the base at the top and gets the base's text
    type (``<base>_text`` / ``<base>_text_model``, as transformers names them) inside; a config
    without ``text_config`` is the text model itself, so it takes the text type when the family
    has one (Gemma-3-1B: ``Gemma3ForCausalLM`` with ``gemma3_text``).
    """
    if not types:
        return None, None

    def norm(t: str) -> str:
        return t.replace("_", "").replace("-", "").lower()

    stem = norm(arch.split("For", 1)[0])
    base = next((t for t in types if norm(t) == stem), None)
    if base is None:
        base = next((t for t in types if not t.endswith(("_text", "_text_model"))), types[0])
    text = next((t for t in (f"{base}_text", f"{base}_text_model") if t in types), None)
    if wrapped:
        return base, text
    return text or base, None


def _structure_refusal(model_type: str, arch: str, known: bool,
                       left: dict[str, list[str]]) -> ConfigError:
    keys = sorted({k for ks in left.values() for k in ks})
    cats = ", ".join(sorted(c.split(":")[0] for c in left if c != structure.UNKNOWN_FAMILY))
    fix = ("pass a model folder (or Hub id) with its *.safetensors headers for exact weights, "
           "or a config of a supported family (`vramplan models`)")
    if not known:
        fix += "; a fine-tune of a supported model: set architectures to its class"
        what = (f"model_type {model_type!r} (architectures {arch!r}) is not a family vramplan "
                "knows: biases and extra norms are not written in config.json")
        what += f", nor this structure ({cats})" if cats else ""
        return ConfigError(f"config.json {', '.join(keys)}", what + ", so its size would be a "
                           "guess", fix)
    return ConfigError(f"config.json {', '.join(keys)}",
                       f"model_type {model_type!r} does not use this structure ({cats}), so its "
                       "size would be a guess", fix)


def spec_from_config(cfg: Mapping[str, Any], model_id: str = "local",
                     extra_quant: Mapping[str, Any] | None = None, *,
                     headers_available: bool = False) -> ModelSpec:
    """Normalize a parsed config.json into a ModelSpec, or raise ConfigError naming the field.

    Dispatch: a registered family module (``vramplan.families``), else the built-in core. A
    config whose ``model_type`` is unknown is recovered by its ``architectures`` class. A config
    with structure its family does not interpret (``model/structure.py``), or of no known family
    at all, is refused, unless ``headers_available`` (weights then come from the safetensors or
    GGUF headers and the KV of the generic reading is marked approximate).
    """
    from vramplan import families

    if not isinstance(cfg, Mapping):
        raise ConfigError("config.json", "is not a JSON object", "pass the model's config.json")
    top_type = str(cfg.get("model_type", ""))
    text = _text_config(cfg)
    model_type = str(text.get("model_type", top_type)) or top_type
    if not model_type:
        raise ConfigError("config.json model_type", "is missing",
                          "add model_type (e.g. \"llama\") to config.json")
    archs = cfg.get("architectures") or ["?"]
    arch = str(archs[0]) if isinstance(archs, list) and archs else "?"
    notes: list[str] = []
    fam = families.family_for(top_type) or families.family_for(model_type)
    core_type = "llama4_text" if top_type == "llama4" else model_type
    if fam is None and core_type not in FAMILIES:
        recovered_fam = families.ARCHITECTURES.get(arch)
        recovered_type = BUILTIN_ARCHITECTURES.get(arch)
        if recovered_fam is not None:
            new_type, text_type = _recovered_types(
                [t for t, f in families.MODEL_TYPES.items() if f == recovered_fam], arch,
                isinstance(cfg.get("text_config"), Mapping))
        else:
            new_type, text_type = recovered_type, None
        if new_type is not None:
            fixed = dict(cfg)
            fixed["model_type"] = new_type
            if isinstance(cfg.get("text_config"), Mapping):
                fixed["text_config"] = {k: v for k, v in cfg["text_config"].items()
                                        if k != "model_type"}
                if text_type is not None:
                    fixed["text_config"]["model_type"] = text_type
            spec = spec_from_config(fixed, model_id, extra_quant,
                                    headers_available=headers_available)
            note = (f"model_type {model_type!r} is unknown; read as {new_type!r} from "
                    f"architectures {arch!r}")
            return replace(spec, notes=(note, *spec.notes))
    module = families.family_module(fam) if fam else None
    if module is not None:
        handles: frozenset[str] = module.HANDLES
    else:
        handles = BUILTIN_HANDLES.get(core_type, frozenset())
    known = module is not None or core_type in FAMILIES
    left = structure.unexplained(cfg, text, handles, family_known=known)
    if left:
        if not headers_available:
            raise _structure_refusal(model_type, arch, known, left)
        cats = sorted(c for c in left if c != structure.UNKNOWN_FAMILY)
        what = (f"model_type {model_type!r} is not a known family" if not known else "")
        what += ("; " if what and cats else "") + (
            f"structure not interpreted ({', '.join(cats)})" if cats else "")
        notes.append(what + ": weights are exact from the checkpoint's tensor headers; KV and "
                     "activations are APPROXIMATE (read as a plain decoder)")
        return generic_spec(_strip_structure(cfg, left), model_id, extra_quant,
                            model_type=model_type, family="llama", notes=notes)
    spec = module.spec(cfg, model_id, extra_quant) if module is not None else \
        generic_spec(cfg, model_id, extra_quant)
    assert isinstance(spec, ModelSpec)
    check_mlp_layer_types(text, spec)
    check_experts_read(text, spec)
    return spec


_EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")


def check_experts_read(text: Mapping[str, Any], spec: ModelSpec) -> None:
    """A config that names more than one expert must come out with mixture-of-experts layers:
    reading it as dense would size a 30B MoE as a 2B model (the worst answer, a false "fits")."""
    n = 0
    for key in _EXPERT_COUNT_KEYS:
        v = text.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            n = max(n, v)
    if n > 1 and not spec.is_moe:
        keys = [k for k in _EXPERT_COUNT_KEYS if text.get(k)]
        raise ConfigError(f"config.json {', '.join(keys)}",
                          f"names {n} experts but no layer was read as mixture-of-experts "
                          "(a key this family spells differently?)",
                          "pass a model folder (or Hub id) with its *.safetensors headers, or "
                          "report the config")


def check_mlp_layer_types(text: Mapping[str, Any], spec: ModelSpec) -> None:
    """A transformers-5 ``mlp_layer_types`` list ("dense" / "sparse" or "moe" per layer) must
    agree with the MLP of every layer read: otherwise the config says something this reading
    missed, and it is refused rather than mis-sized."""
    val = text.get("mlp_layer_types")
    if not isinstance(val, list) or not val:
        return
    want = {"dense": "dense", "sparse": "moe", "moe": "moe", "hash_moe": "moe"}
    for layer, t in zip(spec.layers, val, strict=False):
        kind = want.get(str(t))
        if kind is None or (layer.mlp.kind != kind and layer.mlp.kind != "none"):
            raise ConfigError("config.json mlp_layer_types",
                              f"layer {layer.index} is {t!r} but the rest of the config makes it "
                              f"{layer.mlp.kind}", "make mlp_layer_types agree with "
                              "first_k_dense_replace / the expert keys")


def _strip_structure(cfg: Mapping[str, Any], left: Mapping[str, list[str]]) -> dict[str, Any]:
    """The config without the keys of uninterpreted structure (for the approximate reading)."""
    drop = {k for cat, ks in left.items() if cat != structure.UNKNOWN_FAMILY for k in ks}
    out = {k: v for k, v in cfg.items() if k not in drop}
    if isinstance(cfg.get("text_config"), Mapping):
        tc = {k: v for k, v in cfg["text_config"].items() if k not in drop}
        for key in ("intermediate_size", "num_key_value_heads", "num_attention_heads", "head_dim"):
            if isinstance(tc.get(key), list) and tc[key]:
                tc[key] = max(tc[key])
        out["text_config"] = tc
    for key in ("intermediate_size", "num_key_value_heads", "num_attention_heads", "head_dim"):
        if isinstance(out.get(key), list) and out[key]:
            out[key] = max(out[key])
    return out


LayerFn = Callable[[Mapping[str, Any], int], LayerSpec]


def generic_spec(cfg: Mapping[str, Any], model_id: str = "local",
                 extra_quant: Mapping[str, Any] | None = None, *, model_type: str | None = None,
                 family: str | None = None, notes: list[str] | None = None,
                 layer_fn: LayerFn | None = None) -> ModelSpec:
    """The core reading of a config: shared fields, then per-layer attention and MLP.

    Family modules call this with their ``family`` and, where layers differ from the core's,
    a ``layer_fn(text_config, index) -> LayerSpec``; then ``dataclasses.replace`` what else
    differs (towers, family_params, biases).
    """
    top_type = str(cfg.get("model_type", ""))
    text = _text_config(cfg)
    if model_type is None:
        model_type = str(text.get("model_type", top_type)) or top_type
        if top_type == "llama4":
            model_type = "llama4_text"
    archs = cfg.get("architectures") or ["?"]
    arch = str(archs[0]) if isinstance(archs, list) and archs else "?"
    notes = list(notes or [])
    if family is None:
        family = FAMILIES.get(model_type, "llama")

    hidden = _int(text, "hidden_size")
    n_layers = _int(text, "num_hidden_layers")
    if n_layers > _MAX_LAYERS:
        raise ConfigError("config.json num_hidden_layers", f"is implausibly large ({n_layers})",
                          "fix the value in config.json")
    heads = _int(text, "num_attention_heads")
    kv_heads = _int(text, "num_key_value_heads", heads)
    vocab = _int(text, "vocab_size")
    if "head_dim" in text and text["head_dim"] is not None:
        head_dim = _int(text, "head_dim")
    elif text.get("kv_lora_rank") or model_type in FLOOR_HEAD_DIM:
        # MLA: head sizes come from qk_nope/qk_rope/v_head_dim; GLM-4.5 (Glm4MoeAttention,
        # transformers 5.25.0): ``head_dim or hidden_size // num_attention_heads`` (floor)
        head_dim = hidden // heads
    else:
        if hidden % heads:
            raise ConfigError("config.json head_dim",
                              f"is missing and hidden_size {hidden} is not divisible by "
                              f"num_attention_heads {heads}", "add head_dim to config.json")
        head_dim = hidden // heads
    if heads % kv_heads:
        raise ConfigError("config.json num_key_value_heads",
                          f"{kv_heads} does not divide num_attention_heads {heads}",
                          "fix num_key_value_heads in config.json")
    max_pos = _int(text, "max_position_embeddings", 4096)
    if "max_position_embeddings" not in text:
        notes.append("max_position_embeddings missing: assumed 4096")
    tie_raw = text.get("tie_word_embeddings")
    if tie_raw is None:
        tie = TIE_DEFAULTS.get(model_type, False)
        notes.append(f"tie_word_embeddings absent: {model_type} default is {tie}")
    else:
        tie = bool(tie_raw)

    quant = cfg.get("quantization_config") or text.get("quantization_config")
    if extra_quant is not None:
        quant = dict(extra_quant)
    quant_dict = dict(quant) if isinstance(quant, Mapping) else None

    layer_kinds = [] if layer_fn is not None else _attention_kinds(text, model_type, n_layers,
                                                                    max_pos)
    window = _window(text)
    chunk = _opt_int(text, "attention_chunk_size")

    layers: list[LayerSpec] = []
    for i in range(n_layers):
        if layer_fn is not None:
            layers.append(layer_fn(text, i))
            continue
        kind = layer_kinds[i]
        attn = _attention(text, family, kind, heads, kv_heads, head_dim, window, chunk)
        mlp = _mlp(text, family, model_type, i, n_layers)
        layers.append(LayerSpec(index=i, attention=attn, mlp=mlp))

    mtp = _int0(text, "num_nextn_predict_layers", 0)
    if model_type == "qwen3_next":
        mtp = 1  # Qwen3-Next checkpoints ship one mtp.* block (not in config.json)
    vision = _vision(cfg) if top_type == "llama4" else None
    if top_type == "llama4" and cfg.get("vision_config") is None:
        notes.append("vision_config absent: transformers builds Llama4VisionConfig's default tower "
                     "(768 wide, 34 layers) for Llama4ForConditionalGeneration; counted as such")

    qkv_bias, out_bias = attention_biases(text, model_type)
    spec = ModelSpec(
        model_id=model_id,
        model_type=model_type,
        family=family,
        architecture=arch,
        hidden_size=hidden,
        vocab_size=vocab,
        layers=tuple(layers),
        tie_word_embeddings=tie,
        max_position_embeddings=max_pos,
        torch_dtype=_dtype(text if ("torch_dtype" in text or "dtype" in text) else cfg),
        attention_bias=qkv_bias,
        attention_out_bias=out_bias,
        qk_norm=model_type in ("qwen3", "qwen3_moe", "qwen3_next")
        or (model_type == "glm4_moe" and bool(text.get("use_qk_norm", False))),
        mlp_bias=mlp_bias(text, model_type),
        norms_per_layer=4 if model_type in ("gemma2",) else 2,
        attention_sinks=model_type == "gpt_oss",
        mtp_layers=mtp,
        vision=vision,
        prefix="language_model.model" if top_type == "llama4" else "model",
        lm_head_name="language_model.lm_head" if top_type == "llama4" else "lm_head",
        quantization_config=quant_dict,
        notes=tuple(notes),
    )
    return spec


def _attention_kinds(text: Mapping[str, Any], model_type: str, n_layers: int,
                     max_pos: int) -> list[AttnKind]:
    """Per-layer attention kind from layer_types / model-specific patterns."""
    if "kv_lora_rank" in text and text.get("kv_lora_rank"):
        return ["mla"] * n_layers
    lt = text.get("layer_types")
    mapping: dict[str, AttnKind] = {
        "full_attention": "full",
        "sliding_attention": "sliding",
        "linear_attention": "linear",
        "chunked_attention": "chunked",
    }
    if isinstance(lt, list) and lt:
        if len(lt) != n_layers:
            raise ConfigError("config.json layer_types",
                              f"has {len(lt)} entries for {n_layers} layers",
                              "make layer_types as long as num_hidden_layers")
        out: list[AttnKind] = []
        for t in lt:
            if t not in mapping:
                raise ConfigError("config.json layer_types", f"unknown layer type {t!r}",
                                  "use full_attention, sliding_attention or linear_attention")
            out.append(mapping[str(t)])
        return out
    if model_type == "qwen3_next":
        interval = _int(text, "full_attention_interval", 4)
        return ["full" if (i + 1) % interval == 0 else "linear" for i in range(n_layers)]
    if model_type == "gemma2":
        # transformers Gemma2DecoderLayer: is_sliding = not bool(layer_idx % 2)
        return ["sliding" if i % 2 == 0 else "full" for i in range(n_layers)]
    if model_type == "llama4_text":
        # transformers Llama4TextConfig: no_rope_layers default [int((i+1) % 4 != 0)];
        # RoPE layers use chunked attention (attention_chunk_size), NoPE layers attend fully.
        nope = _int_list(text, "no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(n_layers)]
        if len(nope) < n_layers:
            raise ConfigError("config.json no_rope_layers", f"has {len(nope)} entries for "
                              f"{n_layers} layers", "make it as long as num_hidden_layers")
        chunked = text.get("attention_chunk_size")
        return ["chunked" if (nope[i] and chunked) else "full" for i in range(n_layers)]
    window = _window(text)
    use_sw = text.get("use_sliding_window", True)
    if window and use_sw and window < max_pos and model_type in ("mistral", "mixtral",
                                                                        "qwen2", "generic"):
        if model_type == "qwen2":
            mwl = _int0(text, "max_window_layers", n_layers)
            return ["sliding" if i >= mwl else "full" for i in range(n_layers)]
        return ["sliding"] * n_layers
    return ["full"] * n_layers


def _attention(text: Mapping[str, Any], family: str, kind: AttnKind, heads: int, kv_heads: int,
               head_dim: int, window: int | None, chunk: int | None) -> AttentionSpec:
    if kind == "mla":
        nope = _int(text, "qk_nope_head_dim")
        rope = _int(text, "qk_rope_head_dim")
        v_dim = _int(text, "v_head_dim")
        return AttentionSpec(kind="mla", num_heads=heads, num_kv_heads=heads,
                             head_dim=nope + rope, v_head_dim=v_dim,
                             q_lora_rank=_opt_int(text, "q_lora_rank"),
                             kv_lora_rank=_int(text, "kv_lora_rank"),
                             qk_rope_head_dim=rope, qk_nope_head_dim=nope)
    if kind == "linear":
        lin = LinearAttnSpec(
            num_key_heads=_int(text, "linear_num_key_heads"),
            num_value_heads=_int(text, "linear_num_value_heads"),
            key_head_dim=_int(text, "linear_key_head_dim"),
            value_head_dim=_int(text, "linear_value_head_dim"),
            conv_kernel=_int(text, "linear_conv_kernel_dim"),
        )
        return AttentionSpec(kind="linear", num_heads=heads, num_kv_heads=kv_heads,
                             head_dim=head_dim, v_head_dim=head_dim, linear=lin)
    win = window if kind == "sliding" else chunk if kind == "chunked" else None
    if kind in ("sliding", "chunked") and not win:
        raise ConfigError("config.json sliding_window", "is missing for a sliding-window layer",
                          "add sliding_window to config.json")
    return AttentionSpec(kind=kind, num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
                         v_head_dim=head_dim, window_tokens=win)


def _is_moe_layer(text: Mapping[str, Any], family: str, i: int, n_layers: int) -> bool:
    if family == "deepseek" or family == "glm4_moe":
        n_exp = _int0(text, "n_routed_experts", 0)
        first = _int0(text, "first_k_dense_replace", 0)
        freq = _int0(text, "moe_layer_freq", 1) or 1
        return n_exp > 0 and i >= first and i % freq == 0
    if family in ("qwen_moe", "qwen3_next"):
        if not (text.get("num_experts") or text.get("num_local_experts")):
            return False  # transformers 5 Qwen3MoeConfig spells it num_local_experts
        step = _int0(text, "decoder_sparse_step", 1) or 1
        only = _int_list(text, "mlp_only_layers")
        return i not in only and (i + 1) % step == 0
    if family == "llama4":
        step = _int0(text, "interleave_moe_layer_step", 1)
        return (i + 1) % step == 0 if step > 0 else False
    if family in ("mixtral", "gpt_oss"):
        return True
    return False


def _mlp(text: Mapping[str, Any], family: str, model_type: str, i: int, n_layers: int) -> MlpSpec:
    if not _is_moe_layer(text, family, i, n_layers):
        key = "intermediate_size_mlp" if family == "llama4" else "intermediate_size"
        return MlpSpec(kind="dense", intermediate_size=_int(text, key))
    exp_key = next((k for k in ("num_experts", "n_routed_experts", "num_local_experts")
                    if text.get(k)), "num_experts")
    n_exp = _int0(text, exp_key, 0)
    if n_exp <= 0:
        raise ConfigError("config.json num_experts", "is missing for a mixture-of-experts model",
                          "add num_experts / n_routed_experts to config.json")
    top_k = _int(text, "num_experts_per_tok", text.get("experts_per_token"))
    if top_k > n_exp:
        raise ConfigError("config.json num_experts_per_tok",
                          f"{top_k} is more than the {n_exp} experts", "fix it in config.json")
    if family in ("mixtral", "gpt_oss", "llama4"):
        e_inter = _int(text, "intermediate_size")
    else:
        e_inter = _int(text, "moe_intermediate_size")
    shared = 0
    shared_gate = False
    if family in ("deepseek", "glm4_moe"):
        shared = _int0(text, "n_shared_experts", 0) * e_inter
    elif family in ("qwen_moe", "qwen3_next"):
        shared = _int0(text, "shared_expert_intermediate_size", 0)
        # Qwen2MoeSparseMoeBlock / Qwen3NextSparseMoeBlock build shared_expert_gate whatever the
        # shared width (transformers 5.25.0); Qwen3-MoE has no shared expert at all
        shared_gate = shared > 0 or model_type in ("qwen2_moe", "qwen3_next")
    elif family == "llama4":
        shared = _int(text, "intermediate_size")
    return MlpSpec(
        kind="moe",
        intermediate_size=_int0(text, "intermediate_size", 0),
        num_experts=n_exp,
        top_k=top_k,
        expert_intermediate_size=e_inter,
        shared_intermediate_size=shared,
        shared_expert_gate=shared_gate,
        router_bias=family == "gpt_oss",
        expert_bias=family == "gpt_oss",
        # DeepSeek-V3's router always holds e_score_correction_bias (transformers
        # models/deepseek_v3/modeling_deepseek_v3.py DeepseekV3TopkRouter @5.25.0, even when a
        # trimmed config omits topk_method); DeepSeek-V2 only with topk_method "noaux_tc".
        score_correction_bias=(family == "deepseek" and (
            text.get("topk_method", "noaux_tc" if model_type in ("deepseek_v3", "kimi_k2")
                     else "greedy") == "noaux_tc")) or family == "glm4_moe",
    )


# Llama4VisionConfig class defaults (transformers 5.25.0 models/llama4/configuration_llama4.py):
# Llama4Config builds this tower when vision_config is absent.
LLAMA4_VISION_DEFAULTS: dict[str, Any] = {
    "model_type": "llama4_vision_model", "hidden_size": 768, "intermediate_size": 5632,
    "num_hidden_layers": 34, "num_attention_heads": 16, "patch_size": 14, "image_size": 448,
    "num_channels": 3, "projector_input_dim": 4096, "projector_output_dim": 4096,
    "vision_output_dim": 7680,
}


def _vision(cfg: Mapping[str, Any]) -> VisionSpec | None:
    vc = cfg.get("vision_config")
    if vc is None and cfg.get("model_type") == "llama4":
        vc = LLAMA4_VISION_DEFAULTS
    if not isinstance(vc, Mapping):
        return None
    text = _text_config(cfg)
    p = "vision_config."
    return VisionSpec(
        model_type=str(vc.get("model_type", "vision")),
        hidden_size=_int(vc, "hidden_size", field_prefix=p),
        intermediate_size=_int(vc, "intermediate_size", field_prefix=p),
        num_layers=_int(vc, "num_hidden_layers", field_prefix=p),
        num_heads=_int(vc, "num_attention_heads", field_prefix=p),
        patch_size=_int(vc, "patch_size", field_prefix=p),
        image_size=_int(vc, "image_size", field_prefix=p),
        num_channels=_int(vc, "num_channels", 3, field_prefix=p),
        projector_input_dim=_int(vc, "projector_input_dim", field_prefix=p),
        projector_output_dim=_int(vc, "projector_output_dim", field_prefix=p),
        vision_output_dim=_int(vc, "vision_output_dim", field_prefix=p),
        text_hidden_size=_int(text, "hidden_size"),
        pixel_shuffle_ratio=_ratio(vc.get("pixel_shuffle_ratio", 0.5)),
    )


def _ratio(value: Any) -> float:
    """vision_config.pixel_shuffle_ratio: a fraction in (0, 1] (transformers Llama4VisionConfig
    default 0.5; tokens per tile = patches x ratio^2)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError("vision_config.pixel_shuffle_ratio", f"must be in (0, 1], got {value!r}",
                          "use the checkpoint's config.json (Llama 4: 0.5)")
    return float(value)


# Public names for family modules (``vramplan/families/*.py``).
read_int = _int
read_int0 = _int0
read_opt_int = _opt_int
read_int_list = _int_list
text_config = _text_config
attention_spec = _attention
core_mlp = _mlp
core_attention_kinds = _attention_kinds
