"""The OneRoster 1.1/1.2 adapter: lossless round trips of a synthetic drop, a hand-written export
that follows the spec literally, and errors that name file, line and column but never a value."""

from __future__ import annotations

import datetime as dt
import shutil
import traceback
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from datashare.errors import SourceError
from datashare.sources import open_source
from datashare.sources.base import ExtractContext
from datashare.sources.canonical import model
from datashare.sources.csv_drop import read_batches, read_drop
from datashare.sources.oneroster import VERSIONS, OneRosterExtract, open_extract
from datashare.synth.export import write_export
from datashare.synth.oneroster import write_oneroster

PROVIDED = ["enrollments", "schools", "students"]


def _sorted(table: pa.Table, dataset: str) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in model()[dataset].key])


def _read(ex: OneRosterExtract, dataset: str) -> pa.Table:
    batches = list(ex.batches(dataset))
    for b in batches:
        assert b.schema == model()[dataset].schema  # exactly canonical: names, order, types
    return _sorted(pa.Table.from_batches(batches, model()[dataset].schema), dataset)


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("drop")
    write_export(out, scale=0.01, seed=3)
    return out


@pytest.fixture(scope="module")
def canonical(drop: Path) -> dict[str, pa.Table]:
    files = {f.dataset: f for f in read_drop(drop)}
    return {
        ds: _sorted(pa.Table.from_batches(list(read_batches(files[ds])), model()[ds].schema), ds)
        for ds in PROVIDED
    }


