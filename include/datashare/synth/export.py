"""Write a synthetic BPS nightly export: one CSV per entity plus `manifest.json`.

This is the "Aspen-style CSV drop" the default source adapter reads: UTF-8, comma-separated,
header row, ISO dates, empty field for null. The manifest lists every file with its row count,
size and SHA-256 so the adapter can detect a truncated or altered drop.
Generation is deterministic for a given (seed, scale, school year).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from datashare import __version__
from datashare.sources.canonical import model
from datashare.synth.activity import (
    assessments_table,
    attendance_batches,
    course_grades_table,
    discipline_table,
)
from datashare.synth.calibration import calibration
from datashare.synth.district import budgets_table, schools_table, staff_table
from datashare.synth.population import enrollments_table, make_population, programs_table

__all__ = ["DEFAULT_SCHOOL_YEAR", "MANIFEST", "ExportSummary", "write_export"]

MANIFEST = "manifest.json"
DEFAULT_SCHOOL_YEAR = 2026
# One independent random stream per component, so changing one never shifts another.
_STREAMS = (
    "population",
    "programs",
    "attendance",
    "assessments",
    "grades",
    "discipline",
    "staff",
    "budgets",
)


@dataclass(frozen=True)
class ExportSummary:
    directory: Path
    rows: dict[str, int]
    bytes: int
    seconds: float

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _write_csv(path: Path, batches: Iterable[pa.RecordBatch | pa.Table], schema: pa.Schema) -> dict:
    """Stream batches to CSV, hashing as we go; returns the manifest entry."""
    digest = hashlib.sha256()
    rows = size = 0
    header = True
    with open(path, "wb") as fh:
        for batch in batches:
            table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
            table = table.select(schema.names).cast(schema)
            buf = pa.BufferOutputStream()
            pacsv.write_csv(
                table, buf, pacsv.WriteOptions(include_header=header, quoting_style="needed")
            )
            data = buf.getvalue().to_pybytes()
            header = False
            fh.write(data)
            digest.update(data)
            rows += table.num_rows
            size += len(data)
    return {"file": path.name, "rows": rows, "bytes": size, "sha256": digest.hexdigest()}


def write_export(
    out: Path, *, scale: float = 1.0, seed: int = 2026, school_year: int = DEFAULT_SCHOOL_YEAR
) -> ExportSummary:
    """Generate a district at `scale` (1.0 = BPS-sized) and write the export drop to `out`."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.csv"):
        stale.unlink()
    rngs = dict(
        zip(
            _STREAMS,
            (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(_STREAMS))),
            strict=True,
        )
    )
    cal = calibration()
    school_ids = np.asarray(cal.school_ids, dtype=object)
    pop = make_population(rngs["population"], cal, scale, school_year)
    per_school = np.bincount(pop.school, minlength=len(school_ids)).astype(float)

    m = model()
    tables: dict[str, Iterable[pa.RecordBatch | pa.Table]] = {
        "schools": [schools_table(cal)],
        "students": [pop.students],
        "enrollments": [enrollments_table(pop, school_ids)],
        "programs": [programs_table(rngs["programs"], pop)],
        "attendance": attendance_batches(rngs["attendance"], pop, school_ids),
        "assessments": [assessments_table(rngs["assessments"], pop, cal, school_ids)],
        "course_grades": [course_grades_table(rngs["grades"], pop, school_ids)],
        "discipline": [discipline_table(rngs["discipline"], pop, school_ids)],
        "staff": [staff_table(rngs["staff"], per_school, school_ids, school_year)],
        "budgets": [budgets_table(rngs["budgets"], per_school, school_ids, school_year)],
    }
    files = []
    for name, batches in tables.items():
        entry = _write_csv(out / f"{name}.csv", batches, m[name].schema)
        files.append({"dataset": name, **entry})
    manifest = {
        "export": "aspen-csv",
        "format_version": 1,
        "source_system": "Synthetic Aspen SIS (bps-datashare generator)",
        "district": "Boston Public Schools (synthetic)",
        "school_year": school_year,
        # Deterministic: the export is stamped with the end of its school year, not wall time.
        "exported_at": f"{school_year}-06-30T02:00:00Z",
        "generator": {"version": __version__, "seed": seed, "scale": scale},
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return ExportSummary(
        directory=out,
        rows={f["dataset"]: f["rows"] for f in files},
        bytes=sum(f["bytes"] for f in files),
        seconds=time.perf_counter() - started,
    )
