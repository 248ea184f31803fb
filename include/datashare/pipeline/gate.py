"""Step 6: the release gate. An independent re-check of every staged tier before publication.

It re-reads each tier's staged release from the lake (as the pipeline: readers cannot see
`_staging/`) and checks facts, not intentions, with checkers independent of the code that built
the release:

- every file matches the manifest (size, SHA-256); the columns are exactly the policy's;
- aggregates: no count in 1..min_cell-1, and no suppressed cell recoverable from the published
  tables (an LP audit over every linked table of the release);
- k-anonymous files: k measured with pycanon (not our engine) on the published records, and
  l-diversity where declared;
- differentially private tables: every cell of the public domain present, and the release's
  epsilon charged in the budget ledger within the annual cap;
- no value of a source direct identifier (student ID, SASID, name, home address, date of birth)
  where the tier may not receive it; no opted-out student in tier 3.

Findings go into the manifest and the human-readable release report; any failure stops the
publication of every tier.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from datashare.encryption import entitled_kms, reader_keys
from datashare.errors import GateError
from datashare.lake.client import Lake, connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import release_prefix
from datashare.lake.parquet_io import read_parquet_keys
from datashare.pipeline.build import tokenizer_for
from datashare.pipeline.staging import read_staged
from datashare.policy import DatasetSpec, Policy, Tier, load_policy
from datashare.releases import physical_key, read_manifest, verify_release, write_manifest
from datashare.report import render_html, render_markdown

__all__ = ["gate_release", "write_reports"]

log = logging.getLogger(__name__)

_IDENTIFIER_COLUMNS = ("student_id", "sasid", "first_name", "last_name", "home_address")


def _identifiers(lake: Lake, release_id: str) -> dict[str, Any]:
    """Values of the source's direct identifiers, from staging (pipeline-only)."""
    students = read_staged(lake, release_id, "students")
    values = [pc.unique(students.column(c)).drop_null() for c in _IDENTIFIER_COLUMNS]
    full = pc.binary_join_element_wise(
        students.column("first_name"), students.column("last_name"), " "
    )
    values.append(pc.unique(full).drop_null())
    return {
        "strings": pa.concat_arrays(values),
        "ids": pa.concat_arrays(values[:2]),
        "birth_dates": pc.unique(students.column("birth_date")).drop_null(),
        "opted_out_ids": pc.filter(
            students.column("student_id"), students.column("directory_opt_out")
        ),
    }


def _personal_columns(policy: Policy, spec: DatasetSpec) -> set[str] | None:
    """Output columns that come from personal source columns (None = all columns)."""
    if spec.form != "table":
        return None
    return {
        c.name for c in spec.columns if policy.classify(spec.source, c.source).cls != "non_personal"
    }


def _count_in(col: pa.ChunkedArray, values: pa.Array) -> int:
    return int(pc.sum(pc.is_in(col, value_set=values)).as_py() or 0)


def _distinct(col: pa.ChunkedArray) -> pa.Array:
    """Distinct values of a column; for dictionary columns, its dictionaries' values."""
    if pa.types.is_dictionary(col.type):
        return pc.unique(pa.chunked_array([c.dictionary for c in col.chunks], col.type.value_type))
    return pc.unique(col)


def _count_leaked(columns: list[pa.ChunkedArray], values: pa.Array) -> int:
    """Cells of `columns` holding any of `values`.

    pyarrow rebuilds the hash set of `values` (160k identifiers) on every is_in call, which cost
    2 s over a release's 85 columns; so the distinct cells of all columns are matched once, and
    cells are counted only when something matched (which fails the gate anyway).
    """
    if not columns:
        return 0
    distinct = pc.unique(pa.chunked_array([_distinct(c) for c in columns]))
    found = pc.filter(distinct, pc.is_in(distinct, value_set=values))
    if len(found) == 0:
        return 0
    return sum(_count_in(c, found) for c in columns)


class _Checks:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def record(self, check: str, dataset: str, passed: bool, detail: str) -> None:
        self.items.append(
            {"check": check, "dataset": dataset, "passed": bool(passed), "detail": detail}
        )


