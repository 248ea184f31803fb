"""Source adapter: Ed-Fi Data Standard 4.x/5.x interchange XML (`source_format: edfi_xml`).

The location is a directory of Ed-Fi bulk interchange files (`Student.xml`, `StudentProgram.xml`,
`StudentSchoolAttendance.xml`, `EducationOrganization.xml`, `StudentAssessment-*.xml`, ...). Each
`*.xml` file is recognised by its root element (`InterchangeStudent`, ...), not by its name; every
one is kept unchanged as a raw file. The full mapping is in docs/sources_edfi.md; in short:

- Parsing streams (`ElementTree.iterparse`, each top-level record cleared once mapped); rows are
  gathered per column and turned into Arrow batches of `BATCH_ROWS`. Small reference data
  (staff, budgets, discipline, enrollment spells, calendars, student demographics) is held in
  memory to join; attendance keeps four compact columns to collapse same-day events.
- Descriptors are read by code value (`uri://ed-fi.org/SexDescriptor#Female` and `Female` are the
  same) and mapped to canonical codes; an unknown one stops the source with an error naming file,
  record (the n-th element of its type), element and descriptor. Optional columns fall back as
  documented instead (e.g. an unknown exit type becomes `O`).
- A dataset is listed in `datasets()` only if the files hold the elements that drive it. In DS 4/5
  a student's sex, race, address and languages live on StudentEducationOrganizationAssociation
  (the StudentEnrollment interchange), so `students` needs that interchange; `budgets` needs
  LocalBudget amounts.
- Attendance: Ed-Fi records events (usually exceptions: absences, tardies). When enrollment spells
  (StudentSchoolAssociation) and an instructional calendar (CalendarDate) are both present, the
  adapter expands them to one row per student per enrolled school day (present unless an event
  says otherwise); otherwise it emits only the event days and logs a warning, because day counts
  and attendance rates derived from such a table are not meaningful.
- Assessments: only results on the MCAS scale (a "Scale score" of 440-560) in ELA or mathematics
  become rows; other assessments are skipped and counted in a warning.

Errors are `SourceError`s naming file, record or line, element and column, never a value read from
a record (descriptor code values are not student-level data and are named).
"""

from __future__ import annotations

import logging
import mmap
import re
import xml.etree.ElementTree as ET
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple
from xml.parsers.expat import ErrorString

import numpy as np
import pyarrow as pa

from datashare.errors import SourceError
from datashare.sources.base import ExtractContext, RawFile, fingerprint, sha256_file
from datashare.sources.canonical import Column, model

__all__ = ["BATCH_ROWS", "EdfiExtract", "open_extract"]

log = logging.getLogger(__name__)

#: Rows per emitted Arrow batch.
BATCH_ROWS = 50_000

Element = ET.Element
Row = tuple[Any, ...]

# --------------------------------------------------------------------------------------------
# Descriptor mappings (keys are code values, compared case- and whitespace-insensitively)
# --------------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _code(text: str) -> str:
    """Code value of a descriptor: `uri://ed-fi.org/SexDescriptor#Female` or `Female` -> Female."""
    return text.rpartition("#")[2].strip()


def _table(pairs: dict[str, str | None]) -> dict[str, str | None]:
    return {_norm(k): v for k, v in pairs.items()}


_ORDINALS = "First Second Third Fourth Fifth Sixth Seventh Eighth Ninth Tenth Eleventh Twelfth"
GRADE_LEVELS = _table(
    {
        "Infant/toddler": "PK",
        "Preschool": "PK",
        "Prekindergarten": "PK",
        "Preschool/Prekindergarten": "PK",
        "Early Education": "PK",
        "Transitional Kindergarten": "PK",
        "Kindergarten": "K",
        **{f"{w} grade": f"{i:02d}" for i, w in enumerate(_ORDINALS.split(), 1)},
        "Ungraded": "SP",
    }
)
SEX = _table({"Female": "F", "Male": "M", "Non-binary": "N"})
RACE = _table(
    {
        "American Indian or Alaska Native": "NA",
        "Asian": "AS",
        "Black or African American": "AA",
        "Native Hawaiian or Pacific Islander": "PI",
        "Native Hawaiian or Other Pacific Islander": "PI",
        "White": "WH",
        # DESE follows the 1997 federal standard, under which MENA is reported as White.
        "Middle Eastern or North African": "WH",
        "Hispanic or Latino": "HL",
        # No canonical code: ignored when another race is given, else the race is missing.
        "Other": None,
        "Choose Not to Respond": None,
    }
)
# Rank decides which status wins when several events fall on one day (lowest wins).
_RANK = {"AU": 0, "AE": 1, "D": 2, "T": 3, "P": 4}
_IMPLIED_PRESENT = 5
_STATUS_BY_RANK = ("AU", "AE", "D", "T", "P", "P")
ATTENDANCE = _table(
    {
        "In Attendance": "P",
        "Present": "P",
        "Tardy": "T",
        "Early departure": "D",
        "Partial": "D",  # partial-day attendance: present, left or arrived outside the day
        "Excused Absence": "AE",
        "Unexcused Absence": "AU",
    }
)
_INSTRUCTIONAL = {_norm(c) for c in ("Instructional day", "Make-up day")} | {
    _norm("Student late arrival/early dismissal")
}
STAFF_ROLES = _table(
    {
        **dict.fromkeys(
            (
                "Teacher",
                "Pre-Kindergarten Teacher",
                "Kindergarten Teacher",
                "Elementary Teacher",
                "Secondary Teacher",
                "Ungraded Teacher",
                "Substitute Teacher",
            ),
            "TEACHER",
        ),
        "Paraprofessional/Instructional Aide": "PARAPROFESSIONAL",
        "Instructional Aide": "PARAPROFESSIONAL",
        "Principal": "PRINCIPAL",
        "School Leader": "PRINCIPAL",
        "Assistant Principal": "ASSISTANT_PRINCIPAL",
        **dict.fromkeys(
            (
                "Counselor",
                "School Counselor",
                "Elementary School Counselor",
                "Secondary School Counselor",
            ),
            "COUNSELOR",
        ),
        **dict.fromkeys(
            (
                "School Psychologist",
                "School Specialist",
                "LEA Specialist",
                "Librarian/Media Specialist",
                "Instructional Coordinator",
                "Instr Coordinator and Supervisor to the Staff",
                "Student Support Services Staff (w/o Psychology)",
            ),
            "SPECIALIST",
        ),
        **dict.fromkeys(
            (
                "School Administrator",
                "School Administrative Support Staff",
                "LEA Administrator",
                "LEA Administrative Support Staff",
                "LEA System Administrator",
                "Superintendent",
                "Assistant Superintendent",
                "State Administrator",
                "Operational Support",
                "Support Services Staff",
                "All Other Support Staff",
                "Library/Media Support Staff",
                "Other",
            ),
            "ADMINISTRATIVE",
        ),
    }
)
_NURSE = re.compile(r"\bnurse\b", re.IGNORECASE)
PERFORMANCE_LEVELS = _table(
    {
        "Exceeding Expectations": "E",
        "Exceeding": "E",
        "Meeting Expectations": "M",
        "Meeting": "M",
        "Partially Meeting Expectations": "PM",
        "Partially Meeting": "PM",
        "Not Meeting Expectations": "NM",
        "Not Meeting": "NM",
    }
)
SUBJECTS = _table(
    {
        "English Language Arts": "ELA",
        "Reading": "ELA",
        "English": "ELA",
        "Mathematics": "MATH",
    }
)
_SUBJECT_WORDS = (
    (re.compile(r"\bmath", re.IGNORECASE), "MATH"),
    (re.compile(r"\b(ela|english|reading)\b", re.IGNORECASE), "ELA"),
    (re.compile(r"\b(science|sci|ste|biology|physics|chemistry)\b", re.IGNORECASE), None),
)
# Ed-Fi exit types -> canonical exit codes; "transfer" is resolved to T or L from later spells.
_TRANSFER = "transfer"
EXIT_TYPES = _table(
    {
        "Graduated": "G",
        "Dropout": "D",
        "Dropped out": "D",
        "Discontinued schooling": "D",
        "Transferred": _TRANSFER,
        "Withdrawn": _TRANSFER,
        "Student withdrew": _TRANSFER,
        "End of school year": None,  # the spell closed with the year: not an exit
    }
)
DISCIPLINE_ACTIONS = _table(
    {
        "In School Suspension": "ISS",
        "Out of School Suspension": "OSS",
        "Expulsion": "EXP",
        "Expulsion with Services": "EXP",
        "Expulsion under Guns Free School Act": "EXP",
        "Expulsion under Guns Free School Act with Services": "EXP",
        "Emergency Removal": "EMR",
        # Not a removal from school: these actions are not in the canonical dataset.
        "Removal from Classroom": None,
        "Community Service": None,
        "Other": None,
        "No action for incident": None,
    }
)
_SEVERITY = {"EXP": 0, "EMR": 1, "OSS": 2, "ISS": 3}
LANGUAGE_NAMES = {
    "eng": "English",
    "spa": "Spanish",
    "por": "Portuguese",
    "hat": "Haitian Creole",
    "kea": "Cape Verdean Creole",
    "cpp": "Cape Verdean Creole",
    "som": "Somali",
    "fra": "French",
    "fre": "French",
    "ara": "Arabic",
    "vie": "Vietnamese",
    "zho": "Chinese",
    "chi": "Chinese",
    "cmn": "Chinese",
    "yue": "Chinese",
    "ben": "Bengali",
    "rus": "Russian",
    "sqi": "Albanian",
    "alb": "Albanian",
}
_LANGUAGE_USE_ORDER = [
    _norm(u) for u in ("Native language", "Home language", "Dominant language", "Spoken language")
]
_SPECIAL_ED_PROGRAM = re.compile(r"special ed|\bsped\b|disabilit", re.IGNORECASE)
_EL_PROGRAM = re.compile(
    r"english (language )?learner|bilingual|\besl\b|\bell\b|limited english|title iii",
    re.IGNORECASE,
)
PROGRAMS = {
    "StudentSpecialEducationProgramAssociation": "SPED",
    "StudentLanguageInstructionProgramAssociation": "ELL",
    "StudentSchoolFoodServiceProgramAssociation": "FRL",
    "StudentHomelessProgramAssociation": "HOMELESS",
    "StudentSection504ProgramAssociation": "S504",
}

