"""The SQL adapter against a real SQLite file: full first night, incremental later nights that
read only the changed rows, idempotent re-runs, deletions, mappings, and no password anywhere."""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from datashare.errors import ConfigError, SourceError
from datashare.sources import open_source
from datashare.sources.base import ExtractContext
from datashare.sources.canonical import model
from datashare.sources.csv_drop import read_batches, read_drop
from datashare.sources.sql import BOUNDS_FILE, SqlExtract, load_mapping, open_extract, redact_url
from datashare.synth.export import write_export
from datashare.synth.sqldb import apply_changes, load_sqlite

DATASETS = ["enrollments", "schools", "students"]
LOADED = "2026-01-01T00:00:00+00:00"  # every row's updated_at after the initial load
NIGHT1 = "2026-01-02T02:00:00+00:00"
CHANGED = "2026-01-02T12:00:00+00:00"  # the SIS changes between the two nights
NIGHT2 = "2026-01-03T02:00:00+00:00"


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("drop")
    write_export(out, scale=0.01, seed=3)
    return out


@pytest.fixture
def db(drop: Path, tmp_path: Path) -> Path:
    path = tmp_path / "sis.db"
    load_sqlite(drop, path, LOADED, datasets=DATASETS)
    return path


def _url(db: Path) -> str:
    return f"sqlite:///{db}"


@dataclass
class Night:
    """One night's extract, read at once (as the pipeline's extract step does)."""

    extract: SqlExtract
    tables: dict[str, pa.Table]

    @property
    def stats(self) -> dict:
        return self.extract.stats

    @property
    def state(self) -> dict:
        return self.extract.state


def _ctx(as_of: str, previous: Night | None = None) -> ExtractContext:
    if previous is None:
        return ExtractContext("night", as_of)
    return ExtractContext("night", as_of, previous.state, previous.tables.get)


def _night(db: Path, as_of: str, previous: Night | None = None, **kw) -> Night:
    ex = open_extract(_url(db), _ctx(as_of, previous), **kw)
    return Night(ex, _tables(ex))


def _tables(ex: SqlExtract) -> dict[str, pa.Table]:
    out = {}
    for ds in ex.datasets():
        batches = list(ex.batches(ds))
        assert all(b.schema == model()[ds].schema for b in batches)
        out[ds] = pa.Table.from_batches(batches, model()[ds].schema)
    return out


def _sorted(table: pa.Table, dataset: str) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in model()[dataset].key])


def _db_contents(db: Path, dataset: str) -> pa.Table:
    """What the database holds now, read independently of the adapter."""
    engine = sa.create_engine(_url(db))
    table = sa.Table(dataset, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table))]
    engine.dispose()
    schema = model()[dataset].schema
    return _sorted(pa.Table.from_pylist(rows, schema=schema), dataset)


def _raw(ex: SqlExtract) -> dict[str, bytes]:
    return {r.name: r.data for r in ex.raw_files()}


def test_first_night_is_a_full_extract_equal_to_the_source(db: Path, drop: Path) -> None:
    ex = open_source("sql", _url(db), _ctx(NIGHT1))
    assert ex.datasets() == DATASETS  # default mapping: the canonical tables the database has
    files = {f.dataset: f for f in read_drop(drop)}
    for ds, table in _tables(ex).items():
        source = pa.Table.from_batches(list(read_batches(files[ds])), model()[ds].schema)
        assert table.equals(_sorted(source, ds)), ds  # sorted by key, canonical types
        assert ex.stats[ds]["mode"] == "full"
        assert ex.stats[ds]["delta_rows"] == source.num_rows
    assert ex.state["watermarks"] == dict.fromkeys(DATASETS, LOADED)
    assert ex.state["as_of"] == NIGHT1


