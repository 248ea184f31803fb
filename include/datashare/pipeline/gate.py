"""Step 6: the release gate. An independent re-check of every staged tier before publication.

It re-reads each tier's release from the lake as that tier's own reader and checks facts, not
intentions: every file matches the manifest; the columns are exactly those the policy releases;
no aggregate count lies in 1..min_cell-1; no value of a source direct identifier (student ID,
SASID, name, home address, date of birth) appears where the tier may not receive it; no
opted-out student appears in tier 3. Findings go into the manifest; any failure stops the
publication of every tier.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from datashare.errors import GateError
from datashare.lake.client import Lake, connect
from datashare.lake.identities import PIPELINE
from datashare.lake.parquet_io import read_parquet_keys
from datashare.pipeline.build import tokenizer_for
from datashare.pipeline.staging import read_staged
from datashare.policy import Policy, Tier, load_policy
from datashare.releases import read_manifest, verify_release, write_manifest

__all__ = ["gate_release"]

log = logging.getLogger(__name__)

_IDENTIFIER_COLUMNS = ("student_id", "sasid", "first_name", "last_name", "home_address")


def _identifiers(lake: Lake, release_id: str) -> dict[str, Any]:
    """Values of the source's direct identifiers, from staging (pipeline-only)."""
    students = read_staged(lake, release_id, "students")
    values = {c: pc.unique(students.column(c)).drop_null() for c in _IDENTIFIER_COLUMNS}
    full = pc.binary_join_element_wise(
        students.column("first_name"), students.column("last_name"), " "
    )
    values["full_name"] = pc.unique(full).drop_null()
    opted_out = pc.filter(students.column("student_id"), students.column("directory_opt_out"))
    return {
        "strings": pa.concat_arrays(
            [v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v for v in values.values()]
        ),
        "ids": pa.concat_arrays([values["student_id"], values["sasid"]]),
        "birth_dates": pc.unique(students.column("birth_date")).drop_null(),
        "opted_out_ids": opted_out,
    }


def _personal_columns(policy: Policy, tier: Tier, dataset: str) -> set[str] | None:
    """Output columns that come from personal source columns (None = all columns)."""
    spec = tier.dataset(dataset)
    if spec.form != "table":
        return None
    return {
        c.name for c in spec.columns if policy.classify(spec.source, c.source).cls != "non_personal"
    }


def _expected_columns(tier: Tier, dataset: str) -> list[str]:
    spec = tier.dataset(dataset)
    if spec.aggregate:
        agg = spec.aggregate
        cols = list(agg.by)
        if agg.subgroups:
            cols += ["subgroup", "subgroup_value"]
        cols += list(agg.measures)
        if agg.min_cell:
            cols.append("suppressed")
        return cols
    return [c.name for c in spec.columns]


def _check_tier(
    lake: Lake, reader: Lake, policy: Policy, tier: Tier, release_id: str, ids: dict[str, Any]
) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def record(check: str, dataset: str, passed: bool, detail: str) -> None:
        checks.append({"check": check, "dataset": dataset, "passed": passed, "detail": detail})

    doc = verify_release(lake, tier.bucket, release_id, checksums=True)
    record(
        "files match manifest (size, sha256)",
        "*",
        True,
        f"{sum(len(d['files']) for d in doc['datasets'].values())} files",
    )
    # A tier that receives directory information in clear (tier 3) may hold names and
    # addresses, but never a raw student or state ID.
    keep = tier.allows.get("keep", [])
    clear_identifiers_allowed = "direct_identifier" in keep or "directory" in keep
    for name, entry in doc["datasets"].items():
        table = read_parquet_keys(reader, tier.bucket, [f["key"] for f in entry["files"]])
        expected = _expected_columns(tier, name)
        record(
            "columns are exactly the policy's",
            name,
            table.column_names == expected,
            f"{len(table.column_names)} columns",
        )
        spec = tier.dataset(name)
        if spec.aggregate and spec.aggregate.min_cell:
            k = spec.aggregate.min_cell
            bad = 0
            for out, (fn, _) in spec.aggregate.measures.items():
                if fn == "count":
                    v = table.column(out)
                    bad += int(pc.sum(pc.and_(pc.greater_equal(v, 1), pc.less(v, k))).as_py() or 0)
            record(f"no count in 1..{k - 1}", name, bad == 0, f"{bad} small counts")
        personal = _personal_columns(policy, tier, name)
        leaked = 0
        for field in table.schema:
            if personal is not None and field.name not in personal:
                continue
            col = table.column(field.name)
            if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
                forbidden = ids["ids"] if clear_identifiers_allowed else ids["strings"]
                leaked += int(pc.sum(pc.is_in(col, value_set=forbidden)).as_py() or 0)
            elif pa.types.is_date(field.type) and not clear_identifiers_allowed:
                leaked += int(pc.sum(pc.is_in(col, value_set=ids["birth_dates"])).as_py() or 0)
        what = (
            "raw student or state IDs"
            if clear_identifiers_allowed
            else "source IDs, names, addresses or dates of birth"
        )
        record(f"no {what}", name, leaked == 0, f"{leaked} values found")
        if spec.exclude_if and "directory_opt_out" in spec.exclude_if:
            token_cols = [c.name for c in spec.columns if c.treatment == "tokenize"]
            opted = tokenizer_for(tier.tier).tokenize(ids["opted_out_ids"])
            found = sum(
                int(pc.sum(pc.is_in(table.column(c), value_set=opted)).as_py() or 0)
                for c in token_cols
            )
            record(
                "no opted-out student",
                name,
                found == 0 and bool(token_cols),
                f"{found} opted-out students found among {table.num_rows} rows",
            )
    return checks


def gate_release(*, release_id: str, tiers: list[int]) -> dict[str, Any]:
    policy = load_policy()
    lake = connect(PIPELINE)
    ids = _identifiers(lake, release_id)
    failures = []
    summary = {}
    for number in sorted(tiers):
        tier = policy.tier(number)
        reader = connect(tier.readers[0])
        checks = _check_tier(lake, reader, policy, tier, release_id, ids)
        passed = all(c["passed"] for c in checks)
        doc = read_manifest(lake, tier.bucket, release_id)
        doc["gate"] = {
            "passed": passed,
            "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "checked_as": tier.readers[0],
            "checks": checks,
        }
        write_manifest(lake, tier.bucket, doc)
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
