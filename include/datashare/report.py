"""The human-readable release report: what a tier received tonight, how it was protected, and
what the release gate checked. Computed once (the manifest holds every number); this module only
formats it, as Markdown for the lake and HTML for browsers and the Airflow UI.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_html", "render_markdown"]


def _privacy_line(ds: dict[str, Any]) -> str:
    facts = []
    if "min_cell" in ds:
        facts.append(
            f"cells under {ds['min_cell']} suppressed: {ds.get('suppressed_cells', 0)} of "
            f"{ds.get('cells', ds['rows'])}"
            + (
                f" (+{ds['complementary_cells']} complementary)"
                if ds.get("complementary_cells")
                else ""
            )
        )
    if "k" in ds:
        levels = ", ".join(f"{q}={lv}" for q, lv in ds.get("generalization_levels", {}).items())
        facts.append(
            f"k={ds['k']} on {', '.join(ds['quasi_identifiers'])} (levels {levels}); "
            f"{ds.get('suppressed_records', 0)} records suppressed; smallest group "
            f"{ds.get('min_class_size')}"
        )
    if "epsilon" in ds:
        facts.append(
            f"differential privacy: epsilon {ds['epsilon']:g} ({ds.get('mechanism')}), "
            f"budget {ds.get('budget_spent', ds['epsilon']):g} of "
            f"{ds.get('annual_cap', '?')} for school year {ds.get('school_year')}"
        )
    for col, tok in (ds.get("tokenized") or {}).items():
        facts.append(f"{col}: token of {tok['source']} (key version {tok['key_version']})")
    for col, gen in (ds.get("generalized") or {}).items():
        facts.append(f"{col}: {gen}")
    if ds.get("excluded"):
        excluded = ds["excluded"]
        facts.append(f"{excluded['rows']} students excluded ({', '.join(excluded['if'])})")
    if ds.get("column_groups"):
        facts.append(
            "column keys: "
            + "; ".join(f"{g}: {', '.join(c)}" for g, c in ds["column_groups"].items())
        )
    return "; ".join(facts) or "non-personal"


def render_markdown(manifest: dict[str, Any]) -> str:
    m = manifest
    gate = m.get("gate", {})
    lines = [
        f"# Release {m['release_id']}: tier {m['tier']} ({m.get('tier_title', '')})",
        "",
        f"- bucket: `s3://{m['bucket']}`, created {m['created_at']}",
        f"- tier policy {m['policy_version']}, code {m['code_version']}",
        f"- source fingerprint `{m['source_fingerprint'][:16]}...`",
        f"- release gate: **{'passed' if gate.get('passed') else 'NOT passed'}** "
        f"(checked as {gate.get('checked_as', '?')} at {gate.get('checked_at', '?')})",
        "",
        "## Datasets",
        "",
        "| dataset | form | rows | protection |",
        "|---|---|---|---|",
    ]
    for name, ds in m["datasets"].items():
        lines.append(f"| {name} | {ds['form']} | {ds['rows']:,} | {_privacy_line(ds)} |")
    validation = m.get("validation", {})
    notes = []
    for name, v in validation.get("datasets", {}).items():
        if v.get("quarantined"):
            notes.append(f"- {name}: {v['quarantined']} rows quarantined")
        for w in v.get("warnings", []):
            notes.append(f"- {name}: warning {w['rule']} ({w['rows']} rows)")
    for w in validation.get("source_warnings", []):
        notes.append(f"- {w['dataset']}: {w['problem']}")
    for ds in validation.get("missing_datasets", []):
        notes.append(f"- {ds}: not provided by the source")
    lines += ["", "## Validation", ""] + (notes or ["- no findings"])
    if m.get("key_rotation"):
        lines += ["", "## Key rotation", ""]
        lines += [
            f"- {k}: version {v['from']} -> {v['to']}; tokens do not match earlier releases"
            for k, v in m["key_rotation"].items()
        ]
    lines += [
        "",
        "## Gate checks",
        "",
        "| check | dataset | result | detail |",
        "|---|---|---|---|",
    ]
    for c in gate.get("checks", []):
        lines.append(
            f"| {c['check']} | {c['dataset']} | {'pass' if c['passed'] else 'FAIL'} | "
            f"{c['detail']} |"
        )
    return "\n".join(lines) + "\n"


def render_html(manifest: dict[str, Any]) -> str:
    """A self-contained HTML page of the same report (no scripts, no external assets)."""
    body = []
    table: list[str] | None = None
    for line in render_markdown(manifest).splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if table is None:
                table = ["<table><tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>"]
            else:
                table.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if table is not None:
            body.append("".join(table) + "</table>")
            table = None
        text = html.escape(line).replace("**", "")
        if line.startswith("# "):
            body.append(f"<h1>{text[2:]}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{text[3:]}</h2>")
        elif line.startswith("- "):
            body.append(f"<li>{text[2:]}</li>")
        elif line:
            body.append(f"<p>{text}</p>")
    if table is not None:
        body.append("".join(table) + "</table>")
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:left;vertical-align:top}"
    )
    title = html.escape(f"Release {manifest['release_id']} tier {manifest['tier']}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