# Interchanges (root elements) and the element that drives each canonical dataset.
EDORG = "InterchangeEducationOrganization"
STUDENT = "InterchangeStudent"
ENROLLMENT = "InterchangeStudentEnrollment"
PROGRAM = "InterchangeStudentProgram"
ATTENDANCE_X = "InterchangeStudentAttendance"
ASSESSMENT = "InterchangeStudentAssessment"
ASSESSMENT_META = "InterchangeAssessmentMetadata"
STAFF = "InterchangeStaffAssociation"
FINANCE = "InterchangeFinance"
CALENDAR = "InterchangeEducationOrgCalendar"
DISCIPLINE = "InterchangeStudentDiscipline"
KNOWN_INTERCHANGES = frozenset(
    (EDORG, STUDENT, ENROLLMENT, PROGRAM, ATTENDANCE_X, ASSESSMENT, ASSESSMENT_META)
) | frozenset((STAFF, FINANCE, CALENDAR, DISCIPLINE))
_DRIVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "schools": (EDORG, ("School",)),
    "students": (STUDENT, ("Student",)),
    "enrollments": (ENROLLMENT, ("StudentSchoolAssociation",)),
    "programs": (PROGRAM, tuple(PROGRAMS)),
    "attendance": (ATTENDANCE_X, ("StudentSchoolAttendanceEvent",)),
    "assessments": (ASSESSMENT, ("StudentAssessment",)),
    "staff": (STAFF, ("StaffEducationOrganizationAssignmentAssociation",)),
    "budgets": (FINANCE, ("LocalBudget",)),
    "discipline": (DISCIPLINE, ("DisciplineAction",)),
}
_SEOA = "StudentEducationOrganizationAssociation"

# Reference paths (element names, qualified per file).
STUDENT_REF = ("StudentReference", "StudentIdentity", "StudentUniqueId")
SCHOOL_REF = ("SchoolReference", "SchoolIdentity", "SchoolId")
EDORG_REF = ("EducationOrganizationReference", "EducationOrganizationIdentity")
EDORG_ID = (*EDORG_REF, "EducationOrganizationId")
STAFF_REF = ("StaffReference", "StaffIdentity", "StaffUniqueId")
_EPOCH = date(1970, 1, 1).toordinal()

# --------------------------------------------------------------------------------------------
# XML plumbing
# --------------------------------------------------------------------------------------------


class _Q:
    """Namespace-qualified tag names of one file: `q.Student` -> `{http://ed-fi.org/5.2.0}Student`."""

    def __init__(self, ns: str) -> None:
        self._prefix = f"{{{ns}}}" if ns else ""

    def __getattr__(self, name: str) -> str:
        tag = self._prefix + name
        setattr(self, name, tag)  # cache: later lookups are plain attribute reads
        return tag

    def path(self, names: Iterable[str]) -> tuple[str, ...]:
        return tuple(getattr(self, n) for n in names)


@dataclass
class _File:
    path: Path
    interchange: str  # local name of the root element
    q: _Q


@dataclass(frozen=True)
class _Where:
    """Where a record is, for error messages: file, dataset, element type and ordinal."""

    file: Path
    dataset: str
    tag: str
    n: int

    def error(
        self, problem: str, column: str | None = None, element: str | None = None
    ) -> SourceError:
        at = f"<{self.tag}> record {self.n}" + (f", element {element}" if element else "")
        return SourceError(
            f"{at}: {problem}", file=str(self.file), dataset=self.dataset, column=column
        )

    def missing(self, column: str | None, element: str) -> SourceError:
        return self.error("required value is missing", column, element)


def _t(el: Element | None, *path: str) -> str | None:
    """Stripped text of the element at `path` (qualified tags) under `el`, or None if empty."""
    for tag in path:
        if el is None:
            return None
        el = el.find(tag)
    if el is None or el.text is None:
        return None
    return el.text.strip() or None


def _get(el: Element, f: _File, names: tuple[str, ...]) -> str | None:
    return _t(el, *f.q.path(names))


def _need(el: Element, f: _File, names: tuple[str, ...], w: _Where, column: str | None) -> str:
    value = _get(el, f, names)
    if value is None:
        raise w.missing(column, "/".join(names))
    return value


def _parse_error(exc: ET.ParseError, path: Path, dataset: str | None) -> SourceError:
    # expat's own message can quote document text; the error code's generic text cannot.
    line = exc.position[0] if exc.position else None
    return SourceError(
        f"malformed XML ({ErrorString(exc.code)})", file=str(path), line=line, dataset=dataset
    )


def _root_tag(path: Path) -> str:
    with open(path, "rb") as fh:
        try:
            for _, el in ET.iterparse(fh, events=("start",)):  # noqa: S314 - see _records
                return el.tag
        except ET.ParseError as exc:
            raise _parse_error(exc, path, None) from None
    raise SourceError("file has no XML element", file=str(path))


def _records(f: _File, tags: Iterable[str], dataset: str) -> Iterator[tuple[_Where, Element]]:
    """The top-level records of `f` named in `tags`, each cleared once the consumer is done.

    Streaming: only the current record is in memory. The standard library's expat (>= 2.4)
    resolves no external entities and bounds entity expansion, so exports cannot reach files
    or blow up memory through DTD tricks.
    """
    wanted = {getattr(f.q, t): t for t in tags}
    counts: Counter[str] = Counter()
    depth = 0
    root: Element | None = None
    with open(f.path, "rb") as fh:
        try:
            for event, el in ET.iterparse(fh, events=("start", "end")):  # noqa: S314
                if event == "start":
                    depth += 1
                    if root is None:
                        root = el
                    continue
                depth -= 1
                if depth != 1:
                    continue
                tag = wanted.get(el.tag)
                if tag is not None:
                    counts[tag] += 1
                    yield _Where(f.path, dataset, tag, counts[tag]), el
                root.clear()  # type: ignore[union-attr]  # drop the record just handled
        except ET.ParseError as exc:
            raise _parse_error(exc, f.path, dataset) from None


_PRESENCE: dict[str, re.Pattern[bytes]] = {}


