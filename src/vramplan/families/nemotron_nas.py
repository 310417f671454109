"""NVIDIA Llama-Nemotron NAS models (``nemotron-nas``, DeciLMForCausalLM): per-block configs.

A Llama decoder whose every block has its own attention and FFN (``block_configs``), found by
neural architecture search. transformers 5.25.0 has no such model (remote code only), so the
layout is read from the checkpoint's ``modeling_decilm.py`` (nvidia/Llama-3_3-Nemotron-Super-49B-v1;
the copy read: DeltaVector1/Chat-Prompters@760b19a6890e94fdd3406244b0ece74e73c8d9de
``modeling_decilm.py``, matching vLLM/SGLang/TensorRT-LLM ``nemotron_nas`` / ``DeciLM`` ports):

* attention ``no_op``: no ``input_layernorm``, no ``self_attn`` (and no KV cache);
  ``replace_with_linear``: ``input_layernorm`` + ``self_attn.linear_attn`` [hidden, hidden];
  else Llama attention with ``num_key_value_heads = num_attention_heads // n_heads_in_group``,
  ``head_dim = hidden_size // num_attention_heads`` (DeciLMAttention).
* ffn ``no_op``: no ``post_attention_layernorm``, no ``mlp``; ``replace_with_linear``:
  ``post_attention_layernorm`` + ``mlp.linear_mlp`` [hidden, hidden]; else a gated MLP of
  ``_find_multiple(int(2 * ffn_mult * hidden_size / 3), 256)`` (DeciLMMLP,
  ``_ffn_mult_to_intermediate_size``).
* ``embed_tokens``, final ``norm``, ``lm_head`` (``tie_word_embeddings``) as Llama.

Sliding-window / sink attention variants (``window_length``, ``num_sink_tokens``) and FFN kinds
other than these are refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vramplan import inventory as inv
from vramplan.errors import ConfigError
from vramplan.inventory import TensorGroup
from vramplan.model import hf_config as hc
from vramplan.model.spec import AttentionSpec, LayerSpec, MlpSpec, ModelSpec

MODEL_TYPES = ("nemotron-nas",)
ARCHITECTURES = ("DeciLMForCausalLM",)
HANDLES = frozenset({"block_configs"})

_ATTN_KEYS = frozenset({"n_heads_in_group", "no_op", "replace_with_linear", "sparsify",
                        "num_sink_tokens", "unshifted_sink", "use_prefill_window_in_sink_attention",
                        "window_length"})
_FFN_KEYS = frozenset({"ffn_mult", "no_op", "replace_with_linear", "sparsify"})


def ffn_intermediate_size(ffn_mult: float, hidden: int) -> int:
    """DeciLM ``_ffn_mult_to_intermediate_size``: int(2 * ffn_mult * hidden / 3) rounded up to a
    multiple of 256 (e.g. 8192 x 5.25 -> 28672; x 1.0 -> 5461 -> 5632)."""
    n = int(2 * ffn_mult * hidden / 3)
    return n if n % 256 == 0 else n + 256 - n % 256


def _block(raw: object, i: int) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("attention"), Mapping) \
            or not isinstance(raw.get("ffn"), Mapping):
        raise ConfigError(f"config.json block_configs[{i}]", "must have 'attention' and 'ffn' "
                          "objects", "use the model's published config.json")
    attn, ffn = raw["attention"], raw["ffn"]
    for part, keys, name in ((attn, _ATTN_KEYS, "attention"), (ffn, _FFN_KEYS, "ffn")):
        unknown = sorted(k for k, v in part.items() if k not in keys and v not in (None, False))
        if unknown:
            raise ConfigError(f"config.json block_configs[{i}].{name}.{unknown[0]}",
                              "is a block variant vramplan does not lay out",
                              "pass the model folder with its *.safetensors headers")
    for key in ("window_length", "num_sink_tokens"):
        if attn.get(key) is not None:
            raise ConfigError(f"config.json block_configs[{i}].attention.{key}",
                              "sliding-window / sink attention blocks are not modelled",
                              "pass the model folder with its *.safetensors headers")
    return attn, ffn


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    text = hc.text_config(cfg)
    blocks = text.get("block_configs")
    n_layers = hc.read_int(text, "num_hidden_layers")
    if not isinstance(blocks, list) or len(blocks) != n_layers:
        raise ConfigError("config.json block_configs", f"must list one block per layer "
                          f"({n_layers})", "use the model's published config.json")
    hidden = hc.read_int(text, "hidden_size")
    heads = hc.read_int(text, "num_attention_heads")
    if hidden % heads:
        raise ConfigError("config.json num_attention_heads", f"{heads} does not divide "
                          f"hidden_size {hidden}", "fix it in config.json")
    head_dim = hidden // heads
    lin_attn: list[int] = []
    lin_mlp: list[int] = []
    parsed = [_block(b, i) for i, b in enumerate(blocks)]

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn_c, ffn_c = parsed[i]
        if attn_c.get("no_op") or attn_c.get("replace_with_linear"):
            # no token mixer with a cache: zero KV widths in every engine formula
            attn = AttentionSpec(kind="none", num_heads=heads, num_kv_heads=0, head_dim=0,
                                 v_head_dim=0)
        else:
            group = attn_c.get("n_heads_in_group")
            if not isinstance(group, int) or isinstance(group, bool) or group <= 0 \
                    or heads % group:
                raise ConfigError(f"config.json block_configs[{i}].attention.n_heads_in_group",
                                  f"must be a positive divisor of num_attention_heads {heads}",
                                  "fix it in config.json")
            attn = AttentionSpec(kind="full", num_heads=heads, num_kv_heads=heads // group,
                                 head_dim=head_dim, v_head_dim=head_dim)
        if ffn_c.get("no_op") or ffn_c.get("replace_with_linear"):
            mlp = MlpSpec(kind="none", intermediate_size=0)
        else:
            mult = ffn_c.get("ffn_mult")
            if not isinstance(mult, int | float) or isinstance(mult, bool) or mult <= 0:
                raise ConfigError(f"config.json block_configs[{i}].ffn.ffn_mult",
                                  f"must be a positive number, got {mult!r}", "fix it")
            mlp = MlpSpec(kind="dense", intermediate_size=ffn_intermediate_size(mult, hidden))
        return LayerSpec(index=i, attention=attn, mlp=mlp)

    for i, (attn_c, ffn_c) in enumerate(parsed):
        if attn_c.get("replace_with_linear") and not attn_c.get("no_op"):
            lin_attn.append(i)
        if ffn_c.get("replace_with_linear") and not ffn_c.get("no_op"):
            lin_mlp.append(i)
    clean = {k: v for k, v in cfg.items()
             if not (k in ("num_key_value_heads", "intermediate_size") and v is None)}
    s = hc.generic_spec(clean, model_id, extra_quant, model_type="nemotron-nas",
                        family="nemotron_nas", layer_fn=layer_fn)
    params = (("linear_attention_layers", tuple(lin_attn)), ("linear_mlp_layers", tuple(lin_mlp)),
              ("no_op_attention_layers", tuple(i for i, (a, _) in enumerate(parsed)
                                               if a.get("no_op"))),
              ("no_op_ffn_layers", tuple(i for i, (_, f) in enumerate(parsed) if f.get("no_op"))))
    from dataclasses import replace
    return replace(s, family_params=params, mlp_bias=bool(text.get("mlp_bias", False)),
                   attention_bias=bool(text.get("attention_bias", False)))


def _indices(spec: ModelSpec, key: str) -> set[int]:
    raw = spec.param(key, ())
    return {int(x) for x in raw} if isinstance(raw, tuple) else set()


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    h, v, pre = spec.hidden_size, spec.vocab_size, spec.prefix
    lin_attn, lin_mlp = _indices(spec, "linear_attention_layers"), _indices(spec, "linear_mlp_layers")
    out: list[TensorGroup] = [TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None,
                                          "vocab")]
    for layer in spec.layers:
        i, a, m = layer.index, layer.attention, layer.mlp
        lp = f"{pre}.layers.{i}"
        if a.kind != "none" or i in lin_attn:
            out.append(inv._vec(f"{lp}.input_layernorm.weight", h, "norm", i))
        if i in lin_attn:
            out.append(inv._lin(f"{lp}.self_attn.linear_attn.weight", h, h, "attention", i,
                                "replicated"))
        elif a.kind != "none":
            out += inv._attention(spec, f"{lp}.self_attn", i, a, "attention")
        if m.kind != "none" or i in lin_mlp:
            out.append(inv._vec(f"{lp}.post_attention_layernorm.weight", h, "norm", i))
        if i in lin_mlp:
            out.append(inv._lin(f"{lp}.mlp.linear_mlp.weight", h, h, "mlp", i, "replicated"))
        elif m.kind == "dense":
            out += inv._gated_mlp(f"{lp}.mlp", h, m.intermediate_size, "mlp", i,
                                  bias=spec.mlp_bias)
    out.append(inv._vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        out.append(TensorGroup(f"{spec.lm_head_name}.weight", (v, h), "lm_head", None, "vocab",
                               linear=True))
    return out, []
