"""The HTTP API and the web page: ``create_app(allow_hub=False)`` -> FastAPI.

Endpoints (OpenAPI at /docs and /openapi.json):

- ``GET|POST /v1/estimate``  -> exactly ``report.to_dict(api.estimate(...))``
- ``GET|POST /v1/plan``      -> ``vramplan.plan.plan(...)`` serialized; 501 while plan/ is missing
- ``GET /v1/models?q=``, ``GET /v1/gpus?q=``  -> the built-in catalogs
- ``GET /v1/health``         -> status, version, engines, quantizations, plan/Hub availability
- ``GET /``                  -> the page (``static/``: plain HTML/JS/CSS, no build step)

Errors are JSON ``{"error": <the CLI's one-line message>, "field", "problem", "fix"}``:
``InputError`` and bad request data -> 422, ``OfflineError`` -> 503, plan missing -> 501,
body over 256 KiB -> 413. The request rules (bounds, no local files, Hub only with
``allow_hub``) live in ``web/service.py`` and are shared with the MCP server.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vramplan.errors import InputError, OfflineError, VramplanError
from vramplan.web import service
from vramplan.web.service import MAX_BODY_BYTES, Busy, PlanUnavailable

STATIC_DIR = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


# ---------------------------------------------------------------- request / response models

class EstimateBody(BaseModel):
    """POST /v1/estimate and /v1/plan. Give ``model`` or ``config``. Bounds are checked with the
    CLI's messages (``--context: must be between 1 and 16,777,216, got 0``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "qwen3-235b-a22b", "gpu": "rtx 4090", "quant": "awq", "context": "32k"},
        {"model": "Qwen/Qwen3-8B", "gpu": "h100", "gpus": 1, "engine": "vllm",
         "engine_options": {"max_model_len": 8192, "gpu_memory_utilization": 0.9}},
    ]})

    model: str | None = Field(None, max_length=service.MAX_STR,
                              description=service.FIELDS[0].help)
    config: dict[str, Any] | None = Field(None, description="Inline config.json (a JSON object, "
                                          "at most 64 KiB), instead of model.")
    gpu: str | None = Field(None, max_length=service.MAX_STR, description="GPU name, fuzzy.")
    gpus: int | None = Field(None, description="Number of GPUs (1..1024; default tp x pp).")
    vram: int | str | None = Field(None, description="Custom GPU memory: bytes or '24GiB'.")
    quant: str | None = Field(None, max_length=service.MAX_SHORT_STR,
                              description="bf16, fp8, awq, gptq, nf4, q4_k_m, ...")
    context: int | str | None = Field(None, description="Tokens per sequence: 8192 or '32k' "
                                      "(1..16,777,216).")
    batch: int = Field(1, description="Concurrent sequences (1..65,536).")
    kv_dtype: str = Field("auto", max_length=service.MAX_SHORT_STR)
    tp: int | None = Field(None, description="Tensor parallel size (1..1024).")
    pp: int = Field(1, description="Pipeline parallel size (1..1024).")
    engine: str = Field("auto", max_length=service.MAX_SHORT_STR,
                        description="auto, vllm, llamacpp, ollama, sglang, transformers, generic.")
    ram: int | str | None = Field(None, description="Host RAM: bytes or '128GiB'.")
    ram_kind: str | None = Field(None, max_length=service.MAX_SHORT_STR,
                                 description="Host memory kind: DDR5-5600, DDR4-3200, ...")
    ram_channels: int | None = Field(None, description="Host memory channels (1..24).")
    pcie_gen: int | None = Field(None, description="PCIe generation of the GPU slots (3..6).")
    engine_options: dict[str, int | float | bool | str] = Field(
        default_factory=dict, description="Engine flags by python name, e.g. "
        '{"max_model_len": 8192} (the flags of `vramplan estimate --help`).')


class PlanBody(EstimateBody):
    """POST /v1/plan: the estimate's fields (the planner searches engines, quantization and
    parallelism itself; gpu empty searches the whole GPU catalog) plus two of its own."""

    min_tokens_per_s: float | None = Field(None, description="Decode speed an option must "
                                           "reach (tokens/s per sequence).")
    max_options: int = Field(8, description="How many ranked options (1..32).")


class ErrorBody(BaseModel):
    error: str = Field(description="The one-line message the CLI prints.")
    field: str | None = None
    problem: str | None = None
    fix: str | None = None


class ComponentOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    bytes: int
    category: str
    formula: str | None = None
    source: str | None = None
    children: list[ComponentOut] | None = None


class DeviceOut(BaseModel):
    name: str
    kind: str
    label: str
    capacity_bytes: int
    weights_bytes: int
    kv_cache_bytes: int
    activation_bytes: int
    overhead_bytes: int
    total_bytes: int
    free_bytes: int
    fits: bool
    components: list[ComponentOut]


class ExplainOut(BaseModel):
    term: str
    formula: str
    value: str
    source: str