def _check_identifiers(
    checks: _Checks,
    policy: Policy,
    tier: Tier,
    spec: DatasetSpec,
    table: pa.Table,
    ids: dict[str, Any],
) -> None:
    # A tier that receives directory information in clear (tier 3) may hold names and
    # addresses, but never a raw student or state ID.
    keep = tier.allows.get("keep", [])
    clear_names_allowed = "direct_identifier" in keep or "directory" in keep
    personal = _personal_columns(policy, spec)
    strings, dates = [], []
    for field in table.schema:
        if personal is not None and field.name not in personal:
            continue
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if pa.types.is_string(kind):
            strings.append(table.column(field.name))
        elif pa.types.is_date32(kind) and not clear_names_allowed:
            dates.append(table.column(field.name))
    leaked = _count_leaked(strings, ids["ids"] if clear_names_allowed else ids["strings"])
    leaked += _count_leaked(dates, ids["birth_dates"])
    what = (
        "raw student or state IDs"
        if clear_names_allowed
        else "source IDs, names, addresses or dates of birth"
    )
    checks.record(f"no {what}", spec.name, leaked == 0, f"{leaked} values found")
    if "directory_opt_out" in spec.exclude_if:
        token_cols = [c.name for c in spec.columns if c.treatment == "tokenize"]
        opted = tokenizer_for(tier.tier).tokenize(ids["opted_out_ids"])
        found = sum(_count_in(table.column(c), opted) for c in token_cols)
        checks.record(
            "no opted-out student",
            spec.name,
            found == 0 and bool(token_cols),
            f"{found} opted-out students among {table.num_rows} rows",
        )


def _check_k_anonymity(
    checks: _Checks, spec: DatasetSpec, table: pa.Table, entry: dict[str, Any]
) -> None:
    """k and l measured by pycanon, an implementation independent of our engine."""
    from pycanon import anonymity

    ka = spec.k_anon
    assert ka is not None
    qis = list(ka.quasi_identifiers)
    if table.num_rows == 0:
        checks.record(f"k >= {ka.k} (pycanon)", spec.name, False, "no records")
        return
    frame = table.to_pandas()
    k = int(anonymity.k_anonymity(frame, qis))
    checks.record(
        f"k >= {ka.k} (pycanon)",
        spec.name,
        k >= ka.k and k == entry.get("min_class_size"),
        f"measured k={k}, manifest {entry.get('min_class_size')}",
    )
    if ka.l_diversity:
        attr, want = ka.l_diversity
        got = int(anonymity.l_diversity(frame, qis, [attr]))
        checks.record(
            f"l >= {want:g} on {attr} (pycanon)", spec.name, got >= want, f"measured l={got}"
        )


def _check_dp(
    checks: _Checks,
    policy: Policy,
    spec: DatasetSpec,
    table: pa.Table,
    entry: dict[str, Any],
    release_id: str,
    lake: Lake,
) -> None:
    from datashare.pipeline.budget import ledger

    dp = spec.dp
    assert dp is not None
    domain_cells = 1
    for col, name in dp.domain.items():
        values = set(policy.domains[name])
        present = set(table.column(col).to_pylist())
        checks.record(
            f"{col} exactly the public domain",
            spec.name,
            present == values,
            f"{len(present)} values published, {len(values)} in the domain",
        )
        domain_cells *= len(values)
    checks.record(
        "one cell per domain combination",
        spec.name,
        table.num_rows == domain_cells,
        f"{table.num_rows} cells, {domain_cells} expected",
    )
    year = entry.get("school_year")
    book = ledger(lake)
    # A carried-forward table was charged when its noise was drawn, by an earlier release.
    charged = book.charged(spec.name, year, entry.get("noise_release", release_id))
    spent = book.spent(spec.name, year)
    ok = (
        charged is not None
        and charged >= entry.get("epsilon", float("inf")) - 1e-12
        and entry.get("epsilon", 0) <= dp.epsilon + 1e-12
        and spent <= dp.annual_cap + 1e-12
    )
    checks.record(
        "epsilon charged, within the annual cap",
        spec.name,
        ok,
        f"epsilon {entry.get('epsilon')} charged {charged}; school year {year}: "
        f"{spent:g} of {dp.annual_cap:g} spent",
    )


