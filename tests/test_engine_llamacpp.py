"""llama.cpp engine: placement, KV, compute, --fit, bad input; measured cases from public logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import pytest

from tests.gguf_files import llama_tensors, write_tensors
from vramplan.api import estimate
from vramplan.engines.llamacpp import profile_for
from vramplan.engines.llamacpp_fit import FIT_MARGIN
from vramplan.errors import HeaderError, InputError
from vramplan.result import Estimate

DATA = Path(__file__).resolve().parent / "data"
MIB = 2**20
GIB = 2**30
Q = gguf.GGMLQuantizationType


# ---------------------------------------------------------------------- tiny GGUF files

def write_gguf(path: Path, *, arch: str = "llama", n_layer: int = 4, n_embd: int = 256,
               n_head: int = 4, n_head_kv: int = 2, n_ff: int = 512, n_vocab: int = 1000,
               n_ctx_train: int = 4096, tied: bool = False, n_expert: int = 0,
               n_expert_used: int = 2, swa: int = 0, wtype: Q = Q.Q4_0) -> Path:
    """A valid GGUF header + data for a small decoder (written with the gguf package)."""
    w = gguf.GGUFWriter(path, arch)
    w.add_name(path.stem)
    w.add_file_type(2)
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    if n_expert:
        w.add_expert_count(n_expert)
        w.add_expert_used_count(n_expert_used)
        w.add_expert_feed_forward_length(n_ff)
    if swa:
        w.add_sliding_window(swa)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(n_vocab)])
    tensors = llama_tensors(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv,
                            n_ff=n_ff, n_vocab=n_vocab, wtype=wtype, n_expert=n_expert, tied=tied)
    write_tensors(w, tensors)
    return path


def nbytes(path: Path) -> dict[str, int]:
    from vramplan.model.gguf_reader import read_gguf_header

    return {t.name: t.n_bytes for t in read_gguf_header(path).tensors}


def dev(e: Estimate, name: str) -> dict[str, int]:
    return dict(e.engine_figures["devices"].get(name, {}))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("g") / "tiny-llama.gguf")


@pytest.fixture(scope="module")
def tiny_moe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("g") / "tiny-moe.gguf", arch="qwen3moe",
                      n_expert=8, n_ff=256)


def run(model: Any, **kw: Any) -> Estimate:
    opts = kw.pop("opts", {})
    kw.setdefault("gpu", "rtx-4090")
    kw.setdefault("engine", "llamacpp")
    return estimate(model, engine_options=opts, allow_hub=False, **kw)


# ---------------------------------------------------------------------- placement

def test_gguf_file_defaults_to_llamacpp_and_exact_bytes(tiny: Path) -> None:
    e = run(str(tiny), engine="auto")
    assert e.engine == "llamacpp" and e.model.origin == "gguf"
    sizes = nbytes(tiny)
    assert e.weights_bytes == sum(sizes.values())
    assert dev(e, "CPU")["model_buffer_bytes"] == sizes["token_embd.weight"]  # always on the CPU
    assert dev(e, "CUDA0")["model_buffer_bytes"] == sum(sizes.values()) - sizes["token_embd.weight"]
    assert e.engine_figures["offloaded"] == "5/5 layers"
    assert e.command.startswith(f"llama-server -m {tiny}")


@pytest.mark.parametrize("ngl", [0, 1, 3, 4, 5])
def test_ngl_places_the_last_layers(tiny: Path, ngl: int) -> None:
    sizes = nbytes(tiny)
    e = run(str(tiny), opts={"n_gpu_layers": ngl})
    on_gpu = {f"blk.{il}." for il in range(4 - min(ngl, 4), 4)}
    want = sum(b for n, b in sizes.items() if n[:6] in on_gpu)
    if ngl >= 5:  # the output layer is layer n_layer: offloaded only with ngl >= n_layer + 1
        want += sizes["output.weight"] + sizes["output_norm.weight"]
    assert dev(e, "CUDA0")["model_buffer_bytes"] == want
    assert e.engine_figures["offloaded"] == f"{min(ngl, 5)}/5 layers"
    kv_layer = 4096 * 2 * (2 * 64) * 2  # 4096 cells x (K + V) x 2 heads x 64 dims x f16
    assert dev(e, "CUDA0")["kv_buffer_bytes"] == kv_layer * min(ngl, 4)


def test_ngl_beyond_layers_is_clamped_and_said(tiny: Path) -> None:
    e = run(str(tiny), opts={"n_gpu_layers": 99})
    assert e.engine_figures["offloaded"] == "5/5 layers"
    assert any("clamps it to 5" in n for n in e.notes)


def test_tied_embeddings_are_duplicated_on_the_output_device(tmp_path: Path) -> None:
    p = write_gguf(tmp_path / "tied.gguf", tied=True)
    sizes = nbytes(p)
    e = run(str(p))
    emb = sizes["token_embd.weight"]
    assert dev(e, "CPU")["model_buffer_bytes"] == emb
    assert dev(e, "CUDA0")["model_buffer_bytes"] == sum(sizes.values())  # rest + duplicate
    e0 = run(str(p), opts={"n_gpu_layers": 4})  # output on the CPU: no copy
    assert dev(e0, "CUDA0")["model_buffer_bytes"] == sum(sizes.values()) - emb - \
        sizes["output_norm.weight"]


def test_override_tensor_and_cpu_moe(tiny_moe: Path) -> None:
    sizes = nbytes(tiny_moe)
    exps = {n: b for n, b in sizes.items() if "_exps" in n}
    e = run(str(tiny_moe), opts={"cpu_moe": True})
    assert dev(e, "CPU")["model_buffer_bytes"] == sizes["token_embd.weight"] + sum(exps.values())
    e2 = run(str(tiny_moe), opts={"n_cpu_moe": 2})
    first2 = sum(b for n, b in exps.items() if n.startswith(("blk.0.", "blk.1.")))
    assert dev(e2, "CPU")["model_buffer_bytes"] == sizes["token_embd.weight"] + first2
    e3 = run(str(tiny_moe), opts={"override_tensor": r"blk\.3\.ffn_up_exps=CPU"})
    assert dev(e3, "CPU")["model_buffer_bytes"] == sizes["token_embd.weight"] + \
        sizes["blk.3.ffn_up_exps.weight"]
    assert "--cpu-moe" in e.command and "-ot" in e3.command


def test_multi_gpu_split_output_on_last_gpu(tiny: Path) -> None:
    e = run(str(tiny), gpus=2)
    f = e.engine_figures
    sizes = nbytes(tiny)
    g0, g1 = dev(e, "CUDA0")["model_buffer_bytes"], dev(e, "CUDA1")["model_buffer_bytes"]
    blk = [sum(b for n, b in sizes.items() if n.startswith(f"blk.{i}.")) for i in range(4)]
    # equal free memory: layers 0-2 (x/5 < 0.5) on CUDA0, layer 3 and the output on CUDA1
    assert g0 == sum(blk[:3])
    assert g1 == blk[3] + sizes["output.weight"] + sizes["output_norm.weight"]
    assert f["pipeline_copies"] == 4  # full offload to 2 GPUs, no overrides
    e1 = run(str(tiny), gpus=2, opts={"cpu_moe": True})  # an override switches it off
    assert e1.engine_figures["pipeline_copies"] == 1


# ---------------------------------------------------------------------- KV cache

def test_kv_cells_padding_and_types(tiny: Path) -> None:
    e = run(str(tiny), opts={"ctx_size": 1000, "flash_attn": "on", "cache_type_k": "q8_0",
                             "cache_type_v": "q4_0"})
    f = e.engine_figures
    assert f["n_ctx"] == 1024 and f["kv_cells"] == 1024  # padded to 256
    k_row, v_row = 128 // 32 * 34, 128 // 32 * 18  # 2 kv heads x 64 dims, exact ggml blocks
    assert f["kv_k_bytes"] == 4 * 1024 * k_row and f["kv_v_bytes"] == 4 * 1024 * v_row


def test_per_slot_streams(tiny: Path) -> None:
    e = run(str(tiny), opts={"ctx_size": 4096, "parallel": 3})
    f = e.engine_figures
    assert f["n_seq_max"] == 3 and not f["kv_unified"]
    assert f["n_ctx_seq"] == 1536 and f["n_ctx"] == 4608  # pad256(4096 / 3) x 3 streams
    eu = run(str(tiny), opts={"ctx_size": 4096})  # llama-server's auto: 4 unified slots
    assert eu.engine_figures["n_seq_max"] == 4 and eu.engine_figures["kv_cells"] == 4096


def test_context_and_batch_map_to_slots(tiny: Path) -> None:
    e = run(str(tiny), context=2048, batch=2)  # vramplan's per-sequence context, 2 sequences
    f = e.engine_figures
    assert (f["n_ctx"], f["n_seq_max"], f["n_ctx_seq"]) == (4096, 2, 2048)
    assert "-np 2" in e.command and "-c 4096" in e.command


def test_swa_cells(tmp_path: Path) -> None:
    p = write_gguf(tmp_path / "tiny-gptoss.gguf", arch="gpt-oss", swa=128, n_expert=4)
    e = run(str(p), opts={"ctx_size": 8192, "parallel": 1})
    f = e.engine_figures
    assert f["swa_cells"] == 768  # pad256(min(8192, 128 + 512))
    layer = 2 * 64 * 2 * 2
    assert f["kv_k_bytes"] + f["kv_v_bytes"] == 2 * 8192 * layer + 2 * 768 * layer


def test_mla_cache_is_v_less_since_19067() -> None:
    old = run("deepseek-ai/DeepSeek-V2-Lite", quant="q4_k_m", engine="llamacpp==b7000",
              opts={"ctx_size": 4096, "flash_attn": "on"})
    new = run("deepseek-ai/DeepSeek-V2-Lite", quant="q4_k_m", opts={"ctx_size": 4096})
    layers = 27
    assert old.engine_figures["kv_k_bytes"] == new.engine_figures["kv_k_bytes"] == \
        layers * 4096 * 576 * 2
    assert old.engine_figures["kv_v_bytes"] == layers * 4096 * 512 * 2
    assert new.engine_figures["kv_v_bytes"] == 0


def test_quantized_v_requires_flash_attention(tiny: Path) -> None:
    with pytest.raises(InputError, match="--cache-type-v.*flash attention.*--flash-attn on"):
        run(str(tiny), opts={"cache_type_v": "q4_0", "flash_attn": "off"})
    with pytest.raises(InputError, match="--cache-type-k: unknown cache type"):
        run(str(tiny), opts={"cache_type_k": "q3_k"})


# ---------------------------------------------------------------------- compute + host

def test_compute_buffer_is_logits_when_attention_is_small(tiny: Path) -> None:
    e = run(str(tiny), opts={"ctx_size": 4096, "flash_attn": "on"})
    n_tok = 512
    logits = 1000 * n_tok * 4 + 256 * n_tok * 4
    assert dev(e, "CUDA0")["compute_buffer_bytes"] >= logits
    # the CPU backend: f32 KQ mask [4096, 512] + token embeddings lookup
    assert dev(e, "CPU")["compute_buffer_bytes"] == 4096 * n_tok * 4 + 256 * n_tok * 4
    assert e.host_ram_bytes >= dev(e, "CPU")["model_buffer_bytes"]


def test_partial_offload_copies_cpu_weights_to_the_gpu(tmp_path: Path) -> None:
    p = write_gguf(tmp_path / "vocab.gguf", n_vocab=40000)  # logits dominate the graph
    sizes = nbytes(p)
    full = run(str(p), opts={"ctx_size": 512, "flash_attn": "on"})
    part = run(str(p), opts={"ctx_size": 512, "flash_attn": "on", "n_gpu_layers": 2})
    # output on the CPU: its matmul runs on CUDA0 with a copy of output.weight
    assert dev(part, "CUDA0")["compute_buffer_bytes"] == \
        dev(full, "CUDA0")["compute_buffer_bytes"] + sizes["output.weight"]


# ---------------------------------------------------------------------- --fit and failures

def test_fit_picks_the_largest_layer_count_that_fits(tmp_path: Path) -> None:
    p = write_gguf(tmp_path / "big.gguf", n_layer=8, n_embd=2048, n_head=16, n_head_kv=4,
                   n_ff=8192, n_vocab=1000, n_ctx_train=4096)
    sizes = nbytes(p)
    per_layer = sum(b for n, b in sizes.items() if n.startswith("blk.0."))
    # room for about 4 layers after the 1 GiB margin and the 457 MiB outside llama.cpp
    vram = 457 * MIB + GIB + 4 * (per_layer + 8 * MIB) + 100 * MIB
    e = run(str(p), gpu=None, vram=vram)
    ngl = e.engine_figures["n_gpu_layers"]
    assert 0 < ngl < 9 and e.failure is None
    used = e.devices[0].total_bytes
    assert used <= vram - FIT_MARGIN
    more = run(str(p), gpu=None, vram=vram, opts={"n_gpu_layers": ngl + 1, "fit": False})
    assert more.devices[0].total_bytes > vram - FIT_MARGIN  # one more layer breaks the margin


def test_fit_spills_experts_before_layers_and_shrinks_context() -> None:
    e = run("Qwen/Qwen3-30B-A3B", quant="q4_k_m", gpu="rtx-4060")  # 8 GiB, no -c
    f = e.engine_figures
    assert e.failure is None
    assert f["n_gpu_layers"] == 49  # all layers: only expert tensors leave the GPU
    assert "ffn_(up|down|gate_up|gate)_(ch|)exps=CPU" in f["fit"]["equivalent_flags"]
    assert f["n_ctx"] <= 40960


def test_fit_interpolates_the_context_of_a_dense_model() -> None:
    e = run("meta-llama/Llama-3.1-8B-Instruct", quant="q4_k_m", gpu="rtx-4080")  # 16 GB, no -c
    f = e.engine_figures
    assert 4096 < f["n_ctx"] < 131072 and f["n_ctx"] % 256 == 0
    assert f["n_gpu_layers"] == 33 and e.failure is None
    assert e.devices[0].total_bytes <= e.devices[0].capacity_bytes - FIT_MARGIN
    assert e.context_tokens == f["n_ctx"]  # the engine reports the context it runs with
    explicit = run("meta-llama/Llama-3.1-8B-Instruct", quant="q4_k_m", gpu="rtx-4080",
                   opts={"ctx_size": 0})  # -c 0: the trained context, never shrunk
    assert explicit.engine_figures["n_ctx"] == 131072


def test_safetensors_model_is_priced_as_a_16_bit_gguf() -> None:
    e = run("Qwen/Qwen3-8B", opts={"ctx_size": 4096})
    assert any("BF16 GGUF" in n for n in e.notes)
    assert e.engine_figures["devices"]["CUDA0"]["model_buffer_bytes"] > 14 * GIB


def test_failure_names_llama_cpp_error_and_fix(tiny_moe: Path) -> None:
    e = run("Qwen/Qwen3-235B-A22B", quant="q4_k_m", opts={"n_gpu_layers": 99,
                                                           "ctx_size": 8192})
    assert e.failure and "unable to allocate CUDA0 buffer" in e.failure
    assert e.fix and "--n-cpu-moe" in e.fix and "-ngl" in e.fix
    assert not e.fits


def test_old_builds_have_no_fit() -> None:
    assert not profile_for("b5000").fit and profile_for(None).fit
    with pytest.raises(InputError, match="llamacpp==b7780"):
        profile_for("v2")


# ---------------------------------------------------------------------- bad files

def test_truncated_and_corrupt_gguf(tiny: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny.read_bytes()[:200])
    with pytest.raises(HeaderError) as exc:
        run(str(cut))
    assert "cut.gguf" in str(exc.value) and "\n" not in str(exc.value)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"NOTGGUF" * 10)
    with pytest.raises(HeaderError, match="junk.gguf.*not a GGUF file"):
        run(str(junk))
    with pytest.raises(InputError, match="--quant.*already quantized"):
        run(str(tiny), quant="q4_k_m")


# ---------------------------------------------------------------------- the done-when case

def test_qwen3_235b_q4_k_m_on_a_4090_with_experts_on_cpu() -> None:
    e = run("Qwen/Qwen3-235B-A22B", quant="q4_k_m", opts={"cpu_moe": True, "ctx_size": 32768})
    names = [d.name for d in e.devices]
    assert names == ["CUDA0", "CPU"] and e.failure is None and e.fits
    gpu, cpu = e.devices
    assert 4 * GIB < gpu.total_bytes < 24 * GIB
    assert cpu.weights_bytes > 120 * GIB  # the routed experts
    assert e.host_ram_bytes == cpu.total_bytes
    f = e.engine_figures
    assert f["offloaded"] == "95/95 layers"
    assert f["devices"]["CUDA0"]["kv_buffer_bytes"] == 94 * 32768 * 2 * 4 * 128 * 2
    assert "--cpu-moe" in e.command


# ---------------------------------------------------------------------- measured cases

CASES = json.loads((DATA / "measured_llamacpp.json").read_text())["cases"]


def case_estimate(c: dict[str, Any]) -> Estimate:
    model: Any = dict(c["config"], _name_or_path=c["model"]) if c.get("config") else c["model"]
    s = c["settings"]
    return estimate(model, quant=s.get("quant"), gpu=c["gpu"], gpus=c["gpu_count"],
                    engine=f"{c['engine']}=={c['engine_version']}",
                    engine_options=s["engine_options"], allow_hub=False)


def byte_metrics(cases: list[dict[str, Any]]) -> list[Any]:
    """One test per measured byte figure ('DEV.component' or a top-level figure)."""
    out = []
    for c in cases:
        if c.get("unmatched"):
            out.append(pytest.param(c, "", id=c["id"],
                                    marks=pytest.mark.skip(reason=c["unmatched"])))
            continue
        for metric, value in c["measured"].items():
            if not metric.endswith("_bytes") or not isinstance(value, int):
                continue
            marks = [pytest.mark.xfail(strict=True, reason=c["xfail"][metric])] \
                if metric in c["xfail"] else []
            out.append(pytest.param(c, metric, id=f"{c['id']}-{metric}", marks=marks))
    return out


def predicted(e: Estimate, metric: str) -> int:
    f = e.engine_figures
    if "." in metric:
        d, comp = metric.split(".", 1)
        return int(f["devices"][d][comp])
    return int(f[metric])


def check_metric(case: dict[str, Any], metric: str) -> None:
    e = case_estimate(case)
    pred, meas = predicted(e, metric), case["measured"][metric]
    tol = case["tolerance"][metric]
    if meas == 0:
        assert pred == 0, f"{pred / MIB:.2f} MiB predicted, nothing logged"
        return
    err = (pred - meas) / meas
    assert abs(err) <= tol, f"{pred / MIB:.2f} MiB predicted vs {meas / MIB:.2f} MiB logged " \
        f"({err:+.1%}, tolerance {tol:.0%})"


@pytest.mark.parametrize(("case", "metric"), byte_metrics(CASES))
def test_measured_llamacpp(case: dict[str, Any], metric: str) -> None:
    check_metric(case, metric)


def test_measured_cases_keep_their_source() -> None:
    for c in CASES:
        assert c["source"] and c["excerpt"] and c["id"]
        assert c["unmatched"] or c["justification"]
