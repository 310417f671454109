"""CLI through the real entry point: exit codes 0 fits / 1 does not fit / 2 bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import DATA

ENG = ("--engine", "generic")


def test_motivating_case_does_not_fit(run_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli("estimate", "qwen3-235b-a22b", "--gpu", "rtx 4090", "--quant",
                             "awq", *ENG)
    assert code == 1 and "DOES NOT FIT" in out and err == ""


def test_fits_exit_zero_and_explain(run_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli("estimate", "Qwen3-235B-A22B", "--gpu", "h200", "--quant", "awq",
                           "--context", "32k", "--explain", *ENG)
    assert code == 0 and "FITS" in out
    assert "all 128 experts" in out and "GQA: 4 KV heads, not 64" in out


def test_json_output(run_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli("estimate", "qwen3-235b-a22b", "--gpu", "h100", "--gpus", "2",
                           "--quant", "awq", "--json", *ENG)
    d = json.loads(out)
    assert code == 0 and d["fits"] is True and d["model"]["params_total"] == 235_093_634_560
    assert d["kv_cache_bytes_per_token"] == 192_512 and len(d["devices"]) == 2


def test_info_models_gpus(run_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli("info", "deepseek-v3", "--json")
    d = json.loads(out)
    assert code == 0 and d["kv_cache_bytes_per_token"] == 70_272
    assert d["params_by_role"]["mtp"] > 0
    code, out, _ = run_cli("models", "qwen3")
    assert code == 0 and "Qwen/Qwen3-235B-A22B" in out
    code, out, _ = run_cli("gpus", "--json")
    assert code == 0 and len(json.loads(out)) >= 50


@pytest.mark.parametrize("args", [
    ("estimate", "qwen3-8b", "--gpu", "rtx 9999"),
    ("estimate", "qwen3-8b", "--context", "0"),
    ("estimate", "qwen3-8b", "--context", "99999999999"),
    ("estimate", "qwen3-8b", "--vram", "-3GiB"),
    ("estimate", "qwen3-8b", "--quant", "q17"),
    ("estimate", "qwen3-8b", "--gpus", "3"),
    ("estimate", "qwen3-8b", "--kv-dtype", "int3"),
    ("estimate", "qwen3-235b-a23b", "--offline"),
    ("estimate", "qwen3-8b", "--no-such-flag"),
])
def test_bad_input_one_line_exit_2(run_cli, args) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli(*args, *ENG)
    assert code == 2 and out == ""
    assert "Traceback" not in err and err.strip()


def test_unknown_model_suggests(run_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli("estimate", "qwen3-235b-a23b", "--offline")
    assert code == 2 and "did you mean" in err and "Qwen/Qwen3-235B-A22B" in err
    assert len(err.strip().splitlines()) == 1


EXPECTED = json.loads((DATA / "bad_configs" / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_config_corpus(run_cli, name: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli("estimate", str(DATA / "bad_configs" / name), *ENG)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert EXPECTED[name] in err


def test_console_script_subprocess() -> None:
    """The installed entry point, as a user runs it (plain text when piped)."""
    r = subprocess.run([sys.executable, "-m", "vramplan.cli.app", "estimate", "qwen3-0.6b",
                        "--vram", "8GiB", "--context", "4096", *ENG],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "FITS" in r.stdout and "\x1b[" not in r.stdout
