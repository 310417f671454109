"""GGUF files on the Hugging Face Hub: the header bytes only, never the weights.

Names (routed here by ``model/source.py``):

* ``org/repo:path/in/repo.gguf`` - that file;
* ``org/repo:Q5_K_M`` - the repo's one ``.gguf`` whose name carries that quantization tag (as
  ``llama-server -hf org/repo:Q5_K_M``);
* ``org/repo`` when the repo has no ``config.json`` - its only ``.gguf``, else its ``Q4_K_M``
  file (``DEFAULT_TAG``), else one error line naming the files and the ``org/repo:<file>`` fix.
  ``--quant q8_0`` on such a repo-level name prices the repo's Q8_0 file instead (same model,
  same architecture; see :func:`hub_header`).

``mmproj``/``imatrix`` files are not models and are never picked. A split GGUF
(``name-00001-of-00003.gguf``) is read part by part: every part's header is read and their tensor
tables are joined (metadata comes from part 1, as llama.cpp loads it), so the model is priced
from all of its tensors.

Reading: ``huggingface_hub.HfFileSystem`` (fsspec; ``HF_TOKEN`` or the stored login is used) opens
the file with ``cache_type="none"`` so that every ``read`` is exactly one HTTP range request for the
bytes asked; the first ``INITIAL_BYTES`` are parsed with
:func:`~vramplan.model.gguf_reader.parse_gguf_header_bytes`, and while it raises
:class:`~vramplan.model.gguf_reader.NeedMoreBytes` only the missing bytes up to its ``suggested``
length are fetched (at least doubling), up to ``MAX_HEADER_BYTES``. With ``HF_HUB_OFFLINE`` set,
or when the Hub cannot be reached, a file already in the local HF cache is read from disk;
otherwise :class:`~vramplan.errors.OfflineError` with ``model/hub.py``'s hint.

The result is a ``ModelSource`` with origin ``"gguf"`` (llama.cpp is the default engine) whose
config carries ``HUB_KEY``; ``quant.gguf_weights.priced_for_source`` prices such sources from
:func:`hub_header`, the same (cached) header.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

from vramplan.errors import HeaderError, InputError, OfflineError, UnknownModelError, VramplanError
from vramplan.model.gguf_reader import (
    GgufHeader,
    NeedMoreBytes,
    parse_gguf_header_bytes,
    read_gguf_header,
)
from vramplan.model.gguf_source import synth_config
from vramplan.model.hub import OFFLINE_HINT
from vramplan.model.model_source import ModelSource

__all__ = ["DEFAULT_TAG", "HUB_KEY", "INITIAL_BYTES", "MAX_HEADER_BYTES", "hub_header",
           "load_hub_gguf", "pick_file", "split_parts"]

MIB = 2**20
INITIAL_BYTES = 2 * MIB  # most headers fit; a 150k-token vocabulary with merges needs ~8 MiB
MAX_HEADER_BYTES = 256 * MIB  # far beyond any real header (the parser's own caps are per item)
DEFAULT_TAG = "Q4_K_M"
HUB_KEY = "_gguf_hub"  # config key: "org/repo:file.gguf" (part 1 of a split)
PICKED_KEY = "_gguf_hub_picked"  # config key: True when the file was picked from a repo listing
_MAX_LISTED = 40
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_NOT_MODELS = ("mmproj", "imatrix")


# --- picking a file ----------------------------------------------------------------------------


def split_parts(file: str) -> tuple[str, ...]:
    """Every part of a split GGUF named like ``x-00002-of-00003.gguf`` (part 1 first); else
    ``(file,)``."""
    m = _SPLIT.match(file)
    if m is None:
        return (file,)
    count = int(m.group("count"))
    if not 1 <= count <= 99_999:
        return (file,)
    return tuple(f"{m.group('stem')}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1))


def _candidates(files: list[str]) -> list[str]:
    """The model files of a listing: one entry per single file or split set (its part 1)."""
    out: list[str] = []
    for f in sorted(files):
        base = PurePosixPath(f).name.lower()
        if not base.endswith(".gguf") or any(word in base for word in _NOT_MODELS):
            continue
        first = split_parts(f)[0]
        if first not in out:
            out.append(first)
    return out


def _label(file: str) -> str:
    parts = split_parts(file)
    return f"{file} ({len(parts)} parts)" if len(parts) > 1 else file


def _names(files: list[str]) -> str:
    shown = [_label(f) for f in files[:_MAX_LISTED]]
    more = f" and {len(files) - _MAX_LISTED} more" if len(files) > _MAX_LISTED else ""
    return ", ".join(shown) + more


def _tag_matches(tag: str, file: str) -> bool:
    """``tag`` occurs in the path as a whole token (``Q4_K`` does not match ``Q4_K_M``)."""
    pat = r"(?<![A-Za-z0-9_])" + re.escape(tag) + r"(?![A-Za-z0-9_])"
    return re.search(pat, file, re.IGNORECASE) is not None


def pick_file(repo: str, files: list[str], tag: str | None, field: str = "MODEL") -> str:
    """The file of ``repo`` to read: by ``tag``, else the only model file, else ``DEFAULT_TAG``.

    Anything else is one :class:`UnknownModelError` line naming the files and the fix."""
    cands = _candidates(files)
    if not cands:
        raise UnknownModelError(field, f"{repo} has no config.json and no .gguf model file",
                                "pass a repo with a config.json or .gguf files")
    fix = f"pass one as {repo}:<file>, e.g. {repo}:{cands[0]}"
    if tag is None and len(cands) == 1:
        return cands[0]
    want = (tag or DEFAULT_TAG).upper()
    hits = [f for f in cands if _tag_matches(want, f)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UnknownModelError(field, f"{repo} has {len(hits)} .gguf files for {want}: "
                                f"{_names(hits)}", f"pass one as {repo}:<file>, e.g. "
                                f"{repo}:{hits[0]}")
    if tag is None:
        raise UnknownModelError(field, f"{repo} has no config.json and {len(cands)} .gguf "
                                f"files, none of them {DEFAULT_TAG}: {_names(cands)}", fix)
    raise UnknownModelError(field, f"{repo} has no .gguf file for {want}: {_names(cands)}", fix)


# --- talking to the Hub --------------------------------------------------------------------------


def _fs() -> Any:
    try:
        from huggingface_hub import HfFileSystem
    except ImportError:  # pragma: no cover - dependency declared in pyproject
        raise OfflineError("huggingface_hub is not installed; " + OFFLINE_HINT) from None
    return HfFileSystem()


def _offline() -> bool:
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        return True
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        yield cur
        cur = cur.__cause__  # explicit causes only: a context may be an unrelated, handled error
        seen += 1


def _translate(exc: Exception, repo: str, file: str | None) -> VramplanError:
    """A huggingface_hub / fsspec failure as one line."""
    names = {type(e).__name__ for e in _causes(exc)}
    text = " ".join(str(e) for e in _causes(exc)).lower()
    status = next((getattr(getattr(e, "response", None), "status_code", None)
                   for e in _causes(exc) if getattr(e, "response", None) is not None), None)
    if "GatedRepoError" in names:
        return UnknownModelError("MODEL", f"{repo} is gated",
                                 "accept its licence on the Hub and set HF_TOKEN")
    if "RepositoryNotFoundError" in names or "repository not found" in text or \
            "invalid repository id" in text:
        return UnknownModelError("MODEL", f"{repo} was not found on the Hub",
                                 "check the id, or set HF_TOKEN for a private repo")
    if "RevisionNotFoundError" in names:
        return UnknownModelError("MODEL", f"{repo}: revision not found", "check the id")
    if status in (401, 403):
        return UnknownModelError("MODEL", f"{repo} needs access (HTTP {status})",
                                 "set HF_TOKEN to a token that can read it")
    if isinstance(exc, FileNotFoundError) or "EntryNotFoundError" in names or status == 404:
        what = f"has no file {file}" if file else "cannot be listed"
        return UnknownModelError("MODEL", f"{repo} {what}",
                                 f"pass {repo} alone to list its .gguf files")
    return OfflineError(f"{repo}: {OFFLINE_HINT} ({exc.__class__.__name__})")


@contextmanager
def _hub_errors(repo: str, file: str | None = None) -> Iterator[None]:
    try:
        yield
    except VramplanError:
        raise
    except Exception as exc:  # network and Hub errors come in many classes
        raise _translate(exc, repo, file) from None


@lru_cache(maxsize=64)
def _listing(repo: str) -> tuple[str, ...]:
    if _offline():
        raise OfflineError(f"{repo}: {OFFLINE_HINT} (HF_HUB_OFFLINE is set)")
    with _hub_errors(repo):
        found = _fs().find(repo)
    prefix = repo + "/"
    return tuple(str(p)[len(prefix):] for p in found if str(p).startswith(prefix))


def _hub_fix(fix: str) -> str:
    return "the file on the Hub is truncated or corrupt; pick another file of the repo" \
        if "download" in fix else fix


def _read_remote(fs: Any, repo: str, file: str) -> GgufHeader:
    """Range reads of ``repo/file`` until its header parses (see the module docstring)."""
    path = f"{repo}/{file}"
    where = f"MODEL {repo}:{file}"
    size = int(fs.info(path)["size"])
    if size <= 0:
        raise HeaderError(where, "the file is empty", "pick another file of the repo")
    buf = bytearray()
    want = min(INITIAL_BYTES, size)
    with fs.open(path, "rb", block_size=INITIAL_BYTES, cache_type="none", size=size) as fh:
        while True:
            while len(buf) < want:
                fh.seek(len(buf))
                chunk = fh.read(want - len(buf))
                if not chunk:
                    raise HeaderError(where, f"the Hub sent {len(buf)} of the {want} bytes asked "
                                      "for", "try again")
                buf += chunk
            try:
                return parse_gguf_header_bytes(buf, size)
            except NeedMoreBytes as exc:
                if exc.required > MAX_HEADER_BYTES or len(buf) >= MAX_HEADER_BYTES:
                    cap = f"{MAX_HEADER_BYTES // MIB} MiB" if MAX_HEADER_BYTES % MIB == 0 \
                        else f"{MAX_HEADER_BYTES:,} bytes"
                    raise HeaderError(where, f"the GGUF header is larger than {cap} (at least "
                                      f"{exc.required:,} bytes)", "download the file and pass "
                                      "its local path") from None
                want = min(max(exc.suggested, 2 * len(buf)), MAX_HEADER_BYTES, size)
            except HeaderError as exc:
                raise HeaderError(where, exc.problem, _hub_fix(exc.fix)) from None


def _from_cache(repo: str, parts: tuple[str, ...]) -> list[GgufHeader] | None:
    """The headers of files already in the local Hugging Face cache (all parts), else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    paths = []
    for f in parts:
        try:
            p = try_to_load_from_cache(repo, f)
        except Exception:
            return None
        if not isinstance(p, str):
            return None
        paths.append(p)
    out = []
    for f, p in zip(parts, paths, strict=True):
        try:
            out.append(read_gguf_header(p))
        except HeaderError as exc:
            raise HeaderError(f"MODEL {repo}:{f}", exc.problem, exc.fix) from None
    return out


