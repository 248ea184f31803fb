"""Benchmark probes, each run in its own process so its peak memory is its own.

python -m bench.probes NAME [ARGS...]   prints one JSON line: seconds, rows, peak_rss_mib...
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _peak_mib() -> int:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and exec, so a probe
    # would report the bench parent's peak (DuckDB's CSV conversion) whenever that was larger.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def synth(out: str, scale: str) -> dict[str, Any]:
    from datashare.synth.export import write_export

    t = time.perf_counter()
    s = write_export(Path(out), scale=float(scale))
    seconds = time.perf_counter() - t
    return {
        "seconds": round(seconds, 2),
        "rows": s.total_rows,
        "rows_per_second": int(s.total_rows / seconds),
        "csv_megabytes": round(s.bytes / 1e6),
    }


def _drain(extract: Any) -> tuple[int, dict[str, int]]:
    rows = {}
    for ds in extract.datasets():
        rows[ds] = sum(b.num_rows for b in extract.batches(ds))
    return sum(rows.values()), rows


def csv_drop(source: str) -> dict[str, Any]:
    from datashare.sources.csv_drop import open_extract

    t = time.perf_counter()
    total, _rows = _drain(open_extract(source))
    seconds = time.perf_counter() - t
    return {"seconds": round(seconds, 2), "rows": total, "rows_per_second": int(total / seconds)}


def oneroster(source: str) -> dict[str, Any]:
    from datashare.sources.oneroster import open_extract
    from datashare.synth.oneroster import write_oneroster

    with tempfile.TemporaryDirectory() as tmp:
        write_oneroster(Path(source), Path(tmp), version="1.2")
        t = time.perf_counter()
        total, _rows = _drain(open_extract(tmp))
        seconds = time.perf_counter() - t
    return {"seconds": round(seconds, 2), "rows": total, "rows_per_second": int(total / seconds)}


def sql(source: str) -> dict[str, Any]:
    from datashare.sources.base import ExtractContext
    from datashare.sources.sql import open_extract
    from datashare.synth.sqldb import load_sqlite

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "sis.db"
        load_sqlite(Path(source), db, "2026-06-01 00:00:00")
        ctx = ExtractContext(release_id="20260601T000000Z", as_of="2026-06-02T00:00:00+00:00")
        t = time.perf_counter()
        total, rows = _drain(open_extract(f"sqlite:///{db}", ctx))
        seconds = time.perf_counter() - t
    return {
        "seconds": round(seconds, 2),
        "rows": total,
        "rows_per_second": int(total / seconds),
        "datasets": sorted(rows),
    }


def edfi_grand_bend() -> dict[str, Any]:
    from datashare.sources.edfi import open_extract

    ref = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "edfi_grand_bend"
    if not ref.exists():
        return {"skipped": "reference data not available"}
    t = time.perf_counter()
    total, rows = _drain(open_extract(str(ref)))
    return {"seconds": round(time.perf_counter() - t, 3), "rows": total, "datasets": rows}


def validation(source: str) -> dict[str, Any]:
    """Validate attendance (the largest dataset) vs. merely reading it."""
    import datetime as dt

    import pyarrow as pa

    from datashare.sources.canonical import model
    from datashare.sources.csv_drop import open_extract
    from datashare.validation.checks import CheckContext, derived_checks
    from datashare.validation.runner import validate_table

    ex = open_extract(source)
    t = time.perf_counter()
    attendance = pa.Table.from_batches(list(ex.batches("attendance")))
    read = time.perf_counter() - t
    enrollments = pa.Table.from_batches(list(ex.batches("enrollments")))
    year = max(enrollments.column("school_year").to_pylist())
    night = CheckContext(school_year=year, as_of=dt.date(year, 6, 30))
    # The other datasets attendance's cross-dataset rules read, as the validate step loads them
    needs = {n for c in derived_checks(model()["attendance"], night) for n in c.needs}
    others = {n: pa.Table.from_batches(list(ex.batches(n))) for n in sorted(needs)}
    t = time.perf_counter()
    import great_expectations  # noqa: F401 - once per worker process; reported on its own

    gx_import = time.perf_counter() - t
    t = time.perf_counter()
    report = validate_table("attendance", attendance, night, others)
    seconds = time.perf_counter() - t
    return {
        "rows": attendance.num_rows,
        "read_seconds": round(read, 2),
        "seconds": round(seconds, 2),
        "x_read": round(seconds / read, 1),
        "gx_import_seconds": round(gx_import, 2),
        "rules": report.evaluated,
    }


def tokenize() -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa

    from datashare.privacy.tokenize import Tokenizer

    ids = pa.array(np.arange(10_000_000, 11_000_000).astype(str))
    tok = Tokenizer(os.urandom(32), 4, 1)
    tok.tokenize(ids.slice(0, 1000))
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        tok.tokenize(ids)
        best = min(best, time.perf_counter() - t)
    return {"ids": len(ids), "seconds": round(best, 3), "ids_per_second": int(len(ids) / best)}


def _attendance_tier4(source: str) -> Any:
    """Tier 4's attendance file as the build step makes it: the student ID tokenized."""
    import pyarrow as pa

    from datashare.privacy.tokenize import Tokenizer
    from datashare.sources.csv_drop import open_extract

    t = pa.Table.from_batches(list(open_extract(source).batches("attendance")))
    token = Tokenizer(os.urandom(32), 4, 1).tokenize(t.column("student_id"))
    return pa.table(
        {
            "student_token": token,
            "school_id": t.column("school_id"),
            "attendance_date": t.column("attendance_date"),
            "status": t.column("status"),
        }
    )