def _contains(path: Path, tag: str) -> bool:
    """Whether `path` has an element named `tag` (byte scan, stops at the first match)."""
    pattern = _PRESENCE.get(tag)
    if pattern is None:
        pattern = _PRESENCE[tag] = re.compile(
            rb"<(?:[A-Za-z_][\w.-]*:)?" + tag.encode() + rb"[\s/>]"
        )
    if path.stat().st_size == 0:
        return False
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        return pattern.search(mm) is not None  # type: ignore[call-overload]


# --------------------------------------------------------------------------------------------
# Value helpers
# --------------------------------------------------------------------------------------------


def _lookup(
    table: dict[str, str | None], text: str, w: _Where, column: str, element: str, kind: str
) -> str | None:
    """Canonical code of a descriptor; unknown descriptors stop the source."""
    value = _code(text)
    try:
        return table[_norm(value)]
    except KeyError:
        raise w.error(
            f"unknown {kind} {value!r} (no canonical {column} code)", column, element
        ) from None


def _required_code(
    table: dict[str, str | None], text: str | None, w: _Where, column: str, element: str, kind: str
) -> str:
    """Like `_lookup`, for a required column: a missing or unmapped descriptor stops the source."""
    if text is None:
        raise w.missing(column, element)
    code = _lookup(table, text, w, column, element, kind)
    if code is None:
        raise w.error(f"{kind} {_code(text)!r} has no canonical {column} code", column, element)
    return code


def _grade(text: str | None, w: _Where, column: str, element: str) -> str:
    return _required_code(GRADE_LEVELS, text, w, column, element, "GradeLevelDescriptor")


def _day(text: str | None, w: _Where, column: str, element: str) -> int:
    """Days since 1970-01-01 of an ISO date (or the date part of a dateTime)."""
    if text is None:
        raise w.missing(column, element)
    try:
        return date.fromisoformat(text[:10]).toordinal() - _EPOCH
    except ValueError:
        raise w.error("value is not a valid date (YYYY-MM-DD)", column, element) from None


def _spring_year(day: int) -> int:
    """Spring year of the school year containing a day (school years start on July 1)."""
    d = date.fromordinal(day + _EPOCH)
    return d.year + 1 if d.month >= 7 else d.year


def _school_year(text: str, w: _Where, column: str, element: str) -> int:
    """Ed-Fi SchoolYear: `2021-2022` (XML enumeration) or `2022` -> 2022."""
    if not re.fullmatch(r"\d{4}(-\d{4})?", text):
        raise w.error("value is not a school year (2022 or 2021-2022)", column, element)
    return int(text[-4:])


def _truthy(text: str | None) -> bool:
    return text is not None and _norm(text) in {"true", "1", "yes", "y"}


def _iso(day: int) -> str:
    return date.fromordinal(day + _EPOCH).isoformat()


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def _first_bad(values: pa.Array, convert: Callable[[pa.Array], pa.Array]) -> int:
    """Index of the first element `convert` rejects (bisection; only used on failure)."""
    lo, hi = 0, len(values)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(values.slice(lo, mid - lo))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
        else:
            lo = mid
    return lo


class _Batch:
    """Rows of one canonical dataset, turned column by column into an Arrow record batch.

    Mappers produce Python strings (ISO dates, numbers as read) or computed ints/bools; Arrow
    parses and checks them in bulk, and a failure is located by bisection so the error names the
    record, never the value.
    """

    def __init__(self, dataset: str) -> None:
        self.ds = model()[dataset]
        self.rows: list[Row] = []
        self.where: list[_Where] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: Row, w: _Where) -> None:
        self.rows.append(row)
        self.where.append(w)

    def flush(self) -> pa.RecordBatch:
        columns = list(zip(*self.rows, strict=True))
        arrays = [self._array(c, v) for c, v in zip(self.ds.columns, columns, strict=True)]
        self.rows, self.where = [], []
        return pa.RecordBatch.from_arrays(arrays, schema=self.ds.schema)

    def _array(self, col: Column, values: tuple[Any, ...]) -> pa.Array:
        raw = pa.array(values, pa.string()) if col.type_name in ("string", "date") else None
        if raw is None:
            raw = pa.array(values)
        target = col.arrow_type
        try:
            typed = raw if raw.type == target else raw.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            i = _first_bad(raw, lambda a: a.cast(target))
            raise self.where[i].error(f"value is not a valid {col.type_name}", col.name) from exc
        if col.required and typed.null_count:
            i = typed.is_null().to_pylist().index(True)
            raise self.where[i].missing(col.name, col.name)
        return typed


def _batched(dataset: str, rows: Iterable[tuple[Row, _Where]]) -> Iterator[pa.RecordBatch]:
    batch = _Batch(dataset)
    for row, w in rows:
        batch.add(row, w)
        if len(batch) >= BATCH_ROWS:
            yield batch.flush()
    if len(batch):
        yield batch.flush()


# --------------------------------------------------------------------------------------------
# The extract
# --------------------------------------------------------------------------------------------


class _Spell(NamedTuple):
    """One StudentSchoolAssociation (enrollment spell)."""

    student: str
    school: str
    school_year: int
    grade: str
    entry: int  # days since epoch
    exit: int | None
    exit_type: str | None  # canonical code, _TRANSFER, or None
    calendar: str | None
    where: _Where


class _Demo(NamedTuple):
    """A student's demographics from one StudentEducationOrganizationAssociation."""

    sasid: str | None
    gender: str | None
    race: str | None
    address: tuple[str, str | None, str | None] | None
    language: str | None
    opt_out: bool | None


class EdfiExtract:
    """The `Extract` of one directory of Ed-Fi interchange files."""

    format = "edfi_xml"

    def __init__(self, directory: Path, ctx: ExtractContext | None = None) -> None:
        self.directory = directory
        self.files = _inventory(directory)
        self.as_of_day = _as_of_day(ctx)
        self._seen: dict[tuple[str, str], bool] = {}
        unused = sorted(f.path.name for f in self.files if f.interchange not in KNOWN_INTERCHANGES)
        if unused:
            log.info("edfi: files kept as raw but not mapped: %s", ", ".join(unused))

    # -- the Extract protocol ------------------------------------------------------------------

    def datasets(self) -> list[str]:
        return sorted(self._provided)

    def batches(self, dataset: str) -> Iterator[pa.RecordBatch]:
        if dataset not in self._provided:
            raise SourceError(_why_not(self, dataset), file=str(self.directory), dataset=dataset)
        if dataset == "attendance":
            return _attendance_batches(self)
        return _batched(dataset, _READERS[dataset](self))

    def expected_rows(self, dataset: str) -> int | None:
        return None  # Ed-Fi interchanges declare no row counts

    def raw_files(self) -> list[RawFile]:
        return [
            RawFile(f.path.name, self._sha256[f.path.name], f.path.stat().st_size, path=f.path)
            for f in self.files
        ]

    def fingerprint(self) -> str:
        return fingerprint(self._sha256)

    @property
    def state(self) -> dict[str, Any]:
        return {}

    # -- files -----------------------------------------------------------------------------------

    def of(self, interchange: str) -> list[_File]:
        return [f for f in self.files if f.interchange == interchange]

    def has(self, interchange: str, tag: str) -> bool:
        """Whether a file of `interchange` has a `tag` element (a byte scan, remembered)."""
        key = (interchange, tag)
        if key not in self._seen:
            self._seen[key] = any(_contains(f.path, tag) for f in self.of(interchange))
        return self._seen[key]

    @cached_property
    def _sha256(self) -> dict[str, str]:
        return {f.path.name: sha256_file(f.path) for f in self.files}

    @cached_property
    def _provided(self) -> set[str]:
        out = {ds for ds, (x, tags) in _DRIVERS.items() if any(self.has(x, t) for t in tags)}
        if "students" in out and not self.has(ENROLLMENT, _SEOA):
            out.discard("students")
            log.warning("edfi: %s", _why_not(self, "students"))
        return out

    # -- shared lookups, parsed once -------------------------------------------------------------

    @cached_property
    def school_ids(self) -> set[str] | None:
        """SchoolIds of the EducationOrganization interchange (None if it is absent)."""
        if not self.of(EDORG):
            return None
        return {
            _need(el, f, ("SchoolId",), w, "school_id")
            for f in self.of(EDORG)
            for w, el in _records(f, ("School",), "schools")
        }

    @cached_property
    def spells(self) -> list[_Spell]:
        return [
            _spell(el, f, w)
            for f in self.of(ENROLLMENT)
            for w, el in _records(f, ("StudentSchoolAssociation",), "enrollments")
        ]

    @cached_property
    def spells_by_student(self) -> dict[str, list[_Spell]]:
        out: dict[str, list[_Spell]] = defaultdict(list)
        for s in self.spells:
            out[s.student].append(s)
        return out

    @cached_property
    def demographics(self) -> dict[str, _Demo]:
        """Per student, the first non-empty value of each field over its SEOA records."""
        out: dict[str, _Demo] = {}
        for f in self.of(ENROLLMENT):
            for w, el in _records(f, (_SEOA,), "students"):
                sid = _need(el, f, STUDENT_REF, w, "student_id")
                new = _seoa(el, f, w)
                old = out.get(sid)
                out[sid] = new if old is None else _merge_demo(old, new)
        return out


