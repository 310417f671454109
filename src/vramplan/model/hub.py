"""Hugging Face Hub: config.json and safetensors headers only, never the weights.

Uses ``huggingface_hub`` (its cache, ``HF_TOKEN``, ``HF_HUB_OFFLINE``);
``HfApi.get_safetensors_metadata`` reads headers with HTTP range requests.
"""

from __future__ import annotations

import json
from typing import Any

from vramplan.errors import OfflineError, UnknownModelError
from vramplan.model.safetensors import HeaderTensor, parse_header

OFFLINE_HINT = ("the Hugging Face Hub cannot be reached; use a built-in model (`vramplan models`) "
                "or a local path to a config.json or model folder")


class NoConfigError(UnknownModelError):
    """The repo exists but has no config.json (``model/gguf_hub.py`` then looks for .gguf files)."""


def fetch_config(repo_id: str, revision: str | None = None) -> dict[str, Any]:
    """Download (or take from the HF cache) only config.json of ``repo_id``."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            RepositoryNotFoundError,
        )
    except ImportError:  # pragma: no cover - dependency declared in pyproject
        raise OfflineError("huggingface_hub is not installed; " + OFFLINE_HINT) from None
    try:
        path = hf_hub_download(repo_id, "config.json", revision=revision)
    except GatedRepoError:
        raise UnknownModelError("MODEL", f"{repo_id} is gated",
                                "accept its licence on the Hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise UnknownModelError("MODEL", f"{repo_id} was not found on the Hub",
                                "check the id, or set HF_TOKEN for a private repo") from None
    except EntryNotFoundError:
        raise NoConfigError("MODEL", f"{repo_id} has no config.json",
                            f"GGUF-only repos: pass {repo_id}:<file.gguf>") from None
    except Exception as exc:  # network errors come in many classes
        raise OfflineError(f"{repo_id}: {OFFLINE_HINT} ({exc.__class__.__name__})") from None
    with open(path, encoding="utf-8") as fh:
        return dict(json.load(fh))


def fetch_safetensors_headers(repo_id: str, revision: str | None = None) -> list[HeaderTensor]:
    """Tensor list of every safetensors shard (header-only range reads); [] when unavailable."""
    try:
        from huggingface_hub import HfApi
        meta = HfApi().get_safetensors_metadata(repo_id, revision=revision)
    except Exception:
        return []
    out: list[HeaderTensor] = []
    for shard in meta.files_metadata.values():
        hdr = {name: {"dtype": info.dtype, "shape": list(info.shape)}
               for name, info in shard.tensors.items()}
        out += parse_header(json.dumps(hdr).encode(), f"{repo_id} safetensors header")
    return out
