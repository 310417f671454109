"""Request rules shared by the HTTP API (``web/app.py``) and the MCP server (``mcp_server.py``).

Stdlib only, so ``vramplan mcp`` works without the ``web`` extra. A request is a JSON object
(or a URL query string); :func:`parse_request` checks each field's type and bounds and raises
:class:`~vramplan.errors.InputError` naming the field as the CLI spells it (``--context``,
``MODEL``), so every interface shows the CLI's one-line message.

The server may face untrusted input, so:

- it never reads a local file named by a request: a model string must be a catalog id or alias
  (checked first, with ``catalog.find``), else a Hub id (``org/name``) and only when the server
  allows the Hub; a Hub-shaped string that names an existing local path is refused too;
- an inline config.json is a JSON object of at most 64 KiB, nested at most 32 deep, with at
  most 512 layers (each request parses it afresh);
- numbers are bounded (context 1..16M tokens, batch 1..65536, GPUs 1..1024, ...), and engine
  options are the CLI's engine flags only, each type-checked.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vramplan.errors import InputError, VramplanError

MAX_BODY_BYTES = 256 * 1024  # whole HTTP request body
MAX_CONFIG_BYTES = 64 * 1024  # inline config.json, compact JSON, UTF-8
MAX_CONFIG_DEPTH = 32
# Inline configs are parsed per request (only names are cached) and cost ~0.4 ms per layer, more
# with many pipeline stages; real models have at most a few hundred layers (the core allows
# 10,000, which takes seconds).
MAX_INLINE_LAYERS = 512
MAX_CONTEXT_TOKENS = 1 << 24  # same bound as vramplan.api
MAX_BATCH = 1 << 16  # same bound as vramplan.api
MAX_GPUS = 1024
MAX_MEMORY_BYTES = 1 << 50  # 1 PiB: --vram / --ram beyond this is a typo
MAX_STR = 256  # model names, GPU names
MAX_SHORT_STR = 64  # quant, engine, kv dtype, option strings
MAX_ENGINE_INT = 1 << 24
MAX_QUERY_CHARS = 128  # /v1/models?q=, /v1/gpus?q=
MAX_REGEX_QUANTIFIERS = 3  # llama.cpp --override-tensor: bounded backtracking
MAX_PLAN_OPTIONS = 32
PLAN_CONCURRENCY = 2  # plans take seconds (a search over engines x quant x GPUs); at most 2 at once
PLAN_WAIT_S = 20.0  # then 503 "busy"

# Hugging Face repo ids: two segments of letters, digits, '_', '.', '-', at most 96 characters
# each, not starting with '.' or '-' (huggingface_hub.utils.validate_repo_id), no '..' or '--'.
# org/name, optionally :file.gguf or :TAG for a GGUF on the Hub (model/gguf_hub.py)
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}"
                    r"(:[A-Za-z0-9][A-Za-z0-9_.+/-]{0,200})?")
_SAFE_OVERRIDE = re.compile(r"[A-Za-z0-9_.|\\*+?^$=,:-]{1,256}")


class PlanUnavailable(VramplanError):
    """``vramplan.plan`` is not part of this build yet (HTTP 501)."""


class Busy(VramplanError):
    """Too many plans at once (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One request field: its JSON type, bounds, CLI spelling (for messages) and help."""

    name: str
    cli: str  # how the CLI spells it; InputError.field
    kind: str  # str | int | float | tokens | size | object
    help: str
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    default: Any = None


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("model", "MODEL", "str", "Built-in model id or alias (GET /v1/models), or a Hugging "
              "Face id org/name when the server allows the Hub. Local paths are refused.",
              max_length=MAX_STR),
    FieldSpec("config", "config", "object", "Inline config.json (a JSON object, at most 64 KiB), "
              "instead of model.", max_length=MAX_CONFIG_BYTES),
    FieldSpec("gpu", "--gpu", "str", "GPU name, fuzzy, e.g. '4090', 'h100 sxm' (GET /v1/gpus); "
              "default H100 SXM.", max_length=MAX_STR),
    FieldSpec("gpus", "--gpus", "int", "Number of GPUs (default: tp x pp).", 1, MAX_GPUS),
    FieldSpec("vram", "--vram", "size", "Custom GPU memory: bytes, or '24GiB', '80GB'.", 1,
              MAX_MEMORY_BYTES),
    FieldSpec("quant", "--quant", "str", "Quantize an unquantized model: bf16, fp8, awq, gptq, "
              "nf4, q4_k_m, ... (a quantized checkpoint's own config wins).",
              max_length=MAX_SHORT_STR),
    FieldSpec("context", "--context", "tokens", "Tokens per sequence: 8192 or '32k' (default: "
              "trained context capped at 32k).", 1, MAX_CONTEXT_TOKENS),
    FieldSpec("batch", "--batch", "int", "Concurrent sequences.", 1, MAX_BATCH, default=1),
    FieldSpec("kv_dtype", "--kv-dtype", "str", "KV cache dtype: auto, fp16, bf16, fp8, q8_0, q4_0.",
              max_length=MAX_SHORT_STR, default="auto"),
    FieldSpec("tp", "--tp", "int", "Tensor parallel size (default: gpus / pp).", 1, MAX_GPUS),
    FieldSpec("pp", "--pp", "int", "Pipeline parallel size.", 1, MAX_GPUS, default=1),
    FieldSpec("engine", "--engine", "str", "auto, vllm, llamacpp, ollama, sglang, transformers, "
              "generic; optionally versioned (vllm==0.10.2).", max_length=MAX_SHORT_STR,
              default="auto"),
    FieldSpec("ram", "--ram", "size", "Host RAM for offload: bytes, or '128GiB'.", 1,
              MAX_MEMORY_BYTES),
    FieldSpec("ram_kind", "--ram-kind", "str", "Host memory kind, case-insensitive: DDR4-3200, "
              "DDR5-5600, DDR5-6400, LPDDR5X-8533, ... (default DDR5-5600; offload speed).",
              max_length=MAX_SHORT_STR),
    FieldSpec("ram_channels", "--ram-channels", "int", "Populated 64-bit host memory channels "
              "(default 2; servers 8-12 per socket).", 1, 24),
    FieldSpec("pcie_gen", "--pcie-gen", "int", "PCIe generation of the GPU slots (default: the "
              "GPU's own, else 4).", 3, 6),
    FieldSpec("engine_options", "engine_options", "object", "Engine flags by python name, e.g. "
              "{\"max_model_len\": 8192, \"gpu_memory_utilization\": 0.9} (see vramplan "
              "estimate --help)."),
    # /v1/plan only
    FieldSpec("min_tokens_per_s", "--min-tokens-per-s", "float", "Plan only: the decode speed "
              "an option must reach (tokens/s per sequence).", 0, MAX_ENGINE_INT),
    FieldSpec("max_options", "--max-options", "int", "Plan only: how many ranked options to "
              "return.", 1, MAX_PLAN_OPTIONS, default=8),
)
PLAN_ONLY = frozenset({"min_tokens_per_s", "max_options"})
_BY_NAME = {f.name: f for f in FIELDS}
# Bounded by vramplan.api.validate_workload (1..16M tokens, 1..65536 sequences): left to it so the
# message is the CLI's, word for word.
API_CHECKED = frozenset({"context", "batch"})


@dataclass(frozen=True, slots=True)
class EngineFlag:
    name: str  # python name (engine_options key)
    flag: str  # CLI spelling
    kind: str  # int | float | bool | str | tokens | choice
    help: str
    choices: tuple[str, ...] = ()


def _engine_flags() -> dict[str, EngineFlag]:
    """The CLI's engine flags (``cli/options.py:ENGINE_FLAGS``), typed for requests."""
    from vramplan.cli.options import ENGINE_FLAGS, TokensType

    out: dict[str, EngineFlag] = {}
    for flag, name, typ, help_ in ENGINE_FLAGS:
        choices: tuple[str, ...] = tuple(getattr(typ, "choices", ()) or ())
        if isinstance(typ, TokensType):
            kind = "tokens"
        elif choices:
            kind = "choice"
        elif typ in (int, float, bool, str):
            kind = typ.__name__
        else:
            kind = "str"
        out[name] = EngineFlag(name, flag, kind, help_, choices)
    return out


ENGINE_FLAGS: dict[str, EngineFlag] = _engine_flags()


@dataclass(frozen=True, slots=True)
class EstimateRequest:
    """A validated request; ``kwargs()`` are ``vramplan.api.estimate``'s keyword arguments."""

    model: str | None = None
    config: dict[str, Any] | None = None
    gpu: str | None = None
    gpus: int | None = None
    vram: int | None = None
    quant: str | None = None
    context: int | None = None
    batch: int = 1
    kv_dtype: str = "auto"
    tp: int | None = None
    pp: int = 1
    engine: str = "auto"
    ram: int | None = None
    ram_kind: str | None = None
    ram_channels: int | None = None
    pcie_gen: int | None = None
    engine_options: dict[str, Any] = field(default_factory=dict)
    min_tokens_per_s: float | None = None  # plan only
    max_options: int = 8  # plan only

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``api.estimate``, as the CLI passes them (ep from the flag)."""
        return {"gpu": self.gpu, "gpus": self.gpus, "vram": self.vram, "quant": self.quant,
                "context": self.context, "batch": self.batch, "kv_dtype": self.kv_dtype,
                "tp": self.tp, "pp": self.pp,
                "ep": bool(self.engine_options.get("enable_expert_parallel")),
                "engine": self.engine, "engine_options": dict(self.engine_options),
                "ram": self.ram, **self.host_kwargs()}

    def host_kwargs(self) -> dict[str, Any]:
        """The host description (``ram_kind``, ``ram_channels``, ``pcie_gen``), when given."""
        return {k: v for k, v in (("ram_kind", self.ram_kind), ("ram_channels",
                                                                self.ram_channels),
                                  ("pcie_gen", self.pcie_gen)) if v is not None}

    def plan_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``vramplan.plan.plan``: it searches engines, quantization and
        parallelism itself, so only the hardware and the workload go in."""
        return {"gpu": self.gpu, "gpus": self.gpus, "ram_bytes": self.ram,
                "context": self.context, "concurrency": self.batch,
                "min_tokens_per_s": self.min_tokens_per_s,
                "engines": None if self.engine in ("", "auto") else [self.engine],
                "max_options": self.max_options, **self.host_kwargs()}


# ---------------------------------------------------------------- field checks

def _bad(spec: FieldSpec | EngineFlag, problem: str, fix: str = "") -> InputError:
    return InputError(spec.cli if isinstance(spec, FieldSpec) else spec.flag, problem, fix)


def _int(spec: FieldSpec | EngineFlag, value: Any, lo: int, hi: int,
         shown: tuple[int, int] | None = None) -> int:
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,19}\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(spec, f"must be an integer, got {_show(value)}")
    if not lo <= value <= hi:
        a, b = shown or (lo, hi)
        raise _bad(spec, f"must be between {a:,} and {b:,}, got {_show(value)}")
    return value