def _merge_demo(old: _Demo, new: _Demo) -> _Demo:
    return _Demo(*(a if a is not None else b for a, b in zip(old, new, strict=True)))


def _inventory(directory: Path) -> list[_File]:
    if not directory.is_dir():
        raise SourceError("source directory does not exist", file=str(directory))
    paths = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() == ".xml")
    if not paths:
        raise SourceError(
            "no XML files (expected Ed-Fi interchange files such as Student.xml)",
            file=str(directory),
        )
    files = []
    for p in paths:
        tag = _root_tag(p)
        ns, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
        files.append(_File(p, local, _Q(ns)))
    if not any(f.interchange in KNOWN_INTERCHANGES for f in files):
        roots = ", ".join(sorted({f.interchange for f in files}))
        raise SourceError(
            f"no recognizable Ed-Fi interchange file (root elements found: {roots})",
            file=str(directory),
        )
    return files


def _as_of_day(ctx: ExtractContext | None) -> int | None:
    if ctx is None or not ctx.as_of:
        return None
    try:
        return datetime.fromisoformat(ctx.as_of).date().toordinal() - _EPOCH
    except ValueError:
        return None


def _why_not(ex: EdfiExtract, dataset: str) -> str:
    if dataset == "students" and ex.has(STUDENT, "Student"):
        return (
            "students not provided: Ed-Fi 4/5 keep sex, race, address and languages on "
            "StudentEducationOrganizationAssociation (StudentEnrollment interchange), "
            "which the extract lacks"
        )
    interchange, tags = _DRIVERS.get(dataset, ("", ()))
    if not tags:
        return f"{dataset} not provided: Ed-Fi interchanges do not map to it"
    return f"{dataset} not provided: no {' or '.join(tags)} element in any {interchange} file"


# --------------------------------------------------------------------------------------------
# schools
# --------------------------------------------------------------------------------------------

_GRADE_ORDER = {g: i for i, g in enumerate(("PK", "K", *(f"{i:02d}" for i in range(1, 13))))}


def _school_type(grades: set[str], special: bool) -> tuple[str, str, str]:
    """(low grade, high grade, school type) from the grade span; SP only -> Special."""
    span = sorted((g for g in grades if g != "SP"), key=_GRADE_ORDER.__getitem__)
    if not span:
        return "SP", "SP", "Special"
    low, high = span[0], span[-1]
    lo, hi = _GRADE_ORDER[low], _GRADE_ORDER[high]
    if special:
        kind = "Special"
    elif hi <= _GRADE_ORDER["01"] and lo <= _GRADE_ORDER["K"]:
        kind = "ELC"
    elif lo >= _GRADE_ORDER["09"]:
        kind = "HS"
    elif lo >= _GRADE_ORDER["06"]:
        kind = "MS" if hi <= _GRADE_ORDER["08"] else "6/7-12"
    elif hi <= _GRADE_ORDER["06"]:
        kind = "ES"
    else:
        kind = "K-8" if hi <= _GRADE_ORDER["08"] else "K-12"
    return low, high, kind


def _address(el: Element, f: _File, prefer: tuple[str, ...]) -> Element | None:
    """The first Address of the preferred AddressType, else the first Address."""
    addresses = el.findall(f.q.Address)
    if not addresses:
        return None
    for kind in map(_norm, prefer):
        for a in addresses:
            if _norm(_code(_t(a, f.q.AddressType) or "")) == kind:
                return a
    return addresses[0]


def _street(a: Element, f: _File) -> str | None:
    street = _t(a, f.q.StreetNumberName)
    unit = _t(a, f.q.ApartmentRoomSuiteNumber)
    return f"{street} {unit}" if street and unit else street


def _dese_code(el: Element, f: _File) -> str | None:
    """The state (SEA) identification code of an education organization, if any."""
    for c in el.findall(f.q.EducationOrganizationIdentificationCode):
        system = _norm(_code(_t(c, f.q.EducationOrganizationIdentificationSystem) or ""))
        if system in ("sea", "state"):
            return _t(c, f.q.IdentificationCode)
    return _t(el, f.q.StateOrganizationId)


def _schools(ex: EdfiExtract) -> Iterator[tuple[Row, _Where]]:
    for f in ex.of(EDORG):
        q = f.q
        for w, el in _records(f, ("School",), "schools"):
            school_id = _need(el, f, ("SchoolId",), w, "school_id")
            grades = {
                _grade((g.text or "").strip() or None, w, "low_grade", "GradeLevel")
                for g in el.findall(q.GradeLevel)
            }
            if not grades:
                raise w.missing("low_grade", "GradeLevel")
            special = _norm(_code(_t(el, q.SchoolType) or "")) == _norm("Special Education")
            low, high, kind = _school_type(grades, special)
            a = _address(el, f, ("Physical",))
            yield (
                (
                    school_id,
                    _dese_code(el, f) or school_id,
                    _need(el, f, ("NameOfInstitution",), w, "school_name"),
                    kind,
                    low,
                    high,
                    _street(a, f) if a is not None else None,
                    _t(a, q.City),
                    _t(a, q.PostalCode),
                    _t(a, q.Latitude),
                    _t(a, q.Longitude),
                ),
                w,
            )


# --------------------------------------------------------------------------------------------
# students
# --------------------------------------------------------------------------------------------


def _race(el: Element, f: _File, w: _Where) -> str | None:
    """HL if Hispanic/Latino; else the one race, MR for several; None if none is given."""
    q = f.q
    codes = {
        _lookup(RACE, r.text or "", w, "race_ethnicity", "Race", "RaceDescriptor")
        for r in el.findall(q.Race)
    }
    if _truthy(_t(el, q.HispanicLatinoEthnicity)) or "HL" in codes:
        return "HL"
    codes.discard(None)
    if not codes:
        return None
    return codes.pop() if len(codes) == 1 else "MR"


def _first_language(el: Element, f: _File) -> str | None:
    """The native language, else home, dominant, spoken, else the first one listed."""
    q = f.q
    best: tuple[int, str] | None = None
    for lang in el.findall(q.Language):
        code = _t(lang, q.Language)
        if code is None:
            continue
        uses = [_norm(_code(u.text or "")) for u in lang.findall(q.LanguageUse)]
        rank = min(
            (_LANGUAGE_USE_ORDER.index(u) for u in uses if u in _LANGUAGE_USE_ORDER),
            default=len(_LANGUAGE_USE_ORDER),
        )
        if best is None or rank < best[0]:
            best = (rank, _code(code))
    if best is None:
        return None
    return LANGUAGE_NAMES.get(best[1].casefold(), best[1])


def _state_id(el: Element, f: _File) -> str | None:
    for c in el.findall(f.q.StudentIdentificationCode):
        if _norm(_code(_t(c, f.q.StudentIdentificationSystem) or "")) == "state":
            return _t(c, f.q.IdentificationCode)
    return None


def _opt_out(el: Element, f: _File) -> bool | None:
    """A StudentIndicator named like "Directory ... opt-out" (Ed-Fi has no standard element)."""
    for ind in el.findall(f.q.StudentIndicator):
        name = _norm(_t(ind, f.q.IndicatorName) or "")
        if "directory" in name and "opt" in name:
            return _truthy(_t(ind, f.q.Indicator))
    return None


def _seoa(el: Element, f: _File, w: _Where) -> _Demo:
    sex = _t(el, f.q.Sex)
    a = _address(el, f, ("Home", "Physical", "Mailing"))
    return _Demo(
        sasid=_state_id(el, f),
        gender=_lookup(SEX, sex, w, "gender", "Sex", "SexDescriptor") if sex else None,
        race=_race(el, f, w),
        address=(_street(a, f) or "", _t(a, f.q.City), _t(a, f.q.PostalCode))
        if a is not None
        else None,
        language=_first_language(el, f),
        opt_out=_opt_out(el, f),
    )


