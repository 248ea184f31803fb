"""Source adapter: a OneRoster 1.1 or 1.2 bulk CSV export (IMS Global / 1EdTech CSV binding).

The export is a directory or a .zip holding `manifest.csv` and one CSV per OneRoster entity. It
maps into three canonical datasets (docs/sources_oneroster.md has the field-by-field tables):

- `orgs.csv` rows of type `school` -> `schools` (grade span from the school's classes);
- student users -> `students`: 1.1 marks them with `users.role`, 1.2 with a `student` row in
  `roles.csv`; each batch of users is joined column-wise with `demographics.csv`;
- `enrollments.csv` rows with role `student` -> `enrollments`: the school year comes from the
  class's first term in `academicSessions.csv`, the grade from the user's `grades`, and class
  enrollments collapse to one spell per (student, school, begin date).

OneRoster has no attendance, programs, assessments, course marks, discipline, staff assignments
or budgets, so `datasets()` lists only the three above. Canonical columns the standard lacks are
read from BPS extension columns (`metadata.bps.*`, the spec's extension mechanism) when present,
else filled with the documented fallbacks.

Reading is strict and streaming (pyarrow's CSV reader; only the needed columns are parsed): the
first malformed value, unknown vocabulary value or broken reference stops the source with a
`SourceError` naming file, line and column, never the value. Empty values become nulls, which
the data contracts (validation) count. Records with status `tobedeleted` (or 1.0's `inactive`)
are left out.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from datashare.errors import SourceError
from datashare.sources.base import ExtractContext, RawFile, fingerprint, sha256_file
from datashare.sources.canonical import model
from datashare.sources.csv_drop import _first_bad, _to_string

__all__ = [
    "CEDS_TO_GRADE",
    "EXTENSIONS",
    "MANIFEST",
    "REQUIRED_FILES",
    "SPEC_COLUMNS",
    "VERSIONS",
    "OneRosterExtract",
    "open_extract",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
VERSIONS = ("1.1", "1.2")
_LINE = "_line"  # physical line of each record, carried through joins for error messages
_BLOCK = 4 << 20

_SHARED = {
    "academicSessions": (
        "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear"
    ),
    "classes": (
        "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,"
        "location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods"
    ),
    "courses": (
        "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,"
        "orgSourcedId,subjects,subjectCodes"
    ),
    "demographics": (
        "sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,"
        "blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,"
        "demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode,"
        "stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus"
    ),
    "enrollments": (
        "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
        "primary,beginDate,endDate"
    ),
    "orgs": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
}
_USERS_11 = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"
)
_USERS_12 = (
    "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,"
    "middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,"
    "resourceSourcedIds,preferredGivenName,preferredMiddleName,preferredFamilyName,"
    "primaryOrgSourcedId,pronouns"
)
_ROLES_12 = (
    "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,"
    "orgSourcedId,userProfileSourcedId"
)

#: The CSV binding's columns, in spec order, per version and file (the writer emits these).
SPEC_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "1.1": {k: tuple(v.split(",")) for k, v in {**_SHARED, "users": _USERS_11}.items()},
    "1.2": {
        k: tuple(v.split(","))
        for k, v in {**_SHARED, "users": _USERS_12, "roles": _ROLES_12}.items()
    },
}

#: Files the adapter reads; the manifest must declare each of them `bulk`.
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "1.1": ("orgs", "users", "demographics", "enrollments", "classes", "academicSessions"),
    "1.2": ("orgs", "users", "roles", "demographics", "enrollments", "classes", "academicSessions"),
}

_RACE_FLAGS = (
    "americanIndianOrAlaskaNative",
    "asian",
    "blackOrAfricanAmerican",
    "nativeHawaiianOrOtherPacificIslander",
    "white",
)
_RACE_CODES = ("NA", "AS", "AA", "PI", "WH")  # canonical code of each flag above

#: Columns the adapter reads, per file; a header lacking one stops the source.
_NEEDS: dict[str, tuple[str, ...]] = {
    "orgs": ("sourcedId", "status", "name", "type", "identifier"),
    "users": (
        "sourcedId",
        "status",
        "userIds",
        "givenName",
        "familyName",
        "middleName",
        "identifier",
        "grades",
    ),
    "roles": ("status", "userSourcedId", "role"),
    "demographics": (
        "sourcedId",
        "status",
        "birthDate",
        "sex",
        *_RACE_FLAGS,
        "demographicRaceTwoOrMoreRaces",
        "hispanicOrLatinoEthnicity",
    ),
    "enrollments": (
        "status",
        "classSourcedId",
        "schoolSourcedId",
        "userSourcedId",
        "role",
        "beginDate",
        "endDate",
    ),
    "classes": ("sourcedId", "status", "grades", "schoolSourcedId", "termSourcedIds"),
    "academicSessions": ("sourcedId", "status", "startDate", "schoolYear"),
}
_NEEDS_BY_VERSION = {
    "1.1": {**_NEEDS, "users": (*_NEEDS["users"], "role")},
    "1.2": {**_NEEDS, "users": (*_NEEDS["users"], "userMasterIdentifier")},
}

#: BPS extension columns (`metadata.bps.*`) read when present: file -> column -> canonical column.
EXTENSIONS: dict[str, dict[str, str]] = {
    "orgs": {
        "metadata.bps.schoolType": "school_type",
        "metadata.bps.address": "address",
        "metadata.bps.city": "city",
        "metadata.bps.zip": "zip",
        "metadata.bps.latitude": "latitude",
        "metadata.bps.longitude": "longitude",
    },
    "users": {
        "metadata.bps.homeAddress": "home_address",
        "metadata.bps.homeCity": "home_city",
        "metadata.bps.homeZip": "home_zip",
        "metadata.bps.firstLanguage": "first_language",
        "metadata.bps.directoryOptOut": "directory_opt_out",
    },
    # DESE's N (non-binary) has no OneRoster 1.1 sex value: a 1.1 export carries it here.
    "demographics": {"metadata.bps.gender": "gender"},
    "enrollments": {"metadata.bps.exitCode": "exit_code"},
}

_EXT_DATASET = {
    "orgs": "schools",
    "users": "students",
    "demographics": "students",
    "enrollments": "enrollments",
}

_ORG_TYPES = ("department", "district", "local", "national", "school", "state")
_ENROLLMENT_ROLES = ("administrator", "proctor", "student", "teacher")
_USER_ROLES = {
    "1.1": [
        "administrator",
        "aide",
        "guardian",
        "parent",
        "proctor",
        "relative",
        "student",
        "teacher",
    ],
    "1.2": [
        "aide",
        "counselor",
        "districtAdministrator",
        "guardian",
        "parent",
        "principal",
        "proctor",
        "relative",
        "siteAdministrator",
        "student",
        "systemAdministrator",
        "teacher",
    ],
}
_SEX_TO_GENDER = {"female": "F", "male": "M", "other": "N"}

#: OneRoster grades are CEDS entry-grade codes; canonical grades are BPS/DESE codes.
CEDS_TO_GRADE: dict[str, str] = {
    "IT": "PK",
    "PR": "PK",
    "PK": "PK",
    "TK": "K",
    "KG": "K",
    **{f"{g:02d}": f"{g:02d}" for g in range(1, 13)},
    "13": "SP",
    "PS": "SP",
    "UG": "SP",
}
_CEDS_KEYS = pa.array(list(CEDS_TO_GRADE))
_CEDS_VALUES = pa.array(list(CEDS_TO_GRADE.values()))
_SPAN_GRADES = [g for g in model().code_sets["grade"] if g != "SP"]  # SP is outside any span

# A userIds entry is `{type:identifier}`; the state ID is the entry typed State/StateID/SASID.
_STATE_ID = r"\{(?i:state[ _]?(?:id)?|sasid):(?P<id>[^}]*)\}"

# Without opt-out information every student counts as opted out: tier 3 then releases nothing.
_OPT_OUT_DEFAULT = True


@dataclass(frozen=True)
class Manifest:
    """The parsed `manifest.csv`: OneRoster version and each file's processing mode."""

    version: str
    modes: dict[str, str]  # file name without .csv -> bulk | delta | absent