class EstimateOut(BaseModel):
    """``report.to_dict(estimate)``: the same object as ``vramplan estimate --json``."""

    model_config = ConfigDict(extra="allow")
    model: dict[str, Any]
    engine: dict[str, Any]
    gpu: str
    gpu_count: int
    context_tokens: int
    batch: int
    kv_dtype: str
    tp: int
    pp: int
    weights_bytes: int
    kv_cache_bytes_per_token: int
    kv_cache_bytes_per_token_all_layers: int
    kv_window_bytes_per_sequence: int
    kv_state_bytes_per_sequence: int
    fits: bool
    failure: str | None
    fix: str | None
    devices: list[DeviceOut]
    host_ram_bytes: int
    command: str
    assumptions: list[str]
    notes: list[str]
    explain: list[ExplainOut]
    speed: dict[str, Any] | None = None
    header_check: dict[str, Any] | None = None  # inventory vs the checkpoint's tensor headers


class ModelOut(BaseModel):
    id: str
    aliases: list[str]
    params: str
    source: str


class ModelsOut(BaseModel):
    models: list[ModelOut]


class GpuOut(BaseModel):
    key: str
    name: str
    vendor: str
    aliases: list[str]
    memory_bytes: int
    memory_reported_bytes: int
    memory_type: str
    bandwidth_bytes_per_s: int
    bf16_dense_tflops: float
    unified_memory: bool
    source: str


class GpusOut(BaseModel):
    gpus: list[GpuOut]


class HealthOut(BaseModel):
    status: str
    version: str
    allow_hub: bool
    plan_available: bool
    engines: list[str]
    quant_choices: list[str]


_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "Bad input: the CLI's one-line message."},
    413: {"model": ErrorBody, "description": "Request body over 256 KiB."},
    503: {"model": ErrorBody, "description": "The Hugging Face Hub cannot be reached."},
}


# ---------------------------------------------------------------- errors

def error_response(status: int, message: str, field: str | None = None,
                   problem: str | None = None, fix: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body.update(field=field, problem=problem, fix=fix or None)
    return JSONResponse(body, status_code=status, headers=headers)


def _vramplan_error(_: Request, exc: Exception) -> Response:
    if isinstance(exc, InputError):
        return error_response(422, str(exc), exc.field, exc.problem, exc.fix)
    if isinstance(exc, OfflineError):
        return error_response(503, str(exc))
    if isinstance(exc, PlanUnavailable):
        return error_response(501, str(exc))
    if isinstance(exc, Busy):
        return error_response(503, str(exc), headers={"Retry-After": "5"})
    if type(exc).__name__ == "CatalogError":  # vramplan's own data is broken
        return error_response(500, f"internal error: {exc}")
    return error_response(422, str(exc))


_CLI_NAMES = {f.name: f.cli for f in service.FIELDS}


def _validation_error(request: Request, exc: Exception) -> Response:
    """pydantic's errors as one line, fields spelled as the CLI spells them."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    if not errors:
        return error_response(422, "request: is not valid")
    err = errors[0]
    loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query")]
    if err.get("type") == "json_invalid":
        return error_response(422, "request: body is not valid JSON", "request",
                              "body is not valid JSON", None)
    name = _CLI_NAMES.get(loc[0], loc[0]) if loc else "request"
    if loc[1:]:
        name += "." + ".".join(loc[1:])
    problem = str(err.get("msg", "is not valid"))
    if err.get("type") == "extra_forbidden" and len(loc) == 1:
        if loc[0] in service.PLAN_ONLY:  # the same words as service.parse_request
            return error_response(422, f"request: {loc[0]} is only for /v1/plan; drop {loc[0]}",
                                  "request", f"{loc[0]} is only for /v1/plan", f"drop {loc[0]}")
        plan = request.url.path.endswith("/plan")
        known = ", ".join(k for k in _CLI_NAMES if plan or k not in service.PLAN_ONLY)
        return error_response(422, f"request: unknown field {loc[0]!r}; known fields: {known}",
                              "request", f"unknown field {loc[0]!r}", f"known fields: {known}")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error_response(422, f"{name}: {problem}{more}", name, problem + more, None)


def _http_error(_: Request, exc: Exception) -> Response:
    """Starlette's own errors (404, 405, an unparsable body) in the same JSON shape."""
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "") or "error"
    if status == 400 and "parsing the body" in str(detail):
        return error_response(422, "request: body is not valid JSON", "request",
                              "body is not valid JSON", None)
    return error_response(status, f"request: {str(detail).lower()}",
                          headers=getattr(exc, "headers", None))


def _internal_error(_: Request, exc: Exception) -> Response:
    if isinstance(exc, RecursionError):  # a pathologically nested JSON body
        return error_response(422, "request: body is nested too deeply")
    return error_response(500, f"internal error: {exc.__class__.__name__}: {exc} (report it)")


# ---------------------------------------------------------------- body size limit