def _str(spec: FieldSpec | EngineFlag, value: Any, max_length: int) -> str:
    if not isinstance(value, str):
        raise _bad(spec, f"must be a string, got {_show(value)}")
    if len(value) > max_length:
        raise _bad(spec, f"is longer than {max_length} characters")
    if any(ord(c) < 32 for c in value):
        raise _bad(spec, "contains control characters")
    return value.strip()


def _tokens(spec: FieldSpec | EngineFlag, value: Any, lo: int) -> int:
    if isinstance(value, str):
        from vramplan.units import parse_tokens

        if len(value) > 32:
            raise _bad(spec, "is not a token count", "write it like 8192 or 32k")
        value = parse_tokens(value, spec.cli if isinstance(spec, FieldSpec) else spec.flag)
    return _int(spec, value, lo, MAX_CONTEXT_TOKENS)


def _size(spec: FieldSpec, value: Any) -> int:
    if isinstance(value, str) and not re.fullmatch(r"\s*\d{1,16}\s*", value):
        from vramplan.units import parse_bytes

        if len(value) > 32:
            raise _bad(spec, "is not a size", "write it like 24GiB or 80GB")
        value = parse_bytes(value, spec.cli)
    return _int(spec, value, 1, MAX_MEMORY_BYTES)


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else \
        type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def check_config(value: Any) -> dict[str, Any]:
    """An inline config.json: a JSON object, at most 64 KiB and 32 levels deep."""
    spec = _BY_NAME["config"]
    if not isinstance(value, dict):
        raise _bad(spec, "must be a JSON object (the model's config.json)",
                   "paste the whole config.json")
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:  # iterative: a deep document must not hit the recursion limit
        node, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise _bad(spec, f"is nested deeper than {MAX_CONFIG_DEPTH} levels",
                       "paste the model's config.json")
        if isinstance(node, dict):
            layers = node.get("num_hidden_layers")
            if isinstance(layers, int | float) and layers > MAX_INLINE_LAYERS:
                raise _bad(spec, f"num_hidden_layers {layers} is more than this server takes "
                           f"({MAX_INLINE_LAYERS})", "use the CLI for such a model")
        children = node.values() if isinstance(node, dict) else node if isinstance(
            node, list) else ()
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError):
        raise _bad(spec, "is not plain JSON", "paste the model's config.json") from None
    if size > MAX_CONFIG_BYTES:
        raise _bad(spec, f"is {size:,} bytes, more than {MAX_CONFIG_BYTES // 1024} KiB",
                   "paste only config.json (without weights or tokenizer data)")
    return value