class _Container:
    """The export's files, from a directory or a .zip (read in place, never extracted)."""

    def __init__(self, location: Path) -> None:
        self.location = location
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        if location.is_dir():
            return
        if location.is_file() and zipfile.is_zipfile(location):
            self._zip = zipfile.ZipFile(location)
            self._prefix = self._find_prefix(self._zip)
            return
        raise SourceError(
            "OneRoster export not found: expected a directory or a .zip", file=str(location)
        )

    @staticmethod
    def _find_prefix(zf: zipfile.ZipFile) -> str:
        """'' if manifest.csv is at the root, else the one folder holding it (zipped folder)."""
        names = zf.namelist()
        if MANIFEST in names:
            return ""
        found = [n[: -len(MANIFEST)] for n in names if n.endswith("/" + MANIFEST)]
        return found[0] if len(found) == 1 else ""

    def exists(self, name: str) -> bool:
        if self._zip is None:
            return (self.location / name).is_file()
        try:
            self._zip.getinfo(self._prefix + name)
        except KeyError:
            return False
        return True

    def open(self, name: str) -> IO[bytes]:
        if self._zip is None:
            return open(self.location / name, "rb")
        return self._zip.open(self._prefix + name)

    def label(self, name: str) -> str:
        """How errors name a file: its path, or `<zip>!/<member>` inside an archive."""
        if self._zip is None:
            return str(self.location / name)
        return f"{self.location}!/{self._prefix}{name}"

    def raw_files(self, names: list[str]) -> list[RawFile]:
        if self._zip is not None:  # keep the archive itself, byte for byte
            p = self.location
            return [RawFile(p.name, sha256_file(p), p.stat().st_size, path=p)]
        out = []
        for name in names:
            p = self.location / name
            out.append(RawFile(name, sha256_file(p), p.stat().st_size, path=p))
        return out


