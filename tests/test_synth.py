"""The synthetic export: deterministic, structurally honest, calibrated where it claims to be."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv

from datashare.sources.canonical import model
from datashare.synth.calendar import SCHOOL_DAYS, school_days
from datashare.synth.export import write_export


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_export(tmp_path / "a", scale=0.01, seed=11)
    b = write_export(tmp_path / "b", scale=0.01, seed=11)
    c = write_export(tmp_path / "c", scale=0.01, seed=12)
    ma = json.loads((a.directory / "manifest.json").read_text())["files"]
    mb = json.loads((b.directory / "manifest.json").read_text())["files"]
    mc = json.loads((c.directory / "manifest.json").read_text())["files"]
    assert [f["sha256"] for f in ma] == [f["sha256"] for f in mb]
    assert [f["sha256"] for f in ma] != [f["sha256"] for f in mc]


def test_every_canonical_dataset_with_its_columns(small_export: Path) -> None:
    for name, ds in model().datasets.items():
        t = pacsv.read_csv(small_export / f"{name}.csv")
        assert t.column_names == ds.column_names, name
        assert t.num_rows > 0, name


def test_calendar_has_180_weekdays() -> None:
    days = school_days(2026)
    assert len(days) == SCHOOL_DAYS
    assert str(days[0]) == "2025-09-04"
    weekdays = (days.astype("datetime64[D]").view("int64") - 4) % 7  # 1970-01-01 was a Thursday
    assert set(weekdays.tolist()) <= {0, 1, 2, 3, 4}
    assert "2025-12-25" not in {str(d) for d in days}


def test_attendance_rows_are_enrolled_days(small_export: Path) -> None:
    att = pacsv.read_csv(small_export / "attendance.csv")
    enr = pacsv.read_csv(small_export / "enrollments.csv")
    students = pacsv.read_csv(small_export / "students.csv")
    assert set(pc.unique(att["student_id"]).to_pylist()) <= set(students["student_id"].to_pylist())
    # About 180 days per student on average (mid-year entries and exits make it less).
    per_student = att.num_rows / students.num_rows
    assert 150 < per_student <= SCHOOL_DAYS
    assert enr.num_rows >= students.num_rows
