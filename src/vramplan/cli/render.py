"""Rendering for the terminal: rich tables and a usage bar on a TTY, plain text when piped."""

from __future__ import annotations

import sys
from typing import Any

from vramplan.result import DeviceEstimate, Estimate
from vramplan.units import fmt_bytes, fmt_count

BAR_WIDTH = 40


def usage_bar(d: DeviceEstimate, width: int = BAR_WIDTH) -> str:
    """``[WWWWWWKKA.....]`` weights/KV/activations+overhead against capacity (plain ASCII)."""
    cap = max(d.capacity_bytes, 1)
    scale = width / max(cap, d.total_bytes)
    parts = ""
    for ch, b in (("W", d.weights_bytes), ("K", d.kv_cache_bytes),
                  ("A", d.activation_bytes + d.overhead_bytes)):
        parts += ch * round(b * scale)
    parts = parts[:width]
    cap_pos = round(cap * scale)
    bar = parts.ljust(cap_pos, ".")
    if d.total_bytes > cap:
        bar = bar[:cap_pos] + "|" + bar[cap_pos:]
    return f"[{bar}]"


def speed_line(est: Estimate) -> str:
    """``decode ~100 tok/s (85-115), prefill ~4,424 tok/s, TTFT 9.3 s`` or '' when unknown."""
    sp = est.speed
    if not sp or not (sp.get("decode_tokens_per_s") or {}).get("value"):
        reasons = (sp or {}).get("assumptions") or []
        return f"speed     unknown: {reasons[0]}" if reasons else ""
    d = sp["decode_tokens_per_s"]
    p = sp.get("prefill_tokens_per_s") if (sp.get("prefill_tokens_per_s") or {}).get("value") \
        else None
    t = sp.get("ttft_s") if (sp.get("ttft_s") or {}).get("value") else None
    out = f"speed     decode ~{d['value']:,.1f} tok/s ({d['low']:,.1f}-{d['high']:,.1f})"
    if p:
        out += f", prefill ~{p['value']:,.0f} tok/s"
    if t:
        out += f", TTFT ~{t['value']:,.2f} s at {est.context_tokens:,} tokens"
    if sp.get("bound_by"):
        out += f"; bound by {str(sp['bound_by']).replace('_', ' ')}"
    return out + (" (estimate)" if est.fits else " (estimate, if it fit)")


def _verdict(est: Estimate) -> str:
    checked = [d for d in est.devices if d.capacity_known] or list(est.devices)
    if est.fits:
        worst = min(checked, key=lambda d: d.free_bytes)
        return f"FITS: {fmt_bytes(worst.free_bytes)} to spare on the fullest device"
    if est.failure:
        return f"DOES NOT FIT: {est.failure}"
    worst = min(checked, key=lambda d: d.free_bytes)
    return f"DOES NOT FIT: {worst.name} needs {fmt_bytes(-worst.free_bytes)} more"