def _read_manifest(box: _Container) -> Manifest:
    label = box.label(MANIFEST)
    if not box.exists(MANIFEST):
        raise SourceError("the OneRoster export has no manifest.csv", file=label)
    with box.open(MANIFEST) as fh:
        try:
            text = fh.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SourceError("manifest is not valid UTF-8", file=label) from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0]] != ["propertyName", "value"]:
        raise SourceError("manifest header must be propertyName,value", file=label, line=1)
    props: dict[str, tuple[str, int]] = {}
    for i, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise SourceError(f"expected 2 fields, found {len(row)}", file=label, line=i)
        props[row[0].strip()] = (row[1].strip(), i)
    version, vline = props.get("oneroster.version", ("", None))
    if version not in VERSIONS:
        raise SourceError(
            f"oneroster.version must be one of {', '.join(VERSIONS)}",
            file=label,
            line=vline,
            column="value",
        )
    modes = {}
    for key, (value, line) in props.items():
        if key.startswith("file."):
            if value not in ("bulk", "delta", "absent"):
                raise SourceError(
                    f"{key} must be bulk, delta or absent", file=label, line=line, column="value"
                )
            modes[key[len("file.") :]] = value
    for name in REQUIRED_FILES[version]:
        mode = modes.get(name, "absent")
        line = props.get(f"file.{name}", ("", None))[1]
        if mode == "absent":
            raise SourceError(
                f"{name}.csv is required but the manifest declares it absent",
                file=label,
                line=line,
            )
        if mode == "delta":
            raise SourceError(
                f"{name}.csv is a delta file; the adapter stages full snapshots and needs a "
                "bulk export",
                file=label,
                line=line,
            )
        if not box.exists(f"{name}.csv"):
            raise SourceError(
                "required file is missing (the manifest declares it bulk)",
                file=box.label(f"{name}.csv"),
            )
    return Manifest(version, modes)


def _first_false(mask: pa.Array | pa.ChunkedArray) -> int | None:
    """Index of the first false (or null) element, or None if all are true."""
    mask = pc.fill_null(mask, False)
    if len(mask) == 0 or pc.all(mask).as_py():
        return None
    return pc.index(mask, False).as_py()


def _as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


