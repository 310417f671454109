#!/usr/bin/env bash
# Install what tests/test_web_browser.py needs on a fresh Debian/Ubuntu machine:
# Debian's chromium at /usr/bin/chromium and the Playwright Python package.
# Never runs `playwright install` (no browser downloads). Idempotent; near-instant when present.
# Usage: scripts/ci_browser.sh [python]   (default: .venv/bin/python if present, else python3)
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${1:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi

if [[ ! -x /usr/bin/chromium ]]; then
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium
fi

if ! "$PY" -c "import playwright.sync_api" 2>/dev/null; then
  "$PY" -m pip install --quiet "playwright>=1.40"
fi

/usr/bin/chromium --version 2>/dev/null
"$PY" -c "import playwright, importlib.metadata as m; print('playwright', m.version('playwright'))"
