"""GGUF files on the Hub (model/gguf_hub.py): header bytes only, served by a fake HfFileSystem.

The fake serves real GGUF files written here with ``gguf.GGUFWriter``; its files are fsspec
``AbstractBufferedFile``s, so the caching a real ``HfFileSystem`` file applies is the one under
test, and every range read is recorded. The network is never used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import pytest
from fsspec.spec import AbstractBufferedFile

from tests.gguf_files import llama_tensors, write_tensors
from vramplan import api
from vramplan.api import estimate, load
from vramplan.errors import HeaderError, InputError, OfflineError, UnknownModelError
from vramplan.model import gguf_hub
from vramplan.model.gguf_reader import read_gguf_header

Q = gguf.GGMLQuantizationType
REPO = "tiny-org/tiny-GGUF"
N_VOCAB = 3000  # ~40 KB of tokenizer strings: several growth steps from a 4 KiB first read


def write_gguf(path: Path, wtype: Q = Q.Q4_0, n_layer: int = 4, split_max_tensors: int = 0,
               name: str = "tiny hub model") -> Path:
    """A small llama GGUF with a real tokenizer array and zeroed tensor data."""
    n_embd, n_head, n_head_kv, n_ff = 256, 4, 2, 512
    w = gguf.GGUFWriter(path, "llama", split_max_tensors=split_max_tensors)
    w.add_name(name)
    w.add_file_type(2)
    w.add_block_count(n_layer)
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"token{i}" for i in range(N_VOCAB)])
    w.add_token_types([1] * N_VOCAB)
    tensors = llama_tensors(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv,
                            n_ff=n_ff, n_vocab=N_VOCAB, wtype=wtype)
    write_tensors(w, tensors)
    return path


# ---------------------------------------------------------------------- the fake Hub


class FakeHub:
    """Files by HfFileSystem path (``org/repo/file``) and every range read asked for."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.reads: list[tuple[str, int, int]] = []
        self.fail: Exception | None = None

    def add(self, repo: str, name: str, data: bytes) -> None:
        self.files[f"{repo}/{name}"] = data

    def requested(self, path: str | None = None) -> int:
        return sum(e - s for p, s, e in self.reads if path is None or p == path)


class FakeFile(AbstractBufferedFile):
    def __init__(self, fs: FakeFs, path: str, **kw: Any) -> None:
        self.hub = fs.hub
        super().__init__(fs, path, **kw)

    def _fetch_range(self, start: int, end: int) -> bytes:
        self.hub.reads.append((self.path, start, end))
        return self.hub.files[self.path][start:end]


class FakeFs:
    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub

    def _check(self, path: str) -> None:
        if self.hub.fail is not None:
            raise self.hub.fail
        if path not in self.hub.files:
            raise FileNotFoundError(path)

    def info(self, path: str, **kw: Any) -> dict[str, Any]:
        self._check(path)
        return {"name": path, "size": len(self.hub.files[path]), "type": "file"}

    def find(self, path: str, **kw: Any) -> list[str]:
        if self.hub.fail is not None:
            raise self.hub.fail
        return sorted(p for p in self.hub.files if p.startswith(path + "/"))

    def open(self, path: str, mode: str = "rb", block_size: Any = None, **kw: Any) -> FakeFile:
        self._check(path)
        return FakeFile(self, path, mode=mode, block_size=block_size or "default", **kw)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import EntryNotFoundError

    fake = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfFileSystem", lambda *a, **k: FakeFs(fake))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def no_config(repo_id: str, filename: str, revision: str | None = None) -> str:
        raise EntryNotFoundError(f"{repo_id}/{filename}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_config)
    monkeypatch.setattr(gguf_hub, "INITIAL_BYTES", 4096)
    for f in (gguf_hub._header, gguf_hub._listing, api._load_cached, api._priced):
        f.cache_clear()
    yield fake
    for f in (gguf_hub._header, gguf_hub._listing, api._load_cached, api._priced):
        f.cache_clear()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("hub") / "tiny-Q4_0.gguf")


def run(model: str, **kw: Any) -> Any:
    kw.setdefault("gpu", "rtx-4090")
    kw.setdefault("context", 4096)
    return estimate(model, **kw)


# ---------------------------------------------------------------------- one file


def test_header_bytes_only_and_same_estimate_as_the_local_file(hub: FakeHub, tiny: Path) -> None:
    data = tiny.read_bytes()
    hub.add(REPO, "tiny-Q4_0.gguf", data)
    remote = run(f"{REPO}:tiny-Q4_0.gguf")
    local = run(str(tiny))
    assert remote.model.origin == "gguf" and remote.engine == "llamacpp"
    assert remote.weights_bytes == local.weights_bytes
    assert remote.devices == local.devices and remote.fits == local.fits
    assert remote.host_ram_bytes == local.host_ram_bytes
    assert "-m tiny-Q4_0.gguf" in remote.command
    # header only: the reads are contiguous from 0, grew past the first 4 KiB, and stop
    # well before the tensor data ends
    h = read_gguf_header(tiny)
    path = f"{REPO}/tiny-Q4_0.gguf"
    reads = [(s, e) for p, s, e in hub.reads if p == path]
    assert reads[0] == (0, 4096) and len(reads) > 2
    assert all(a[1] == b[0] for a, b in zip(reads, reads[1:], strict=False))
    assert h.data_offset <= hub.requested() <= 2 * h.data_offset < len(data)
    assert hub.requested() < h.data_offset + h.tensor_bytes // 4