def plain_estimate(est: Estimate, explain: bool) -> str:
    m = est.model
    lines = [
        f"model     {m.id}  ({m.origin}; {m.model_type})",
        f"params    {fmt_count(m.params_total)} total, {fmt_count(m.params_active)} active/token",
        f"quant     {m.quant}  [{m.quant_source}]",
        f"weights   {fmt_bytes(est.weights_bytes)} ({est.weights_bytes / 1e9:.2f} GB)",
        f"kv cache  {est.kv_cache_bytes_per_token:,} B/token ({est.kv_dtype})"
        + (f" + {fmt_bytes(est.kv_state_bytes_per_sequence)} constant state per sequence"
           if est.kv_state_bytes_per_sequence else "")
        + f"; context {est.context_tokens:,} x batch {est.batch}",
        f"engine    {est.engine} {est.engine_version}; {est.gpu_count} x {est.gpu} "
        f"(tp={est.tp}, pp={est.pp})",
        "",
    ]
    for d in est.devices[:16]:
        if not d.capacity_known:
            lines.append(f"{d.name:6s} {fmt_bytes(d.total_bytes)} of host RAM (not checked: set "
                         f"--ram)  weights {fmt_bytes(d.weights_bytes)}, kv "
                         f"{fmt_bytes(d.kv_cache_bytes)}, buffers {fmt_bytes(d.activation_bytes)}")
            continue
        lines.append(
            f"{d.name:6s} {usage_bar(d)} {fmt_bytes(d.total_bytes)} / {fmt_bytes(d.capacity_bytes)}"
            f"  weights {fmt_bytes(d.weights_bytes)}, kv {fmt_bytes(d.kv_cache_bytes)}, "
            f"act {fmt_bytes(d.activation_bytes)}, overhead {fmt_bytes(d.overhead_bytes)}")
    if len(est.devices) > 16:
        lines.append(f"... {len(est.devices) - 16} more devices")
    if est.host_ram_bytes:
        lines.append(f"host RAM {fmt_bytes(est.host_ram_bytes)}")
    if speed_line(est):
        lines.append(speed_line(est))
    lines += ["", _verdict(est)]
    if est.fix:
        lines.append(f"fix: {est.fix}")
    if est.command:
        lines.append(f"command: {est.command}")
    for n in est.notes:
        lines.append(f"note: {n}")
    if explain:
        lines += ["", "How each number is derived:"]
        for x in est.explain:
            src = f"  [{x.source}]" if x.source else ""
            lines.append(f"  {x.term}: {x.formula} = {x.value}{src}")
        lines += ["", "Assumptions:"] + [f"  - {a}" for a in est.assumptions]
    return "\n".join(lines)


def rich_estimate(est: Estimate, explain: bool, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    m = est.model
    con.print(f"[bold]{m.id}[/]  {fmt_count(m.params_total)} params "
              f"({fmt_count(m.params_active)} active) · {m.quant} · weights "
              f"{fmt_bytes(est.weights_bytes)} · KV {est.kv_cache_bytes_per_token:,} B/token "
              f"({est.kv_dtype})")
    t = Table(title=f"{est.engine} on {est.gpu_count} x {est.gpu}, context "
              f"{est.context_tokens:,} x {est.batch}")
    for col in ("device", "usage", "weights", "KV cache", "activations", "overhead", "total",
                "capacity"):
        t.add_column(col, justify="right" if col not in ("device", "usage") else "left")
    for d in est.devices[:16]:
        if not d.capacity_known:
            t.add_row(d.name, "[dim]not checked: set --ram[/]", fmt_bytes(d.weights_bytes),
                      fmt_bytes(d.kv_cache_bytes), fmt_bytes(d.activation_bytes),
                      fmt_bytes(d.overhead_bytes), fmt_bytes(d.total_bytes), "?")
            continue
        color = "green" if d.fits else "red"
        t.add_row(d.name, f"[{color}]{usage_bar(d, 24)}[/]", fmt_bytes(d.weights_bytes),
                  fmt_bytes(d.kv_cache_bytes), fmt_bytes(d.activation_bytes),
                  fmt_bytes(d.overhead_bytes), f"[{color}]{fmt_bytes(d.total_bytes)}[/]",
                  fmt_bytes(d.capacity_bytes))
    con.print(t)
    if speed_line(est):
        con.print(speed_line(est))
    color = "green" if est.fits else "red"
    con.print(f"[bold {color}]{_verdict(est)}[/]")
    if est.fix:
        con.print(f"fix: {est.fix}")
    if est.command:
        con.print(f"command: [cyan]{est.command}[/]")
    for n in est.notes:
        con.print(f"[dim]note: {n}[/]")
    if explain:
        et = Table(title="How each number is derived", show_lines=False)
        for col in ("term", "formula", "value", "source"):
            et.add_column(col, overflow="fold")
        for x in est.explain:
            et.add_row(x.term, x.formula, x.value, x.source)
        con.print(et)
        for a in est.assumptions:
            con.print(f"[dim]assumption: {a}[/]")


def is_tty() -> bool:
    return sys.stdout.isatty()


def print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        t = Table()
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*(str(r.get(c, "")) for c in columns))
        Console().print(t)
    else:
        print("\t".join(columns))
        for r in rows:
            print("\t".join(str(r.get(c, "")) for c in columns))
