"""HTTP API (vramplan.web.app), the serve/mcp commands and the MCP server on stdio."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from vramplan import api  # noqa: E402
from vramplan.errors import OfflineError  # noqa: E402
from vramplan.report import to_dict  # noqa: E402
from vramplan.web import service  # noqa: E402
from vramplan.web.app import EstimateOut, create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def hub_client() -> Iterator[TestClient]:
    with TestClient(create_app(allow_hub=True), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def no_local_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the model loader touches a local path."""
    from vramplan.model import source

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"local file read: {args}")

    monkeypatch.setattr(source, "load_local", boom)
    monkeypatch.setattr(source, "_read_json", boom)


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line `vramplan <argv>` prints on an input error (exit 2)."""
    from vramplan.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# ---------------------------------------------------------------- meta and catalogs

def test_health(client: TestClient) -> None:
    r = client.get("/v1/health")
    assert r.status_code == 200
    data = r.json()
    assert data["status"] == "ok"
    assert data["allow_hub"] is False
    assert "generic" in data["engines"]
    assert "awq" in data["quant_choices"]
    assert isinstance(data["plan_available"], bool)


def test_models(client: TestClient) -> None:
    everything = client.get("/v1/models").json()["models"]
    assert any(m["id"] == "Qwen/Qwen3-235B-A22B" for m in everything)
    found = client.get("/v1/models", params={"q": "qwen3-235b"}).json()["models"]
    assert found and all("235" in m["id"] for m in found)
    assert len(found) < len(everything)
    assert client.get("/v1/models", params={"q": "x" * 500}).status_code == 422


def test_gpus(client: TestClient) -> None:
    gpus = client.get("/v1/gpus").json()["gpus"]
    assert len(gpus) > 50
    found = client.get("/v1/gpus", params={"q": "4090"}).json()["gpus"]
    assert [g["key"] for g in found] == ["rtx-4090"]
    assert found[0]["memory_bytes"] == 24 * 2**30


def test_page_and_docs(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert 'id="verdict"' in r.text and 'aria-live="polite"' in r.text
    for path in ("/static/app.js", "/static/style.css"):
        assert client.get(path).status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/estimate", "/v1/plan", "/v1/models", "/v1/gpus", "/v1/health"):
        assert p in paths
    names = {p["name"] for p in paths["/v1/estimate"]["get"]["parameters"]}
    assert {"model", "gpu", "context", "max_model_len"} <= names
    assert client.get("/nope").json() == {"error": "request: not found"}


# ---------------------------------------------------------------- /v1/estimate == to_dict

CASES: list[dict[str, Any]] = [
    {"model": "qwen3-235b-a22b", "gpu": "rtx 4090", "quant": "awq"},
    {"model": "Qwen/Qwen3-235B-A22B", "gpu": "h200", "quant": "awq"},
    {"model": "qwen3-8b", "gpu": "h100", "gpus": 2, "context": 8192, "batch": 4},
    {"model": "deepseek-ai/DeepSeek-V3", "gpu": "h200", "gpus": 8, "kv_dtype": "fp8"},
    {"model": "qwen3-8b", "vram": 24 * 2**30, "context": 4096},
    {"model": "qwen3-8b", "gpu": "4090", "tp": 1, "pp": 2, "gpus": 2, "engine": "generic"},
    {"model": "qwen3-8b", "gpu": "4090", "ram": 64 * 2**30,
     "engine_options": {"max_model_len": 8192}},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_estimate_equals_to_dict(client: TestClient, case: dict[str, Any]) -> None:
    kwargs = {k: v for k, v in case.items() if k != "model"}
    want = to_dict(api.estimate(case["model"], allow_hub=False, **kwargs))
    r = client.post("/v1/estimate", json=case)
    assert r.status_code == 200, r.text
    assert r.json() == json.loads(json.dumps(want))
    EstimateOut.model_validate(r.json())  # the documented schema matches


def test_estimate_get_equals_post(client: TestClient) -> None:
    query = {"model": "qwen3-235b-a22b", "gpu": "RTX 4090", "quant": "awq", "context": "32k",
             "gpus": "1", "max_model_len": "8192"}
    got = client.get("/v1/estimate", params=query)
    body = {"model": "qwen3-235b-a22b", "gpu": "RTX 4090", "quant": "awq", "context": "32k",
            "gpus": 1, "engine_options": {"max_model_len": 8192}}
    posted = client.post("/v1/estimate", json=body)
    assert got.status_code == posted.status_code == 200
    assert got.json() == posted.json()
    want = to_dict(api.estimate("qwen3-235b-a22b", gpu="RTX 4090", quant="awq", context=32768,
                                gpus=1, engine_options={"max_model_len": 8192},
                                allow_hub=False))
    assert got.json() == json.loads(json.dumps(want))
    assert got.json()["fits"] is False


def test_estimate_matches_cli_json(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    from vramplan.cli.app import main

    with pytest.raises(SystemExit):
        main(["estimate", "qwen3-235b-a22b", "--gpu", "4090", "--quant", "awq", "--json"])
    cli = json.loads(capsys.readouterr().out)
    r = client.get("/v1/estimate", params={"model": "qwen3-235b-a22b", "gpu": "4090",
                                           "quant": "awq"})
    assert r.json() == cli


def test_inline_config(client: TestClient) -> None:
    from vramplan.model.catalog import find

    entry = find("qwen3-8b")
    assert entry is not None
    cfg = entry.load_config()
    r = client.post("/v1/estimate", json={"config": cfg, "gpu": "4090", "context": 4096})
    assert r.status_code == 200, r.text
    want = to_dict(api.estimate(cfg, gpu="4090", context=4096, allow_hub=False))
    assert r.json() == json.loads(json.dumps(want))


# ---------------------------------------------------------------- bad input -> 422

@pytest.mark.parametrize("body, field", [
    ({"model": "qwen3-8b", "context": 0}, "--context"),
    ({"model": "qwen3-8b", "context": -5}, "--context"),
    ({"model": "qwen3-8b", "context": 2**24 + 1}, "--context"),
    ({"model": "qwen3-8b", "context": "10T"}, "--context"),
    ({"model": "qwen3-8b", "batch": 0}, "--batch"),
    ({"model": "qwen3-8b", "batch": 65537}, "--batch"),
    ({"model": "qwen3-8b", "gpus": 0}, "--gpus"),
    ({"model": "qwen3-8b", "gpus": 1025}, "--gpus"),
    ({"model": "qwen3-8b", "tp": 100000}, "--tp"),
    ({"model": "qwen3-8b", "pp": 0}, "--pp"),
    ({"model": "qwen3-8b", "vram": "-1GiB"}, "--vram"),
    ({"model": "qwen3-8b", "vram": 2**60}, "--vram"),
    ({"model": "qwen3-8b", "ram": "lots"}, "--ram"),
    ({"model": "qwen3-8b", "gpu": "no-such-gpu-9000"}, "--gpu"),
    ({"model": "qwen3-8b", "quant": "q99_z"}, "--quant"),
    ({"model": "qwen3-8b", "engine": "warp-drive"}, "--engine"),
    ({"model": "qwen3-8b", "gpu": "x" * 300}, "--gpu"),
    ({"model": "qwen3-8b", "engine_options": {"max_model_len": -3}}, "--max-model-len"),
    ({"model": "qwen3-8b", "engine_options": {"gpu_memory_utilization": "nan"}},
     "--gpu-memory-utilization"),
    ({"model": "qwen3-8b", "engine_options": {"flash_attn": "sideways"}}, "--flash-attn"),
    ({"model": "qwen3-8b", "engine_options": {"rm_rf": True}}, "engine_options"),
    ({"model": "qwen3-8b", "engine_options": {"override_tensor": "(a+)+$=CPU"}},
     "--override-tensor"),
    ({"model": "qwen3-8b", "surprise": 1}, "request"),
    ({"model": "qwen3-8b", "batch": "many"}, "--batch"),
    ({"config": [1, 2, 3]}, "config"),
    ({"config": {"model_type": "llama"}}, None),
    ({"model": "qwen3-8b", "config": {"model_type": "llama"}}, "MODEL"),
    ({}, "MODEL"),
    ({"model": "no-such-model-at-all"}, "MODEL"),
])
def test_bad_input_is_422(client: TestClient, body: dict[str, Any], field: str | None) -> None:
    r = client.post("/v1/estimate", json=body)
    assert r.status_code == 422, r.text
    data = r.json()
    assert isinstance(data["error"], str) and "\n" not in data["error"]
    if field is not None:
        assert data["field"] == field, data
        assert data["error"].startswith(field)


@pytest.mark.parametrize("argv, body", [
    (["--context", "0"], {"context": 0}),
    (["--context", "20000000"], {"context": 20000000}),
    (["--batch", "0"], {"batch": 0}),
    (["--context", "abc"], {"context": "abc"}),
    (["--gpu", "rtx"], {"gpu": "rtx"}),
    (["--quant", "bogus"], {"quant": "bogus"}),
    (["--engine", "nope"], {"engine": "nope"}),
    (["--kv-dtype", "fp3"], {"kv_dtype": "fp3"}),
])
def test_error_message_is_the_clis(client: TestClient, capsys: pytest.CaptureFixture[str],
                                   argv: list[str], body: dict[str, Any]) -> None:
    line = cli_error(["estimate", "qwen3-8b", *argv], capsys)
    r = client.post("/v1/estimate", json={"model": "qwen3-8b", **body})
    assert r.status_code == 422
    if line.startswith("Error: Invalid value"):  # click's option parsing wraps the message
        assert line == f"Error: Invalid value for '{argv[0]}': {r.json()['error']}"
    else:
        assert line == f"vramplan: error: {r.json()['error']}"


def test_oversized_body_is_413(client: TestClient) -> None:
    big = {"model": "qwen3-8b", "config": {"pad": "x" * (300 * 1024)}}
    r = client.post("/v1/estimate", json=big)
    assert r.status_code == 413
    assert "256 KiB" in r.json()["error"]


def test_oversized_chunked_body_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "qwen3-8b", "pad": "'
        for _ in range(40):
            yield b"x" * 8192
        yield b'"}'

    r = client.post("/v1/estimate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_config_over_64_kib_is_422(client: TestClient) -> None:
    cfg = {"model_type": "llama", "pad": "x" * (70 * 1024)}
    r = client.post("/v1/estimate", json={"config": cfg})
    assert r.status_code == 422
    assert r.json()["field"] == "config" and "64 KiB" in r.json()["error"]


def test_inline_config_layer_bound(client: TestClient) -> None:
    from vramplan.model.catalog import find

    entry = find("qwen3-8b")
    assert entry is not None
    cfg = dict(entry.load_config(), num_hidden_layers=10_000)
    r = client.post("/v1/estimate", json={"config": cfg})
    assert r.status_code == 422 and "num_hidden_layers" in r.json()["error"]
    nested = {"model_type": "llava", "text_config": cfg}
    r = client.post("/v1/estimate", json={"config": nested})
    assert r.status_code == 422 and "num_hidden_layers" in r.json()["error"]


def test_deep_json_is_422(client: TestClient) -> None:
    nested = b'{"config": ' + b'{"a": ' * 100 + b"1" + b"}" * 101
    r = client.post("/v1/estimate", content=nested, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "config"
    deep = b"[" * 100_000
    r = client.post("/v1/estimate", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/v1/estimate", content=b"{not json", headers={"content-type":
                                                                    "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "request: body is not valid JSON"


# ---------------------------------------------------------------- local files and the Hub

LOCAL = ["/etc/passwd", "./README.md", "README.md", "~/.bashrc", "../main", "tests/data",
         "src/vramplan", str(ROOT / "src/vramplan/data/models/Qwen__Qwen3-8B.json"),
         "tests/../tests/data", "file:///etc/passwd", "C:\\Windows\\win.ini"]


@pytest.mark.parametrize("name", LOCAL)
@pytest.mark.usefixtures("no_local_reads")
def test_local_paths_refused(client: TestClient, hub_client: TestClient, name: str,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # relative names above exist here
    from vramplan.model import hub

    monkeypatch.setattr(hub, "fetch_config", lambda *a, **k: pytest.fail("Hub contacted"))
    for c in (client, hub_client):
        for method in ("get", "post"):
            r = (c.get("/v1/estimate", params={"model": name}) if method == "get" else
                 c.post("/v1/estimate", json={"model": name}))
            assert r.status_code == 422, (name, r.text)
            assert r.json()["field"] == "MODEL"


def _fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from vramplan.model import hub
    from vramplan.model.catalog import find

    calls: list[str] = []
    entry = find("qwen3-8b")
    assert entry is not None

    def fetch_config(repo_id: str, revision: str | None = None) -> dict[str, Any]:
        calls.append(repo_id)
        return entry.load_config()

    monkeypatch.setattr(hub, "fetch_config", fetch_config)
    monkeypatch.setattr(hub, "fetch_safetensors_headers", lambda *a, **k: [])
    api._load_cached.cache_clear()
    return calls


@pytest.mark.usefixtures("no_local_reads")
def test_hub_refused_unless_allowed(client: TestClient, hub_client: TestClient,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_hub(monkeypatch)
    r = client.post("/v1/estimate", json={"model": "someorg/some-model", "gpu": "4090"})
    assert r.status_code == 422 and "--allow-hub" in r.json()["error"]
    assert calls == []
    r = hub_client.post("/v1/estimate", json={"model": "someorg/some-model", "gpu": "4090"})
    assert r.status_code == 200, r.text
    assert calls == ["someorg/some-model"]
    assert r.json()["model"]["origin"] == "hub"
    api._load_cached.cache_clear()


def test_offline_is_503(hub_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from vramplan.model import hub

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise OfflineError("someorg/other: the Hugging Face Hub cannot be reached")

    monkeypatch.setattr(hub, "fetch_config", offline)
    api._load_cached.cache_clear()
    r = hub_client.post("/v1/estimate", json={"model": "someorg/other"})
    assert r.status_code == 503
    assert r.json()["error"] == "someorg/other: the Hugging Face Hub cannot be reached"


def test_catalog_ids_still_work_with_hub(hub_client: TestClient) -> None:
    r = hub_client.get("/v1/estimate", params={"model": "Qwen/Qwen3-8B", "gpu": "4090"})
    assert r.status_code == 200 and r.json()["model"]["origin"] == "catalog"


# ---------------------------------------------------------------- /v1/plan

def test_plan_unavailable_is_501(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Any:
        raise service.PlanUnavailable("planning is not available in this vramplan build yet")

    monkeypatch.setattr(service, "plan_function", missing)
    for r in (client.post("/v1/plan", json={"model": "qwen3-8b"}),
              client.get("/v1/plan", params={"model": "qwen3-8b"})):
        assert r.status_code == 501
        assert "not available" in r.json()["error"]
    assert client.get("/v1/health").json()["plan_available"] is False


@dataclasses.dataclass(frozen=True)
class FakeOption:
    label: str
    tokens_per_s: float
    estimate: Any


def test_plan_with_a_plan_function(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def plan(model: Any, *, gpu: str | None = None, gpus: int | None = None,
             ram_bytes: int | None = None, context: int | None = None, concurrency: int = 1,
             min_tokens_per_s: float | None = None, engines: Any = None,
             max_options: int = 8) -> list[FakeOption]:
        seen.update(model=model, gpu=gpu, gpus=gpus, ram_bytes=ram_bytes, context=context,
                    concurrency=concurrency, min_tokens_per_s=min_tokens_per_s, engines=engines,
                    max_options=max_options)
        est = api.estimate(model, gpu=gpu, gpus=gpus, context=context, allow_hub=False)
        return [FakeOption("as asked", 12.5, est)]

    monkeypatch.setattr(service, "plan_function", lambda: plan)
    r = client.post("/v1/plan", json={"model": "qwen3-8b", "gpu": "4090", "context": 4096,
                                      "batch": 2, "engine": "vllm", "ram": "64GiB",
                                      "min_tokens_per_s": 20, "max_options": 3})
    assert r.status_code == 200, r.text
    assert seen == {"model": "Qwen/Qwen3-8B", "gpu": "4090", "gpus": None,
                    "ram_bytes": 64 * 2**30, "context": 4096, "concurrency": 2,
                    "min_tokens_per_s": 20.0, "engines": ["vllm"], "max_options": 3}
    opt = r.json()["options"][0]
    assert opt["label"] == "as asked" and opt["tokens_per_s"] == 12.5
    want = to_dict(api.estimate("qwen3-8b", gpu="4090", context=4096, allow_hub=False))
    assert opt["estimate"] == json.loads(json.dumps(want))
    r = client.get("/v1/plan", params={"model": "qwen3-8b", "max_options": "2"})
    assert r.status_code == 200 and seen["max_options"] == 2 and seen["engines"] is None
    for bad in ({"model": "qwen3-8b", "max_options": 0}, {"model": "qwen3-8b", "gpu": "auto"},
                {"model": "qwen3-8b", "min_tokens_per_s": "fast"}, {"model": "/etc/passwd"}):
        r = client.post("/v1/plan", json=bad)
        assert r.status_code == 422, (bad, r.text)
    r = client.post("/v1/estimate", json={"model": "qwen3-8b", "max_options": 3})
    assert r.status_code == 422 and "only for /v1/plan" in r.json()["error"]


def test_plan_busy_is_503(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr(service, "plan_function", lambda: lambda model, **kw: [])
    monkeypatch.setattr(service, "_PLAN_SLOTS", threading.BoundedSemaphore(1))
    monkeypatch.setattr(service, "PLAN_WAIT_S", 0.01)
    assert client.post("/v1/plan", json={"model": "qwen3-8b"}).json() == {"options": []}
    service._PLAN_SLOTS.acquire()
    try:
        r = client.post("/v1/plan", json={"model": "qwen3-8b"})
    finally:
        service._PLAN_SLOTS.release()
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert "busy" in r.json()["error"]


def test_real_plan_if_present(client: TestClient) -> None:
    if not service.plan_available():
        pytest.skip("vramplan.plan.plan is not built yet")
    r = client.post("/v1/plan", json={"model": "qwen3-235b-a22b", "gpu": "4090",
                                      "max_options": 3})
    assert r.status_code == 200, r.text
    data = r.json()
    assert isinstance(data["options"], list) and len(data["options"]) <= 3


# ---------------------------------------------------------------- commands

def test_serve_and_mcp_commands_registered() -> None:
    from click.testing import CliRunner

    from vramplan.cli.app import _register, app

    _register()
    runner = CliRunner()
    out = runner.invoke(app, ["serve", "--help"])
    assert out.exit_code == 0 and "--allow-hub" in out.output and "--port" in out.output
    out = runner.invoke(app, ["mcp", "--help"])
    assert out.exit_code == 0 and "--offline" in out.output


def test_vramplan_serve_runs() -> None:
    """`vramplan serve` on a free loopback port answers, then stops on SIGTERM."""
    import socket
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "vramplan.cli.app", "serve", "--port",
                             str(port), "--log-level", "warning"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                health = httpx.get(url + "/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
        assert health.json()["allow_hub"] is False
        r = httpx.get(url + "/v1/estimate", params={"model": "qwen3-8b", "gpu": "4090"})
        assert r.status_code == 200 and "app;dur=" in r.headers["server-timing"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert b"serving http://127.0.0.1:" in (proc.stderr.read() if proc.stderr else b"")


def test_serve_imports_web_stack_lazily() -> None:
    code = ("import sys, vramplan.cli.app as a; a._register(); "
            "bad = [m for m in ('fastapi', 'uvicorn', 'pydantic', 'starlette') if m in sys.modules];"
            " assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------- MCP on stdio

def mcp_session(lines: list[Any], *args: str) -> list[dict[str, Any]]:
    payload = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    proc = subprocess.run([sys.executable, "-m", "vramplan.cli.app", "mcp", *args],
                          input=payload.encode(), capture_output=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(x) for x in proc.stdout.decode().splitlines()]


def test_mcp_stdio() -> None:
    args = {"model": "qwen3-235b-a22b", "gpu": "rtx 4090", "quant": "awq"}
    replies = mcp_session([
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "estimate", "arguments": args}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "estimate", "arguments": {"model": "/etc/passwd"}}},
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
         "params": {"name": "estimate", "arguments": {"model": "qwen3-8b", "context": 0}}},
        {"jsonrpc": "2.0", "id": 6, "method": "tools/call",
         "params": {"name": "plan", "arguments": {"model": "qwen3-8b", "gpu": "4090"}}},
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "rm"}},
        {"jsonrpc": "2.0", "id": 8, "method": "resources/list"},
        {"jsonrpc": "2.0", "id": 9, "method": "ping"},
        "this is not json",
        "",
    ], "--offline")
    by_id = {r["id"]: r for r in replies}
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5, 6, 7, 8, 9, None]
    init = by_id[1]["result"]
    assert init["protocolVersion"] == "2025-06-18"
    assert init["serverInfo"]["name"] == "vramplan" and "tools" in init["capabilities"]
    tools = {t["name"]: t for t in by_id[2]["result"]["tools"]}
    assert set(tools) == {"estimate", "plan"}
    assert tools["estimate"]["inputSchema"]["properties"]["context"]
    res = by_id[3]["result"]
    assert res["isError"] is False
    want = json.loads(json.dumps(to_dict(api.estimate("qwen3-235b-a22b", gpu="rtx 4090",
                                                      quant="awq", allow_hub=False))))
    assert res["structuredContent"] == want
    assert json.loads(res["content"][0]["text"]) == want
    assert by_id[4]["result"]["isError"] is True
    assert "without --offline" in by_id[4]["result"]["content"][0]["text"]
    assert by_id[5]["result"]["content"][0]["text"] == (
        "vramplan: error: --context: must be at least 1 token, got 0; e.g. --context 8192")
    assert "result" in by_id[6]  # a plan, or isError "not available" until plan/ lands
    assert by_id[7]["error"]["code"] == -32602
    assert by_id[8]["error"]["code"] == -32601
    assert by_id[9]["result"] == {}
    assert replies[-1]["error"]["code"] == -32700


def test_mcp_hub_allowed_still_refuses_paths() -> None:
    replies = mcp_session([{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "estimate", "arguments": {"model": "tests/data"}}}])
    assert replies[0]["result"]["isError"] is True
    assert "never reads local files" in replies[0]["result"]["content"][0]["text"]


def test_mcp_protocol_version_fallback() -> None:
    replies = mcp_session([{"jsonrpc": "2.0", "id": 1, "method": "initialize",
                            "params": {"protocolVersion": "1999-01-01"}}])
    assert replies[0]["result"]["protocolVersion"] == "2025-06-18"


def test_mcp_imports_no_web_stack() -> None:
    code = ("import sys, io; from vramplan.mcp_server import serve_stdio; "
            "serve_stdio(False, io.BytesIO(b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
            "\"tools/list\"}\\n'), io.BytesIO()); "
            "bad = [m for m in ('fastapi', 'pydantic', 'starlette') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