def _merge(repo: str, parts: tuple[str, ...], headers: list[GgufHeader]) -> GgufHeader:
    """One header for a split GGUF: part 1's metadata, every part's tensors."""
    h0 = headers[0]
    where = f"MODEL {repo}:{parts[0]}"
    if len(parts) == 1:
        if h0.split_count and h0.split_count > 1:
            raise HeaderError(where, f"is part 1 of {h0.split_count} of a split GGUF whose parts "
                              "are not named -0000k-of-0000N.gguf",
                              "pass the first part of a split named as llama-gguf-split names it")
        return h0
    tensors = []
    seen: set[str] = set()
    for i, (f, h) in enumerate(zip(parts, headers, strict=True)):
        no = h.metadata.get("split.no")
        if h.split_count != len(parts) or (isinstance(no, int) and no != i):
            raise HeaderError(f"MODEL {repo}:{f}", f"says it is split {no} (0-based) of "
                              f"{h.split_count}, expected {i} of {len(parts)}",
                              "the split files do not belong together; pick another file")
        for t in h.tensors:
            if t.name in seen:
                raise HeaderError(f"MODEL {repo}:{f}", f"repeats tensor {t.name!r}",
                                  "the split files do not belong together; pick another file")
            seen.add(t.name)
            tensors.append(t)
    expected = h0.metadata.get("split.tensors.count")
    if isinstance(expected, int) and not isinstance(expected, bool) and expected != len(tensors):
        raise HeaderError(where, f"the {len(parts)} parts hold {len(tensors)} tensors, part 1 "
                          f"says {expected}", "the split is incomplete; pick another file")
    return replace(h0, tensors=tuple(tensors), file_bytes=sum(h.file_bytes for h in headers))