def _students(ex: EdfiExtract) -> Iterator[tuple[Row, _Where]]:
    demographics = ex.demographics
    for f in ex.of(STUDENT):
        q = f.q
        for w, el in _records(f, ("Student",), "students"):
            sid = _need(el, f, ("StudentUniqueId",), w, "student_id")
            d = demographics.get(sid) or _Demo(None, None, None, None, None, None)
            gender = d.gender
            if gender is None and (birth_sex := _t(el, q.BirthData, q.BirthSex)):
                gender = _lookup(SEX, birth_sex, w, "gender", "BirthData/BirthSex", "SexDescriptor")
            if gender is None:
                raise w.missing("gender", f"{_SEOA}/Sex or BirthData/BirthSex")
            if d.race is None:
                raise w.missing("race_ethnicity", f"{_SEOA}/Race or HispanicLatinoEthnicity")
            if d.address is None:
                raise w.missing("home_address", f"{_SEOA}/Address")
            street, city, zip_code = d.address
            if d.language is None:
                raise w.missing("first_language", f"{_SEOA}/Language")
            yield (
                (
                    sid,
                    d.sasid or sid,  # documented fallback: StudentUniqueId stands for the state ID
                    _need(el, f, ("Name", "FirstName"), w, "first_name"),
                    _get(el, f, ("Name", "MiddleName")),
                    _need(el, f, ("Name", "LastSurname"), w, "last_name"),
                    _need(el, f, ("BirthData", "BirthDate"), w, "birth_date"),
                    gender,
                    d.race,
                    street or None,
                    city,
                    zip_code,
                    d.language,
                    # Fail closed: without an opt-out indicator a student is treated as opted
                    # out, so tier 3 (directory information) never lists them by default.
                    True if d.opt_out is None else d.opt_out,
                ),
                w,
            )


# --------------------------------------------------------------------------------------------
# enrollments
# --------------------------------------------------------------------------------------------


def _spell(el: Element, f: _File, w: _Where) -> _Spell:
    q = f.q
    entry = _day(_t(el, q.EntryDate), w, "entry_date", "EntryDate")
    exit_text = _t(el, q.ExitWithdrawDate)
    exit_type = _t(el, q.ExitWithdrawType)
    year = _t(el, q.SchoolYear)
    return _Spell(
        student=_need(el, f, STUDENT_REF, w, "student_id"),
        school=_need(el, f, SCHOOL_REF, w, "school_id"),
        school_year=_school_year(year, w, "school_year", "SchoolYear")
        if year
        else _spring_year(entry),
        grade=_grade(_t(el, q.EntryGradeLevel), w, "grade", "EntryGradeLevel"),
        entry=entry,
        exit=_day(exit_text, w, "exit_date", "ExitWithdrawDate") if exit_text else None,
        # exit_code is optional: exit types without a canonical equivalent become O.
        exit_type=EXIT_TYPES.get(_norm(_code(exit_type)), "O") if exit_type else None,
        calendar=_t(el, q.CalendarReference, q.CalendarIdentity, q.CalendarCode),
        where=w,
    )


def _exit_code(s: _Spell, later: list[_Spell]) -> str | None:
    """T if a transfer/withdrawal is followed by a spell at another school, else L."""
    if s.exit_type != _TRANSFER:
        return s.exit_type
    after = s.exit if s.exit is not None else s.entry
    moved = any(o.school != s.school and o.entry >= after for o in later)
    return "T" if moved else "L"


def _enrollments(ex: EdfiExtract) -> Iterator[tuple[Row, _Where]]:
    by_student = ex.spells_by_student
    for s in ex.spells:
        yield (
            (
                s.student,
                s.school,
                s.school_year,
                s.grade,
                _iso(s.entry),
                _iso(s.exit) if s.exit is not None else None,
                _exit_code(s, by_student[s.student]),
            ),
            s.where,
        )


# --------------------------------------------------------------------------------------------
# programs
# --------------------------------------------------------------------------------------------

_BEGIN_DATE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?BeginDate>\s*(\d{4})-(\d{2})")