def encryption(source: str) -> dict[str, Any]:
    """Cost of encryption: tier 4's attendance (the largest file of a night) written to the lake
    and read back, with Parquet modular encryption as the build step writes it (fresh data
    keys, wrapped by the tier master) and in plaintext. Needs the lake up (bench starts it)."""
    import uuid

    from datashare.encryption import release_writer
    from datashare.lake.client import connect
    from datashare.lake.identities import PIPELINE
    from datashare.lake.layout import PIPELINE_BUCKET
    from datashare.lake.parquet_io import read_parquet_keys, write_parquet
    from datashare.policy import load_policy

    table = _attendance_tier4(source)
    lake = connect(PIPELINE)
    keys = release_writer(load_policy().tier(4), "bench").keys("attendance")
    prefix = f"bench/encryption-{uuid.uuid4().hex[:8]}"
    out: dict[str, Any] = {"rows": table.num_rows}
    try:
        for label, k in (("plaintext", None), ("encrypted", keys)):
            best_w = best_r = float("inf")
            for i in range(3):
                key = f"{prefix}/{label}-{i}.parquet"
                t = time.perf_counter()
                entry = write_parquet(lake, PIPELINE_BUCKET, key, table, keys=k)
                best_w = min(best_w, time.perf_counter() - t)
                t = time.perf_counter()
                back = read_parquet_keys(lake, PIPELINE_BUCKET, [key], decrypt=k)
                best_r = min(best_r, time.perf_counter() - t)
                assert back.num_rows == table.num_rows
            out[label] = {
                "write_seconds": round(best_w, 2),
                "read_seconds": round(best_r, 2),
                "megabytes": round(entry.bytes / 1e6, 1),
            }
    finally:
        for key in lake.list_keys(PIPELINE_BUCKET, prefix):
            lake.s3.delete_object(Bucket=PIPELINE_BUCKET, Key=key)
    plain, enc = out["plaintext"], out["encrypted"]
    out["seconds"] = enc["write_seconds"]
    out["write_overhead"] = round(enc["write_seconds"] / plain["write_seconds"] - 1, 3)
    out["read_overhead"] = round(enc["read_seconds"] / plain["read_seconds"] - 1, 3)
    return out


