"""ModelSpec: one normalized description of a decoder-only LLM, whatever its config.json says.

Every field names the Hugging Face key it comes from and, where one exists, the llama.cpp name.
The spec is the first stage of the pipeline; the tensor inventory (``vramplan.inventory``) is built
from it and nothing downstream reads config.json again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# full/sliding/chunked/mla: softmax attention with a per-token KV cache; linear: a recurrent
# mixer with constant state per sequence (Gated DeltaNet, Mamba-1/2, short conv); cross: attends
# to encoder (image) tokens, its cache is sized by those, not by the text; none: no token mixer
# (Nemotron-H MLP-only layers, DeciLM no-op attention).
AttnKind = Literal["full", "sliding", "chunked", "mla", "linear", "cross", "none"]
MlpKind = Literal["dense", "moe", "none"]
StateKind = Literal["gated_deltanet", "mamba1", "mamba2", "short_conv"]


@dataclass(frozen=True, slots=True)
class LinearAttnSpec:
    """Gated DeltaNet linear attention (Qwen3-Next ``linear_attn``): constant-size state per sequence."""

    num_key_heads: int  # HF linear_num_key_heads
    num_value_heads: int  # HF linear_num_value_heads
    key_head_dim: int  # HF linear_key_head_dim
    value_head_dim: int  # HF linear_value_head_dim
    conv_kernel: int  # HF linear_conv_kernel_dim; llama.cpp ssm_d_conv


@dataclass(frozen=True, slots=True)
class MambaSpec:
    """A Mamba-1 / Mamba-2 (SSD) or short-convolution mixer: constant-size state per sequence.

    Mamba-2 (Nemotron-H, granite-4.0-h, Falcon-H1, Bamba): ``d_inner = num_heads * head_dim``,
    B and C are shared by ``n_groups``. Mamba-1 (Jamba, Falcon-Mamba): ``d_inner`` channels,
    ``dt_rank`` low-rank time step. Short conv (LFM2): conv state only.
    """

    kind: StateKind  # mamba1 | mamba2 | short_conv
    d_inner: int  # HF mamba_num_heads*mamba_head_dim (Mamba-2) or mamba_expand*hidden (Mamba-1)
    d_state: int  # HF ssm_state_size / mamba_d_state; llama.cpp ssm_d_state
    conv_kernel: int  # HF conv_kernel / mamba_d_conv; llama.cpp ssm_d_conv
    num_heads: int = 0  # Mamba-2 heads (HF mamba_num_heads); llama.cpp ssm_dt_rank for Mamba-2
    head_dim: int = 0  # Mamba-2 head dim (HF mamba_head_dim)
    n_groups: int = 1  # Mamba-2 B/C groups (HF n_groups / mamba_n_groups); llama.cpp ssm_n_group
    dt_rank: int = 0  # Mamba-1 (HF mamba_dt_rank)
    conv_bias: bool = True
    proj_bias: bool = False


@dataclass(frozen=True, slots=True)
class IndexerSpec:
    """DeepSeek-V3.2 / GLM-5 sparse-attention lightning indexer: its own per-token key cache.

    vLLM caches ``index_head_dim`` FP8 values + one fp32 scale per 128 values per token and layer
    (vllm/model_executor/models/deepseek_v2.py Indexer; DeepseekV32IndexerCache).
    """

    num_heads: int  # HF index_n_heads
    head_dim: int  # HF index_head_dim
    topk: int  # HF index_topk (tokens each query attends to)


@dataclass(frozen=True, slots=True)
class AttentionSpec:
    """One layer's token mixer."""

    kind: AttnKind
    num_heads: int  # HF num_attention_heads; llama.cpp n_head
    num_kv_heads: int  # HF num_key_value_heads; llama.cpp n_head_kv (1 for MLA latent)
    head_dim: int  # HF head_dim (Q and K width per head); llama.cpp n_embd_head_k
    v_head_dim: int  # HF v_head_dim or head_dim; llama.cpp n_embd_head_v
    window_tokens: int | None = None  # HF sliding_window / attention_chunk_size; llama.cpp n_swa
    # MLA (DeepSeek V2/V3, Kimi K2)
    q_lora_rank: int | None = None  # HF q_lora_rank (None: plain q_proj)
    kv_lora_rank: int = 0  # HF kv_lora_rank; llama.cpp n_lora_kv
    qk_rope_head_dim: int = 0  # HF qk_rope_head_dim; llama.cpp n_rot
    qk_nope_head_dim: int = 0  # HF qk_nope_head_dim
    linear: LinearAttnSpec | None = None
    mamba: MambaSpec | None = None  # kind "linear" with a Mamba/short-conv mixer
    indexer: IndexerSpec | None = None  # DeepSeek-V3.2 sparse attention indexer
    output_gate: bool = False  # Qwen3-Next/3.5 gated attention: q_proj also yields a gate
    encoder_tokens: int = 0  # kind "cross": encoder (image) tokens held per sequence
    # Cross-layer KV sharing (Gemma-3n / Gemma-4 num_kv_shared_layers): this layer attends with
    # the K/V cached by layer ``kv_shared_with`` and stores none of its own.
    kv_shared_with: int | None = None
    # DeepSeek-V4 compressed attention: besides its window, the layer keeps one compressed
    # entry of ``compressed_dim`` values (K=V, plus indexer keys for CSA) per ``compress_rate``
    # tokens of the whole context (0: no compressor).
    compress_rate: int = 0
    compressed_dim: int = 0

    @property
    def has_kv(self) -> bool:
        """True for layers with a per-token softmax-attention cache that grows with the text."""
        return self.kind in ("full", "sliding", "chunked", "mla") and self.kv_shared_with is None