HUB_HINT = "start it with --allow-hub"  # how to turn the Hub on, for this interface


def check_model_name(name: str, allow_hub: bool, hub_hint: str = HUB_HINT) -> str:
    """A catalog id/alias (canonical id returned) or, when allowed, a Hub id; never a path."""
    from vramplan.model import catalog

    name = name.strip()
    if not name:
        raise InputError("MODEL", "is empty", "pick a model, e.g. qwen3-8b (GET /v1/models)")
    entry = catalog.find(name)
    if entry is not None:
        return entry.id
    sug = catalog.suggestions(name)
    hint = f"did you mean: {', '.join(sug)}? " if sug else ""
    if not allow_hub:
        raise InputError("MODEL", f"{name!r} is not in the built-in catalog",
                         f"{hint}this server does not fetch from the Hugging Face Hub "
                         f"({hub_hint}), but a pasted config.json works")
    refused = InputError("MODEL", f"{name!r} is neither a built-in model nor a Hub id (org/name)",
                         f"{hint}this server never reads local files: paste the config.json")
    if not HUB_ID.fullmatch(name) or ".." in name or "--" in name:
        raise refused
    try:
        local = Path(name).exists()
    except OSError:
        local = True
    if local:  # load_model would read it: a relative path on the server, not a Hub repo
        raise refused
    return name