class OneRosterExtract:
    """The `Extract` of one OneRoster bulk export (directory or .zip)."""

    format = "oneroster"

    def __init__(self, location: Path) -> None:
        self.box = _Container(location)
        self.manifest = _read_manifest(self.box)
        self.version = self.manifest.version
        self._headers: dict[str, list[str]] = {}
        for name in REQUIRED_FILES[self.version]:
            self._header(name)  # fail fast: every needed column present before any parsing

    # -- the Extract protocol ----------------------------------------------------------------

    def datasets(self) -> list[str]:
        return ["enrollments", "schools", "students"]

    def batches(self, dataset: str) -> Iterator[pa.RecordBatch]:
        if dataset == "schools":
            yield from self._schools().to_batches()
        elif dataset == "students":
            yield from self._students()
        elif dataset == "enrollments":
            yield from self._enrollments().to_batches(max_chunksize=1 << 16)
        else:
            raise SourceError("OneRoster exports do not provide this dataset", dataset=dataset)

    def expected_rows(self, dataset: str) -> int | None:
        return None  # the OneRoster manifest declares no row counts

    def raw_files(self) -> list[RawFile]:
        return self._raw

    def fingerprint(self) -> str:
        return fingerprint({f.name: f.sha256 for f in self._raw})

    @property
    def state(self) -> dict:
        return {}

    @cached_property
    def _raw(self) -> list[RawFile]:
        names = [MANIFEST]
        names += [
            f"{n}.csv"
            for n, mode in sorted(self.manifest.modes.items())
            if mode != "absent" and self.box.exists(f"{n}.csv")
        ]
        return self.box.raw_files(names)

    # -- reading -----------------------------------------------------------------------------

    def _label(self, name: str) -> str:
        return self.box.label(f"{name}.csv")

    def _header(self, name: str) -> list[str]:
        if name in self._headers:
            return self._headers[name]
        label = self._label(name)
        with self.box.open(f"{name}.csv") as fh:
            first = fh.readline(1 << 16)
        if not first.strip():
            raise SourceError("file is empty (no header)", file=label, line=1)
        try:
            text = first.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SourceError("header is not valid UTF-8", file=label, line=1) from None
        names = [n.strip() for n in next(csv.reader([text]))]
        if len(set(names)) != len(names):
            raise SourceError("a column name appears twice in the header", file=label, line=1)
        missing = [c for c in _NEEDS_BY_VERSION[self.version][name] if c not in names]
        if missing:
            hint = ""
            if name == "users" and self.version == "1.2" and "role" in names:
                hint = "; the file looks like OneRoster 1.1 (it has a role column)"
            raise SourceError(
                f"missing column(s) {', '.join(missing)} of OneRoster {self.version}{hint}",
                file=label,
                line=1,
                column=missing[0],
            )
        self._headers[name] = names
        return names

    def _columns(self, name: str) -> list[str]:
        """The columns of `name` the adapter reads: those it needs, and extensions present."""
        present = self._header(name)
        wanted = [*_NEEDS_BY_VERSION[self.version][name], *EXTENSIONS.get(name, {})]
        return [c for c in dict.fromkeys(wanted) if c in present]

    def _batches(self, name: str, columns: list[str]) -> Iterator[pa.Table]:
        """String tables of `columns` plus the line of each record, one per CSV block."""
        label = self._label(name)
        bad: list[pacsv.InvalidRow] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            bad.append(row)
            return "skip"

        with self.box.open(f"{name}.csv") as fh:
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(block_size=_BLOCK, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(
                    include_columns=columns,
                    column_types={c: pa.binary() for c in columns},
                    null_values=[""],
                    strings_can_be_null=True,
                ),
            )
            record = 1  # the header is line 1; record n is line n + 1
            try:
                for batch in reader:
                    if bad:
                        break
                    yield self._text_table(batch, columns, label, record)
                    record += batch.num_rows
            except pa.ArrowInvalid as exc:
                msg = str(exc).split(":", 1)[0]  # never echo row content
                raise SourceError(f"unreadable CSV ({msg})", file=label, line=record) from None
        if bad:
            row = bad[0]
            raise SourceError(
                f"malformed row: expected {row.expected_columns} fields, "
                f"found {row.actual_columns}",
                file=label,
                line=row.number,
            )

    @staticmethod
    def _text_table(batch: pa.RecordBatch, columns: list[str], label: str, first: int) -> pa.Table:
        arrays = []
        for col in columns:
            raw = batch.column(col)
            try:
                arrays.append(_to_string(raw))
            except pa.ArrowInvalid:
                i = _first_bad(raw, _to_string)
                raise SourceError(
                    "value is not valid UTF-8", file=label, line=first + i + 1, column=col
                ) from None
        lines = pa.array(range(first + 1, first + 1 + batch.num_rows), pa.int64())
        return pa.Table.from_arrays([*arrays, lines], names=[*columns, _LINE])

    def _read_all(self, name: str, columns: list[str]) -> pa.Table:
        parts = list(self._batches(name, columns))
        if not parts:
            return pa.table({**{c: pa.array([], pa.string()) for c in columns}, _LINE: []})
        return pa.concat_tables(parts)

    # -- checks and conversions (each error names file, line and column) --------------------

    def _fail(
        self, name: str, t: pa.Table, i: int, column: str, problem: str, line_col: str = _LINE
    ) -> SourceError:
        """The error for row `i` of `t`, located by its line (column `line_col`) in `name`."""
        line = t.column(line_col)[i].as_py()
        return SourceError(problem, file=self._label(name), line=line, column=column)

    def _active(self, name: str, t: pa.Table) -> pa.Table:
        """Drop records the source marks deleted; refuse unknown status values."""
        status = t.column("status")
        known = pc.or_kleene(
            pc.is_null(status), pc.is_in(status, pa.array(["active", "tobedeleted", "inactive"]))
        )
        if (i := _first_false(known)) is not None:
            raise self._fail(name, t, i, "status", "status must be active, tobedeleted or empty")
        return t.filter(pc.fill_null(pc.equal(status, "active"), True))

    def _enum(self, name: str, t: pa.Table, column: str, allowed: Sequence[str]) -> None:
        """Values must be in the spec's vocabulary or an `ext:` extension."""
        v = t.column(column)
        ok = pc.or_(pc.is_in(v, pa.array(allowed)), pc.starts_with(v, "ext:"))
        if (i := _first_false(ok)) is not None:
            raise self._fail(
                name,
                t,
                i,
                column,
                f"empty or unknown {column} (OneRoster {self.version} allows "
                f"{', '.join(allowed)} or ext:*)",
            )

    def _required(self, name: str, t: pa.Table, columns: tuple[str, ...]) -> None:
        for col in columns:
            if (i := _first_false(pc.is_valid(t.column(col)))) is not None:
                raise self._fail(name, t, i, col, "required value is empty")

    def _unique(self, name: str, t: pa.Table, column: str) -> None:
        counts = t.group_by(column).aggregate([(_LINE, "max"), ([], "count_all")])
        dup = counts.filter(pc.greater(counts.column("count_all"), 1))
        if dup.num_rows:
            line = pc.min(dup.column(f"{_LINE}_max")).as_py()
            raise SourceError(
                f"{column} appears more than once", file=self._label(name), line=line, column=column
            )

    def _cast(self, name: str, t: pa.Table, column: str, to: pa.DataType, what: str) -> pa.Array:
        values = _as_array(t.column(column))
        if pa.types.is_boolean(to):
            values = pc.utf8_lower(values)
        try:
            return values.cast(to)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            i = _first_bad(values, lambda a: a.cast(to))
            # Arrow's message quotes the value: never chain it into tracebacks and logs.
            raise self._fail(name, t, i, column, f"value is not a valid {what}") from None

    def _grades(self, name: str, t: pa.Table, lists: pa.Array, parents: pa.Array) -> pa.Array:
        """Canonical grades of CEDS codes `lists` (flattened; `parents` index rows of `t`)."""
        codes = pc.utf8_trim_whitespace(lists)
        idx = pc.index_in(codes, value_set=_CEDS_KEYS)
        known = pc.or_(pc.is_valid(idx), pc.is_null(codes))
        if (i := _first_false(known)) is not None:
            row = pc.take(parents, [i])[0].as_py()
            raise self._fail(
                name, t, row, "grades", "not a CEDS grade code (IT, PR, PK, TK, KG, 01-13, PS, UG)"
            )
        return pc.take(_CEDS_VALUES, idx)

    # -- schools -------------------------------------------------------------------------------

    @cached_property
    def _orgs(self) -> pa.Table:
        t = self._active("orgs", self._read_all("orgs", self._columns("orgs")))
        self._enum("orgs", t, "type", _ORG_TYPES)
        return t

    @cached_property
    def _classes(self) -> pa.Table:
        t = self._read_all("classes", self._columns("classes"))
        t = self._active("classes", t)
        self._unique("classes", t, "sourcedId")
        return t

    def _grade_spans(self) -> pa.Table:
        """Per school (schoolSourcedId): lowest and highest grade rank over its classes."""
        c = self._classes
        lists = pc.split_pattern(c.column("grades").combine_chunks(), ",")
        flat, parents = pc.list_flatten(lists), pc.list_parent_indices(lists)
        grades = self._grades("classes", c, flat, parents)
        rank = pc.index_in(grades, value_set=pa.array(_SPAN_GRADES))  # SP -> null, ignored
        t = pa.table({"school": pc.take(c.column("schoolSourcedId"), parents), "rank": rank})
        t = t.filter(pc.is_valid(t.column("rank")))
        return t.group_by("school").aggregate([("rank", "min"), ("rank", "max")])

    def _schools(self) -> pa.Table:
        orgs = self._orgs
        t = orgs.filter(pc.equal(orgs.column("type"), "school"))
        self._required("orgs", t, ("sourcedId",))
        self._unique("orgs", t, "sourcedId")
        # A school without graded classes gets no span (null: the contracts report it).
        t = t.join(self._grade_spans(), keys="sourcedId", right_keys="school").sort_by(_LINE)
        span = pa.array(_SPAN_GRADES)
        low, high = pc.take(span, t.column("rank_min")), pc.take(span, t.column("rank_max"))
        ext = self._ext("orgs", t)
        derived = pc.if_else(
            pc.is_valid(t.column("rank_min")),
            _school_type(t.column("rank_min"), t.column("rank_max")),
            pa.scalar(None, pa.string()),
        )
        n = t.num_rows
        cols = {
            "school_id": t.column("sourcedId"),
            "dese_code": t.column("identifier"),
            "school_name": t.column("name"),
            "school_type": pc.coalesce(ext.get("school_type", pa.nulls(n, pa.string())), derived),
            "low_grade": low,
            "high_grade": high,
            "address": ext.get("address", pa.nulls(n, pa.string())),
            "city": ext.get("city", pa.nulls(n, pa.string())),
            "zip": ext.get("zip", pa.nulls(n, pa.string())),
            "latitude": ext.get("latitude", pa.nulls(n, pa.float64())),
            "longitude": ext.get("longitude", pa.nulls(n, pa.float64())),
        }
        return _canonical("schools", cols)

    def _ext(self, name: str, t: pa.Table) -> dict[str, pa.Array]:
        """Canonical columns carried by the file's BPS extension columns, typed."""
        out = {}
        for col, canon in EXTENSIONS.get(name, {}).items():
            if col not in t.column_names:
                continue
            target = model()[_EXT_DATASET[name]].column(canon)
            if target.arrow_type == pa.string():
                out[canon] = _as_array(t.column(col))
            else:
                out[canon] = self._cast(name, t, col, target.arrow_type, target.type_name)
        return out

    # -- students ------------------------------------------------------------------------------

    @cached_property
    def _student_roles(self) -> pa.Array | None:
        """1.2: sourcedIds of users holding a student role (1.1 marks roles in users.csv)."""
        if self.version == "1.1":
            return None
        t = self._active("roles", self._read_all("roles", self._columns("roles")))
        self._enum("roles", t, "role", _USER_ROLES["1.2"])
        self._required("roles", t, ("userSourcedId",))
        students = t.filter(pc.equal(t.column("role"), "student"))
        return pc.unique(students.column("userSourcedId").combine_chunks())

    def _student_users(self) -> Iterator[pa.Table]:
        """Active student users, batch by batch, with their canonical student_id added."""
        for t in self._batches("users", self._columns("users")):
            t = self._active("users", t)
            if self.version == "1.1":
                self._enum("users", t, "role", _USER_ROLES["1.1"])
                t = t.filter(pc.equal(t.column("role"), "student"))
            else:
                # Hash this batch's ids and probe the (district-sized) role list with them,
                # rather than re-hashing every student role once per batch (8 s at 10x BPS).
                ids = t.column("sourcedId").combine_chunks()
                mine = pc.filter(self._student_roles, pc.is_in(self._student_roles, ids))
                t = t.filter(pc.is_in(ids, mine))
            if t.num_rows:
                self._required("users", t, ("sourcedId",))
                yield t.append_column("student_id", self._student_id(t))

    def _student_id(self, t: pa.Table) -> pa.ChunkedArray:
        # The SIS's local ID (BPS: LASID) is `identifier`; 1.2's master ID and the sourcedId
        # (an opaque interoperability key) only stand in when it is empty.
        ids = [t.column("identifier")]
        if "userMasterIdentifier" in t.column_names:
            ids.append(t.column("userMasterIdentifier"))
        return pc.coalesce(*ids, t.column("sourcedId"))

    @cached_property
    def _demographics(self) -> pa.Table:
        t = self._active(
            "demographics", self._read_all("demographics", self._columns("demographics"))
        )
        self._required("demographics", t, ("sourcedId",))
        self._unique("demographics", t, "sourcedId")
        birth = self._cast("demographics", t, "birthDate", pa.date32(), "date (YYYY-MM-DD)")
        sex = _as_array(t.column("sex"))
        mapped = pc.take(
            pa.array(list(_SEX_TO_GENDER.values())),
            pc.index_in(sex, pa.array(list(_SEX_TO_GENDER))),
        )
        # A value with no canonical code (`unspecified`, `ext:...`) passes through unchanged, so
        # the gender code-set contract counts it rather than the parser hiding it as empty.
        gender = pc.coalesce(mapped, sex)
        ext = self._ext("demographics", t)
        if "gender" in ext:
            gender = pc.coalesce(ext["gender"], gender)
        flags = {
            c: pc.fill_null(
                self._cast("demographics", t, c, pa.bool_(), "boolean (true/false)"), False
            )
            for c in (*_RACE_FLAGS, "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity")
        }
        return pa.table(
            {
                "d_id": t.column("sourcedId"),
                "birth_date": birth,
                "gender": gender,
                "race_ethnicity": _race(flags),
                "d_line": t.column(_LINE),
            }
        )

    def _students(self) -> Iterator[pa.RecordBatch]:
        fallback = no_demographics = 0
        for t in self._student_users():
            t = t.join(self._demographics, keys="sourcedId", right_keys="d_id").sort_by(_LINE)
            no_demographics += t.column("d_line").null_count
            sasid = _state_id(t.column("userIds"))
            fallback += sasid.null_count
            ext = self._ext("users", t)
            n = t.num_rows
            absent = pa.nulls(n, pa.string())  # left to the data contracts' required rule
            cols = {
                "student_id": t.column("student_id"),
                "sasid": pc.coalesce(sasid, t.column("student_id")),
                "first_name": t.column("givenName"),
                "middle_name": t.column("middleName"),
                "last_name": t.column("familyName"),
                "birth_date": t.column("birth_date"),
                "gender": t.column("gender"),
                "race_ethnicity": t.column("race_ethnicity"),
                **{
                    c: ext.get(c, absent)
                    for c in ("home_address", "home_city", "home_zip", "first_language")
                },
                "directory_opt_out": pc.fill_null(
                    ext.get("directory_opt_out", pa.nulls(n, pa.bool_())), _OPT_OUT_DEFAULT
                ),
            }
            yield from _canonical("students", cols).to_batches()
        if fallback:
            log.warning(
                "oneroster: %d student(s) have no state-typed userIds entry; sasid "
                "falls back to the local student ID",
                fallback,
            )
        if no_demographics:  # the contracts will count null birth dates; say why
            log.warning("oneroster: %d student(s) have no demographics record", no_demographics)

    # -- enrollments ---------------------------------------------------------------------------

    def _student_map(self) -> pa.Table:
        """u_id (user sourcedId) -> student_id, canonical grade (first of `grades`), u_line."""
        parts = []
        for t in self._student_users():
            lists = pc.split_pattern(t.column("grades").combine_chunks(), ",")
            first = pc.list_element(lists, 0)  # a student's grade: the first one listed
            grade = self._grades("users", t, first, pa.array(range(t.num_rows)))
            parts.append(
                pa.table(
                    {
                        "u_id": t.column("sourcedId"),
                        "student_id": t.column("student_id"),
                        "grade": grade,
                        "u_line": t.column(_LINE),
                    }
                )
            )
        schema = pa.schema(
            [
                ("u_id", pa.string()),
                ("student_id", pa.string()),
                ("grade", pa.string()),
                ("u_line", pa.int64()),
            ]
        )
        users = pa.concat_tables(parts) if parts else schema.empty_table()
        if users.num_rows:
            self._unique("users", users.rename_columns(["sourcedId", "s", "g", _LINE]), "sourcedId")
        return users

    def _class_years(self) -> pa.Table:
        """c_id (class sourcedId) -> school_year and first day of its first term."""
        s = self._read_all("academicSessions", self._columns("academicSessions"))
        s = self._active("academicSessions", s)
        self._required("academicSessions", s, ("sourcedId",))
        self._unique("academicSessions", s, "sourcedId")
        sessions = pa.table(
            {
                "s_id": s.column("sourcedId"),
                "school_year": self._cast(
                    "academicSessions", s, "schoolYear", pa.int16(), "year (YYYY)"
                ),
                "term_start": self._cast(
                    "academicSessions", s, "startDate", pa.date32(), "date (YYYY-MM-DD)"
                ),
                "s_found": pa.array([True] * s.num_rows, pa.bool_()),
            }
        )
        c = self._classes
        self._required("classes", c, ("sourcedId",))
        terms = pc.split_pattern(c.column("termSourcedIds").combine_chunks(), ",")
        first = pc.utf8_trim_whitespace(pc.list_element(terms, 0))
        t = pa.table({"c_id": c.column("sourcedId"), "term": first, _LINE: c.column(_LINE)})
        t = t.join(sessions, keys="term", right_keys="s_id").sort_by(_LINE)
        dangling = pc.and_(pc.is_valid(t.column("term")), pc.is_null(t.column("s_found")))
        if (i := _first_false(pc.invert(dangling))) is not None:
            raise self._fail(
                "classes", t, i, "termSourcedIds", "first term is not in academicSessions.csv"
            )
        found = pa.array([True] * t.num_rows, pa.bool_())
        return t.select(["c_id", "school_year", "term_start"]).append_column("c_found", found)

    def _enrollments(self) -> pa.Table:
        e = self._active("enrollments", self._read_all("enrollments", self._columns("enrollments")))
        self._enum("enrollments", e, "role", _ENROLLMENT_ROLES)
        e = e.filter(pc.equal(e.column("role"), "student"))
        self._required("enrollments", e, ("classSourcedId", "schoolSourcedId", "userSourcedId"))
        begin = self._cast("enrollments", e, "beginDate", pa.date32(), "date (YYYY-MM-DD)")
        end = self._cast("enrollments", e, "endDate", pa.date32(), "date (YYYY-MM-DD)")
        ext = self._ext("enrollments", e)
        e = pa.table(
            {
                "user": e.column("userSourcedId"),
                "class": e.column("classSourcedId"),
                "school_id": e.column("schoolSourcedId"),
                "begin": begin,
                "exit_date": end,
                "exit_code": ext.get("exit_code", pa.nulls(e.num_rows, pa.string())),
                _LINE: e.column(_LINE),
            }
        )
        e = e.join(self._student_map(), keys="user", right_keys="u_id")
        e = e.join(self._class_years(), keys="class", right_keys="c_id").sort_by(_LINE)
        self._check_references(e)
        e = e.append_column("entry_date", pc.coalesce(e.column("begin"), e.column("term_start")))
        return _spells(e)

    def _check_references(self, e: pa.Table) -> None:
        schools = self._orgs.filter(pc.equal(self._orgs.column("type"), "school"))
        for ok, column, problem in (
            (
                pc.is_valid(e.column("student_id")),
                "userSourcedId",
                "refers to no active student in users.csv",
            ),
            (
                pc.is_valid(e.column("c_found")),
                "classSourcedId",
                "refers to no active class in classes.csv",
            ),
            (
                pc.is_in(e.column("school_id"), schools.column("sourcedId").combine_chunks()),
                "schoolSourcedId",
                "refers to no active school in orgs.csv",
            ),
        ):
            if (i := _first_false(ok)) is not None:
                raise self._fail("enrollments", e, i, column, problem)