class BodyLimit:
    """Reject request bodies over ``max_bytes`` with 413 before any route reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        kib = self.max_bytes // 1024
        resp = error_response(413, f"request: body is larger than {kib} KiB; config.json alone "
                              "is at most 64 KiB", "request", f"body is larger than {kib} KiB",
                              None)
        await resp(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length" and (not value.isdigit() or
                                             int(value) > self.max_bytes):
                await self._reject(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ServerTiming:
    """``Server-Timing: app;dur=<ms>`` on every response: time inside the server, so a load
    test can tell server time from client and network time (bench/bench_http.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - start) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={ms:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)


# ---------------------------------------------------------------- the app

def create_app(allow_hub: bool = False) -> FastAPI:
    """The FastAPI app. ``allow_hub``: requests may name Hugging Face Hub ids (the server then
    downloads their config.json and safetensors headers); otherwise catalog models and inline
    configs only. Local files are never read."""
    app = FastAPI(
        title="vramplan", version=_version(),
        summary="Will this LLM fit my GPU? Memory per device, explained, per engine.",
        description="The same JSON as `vramplan estimate --json`. Errors carry the CLI's "
                    "one-line message in `error`.")
    app.state.allow_hub = allow_hub
    app.add_exception_handler(VramplanError, _vramplan_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(ServerTiming)

    query_doc = {"parameters": service.query_parameters()}
    plan_query_doc = {"parameters": service.query_parameters(plan=True)}

    @app.get("/v1/health", response_model=HealthOut, tags=["meta"])
    def get_health() -> dict[str, Any]:
        """Liveness, version, the engines and quantizations on offer, plan and Hub status."""
        return service.health(allow_hub)

    @app.get("/v1/models", response_model=ModelsOut, responses=_ERRORS, tags=["catalog"])
    def get_models(q: str | None = None) -> dict[str, Any]:
        """The built-in model catalog (works offline); ``q`` filters by id or alias."""
        return {"models": service.list_models(q)}

    @app.get("/v1/gpus", response_model=GpusOut, responses=_ERRORS, tags=["catalog"])
    def get_gpus(q: str | None = None) -> dict[str, Any]:
        """The hardware catalog; ``q`` filters by key, name, alias, vendor or memory type."""
        return {"gpus": service.list_gpus(q)}

    est_doc: dict[int | str, dict[str, Any]] = {
        200: {"model": EstimateOut, "description": "report.to_dict(estimate)"}, **_ERRORS}

    @app.post("/v1/estimate", responses=est_doc, tags=["estimate"])
    def post_estimate(body: EstimateBody) -> JSONResponse:
        """Memory per device for ``model`` (or an inline ``config``) on ``gpus`` x ``gpu``:
        exactly the object ``vramplan estimate --json`` prints."""
        req = service.parse_request(body.model_dump(exclude_unset=True))
        return JSONResponse(service.run_estimate(req, allow_hub))

    @app.get("/v1/estimate", responses=est_doc, openapi_extra=query_doc, tags=["estimate"])
    def get_estimate(request: Request) -> JSONResponse:
        """As POST, from the query string (``?model=qwen3-8b&gpu=4090&context=32k``); engine
        flags by python name (``&max_model_len=8192``). No inline config here."""
        req = service.parse_request(_query_dict(request))
        return JSONResponse(service.run_estimate(req, allow_hub))

    plan_doc: dict[int | str, dict[str, Any]] = {
        200: {"description": "vramplan.plan.plan(...) serialized: {\"options\": [...]}"},
        501: {"model": ErrorBody, "description": "Planning is not in this build yet."},
        **_ERRORS, 503: {"model": ErrorBody, "description": "Hub unreachable, or too many "
                         "plans at once (Retry-After)."}}

    @app.post("/v1/plan", responses=plan_doc, tags=["plan"])
    def post_plan(body: PlanBody) -> JSONResponse:
        """Ranked ways to run the model on this hardware (engines x quantization x
        parallelism x offload) with speed and the command line; what to change when nothing
        fits. 501 while ``vramplan.plan`` is missing; 503 when too many plans run at once."""
        req = service.parse_request(body.model_dump(exclude_unset=True), plan=True)
        return JSONResponse(service.run_plan(req, allow_hub))

    @app.get("/v1/plan", responses=plan_doc, openapi_extra=plan_query_doc, tags=["plan"])
    def get_plan(request: Request) -> JSONResponse:
        """As POST, from the query string."""
        req = service.parse_request(_query_dict(request), plan=True)
        return JSONResponse(service.run_plan(req, allow_hub))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", _StaticWithHeaders(directory=STATIC_DIR), name="static")
    return app


def _version() -> str:
    from vramplan import __version__

    return __version__


def _query_dict(request: Request) -> dict[str, str]:
    if len(request.url.query) > 8192:
        raise InputError("request", "query string is longer than 8 KiB",
                         "POST a JSON body instead")
    return dict(request.query_params)


class _StaticWithHeaders(StaticFiles):
    """The page's files with the page's security headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        resp = super().file_response(*args, **kwargs)
        resp.headers.update(PAGE_HEADERS)
        return resp