def test_header_is_read_once_per_file(hub: FakeHub, tiny: Path) -> None:
    hub.add(REPO, "tiny-Q4_0.gguf", tiny.read_bytes())
    run(f"{REPO}:tiny-Q4_0.gguf")
    n = len(hub.reads)
    run(f"{REPO}:tiny-Q4_0.gguf", context=2048, engine="generic")
    assert len(hub.reads) == n


# ---------------------------------------------------------------------- picking a file


def test_repo_without_config_picks_q4_k_m(hub: FakeHub, tiny: Path,
                                          tmp_path: Path) -> None:
    q8 = write_gguf(tmp_path / "tiny-Q8_0.gguf", wtype=Q.Q8_0)
    repo = "tiny-org/multi-GGUF"
    hub.add(repo, "tiny-Q4_K_M.gguf", tiny.read_bytes())
    hub.add(repo, "tiny-Q8_0.gguf", q8.read_bytes())
    hub.add(repo, "mmproj-tiny-F16.gguf", b"not read")
    hub.add(repo, "README.md", b"# tiny")
    lm = load(repo)
    assert lm.source.origin == "gguf" and lm.source.model_id == repo
    assert lm.source.source.endswith("tiny-Q4_K_M.gguf")
    assert {p for p, _, _ in hub.reads} == {f"{repo}/tiny-Q4_K_M.gguf"}
    assert run(repo).weights_bytes == run(str(tiny)).weights_bytes
    # --quant on a repo-level name prices the repo's file of that quantization
    assert run(repo, quant="q8_0").weights_bytes == run(str(q8)).weights_bytes
    with pytest.raises(UnknownModelError, match=r"^--quant: .* no \.gguf file for IQ2_XS: .*tiny-Q8_0\.gguf"):
        run(repo, quant="iq2_xs")
    # a tag after the colon picks like llama-server -hf repo:TAG
    assert load(f"{repo}:q8_0").source.source.endswith("tiny-Q8_0.gguf")


def test_named_file_with_quant_is_one_clear_line(hub: FakeHub, tiny: Path) -> None:
    hub.add(REPO, "tiny-Q4_0.gguf", tiny.read_bytes())
    with pytest.raises(InputError, match=rf"already quantized; drop --quant, or name another "
                       rf"file \(e\.g\. {REPO}:Q8_0\)"):
        run(f"{REPO}:tiny-Q4_0.gguf", quant="q8_0")


def test_ambiguous_repo_lists_its_files(hub: FakeHub) -> None:
    repo = "tiny-org/amb-GGUF"
    for f in ("a-Q8_0.gguf", "a-Q5_K_M.gguf", "sub/b-Q6_K-00001-of-00002.gguf",
              "sub/b-Q6_K-00002-of-00002.gguf"):
        hub.add(repo, f, b"GGUF")
    with pytest.raises(UnknownModelError) as exc:
        load(repo)
    msg = str(exc.value)
    assert "\n" not in msg and "none of them Q4_K_M" in msg
    assert "a-Q5_K_M.gguf, a-Q8_0.gguf, sub/b-Q6_K-00001-of-00002.gguf (2 parts)" in msg
    assert f"pass one as {repo}:<file>" in msg
    assert not hub.reads  # nothing read before a file is chosen


def test_pick_file_rules() -> None:
    files = ["x-Q4_K_M.gguf", "x-Q4_K_S.gguf", "x-UD-Q4_K_XL.gguf", "mmproj-x-f16.gguf",
             "x-imatrix.gguf", "x-Q4_K_M-00001-of-00002.gguf", "notes.txt"]
    assert gguf_hub.pick_file("o/r", ["x-Q4_K_S.gguf"], None) == "x-Q4_K_S.gguf"  # the only one
    assert gguf_hub.pick_file("o/r", files, "q4_k_s") == "x-Q4_K_S.gguf"
    assert gguf_hub.pick_file("o/r", files, "UD-Q4_K_XL") == "x-UD-Q4_K_XL.gguf"
    with pytest.raises(UnknownModelError, match="2 .gguf files for Q4_K_M"):
        gguf_hub.pick_file("o/r", files, None)
    with pytest.raises(UnknownModelError, match="no .gguf file for Q4_K:"):
        gguf_hub.pick_file("o/r", files, "Q4_K")  # a tag is a whole token
    with pytest.raises(UnknownModelError, match="no .gguf model file"):
        gguf_hub.pick_file("o/r", ["mmproj-F16.gguf", "config.txt"], None)
    assert gguf_hub.split_parts("d/m-00002-of-00003.gguf") == (
        "d/m-00001-of-00003.gguf", "d/m-00002-of-00003.gguf", "d/m-00003-of-00003.gguf")


