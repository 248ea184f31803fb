"""The CSV drop adapter: strict, streaming, and every error names where, never the value."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from datashare.errors import SourceError
from datashare.sources.csv_drop import read_batches, read_drop


@pytest.fixture
def export(small_export: Path, tmp_path: Path) -> Path:
    return shutil.copytree(small_export, tmp_path / "drop")


def _sync(export: Path) -> None:
    manifest = json.loads((export / "manifest.json").read_text())
    for f in manifest["files"]:
        data = (export / f["file"]).read_bytes()
        f["bytes"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (export / "manifest.json").write_text(json.dumps(manifest))


def _read_all(export: Path, dataset: str) -> int:
    f = next(f for f in read_drop(export) if f.dataset == dataset)
    return sum(b.num_rows for b in read_batches(f))


def _edit_line(export: Path, name: str, line_no: int, old: str, new: str) -> str:
    path = export / name
    lines = path.read_text().splitlines(keepends=True)
    secret = lines[line_no - 1]
    lines[line_no - 1] = secret.replace(old, new, 1)
    path.write_text("".join(lines))
    _sync(export)
    return secret


def test_reads_every_dataset(export: Path) -> None:
    files = read_drop(export)
    assert {f.dataset for f in files} >= {"students", "attendance", "schools"}
    for f in files:
        assert sum(b.num_rows for b in read_batches(f)) == f.rows


def test_missing_manifest(export: Path) -> None:
    (export / "manifest.json").unlink()
    with pytest.raises(SourceError, match=r"no manifest\.json"):
        read_drop(export)


def test_missing_file(export: Path) -> None:
    (export / "programs.csv").unlink()
    with pytest.raises(SourceError, match=r"programs.csv.*missing"):
        read_drop(export)


def test_truncated_file(export: Path) -> None:
    path = export / "attendance.csv"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"attendance.csv.*truncated"):
        read_drop(export)


def test_bad_date_names_line_and_column_not_value(export: Path) -> None:
    secret = _edit_line(export, "students.csv", 5, ",20", ",2O")  # letter O in a year
    with pytest.raises(SourceError) as err:
        _read_all(export, "students")
    msg = str(err.value)
    assert "students.csv" in msg and "line 5" in msg and "column birth_date" in msg
    assert "not a valid date" in msg
    for field in secret.strip().split(","):
        if len(field.strip('"')) > 3:
            assert field.strip('"') not in msg


def test_latin1_text_is_refused_with_its_line(export: Path) -> None:
    path = export / "students.csv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b'"', b'"\xe9', 1)
    path.write_bytes(b"\n".join(lines))
    _sync(export)
    with pytest.raises(SourceError, match=r"line 4.*not valid UTF-8"):
        _read_all(export, "students")


def test_unknown_and_missing_columns(export: Path) -> None:
    path = export / "schools.csv"
    text = path.read_text()
    path.write_text(text.replace('"zip"', '"postcode"', 1))
    _sync(export)
    with pytest.raises(SourceError, match=r"unknown column.*postcode"):
        _read_all(export, "schools")


def test_wrong_delimiter(export: Path) -> None:
    path = export / "budgets.csv"
    path.write_text(path.read_text().replace(",", ";"))
    _sync(export)
    with pytest.raises(SourceError, match="looks ';'-separated"):
        _read_all(export, "budgets")


def test_malformed_row_names_its_line(export: Path) -> None:
    _edit_line(export, "enrollments.csv", 7, "\n", ",extra\n")
    with pytest.raises(SourceError, match=r"line 7.*expected 7 fields, found 8"):
        _read_all(export, "enrollments")