def _spells(e: pa.Table) -> pa.Table:
    """Class enrollments -> one canonical spell per (student, school, entry date).

    A spell is open (no exit date) if any of its class enrollments is open; otherwise it ends
    with the latest class end date.
    """
    key = list(model()["enrollments"].key)
    g = e.group_by(key, use_threads=False).aggregate(
        [
            ("school_year", "max"),
            ("grade", "max"),
            ("exit_date", "max"),
            ("exit_date", "count"),
            ([], "count_all"),
            ("exit_code", "max"),
        ]
    )
    closed = pc.equal(g.column("exit_date_count"), g.column("count_all"))
    cols = {
        "student_id": g.column("student_id"),
        "school_id": g.column("school_id"),
        "school_year": g.column("school_year_max"),
        "grade": g.column("grade_max"),
        "entry_date": g.column("entry_date"),
        "exit_date": pc.if_else(closed, g.column("exit_date_max"), pa.scalar(None, pa.date32())),
        "exit_code": g.column("exit_code_max"),
    }
    return _canonical("enrollments", cols).sort_by([(k, "ascending") for k in key])


def _canonical(dataset: str, columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    schema = model()[dataset].schema
    arrays = [_as_array(columns[f.name]).cast(f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _state_id(user_ids: pa.ChunkedArray) -> pa.Array:
    """The identifier of the state-typed `{type:id}` entry of each userIds list, else null."""
    m = pc.extract_regex(_as_array(user_ids), _STATE_ID)
    ids = pc.utf8_trim_whitespace(pc.struct_field(m, "id"))
    found = pc.and_(pc.is_valid(m), pc.not_equal(ids, ""))
    return pc.if_else(found, ids, pa.scalar(None, pa.string()))


def _race(flags: dict[str, pa.Array]) -> pa.Array:
    """DESE's single race/ethnicity code: Hispanic first, then multi-race, then the one race."""
    races = [flags[c] for c in _RACE_FLAGS]
    count = races[0].cast(pa.int8())
    for r in races[1:]:
        count = pc.add(count, r.cast(pa.int8()))
    multi = pc.or_(flags["demographicRaceTwoOrMoreRaces"], pc.greater(count, 1))
    conds = pc.make_struct(
        flags["hispanicOrLatinoEthnicity"], multi, *races, field_names=[str(i) for i in range(7)]
    )
    return pc.case_when(conds, "HL", "MR", *_RACE_CODES)


def _school_type(low: pa.ChunkedArray, high: pa.ChunkedArray) -> pa.Array:
    """A school type from the grade span, when the export carries no metadata.bps.schoolType."""
    r = {g: i for i, g in enumerate(_SPAN_GRADES)}
    low, high = _as_array(low), _as_array(high)
    early = pc.less_equal(low, r["K"])
    middle = pc.and_(pc.greater_equal(low, r["05"]), pc.less_equal(low, r["07"]))
    rules = [
        ("ELC", pc.and_(early, pc.less_equal(high, r["01"]))),
        ("ES", pc.and_(early, pc.less_equal(high, r["06"]))),
        ("K-8", pc.and_(early, pc.equal(high, r["08"]))),
        ("K-12", pc.and_(early, pc.equal(high, r["12"]))),
        ("MS", pc.and_(middle, pc.equal(high, r["08"]))),
        ("6/7-12", pc.and_(middle, pc.equal(high, r["12"]))),
        ("HS", pc.and_(pc.greater_equal(low, r["08"]), pc.equal(high, r["12"]))),
    ]
    conds = pc.make_struct(*[c for _, c in rules], field_names=[n for n, _ in rules])
    return pc.coalesce(pc.case_when(conds, *[n for n, _ in rules]), pa.scalar("Special"))


def open_extract(location: str, ctx: ExtractContext | None = None) -> OneRosterExtract:
    """Open a OneRoster bulk export (directory or .zip): checks the manifest and headers."""
    return OneRosterExtract(Path(location))
