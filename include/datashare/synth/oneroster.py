"""Convert a synthetic canonical CSV drop into a OneRoster 1.1 or 1.2 bulk CSV export.

Tests and demos of the OneRoster adapter need realistic input that nobody typed by hand. The
export follows the IMS CSV binding: `manifest.csv`, then `orgs` (the district and its schools),
`academicSessions` (a school year and its two semesters), `courses` and `classes` (one homeroom
per school, year and grade), `users` (students and teachers), `demographics`, `enrollments`
(students and one teacher per homeroom) and, for 1.2, `roles`. Identifiers look like a real
export's: user sourcedIds are UUIDs, the local student ID is `identifier`, the state ID a
`{State:...}` entry of `userIds`. Canonical fields OneRoster lacks (home address, school type,
exit code, ...) travel in `metadata.bps.*` extension columns, so the round trip is lossless.
Deterministic: the same drop always gives byte-identical files.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from datashare.sources.canonical import model
from datashare.sources.csv_drop import read_batches, read_drop
from datashare.sources.oneroster import EXTENSIONS, MANIFEST, SPEC_COLUMNS, VERSIONS

__all__ = ["DISTRICT_SOURCED_ID", "write_oneroster"]

DISTRICT_SOURCED_ID = "bps-district"
_DISTRICT_CODE = "00350000"  # DESE organization code of Boston
_NAMESPACE = uuid.UUID("5b0c3f8e-6f2a-4c1e-9a57-0d1f3c2b7a10")  # stable sourcedIds across runs
_GRADE_TO_CEDS = {"PK": "PK", "K": "KG", **{f"{g:02d}": f"{g:02d}" for g in range(1, 13)}}
_GRADE_TO_CEDS["SP"] = "UG"  # BPS's ungraded special education
_SPAN = [g for g in model().code_sets["grade"] if g != "SP"]
_RACE_FLAGS = {  # canonical code -> demographics flags set to true
    "AA": ("blackOrAfricanAmerican",),
    "AS": ("asian",),
    "WH": ("white",),
    "NA": ("americanIndianOrAlaskaNative",),
    "PI": ("nativeHawaiianOrOtherPacificIslander",),
    "HL": ("hispanicOrLatinoEthnicity",),
    "MR": ("demographicRaceTwoOrMoreRaces", "blackOrAfricanAmerican", "white"),
}
_FILES = {
    "1.1": "academicSessions categories classes classResources courses courseResources "
    "demographics enrollments lineItems orgs resources results users",
    "1.2": "academicSessions categories classes classResources courses courseResources "
    "demographics enrollments lineItemLearningObjectiveIds lineItems lineItemScoreScales orgs "
    "resources resultLearningObjectiveIds results resultScoreScales roles scoreScales "
    "userProfiles userResources users",
}

Columns = dict[str, pa.Array | list]


def write_oneroster(export_dir: Path, out_dir: Path, version: str = "1.1") -> dict[str, int]:
    """Write the OneRoster `version` export of the canonical drop in `export_dir` to `out_dir`.

    Returns the number of data rows written per file.
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}")
    src = _load(export_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.csv"):
        stale.unlink()
    students, enr, staff = src["students"], src["enrollments"], src["staff"]
    latest = _latest_enrollment(enr)
    teachers = _teachers(staff)
    years = sorted(set(pc.unique(enr.column("school_year")).to_pylist()))
    classes = _class_keys(src["schools"], enr)
    files: dict[str, Columns] = {
        "orgs": _orgs(src["schools"]),
        "academicSessions": _sessions(years),
        "courses": _courses(classes),
        "classes": _classes(classes),
        "users": _users(students, latest, teachers, version),
        "demographics": _demographics(students, version),
        "enrollments": _enrollments(enr, classes, teachers),
    }
    if version == "1.2":
        files["roles"] = _roles(enr, latest, teachers)
    rows = {name: _write(out_dir, name, cols, version) for name, cols in files.items()}
    _write_manifest(out_dir, version, set(files))
    return rows


def _load(export_dir: Path) -> dict[str, pa.Table]:
    wanted = {"schools", "students", "enrollments", "staff"}
    return {
        f.dataset: pa.Table.from_batches(list(read_batches(f)), model()[f.dataset].schema)
        for f in read_drop(export_dir)
        if f.dataset in wanted
    }


def _sid(kind: str, ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Deterministic UUID sourcedIds, as real exports use opaque GUIDs rather than SIS IDs."""
    return pa.array([str(uuid.uuid5(_NAMESPACE, f"{kind}:{i}")) for i in ids.to_pylist()])


def _text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Values as CSV text: ISO dates, true/false, shortest round-trip floats."""
    return pc.cast(values, pa.string())


def _const(value: str | None, n: int) -> pa.Array:
    return pa.array([value] * n, pa.string())


def _ceds(grades: pa.Array | pa.ChunkedArray) -> pa.Array:
    keys, values = pa.array(list(_GRADE_TO_CEDS)), pa.array(list(_GRADE_TO_CEDS.values()))
    return pc.take(values, pc.index_in(grades, value_set=keys))


def _latest_enrollment(enr: pa.Table) -> pa.Table:
    """Each student's current school and grade: those of the latest entry."""
    ordered = enr.sort_by([("student_id", "ascending"), ("entry_date", "ascending")])
    return ordered.group_by("student_id", use_threads=False).aggregate(
        [("school_id", "last"), ("grade", "last")]
    )


def _teachers(staff: pa.Table) -> pa.Table:
    """Teachers, one row per (staff_id, school_id), ordered; their user sourcedId added."""
    t = staff.filter(pc.equal(staff.column("role"), "TEACHER"))
    t = t.sort_by([("school_id", "ascending"), ("staff_id", "ascending")])
    return t.append_column("user", _sid("staff", t.column("staff_id")))


def _class_keys(schools: pa.Table, enr: pa.Table) -> pa.Table:
    """(school_id, school_year, grade) of every homeroom: the school's span and enrolled grades."""
    years = pc.unique(enr.column("school_year")).to_pylist()
    rows = set()
    for school, low, high in zip(
        *(schools.column(c).to_pylist() for c in ("school_id", "low_grade", "high_grade")),
        strict=True,
    ):
        if low in _SPAN and high in _SPAN:  # an ungraded (SP) school has only enrolled grades
            span = _SPAN[_SPAN.index(low) : _SPAN.index(high) + 1]
            rows |= {(school, y, g) for y in years for g in span}
    rows |= set(
        zip(
            *(enr.column(c).to_pylist() for c in ("school_id", "school_year", "grade")), strict=True
        )
    )
    school, year, grade = zip(*sorted(rows), strict=True)
    t = pa.table({"school_id": school, "school_year": pa.array(year, pa.int16()), "grade": grade})
    sid = pc.binary_join_element_wise(
        "cls", t.column("school_id"), _text(t.column("school_year")), t.column("grade"), "-"
    )
    course = pc.binary_join_element_wise(
        "crs", _text(t.column("school_year")), t.column("grade"), "-"
    )
    return t.append_column("class", sid).append_column("course", course)


def _orgs(schools: pa.Table) -> Columns:
    n = schools.num_rows
    ext = {
        "metadata.bps.schoolType": schools.column("school_type"),
        "metadata.bps.address": schools.column("address"),
        "metadata.bps.city": schools.column("city"),
        "metadata.bps.zip": schools.column("zip"),
        "metadata.bps.latitude": _text(schools.column("latitude")),
        "metadata.bps.longitude": _text(schools.column("longitude")),
    }
    district: Columns = {
        "sourcedId": [DISTRICT_SOURCED_ID],
        "name": ["Boston Public Schools"],
        "type": ["district"],
        "identifier": [_DISTRICT_CODE],
    }
    schools_cols: Columns = {
        "sourcedId": schools.column("school_id"),
        "name": schools.column("school_name"),
        "type": _const("school", n),
        "identifier": schools.column("dese_code"),
        "parentSourcedId": _const(DISTRICT_SOURCED_ID, n),
        **ext,
    }
    return _stack(district, schools_cols)


def _arr(values: pa.Array | pa.ChunkedArray | list) -> pa.Array:
    if isinstance(values, list):
        return pa.array(values, pa.string())
    out = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return out.cast(pa.string())


def _sessions(years: list[int]) -> Columns:
    rows = []
    for y in years:
        title = f"{y - 1}-{y % 100:02d}"
        rows.append((f"sy-{y}", title, "schoolYear", f"{y - 1}-07-01", f"{y}-06-30", None, y))
        rows.append(
            (f"s1-{y}", f"Fall {title}", "semester", f"{y - 1}-09-01", f"{y}-01-31", f"sy-{y}", y)
        )
        rows.append(
            (f"s2-{y}", f"Spring {title}", "semester", f"{y}-02-01", f"{y}-06-30", f"sy-{y}", y)
        )
    names = ("sourcedId", "title", "type", "startDate", "endDate", "parentSourcedId", "schoolYear")
    return {
        n: [None if v is None else str(v) for v in col]
        for n, col in zip(names, zip(*rows, strict=True), strict=True)
    }


def _courses(classes: pa.Table) -> Columns:
    t = classes.group_by(["course", "school_year", "grade"], use_threads=False).aggregate([])
    t = t.sort_by("course")
    return {
        "sourcedId": t.column("course"),
        "schoolYearSourcedId": pc.binary_join_element_wise(
            "sy", _text(t.column("school_year")), "-"
        ),
        "title": pc.binary_join_element_wise("Homeroom grade", t.column("grade"), " "),
        "courseCode": pc.binary_join_element_wise("HR", t.column("grade"), ""),
        "grades": _ceds(t.column("grade")),
        "orgSourcedId": _const(DISTRICT_SOURCED_ID, t.num_rows),
    }


def _classes(classes: pa.Table) -> Columns:
    year = _text(classes.column("school_year"))
    return {
        "sourcedId": classes.column("class"),
        "title": pc.binary_join_element_wise("Homeroom", classes.column("grade"), " "),
        "grades": _ceds(classes.column("grade")),
        "courseSourcedId": classes.column("course"),
        "classCode": pc.binary_join_element_wise("HR", classes.column("grade"), ""),
        "classType": _const("homeroom", classes.num_rows),
        "schoolSourcedId": classes.column("school_id"),
        "termSourcedIds": pc.binary_join_element_wise(
            pc.binary_join_element_wise("s1", year, "-"),
            pc.binary_join_element_wise("s2", year, "-"),
            ",",
        ),
    }


def _users(students: pa.Table, latest: pa.Table, teachers: pa.Table, version: str) -> Columns:
    s = students.join(latest, keys="student_id").sort_by("student_id")
    n = s.num_rows
    ids = s.column("student_id")
    student: Columns = {
        "sourcedId": _sid("student", ids),
        "enabledUser": _const("true", n),
        "username": pc.binary_join_element_wise("s", ids, ""),
        "userIds": pc.binary_join_element_wise(
            pc.binary_join_element_wise("{LASID", ids, ":"),
            pc.binary_join_element_wise("{State", s.column("sasid"), ":"),
            "},",
        ),
        "givenName": s.column("first_name"),
        "familyName": s.column("last_name"),
        "middleName": s.column("middle_name"),
        "identifier": ids,
        "grades": _ceds(s.column("grade_last")),
        "metadata.bps.homeAddress": s.column("home_address"),
        "metadata.bps.homeCity": s.column("home_city"),
        "metadata.bps.homeZip": s.column("home_zip"),
        "metadata.bps.firstLanguage": s.column("first_language"),
        "metadata.bps.directoryOptOut": _text(s.column("directory_opt_out")),
    }
    # userIds needs its closing brace: "{LASID:1},{State:2}"
    student["userIds"] = pc.binary_join_element_wise(student["userIds"], "}", "")
    staff = (
        teachers.group_by(["staff_id", "user"], use_threads=False)
        .aggregate([("school_id", "list"), ("first_name", "first"), ("last_name", "first")])
        .sort_by("staff_id")
    )
    m = staff.num_rows
    teacher: Columns = {
        "sourcedId": staff.column("user"),
        "enabledUser": _const("true", m),
        "username": pc.binary_join_element_wise("t", staff.column("staff_id"), ""),
        "givenName": staff.column("first_name_first"),
        "familyName": staff.column("last_name_first"),
        "identifier": staff.column("staff_id"),
    }
    schools = pc.binary_join(staff.column("school_id_list"), ",")
    if version == "1.1":
        student |= {"orgSourcedIds": s.column("school_id_last"), "role": _const("student", n)}
        teacher |= {"orgSourcedIds": schools, "role": _const("teacher", m)}
    else:
        student |= {"userMasterIdentifier": ids, "primaryOrgSourcedId": s.column("school_id_last")}
        first_school = pc.list_element(staff.column("school_id_list"), 0)
        teacher |= {"primaryOrgSourcedId": first_school}
    return _stack(student, teacher)


def _stack(*parts: Columns) -> Columns:
    """Concatenate column dicts row-wise; a column missing from a part is null there."""
    names = list(dict.fromkeys(k for p in parts for k in p))
    out = {}
    for name in names:
        arrays = []
        for p in parts:
            rows = len(_arr(next(iter(p.values()))))
            arrays.append(_arr(p[name]) if name in p else pa.nulls(rows, pa.string()))
        out[name] = pa.concat_arrays(arrays)
    return out


def _demographics(students: pa.Table, version: str) -> Columns:
    s = students.sort_by("student_id")
    gender = s.column("gender")
    sex = {"F": "female", "M": "male", "N": "other" if version == "1.2" else None}
    keys = pa.array(list(sex))
    cols: Columns = {
        "sourcedId": _sid("student", s.column("student_id")),
        "birthDate": _text(s.column("birth_date")),
        "sex": pc.take(pa.array(list(sex.values()), pa.string()), pc.index_in(gender, keys)),
    }
    race = s.column("race_ethnicity")
    for flag in sorted({f for flags in _RACE_FLAGS.values() for f in flags}):
        codes = [code for code, flags in _RACE_FLAGS.items() if flag in flags]
        cols[flag] = _text(pc.is_in(race, pa.array(codes)))
    if version == "1.1":  # 1.1 has only male/female: non-binary travels in the extension
        none = pa.scalar(None, pa.string())
        cols["metadata.bps.gender"] = pc.if_else(pc.equal(gender, "N"), gender, none)
    return cols


def _enrollments(enr: pa.Table, classes: pa.Table, teachers: pa.Table) -> Columns:
    e = enr.join(classes, keys=["school_id", "school_year", "grade"]).sort_by(
        [("student_id", "ascending"), ("entry_date", "ascending")]
    )
    n = e.num_rows
    key = pc.binary_join_element_wise(
        e.column("student_id"), e.column("school_id"), _text(e.column("entry_date")), "/"
    )
    student: Columns = {
        "sourcedId": _sid("enrollment", key),
        "classSourcedId": e.column("class"),
        "schoolSourcedId": e.column("school_id"),
        "userSourcedId": _sid("student", e.column("student_id")),
        "role": _const("student", n),
        "primary": _const("false", n),
        "beginDate": _text(e.column("entry_date")),
        "endDate": _text(e.column("exit_date")),
        "metadata.bps.exitCode": e.column("exit_code"),
    }
    # The homeroom teacher: the school's first teacher (by staff ID), if it has any.
    first = teachers.group_by("school_id", use_threads=False).aggregate([("user", "first")])
    c = classes.join(first, keys="school_id", join_type="inner").sort_by("class")
    teacher: Columns = {
        "sourcedId": _sid("enrollment", c.column("class")),
        "classSourcedId": c.column("class"),
        "schoolSourcedId": c.column("school_id"),
        "userSourcedId": c.column("user_first"),
        "role": _const("teacher", c.num_rows),
        "primary": _const("true", c.num_rows),
    }
    return _stack(student, teacher)


def _roles(enr: pa.Table, latest: pa.Table, teachers: pa.Table) -> Columns:
    pairs = enr.group_by(["student_id", "school_id"], use_threads=False).aggregate([])
    pairs = pairs.join(latest, keys="student_id").sort_by(
        [("student_id", "ascending"), ("school_id", "ascending")]
    )
    user = _sid("student", pairs.column("student_id"))
    primary = pc.equal(pairs.column("school_id"), pairs.column("school_id_last"))
    student: Columns = {
        "sourcedId": pc.binary_join_element_wise(user, pairs.column("school_id"), "@"),
        "userSourcedId": user,
        "roleType": pc.if_else(primary, "primary", "secondary"),
        "role": _const("student", pairs.num_rows),
        "orgSourcedId": pairs.column("school_id"),
    }
    t = teachers.sort_by([("staff_id", "ascending"), ("school_id", "ascending")])
    first = pc.not_equal(
        t.column("staff_id"),
        pa.concat_arrays(
            [pa.array([None], pa.string()), t.column("staff_id").combine_chunks()[:-1]]
        ),
    )
    teacher: Columns = {
        "sourcedId": pc.binary_join_element_wise(t.column("user"), t.column("school_id"), "@"),
        "userSourcedId": t.column("user"),
        "roleType": pc.if_else(pc.fill_null(first, True), "primary", "secondary"),
        "role": _const("teacher", t.num_rows),
        "orgSourcedId": t.column("school_id"),
    }
    return _stack(student, teacher)


def _write(out_dir: Path, name: str, cols: Columns, version: str) -> int:
    """Write one file with the spec's columns in order, then its extension columns."""
    header = [*SPEC_COLUMNS[version][name], *(c for c in EXTENSIONS.get(name, {}) if c in cols)]
    rows = len(_arr(next(iter(cols.values()))))
    table = pa.table(
        {c: _arr(cols[c]) if c in cols else pa.nulls(rows, pa.string()) for c in header}
    )
    pacsv.write_csv(table, out_dir / f"{name}.csv", pacsv.WriteOptions(quoting_style="needed"))
    return rows


def _write_manifest(out_dir: Path, version: str, written: set[str]) -> None:
    lines = ["propertyName,value", "manifest.version,1.0", f"oneroster.version,{version}"]
    for name in _FILES[version].split():
        lines.append(f"file.{name},{'bulk' if name in written else 'absent'}")
    lines += [
        "source.systemName,Synthetic Aspen SIS (bps-datashare generator)",
        "source.systemCode,bps-synth",
    ]
    (out_dir / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")
