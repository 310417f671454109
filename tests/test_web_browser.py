"""The web page end to end in headless Chromium (Playwright for Python, Debian's chromium).

Needs ``scripts/ci_browser.sh`` (apt chromium at /usr/bin/chromium + ``pip install
playwright``; never ``playwright install``). Skips cleanly without them. Screenshots go to
``$VRAMPLAN_ARTIFACTS`` (default: the system temp folder), never into the repository.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 15_000

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (run scripts/ci_browser.sh)")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (run scripts/ci_browser.sh)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect  # noqa: E402

from vramplan.units import fmt_bytes  # noqa: E402
from vramplan.web.app import create_app  # noqa: E402


def artifacts_dir(tmp_path: Path) -> Path:
    """$VRAMPLAN_ARTIFACTS or the temp folder; tmp_path if that would land in the repo."""
    out = Path(os.environ.get("VRAMPLAN_ARTIFACTS") or tempfile.gettempdir()).resolve()
    if out == ROOT or ROOT in out.parents:
        out = tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """uvicorn on a free loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and
          "status of 422" not in m.text else None)  # Chromium logs every 4xx fetch
    yield pg
    ctx.close()
    assert errors == [], errors


def cli_weights(*args: str) -> str:
    """The `weights` line of `vramplan estimate` (plain output): '115.54 GiB (124.06 GB)'."""
    out = subprocess.run([sys.executable, "-m", "vramplan.cli.app", "estimate", *args],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode in (0, 1), out.stderr
    m = re.search(r"^weights\s+(.+?)\s*$", out.stdout, re.M)
    assert m, out.stdout
    return m.group(1)


def wait_quiet(page: Page) -> None:
    """Wait until the debounced fetch has run and answered."""
    page.wait_for_function("!document.body.classList.contains('busy')")
    page.wait_for_timeout(400)  # > debounce
    page.wait_for_function("!document.body.classList.contains('busy')")


def test_pick_model_gpu_quant_then_share(page: Page, browser: Browser, base_url: str,
                                          tmp_path: Path) -> None:
    page.goto(base_url + "/")
    expect(page.locator("#verdict-title")).to_be_visible()
    assert page.locator("#model-list option").count() > 20  # catalog loaded
    assert page.locator("#gpu-list option").count() > 50

    page.fill("#model", "Qwen/Qwen3-235B-A22B")
    page.fill("#gpu", "RTX 4090")
    page.fill("#quant", "awq")
    weights = cli_weights("qwen3-235b-a22b", "--gpu", "4090", "--quant", "awq")
    expect(page.locator("#weights-total")).to_have_text(weights)
    expect(page.locator("#verdict-title")).to_have_text("Does not fit")
    expect(page.locator("#verdict")).to_contain_text("GPU0 needs")
    # the bar's legend: every category and the capacity, formatted as vramplan.units does
    est = httpx.get(base_url + "/v1/estimate", params={"model": "qwen3-235b-a22b", "gpu": "4090",
                                                       "quant": "awq"}).json()
    dev = est["devices"][0]
    legend = page.locator(".device .legend").first
    for label, key in (("weights", "weights_bytes"), ("KV cache", "kv_cache_bytes"),
                       ("activations", "activation_bytes"), ("overhead", "overhead_bytes"),
                       ("capacity", "capacity_bytes")):
        expect(legend).to_contain_text(f"{label} {fmt_bytes(dev[key])}")
    assert "quant=awq" in page.url and "gpu=RTX+4090" in page.url
    page.locator("#explain summary").click()
    expect(page.locator("#explain-rows tr").first).to_be_visible()
    assert page.locator("#assumptions li").count() >= 1
    out = artifacts_dir(tmp_path)
    page.screenshot(path=str(out / "vramplan_web_4090.png"), full_page=True)

    page.fill("#gpu", "H200")
    expect(page.locator("#verdict-title")).to_have_text("Fits")
    expect(page.locator("#weights-total")).to_have_text(
        cli_weights("qwen3-235b-a22b", "--gpu", "h200", "--quant", "awq"))
    wait_quiet(page)
    page.screenshot(path=str(out / "vramplan_web_h200.png"), full_page=True)
    shared = page.url
    assert "gpu=H200" in shared

    other = browser.new_page()
    try:
        other.set_default_timeout(TIMEOUT_MS)
        other.goto(shared)
        expect(other.locator("#verdict-title")).to_have_text("Fits")
        for field in ("model", "gpu", "quant", "engine", "context", "batch", "gpus"):
            assert other.input_value(f"#{field}") == page.input_value(f"#{field}"), field
        assert other.inner_text("#summary") == page.inner_text("#summary")
        assert other.inner_text("#devices") == page.inner_text("#devices")
    finally:
        other.close()


def test_error_inline_and_recovery(page: Page, base_url: str) -> None:
    page.goto(base_url + "/?model=qwen3-8b&gpu=4090&context=0")
    expect(page.locator("#error")).to_have_text(
        "--context: must be at least 1 token, got 0; e.g. --context 8192")
    expect(page.locator("#context")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#verdict-title")).to_have_text("No answer")
    page.fill("#context", "8k")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#verdict-title")).to_have_text(re.compile("^(Fits|Does not fit)$"))
    assert page.locator("#context").get_attribute("aria-invalid") is None
    assert "context=8k" in page.url


def test_pasted_config(page: Page, base_url: str) -> None:
    """A pasted config.json replaces the model name (and is not put in the link)."""
    from vramplan.model.catalog import find

    entry = find("qwen3-8b")
    assert entry is not None
    page.goto(base_url + "/?model=qwen3-235b-a22b&gpu=4090&context=4096")
    expect(page.locator("#verdict-title")).to_have_text("Does not fit")
    page.locator("#config-box summary").click()
    page.fill("#config", "{ not json")
    expect(page.locator("#error")).to_contain_text("config: is not valid JSON")
    expect(page.locator("#config")).to_have_attribute("aria-invalid", "true")
    page.fill("#config", json.dumps(entry.load_config()))
    expect(page.locator("#verdict-title")).to_have_text("Fits")
    want = httpx.post(base_url + "/v1/estimate", json={
        "config": entry.load_config(), "gpu": "4090", "context": 4096}).json()
    expect(page.locator("#weights-total")).to_have_text(
        f"{fmt_bytes(want['weights_bytes'])} ({fmt_bytes(want['weights_bytes'], False)})")
    assert "config" not in page.url and "model_type" not in page.url


def test_plan_section_degrades(page: Page, base_url: str) -> None:
    page.goto(base_url + "/?model=qwen3-8b&gpu=4090")
    expect(page.locator("#verdict-title")).to_have_text(re.compile("^(Fits|Does not fit)$"))
    wait_quiet(page)
    plan = page.locator("#plan")
    expect(plan).not_to_have_text("Searching alternatives…")
    if not httpx.get(base_url + "/v1/health").json()["plan_available"]:
        expect(plan).to_contain_text("not available")


def test_accessible_and_phone_width(browser: Browser, base_url: str, tmp_path: Path) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        pg.goto(base_url + "/?model=qwen3-235b-a22b&gpu=4090&quant=awq")
        expect(pg.locator("#verdict-title")).to_have_text("Does not fit")
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
        unlabeled = pg.evaluate("""[...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.labels.length === 0).map(e => e.id)""")
        assert unlabeled == []
        assert pg.get_attribute("#verdict", "aria-live") == "polite"
        assert pg.get_attribute("#error", "role") == "alert"
        # keyboard: the skip link first, then the form in reading order
        pg.keyboard.press("Tab")
        assert pg.evaluate("document.activeElement.className") == "skip"
        order = []
        for _ in range(6):
            pg.keyboard.press("Tab")
            order.append(pg.evaluate("document.activeElement.id || "
                                     "document.activeElement.tagName"))
        assert order[:2] == ["model", "SUMMARY"] and order[2:5] == ["gpu", "gpus", "engine"]
        pg.screenshot(path=str(artifacts_dir(tmp_path) / "vramplan_web_phone.png"),
                      full_page=True)
    finally:
        ctx.close()


FAKE_PLAN = {
    "options": [{
        "engine": "vllm", "quant": "awq", "quant_label": "awq 4-bit g128", "gpu": "h200",
        "gpu_name": "NVIDIA H200", "gpu_count": 1, "tp": 1, "pp": 1, "ep": False, "fits": True,
        "decode_tokens_per_s": 42.5, "prefill_tokens_per_s": 3100.0, "ttft_s": 1.25,
        "placement": "all layers on the GPU", "max_context_tokens": 40960, "max_concurrency": 3,
        "host_ram_bytes": 0, "binding_detail": "",
        "command": "vllm serve Qwen/Qwen3-235B-A22B --quantization awq"}],
    "suggestions": [{"change": "more_gpus", "detail": "use 6 x RTX 4090 (tp=2, pp=3)"}],
    "alternatives": [{"gpu": "h100-sxm", "gpu_name": "NVIDIA H100 SXM", "gpu_count": 2,
                      "option": None, "reason": ""}],
    "rejected": [{"engine": "ollama", "setup": "1 x RTX 4090", "reason": "no AWQ support"}],
    "elapsed_s": 0.5,
}


def test_plan_rendered(page: Page, base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a planner (faked here, in the server's process), options show speed and command."""
    from vramplan.web import service

    def fake_plan(model: object, **kwargs: object) -> dict[str, object]:
        return FAKE_PLAN

    monkeypatch.setattr(service, "plan_function", lambda: fake_plan)
    monkeypatch.setattr(service, "plan_to_dict", lambda result: result)
    page.goto(base_url + "/?model=qwen3-235b-a22b&gpu=4090&quant=awq")
    plan = page.locator("#plan")
    expect(plan).to_contain_text("vllm · awq 4-bit g128 · 1 × NVIDIA H200")
    expect(plan).to_contain_text("decode 42.5 tok/s · prefill 3,100 tok/s · first token 1.25 s")
    expect(plan.locator("code")).to_have_text("vllm serve Qwen/Qwen3-235B-A22B --quantization awq")
    expect(plan).to_contain_text("use 6 x RTX 4090 (tp=2, pp=3)")
    expect(plan).to_contain_text("2 × NVIDIA H100 SXM")
    expect(plan).to_contain_text("Ruled out (1)")


def test_page_formats_bytes_like_the_cli(page: Page, base_url: str) -> None:
    """The page's fmtBytes/fmtCount == vramplan.units (ties to even included)."""
    import random

    from vramplan.units import fmt_count

    rng = random.Random(5)
    values = [0, 1, 1023, 1024, 9 * 2**27, 5 * 2**27, 3 * 2**28, 124055313408, -105246124032,
              10**12, 125 * 10**7] + [rng.randrange(2**42) for _ in range(500)]
    page.goto(base_url + "/?model=qwen3-8b")
    page.wait_for_function("window.vramplan !== undefined")
    got = page.evaluate("vals => vals.map(v => [vramplan.fmtBytes(v), vramplan.fmtBytes(v, false),"
                        " vramplan.fmtCount(v)])", values)
    want = [[fmt_bytes(v), fmt_bytes(v, False), fmt_count(v)] for v in values]
    assert got == want