def test_second_night_reads_only_the_changes(db: Path) -> None:
    night1 = _night(db, NIGHT1)
    changes = apply_changes(db, updated_at=CHANGED, updates=5, inserts=3, deletes=2)
    night2 = _night(db, NIGHT2, night1)
    for ds in DATASETS:
        stats = night2.stats[ds]
        assert stats["mode"] == "incremental"
        assert stats["delta_rows"] == 8 == changes[ds]["updated"] + changes[ds]["inserted"]
        assert stats["key_rows"] == night1.tables[ds].num_rows + 3 - 2
        assert night2.tables[ds].equals(_db_contents(db, ds)), ds  # = the full current table
    assert night2.state["watermarks"] == dict.fromkeys(DATASETS, CHANGED)
    # Updates arrive, deletions propagate.
    students = night2.tables["students"]
    assert {f"changed {i}" for i in range(1, 6)} <= set(students["home_address"].to_pylist())
    ids_before = set(night1.tables["students"].column("student_id").to_pylist())
    ids_after = set(students.column("student_id").to_pylist())
    assert len(ids_before - ids_after) == 2 and len(ids_after - ids_before) == 3
    # The raw zone keeps exactly the delta read, and the query bounds.
    raw = _raw(night2.extract)
    assert pq.read_table(pa.BufferReader(raw["students.delta.parquet"])).num_rows == 8
    bounds = json.loads(raw[BOUNDS_FILE])
    assert bounds["datasets"]["students"]["lower_exclusive"] == LOADED
    assert bounds["datasets"]["students"]["upper_inclusive"] == NIGHT2


def test_rerunning_a_night_gives_identical_output(db: Path) -> None:
    night1 = _night(db, NIGHT1)
    apply_changes(db, updated_at=CHANGED)
    first, again = _night(db, NIGHT2, night1), _night(db, NIGHT2, night1)
    assert all(first.tables[ds].equals(again.tables[ds]) for ds in DATASETS)
    assert first.state == again.state
    assert first.extract.fingerprint() == again.extract.fingerprint()
    assert _raw(first.extract) == _raw(again.extract)
    # Re-running night 2 after it succeeded (its own state and snapshot) changes nothing.
    rerun = _night(db, NIGHT2, first)
    assert all(rerun.tables[ds].equals(first.tables[ds]) for ds in DATASETS)
    assert rerun.stats["students"]["delta_rows"] == 0


def test_changes_after_as_of_wait_for_the_next_night(db: Path) -> None:
    night1 = _night(db, NIGHT1)
    apply_changes(db, updated_at=CHANGED)
    night2 = _night(db, NIGHT2, night1)
    # The SIS keeps changing after night 2's as_of (updates and inserts, no deletes).
    apply_changes(db, updated_at="2026-01-03T09:00:00+00:00", seed=1, deletes=0)
    rerun = _night(db, NIGHT2, night1)
    assert all(rerun.tables[ds].equals(night2.tables[ds]) for ds in DATASETS)
    assert rerun.stats["students"]["delta_rows"] == 8  # the same rows as the first run
    night3 = _night(db, "2026-01-04T02:00:00+00:00", rerun)
    for ds in DATASETS:
        assert night3.stats[ds]["delta_rows"] == 8
        assert night3.tables[ds].equals(_db_contents(db, ds))


def test_rows_written_without_a_new_watermark_trigger_a_full_reread(db: Path) -> None:
    night1 = _night(db, NIGHT1)
    engine = sa.create_engine(_url(db))
    with engine.begin() as conn:  # a late insert stamped before the previous watermark
        conn.execute(
            sa.text(
                "INSERT INTO schools SELECT school_id || 'X', dese_code, school_name, "
                "school_type, low_grade, high_grade, address, city, zip, latitude, longitude, "
                "'2025-12-01 00:00:00.000000' FROM schools LIMIT 1"
            )
        )
    engine.dispose()
    night2 = _night(db, NIGHT2, night1)
    assert night2.stats["schools"]["mode"] == "repair"
    assert night2.tables["schools"].equals(_db_contents(db, "schools"))
    assert night2.stats["students"]["mode"] == "incremental"


