"""The Ed-Fi interchange XML adapter: on the real Grand Bend sample, and on small hand-made files.

Grand Bend (Ed-Fi DS 5.2) is read as published. Its StudentEnrollment.xml is not part of the
reference copy, so a test adds a synthetic one to exercise students; a hand-made district covers
what Grand Bend lacks (calendars, enrollments, MCAS-scale results, budgets, discipline).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from datashare.errors import SourceError
from datashare.sources import ADAPTERS
from datashare.sources.base import ExtractContext, fingerprint
from datashare.sources.canonical import model
from datashare.sources.edfi import EdfiExtract, open_extract
from support import REFERENCE as SHARED

GRAND_BEND = SHARED / "edfi_grand_bend"
NS = "http://ed-fi.org/5.2.0"


# -- helpers -----------------------------------------------------------------------------------


def _read(ex: EdfiExtract, dataset: str) -> pa.Table:
    """All batches of a dataset; each must carry exactly the canonical schema."""
    schema = model()[dataset].schema
    batches = list(ex.batches(dataset))
    for b in batches:
        assert b.schema.equals(schema), dataset
        assert b.schema.names == schema.names
    return pa.Table.from_batches(batches, schema=schema)


def _assert_contract(dataset: str, table: pa.Table) -> None:
    """Required columns have no nulls, coded columns stay in their code sets, keys are unique."""
    ds = model()[dataset]
    for col in ds.columns:
        values = table.column(col.name)
        if col.required:
            assert values.null_count == 0, (dataset, col.name)
        if col.code_set:
            allowed = set(model().code_sets[col.code_set])
            assert set(values.drop_null().to_pylist()) <= allowed, (dataset, col.name)
    keys = table.select(list(ds.key)).to_pylist()
    assert len({tuple(k.values()) for k in keys}) == len(keys), dataset


def _count_elements(path: Path, tag: str) -> int:
    return len(re.findall(rf"<{tag}[\s>]".encode(), path.read_bytes()))


def _interchange(name: str, body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{name} xmlns="{NS}">\n{body}\n</{name}>\n'


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def _d(kind: str, value: str) -> str:
    return f"uri://ed-fi.org/{kind}Descriptor#{value}"


def _student_ref(sid: str) -> str:
    return (
        f"<StudentReference><StudentIdentity><StudentUniqueId>{sid}</StudentUniqueId>"
        "</StudentIdentity></StudentReference>"
    )


def _school_ref(school: str, tag: str = "SchoolReference") -> str:
    return f"<{tag}><SchoolIdentity><SchoolId>{school}</SchoolId></SchoolIdentity></{tag}>"


def _edorg_ref(org: str) -> str:
    return (
        "<EducationOrganizationReference><EducationOrganizationIdentity>"
        f"<EducationOrganizationId>{org}</EducationOrganizationId>"
        "</EducationOrganizationIdentity></EducationOrganizationReference>"
    )


# -- Grand Bend, as published ------------------------------------------------------------------


@pytest.fixture(scope="module")
def grand_bend() -> Path:
    if not (GRAND_BEND / "Student.xml").exists():
        pytest.skip("the Ed-Fi Grand Bend reference sample is not available")
    return GRAND_BEND


@pytest.fixture(scope="module")
def gb(grand_bend: Path) -> EdfiExtract:
    return open_extract(str(grand_bend))


@pytest.fixture(scope="module")
def gb_tables(gb: EdfiExtract) -> dict[str, pa.Table]:
    return {ds: _read(gb, ds) for ds in gb.datasets()}


def test_registry_points_here() -> None:
    assert ADAPTERS["edfi_xml"] == "datashare.sources.edfi"


def test_grand_bend_lists_what_its_files_support(gb: EdfiExtract) -> None:
    # No StudentEnrollment.xml: no demographics for students, no enrollment spells;
    # Finance.xml has a chart of accounts but no LocalBudget amounts.
    assert gb.datasets() == ["assessments", "attendance", "programs", "schools", "staff"]
    assert gb.format == "edfi_xml"
    assert gb.state == {}
    assert all(gb.expected_rows(ds) is None for ds in gb.datasets())


def test_grand_bend_meets_the_canonical_contract(gb_tables: dict[str, pa.Table]) -> None:
    for dataset, table in gb_tables.items():
        _assert_contract(dataset, table)


def test_grand_bend_schools(gb_tables: dict[str, pa.Table]) -> None:
    schools = {r["school_id"]: r for r in gb_tables["schools"].to_pylist()}
    assert set(schools) == {"255901001", "255901044", "255901107"}
    spans = {s: (r["school_type"], r["low_grade"], r["high_grade"]) for s, r in schools.items()}
    assert spans == {
        "255901001": ("HS", "09", "12"),
        "255901044": ("MS", "06", "08"),
        "255901107": ("ES", "01", "05"),
    }
    for r in schools.values():
        assert r["dese_code"] == r["school_id"]  # Grand Bend's SEA code equals its SchoolId
        assert r["school_name"] and r["address"] and r["city"] and r["zip"]


def test_grand_bend_programs_match_the_sample(
    grand_bend: Path, gb_tables: dict[str, pa.Table]
) -> None:
    programs = gb_tables["programs"]
    counts = Counter(programs.column("program").to_pylist())
    source = grand_bend / "StudentProgram.xml"
    expected = {
        "SPED": _count_elements(source, "StudentSpecialEducationProgramAssociation"),
        "ELL": _count_elements(source, "StudentLanguageInstructionProgramAssociation"),
        "FRL": _count_elements(source, "StudentSchoolFoodServiceProgramAssociation"),
        "HOMELESS": _count_elements(source, "StudentHomelessProgramAssociation"),
        "S504": _count_elements(source, "StudentSection504ProgramAssociation"),
    }
    assert expected == {"SPED": 97, "ELL": 38, "FRL": 82, "HOMELESS": 11, "S504": 3}
    # Food service is the only economic-status source; no DirectCertification -> proxy.
    assert counts == {**expected, "ECON_DIS": 82}
    rows = programs.to_pylist()
    assert {r["detail"] for r in rows if r["program"] == "FRL"} == {"F", "R"}
    # 21 Disability elements on 20 spells; the primary one (OrderOfDisability 1) is the detail.
    sped = [r["detail"] for r in rows if r["program"] == "SPED" and r["detail"]]
    assert len(sped) == 20 and "Motor impairment" in sped and "Physical Disability" in sped
    assert {r["school_year"] for r in rows} == {2022}  # 2021-22, from the spells' dates
    student_ids = set(
        re.findall(rb"<StudentUniqueId>(\d+)<", (grand_bend / "Student.xml").read_bytes())
    )
    assert {r["student_id"].encode() for r in rows} <= student_ids


def test_grand_bend_attendance_has_one_row_per_event_day(
    grand_bend: Path, gb_tables: dict[str, pa.Table]
) -> None:
    attendance = gb_tables["attendance"]
    events = _count_elements(
        grand_bend / "StudentSchoolAttendance.xml", "StudentSchoolAttendanceEvent"
    )
    assert events == 1917
    # One student has an excused absence and a partial day on the same date: one row, AE.
    assert attendance.num_rows == 1916
    assert Counter(attendance.column("status").to_pylist()) == {"AE": 1077, "AU": 773, "T": 66}
    schools = set(gb_tables["schools"].column("school_id").to_pylist())
    assert set(attendance.column("school_id").to_pylist()) <= schools


def test_grand_bend_staff(gb_tables: dict[str, pa.Table]) -> None:
    staff = gb_tables["staff"]
    # 69 assignments, 3 of them to the district (not a school): 66 school assignments.
    assert staff.num_rows == 66
    assert len(staff.column("staff_id").unique()) == 65  # one teacher works at two schools
    assert Counter(staff.column("role").to_pylist()) == {
        "TEACHER": 55,
        "ADMINISTRATIVE": 6,
        "PRINCIPAL": 3,
        "COUNSELOR": 2,
    }
    assert set(staff.column("fte").to_pylist()) <= {0.5, 1.0}
    schools = set(gb_tables["schools"].column("school_id").to_pylist())
    assert set(staff.column("school_id").to_pylist()) <= schools


def test_grand_bend_assessments_are_not_on_the_mcas_scale(gb_tables: dict[str, pa.Table]) -> None:
    # Raw, vertical and Lexile scores only: no row can honestly fill scaled_score 440-560.
    assert gb_tables["assessments"].num_rows == 0


def test_grand_bend_students_need_the_enrollment_interchange(gb: EdfiExtract) -> None:
    with pytest.raises(SourceError, match="StudentEducationOrganizationAssociation"):
        gb.batches("students")
    with pytest.raises(SourceError, match="LocalBudget"):
        gb.batches("budgets")


def test_grand_bend_raw_files_and_fingerprint(grand_bend: Path, gb: EdfiExtract) -> None:
    raw = {r.name: r for r in gb.raw_files()}
    on_disk = sorted(p.name for p in grand_bend.glob("*.xml"))
    assert sorted(raw) == on_disk and len(on_disk) == 7
    for name, r in raw.items():
        data = (grand_bend / name).read_bytes()
        assert r.sha256 == hashlib.sha256(data).hexdigest()
        assert r.size == len(data) and r.path == grand_bend / name
    assert gb.fingerprint() == fingerprint({n: r.sha256 for n, r in raw.items()})
    assert open_extract(str(grand_bend)).fingerprint() == gb.fingerprint()


# -- Grand Bend with a synthetic StudentEnrollment.xml ------------------------------------------

_RACES = ("Black or African American", "White", "Asian", "American Indian or Alaska Native")


def _seoa(i: int, sid: str) -> str:
    sex = ("Female", "Male", "Non-binary")[i % 3]
    if i % 5 == 0:
        race = "<HispanicLatinoEthnicity>true</HispanicLatinoEthnicity>"
    elif i % 5 == 1:
        race = f"<Race>{_d('Race', 'Asian')}</Race><Race>{_d('Race', 'White')}</Race>"
    else:
        race = "<HispanicLatinoEthnicity>false</HispanicLatinoEthnicity>"
        race += f"<Race>{_d('Race', _RACES[i % 4])}</Race>"
    state = (
        f"<StudentIdentificationCode><IdentificationCode>S{sid}</IdentificationCode>"
        f"<StudentIdentificationSystem>{_d('StudentIdentificationSystem', 'State')}"
        "</StudentIdentificationSystem><AssigningOrganizationIdentificationCode>TX"
        "</AssigningOrganizationIdentificationCode></StudentIdentificationCode>"
        if i % 2 == 0
        else ""
    )
    return (
        f"<StudentEducationOrganizationAssociation>{_student_ref(sid)}{_edorg_ref('255901')}"
        f"{state}<Sex>{_d('Sex', sex)}</Sex>"
        f"<Address><StreetNumberName>{i} Main St</StreetNumberName><City>Grand Bend</City>"
        f"<StateAbbreviation>{_d('StateAbbreviation', 'TX')}</StateAbbreviation>"
        f"<PostalCode>73334</PostalCode><AddressType>{_d('AddressType', 'Home')}</AddressType>"
        f"</Address>{race}<Language><Language>{_d('Language', 'spa' if i % 4 == 0 else 'eng')}"
        f"</Language><LanguageUse>{_d('LanguageUse', 'Home language')}</LanguageUse></Language>"
        "</StudentEducationOrganizationAssociation>"
    )


def _ssa(sid: str, school: str) -> str:
    return (
        f"<StudentSchoolAssociation>{_student_ref(sid)}{_school_ref(school)}"
        "<SchoolYear>2021-2022</SchoolYear><EntryDate>2021-08-23</EntryDate>"
        f"<EntryGradeLevel>{_d('GradeLevel', 'Third grade')}</EntryGradeLevel>"
        "</StudentSchoolAssociation>"
    )


def test_grand_bend_students_with_enrollment_supplement(grand_bend: Path, tmp_path: Path) -> None:
    for p in grand_bend.glob("*.xml"):
        (tmp_path / p.name).symlink_to(p)
    ids = [
        m.decode()
        for m in re.findall(rb"<StudentUniqueId>(\d+)<", (grand_bend / "Student.xml").read_bytes())
    ]
    assert len(ids) == len(set(ids)) == 960
    body = "\n".join(_seoa(i, sid) + _ssa(sid, "255901107") for i, sid in enumerate(ids))
    _write(tmp_path, {"StudentEnrollment.xml": _interchange("InterchangeStudentEnrollment", body)})
    ex = open_extract(str(tmp_path))
    assert "students" in ex.datasets() and "enrollments" in ex.datasets()
    students = _read(ex, "students")
    _assert_contract("students", students)
    assert students.num_rows == 960
    assert students.column("student_id").to_pylist() == ids
    rows = students.to_pylist()
    assert Counter(r["gender"] for r in rows) == {"F": 320, "M": 320, "N": 320}
    race = Counter(r["race_ethnicity"] for r in rows)
    assert race["HL"] == 192 and race["MR"] == 192
    assert sum(r["sasid"] == f"S{r['student_id']}" for r in rows) == 480
    assert sum(r["sasid"] == r["student_id"] for r in rows) == 480  # documented fallback
    assert {r["first_language"] for r in rows} == {"English", "Spanish"}
    # No opt-out indicator in these files: every student is treated as opted out (fail closed).
    assert all(r["directory_opt_out"] for r in rows)
    assert all(r["birth_date"] is not None and r["last_name"] for r in rows)
    enrollments = _read(ex, "enrollments")
    _assert_contract("enrollments", enrollments)
    assert enrollments.num_rows == 960
    assert set(enrollments.column("grade").to_pylist()) == {"03"}
    # ELL spells now carry the first language from the demographics.
    ell = [r for r in _read(ex, "programs").to_pylist() if r["program"] == "ELL"]
    assert len(ell) == 38 and all(r["detail2"] in {"English", "Spanish"} for r in ell)


# -- a small hand-made district ------------------------------------------------------------------


def _school(school: str, name: str, grades: list[str]) -> str:
    levels = "".join(f"<GradeLevel>{_d('GradeLevel', g)}</GradeLevel>" for g in grades)
    return (
        "<School><EducationOrganizationIdentificationCode>"
        f"<IdentificationCode>0035{school}</IdentificationCode>"
        "<EducationOrganizationIdentificationSystem>"
        f"{_d('EducationOrganizationIdentificationSystem', 'SEA')}"
        "</EducationOrganizationIdentificationSystem></EducationOrganizationIdentificationCode>"
        f"<NameOfInstitution>{name}</NameOfInstitution>"
        f"<EducationOrganizationCategory>{_d('EducationOrganizationCategory', 'School')}"
        "</EducationOrganizationCategory>"
        "<Address><StreetNumberName>1 School St</StreetNumberName><City>Roxbury</City>"
        f"<StateAbbreviation>{_d('StateAbbreviation', 'MA')}</StateAbbreviation>"
        "<PostalCode>02119</PostalCode><Latitude>42.33</Latitude><Longitude>-71.08</Longitude>"
        f"<AddressType>{_d('AddressType', 'Physical')}</AddressType></Address>"
        f"<SchoolId>{school}</SchoolId>{levels}</School>"
    )


_K8 = ["Kindergarten"] + [
    f"{w} grade"
    for w in ("First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth")
]


def _student(sid: str, first: str, last: str, birth: str | None) -> str:
    born = f"<BirthData><BirthDate>{birth}</BirthDate></BirthData>" if birth else "<BirthData/>"
    return (
        f"<Student><StudentUniqueId>{sid}</StudentUniqueId><Name><FirstName>{first}</FirstName>"
        f"<LastSurname>{last}</LastSurname></Name>{born}</Student>"
    )


def _demographics(sid: str, sex: str, race: str, language: str, extra: str = "") -> str:
    return (
        f"<StudentEducationOrganizationAssociation>{_student_ref(sid)}{_edorg_ref('10')}{extra}"
        f"<Sex>{_d('Sex', sex)}</Sex>"
        "<Address><StreetNumberName>9 Elm St</StreetNumberName><City>Dorchester</City>"
        f"<StateAbbreviation>{_d('StateAbbreviation', 'MA')}</StateAbbreviation>"
        f"<PostalCode>02124</PostalCode><AddressType>{_d('AddressType', 'Home')}</AddressType>"
        f"</Address>{race}<Language><Language>{_d('Language', language)}</Language>"
        f"<LanguageUse>{_d('LanguageUse', 'Native language')}</LanguageUse></Language>"
        "</StudentEducationOrganizationAssociation>"
    )


def _spell(sid: str, school: str, grade: str, entry: str, exit_: str = "", kind: str = "") -> str:
    out = f"<ExitWithdrawDate>{exit_}</ExitWithdrawDate>" if exit_ else ""
    out += f"<ExitWithdrawType>{_d('ExitWithdrawType', kind)}</ExitWithdrawType>" if kind else ""
    return (
        f"<StudentSchoolAssociation>{_student_ref(sid)}{_school_ref(school)}"
        f"<SchoolYear>2025-2026</SchoolYear><EntryDate>{entry}</EntryDate>"
        f"<EntryGradeLevel>{_d('GradeLevel', grade)}</EntryGradeLevel>{out}"
        "</StudentSchoolAssociation>"
    )


def _calendar_date(school: str, day: str, event: str = "Instructional day") -> str:
    return (
        f"<CalendarDate><Date>{day}</Date>"
        f"<CalendarEvent>{_d('CalendarEvent', event)}</CalendarEvent>"
        f"<CalendarReference><CalendarIdentity><CalendarCode>{school}-A</CalendarCode>"
        f"{_school_ref(school)}<SchoolYear>2025-2026</SchoolYear></CalendarIdentity>"
        "</CalendarReference></CalendarDate>"
    )


def _event(sid: str, school: str, day: str, category: str) -> str:
    return (
        f"<StudentSchoolAttendanceEvent><AttendanceEvent><EventDate>{day}</EventDate>"
        f"<AttendanceEventCategory>{_d('AttendanceEventCategory', category)}"
        f"</AttendanceEventCategory></AttendanceEvent>{_student_ref(sid)}{_school_ref(school)}"
        "<SessionReference><SessionIdentity><SessionName>Fall</SessionName>"
        f"<SchoolYear>2025-2026</SchoolYear>{_school_ref(school)}</SessionIdentity>"
        "</SessionReference></StudentSchoolAttendanceEvent>"
    )


def _program(tag: str, sid: str, extra: str) -> str:
    return (
        f"<{tag}>{_student_ref(sid)}<ProgramReference><ProgramIdentity>{_edorg_ref('10')}"
        f"<ProgramName>P</ProgramName><ProgramType>{_d('ProgramType', 'Other')}</ProgramType>"
        f"</ProgramIdentity></ProgramReference><BeginDate>2025-09-02</BeginDate>"
        f"{_edorg_ref('10')}{extra}</{tag}>"
    )


def _score(method: str, value: str) -> str:
    return (
        f"<ScoreResult><Result>{value}</Result><ResultDatatypeType>"
        f"{_d('ResultDatatypeType', 'Integer')}</ResultDatatypeType><AssessmentReportingMethod>"
        f"{_d('AssessmentReportingMethod', method)}</AssessmentReportingMethod></ScoreResult>"
    )


def _student_assessment(sid: str, ident: str, scores: str, level: str) -> str:
    return (
        f"<StudentAssessment><StudentAssessmentIdentifier>{sid}-{ident}</StudentAssessmentIdentifier>"
        f"<AdministrationDate>2025-09-04T09:00:00</AdministrationDate>{scores}"
        f"<WhenAssessedGradeLevel>{_d('GradeLevel', 'Sixth grade')}</WhenAssessedGradeLevel>"
        "<PerformanceLevel><PerformanceLevel>"
        f"uri://doe.mass.edu/PerformanceLevelDescriptor#{level}</PerformanceLevel>"
        f"<AssessmentReportingMethod>{_d('AssessmentReportingMethod', 'Scale score')}"
        f"</AssessmentReportingMethod></PerformanceLevel>{_student_ref(sid)}"
        f"<AssessmentReference><AssessmentIdentity><AssessmentIdentifier>{ident}"
        "</AssessmentIdentifier><Namespace>uri://doe.mass.edu/Assessment</Namespace>"
        "</AssessmentIdentity></AssessmentReference><SchoolYear>2025-2026</SchoolYear>"
        "</StudentAssessment>"
    )


def _dimension(tag: str, code: str, name: str) -> str:
    year = "<FiscalYear>2026</FiscalYear>"
    return f"<{tag}><Code>{code}</Code>{year}<CodeName>{name}</CodeName></{tag}>"


def _account(ident: str, org: str, function: str, program: str = "") -> str:
    prog = (
        "<ProgramProgramDimensionReference><ProgramDimensionIdentity>"
        f"<Code>{program}</Code><FiscalYear>2026</FiscalYear></ProgramDimensionIdentity>"
        "</ProgramProgramDimensionReference>"
        if program
        else ""
    )
    chart = (
        f"<ChartOfAccount><AccountIdentifier>{ident}</AccountIdentifier><FiscalYear>2026</FiscalYear>"
        f"{_edorg_ref(org)}<AccountType>{_d('AccountType', 'Expenditure')}</AccountType>"
        "<FunctionFunctionDimensionReference><FunctionDimensionIdentity>"
        f"<Code>{function}</Code><FiscalYear>2026</FiscalYear></FunctionDimensionIdentity>"
        f"</FunctionFunctionDimensionReference>{prog}</ChartOfAccount>"
    )
    local = (
        f"<LocalAccount><AccountIdentifier>{ident}</AccountIdentifier>{_edorg_ref(org)}"
        "<FiscalYear>2026</FiscalYear><ChartOfAccountReference><ChartOfAccountIdentity>"
        f"<AccountIdentifier>{ident}</AccountIdentifier><FiscalYear>2026</FiscalYear>"
        f"{_edorg_ref(org)}</ChartOfAccountIdentity></ChartOfAccountReference></LocalAccount>"
    )
    return chart + local


def _budget(ident: str, org: str, as_of: str, amount: str) -> str:
    return (
        "<LocalBudget><LocalAccountReference><LocalAccountIdentity>"
        f"<AccountIdentifier>{ident}</AccountIdentifier>{_edorg_ref(org)}"
        "<FiscalYear>2026</FiscalYear></LocalAccountIdentity></LocalAccountReference>"
        f"<AsOfDate>{as_of}</AsOfDate><Amount>{amount}</Amount></LocalBudget>"
    )


def _action(ident: str, sid: str, discipline: str, days: str) -> str:
    return (
        f"<DisciplineAction><DisciplineActionIdentifier>{ident}</DisciplineActionIdentifier>"
        f"<Discipline>{_d('Discipline', discipline)}</Discipline>"
        f"<DisciplineDate>2025-09-04</DisciplineDate><ActualDisciplineActionLength>{days}"
        f"</ActualDisciplineActionLength>{_student_ref(sid)}"
        f"{_school_ref('100', 'ResponsibilitySchoolReference')}"
        "<StudentDisciplineIncidentBehaviorAssociationReference>"
        f"<StudentDisciplineIncidentBehaviorAssociationIdentity>{_student_ref(sid)}"
        "<DisciplineIncidentReference><DisciplineIncidentIdentity><IncidentIdentifier>1"
        f"</IncidentIdentifier>{_school_ref('100')}</DisciplineIncidentIdentity>"
        f"</DisciplineIncidentReference><Behavior>{_d('Behavior', 'School Code of Conduct')}"
        "</Behavior></StudentDisciplineIncidentBehaviorAssociationIdentity>"
        "</StudentDisciplineIncidentBehaviorAssociationReference></DisciplineAction>"
    )


def _staff(sid: str, first: str, last: str) -> str:
    return (
        f"<Staff><StaffUniqueId>{sid}</StaffUniqueId><Name><FirstName>{first}</FirstName>"
        f"<LastSurname>{last}</LastSurname></Name></Staff>"
    )


def _employment(sid: str, org: str, hire: str) -> str:
    return (
        "<StaffEducationOrganizationEmploymentAssociation><StaffReference><StaffIdentity>"
        f"<StaffUniqueId>{sid}</StaffUniqueId></StaffIdentity></StaffReference>{_edorg_ref(org)}"
        f"<EmploymentStatus>{_d('EmploymentStatus', 'Tenured or permanent')}</EmploymentStatus>"
        f"<EmploymentPeriod><HireDate>{hire}</HireDate></EmploymentPeriod>"
        "<FullTimeEquivalency>1</FullTimeEquivalency>"
        "</StaffEducationOrganizationEmploymentAssociation>"
    )


def _assignment(sid: str, org: str, classification: str, title: str, fte: str = "") -> str:
    return (
        "<StaffEducationOrganizationAssignmentAssociation><StaffReference><StaffIdentity>"
        f"<StaffUniqueId>{sid}</StaffUniqueId></StaffIdentity></StaffReference>{_edorg_ref(org)}"
        f"<StaffClassification>{_d('StaffClassification', classification)}</StaffClassification>"
        f"<PositionTitle>{title}</PositionTitle><BeginDate>2025-08-25</BeginDate>"
        + (f"<FullTimeEquivalency>{fte}</FullTimeEquivalency>" if fte else "")
        + "</StaffEducationOrganizationAssignmentAssociation>"
    )


def _district_files() -> dict[str, str]:
    a, b = "9990001", "9990002"
    hispanic = "<HispanicLatinoEthnicity>true</HispanicLatinoEthnicity>"
    two_races = f"<Race>{_d('Race', 'Asian')}</Race><Race>{_d('Race', 'White')}</Race>"
    state_id = (
        "<StudentIdentificationCode><IdentificationCode>1234567890</IdentificationCode>"
        f"<StudentIdentificationSystem>{_d('StudentIdentificationSystem', 'State')}"
        "</StudentIdentificationSystem><AssigningOrganizationIdentificationCode>MA"
        "</AssigningOrganizationIdentificationCode></StudentIdentificationCode>"
    )
    opt_out = (
        "<StudentIndicator><IndicatorName>Directory Information Opt-Out</IndicatorName>"
        "<Indicator>Yes</Indicator></StudentIndicator>"
    )
    return {
        "EducationOrganization.xml": _interchange(
            "InterchangeEducationOrganization",
            "<LocalEducationAgency><NameOfInstitution>District</NameOfInstitution>"
            f"<EducationOrganizationCategory>{_d('EducationOrganizationCategory', 'LEA')}"
            "</EducationOrganizationCategory><LocalEducationAgencyId>10</LocalEducationAgencyId>"
            "</LocalEducationAgency>"
            + _school("100", "Test K-8", _K8)
            + _school("200", "Test Middle", ["Sixth grade", "Seventh grade", "Eighth grade"]),
        ),
        "Student.xml": _interchange(
            "InterchangeStudent",
            _student(a, "Zelda", "Quixote", "2014-03-04")
            + _student(b, "Ada", "Byron", "2020-05-06"),
        ),
        "StudentEnrollment.xml": _interchange(
            "InterchangeStudentEnrollment",
            _demographics(a, "Female", two_races, "spa", state_id + opt_out)
            + _demographics(b, "Male", hispanic, "eng")
            + _spell(a, "100", "Sixth grade", "2025-09-02", "2025-09-04", "Transferred")
            + _spell(a, "200", "Sixth grade", "2025-09-05")
            + _spell(b, "100", "Kindergarten", "2025-09-02"),
        ),
        "EducationOrgCalendar.xml": _interchange(
            "InterchangeEducationOrgCalendar",
            _calendar_date("100", "2025-09-01", "Holiday")
            + "".join(_calendar_date("100", f"2025-09-0{d}") for d in (2, 3, 4, 5, 8))
            + "".join(_calendar_date("200", f"2025-09-0{d}") for d in (5, 8, 9)),
        ),
        "StudentSchoolAttendance.xml": _interchange(
            "InterchangeStudentAttendance",
            _event(a, "100", "2025-09-03", "Excused Absence")
            + _event(b, "100", "2025-09-04", "Tardy")
            + _event(b, "100", "2025-09-04", "Unexcused Absence")
            + _event(b, "100", "2025-09-08", "Tardy"),
        ),
        "StudentProgram.xml": _interchange(
            "InterchangeStudentProgram",
            _program(
                "StudentSchoolFoodServiceProgramAssociation",
                a,
                "<DirectCertification>false</DirectCertification><SchoolFoodServiceProgramService>"
                "<SchoolFoodServiceProgramService>"
                f"{_d('SchoolFoodServiceProgramService', 'Free Lunch')}"
                "</SchoolFoodServiceProgramService></SchoolFoodServiceProgramService>",
            )
            + _program(
                "StudentSchoolFoodServiceProgramAssociation",
                b,
                "<SchoolFoodServiceProgramService><SchoolFoodServiceProgramService>"
                f"{_d('SchoolFoodServiceProgramService', 'Full Price Lunch')}"
                "</SchoolFoodServiceProgramService></SchoolFoodServiceProgramService>",
            )
            + _program("StudentLanguageInstructionProgramAssociation", a, ""),
        ),
        "AssessmentMetadata.xml": _interchange(
            "InterchangeAssessmentMetadata",
            "<Assessment><AssessmentIdentifier>MCAS-G6-X</AssessmentIdentifier>"
            "<AssessmentTitle>MCAS</AssessmentTitle><AcademicSubject>"
            f"{_d('AcademicSubject', 'English Language Arts')}</AcademicSubject>"
            "<Namespace>uri://doe.mass.edu/Assessment</Namespace></Assessment>",
        ),
        "StudentAssessment-MCAS.xml": _interchange(
            "InterchangeStudentAssessment",
            _student_assessment(
                a,
                "MCAS-G6-X",
                _score("Scale score", "505") + _score("Growth/value-added/indexing", "55"),
                "Meeting Expectations",
            )
            + _student_assessment(b, "Benchmark-Math", _score("Lexile Measure", "700"), "Basic"),
        ),
        "Finance.xml": _interchange(
            "InterchangeFinance",
            _dimension("FunctionDimension", "1000", "Instruction")
            + _dimension("FunctionDimension", "2700", "Student Transportation")
            + _dimension("FunctionDimension", "5000", "Debt Service")
            + _dimension("ProgramDimension", "200", "Special Education")
            + _account("A1", "100", "1000")
            + _account("A2", "100", "1000", "200")
            + _account("A3", "100", "2700")
            + _account("A4", "100", "5000")
            + _account("A5", "10", "1000")
            + _budget("A1", "100", "2025-07-01", "1000.00")
            + _budget("A1", "100", "2025-08-01", "1500.00")
            + _budget("A2", "100", "2025-08-01", "250.50")
            + _budget("A3", "100", "2025-08-01", "300")
            + _budget("A4", "100", "2025-08-01", "99")
            + _budget("A5", "10", "2025-08-01", "1000000"),
        ),
        "StudentDiscipline.xml": _interchange(
            "InterchangeStudentDiscipline",
            "<DisciplineIncident><IncidentIdentifier>1</IncidentIdentifier>"
            "<IncidentDate>2025-09-03</IncidentDate><Behavior>"
            f"<Behavior>{_d('Behavior', 'School Code of Conduct')}"
            f"</Behavior></Behavior>{_school_ref('100')}</DisciplineIncident>"
            + _action("7", b, "Out of School Suspension", "2")
            + _action("8", a, "Removal from Classroom", "1"),
        ),
        "StaffAssociation.xml": _interchange(
            "InterchangeStaffAssociation",
            _staff("501", "Nina", "Hale")
            + _staff("502", "Omar", "Reyes")
            + _employment("501", "100", "2020-08-15")
            + _employment("502", "10", "2019-01-01")
            + _assignment("501", "100", "Support Services Staff", "School Nurse")
            + _assignment("501", "10", "LEA Administrator", "District office")
            + _assignment("502", "200", "Teacher", "Grade 6 math", "0.5"),
        ),
    }


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("edfi") / "district", _district_files())


@pytest.fixture(scope="module")
def district_tables(district: Path) -> dict[str, pa.Table]:
    ctx = ExtractContext(release_id="20250908T020000Z", as_of="2025-09-08T02:00:00Z")
    ex = open_extract(str(district), ctx)
    return {ds: _read(ex, ds) for ds in ex.datasets()}


def test_district_provides_every_mapped_dataset(district_tables: dict[str, pa.Table]) -> None:
    assert sorted(district_tables) == sorted(set(model().datasets) - {"course_grades"})
    for dataset, table in district_tables.items():
        _assert_contract(dataset, table)


def test_district_schools_and_students(district_tables: dict[str, pa.Table]) -> None:
    schools = {r["school_id"]: r for r in district_tables["schools"].to_pylist()}
    assert (
        schools["100"]["school_type"],
        schools["100"]["low_grade"],
        schools["100"]["high_grade"],
    ) == ("K-8", "K", "08")
    assert schools["200"]["school_type"] == "MS"
    assert schools["100"]["dese_code"] == "0035100"
    assert schools["100"]["latitude"] == pytest.approx(42.33)
    students = {r["student_id"]: r for r in district_tables["students"].to_pylist()}
    zelda, ada = students["9990001"], students["9990002"]
    assert (zelda["gender"], zelda["race_ethnicity"], zelda["sasid"]) == ("F", "MR", "1234567890")
    assert (zelda["first_language"], zelda["directory_opt_out"]) == ("Spanish", True)
    assert (ada["gender"], ada["race_ethnicity"], ada["sasid"]) == ("M", "HL", "9990002")
    assert (ada["home_address"], ada["home_city"], ada["home_zip"]) == (
        "9 Elm St",
        "Dorchester",
        "02124",
    )


def test_district_enrollments_resolve_transfers(district_tables: dict[str, pa.Table]) -> None:
    rows = sorted(
        (
            r["student_id"],
            r["school_id"],
            r["grade"],
            str(r["exit_date"]),
            r["exit_code"],
            r["school_year"],
        )
        for r in district_tables["enrollments"].to_pylist()
    )
    assert rows == [
        ("9990001", "100", "06", "2025-09-04", "T", 2026),  # re-enrolled at 200: within district
        ("9990001", "200", "06", "None", None, 2026),
        ("9990002", "100", "K", "None", None, 2026),
    ]


def test_district_attendance_expands_to_school_days(district_tables: dict[str, pa.Table]) -> None:
    got = {
        (r["student_id"], str(r["attendance_date"])): (r["school_id"], r["status"])
        for r in district_tables["attendance"].to_pylist()
    }
    assert got == {
        ("9990001", "2025-09-02"): ("100", "P"),
        ("9990001", "2025-09-03"): ("100", "AE"),
        ("9990001", "2025-09-04"): ("100", "P"),
        ("9990001", "2025-09-05"): ("200", "P"),
        ("9990001", "2025-09-08"): ("200", "P"),  # 09-09 is after the night (as_of)
        ("9990002", "2025-09-02"): ("100", "P"),
        ("9990002", "2025-09-03"): ("100", "P"),
        ("9990002", "2025-09-04"): ("100", "AU"),  # tardy and unexcused the same day
        ("9990002", "2025-09-05"): ("100", "P"),
        ("9990002", "2025-09-08"): ("100", "T"),
    }


def test_district_programs_assessments_budgets_discipline_staff(
    district_tables: dict[str, pa.Table],
) -> None:
    programs = sorted(
        (r["student_id"], r["program"], r["detail"], r["detail2"], r["school_year"])
        for r in district_tables["programs"].to_pylist()
    )
    # Direct certification "false": free lunch without ECON_DIS; full price: no FRL at all.
    assert programs == [
        ("9990001", "ELL", None, "Spanish", 2026),
        ("9990001", "FRL", "F", None, 2026),
    ]
    assert district_tables["assessments"].to_pylist() == [
        {
            "student_id": "9990001",
            "school_id": "100",
            "school_year": 2026,
            "subject": "ELA",
            "grade_tested": "06",
            "scaled_score": 505,
            "achievement_level": "M",
            "sgp": 55,
        }
    ]
    budgets = sorted(
        (r["school_id"], r["fiscal_year"], r["category"], r["amount"])
        for r in district_tables["budgets"].to_pylist()
    )
    assert budgets == [
        ("100", 2026, "INSTRUCTION", 1500.0),
        ("100", 2026, "SPECIAL_EDUCATION", 250.5),
        ("100", 2026, "TRANSPORTATION", 300.0),
    ]
    discipline = district_tables["discipline"].to_pylist()
    assert [
        (
            r["incident_id"],
            r["action"],
            str(r["incident_date"]),
            r["offense_code"],
            r["days_removed"],
        )
        for r in discipline
    ] == [("7", "OSS", "2025-09-03", "School Code of Conduct", 2.0)]
    staff = sorted(
        (r["staff_id"], r["school_id"], r["role"], r["fte"], str(r["hire_date"]))
        for r in district_tables["staff"].to_pylist()
    )
    assert staff == [
        ("501", "100", "NURSE", 1.0, "2020-08-15"),
        ("502", "200", "TEACHER", 0.5, "2019-01-01"),
    ]


# -- errors: where, never the value --------------------------------------------------------------

_SECRETS = ("9990001", "9990002", "Zelda", "Quixote", "Ada", "Byron", "2014-03-04", "2020-05-06")


def _assert_no_student_value(message: str) -> None:
    for secret in _SECRETS:
        assert secret not in message, secret


def _read_all(directory: Path) -> None:
    ex = open_extract(str(directory))
    for dataset in ex.datasets():
        for _ in ex.batches(dataset):
            pass


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_extract(str(tmp_path / "nope"))


def test_no_recognizable_interchange(tmp_path: Path) -> None:
    _write(tmp_path, {"notes.xml": "<notes><note>hello</note></notes>"})
    with pytest.raises(SourceError, match=r"no recognizable Ed-Fi interchange.*notes"):
        open_extract(str(tmp_path))
    with pytest.raises(SourceError, match="no XML files"):
        open_extract(str(_write(tmp_path / "empty", {})))


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    files = _district_files()
    days = [f"2025-09-{d:02d}" for d in range(1, 29)] * 2
    events = [_event("9990001", "100", day, "Tardy") for day in days]
    lines = _interchange("InterchangeStudentAttendance", "\n".join(events)).splitlines()
    lines[30] = lines[30].replace("</EventDate>", "</EventDat>")  # line 31: mismatched tag
    files["StudentSchoolAttendance.xml"] = "\n".join(lines)
    with pytest.raises(SourceError) as err:
        _read_all(_write(tmp_path, files))
    assert err.value.line == 31 and err.value.dataset == "attendance"
    assert err.value.file is not None and err.value.file.endswith("StudentSchoolAttendance.xml")
    assert "malformed XML (mismatched tag)" in str(err.value)
    _assert_no_student_value(str(err.value))


def test_unknown_descriptor_names_record_and_element(tmp_path: Path) -> None:
    files = _district_files()
    files["StudentSchoolAttendance.xml"] = files["StudentSchoolAttendance.xml"].replace(
        "Tardy</AttendanceEventCategory>", "Sick Day</AttendanceEventCategory>", 1
    )
    ex = open_extract(str(_write(tmp_path, files)))
    with pytest.raises(SourceError) as err:
        list(ex.batches("attendance"))
    message = str(err.value)
    assert err.value.file.endswith("StudentSchoolAttendance.xml") and err.value.column == "status"
    assert "<StudentSchoolAttendanceEvent> record 2" in message
    assert "AttendanceEventCategory" in message and "'Sick Day'" in message
    _assert_no_student_value(message)


def test_unknown_sex_descriptor_in_demographics(tmp_path: Path) -> None:
    files = _district_files()
    files["StudentEnrollment.xml"] = files["StudentEnrollment.xml"].replace(
        "#Male<", "#Not Selected<"
    )
    ex = open_extract(str(_write(tmp_path, files)))
    with pytest.raises(SourceError) as err:
        list(ex.batches("students"))
    message = str(err.value)
    assert "<StudentEducationOrganizationAssociation> record 2, element Sex" in message
    assert "'Not Selected'" in message and err.value.column == "gender"
    _assert_no_student_value(message)


def test_missing_required_element_names_record(tmp_path: Path) -> None:
    files = _district_files()
    files["Student.xml"] = _interchange(
        "InterchangeStudent",
        _student("9990001", "Zelda", "Quixote", "2014-03-04")
        + _student("9990002", "Ada", "Byron", None),
    )
    ex = open_extract(str(_write(tmp_path, files)))
    with pytest.raises(SourceError) as err:
        list(ex.batches("students"))
    message = str(err.value)
    assert err.value.file.endswith("Student.xml") and err.value.column == "birth_date"
    assert "<Student> record 2, element BirthData/BirthDate: required value is missing" in message
    _assert_no_student_value(message)


def test_invalid_date_is_located_without_the_value(tmp_path: Path) -> None:
    files = _district_files()
    files["StudentProgram.xml"] = files["StudentProgram.xml"].replace(
        "<BeginDate>2025-09-02</BeginDate>", "<BeginDate>2025-02-30</BeginDate>"
    )
    ex = open_extract(str(_write(tmp_path, files)))
    with pytest.raises(SourceError) as err:
        list(ex.batches("programs"))
    message = str(err.value)
    assert "record 1, element BeginDate: value is not a valid date" in message
    assert "2025-02-30" not in message


def test_batches_stream_in_bounded_batches(district: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datashare.sources import edfi

    monkeypatch.setattr(edfi, "BATCH_ROWS", 2)
    ex = open_extract(str(district))
    sizes = [b.num_rows for b in ex.batches("attendance")]
    assert max(sizes) == 2 and sum(sizes) == 10
    assert (
        pc.sum(
            pa.chunked_array([b.column("school_id").is_valid() for b in ex.batches("budgets")])
        ).as_py()
        == 3
    )