def _engine_option(flag: EngineFlag, value: Any) -> Any:
    if flag.kind == "bool":
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false",
                                                        "no", "off"):
            value = value.lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise _bad(flag, f"must be true or false, got {_show(value)}")
        return value
    if flag.kind == "int":
        return _int(flag, value, -1, MAX_ENGINE_INT)
    if flag.kind == "tokens":
        return _tokens(flag, value, 0)
    if flag.kind == "float":
        if isinstance(value, str):
            try:
                value = float(value) if len(value) <= 32 else value
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value) or not 0 <= value <= MAX_ENGINE_INT:
            raise _bad(flag, f"must be a number from 0 to {MAX_ENGINE_INT:,}, got {_show(value)}")
        return float(value)
    text = _str(flag, value, MAX_SHORT_STR if flag.name != "override_tensor" else MAX_STR)
    if flag.kind == "choice" and text not in flag.choices:
        raise _bad(flag, f"must be one of {', '.join(flag.choices)}, got {_show(value)}")
    if flag.name == "override_tensor":
        # a user regex, matched against tensor names by the engine model: only patterns whose
        # backtracking is bounded (no groups, few quantifiers)
        n_quant = sum(text.count(c) for c in "*+?")
        if not _SAFE_OVERRIDE.fullmatch(text) or n_quant > MAX_REGEX_QUANTIFIERS:
            raise _bad(flag, "must be a simple pattern=buffer list (letters, digits, . _ - | \\ "
                       f"^ $ and at most {MAX_REGEX_QUANTIFIERS} of * + ?)",
                       "e.g. exps=CPU")
        try:
            re.compile(text.split("=", 1)[0])
        except re.error as exc:
            raise _bad(flag, f"is not a valid regex ({exc})", "e.g. exps=CPU") from None
    return text