def _check_aggregate(checks: _Checks, spec: DatasetSpec, table: pa.Table) -> None:
    agg = spec.aggregate
    assert agg is not None
    if not agg.min_cell:
        return
    k = agg.min_cell
    bad = 0
    for out, (fn, _) in agg.measures.items():
        if fn == "count":
            v = table.column(out)
            bad += int(pc.sum(pc.and_(pc.greater_equal(v, 1), pc.less(v, k))).as_py() or 0)
    checks.record(f"no count in 1..{k - 1}", spec.name, bad == 0, f"{bad} small counts")


def _check_tier(
    lake: Lake, policy: Policy, tier: Tier, release_id: str, ids: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, pa.Table]]:
    checks = _Checks()
    reader_kms = entitled_kms(tier.readers[0])
    doc = verify_release(lake, tier.bucket, release_id, checksums=True, staged=True)
    checks.record(
        "files match manifest (size, sha256)",
        "*",
        True,
        f"{sum(len(d['files']) for d in doc['datasets'].values())} files",
    )
    tables = {}
    for name, entry in doc["datasets"].items():
        keys = [physical_key(f["key"], staged=True) for f in entry["files"]]
        spec = tier.dataset(name)
        # Decrypted with the keys the tier's reader is entitled to: proves readers can read it.
        # Row-level files are only searched for identifiers: their strings are read as
        # dictionaries. Aggregates and k-anonymous files feed checks that need plain columns.
        row_level = spec.form in ("table", "microdata")
        table = read_parquet_keys(
            lake,
            tier.bucket,
            keys,
            decrypt=reader_keys(reader_kms, doc, name),
            read_dictionary=list(spec.output_columns) if row_level else None,
        )
        tables[name] = table
        checks.record(
            "columns are exactly the policy's",
            name,
            table.column_names == spec.output_columns,
            f"{len(table.column_names)} columns",
        )
        if spec.aggregate:
            _check_aggregate(checks, spec, table)
        if spec.k_anon:
            _check_k_anonymity(checks, spec, table, entry)
        if spec.dp:
            _check_dp(checks, policy, spec, table, entry, release_id, lake)
        _check_identifiers(checks, policy, tier, spec, table, ids)
    return checks.items, tables


def write_reports(lake: Lake, bucket: str, doc: dict[str, Any], *, staged: bool = True) -> None:
    """The human-readable release report, next to the manifest (Markdown and HTML)."""
    prefix = physical_key(release_prefix(doc["release_id"]), staged)
    lake.put_bytes(
        bucket,
        prefix + "_report.md",
        render_markdown(doc).encode(),
        content_type="text/markdown; charset=utf-8",
    )
    lake.put_bytes(
        bucket,
        prefix + "_report.html",
        render_html(doc).encode(),
        content_type="text/html; charset=utf-8",
    )


def gate_release(*, release_id: str, tiers: list[int]) -> dict[str, Any]:
    from datashare.pipeline.suppression_audit import audit_release

    policy = load_policy()
    lake = connect(PIPELINE)
    ids = _identifiers(lake, release_id)
    failures = []
    summary = {}
    results = {}
    for number in sorted(tiers):
        tier = policy.tier(number)
        results[number] = _check_tier(lake, policy, tier, release_id, ids)
    # The suppression audit spans tiers: tier-1 totals are constraints on tier-2 cells.
    audit = audit_release(policy, {n: t for n, (_, t) in results.items()}, release_id)
    for number in sorted(tiers):
        tier = policy.tier(number)
        checks = results[number][0] + audit.get(number, [])
        passed = all(c["passed"] for c in checks)
        doc = read_manifest(lake, tier.bucket, release_id, staged=True)
        doc["gate"] = {
            "passed": passed,
            "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "checked_as": f"staged release, read with {tier.readers[0]}'s keys",
            "checks": checks,
        }
        write_manifest(lake, tier.bucket, doc, staged=True)
        write_reports(lake, tier.bucket, doc, staged=True)
        summary[number] = {"passed": passed, "checks": len(checks)}
        for c in checks:
            if not c["passed"]:
                failures.append({"tier": number, **c})
                log.error(
                    "gate: tier %d %s: %s failed (%s)",
                    number,
                    c["dataset"],
                    c["check"],
                    c["detail"],
                )
    if failures:
        lines = [f"tier {f['tier']} {f['dataset']}: {f['check']} ({f['detail']})" for f in failures]
        raise GateError(
            "release gate failed; nothing is published:\n  " + "\n  ".join(lines), failures
        )
    return {"release_id": release_id, "tiers": summary}
