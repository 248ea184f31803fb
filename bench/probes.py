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

    from datashare.sources.csv_drop import open_extract
    from datashare.validation.checks import CheckContext
    from datashare.validation.runner import validate_table

    ex = open_extract(source)
    t = time.perf_counter()
    attendance = pa.Table.from_batches(list(ex.batches("attendance")))
    read = time.perf_counter() - t
    enrollments = pa.Table.from_batches(list(ex.batches("enrollments")))
    year = max(enrollments.column("school_year").to_pylist())
    night = CheckContext(school_year=year, as_of=dt.date(year, 6, 30))
    t = time.perf_counter()
    report = validate_table("attendance", attendance, night, {"enrollments": enrollments})
    seconds = time.perf_counter() - t
    return {
        "rows": attendance.num_rows,
        "read_seconds": round(read, 2),
        "seconds": round(seconds, 2),
        "x_read": round(seconds / read, 1),
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


PROBES: dict[str, Callable[..., dict[str, Any]]] = {
    "synth": synth,
    "csv_drop": csv_drop,
    "oneroster": oneroster,
    "sql": sql,
    "edfi_grand_bend": edfi_grand_bend,
    "validation": validation,
    "tokenize": tokenize,
}

if __name__ == "__main__":
    result = PROBES[sys.argv[1]](*sys.argv[2:])
    result["peak_rss_mib"] = _peak_mib()
    print(json.dumps(result))
