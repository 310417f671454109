"""``ModelSource``: what resolving a model name gives (a leaf of the resolve stage).

``model/source.py`` (catalog, local folder, Hub), ``model/gguf_source.py`` (a local ``.gguf``) and
``model/gguf_hub.py`` (a ``.gguf`` on the Hub) all build it; keeping the type here lets them import
it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vramplan.model.safetensors import HeaderTensor


@dataclass(frozen=True, slots=True)
class ModelSource:
    model_id: str
    origin: str  # catalog | local | hub | gguf | inline
    source: str  # where the config came from
    config: dict[str, Any]
    hf_quant_config: dict[str, Any] | None = None
    header_tensors: tuple[HeaderTensor, ...] = field(default=())
