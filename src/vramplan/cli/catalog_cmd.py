"""``vramplan models`` and ``vramplan gpus``: the built-in catalogs."""

from __future__ import annotations

import click

from vramplan.cli.app import emit_json


@click.command()
@click.argument("query", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(query: str | None, as_json: bool) -> None:
    """List or search the built-in model catalog (works offline)."""
    from vramplan.cli.render import print_rows
    from vramplan.model.catalog import search

    rows = [{"id": e.id, "alias": e.aliases[0], "params": e.official_params.split(" ")[0],
             "source": e.source.split(" ")[0]} for e in search(query)]
    if as_json:
        emit_json(rows)
    else:
        print_rows(rows, ["id", "alias", "params", "source"])


@click.command()
@click.argument("query", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gpus(query: str | None, as_json: bool) -> None:
    """List or search the hardware catalog."""
    from vramplan.cli.render import print_rows
    from vramplan.hardware.gpus import search_gpus
    from vramplan.units import fmt_bytes

    rows = [{"key": g.key, "name": g.name, "memory": fmt_bytes(g.memory_bytes),
             "memory_bytes": g.memory_bytes, "reported": fmt_bytes(g.memory_reported_bytes),
             "bandwidth": f"{g.bandwidth_bytes_per_s / 1e9:.0f} GB/s",
             "bf16_tflops": g.bf16_dense_tflops, "source": g.source} for g in search_gpus(query)]
    if as_json:
        emit_json(rows)
    else:
        print_rows(rows, ["key", "name", "memory", "reported", "bandwidth", "bf16_tflops"])


COMMANDS = (models, gpus)