def check_engine_options(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError("engine_options", "must be a JSON object of engine flags",
                         'e.g. {"max_model_len": 8192}')
    out: dict[str, Any] = {}
    for key, v in value.items():
        name = str(key).lstrip("-").replace("-", "_")
        flag = ENGINE_FLAGS.get(name)
        if flag is None:
            raise InputError("engine_options", f"unknown engine flag {_show(str(key))}",
                             f"known: {', '.join(ENGINE_FLAGS)}")
        if v is None or v == "":
            continue
        out[name] = _engine_option(flag, v)
    return out


def _float(spec: FieldSpec, value: Any) -> float:
    if isinstance(value, str) and len(value) <= 32:
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or not (spec.minimum or 0) <= value <= (spec.maximum or MAX_ENGINE_INT):
        raise _bad(spec, f"must be a number from {spec.minimum or 0} to "
                   f"{spec.maximum or MAX_ENGINE_INT:,}, got {_show(value)}")
    return float(value)


def parse_request(data: Mapping[str, Any], plan: bool = False) -> EstimateRequest:
    """Validate a JSON request object (or a query string as a dict of strings).

    Engine flags may also be given at the top level by python name (``max_model_len=8192``),
    as URL query strings do. ``None`` and ``""`` mean "not given".
    """
    if not isinstance(data, Mapping):
        raise InputError("request", "must be a JSON object", 'e.g. {"model": "qwen3-8b"}')
    values: dict[str, Any] = {}
    engine_options: dict[str, Any] = {}
    for key, value in data.items():
        if value is None or value == "":
            continue
        spec = _BY_NAME.get(key)
        if spec is not None and key in PLAN_ONLY and not plan:
            raise InputError("request", f"{key} is only for /v1/plan", f"drop {key}")
        if spec is None:
            name = str(key).lstrip("-").replace("-", "_")
            if name in ENGINE_FLAGS:
                engine_options[name] = value
                continue
            known = ", ".join(k for k in _BY_NAME if plan or k not in PLAN_ONLY)
            raise InputError("request", f"unknown field {_show(str(key))}",
                             f"known fields: {known}")
        if spec.kind == "str":
            values[key] = _str(spec, value, spec.max_length or MAX_STR)
        elif key in API_CHECKED:  # api.estimate bounds these with the CLI's own messages
            if spec.kind == "tokens" and isinstance(value, str):
                from vramplan.units import parse_tokens

                value = parse_tokens(value[:32], spec.cli)
            values[key] = _int(spec, value, -(2**62), 2**62,
                               (spec.minimum or 1, spec.maximum or 1))
        elif spec.kind == "int":
            values[key] = _int(spec, value, spec.minimum or 0, spec.maximum or MAX_ENGINE_INT)
        elif spec.kind == "float":
            values[key] = _float(spec, value)
        elif spec.kind == "size":
            values[key] = _size(spec, value)
        elif key == "config":
            values[key] = check_config(value)
        else:  # engine_options; top-level flags (query strings) are merged in
            engine_options.update(check_engine_options(value))
    values["engine_options"] = check_engine_options(engine_options)
    if ("model" in values) == ("config" in values):
        raise InputError("MODEL", "give either a model name or an inline config.json (not both)"
                         if "model" in values else "is missing",
                         "e.g. model=qwen3-8b (GET /v1/models lists the catalog)")
    for key in ("kv_dtype", "engine", "ram_kind"):
        if key in values and not values[key]:
            del values[key]
    if "ram_kind" in values:  # unknown kind: 422 with the list, before any work
        from vramplan.hardware.host import memory_kind

        values["ram_kind"] = memory_kind(values["ram_kind"])
    return EstimateRequest(**values)


def model_argument(req: EstimateRequest, allow_hub: bool,
                   hub_hint: str = HUB_HINT) -> str | dict[str, Any]:
    """What ``api.estimate`` gets as its model: the inline config, or a checked name."""
    if req.config is not None:
        return req.config
    assert req.model is not None  # parse_request guarantees one of the two
    return check_model_name(req.model, allow_hub, hub_hint)


# ---------------------------------------------------------------- the calls

def run_estimate(req: EstimateRequest, allow_hub: bool,
                 hub_hint: str = HUB_HINT) -> dict[str, Any]:
    """``report.to_dict(api.estimate(...))``: exactly what ``vramplan estimate --json`` prints."""
    from vramplan.api import estimate
    from vramplan.report import to_dict

    est = estimate(model_argument(req, allow_hub, hub_hint), allow_hub=allow_hub, allow_local=False,
                   **req.kwargs())
    return to_dict(est)


def plan_function() -> Callable[..., Any]:
    """``vramplan.plan.plan``, or :class:`PlanUnavailable` when this build has none."""
    try:
        mod = importlib.import_module("vramplan.plan")
    except ModuleNotFoundError as exc:
        if exc.name not in ("vramplan.plan", "vramplan"):
            raise
        raise PlanUnavailable("planning is not available in this vramplan build yet "
                              "(vramplan.plan is missing); /v1/estimate works") from None
    fn = getattr(mod, "plan", None)
    if not callable(fn):
        raise PlanUnavailable("planning is not available in this vramplan build yet "
                              "(vramplan.plan has no plan()); /v1/estimate works")
    return fn  # type: ignore[no-any-return]


def plan_available() -> bool:
    try:
        plan_function()
    except PlanUnavailable:
        return False
    return True


_PLAN_SLOTS = threading.BoundedSemaphore(PLAN_CONCURRENCY)


def run_plan(req: EstimateRequest, allow_hub: bool, hub_hint: str = HUB_HINT) -> dict[str, Any]:
    """``vramplan.plan.plan(model, ...)`` with the request's hardware and workload, serialized
    by the planner's own ``plan_to_dict`` (a generic serializer until that exists)."""
    fn = plan_function()
    if req.gpu is not None and req.gpu.lower() == "auto":
        raise InputError("--gpu", "'auto' would detect the server's GPU", "name a GPU")
    kwargs = req.plan_kwargs()
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}  # what this plan() takes
    model = model_argument(req, allow_hub, hub_hint)
    if not _PLAN_SLOTS.acquire(timeout=PLAN_WAIT_S):
        raise Busy(f"the server is busy planning ({PLAN_CONCURRENCY} at once); retry shortly")
    try:
        result = fn(model, **kwargs)
    finally:
        _PLAN_SLOTS.release()
    return plan_to_dict(result)