def kanon_adult() -> dict[str, Any]:
    """ARX's four adult cases (nine QIs): best of 3, and whether levels and loss equal ARX's."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from kanon_adult import CASES, DEFAULT_REFERENCE, QIS

    from datashare.privacy.kanon import Hierarchy, anonymize
    from datashare.privacy.kanon.cli import read_csv

    ref = DEFAULT_REFERENCE
    if not (ref / "adult.csv").is_file():
        return {"skipped": "reference data not available"}
    table = read_csv(ref / "adult.csv", sep=";")
    hs = {q: Hierarchy.from_csv(ref / f"adult_hierarchy_{q}.csv", name=q) for q in QIS}
    cases = {}
    for label, qis, kwargs, levels, loss in CASES:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            result = anonymize(table, {q: hs[q] for q in qis}, **kwargs)
            best = min(best, time.perf_counter() - t)
        cases[" ".join(label.split())] = {
            "seconds": round(best, 3),
            "same_as_arx": result.transformation == levels and result.information_loss == loss,
        }
    return {
        "rows": table.num_rows,
        "seconds": round(sum(c["seconds"] for c in cases.values()), 3),
        "cases": cases,
    }


def kanon_student_year(source: str) -> dict[str, Any]:
    """Tier 2's k-anonymous student-year file, built from the export as the night builds it."""
    from datashare.policy import load_policy
    from datashare.tiers.builder import BuildContext, build_dataset

    policy = load_policy()
    spec = next(d for d in policy.tier(2).datasets if d.k_anon is not None)
    con = _night_tables(source)
    t = time.perf_counter()
    built = build_dataset(spec, con, BuildContext(policy=policy))
    seconds = time.perf_counter() - t
    return {
        "dataset": spec.name,
        "rows": built.table.num_rows,
        "seconds": round(seconds, 2),
        "k": built.privacy["k"],
        "levels": built.privacy["generalization_levels"],
        "suppressed_records": built.privacy["suppressed_records"],
    }


def _night_tables(source: str) -> Any:
    """A DuckDB connection holding the export's datasets and the derived views, as staged."""
    import duckdb
    import pyarrow as pa

    from datashare.sources.csv_drop import open_extract
    from datashare.tiers.views import VIEWS

    ex = open_extract(source)
    con = duckdb.connect()
    for ds in ex.datasets():
        con.register(ds, pa.Table.from_batches(list(ex.batches(ds))))
    for view in VIEWS.values():  # in dependency order, as the derive step computes them
        con.execute(f"CREATE TABLE {view.name} AS {view.sql}")
    return con


def suppression(source: str) -> dict[str, Any]:
    """Tier 2's aggregates with small-cell suppression, then complementary suppression linked
    with tier 1's totals and its LP audit, exactly as the build step calls them."""
    from datashare.policy import load_policy
    from datashare.tiers.builder import BuildContext, build_dataset
    from datashare.tiers.linked import protect_aggregates

    policy = load_policy()
    con = _night_tables(source)
    ctx = BuildContext(policy=policy)
    t = time.perf_counter()
    mine = {
        d.name: build_dataset(d, con, ctx)
        for d in policy.tier(2).datasets
        if d.aggregate and d.aggregate.min_cell
    }
    others = {
        (tier.tier, d.name): build_dataset(d, con, ctx)
        for tier in policy.tiers
        if tier.tier != 2
        for d in tier.datasets
        if d.aggregate
    }
    aggregate = time.perf_counter() - t
    t = time.perf_counter()
    result = protect_aggregates(policy, 2, mine, others)  # raises if any cell is recoverable
    protect = time.perf_counter() - t
    return {
        "tables": sorted(mine) + [f"tier{k[0]}.{k[1]}" for k in others],
        "cells": result["cells"],
        "primary": sum(int(b.primary.sum()) for b in mine.values() if b.primary is not None),
        "complementary": result["complementary"],
        "lp_solves": result["lp_solves"],
        "aggregate_seconds": round(aggregate, 2),
        "protect_and_audit_seconds": round(protect, 2),
        "seconds": round(aggregate + protect, 2),
    }


PROBES: dict[str, Callable[..., dict[str, Any]]] = {
    "synth": synth,
    "csv_drop": csv_drop,
    "oneroster": oneroster,
    "sql": sql,
    "edfi_grand_bend": edfi_grand_bend,
    "validation": validation,
    "tokenize": tokenize,
    "encryption": encryption,
    "kanon_adult": kanon_adult,
    "kanon_student_year": kanon_student_year,
    "suppression": suppression,
}

if __name__ == "__main__":
    result = PROBES[sys.argv[1]](*sys.argv[2:])
    result["peak_rss_mib"] = _peak_mib()
    print(json.dumps(result))
