"""``vramplan`` command line (click): estimate, info, models, gpus; more groups plug in below.

Exit codes follow grep: 0 fits, 1 does not fit, 2 usage or input error (one line, no traceback;
``--debug`` shows it). Heavy imports happen inside commands so ``vramplan --help`` stays fast.
click rather than typer: typer >= 0.20 imports pydantic at start-up (~170 ms here), which alone
would break the 0.3 s cold-start target (bench/bench_cli.py).
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import click

from vramplan.errors import VramplanError

# Command modules that add commands to ``app`` (one per command group; see ARCHITECTURE.md).
COMMAND_MODULES = ("vramplan.cli.estimate_cmd", "vramplan.cli.catalog_cmd",
                   "vramplan.cli.plan_cmd", "vramplan.cli.serve_cmd")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def app(debug: bool) -> None:
    """Will this LLM run on my hardware? Memory and speed, explained, per engine."""


def emit_json(obj: Any) -> None:
    """Data to stdout; the one JSON object every interface shares."""
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")


def _register() -> None:
    for mod in COMMAND_MODULES:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue  # a command group not built yet
            raise
        for cmd in getattr(m, "COMMANDS", ()):
            app.add_command(cmd)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, map errors to one line and exit codes 0/1/2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _register()
    try:
        rc = app.main(args=args, prog_name="vramplan", standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:  # usage errors: one line, like every other error
        if isinstance(e, click.BadParameter) and e.message.startswith("--"):
            msg = e.message  # our own "--flag: problem; fix" from an option type
        else:
            msg = f"{e.format_message()} (see --help)"
        print(f"vramplan: error: {msg}", file=sys.stderr)
        sys.exit(2)
    except VramplanError as e:
        if debug:
            raise
        print(f"vramplan: error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        if debug:
            raise
        print(f"vramplan: internal error: {e.__class__.__name__}: {e} (rerun with --debug and "
              "report it)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