def plan_to_dict(result: Any) -> dict[str, Any]:
    """``vramplan.plan.report.plan_to_dict`` (what ``vramplan plan --json`` prints) for the
    planner's ``PlanResult``; a faithful generic serializer for anything else."""
    try:
        from vramplan.plan.report import plan_to_dict as planner_dict
        from vramplan.plan.types import PlanResult
    except ImportError:
        pass
    else:
        if isinstance(result, PlanResult):
            return planner_dict(result)
    data = jsonable(result)
    return data if isinstance(data, dict) else {"options": data}


def jsonable(obj: Any) -> Any:
    """Estimate -> ``report.to_dict``; dataclasses, mappings, sequences -> JSON types."""
    from vramplan.report import device_dict, to_dict
    from vramplan.result import DeviceEstimate, Estimate

    if isinstance(obj, Estimate):
        return to_dict(obj)
    if isinstance(obj, DeviceEstimate):
        return device_dict(obj)
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    return str(obj)


# ---------------------------------------------------------------- catalogs

def _query(q: str | None) -> str | None:
    if q is None:
        return None
    if len(q) > MAX_QUERY_CHARS:
        raise InputError("q", f"is longer than {MAX_QUERY_CHARS} characters")
    return q.strip() or None


def list_models(q: str | None = None) -> list[dict[str, Any]]:
    """The built-in catalog (``vramplan models``), optionally filtered."""
    from vramplan.model.catalog import search

    return [{"id": e.id, "aliases": list(e.aliases), "params": e.official_params,
             "source": e.source} for e in search(_query(q))]


