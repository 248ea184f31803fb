"""Real-world export defects, injected reproducibly into a synthetic export drop.

`datashare synth --defects NAME[,NAME...]` (or `all`) applies them after generation. Each
defect is what a real SIS export has been seen to do; `refreshes_manifest` says whether the
exporter would still have written a consistent manifest (most defects happen upstream of the
manifest; a truncated transfer does not). The designed outcome of each is documented in
docs/validation.md and asserted by tests/validation/test_broken_exports.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from datashare.sources.canonical import model

__all__ = ["DEFECTS", "Defect", "apply_defects", "refresh_manifest"]


@dataclass(frozen=True)
class Defect:
    name: str
    description: str
    apply: Callable[[Path, np.random.Generator], None]
    refreshes_manifest: bool = True


def _read(export: Path, dataset: str) -> pa.Table:
    types = {c.name: pa.string() for c in model()[dataset].columns}
    return pacsv.read_csv(
        export / f"{dataset}.csv",
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, null_values=[""]
        ),
    )


def _write(export: Path, dataset: str, table: pa.Table) -> None:
    pacsv.write_csv(table, export / f"{dataset}.csv", pacsv.WriteOptions(quoting_style="needed"))


def _set(table: pa.Table, column: str, rows: np.ndarray, value: str | None) -> pa.Table:
    col = table.column(column).to_numpy(zero_copy_only=False).astype(object)
    col[rows] = value
    return table.set_column(
        table.schema.get_field_index(column), column, pa.array(col, pa.string())
    )


def _pick(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(k, n), replace=False))


def refresh_manifest(export: Path) -> None:
    """Rewrite manifest.json to match the files as they are (what a buggy exporter does)."""
    path = export / "manifest.json"
    manifest = json.loads(path.read_text())
    for f in manifest["files"]:
        p = export / f["file"]
        if not p.exists():
            continue
        data = p.read_bytes()
        f["bytes"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
        body = data.split(b"\n", 1)[1] if b"\n" in data else b""
        f["rows"] = body.count(b"\n") + (0 if not body or body.endswith(b"\n") else 1)
    path.write_text(json.dumps(manifest, indent=1) + "\n")


# --- the defects ----------------------------------------------------------------------------


def _duplicate_rows(dataset: str, k: int) -> Callable[[Path, np.random.Generator], None]:
    def apply(export: Path, rng: np.random.Generator) -> None:
        t = _read(export, dataset)
        _write(export, dataset, pa.concat_tables([t, t.take(pa.array(_pick(rng, t.num_rows, k)))]))

    return apply


def _replace_values(
    dataset: str, column: str, value: str | None, k: int
) -> Callable[[Path, np.random.Generator], None]:
    def apply(export: Path, rng: np.random.Generator) -> None:
        t = _read(export, dataset)
        _write(export, dataset, _set(t, column, _pick(rng, t.num_rows, k), value))

    return apply


def _latin1(export: Path, rng: np.random.Generator) -> None:
    """A student name re-encoded as Latin-1 by a misconfigured export step."""
    path = export / "students.csv"
    lines = path.read_bytes().split(b"\n")
    i = int(rng.integers(1, len(lines) - 1))
    lines[i] = lines[i].replace(b",", b",\xc1", 1)  # 'Á' in Latin-1: not valid UTF-8
    path.write_bytes(b"\n".join(lines))


def _truncate_transfer(export: Path, rng: np.random.Generator) -> None:
    """The attendance file cut off in transit (the manifest still describes the full file)."""
    path = export / "attendance.csv"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _truncated_last_line(export: Path, rng: np.random.Generator) -> None:
    """The export itself stopped mid-row: the last line of enrollments is incomplete."""
    path = export / "enrollments.csv"
    data = path.read_bytes().rstrip(b"\n")
    cut = data.rfind(b",")
    path.write_bytes(data[:cut] + b"\n")


def _new_column(export: Path, rng: np.random.Generator) -> None:
    t = _read(export, "students")
    _write(export, "students", t.append_column("nickname", pa.array([""] * t.num_rows)))


def _missing_column(export: Path, rng: np.random.Generator) -> None:
    t = _read(export, "enrollments")
    _write(export, "enrollments", t.drop_columns(["grade"]))


def _semicolons(export: Path, rng: np.random.Generator) -> None:
    t = _read(export, "schools")
    pacsv.write_csv(t, export / "schools.csv", pacsv.WriteOptions(delimiter=";"))


def _bom(export: Path, rng: np.random.Generator) -> None:
    path = export / "schools.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def _empty_file(export: Path, rng: np.random.Generator) -> None:
    (export / "programs.csv").write_bytes(b"")


def _header_only(dataset: str) -> Callable[[Path, np.random.Generator], None]:
    def apply(export: Path, rng: np.random.Generator) -> None:
        path = export / f"{dataset}.csv"
        path.write_bytes(path.read_bytes().split(b"\n", 1)[0] + b"\n")

    return apply


def _future_birth_dates(export: Path, rng: np.random.Generator) -> None:
    _replace_values("students", "birth_date", "2099-01-01", 3)(export, rng)


def _future_attendance(export: Path, rng: np.random.Generator) -> None:
    t = _read(export, "attendance")
    rows = _pick(rng, t.num_rows, 5)
    _write(export, "attendance", _set(t, "attendance_date", rows, "2099-03-02"))


def _impossible_scores(k: int) -> Callable[[Path, np.random.Generator], None]:
    def apply(export: Path, rng: np.random.Generator) -> None:
        _replace_values("assessments", "scaled_score", "999", k)(export, rng)

    return apply


def _type_change(export: Path, rng: np.random.Generator) -> None:
    """A score column exported as labels instead of numbers, from some row on."""
    t = _read(export, "assessments")
    rows = np.arange(t.num_rows // 2, t.num_rows)
    _write(export, "assessments", _set(t, "scaled_score", rows, "high"))


def _row_drop(dataset: str, share: float) -> Callable[[Path, np.random.Generator], None]:
    def apply(export: Path, rng: np.random.Generator) -> None:
        t = _read(export, dataset)
        keep = np.sort(rng.choice(t.num_rows, size=int(t.num_rows * (1 - share)), replace=False))
        _write(export, dataset, t.take(pa.array(keep)))

    return apply


def _key_churn(export: Path, rng: np.random.Generator) -> None:
    """A tenth of students re-numbered (an ID migration nobody announced), consistently."""
    students = _read(export, "students")
    ids = students.column("student_id").to_pylist()
    rows = _pick(rng, len(ids), max(1, len(ids) // 10))
    mapping = {ids[i]: f"9{ids[i]}" for i in rows}
    for name in (
        "students",
        "enrollments",
        "programs",
        "attendance",
        "assessments",
        "course_grades",
        "discipline",
    ):
        t = _read(export, name)
        old = t.column("student_id")
        keys = pa.array(list(mapping), pa.string())
        new_ids = pa.array(list(mapping.values()), pa.string())
        idx = pc.index_in(old, value_set=keys)
        replaced = pc.if_else(pc.is_valid(idx), pc.take(new_ids, idx), old)
        _write(
            export,
            name,
            t.set_column(t.schema.get_field_index("student_id"), "student_id", replaced),
        )


def _orphans(dataset: str, column: str, k: int) -> Callable[[Path, np.random.Generator], None]:
    def apply(export: Path, rng: np.random.Generator) -> None:
        _replace_values(dataset, column, "0000000" if column == "student_id" else "9999", k)(
            export, rng
        )

    return apply


def _missing_file(export: Path, rng: np.random.Generator) -> None:
    (export / "programs.csv").unlink()


def _altered_file(export: Path, rng: np.random.Generator) -> None:
    """Same size, different bytes: a changed digit in budgets (tampering or corruption)."""
    path = export / "budgets.csv"
    data = bytearray(path.read_bytes())
    i = data.rfind(b"0")
    data[i : i + 1] = b"1"
    path.write_bytes(bytes(data))


def _implausible_ages(export: Path, rng: np.random.Generator) -> None:
    """A few birth dates off by a decade (typos), not in the future."""
    t = _read(export, "students")
    rows = _pick(rng, t.num_rows, 3)
    births = t.column("birth_date").to_numpy(zero_copy_only=False).astype(object)
    for i in rows:
        births[i] = str(int(births[i][:4]) - 10) + births[i][4:]
    _write(
        export,
        "students",
        t.set_column(
            t.schema.get_field_index("birth_date"), "birth_date", pa.array(births, pa.string())
        ),
    )


def _broken_manifest(export: Path, rng: np.random.Generator) -> None:
    (export / "manifest.json").write_text('{"export": "aspen-csv", "files": [')


DEFECTS: dict[str, Defect] = {
    d.name: d
    for d in [
        Defect(
            "duplicate_students", "3 student rows exported twice", _duplicate_rows("students", 3)
        ),
        Defect(
            "duplicate_attendance",
            "20 attendance rows exported twice",
            _duplicate_rows("attendance", 20),
        ),
        Defect(
            "orphan_attendance",
            "5 attendance rows of a student missing from students",
            _orphans("attendance", "student_id", 5),
        ),
        Defect(
            "orphan_enrollments",
            "2 enrollments of a student missing from students",
            _orphans("enrollments", "student_id", 2),
        ),
        Defect(
            "unknown_school_enrollments",
            "2 enrollments at a school missing from the directory",
            _orphans("enrollments", "school_id", 2),
        ),
        Defect(
            "unknown_school_attendance",
            "4 attendance rows at a school missing from the directory",
            _orphans("attendance", "school_id", 4),
        ),
        Defect(
            "bad_gender_codes",
            "2 students with gender 'X' (not a DESE code)",
            _replace_values("students", "gender", "X", 2),
        ),
        Defect(
            "bad_attendance_codes",
            "3 attendance rows with status 'EX' (not an attendance code)",
            _replace_values("attendance", "status", "EX", 3),
        ),
        Defect(
            "missing_last_names",
            "2 students without a last name",
            _replace_values("students", "last_name", None, 2),
        ),
        Defect("latin1_text", "a student row re-encoded as Latin-1", _latin1),
        Defect(
            "truncated_transfer",
            "attendance.csv cut to two thirds in transit",
            _truncate_transfer,
            refreshes_manifest=False,
        ),
        Defect(
            "truncated_last_line",
            "enrollments.csv ends in the middle of a row",
            _truncated_last_line,
        ),
        Defect("new_column", "students.csv gained a column 'nickname'", _new_column),
        Defect("missing_column", "enrollments.csv lost its 'grade' column", _missing_column),
        Defect("wrong_delimiter", "schools.csv written with ';' separators", _semicolons),
        Defect("byte_order_mark", "schools.csv starts with a UTF-8 byte-order mark", _bom),
        Defect("empty_file", "programs.csv is empty (0 bytes)", _empty_file),
        Defect(
            "header_only_students",
            "students.csv has its header and no rows",
            _header_only("students"),
        ),
        Defect(
            "header_only_attendance",
            "attendance.csv has its header and no rows",
            _header_only("attendance"),
        ),
        Defect("future_birth_dates", "3 students born in 2099", _future_birth_dates),
        Defect("future_attendance", "5 attendance rows dated in 2099", _future_attendance),
        Defect(
            "impossible_scores", "2 assessment scores of 999 (scale 440-560)", _impossible_scores(2)
        ),
        Defect(
            "many_impossible_scores",
            "a fifth of assessment scores are 999",
            lambda e, r: _impossible_scores(max(1, _read(e, "assessments").num_rows // 5))(e, r),
        ),
        Defect("type_change", "scaled_score exported as text labels from mid-file", _type_change),
        Defect(
            "half_attendance",
            "half of the attendance rows missing (a half-finished export)",
            _row_drop("attendance", 0.5),
        ),
        Defect("student_id_churn", "a tenth of student IDs changed overnight", _key_churn),
        Defect("missing_file", "programs.csv absent from the drop", _missing_file),
        Defect(
            "altered_file",
            "budgets.csv altered after the manifest was written",
            _altered_file,
            refreshes_manifest=False,
        ),
        Defect("implausible_ages", "3 birth dates a decade off (typos)", _implausible_ages),
        Defect(
            "broken_manifest",
            "manifest.json is not valid JSON",
            _broken_manifest,
            refreshes_manifest=False,
        ),
    ]
}


def apply_defects(export: Path, names: list[str], seed: int = 0) -> list[str]:
    """Apply defects (`all` for every one) to an export drop in place; return the names."""
    chosen = list(DEFECTS) if names == ["all"] else names
    unknown = [n for n in chosen if n not in DEFECTS]
    if unknown:
        raise ValueError(f"unknown defect(s) {unknown}; known: {', '.join(DEFECTS)}")
    rng = np.random.default_rng(seed)
    for name in chosen:
        DEFECTS[name].apply(export, rng)
    if all(DEFECTS[n].refreshes_manifest for n in chosen):
        refresh_manifest(export)
    return chosen