# ---------------------------------------------------------------------- split files


def test_split_gguf_reads_every_part(hub: FakeHub, tmp_path: Path) -> None:
    whole = write_gguf(tmp_path / "whole.gguf")
    (tmp_path / "split").mkdir()
    write_gguf(tmp_path / "split" / "tiny-Q4_0.gguf", split_max_tensors=15)
    parts = sorted((tmp_path / "split").glob("*.gguf"))
    assert len(parts) == 3 and parts[0].name == "tiny-Q4_0-00001-of-00003.gguf"
    for p in parts:
        hub.add(REPO, f"Q4_0/{p.name}", p.read_bytes())
    e = run(f"{REPO}:Q4_0/{parts[1].name}")  # any part names the set
    assert e.weights_bytes == run(str(whole)).weights_bytes
    assert e.weights_bytes == sum(read_gguf_header(p).tensor_bytes for p in parts)
    assert {p for p, _, _ in hub.reads} == {f"{REPO}/Q4_0/{p.name}" for p in parts}
    for p in parts:
        assert 0 < hub.requested(f"{REPO}/Q4_0/{p.name}") < p.stat().st_size
    assert "-m tiny-Q4_0-00001-of-00003.gguf" in e.command
    # a missing part is one line naming it
    del hub.files[f"{REPO}/Q4_0/{parts[2].name}"]
    gguf_hub._header.cache_clear()
    with pytest.raises(UnknownModelError, match=f"has no file Q4_0/{parts[2].name}"):
        load(f"{REPO}:Q4_0/{parts[0].name}", allow_local=False)


# ---------------------------------------------------------------------- failures


def test_offline_is_one_clear_line(hub: FakeHub, tiny: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    hub.add(REPO, "tiny-Q4_0.gguf", tiny.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE is set") as exc:
        load(f"{REPO}:tiny-Q4_0.gguf")
    assert "built-in model" in str(exc.value)
    with pytest.raises(OfflineError, match="built-in model"):
        load("tiny-org/other-GGUF")  # listing a repo needs the Hub
    assert not hub.reads


def test_offline_reads_a_file_in_the_hf_cache(hub: FakeHub, tiny: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, f, **k: str(tiny) if (repo, f) == (REPO, "t.gguf") else None)
    assert run(f"{REPO}:t.gguf").weights_bytes == run(str(tiny)).weights_bytes
    assert not hub.reads


def test_unreachable_hub_is_offline_error(hub: FakeHub) -> None:
    hub.fail = ConnectionError("no route to host")
    with pytest.raises(OfflineError, match=r"built-in model.*\(ConnectionError\)"):
        load(f"{REPO}:tiny-Q4_0.gguf")
    with pytest.raises(OfflineError, match="built-in model"):
        load("tiny-org/unreachable-GGUF")


def test_missing_file_and_repo(hub: FakeHub) -> None:
    with pytest.raises(UnknownModelError, match=f"{REPO} has no file nope.gguf; pass {REPO} "
                       "alone"):
        load(f"{REPO}:nope.gguf")
    hub.fail = FileNotFoundError("tiny-org/gone/x.gguf (repository not found). If the repo is "
                                 "private, make sure you are authenticated")
    with pytest.raises(UnknownModelError, match="was not found on the Hub"):
        load("tiny-org/gone:x.gguf")


@pytest.mark.parametrize(("cut", "match"), [
    (lambda d: d[:3000], "file ends at byte 3000 but the header needs"),
    (lambda d: d[:-100], "data ends past the end of the file"),
    (lambda d: b"GGUX" + d[4:], "does not start with the GGUF magic"),
    (lambda d: d[:4] + b"\x07\x00\x00\x00" + d[8:], "unknown GGUF version 7"),
])
def test_truncated_or_corrupt_remote_header_is_one_line(hub: FakeHub, tiny: Path, cut: Any,
                                                        match: str) -> None:
    hub.add(REPO, "bad.gguf", cut(tiny.read_bytes()))
    with pytest.raises(HeaderError, match=match) as exc:
        load(f"{REPO}:bad.gguf")
    msg = str(exc.value)
    assert msg.startswith(f"MODEL {REPO}:bad.gguf: ") and "\n" not in msg
    assert "download it again" not in msg


def test_header_larger_than_the_cap(hub: FakeHub, tiny: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf_hub, "MAX_HEADER_BYTES", 16384)
    hub.add(REPO, "tiny-Q4_0.gguf", tiny.read_bytes())
    with pytest.raises(HeaderError, match="header is larger than 16,384 bytes") as exc:
        load(f"{REPO}:tiny-Q4_0.gguf")
    assert "local path" in str(exc.value)
    assert hub.requested() <= 16384
