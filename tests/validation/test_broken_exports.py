"""A corpus of broken exports, each producing its designed outcome.

Every defect of `datashare synth --defects` (real-world export failures) is applied to a copy of
a good export and run as a night, in-process and in the DAG's order, against a real lake that
already holds a good release (so volume checks have a baseline). Each case asserts one of:

- stopped: where (extract or validate), which dataset and rule; the message names them without
  any student-level value; and every tier still serves the previous release (LATEST unchanged,
  nothing of the failed release in any tier bucket);
- published: with the expected quarantine counts and warnings recorded in every manifest.

The designed outcome of each defect is documented in docs/validation.md.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from datashare.encryption import pipeline_keys
from datashare.lake.client import connect
from datashare.policy import load_policy
from datashare.releases import latest, list_releases, read_manifest
from datashare.synth.defects import DEFECTS, apply_defects
from datashare.synth.export import write_export
from night import run_night
from support import isolated_lake

TIERS = load_policy().tiers
BASELINE = "20260301T020000Z"

# defect -> (outcome, where, datasets to validate for a stop case, message fragments)
STOPS: dict[str, tuple[str, list[str] | None, list[str]]] = {
    "duplicate_students": ("validate", ["students"], ["students", "key.unique", "6 of"]),
    "duplicate_attendance": ("validate", ["attendance"], ["attendance", "key.unique"]),
    "orphan_enrollments": ("validate", ["enrollments"], ["enrollments", "student_id.reference"]),
    "unknown_school_enrollments": (
        "validate",
        ["enrollments"],
        ["enrollments", "school_id.reference"],
    ),
    "bad_gender_codes": ("validate", ["students"], ["students", "gender.code_set", "2 of"]),
    "bad_attendance_codes": ("validate", ["attendance"], ["attendance", "status.code_set", "3 of"]),
    "missing_last_names": ("validate", ["students"], ["students", "last_name.required"]),
    "header_only_students": ("validate", ["students"], ["students", "rows.not_empty"]),
    "header_only_attendance": (
        "validate",
        ["attendance"],
        ["attendance", "rows.not_empty", "volume.rows"],
    ),
    "future_birth_dates": ("validate", ["students"], ["students", "birth_date.future", "3 of"]),
    "many_impossible_scores": (
        "validate",
        ["assessments"],
        ["assessments", "quarantine.max_share", "scaled_score.range"],
    ),
    "half_attendance": ("validate", ["attendance"], ["attendance", "volume.rows", "volume.keys"]),
    "student_id_churn": ("validate", ["students"], ["students", "volume.keys"]),
    "latin1_text": ("extract", None, ["students.csv", "line ", "not valid UTF-8"]),
    "truncated_transfer": ("extract", None, ["attendance.csv", "truncated"]),
    "truncated_last_line": (
        "extract",
        None,
        ["enrollments.csv", "malformed row", "expected 7 fields, found 6"],
    ),
    "new_column": ("extract", None, ["students.csv", "unknown column", "nickname"]),
    "missing_column": ("extract", None, ["enrollments.csv", "missing column", "grade"]),
    "wrong_delimiter": ("extract", None, ["schools.csv", "';'-separated"]),
    "empty_file": ("extract", None, ["programs.csv", "empty"]),
    "type_change": (
        "extract",
        None,
        ["assessments.csv", "column scaled_score", "not a valid int16"],
    ),
    "missing_file": ("extract", None, ["programs.csv", "missing"]),
    "altered_file": ("extract", None, ["budgets.csv", "SHA-256"]),
    "broken_manifest": ("extract", None, ["manifest.json", "not valid JSON"]),
}

# defect -> ({dataset: rows quarantined}, [(dataset, warning rule)], source warning fragment)
PUBLISHES: dict[str, tuple[dict[str, int], list[tuple[str, str]], str | None]] = {
    "orphan_attendance": ({"attendance": 5}, [], None),
    "unknown_school_attendance": ({"attendance": 4}, [], None),
    "future_attendance": ({"attendance": 5}, [], None),
    "impossible_scores": ({"assessments": 2}, [], None),
    "implausible_ages": ({}, [("enrollments", "grade.age_plausible")], None),
    "byte_order_mark": ({}, [], "byte-order mark"),
}


def test_the_corpus_covers_every_defect_and_is_large_enough() -> None:
    assert set(STOPS) | set(PUBLISHES) == set(DEFECTS)
    assert not set(STOPS) & set(PUBLISHES)
    assert len(DEFECTS) >= 25


@pytest.fixture(scope="module")
def corpus_lake(tmp_path_factory: pytest.TempPathFactory, datashare_home: Path) -> Iterator[Path]:
    """A lake of its own holding one good release as the baseline."""
    good = tmp_path_factory.mktemp("corpus") / "good"
    write_export(good, scale=0.01, seed=5)
    with isolated_lake(tmp_path_factory.mktemp("corpus-home")):
        night = run_night(str(good), BASELINE)
        assert night.published, night.message
        yield good


def _broken(good: Path, tmp_path: Path, name: str) -> Path:
    export = shutil.copytree(good, tmp_path / name)
    apply_defects(export, [name], seed=1)
    return export


def _latest() -> dict[str, str | None]:
    pipe = connect("pipeline")
    return {t.bucket: latest(pipe, t.bucket) for t in TIERS}


def _release_id(day: int, name: str) -> str:
    return f"202603{day:02d}T{sorted(DEFECTS).index(name):02d}0000Z"


@pytest.mark.parametrize("name", sorted(STOPS))
def test_defect_stops_the_night(corpus_lake: Path, tmp_path: Path, name: str) -> None:
    where, only, fragments = STOPS[name]
    before = _latest()
    release_id = _release_id(2, name)
    night = run_night(str(_broken(corpus_lake, tmp_path, name)), release_id, validate_only=only)
    assert night.stopped_at == where, night.message
    for fragment in fragments:
        assert fragment in night.message, (fragment, night.message)
    # Nothing reached readers: LATEST unchanged, no object of the failed release anywhere.
    assert _latest() == before
    pipe = connect("pipeline")
    for tier in TIERS:
        assert release_id not in list_releases(pipe, tier.bucket)
    # The operator's message never carries a student-level value.
    students = pacsv.read_csv(
        corpus_lake / "students.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={"student_id": pa.string(), "sasid": pa.string()}
        ),
    )
    for column in ("student_id", "sasid", "first_name", "last_name", "home_address"):
        for value in students.column(column).to_pylist()[:200]:
            if value and len(value) > 3:
                assert value not in night.message, column


@pytest.mark.parametrize("name", sorted(PUBLISHES))
def test_defect_publishes_with_its_findings(corpus_lake: Path, tmp_path: Path, name: str) -> None:
    quarantined, warnings, source_warning = PUBLISHES[name]
    release_id = _release_id(3, name)
    night = run_night(str(_broken(corpus_lake, tmp_path, name)), release_id)
    assert night.published, night.message
    assert set(_latest().values()) == {release_id}
    pipe = connect("pipeline")
    for tier in TIERS:
        validation = read_manifest(pipe, tier.bucket, release_id)["validation"]
        for dataset, info in validation["datasets"].items():
            assert info["quarantined"] == quarantined.get(dataset, 0), (tier.tier, dataset)
        found = {
            (d, w["rule"]) for d, info in validation["datasets"].items() for w in info["warnings"]
        }
        assert set(warnings) <= found
        if source_warning:
            assert any(source_warning in w["problem"] for w in validation["source_warnings"])
        assert validation["data_docs"].endswith("/docs/index.html")
    for dataset, n in quarantined.items():
        keys = pipe.list_keys("bps-pipeline", f"quarantine/{release_id}/{dataset}/")
        # The quarantine zone is encrypted under the pipeline's own key.
        rows = pq.read_table(
            pa.BufferReader(pipe.get_bytes("bps-pipeline", keys[0])),
            decryption_properties=pipeline_keys(dataset).decryption_properties(),
        )
        assert rows.num_rows == n
        assert all(rows.column("_rules").to_pylist())