@lru_cache(maxsize=64)
def _header(repo: str, file: str) -> GgufHeader:
    """The header of ``repo``'s ``file`` (all parts of a split joined), cached per process."""
    parts = split_parts(file)
    if _offline():
        cached = _from_cache(repo, parts)
        if cached is None:
            raise OfflineError(f"{repo}: {OFFLINE_HINT} (HF_HUB_OFFLINE is set and {parts[0]} "
                               "is not in the local Hugging Face cache)")
        return _merge(repo, parts, cached)
    headers: list[GgufHeader] = []
    try:
        fs = _fs()
        for f in parts:
            with _hub_errors(repo, f):
                headers.append(_read_remote(fs, repo, f))
    except OfflineError:
        cached = _from_cache(repo, parts)
        if cached is None:
            raise
        headers = cached
    return _merge(repo, parts, headers)


# --- the source and the header to price it from ---------------------------------------------------


def load_hub_gguf(name: str) -> ModelSource:
    """``org/repo:file.gguf``, ``org/repo:TAG`` or ``org/repo`` (see the module docstring)."""
    repo, _, sel = name.partition(":")
    picked = not sel.lower().endswith(".gguf")
    file = pick_file(repo, list(_listing(repo)), sel or None) if picked else sel
    file = split_parts(file)[0]
    h = _header(repo, file)
    cfg = synth_config(h, PurePosixPath(file).name)
    cfg[HUB_KEY] = f"{repo}:{file}"
    cfg[PICKED_KEY] = picked and not sel
    model_id = repo if cfg[PICKED_KEY] else f"{repo}:{file}"
    return ModelSource(model_id, "gguf", f"huggingface.co/{repo}/{file}", cfg)


def hub_header(source: ModelSource, quant: str | None) -> tuple[GgufHeader, str]:
    """The header to price a Hub GGUF source from and its file name: the source's own file, or
    with ``--quant`` on a repo-level name the repo's file for that quantization (same model,
    same architecture). Pricing itself is ``quant/gguf_weights.py``'s."""
    repo, _, file = str(source.config[HUB_KEY]).partition(":")
    if quant:
        if not source.config.get(PICKED_KEY):
            raise InputError("--quant", f"{repo}:{file} is a GGUF file, already quantized",
                             f"drop --quant, or name another file (e.g. {repo}:{quant.upper()})")
        tag = re.sub(r"^gguf[-_]", "", quant.strip(), flags=re.IGNORECASE)
        file = pick_file(repo, list(_listing(repo)), tag, "--quant")
    return _header(repo, file), PurePosixPath(file).name
