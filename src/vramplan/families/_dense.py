"""Helpers shared by the dense decoder families (smollm3, olmo2/olmo3, mllama, mistral3, ...).

Class defaults: each family fills the keys its transformers configuration class defaults (when a
config omits them) through ``with_defaults`` so that ``hf_config.generic_spec`` reads the same
values transformers would, and the spec's notes say which defaults were taken.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vramplan.errors import ConfigError
from vramplan.inventory import TensorGroup, _attention, _gated_mlp, _vec
from vramplan.model import hf_config
from vramplan.model.spec import AttnKind, LayerSpec, ModelSpec

LayerTensors = Callable[[ModelSpec, str, LayerSpec], list[TensorGroup]]


def read_layer_types(text: Mapping[str, Any], n_layers: int) -> list[str] | None:
    """``layer_types`` as written (``full_attention`` / ``sliding_attention`` per layer), or None
    when the config omits it (the family then takes its class default); a wrong length or an
    unknown type is a one-line ConfigError."""
    types = text.get("layer_types")
    if types is None:
        return None
    if not isinstance(types, list) or len(types) != n_layers:
        raise ConfigError("config.json layer_types", f"must list {n_layers} layer types",
                          "make layer_types as long as num_hidden_layers")
    for t in types:
        if t not in ("full_attention", "sliding_attention"):
            raise ConfigError("config.json layer_types", f"unknown layer type {t!r}",
                              "use full_attention or sliding_attention")
    return [str(t) for t in types]


def dense_spec(cfg: Mapping[str, Any], model_id: str, extra_quant: Mapping[str, Any] | None, *,
               model_type: str, family: str, kinds: list[AttnKind], heads: int, kv_heads: int,
               head_dim: int, window: int | None, notes: list[str]) -> ModelSpec:
    """``hf_config.generic_spec`` for a dense decoder whose per-layer attention kinds the family
    has worked out (sliding / full patterns and their class defaults): every layer gets the
    same heads and head size and a dense gated MLP of ``intermediate_size``."""
    n_layers = len(kinds)

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn = hf_config.attention_spec(t, family, kinds[i], heads, kv_heads, head_dim,
                                        window, None)
        return LayerSpec(index=i, attention=attn,
                         mlp=hf_config.core_mlp(t, "llama", model_type, i, n_layers))

    return hf_config.generic_spec(cfg, model_id, extra_quant, model_type=model_type,
                                  family=family, notes=notes, layer_fn=layer_fn)


def with_defaults(cfg: Mapping[str, Any], defaults: Mapping[str, object], source: str, *,
                  keep_null: frozenset[str] = frozenset()) -> tuple[dict[str, Any], list[str]]:
    """``cfg`` with the text config's absent (or null) keys set to the class ``defaults``.

    A key in ``keep_null`` keeps an explicit null (transformers then sees None, e.g. no window).
    The text config is ``cfg["text_config"]`` for a composite (multimodal) config, else ``cfg``.
    Returns the new config and one note per default taken, naming ``source`` (the transformers
    configuration file the defaults come from).
    """
    out = dict(cfg)
    nested = isinstance(cfg.get("text_config"), Mapping)
    text = dict(cfg["text_config"]) if nested else out
    notes: list[str] = []
    for key, val in defaults.items():
        if key not in text or (text[key] is None and key not in keep_null):
            text[key] = val
            notes.append(f"{key} absent: {val!r} ({source} default)")
    if nested:
        out["text_config"] = text
    return out, notes


def composite_tie(cfg: Mapping[str, Any], class_default: bool, text_default: bool,
                  model_type: str) -> tuple[bool, list[str]]:
    """tie_word_embeddings of a composite (text + tower) config.

    transformers 5.25.0 ties ``lm_head`` to the text embedding by the TOP-LEVEL config's
    ``tie_word_embeddings`` (modeling_utils.py ``get_expanded_tied_weights_keys`` reads
    ``self.config.tie_word_embeddings``; the ForConditionalGeneration's config is the composite
    one). An explicit top-level key therefore wins. When it is absent, the text config's key
    (or the text class default) is used: that is what the engines read (vLLM builds the text
    model from ``text_config``) and what the published checkpoints store; a note says where
    transformers' own class default (``class_default``) would differ.
    """
    notes: list[str] = []
    top = cfg.get("tie_word_embeddings")
    tc = cfg.get("text_config")
    text_val = tc.get("tie_word_embeddings") if isinstance(tc, Mapping) else None
    if top is not None:
        if text_val is not None and bool(text_val) != bool(top):
            notes.append(f"tie_word_embeddings: top level {bool(top)} overrides text_config "
                         f"{bool(text_val)} (transformers 5.25 ties by the top-level key; an "
                         "engine that reads text_config would load a separate lm_head)")
        return bool(top), notes
    tie = bool(text_val) if text_val is not None else text_default
    if tie != class_default:
        notes.append(f"tie_word_embeddings absent at the top level: read {tie} from the text "
                     f"config (transformers' {model_type} class default is {class_default})")
    return tie, notes


def post_norm_layer(spec: ModelSpec, lp: str, layer: LayerSpec, q_norm: int,
                    k_norm: int) -> list[TensorGroup]:
    """A post-norm decoder layer (Olmo2DecoderLayer, Exaone4DecoderLayer, transformers 5.25.0):
    q/k/v/o, ``self_attn.q_norm [q_norm]`` / ``k_norm [k_norm]`` (full projection width for
    OLMo-2/3, one head for EXAONE-4), ``post_attention_layernorm`` and
    ``post_feedforward_layernorm [hidden]`` (no input norm), gated MLP."""
    i, h = layer.index, spec.hidden_size
    out = _attention(spec, f"{lp}.self_attn", i, layer.attention, "attention")
    out += [_vec(f"{lp}.self_attn.q_norm.weight", q_norm, "norm", i),
            _vec(f"{lp}.self_attn.k_norm.weight", k_norm, "norm", i)]
    out += [_vec(f"{lp}.{n}.weight", h, "norm", i)
            for n in ("post_attention_layernorm", "post_feedforward_layernorm")]
    out += _gated_mlp(f"{lp}.mlp", h, layer.mlp.intermediate_size, "mlp", i)
    return out


def decoder_tensors(spec: ModelSpec, layer_tensors: LayerTensors, *,
                    embed_rows: int | None = None, embed_name: str = "embed_tokens",
                    final_norm: str = "norm") -> list[TensorGroup]:
    """Embedding, every decoder layer, final norm and (untied) lm_head in checkpoint naming.

    ``{prefix}.{embed_name}.weight [embed_rows or vocab, hidden]``, ``layer_tensors`` per layer
    under ``{prefix}.layers.{i}``, ``{prefix}.{final_norm}.weight [hidden]``,
    ``{lm_head_name}.weight [vocab, hidden]`` unless tied.
    """
    h, v = spec.hidden_size, spec.vocab_size
    pre = spec.prefix
    out = [TensorGroup(f"{pre}.{embed_name}.weight", (embed_rows or v, h), "embedding", None,
                       "vocab")]
    for layer in spec.layers:
        out += layer_tensors(spec, f"{pre}.layers.{layer.index}", layer)
    out.append(_vec(f"{pre}.{final_norm}.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        out.append(TensorGroup(f"{spec.lm_head_name}.weight", (v, h), "lm_head", None, "vocab",
                               linear=True))
    return out