@pytest.fixture(scope="module", params=VERSIONS)
def roster(request: pytest.FixtureRequest, drop: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp(f"oneroster{request.param}")
    write_oneroster(drop, out, request.param)
    return out


@pytest.fixture
def export(drop: Path, tmp_path: Path) -> Path:
    """A private OneRoster 1.1 export a test may edit."""
    out = tmp_path / "or11"
    write_oneroster(drop, out, "1.1")
    return out


# -- round trips ------------------------------------------------------------------------------


def test_round_trip_matches_the_source_drop(roster: Path, canonical: dict[str, pa.Table]) -> None:
    ex = open_source("oneroster", str(roster), ExtractContext("r1", "2026-06-30T02:00:00+00:00"))
    assert ex.datasets() == PROVIDED  # no attendance, programs, assessments, ...
    for ds in PROVIDED:
        got, want = _read(ex, ds), canonical[ds]
        assert got.num_rows == want.num_rows, ds
        for key in model()[ds].key:
            assert set(got.column(key).to_pylist()) == set(want.column(key).to_pylist())
        assert got.equals(want), ds


def test_demographics_mapping(roster: Path, canonical: dict[str, pa.Table]) -> None:
    students = _read(open_extract(str(roster)), "students")
    for col in ("gender", "race_ethnicity"):
        got = dict(zip(*pc.value_counts(students.column(col)).flatten(), strict=True))
        want = dict(zip(*pc.value_counts(canonical["students"].column(col)).flatten(), strict=True))
        assert {k.as_py(): v.as_py() for k, v in got.items()} == {
            k.as_py(): v.as_py() for k, v in want.items()
        }
    assert {"HL", "MR", "AA", "WH"} <= set(students.column("race_ethnicity").to_pylist())
    assert "N" in students.column("gender").to_pylist()  # 1.1 via the extension, 1.2 via other


def test_zip_reads_like_the_directory(roster: Path, tmp_path: Path) -> None:
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(roster.iterdir()):
            zf.write(f, f"nightly/{f.name}")  # a zipped folder, as desktop tools make it
    zipped, plain = open_extract(str(archive)), open_extract(str(roster))
    for ds in PROVIDED:
        assert _read(zipped, ds).equals(_read(plain, ds))
    assert [r.name for r in zipped.raw_files()] == ["export.zip"]


def test_raw_files_fingerprint_and_state(roster: Path) -> None:
    ex = open_extract(str(roster))
    names = {r.name for r in ex.raw_files()}
    assert {"manifest.csv", "users.csv", "orgs.csv", "demographics.csv"} <= names
    assert all(r.path is not None and r.size > 0 for r in ex.raw_files())
    assert ex.fingerprint() == open_extract(str(roster)).fingerprint()
    assert ex.state == {} and ex.expected_rows("students") is None


# -- a hand-written export that follows the CSV binding literally --------------------------

_T = "2025-08-01T00:00:00.000Z"
_SHARED = {
    "orgs.csv": f"""sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId
d1,active,{_T},Example District,district,00990000,
s1,active,{_T},Elm Street Elementary,school,00990005,d1
s2,active,{_T},Harbor High,school,00990505,d1
dep1,active,{_T},Science Department,department,,s2
s3,tobedeleted,{_T},Closed School,school,00990009,d1
""",
    "academicSessions.csv": f"""sourcedId,status,dateLastModified,title,type,startDate,endDate,\
parentSourcedId,schoolYear
y2026,active,{_T},2025-2026,schoolYear,2025-08-25,2026-06-19,,2026
t1,active,{_T},Fall 2025,term,2025-08-25,2026-01-23,y2026,2026
t2,active,{_T},Spring 2026,term,2026-01-26,2026-06-19,y2026,2026
""",
    "courses.csv": f"""sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,\
grades,orgSourcedId,subjects,subjectCodes
c-k,active,{_T},y2026,Kindergarten,K,KG,s1,,
c-math3,active,{_T},y2026,Grade 3 Math,M3,03,s1,Math,
c-bio,active,{_T},y2026,Biology,BIO,"09,10",s2,Science,
c-eng,active,{_T},y2026,English 11-12,ENG,"11,12",s2,English,
""",
    "classes.csv": f"""sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,\
classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods
cl-k,active,{_T},Kindergarten A,KG,c-k,KA,homeroom,Room 1,s1,"t1,t2",,,
cl-3,active,{_T},Grade 3 Math,03,c-math3,M3-1,scheduled,Room 12,s1,"t1,t2",Math,,1
cl-bio,active,{_T},Biology 1,"09,10",c-bio,BIO-1,scheduled,Lab 2,s2,t2,Science,,"3,4"
cl-eng,active,{_T},English 11,"11,12",c-eng,ENG-1,scheduled,Room 5,s2,t2,English,,2
""",
    "demographics.csv": f"""sourcedId,status,dateLastModified,birthDate,sex,\
americanIndianOrAlaskaNative,asian,blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,\
white,demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode,\
stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus
u-1,active,{_T},2020-03-14,female,false,false,true,false,false,false,false,US,MA,Boston,
u-2,active,{_T},2017-11-02,male,false,true,false,false,true,false,false,,,,
u-3,active,{_T},2010-06-30,female,false,false,false,false,true,false,true,,,,
u-t1,active,{_T},1980-01-01,female,,,,,,,,,,,
""",
    "enrollments.csv": f"""sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,\
userSourcedId,role,primary,beginDate,endDate
e1,active,{_T},cl-k,s1,u-t1,teacher,true,2025-08-25,2026-06-19
e2,active,{_T},cl-k,s1,u-1,student,false,2025-08-25,
e3,active,{_T},cl-3,s1,u-2,student,false,2025-08-25,2026-01-23
e4,active,{_T},cl-3,s1,u-2,student,false,2026-01-26,
e5,active,{_T},cl-bio,s2,u-3,student,false,,
e6,active,{_T},cl-eng,s2,u-3,student,false,2026-01-26,2026-06-19
e7,tobedeleted,{_T},cl-bio,s2,u-4,student,false,2025-08-25,
""",
}
_MANIFEST_11 = """propertyName,value
manifest.version,1.0
oneroster.version,1.1
file.academicSessions,bulk
file.categories,absent
file.classes,bulk
file.classResources,absent
file.courses,bulk
file.courseResources,absent
file.demographics,bulk
file.enrollments,bulk
file.lineItems,absent
file.orgs,bulk
file.resources,absent
file.results,absent
file.users,bulk
source.systemName,Hand-written fixture
source.systemCode,fixture
"""
_USERS_11 = f"""sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,\
givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password
u-t1,active,{_T},true,s1,teacher,mlee,,Morgan,Lee,,T-77,mlee@example.org,,,,,
u-1,active,{_T},true,s1,student,ajones,"{{Fed:1234}},{{State:1000000001}}",Ava,Jones,Marie,\
100001,,,,,KG,
u-2,active,{_T},true,s1,student,bsmith,{{StateID:1000000002}},Ben,Smith,,100002,,,,u-p1,03,
u-3,active,{_T},true,s2,student,cdiaz,,Carla,Diaz,,,,,,,10,
u-p1,active,{_T},true,s1,parent,psmith,,Pat,Smith,,,pat@example.org,,,u-2,,
u-4,tobedeleted,{_T},true,s2,student,dgone,,Dan,Gone,,100004,,,,,09,
u-5,active,{_T},false,"s1,s2",aide,aide1,,Al,Aide,,,,,,,,
"""
_MANIFEST_12 = (
    _MANIFEST_11.replace("oneroster.version,1.1", "oneroster.version,1.2")
    .replace("file.lineItems,absent\n", "file.lineItems,absent\nfile.lineItemScoreScales,absent\n")
    .replace("file.users,bulk\n", "file.roles,bulk\nfile.userProfiles,absent\nfile.users,bulk\n")
)
_USERS_12 = f"""sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,\
familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,\
userMasterIdentifier,resourceSourcedIds,preferredGivenName,preferredMiddleName,\
preferredFamilyName,primaryOrgSourcedId,pronouns
u-t1,active,{_T},true,mlee,,Morgan,Lee,,T-77,mlee@example.org,,,,,,,,,,,s1,
u-1,active,{_T},true,ajones,"{{Fed:1234}},{{State:1000000001}}",Ava,Jones,Marie,100001,,,,,KG,,,,,,,s1,
u-2,active,{_T},true,bsmith,{{StateID:1000000002}},Ben,Smith,,100002,,,,u-p1,03,,,,Benny,,,s1,
u-3,active,{_T},true,cdiaz,,Carla,Diaz,,,,,,,10,,MASTER-3,,,,,s2,she/her
u-p1,active,{_T},true,psmith,,Pat,Smith,,,pat@example.org,,,u-2,,,,,,,,s1,
u-4,tobedeleted,{_T},true,dgone,,Dan,Gone,,100004,,,,,09,,,,,,,s2,
"""
_ROLES_12 = """sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,\
orgSourcedId,userProfileSourcedId
r-t1,active,,u-t1,primary,teacher,,,s1,
r-1,active,,u-1,primary,student,,,s1,
r-2,active,,u-2,primary,student,,,s1,
r-3,active,,u-3,primary,student,,,s2,
r-p1,active,,u-p1,primary,parent,,,s1,
r-4,tobedeleted,,u-4,primary,student,,,s2,
"""


def _fixture(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(params=VERSIONS)
def handwritten(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    if request.param == "1.1":
        files = {**_SHARED, "manifest.csv": _MANIFEST_11, "users.csv": _USERS_11}
    else:
        files = {**_SHARED, "manifest.csv": _MANIFEST_12, "users.csv": _USERS_12}
        files["roles.csv"] = _ROLES_12
        # 1.2's sex vocabulary has `other`, which DESE records as N.
        files["demographics.csv"] = files["demographics.csv"].replace(",male,", ",other,")
    return request.param, _fixture(tmp_path / f"hand{request.param}", files)


def test_handwritten_export(handwritten: tuple[str, Path]) -> None:
    version, path = handwritten
    ex = open_extract(str(path))
    columns = ["school_id", "dese_code", "school_name", "school_type", "low_grade", "high_grade"]
    schools = _read(ex, "schools").select([*columns, "address"])
    assert schools.to_pylist() == [
        {
            "school_id": "s1",
            "dese_code": "00990005",
            "school_name": "Elm Street Elementary",
            "school_type": "ES",
            "low_grade": "K",
            "high_grade": "03",
            "address": None,
        },
        {
            "school_id": "s2",
            "dese_code": "00990505",
            "school_name": "Harbor High",
            "school_type": "HS",
            "low_grade": "09",
            "high_grade": "12",
            "address": None,
        },
    ]  # the district, the department and the deleted school are not schools
    students = _read(ex, "students").to_pylist()
    third = "MASTER-3" if version == "1.2" else "u-3"  # no identifier: master ID, else sourcedId
    assert [s["student_id"] for s in students] == ["100001", "100002", third]
    assert [s["sasid"] for s in students] == ["1000000001", "1000000002", third]
    assert [s["first_name"] for s in students] == ["Ava", "Ben", "Carla"]
    assert students[0]["middle_name"] == "Marie" and students[1]["middle_name"] is None
    assert [s["birth_date"] for s in students] == [
        dt.date(2020, 3, 14),
        dt.date(2017, 11, 2),
        dt.date(2010, 6, 30),
    ]
    assert [s["gender"] for s in students] == ["F", "M" if version == "1.1" else "N", "F"]
    assert [s["race_ethnicity"] for s in students] == ["AA", "MR", "HL"]
    for s in students:  # not in OneRoster: left to the data contracts, opt-out fails safe
        assert s["home_address"] is None and s["first_language"] is None
        assert s["directory_opt_out"] is True
    enrollments = _read(ex, "enrollments").to_pylist()
    assert [
        (
            e["student_id"],
            e["school_id"],
            e["school_year"],
            e["grade"],
            e["entry_date"],
            e["exit_date"],
        )
        for e in enrollments
    ] == [
        ("100001", "s1", 2026, "K", dt.date(2025, 8, 25), None),
        ("100002", "s1", 2026, "03", dt.date(2025, 8, 25), dt.date(2026, 1, 23)),
        ("100002", "s1", 2026, "03", dt.date(2026, 1, 26), None),
        # no beginDate: the term's start; two classes in one spell, one still open
        (third, "s2", 2026, "10", dt.date(2026, 1, 26), None),
    ]
    assert all(e["exit_code"] is None for e in enrollments)


# -- errors: where, never what -----------------------------------------------------------------


def _edit(path: Path, line: int, old: str, new: str) -> str:
    """Replace `old` on line `line` (1-based) and return the original line."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    original = lines[line - 1]
    assert old in original
    lines[line - 1] = original.replace(old, new, 1)
    path.write_text("".join(lines), encoding="utf-8")
    return original


def _assert_no_values(message: str, line: str) -> None:
    """No field of the edited record (IDs, names, dates) appears in the message."""
    for field in line.strip().split(","):
        value = field.strip('"')
        if len(value) > 3 and value not in {"true", "false", "active", "student"}:
            assert value not in message, value


def _user_line(export: Path, role: str = "student") -> int:
    lines = (export / "users.csv").read_text().splitlines()
    return next(i for i, t in enumerate(lines, 1) if f'"{role}"' in t)


def test_missing_required_file(export: Path) -> None:
    (export / "demographics.csv").unlink()
    with pytest.raises(SourceError, match=r"demographics\.csv.*required file is missing"):
        open_extract(str(export))


def test_missing_manifest_and_absent_file(export: Path) -> None:
    manifest = export / "manifest.csv"
    text = manifest.read_text()
    manifest.write_text(text.replace("file.enrollments,bulk", "file.enrollments,absent"))
    with pytest.raises(SourceError, match=r"manifest\.csv, line \d+: enrollments\.csv is required"):
        open_extract(str(export))
    manifest.write_text(text.replace("file.enrollments,bulk", "file.enrollments,delta"))
    with pytest.raises(SourceError, match="needs a bulk export"):
        open_extract(str(export))
    manifest.unlink()
    with pytest.raises(SourceError, match=r"no manifest\.csv"):
        open_extract(str(export))


def test_unknown_role_names_line_and_column(export: Path) -> None:
    line = _user_line(export)
    original = _edit(export / "users.csv", line, '"student"', '"pupil"')
    with pytest.raises(SourceError) as err:
        list(open_extract(str(export)).batches("students"))
    msg = str(err.value)
    assert "users.csv" in msg and f"line {line}" in msg and "column role" in msg
    _assert_no_values(msg, original)


def test_extension_role_and_org_type_are_not_students_or_schools(export: Path) -> None:
    before = open_extract(str(export))
    n_students = _read(before, "students").num_rows
    n_schools = _read(before, "schools").num_rows
    _edit(export / "users.csv", _user_line(export), '"student"', '"ext:alumnus"')
    _edit(export / "orgs.csv", 3, '"school"', '"ext:campus"')
    after = open_extract(str(export))
    assert _read(after, "students").num_rows == n_students - 1
    assert _read(after, "schools").num_rows == n_schools - 1


def test_unknown_org_type_names_line_and_column(export: Path) -> None:
    _edit(export / "orgs.csv", 4, '"school"', '"campus"')
    with pytest.raises(SourceError, match=r"orgs\.csv, line 4, column type: empty or unknown"):
        list(open_extract(str(export)).batches("schools"))


def test_bad_birth_date_names_line_and_column_not_value(export: Path) -> None:
    path = export / "demographics.csv"
    birth = path.read_text().splitlines()[4].split(",")[3]  # line 5, birthDate
    original = _edit(path, 5, birth, birth.replace("-", "/", 1))
    with pytest.raises(SourceError) as err:
        list(open_extract(str(export)).batches("students"))
    msg = str(err.value)
    assert "demographics.csv" in msg and "line 5" in msg and "column birthDate" in msg
    assert "not a valid date" in msg
    _assert_no_values(msg, original)
    _assert_no_values("".join(traceback.format_exception(err.value)), original)  # nor in logs


def test_bad_enrollment_date_names_line(export: Path) -> None:
    # `primary` precedes beginDate; a letter O in the year
    original = _edit(export / "enrollments.csv", 3, '"false","20', '"false","2O')
    with pytest.raises(SourceError) as err:
        list(open_extract(str(export)).batches("enrollments"))
    msg = str(err.value)
    assert "enrollments.csv" in msg and "line 3" in msg and "column beginDate" in msg
    _assert_no_values(msg, original)


def test_missing_values_are_left_to_the_data_contracts(
    export: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Empty or absent values become nulls (validation counts them); the cause is logged."""
    path = export / "demographics.csv"
    lines = path.read_text().splitlines(keepends=True)
    sourced_id = lines.pop(1).split(",")[0].strip('"')  # one student loses demographics
    path.write_text("".join(lines))
    demo = path.read_text().splitlines()
    _edit(path, 2, demo[1].split(",")[4], '"unspecified"')  # a sex with no canonical code
    with caplog.at_level("WARNING", logger="datashare.sources.oneroster"):
        students = _read(open_extract(str(export)), "students")
    assert "1 student(s) have no demographics record" in caplog.text
    assert sourced_id not in caplog.text
    nulls = students.filter(pc.is_null(students.column("birth_date")))
    assert nulls.num_rows == 1
    assert nulls.column("gender")[0].as_py() is None
    assert nulls.column("race_ethnicity")[0].as_py() is None
    assert "unspecified" in students.column("gender").to_pylist()  # for the code-set contract


def test_dangling_enrollment_reference(export: Path) -> None:
    _edit(export / "enrollments.csv", 2, '"cls-', '"nope-')
    with pytest.raises(
        SourceError, match=r"enrollments\.csv, line 2, column classSourcedId: refers to no"
    ):
        list(open_extract(str(export)).batches("enrollments"))


def test_malformed_row_and_header(export: Path) -> None:
    _edit(export / "orgs.csv", 3, "\n", ",extra\n")
    with pytest.raises(SourceError, match=r"orgs\.csv, line 3: malformed row"):
        list(open_extract(str(export)).batches("schools"))
    _edit(export / "users.csv", 1, '"givenName"', '"firstName"')
    with pytest.raises(SourceError, match=r"users\.csv, line 1, column givenName: missing"):
        open_extract(str(export))


def test_version_mismatch_is_explained(drop: Path, tmp_path: Path) -> None:
    out = tmp_path / "mixed"
    write_oneroster(drop, out, "1.1")
    shutil.copy(out / "users.csv", tmp_path / "users11.csv")
    write_oneroster(drop, out, "1.2")
    shutil.copy(tmp_path / "users11.csv", out / "users.csv")  # a 1.1 file in a 1.2 export
    with pytest.raises(SourceError, match=r"looks like OneRoster 1\.1"):
        open_extract(str(out))


def test_unknown_role_in_roles_file(drop: Path, tmp_path: Path) -> None:
    out = tmp_path / "or12"
    write_oneroster(drop, out, "1.2")
    original = _edit(out / "roles.csv", 4, '"student"', '"learner"')
    with pytest.raises(SourceError) as err:
        list(open_extract(str(out)).batches("students"))
    msg = str(err.value)
    assert "roles.csv" in msg and "line 4" in msg and "column role" in msg
    _assert_no_values(msg, original)