def list_gpus(q: str | None = None) -> list[dict[str, Any]]:
    """The hardware catalog (``vramplan gpus``), optionally filtered."""
    from vramplan.hardware.gpus import search_gpus

    return [{"key": g.key, "name": g.name, "vendor": g.vendor, "aliases": list(g.aliases),
             "memory_bytes": g.memory_bytes, "memory_reported_bytes": g.memory_reported_bytes,
             "memory_type": g.memory_type, "bandwidth_bytes_per_s": g.bandwidth_bytes_per_s,
             "bf16_dense_tflops": g.bf16_dense_tflops, "unified_memory": g.unified_memory,
             "source": g.source} for g in search_gpus(_query(q))]


def health(allow_hub: bool) -> dict[str, Any]:
    """Liveness plus what this server offers (engines, quantizations, plan, Hub)."""
    from vramplan import __version__
    from vramplan.engines.base import engine_names
    from vramplan.quant.schemes import QUANT_CHOICES

    return {"status": "ok", "version": __version__, "allow_hub": allow_hub,
            "plan_available": plan_available(), "engines": engine_names(),
            "quant_choices": list(QUANT_CHOICES)}


def query_parameters(plan: bool = False) -> list[dict[str, Any]]:
    """OpenAPI parameter objects for GET /v1/estimate and /v1/plan (one source: FIELDS)."""
    out: list[dict[str, Any]] = []
    for f in FIELDS:
        if f.kind == "object" or (f.name in PLAN_ONLY and not plan):
            continue
        schema: dict[str, Any] = {"type": {"int": "integer", "float": "number"}.get(f.kind,
                                                                                   "string")}
        if f.kind in ("tokens", "size"):
            schema = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        if f.minimum is not None and f.kind == "int":
            schema.update(minimum=f.minimum, maximum=f.maximum)
        if f.default is not None:
            schema["default"] = f.default
        out.append({"name": f.name, "in": "query", "required": False, "description": f.help,
                    "schema": schema})
    for flag in ENGINE_FLAGS.values():
        out.append({"name": flag.name, "in": "query", "required": False,
                    "description": f"{flag.flag}: {flag.help}", "schema": {"type": "string"}})
    return out


def json_schema(plan: bool = False) -> dict[str, Any]:
    """JSON Schema of a request object (MCP ``inputSchema``), from FIELDS and ENGINE_FLAGS."""
    props: dict[str, Any] = {}
    for f in FIELDS:
        if f.name in PLAN_ONLY and not plan:
            continue
        if f.kind == "str":
            s: dict[str, Any] = {"type": "string", "maxLength": f.max_length}
        elif f.kind == "int":
            s = {"type": "integer", "minimum": f.minimum, "maximum": f.maximum}
        elif f.kind == "float":
            s = {"type": "number", "minimum": f.minimum, "maximum": f.maximum}
        elif f.kind in ("tokens", "size"):
            s = {"type": ["integer", "string"]}
        elif f.name == "config":
            s = {"type": "object"}
        else:
            s = {"type": "object", "additionalProperties": False, "properties": {
                flag.name: {"type": {"int": "integer", "tokens": ["integer", "string"],
                                     "float": "number", "bool": "boolean"}.get(flag.kind,
                                                                                 "string"),
                            "description": f"{flag.flag}: {flag.help}",
                            **({"enum": list(flag.choices)} if flag.choices else {})}
                for flag in ENGINE_FLAGS.values()}}
        s["description"] = f.help
        if f.default is not None:
            s["default"] = f.default
        props[f.name] = s
    return {"type": "object", "properties": props, "additionalProperties": False}
