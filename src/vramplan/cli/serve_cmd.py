"""``vramplan serve`` (HTTP API + web page) and ``vramplan mcp`` (MCP server on stdio).

FastAPI, uvicorn and pydantic are imported inside ``serve`` only, so the CLI's cold start does
not pay for them; ``mcp`` uses the standard library alone.
"""

from __future__ import annotations

import click

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port.")
@click.option("--allow-hub", is_flag=True,
              help="Let requests name Hugging Face Hub ids (the server downloads their "
              "config.json and safetensors headers). Off: built-in models and pasted configs "
              "only. Local files are never read.")
@click.option("--log-level", type=click.Choice(_LOG_LEVELS), default="info", show_default=True,
              help="uvicorn log level (warning silences the access log).")
def serve(host: str, port: int, allow_hub: bool, log_level: str) -> None:
    """Serve the web page at / and the HTTP API at /v1 (OpenAPI docs at /docs)."""
    try:
        import uvicorn

        from vramplan.web.app import create_app
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"vramplan serve needs {exc.name}: pip install "
                                   "'vramplan[web]'") from None
    app = create_app(allow_hub=allow_hub)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"vramplan: serving http://{shown}:{port}/ (API docs: /docs; Hub "
               f"{'allowed' if allow_hub else 'off, --allow-hub to enable'})", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level,
                access_log=log_level in ("info", "debug"))


@click.command()
@click.option("--offline", is_flag=True,
              help="Never contact the Hugging Face Hub: built-in models and inline configs only.")
def mcp(offline: bool) -> None:
    """Model Context Protocol server on stdio, with the tools "estimate" and "plan"."""
    from vramplan.mcp_server import serve_stdio

    serve_stdio(allow_hub=not offline)


COMMANDS = (serve, mcp)