@dataclass(frozen=True, slots=True)
class MlpSpec:
    """One layer's feed-forward block."""

    kind: MlpKind
    intermediate_size: int  # dense: HF intermediate_size; llama.cpp n_ff
    num_experts: int = 0  # HF num_experts / n_routed_experts / num_local_experts; llama.cpp n_expert
    top_k: int = 0  # HF num_experts_per_tok; llama.cpp n_expert_used
    expert_intermediate_size: int = 0  # HF moe_intermediate_size; llama.cpp n_ff_exp
    shared_intermediate_size: int = 0  # total width of the shared expert MLP (0: none)
    shared_expert_gate: bool = False  # Qwen2/3-MoE/Next sigmoid gate on the shared expert
    router_bias: bool = False  # gpt-oss router has a bias
    expert_bias: bool = False  # gpt-oss experts have biases
    score_correction_bias: bool = False  # DeepSeek-V3 noaux_tc e_score_correction_bias (buffer)


@dataclass(frozen=True, slots=True)
class LayerSpec:
    index: int
    attention: AttentionSpec
    mlp: MlpSpec


@dataclass(frozen=True, slots=True)
class VisionSpec:
    """A vision tower kept beside the text model (Llama 4); counted, never quantized by default."""

    model_type: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    patch_size: int
    image_size: int
    num_channels: int
    projector_input_dim: int
    projector_output_dim: int
    vision_output_dim: int
    text_hidden_size: int
    pixel_shuffle_ratio: float = 0.5  # HF vision_config.pixel_shuffle_ratio (tokens per tile)


@dataclass(frozen=True, slots=True)
class TowerSpec:
    """A vision or audio encoder (plus its projector) loaded beside the text model.

    ``config`` is the tower's sub-config as sorted (key, value) items (lists as tuples) so the
    spec stays hashable; the family module that made it builds its tensors.
    """

    kind: Literal["vision", "audio"]
    model_type: str  # HF vision_config.model_type / audio_config.model_type
    family: str  # tower tensor layout (which builder enumerates it)
    config: tuple[tuple[str, object], ...]
    tokens_per_item: int = 0  # context tokens one image / audio clip costs (0: not stated)

    def get(self, key: str, default: object = None) -> object:
        return dict(self.config).get(key, default)


def freeze(value: object) -> object:
    """JSON value -> hashable: dicts to sorted item tuples, lists to tuples."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Normalized decoder-only model. ``family`` selects the tensor naming of the inventory."""

    model_id: str
    model_type: str  # HF model_type (the text model's, for multimodal configs)
    family: str  # inventory layout: llama, qwen3, qwen3_moe, deepseek, gpt_oss, glm4_moe, ...
    architecture: str  # HF architectures[0]
    hidden_size: int  # HF hidden_size; llama.cpp n_embd
    vocab_size: int  # HF vocab_size; llama.cpp n_vocab
    layers: tuple[LayerSpec, ...]  # main decoder layers (MTP excluded); llama.cpp n_layer
    tie_word_embeddings: bool  # HF tie_word_embeddings (architecture default when absent)
    max_position_embeddings: int  # HF max_position_embeddings; llama.cpp n_ctx_train
    torch_dtype: str  # HF torch_dtype / dtype: "bfloat16", "float16", "float32"
    attention_bias: bool = False  # q/k/v projections have biases (Qwen2, GLM, gpt-oss)
    attention_out_bias: bool = False  # o_proj has a bias (gpt-oss)
    qk_norm: bool = False  # per-head RMSNorm weights on q and k (Qwen3, GLM use_qk_norm)
    mlp_bias: bool = False
    norms_per_layer: int = 2  # Gemma-2 has 4
    attention_sinks: bool = False  # gpt-oss per-head sinks
    mtp_layers: int = 0  # HF num_nextn_predict_layers (reported separately, not loaded for inference)
    vision: VisionSpec | None = None
    towers: tuple[TowerSpec, ...] = ()  # vision / audio encoders of multimodal checkpoints
    # family-specific hyperparameters the inventory needs (sorted items; see ``param``)
    family_params: tuple[tuple[str, object], ...] = ()
    prefix: str = "model"  # name prefix of the text model in the checkpoint
    lm_head_name: str = "lm_head"
    # HF quantization_config / hf_quant_config.json; not part of equality (the inventory ignores it)
    quantization_config: dict[str, object] | None = field(default=None, compare=False)
    notes: tuple[str, ...] = field(default=())  # what normalization assumed, shown to the user
    # Specs key every stage's caches; hashing ~100 nested layer specs per lookup was the top
    # cost of a warm estimate, so the hash is computed once.
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.model_id, self.model_type, self.family,
                                                self.hidden_size, self.vocab_size, self.layers,
                                                self.tie_word_embeddings, self.torch_dtype,
                                                self.towers, self.family_params)))

    def __hash__(self) -> int:
        return self._hash

    def param(self, key: str, default: object = None) -> object:
        """One family-specific hyperparameter (``family_params``)."""
        for k, v in self.family_params:
            if k == key:
                return v
        return default

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def is_moe(self) -> bool:
        return any(layer.mlp.kind == "moe" for layer in self.layers)

    @property
    def bytes_per_param(self) -> int:
        return 4 if self.torch_dtype == "float32" else 2