def test_mapping_file_renames_tables_and_columns(db: Path, tmp_path: Path) -> None:
    engine = sa.create_engine(_url(db))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE VIEW sis_student AS SELECT student_id AS lasid, sasid, first_name, "
                "middle_name, last_name, birth_date, gender, race_ethnicity, home_address, "
                "home_city, home_zip, first_language, directory_opt_out, "
                "updated_at AS last_change FROM students"
            )
        )
    engine.dispose()
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "version: 1\n"
        "datasets:\n"
        "  students:\n"
        "    table: sis_student\n"
        "    watermark: last_change\n"
        "    columns: {student_id: lasid}\n"
        "  schools:\n"
        "    query: SELECT * FROM schools WHERE school_type <> 'Special'\n"
        "    watermark: null\n"
    )
    ex = open_extract(_url(db), _ctx(NIGHT1), mapping=mapping)
    assert ex.datasets() == ["schools", "students"]
    tables = _tables(ex)
    assert tables["students"].equals(_db_contents(db, "students"))
    schools = _db_contents(db, "schools")
    assert tables["schools"].num_rows == schools.num_rows - schools.column(
        "school_type"
    ).to_pylist().count("Special")
    assert ex.state["watermarks"]["schools"] is None  # no watermark: read in full every night


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ("datasets: {students: {columns: {student_id: 'lasid; DROP TABLE x'}}}", "identifier"),
        ("datasets: {students: {table: 'students s'}}", "identifier"),
        ("datasets: {students: {query: 'SELECT 1; DELETE FROM students'}}", "one SELECT"),
        ("datasets: {students: {query: 'DELETE FROM students'}}", "one SELECT"),
        ("datasets: {pupils: {}}", "unknown canonical dataset"),
        ("datasets: {students: {columns: {shoe_size: size}}}", "not a column"),
    ],
)
def test_mapping_is_validated(tmp_path: Path, doc: str, problem: str) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(doc)
    with pytest.raises(ConfigError, match=problem):
        load_mapping(path)


def test_missing_table_or_column(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("datasets: {students: {watermark: modified}}")
    with pytest.raises(SourceError, match=r"table students has no column modified"):
        open_extract(_url(db), _ctx(NIGHT1), mapping=path)
    path.write_text("datasets: {staff: {}}")
    with pytest.raises(SourceError, match=r"table staff does not exist"):
        open_extract(_url(db), _ctx(NIGHT1), mapping=path)


def test_bad_value_names_table_row_and_column_not_value(db: Path) -> None:
    engine = sa.create_engine(_url(db))
    with engine.begin() as conn:
        sid = conn.execute(sa.text("SELECT min(student_id) FROM students")).scalar()
        conn.execute(
            sa.text("UPDATE students SET birth_date = '2O15-04-01' WHERE student_id = :sid"),
            {"sid": sid},
        )
    engine.dispose()
    with pytest.raises(SourceError) as err:
        list(open_extract(_url(db), _ctx(NIGHT1)).batches("students"))
    msg = str(err.value)
    assert "table students" in msg and "line 1" in msg and "column birth_date" in msg
    logged = "".join(traceback.format_exception(err.value))  # what a task log would show
    assert sid not in logged and "2O15" not in logged


def test_as_of_is_required(db: Path) -> None:
    with pytest.raises(ConfigError, match="as_of"):
        open_extract(_url(db), ExtractContext("night", ""))


# -- credentials -------------------------------------------------------------------------------


def test_redact_url_hides_passwords() -> None:
    assert redact_url("postgresql://u:secret@host/db") == "postgresql://u:***@host/db"
    redacted = redact_url("mssql+pyodbc://u:p%40ss@host/db?driver=ODBC+18&password=secret")
    assert "secret" not in redacted and "p%40ss" not in redacted and "p@ss" not in redacted
    assert "driver=ODBC" in redacted
    assert redact_url("postgresql://u:secret@host:port/db") == "<unparsable database URL>"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:secret@127.0.0.1:1/db",  # no driver or no server: fails, says where
        "postgresql://u:secret@host:notaport/db",  # unparsable: the parser would echo it
        "postgres://u:secret@127.0.0.1:1/db",  # Airflow's scheme
    ],
)
def test_password_never_in_errors(url: str) -> None:
    with pytest.raises(SourceError) as err:
        open_extract(url, _ctx(NIGHT1))
    text = "".join(traceback.format_exception(err.value))
    assert "secret" not in text
    assert "secret" not in repr(err.value.__cause__) and "secret" not in repr(err.value.__context__)


def test_url_from_environment(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASHARE_TEST_SIS_URL", _url(db))
    ex = open_extract("env:DATASHARE_TEST_SIS_URL", _ctx(NIGHT1))
    assert ex.datasets() == DATASETS
    assert json.loads(_raw(ex)[BOUNDS_FILE])["source"] == redact_url(_url(db))
    monkeypatch.delenv("DATASHARE_TEST_SIS_URL")
    with pytest.raises(ConfigError, match="DATASHARE_TEST_SIS_URL"):
        open_extract("env:DATASHARE_TEST_SIS_URL", _ctx(NIGHT1))