def _extract_year(files: list[_File]) -> int | None:
    """Latest school year in which a program spell begins: the school year of the extract."""
    latest = None
    for f in files:
        if f.path.stat().st_size == 0:
            continue
        with open(f.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for m in _BEGIN_DATE.finditer(mm):  # type: ignore[call-overload]
                y, mo = int(m.group(1)), int(m.group(2))
                sy = y + 1 if mo >= 7 else y
                latest = sy if latest is None else max(latest, sy)
    return latest


def _sped_detail(el: Element, f: _File) -> str | None:
    """The primary disability (lowest OrderOfDisability, else the first listed)."""
    q = f.q
    best: tuple[int, str] | None = None
    for i, d in enumerate(el.findall(q.Disability)):
        code = _t(d, q.Disability)
        if code is None:
            continue
        order = _t(d, q.OrderOfDisability)
        key = (int(order) if order and order.isdigit() else 1_000 + i, _code(code))
        best = key if best is None or key < best else best
    return best[1] if best else None


def _food_detail(el: Element, f: _File) -> tuple[bool, str | None]:
    """(eligible, F or R): free beats reduced; only full-price services -> not eligible."""
    services = [
        _norm(_code(_t(s, f.q.SchoolFoodServiceProgramService) or ""))
        for s in el.findall(f.q.SchoolFoodServiceProgramService)
    ]
    if not services:
        return True, None
    if any(s.startswith("free") for s in services):
        return True, "F"
    if any(s.startswith("reduced") for s in services):
        return True, "R"
    return not all(s.startswith("full price") for s in services), None


def _descriptor_detail(el: Element, f: _File, tag: str) -> str | None:
    text = _t(el, getattr(f.q, tag))
    return _code(text) if text else None


def _programs(ex: EdfiExtract) -> Iterator[tuple[Row, _Where]]:
    files = ex.of(PROGRAM)
    extract_year = _extract_year(files)
    languages = ex.demographics if ex.has(ENROLLMENT, _SEOA) else {}
    for f in files:
        for w, el in _records(f, PROGRAMS, "programs"):
            sid = _need(el, f, STUDENT_REF, w, "student_id")
            begin = _day(_t(el, f.q.BeginDate), w, "start_date", "BeginDate")
            end_text = _t(el, f.q.EndDate)
            end = _day(end_text, w, "end_date", "EndDate") if end_text else None
            # Open spells belong to the extract's year; closed ones to the year they ended.
            year = extract_year if extract_year is not None else _spring_year(begin)
            if end is not None:
                year = min(year, _spring_year(end))
            start, stop = _iso(begin), _iso(end) if end is not None else None
            for program, detail, detail2 in _program_rows(el, f, w, languages.get(sid)):
                yield (sid, year, program, detail, detail2, start, stop), w


def _program_rows(
    el: Element, f: _File, w: _Where, demo: _Demo | None
) -> list[tuple[str, str | None, str | None]]:
    program = PROGRAMS[w.tag]
    if program == "SPED":
        return [("SPED", _sped_detail(el, f), _descriptor_detail(el, f, "SpecialEducationSetting"))]
    if program == "ELL":
        return [("ELL", None, demo.language if demo else None)]
    if program == "HOMELESS":
        return [("HOMELESS", _descriptor_detail(el, f, "HomelessPrimaryNighttimeResidence"), None)]
    if program == "S504":
        return [("S504", _descriptor_detail(el, f, "Section504Disability"), None)]
    eligible, detail = _food_detail(el, f)
    if not eligible:
        return []
    # Economically disadvantaged: direct certification when the export states it; otherwise
    # free/reduced-price eligibility stands in for it (documented proxy).
    direct = _t(el, f.q.DirectCertification)
    econ = _truthy(direct) if direct is not None else True
    return [("FRL", detail, None)] + ([("ECON_DIS", None, None)] if econ else [])


# --------------------------------------------------------------------------------------------
# attendance
# --------------------------------------------------------------------------------------------


class _Vocab:
    """Strings <-> dense int ids, so attendance rows are kept as compact int arrays."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.values: list[str] = []

    def id(self, value: str) -> int:
        i = self.index.get(value)
        if i is None:
            i = self.index[value] = len(self.values)
            self.values.append(value)
        return i


class _Days(NamedTuple):
    student: np.ndarray
    school: np.ndarray
    day: np.ndarray
    rank: np.ndarray


def _events(ex: EdfiExtract, students: _Vocab, schools: _Vocab) -> _Days:
    st, sc, dy, rk = array("i"), array("i"), array("i"), array("b")
    for f in ex.of(ATTENDANCE_X):
        q = f.q
        for w, el in _records(f, ("StudentSchoolAttendanceEvent",), "attendance"):
            category = _t(el, q.AttendanceEvent, q.AttendanceEventCategory)
            if category is None:
                raise w.missing("status", "AttendanceEvent/AttendanceEventCategory")
            status = _lookup(
                ATTENDANCE,
                category,
                w,
                "status",
                "AttendanceEvent/AttendanceEventCategory",
                "AttendanceEventCategoryDescriptor",
            )
            st.append(students.id(_need(el, f, STUDENT_REF, w, "student_id")))
            sc.append(schools.id(_need(el, f, SCHOOL_REF, w, "school_id")))
            dy.append(
                _day(
                    _t(el, q.AttendanceEvent, q.EventDate),
                    w,
                    "attendance_date",
                    "AttendanceEvent/EventDate",
                )
            )
            rk.append(_RANK[status])  # type: ignore[index]
    return _Days(*(np.frombuffer(a, dtype=a.typecode) for a in (st, sc, dy)), np.array(rk, "i1"))


def _calendars(ex: EdfiExtract) -> tuple[dict[str, np.ndarray], dict[tuple, np.ndarray]]:
    """Instructional days per school and per (school, calendar code, school year)."""
    by_school: dict[str, set[int]] = defaultdict(set)
    by_calendar: dict[tuple, set[int]] = defaultdict(set)
    for f in ex.of(CALENDAR):
        q = f.q
        for w, el in _records(f, ("CalendarDate",), "attendance"):
            events = {_norm(_code(e.text or "")) for e in el.findall(q.CalendarEvent)}
            if not events & _INSTRUCTIONAL:
                continue
            day = _day(_t(el, q.Date), w, "attendance_date", "Date")
            ident = el.find(q.CalendarReference + "/" + q.CalendarIdentity)
            if ident is None:
                raise w.missing("school_id", "CalendarReference/CalendarIdentity")
            school = _need(ident, f, SCHOOL_REF, w, "school_id")
            year = _get(ident, f, ("SchoolYear",))
            by_school[school].add(day)
            key = (school, _get(ident, f, ("CalendarCode",)), year and int(year[-4:]))
            by_calendar[key].add(day)

    def freeze(d: dict) -> dict:
        return {k: np.array(sorted(v), dtype=np.int32) for k, v in d.items()}

    return freeze(by_school), freeze(by_calendar)


def _expand(ex: EdfiExtract, students: _Vocab, schools: _Vocab, cap: int | None) -> _Days | None:
    """One implied-present row per enrolled instructional day, or None without a calendar."""
    by_school, by_calendar = _calendars(ex)
    if not by_school or not ex.spells:
        return None
    days, lengths, st, sc = [], [], [], []
    for s in ex.spells:
        cal = by_calendar.get((s.school, s.calendar, s.school_year)) if s.calendar else None
        cal = cal if cal is not None else by_school.get(s.school)
        if cal is None:
            continue  # no calendar for this school: only its events are known
        bounds = [x for x in (s.exit, cap) if x is not None]
        last = min(bounds) if bounds else None
        lo = int(np.searchsorted(cal, s.entry, "left"))
        hi = int(np.searchsorted(cal, last, "right")) if last is not None else len(cal)
        if hi > lo:
            days.append(cal[lo:hi])
            lengths.append(hi - lo)
            st.append(students.id(s.student))
            sc.append(schools.id(s.school))
    if not days:
        return None
    n = np.array(lengths)
    day = np.concatenate(days)
    return _Days(
        np.repeat(np.array(st, np.int32), n),
        np.repeat(np.array(sc, np.int32), n),
        day,
        np.full(len(day), _IMPLIED_PRESENT, np.int8),
    )


def _arrow(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """Zero-copy Arrow view of a numpy array (pa.array on numpy would import pandas)."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


def _one_per_day(parts: list[_Days]) -> _Days:
    """Keep one row per (student, day): the lowest rank (most absent) wins."""
    student, school, day, rank = (
        np.concatenate([getattr(p, k) for p in parts]) for k in _Days._fields
    )
    key = student.astype(np.int64) * 1_000_000 + day.astype(np.int64) + 500_000
    order = np.lexsort((rank, key))
    k = key[order]
    first = np.ones(len(k), dtype=bool)
    first[1:] = k[1:] != k[:-1]
    keep = order[first]
    return _Days(student[keep], school[keep], day[keep], rank[keep])


def _attendance_batches(ex: EdfiExtract) -> Iterator[pa.RecordBatch]:
    students, schools = _Vocab(), _Vocab()
    events = _events(ex, students, schools)
    cap = ex.as_of_day
    if cap is None and len(events.day):
        cap = int(events.day.max())  # attendance is known through the latest event
    daily = _expand(ex, students, schools, cap) if ex.spells else None
    if daily is None:
        log.warning(
            "edfi: attendance holds only the %d event days (no enrollment spells and "
            "instructional calendar to expand); day counts and rates derived from it are "
            "not meaningful",
            len(events.day),
        )
    rows = _one_per_day([events] + ([daily] if daily is not None else []))
    schema = model()["attendance"].schema
    student_ids = pa.array(students.values, pa.string())
    school_ids = pa.array(schools.values, pa.string())
    statuses = pa.array(_STATUS_BY_RANK, pa.string())
    for i in range(0, len(rows.day), BATCH_ROWS):
        sl = slice(i, i + BATCH_ROWS)
        yield pa.RecordBatch.from_arrays(
            [
                student_ids.take(_arrow(rows.student[sl], pa.int32())),
                school_ids.take(_arrow(rows.school[sl], pa.int32())),
                _arrow(rows.day[sl], pa.int32()).cast(pa.date32()),
                statuses.take(_arrow(rows.rank[sl], pa.int8())),
            ],
            schema=schema,
        )


# --------------------------------------------------------------------------------------------
# assessments
# --------------------------------------------------------------------------------------------


def _assessment_subjects(ex: EdfiExtract) -> dict[tuple[str, str | None], str | None]:
    """(AssessmentIdentifier, Namespace) -> ELA, MATH or None (another subject)."""
    out: dict[tuple[str, str | None], str | None] = {}
    for f in ex.of(ASSESSMENT_META):
        for w, el in _records(f, ("Assessment",), "assessments"):
            ident = _need(el, f, ("AssessmentIdentifier",), w, "subject")
            codes = {
                SUBJECTS.get(_norm(_code(s.text or ""))) for s in el.findall(f.q.AcademicSubject)
            }
            subject = next((c for c in ("ELA", "MATH") if c in codes), None)
            out[(ident, _get(el, f, ("Namespace",)))] = subject
    return out


def _subject_from_name(identifier: str) -> tuple[bool, str | None]:
    """(recognised, subject) from words in an assessment identifier."""
    for pattern, subject in _SUBJECT_WORDS:
        if pattern.search(identifier.replace("-", " ").replace("_", " ")):
            return True, subject
    return False, None


def _scores(el: Element, f: _File) -> dict[str, str]:
    """Result per reporting method (code value, normalised), first one listed wins."""
    out: dict[str, str] = {}
    for s in el.findall(f.q.ScoreResult):
        method = _t(s, f.q.AssessmentReportingMethod)
        result = _t(s, f.q.Result)
        if method and result:
            out.setdefault(_norm(_code(method)), result)
    return out


def _as_int(text: str | None) -> int | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return int(value) if value is not None and value.is_integer() else None


def _achievement(el: Element, f: _File, w: _Where) -> str:
    levels = [_t(p, f.q.PerformanceLevel) for p in el.findall(f.q.PerformanceLevel)]
    levels = [p for p in levels if p]
    for p in levels:
        code = PERFORMANCE_LEVELS.get(_norm(_code(p)))
        if code:
            return code
    if levels:
        raise w.error(
            f"unknown PerformanceLevelDescriptor {_code(levels[0])!r} "
            "(no canonical achievement_level code)",
            "achievement_level",
            "PerformanceLevel/PerformanceLevel",
        )
    raise w.missing("achievement_level", "PerformanceLevel/PerformanceLevel")


def _school_at(ex: EdfiExtract, student: str, day: int | None) -> str | None:
    """The school of the student's enrollment spell covering `day` (else the latest one)."""
    spells = ex.spells_by_student.get(student, []) if ex.of(ENROLLMENT) else []
    if day is not None:
        for s in spells:
            if s.entry <= day and (s.exit is None or day <= s.exit):
                return s.school
    return max(spells, key=lambda s: s.entry).school if spells else None


def _assessments(ex: EdfiExtract) -> Iterator[tuple[Row, _Where]]:
    subjects = _assessment_subjects(ex)
    skipped: Counter[str] = Counter()
    for f in ex.of(ASSESSMENT):
        for w, el in _records(f, ("StudentAssessment",), "assessments"):
            row = _assessment(ex, el, f, w, subjects, skipped)
            if row is not None:
                yield row, w
    if skipped:
        log.warning(
            "edfi: assessments: skipped %d StudentAssessment records (%s)",
            sum(skipped.values()),
            "; ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items())),
        )


def _assessment(
    ex: EdfiExtract,
    el: Element,
    f: _File,
    w: _Where,
    subjects: dict[tuple[str, str | None], str | None],
    skipped: Counter[str],
) -> Row | None:
    q = f.q
    if _t(el, q.ReasonNotTested):
        skipped["not tested"] += 1
        return None
    scores = _scores(el, f)
    scaled = _as_int(scores.get("scale score"))
    if scaled is None or not 440 <= scaled <= 560:
        skipped["no Scale score on the MCAS 440-560 scale"] += 1
        return None
    ref = (q.AssessmentReference, q.AssessmentIdentity)
    ident = _t(el, *ref, q.AssessmentIdentifier)
    if ident is None:
        raise w.missing("subject", "AssessmentReference/AssessmentIdentity/AssessmentIdentifier")
    key = (ident, _t(el, *ref, q.Namespace))
    known, subject = (True, subjects[key]) if key in subjects else _subject_from_name(ident)
    if not known:
        raise w.error(
            "cannot tell the subject (no AssessmentMetadata Assessment and the identifier names "
            "neither ELA nor mathematics)",
            "subject",
            "AssessmentReference/AssessmentIdentity/AssessmentIdentifier",
        )
    if subject is None:
        skipped["subject other than ELA or mathematics"] += 1
        return None
    student = _need(el, f, STUDENT_REF, w, "student_id")
    administered = _t(el, q.AdministrationDate)
    day = _day(administered, w, "school_year", "AdministrationDate") if administered else None
    school = _t(el, q.ReportedSchoolReference, q.SchoolIdentity, q.SchoolId) or _school_at(
        ex, student, day
    )
    if school is None:
        raise w.missing("school_id", "ReportedSchoolReference (or an enrollment spell)")
    year_text = _t(el, q.SchoolYear)
    if year_text:
        year = _school_year(year_text, w, "school_year", "SchoolYear")
    elif day is not None:
        year = _spring_year(day)
    else:
        raise w.missing("school_year", "SchoolYear or AdministrationDate")
    sgp = _as_int(scores.get(_norm("Growth/value-added/indexing")))
    return (
        student,
        school,
        year,
        subject,
        _grade(_t(el, q.WhenAssessedGradeLevel), w, "grade_tested", "WhenAssessedGradeLevel"),
        scaled,
        _achievement(el, f, w),
        sgp if sgp is not None and 1 <= sgp <= 99 else None,
    )


# --------------------------------------------------------------------------------------------
# staff
# --------------------------------------------------------------------------------------------


class _Assignment(NamedTuple):
    staff: str
    school: str
    role: str
    fte: str | None
    begin: str
    end: str | None
    where: _Where


def _staff_tables(
    ex: EdfiExtract,
) -> tuple[
    dict[str, tuple[str, str]],
    dict[tuple[str, str], tuple[str, str | None]],
    list[_Assignment],
]:
    names: dict[str, tuple[str, str]] = {}
    employment: dict[tuple[str, str], tuple[str, str | None]] = {}
    assignments: list[_Assignment] = []
    tags = (
        "Staff",
        "StaffEducationOrganizationEmploymentAssociation",
        "StaffEducationOrganizationAssignmentAssociation",
    )
    for f in ex.of(STAFF):
        q = f.q
        for w, el in _records(f, tags, "staff"):
            if w.tag == "Staff":
                sid = _need(el, f, ("StaffUniqueId",), w, "staff_id")
                names[sid] = (
                    _need(el, f, ("Name", "FirstName"), w, "first_name"),
                    _need(el, f, ("Name", "LastSurname"), w, "last_name"),
                )
                continue
            sid = _need(el, f, STAFF_REF, w, "staff_id")
            org = _need(el, f, EDORG_ID, w, "school_id")
            if w.tag == "StaffEducationOrganizationEmploymentAssociation":
                hire = _need(el, f, ("EmploymentPeriod", "HireDate"), w, "hire_date")
                employment[(sid, org)] = (hire, _t(el, q.FullTimeEquivalency))
                continue
            role = _required_code(
                STAFF_ROLES,
                _t(el, q.StaffClassification),
                w,
                "role",
                "StaffClassification",
                "StaffClassificationDescriptor",
            )
            if _NURSE.search(_t(el, q.PositionTitle) or ""):
                role = "NURSE"  # no Ed-Fi classification for nurses: the title tells
            assignments.append(
                _Assignment(
                    sid,
                    org,
                    role,
                    _t(el, q.FullTimeEquivalency),
                    _need(el, f, ("BeginDate",), w, None),
                    _t(el, q.EndDate),
                    w,
                )
            )
    return names, employment, assignments


def _staff(ex: EdfiExtract) -> Iterator[tuple[Row, _Where]]:
    names, employment, assignments = _staff_tables(ex)
    schools = ex.school_ids
    as_of = _iso(ex.as_of_day) if ex.as_of_day is not None else None
    by_staff: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for (sid, _), job in sorted(employment.items()):
        by_staff[sid].append(job)
    chosen: dict[tuple[str, str], _Assignment] = {}
    for a in assignments:
        if schools is not None and a.school not in schools:
            continue  # district-level assignment: the roster is per school
        if a.end is not None and as_of is not None and a.end < as_of:
            continue  # ended before the night
        key = (a.staff, a.school)
        old = chosen.get(key)
        # One row per staff member and school: an open assignment, else the latest begun.
        if old is None or (a.end is None, a.begin) > (old.end is None, old.begin):
            chosen[key] = a
    for (sid, school), a in chosen.items():
        if sid not in names:
            raise a.where.missing("first_name", "Staff (no Staff record for this StaffReference)")
        first, last = names[sid]
        # The employment at this school, else the staff member's earliest hire anywhere.
        job = employment.get((sid, school)) or min(
            by_staff.get(sid, [("", None)]), key=lambda j: j[0]
        )
        hire, employment_fte = job
        if not hire:
            raise a.where.missing("hire_date", "StaffEducationOrganizationEmploymentAssociation")
        fte = a.fte or employment_fte
        if fte is None:
            raise a.where.missing("fte", "FullTimeEquivalency")
        yield (sid, school, first, last, a.role, fte, hire), a.where


# --------------------------------------------------------------------------------------------
# budgets
# --------------------------------------------------------------------------------------------


def _function_category(code: str) -> str | None:
    """Budget category of an NCES function code; None for functions outside school budgets."""
    digits = re.match(r"\d+", code)
    if not digits:
        return None
    n = int(digits.group()[:4].ljust(4, "0"))
    ranges = (
        (1000, 2000, "INSTRUCTION"),
        (2000, 2200, "STUDENT_SERVICES"),
        (2200, 2300, "INSTRUCTION"),
        (2300, 2600, "ADMINISTRATION"),
        (2600, 2700, "OPERATIONS"),
        (2700, 2800, "TRANSPORTATION"),
        (2800, 3000, "ADMINISTRATION"),
        (3100, 3200, "FOOD_SERVICE"),
        (3000, 5000, "OPERATIONS"),
    )
    return next((cat for lo, hi, cat in ranges if lo <= n < hi), None)


def _budgets(ex: EdfiExtract) -> Iterator[tuple[Row, _Where]]:
    dims: dict[tuple[str, str, str], str] = {}
    charts: dict[tuple[str, str, str], tuple[str, str | None, str | None]] = {}
    accounts: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    budgets: list[tuple[tuple[str, str, str], str, str, _Where]] = []
    tags = (
        "FunctionDimension",
        "ProgramDimension",
        "ChartOfAccount",
        "LocalAccount",
        "LocalBudget",
    )
    for f in ex.of(FINANCE):
        for w, el in _records(f, tags, "budgets"):
            _finance_record(el, f, w, dims, charts, accounts, budgets)
    schools = ex.school_ids
    latest: dict[tuple[str, str, str], tuple[str, str, _Where]] = {}
    for key, as_of, amount, w in budgets:
        if key not in latest or as_of > latest[key][0]:
            latest[key] = (as_of, amount, w)
    totals: dict[tuple[str, str, str], list[Any]] = {}
    skipped = 0
    for key, (_, amount, w) in latest.items():
        _, org, year = key
        if schools is not None and org not in schools:
            continue  # district-level account: not a school budget
        if key not in accounts:
            raise w.missing("category", "LocalAccountReference (no LocalAccount for it)")
        chart = charts.get(accounts[key])
        if chart is None:
            raise w.missing("category", "ChartOfAccount (none for the LocalAccount)")
        account_type, function, program = chart
        if _norm(account_type) != "expenditure":
            continue
        category = _category(function, program, year, dims, w)
        if category is None:
            skipped += 1
            continue
        try:
            value = float(amount.replace(",", ""))
        except ValueError:
            raise w.error("value is not a valid amount", "amount", "Amount") from None
        total = totals.setdefault((org, year, category), [0.0, w])
        total[0] += value
    if skipped:
        log.info("edfi: budgets: %d school budget lines outside the categories skipped", skipped)
    for (org, year, category), (amount, w) in totals.items():
        yield (org, year, category, amount), w


def _category(
    function: str | None, program: str | None, year: str, dims: dict, w: _Where
) -> str | None:
    program_name = dims.get(("ProgramDimension", program, year), "") if program else ""
    if _SPECIAL_ED_PROGRAM.search(program_name):
        return "SPECIAL_EDUCATION"
    if _EL_PROGRAM.search(program_name):
        return "ENGLISH_LEARNERS"
    if function is None:
        raise w.missing("category", "ChartOfAccount/FunctionFunctionDimensionReference")
    return _function_category(function)


def _finance_record(
    el: Element,
    f: _File,
    w: _Where,
    dims: dict,
    charts: dict,
    accounts: dict,
    budgets: list,
) -> None:
    q = f.q
    if w.tag in ("FunctionDimension", "ProgramDimension"):
        code = _need(el, f, ("Code",), w, "category")
        year = _need(el, f, ("FiscalYear",), w, "fiscal_year")
        dims[(w.tag, code, year)] = _t(el, q.CodeName) or ""
    elif w.tag == "ChartOfAccount":
        key = (
            _need(el, f, ("AccountIdentifier",), w, None),
            _need(el, f, ("FiscalYear",), w, "fiscal_year"),
            _need(el, f, EDORG_ID, w, "school_id"),
        )
        charts[key] = (
            _code(_need(el, f, ("AccountType",), w, None)),
            _get(
                el, f, ("FunctionFunctionDimensionReference", "FunctionDimensionIdentity", "Code")
            ),
            _get(el, f, ("ProgramProgramDimensionReference", "ProgramDimensionIdentity", "Code")),
        )
    elif w.tag == "LocalAccount":
        key = (
            _need(el, f, ("AccountIdentifier",), w, None),
            _need(el, f, EDORG_ID, w, "school_id"),
            _need(el, f, ("FiscalYear",), w, "fiscal_year"),
        )
        chart = ("ChartOfAccountReference", "ChartOfAccountIdentity")
        accounts[key] = (
            _need(el, f, (*chart, "AccountIdentifier"), w, None),
            _need(el, f, (*chart, "FiscalYear"), w, "fiscal_year"),
            _need(el, f, (*chart, *EDORG_ID), w, "school_id"),
        )
    else:
        ref = ("LocalAccountReference", "LocalAccountIdentity")
        key = (
            _need(el, f, (*ref, "AccountIdentifier"), w, None),
            _need(el, f, (*ref, *EDORG_ID), w, "school_id"),
            _need(el, f, (*ref, "FiscalYear"), w, "fiscal_year"),
        )
        budgets.append(
            (key, _need(el, f, ("AsOfDate",), w, None), _need(el, f, ("Amount",), w, "amount"), w)
        )


# --------------------------------------------------------------------------------------------
# discipline
# --------------------------------------------------------------------------------------------


def _discipline(ex: EdfiExtract) -> Iterator[tuple[Row, _Where]]:
    incidents: dict[tuple[str, str], tuple[str, str | None]] = {}
    actions: list[tuple[Element, _File, _Where]] = []
    for f in ex.of(DISCIPLINE):
        q = f.q
        for w, el in _records(f, ("DisciplineIncident", "DisciplineAction"), "discipline"):
            if w.tag == "DisciplineIncident":
                key = (
                    _need(el, f, ("IncidentIdentifier",), w, "incident_id"),
                    _need(el, f, SCHOOL_REF, w, "school_id"),
                )
                behavior = _t(el, q.Behavior, q.Behavior)
                incidents[key] = (
                    _need(el, f, ("IncidentDate",), w, "incident_date"),
                    _code(behavior) if behavior else None,
                )
            else:
                row = _action(el, f, w)
                if row is not None:
                    actions.append(row)  # type: ignore[arg-type]
    for row, incident, w in actions:  # type: ignore[misc]
        date_text, behavior = incidents.get(incident, (None, None)) if incident else (None, None)
        incident_id, student, school, action_date, offense, action, days = row
        offense = offense or behavior
        if offense is None:
            raise w.missing("offense_code", "Behavior")
        yield (incident_id, student, school, date_text or action_date, offense, action, days), w


def _action(el: Element, f: _File, w: _Where) -> tuple | None:
    """(row without the incident join, incident key, where), or None if not a removal."""
    q = f.q
    codes = {
        _lookup(DISCIPLINE_ACTIONS, d.text or "", w, "action", "Discipline", "DisciplineDescriptor")
        for d in el.findall(q.Discipline)
    }
    codes.discard(None)
    if not codes:
        return None  # no removal from school among the actions
    action = min(codes, key=_SEVERITY.__getitem__)  # type: ignore[arg-type]
    days = _t(el, q.ActualDisciplineActionLength) or _t(el, q.DisciplineActionLength)
    if days is None:
        raise w.missing("days_removed", "ActualDisciplineActionLength or DisciplineActionLength")
    assoc = el.find(
        q.StudentDisciplineIncidentBehaviorAssociationReference
        + "/"
        + q.StudentDisciplineIncidentBehaviorAssociationIdentity
    )
    incident = None
    offense = None
    if assoc is not None:
        ident = (q.DisciplineIncidentReference, q.DisciplineIncidentIdentity)
        number = _t(assoc, *ident, q.IncidentIdentifier)
        school = _t(assoc, *ident, *f.q.path(SCHOOL_REF))
        incident = (number, school) if number and school else None
        offense = _descriptor_detail(assoc, f, "Behavior")
    row = (
        _need(el, f, ("DisciplineActionIdentifier",), w, "incident_id"),
        _need(el, f, STUDENT_REF, w, "student_id"),
        _need(
            el, f, ("ResponsibilitySchoolReference", "SchoolIdentity", "SchoolId"), w, "school_id"
        ),
        _need(el, f, ("DisciplineDate",), w, "incident_date"),
        offense,
        action,
        days,
    )
    return row, incident, w


_READERS: dict[str, Callable[[EdfiExtract], Iterator[tuple[Row, _Where]]]] = {
    "schools": _schools,
    "students": _students,
    "enrollments": _enrollments,
    "programs": _programs,
    "assessments": _assessments,
    "staff": _staff,
    "budgets": _budgets,
    "discipline": _discipline,
}


def open_extract(location: str, ctx: ExtractContext | None = None) -> EdfiExtract:
    """Open a directory of Ed-Fi interchange XML files (reads each file's root element)."""
    return EdfiExtract(Path(location), ctx)
