"""A minimal Model Context Protocol server on stdio (``vramplan mcp``), standard library only.

Transport: newline-delimited JSON-RPC 2.0 on stdin/stdout (MCP "stdio" transport); logs go to
stderr. Methods: ``initialize``, ``notifications/initialized``, ``ping``, ``tools/list``,
``tools/call``. Tools:

- ``estimate``: the arguments of ``POST /v1/estimate``; returns ``report.to_dict(estimate)``
  (the JSON of ``vramplan estimate --json``) as text and as ``structuredContent``;
- ``plan``: the same arguments; ``vramplan.plan.plan(...)`` serialized.

Arguments follow the HTTP API's rules (``vramplan.web.service``): bounded values, no local
files, Hub ids only unless started with ``--offline``. A bad input is a tool result with
``isError: true`` and the CLI's one-line message, as MCP asks for tool errors.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import IO, Any

from vramplan.errors import VramplanError

PROTOCOL_VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")  # newest first
MAX_LINE_BYTES = 1 << 20  # one JSON-RPC message
HUB_HINT = "run vramplan mcp without --offline"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


def _tools() -> list[dict[str, Any]]:
    from vramplan.web.service import json_schema

    return [
        {"name": "estimate", "title": "Will this LLM fit?",
         "description": "GPU memory per device for running a model (built-in catalog id, "
                        "Hugging Face id, or an inline config.json) on N x GPU with an engine "
                        "(vllm, llamacpp, ollama, sglang, transformers), quantization, context and "
                        "batch: weights, KV cache, activations and overhead against capacity, the "
                        "verdict, the engine's predicted failure and fix, and the math (explain). "
                        "Same JSON as `vramplan estimate --json`.",
         "inputSchema": json_schema()},
        {"name": "plan", "title": "What fits instead?",
         "description": "Alternatives that fit the hardware (engines x quantization x "
                        "parallelism x offload) with predicted speed and the command line. "
                        "Same arguments as estimate (gpu empty: the whole GPU catalog), plus "
                        "min_tokens_per_s and max_options.",
         "inputSchema": json_schema(plan=True)},
    ]


def _call_tool(name: str, arguments: Any, allow_hub: bool) -> dict[str, Any]:
    from vramplan.web import service

    if name not in ("estimate", "plan"):
        raise _RpcError(INVALID_PARAMS, f"unknown tool {name!r}; tools: estimate, plan")
    try:
        req = service.parse_request(arguments if arguments is not None else {},
                                    plan=name == "plan")
        run = service.run_estimate if name == "estimate" else service.run_plan
        data = run(req, allow_hub, HUB_HINT)
    except VramplanError as exc:
        return {"content": [{"type": "text", "text": f"vramplan: error: {exc}"}], "isError": True}
    except Exception as exc:  # a bug: still a tool result, worded as the CLI words it
        return {"content": [{"type": "text", "text": f"vramplan: internal error: "
                             f"{exc.__class__.__name__}: {exc} (report it)"}], "isError": True}
    return {"content": [{"type": "text", "text": json.dumps(data)}], "structuredContent": data,
            "isError": False}


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Server:
    """JSON-RPC dispatch; ``handle`` takes one decoded message, returns the reply or None."""

    def __init__(self, allow_hub: bool = True) -> None:
        self.allow_hub = allow_hub
        self.methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "initialize": self._initialize,
            "ping": lambda _: {},
            "tools/list": lambda _: {"tools": _tools()},
            "tools/call": self._tools_call,
        }

    def _initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        from vramplan import __version__

        asked = params.get("protocolVersion")
        version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]
        return {"protocolVersion": version,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "vramplan", "title": "vramplan", "version": __version__},
                "instructions": "Call estimate to learn whether a model fits a GPU (its `fits` "
                                "field and per-device bytes), plan for alternatives that fit."}

    def _tools_call(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise _RpcError(INVALID_PARAMS, "tools/call needs params.name")
        return _call_tool(name, params.get("arguments"), self.allow_hub)

    def handle(self, msg: Any) -> dict[str, Any] | None:
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            return _error(msg.get("id") if isinstance(msg, dict) else None, INVALID_REQUEST,
                          "not a JSON-RPC 2.0 message")
        method = msg.get("method")
        is_notification = "id" not in msg
        if not isinstance(method, str):
            if "result" in msg or "error" in msg:  # a reply to a request we never send
                return None
            return _error(msg.get("id"), INVALID_REQUEST, "method must be a string")
        if is_notification:  # notifications/initialized, notifications/cancelled: no reply
            return None
        params = msg.get("params") or {}
        if not isinstance(params, dict):
            return _error(msg["id"], INVALID_PARAMS, "params must be an object")
        fn = self.methods.get(method)
        if fn is None:
            return _error(msg["id"], METHOD_NOT_FOUND, f"method not found: {method}")
        try:
            result = fn(params)
        except _RpcError as exc:
            return _error(msg["id"], exc.code, exc.message)
        except Exception as exc:  # never let one request end the server
            return _error(msg["id"], INTERNAL_ERROR,
                          f"internal error: {exc.__class__.__name__}: {exc}")
        return {"jsonrpc": "2.0", "id": msg["id"], "result": result}

    def handle_line(self, line: bytes) -> Any:
        """One line of the stdio transport -> the reply object (or list, or None)."""
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            return _error(None, PARSE_ERROR, "parse error: not valid JSON")
        if isinstance(msg, list):  # JSON-RPC batch (MCP 2025-03-26)
            if not msg:
                return _error(None, INVALID_REQUEST, "empty batch")
            replies = [r for r in (self.handle(m) for m in msg) if r is not None]
            return replies or None
        return self.handle(msg)


def _error(id_: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": {"code": code, "message": message}}


def serve_stdio(allow_hub: bool = True, stdin: IO[bytes] | None = None,
                stdout: IO[bytes] | None = None) -> None:
    """Read JSON-RPC lines from stdin until EOF; write one reply line per request."""
    inp = stdin if stdin is not None else sys.stdin.buffer
    out = stdout if stdout is not None else sys.stdout.buffer
    server = Server(allow_hub=allow_hub)
    while True:
        line = inp.readline(MAX_LINE_BYTES + 1)
        if not line:
            break
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # drop the rest of the long line
                line = inp.readline(MAX_LINE_BYTES)
            reply: Any = _error(None, INVALID_REQUEST, "message larger than 1 MiB")
        elif not line.strip():
            continue
        else:
            reply = server.handle_line(line)
        if reply is not None:
            out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
            out.flush()


def main() -> None:
    serve_stdio(allow_hub="--offline" not in sys.argv[1:])


if __name__ == "__main__":
    main()
