"""Test helper: write GGUF tensors (ggml ne order) with gguf.GGUFWriter, zero-filled."""

from __future__ import annotations

from collections.abc import Mapping

import gguf
import numpy as np

from vramplan.quant.ggml_types import tensor_bytes

Q = gguf.GGMLQuantizationType


def llama_tensors(*, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, n_ff: int,
                  n_vocab: int, wtype: Q, n_expert: int = 0, tied: bool = False
                  ) -> dict[str, tuple[Q, tuple[int, ...]]]:
    """The tensor table (GGUF names, ggml ne) of a small llama-arch decoder, dense or MoE.

    Norms and routers are F32; the untied output is Q6_K when its rows allow, as
    llama-quantize writes it.
    """
    d = n_embd // n_head
    tensors: dict[str, tuple[Q, tuple[int, ...]]] = {"token_embd.weight": (wtype, (n_embd, n_vocab))}
    for il in range(n_layer):
        p = f"blk.{il}."
        tensors |= {p + "attn_norm.weight": (Q.F32, (n_embd,)),
                    p + "attn_q.weight": (wtype, (n_embd, n_embd)),
                    p + "attn_k.weight": (wtype, (n_embd, d * n_head_kv)),
                    p + "attn_v.weight": (wtype, (n_embd, d * n_head_kv)),
                    p + "attn_output.weight": (wtype, (n_embd, n_embd)),
                    p + "ffn_norm.weight": (Q.F32, (n_embd,))}
        if n_expert:
            tensors |= {p + "ffn_gate_inp.weight": (Q.F32, (n_embd, n_expert)),
                        p + "ffn_gate_exps.weight": (wtype, (n_embd, n_ff, n_expert)),
                        p + "ffn_up_exps.weight": (wtype, (n_embd, n_ff, n_expert)),
                        p + "ffn_down_exps.weight": (wtype, (n_ff, n_embd, n_expert))}
        else:
            tensors |= {p + "ffn_gate.weight": (wtype, (n_embd, n_ff)),
                        p + "ffn_up.weight": (wtype, (n_embd, n_ff)),
                        p + "ffn_down.weight": (wtype, (n_ff, n_embd))}
    tensors["output_norm.weight"] = (Q.F32, (n_embd,))
    if not tied:
        tensors["output.weight"] = (Q.Q6_K if n_embd % 256 == 0 else wtype, (n_embd, n_vocab))
    return tensors


def write_tensors(w: gguf.GGUFWriter, tensors: Mapping[str, tuple[Q, tuple[int, ...]]]) -> None:
    """Add each ``name: (type, ne)`` tensor, then write header, metadata and data and close.

    F32 tensors are float arrays; quantized ones are raw rows of ``tensor_bytes(type, ne0)``.
    """
    for name, (qt, ne) in tensors.items():
        rows = list(reversed(ne[1:]))
        if qt == Q.F32:
            w.add_tensor(name, np.zeros((*rows, ne[0]), dtype=np.float32))
        else:
            nb = tensor_bytes(qt.name, (ne[0],))
            w.add_tensor(name, np.zeros((*rows, nb), dtype=np.uint8), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
