"""Every DAG imports cleanly and carries what operators rely on (owner, retries, schedule, docs).

DAGs are parsed in a subprocess with the project's own AIRFLOW_HOME, as Airflow would, so the
test does not depend on how Airflow was imported elsewhere in the session.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from datashare.local_airflow import airflow_env, bootstrap

REPO = Path(__file__).resolve().parents[1]

_PROBE = textwrap.dedent(
    """
    import json, sys, time
    from airflow.dag_processing.dagbag import DagBag
    t = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    elapsed = time.perf_counter() - t
    heavy = [m for m in ("datashare.pipeline", "duckdb", "great_expectations", "boto3")
             if m in sys.modules]
    out = {"errors": {k: str(v)[-500:] for k, v in bag.import_errors.items()},
           "seconds": elapsed, "heavy_imports": heavy, "dags": {}}
    for dag_id, dag in bag.dags.items():
        out["dags"][dag_id] = {
            "file": dag.fileloc,
            "owners": sorted({t.owner for t in dag.tasks}),
            "retries": sorted({t.retries for t in dag.tasks}),
            "schedule": str(getattr(dag, "schedule", None) or ""),
            "doc_md": dag.doc_md or "",
            "tags": sorted(dag.tags),
            "catchup": dag.catchup,
            "tz_aware": dag.start_date is not None and dag.start_date.tzinfo is not None,
            "max_active_runs": dag.max_active_runs,
            "params": sorted(dag.params.keys()),
            "tasks": sorted(t.task_id for t in dag.tasks),
        }
    print("JSON" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def dagbag(datashare_home: Path) -> dict:
    bootstrap()
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(REPO / "dags")],
        env=airflow_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")), None)
    assert line, f"DagBag probe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(line[4:])


def test_no_import_errors(dagbag: dict) -> None:
    assert dagbag["errors"] == {}


def test_the_nightly_dag_exists(dagbag: dict) -> None:
    assert "bps_nightly" in dagbag["dags"]
    tasks = dagbag["dags"]["bps_nightly"]["tasks"]
    assert tasks == sorted(
        ["plan", "extract", "validate", "data_docs", "derive", "build", "gate", "publish", "grants"]
    )


@pytest.mark.parametrize("field", ["owners", "retries", "schedule", "doc_md", "tags"])
def test_every_dag_has(dagbag: dict, field: str) -> None:
    for dag_id, dag in dagbag["dags"].items():
        value = dag[field]
        assert value, f"{dag_id} ({dag['file']}) has no {field}"
        if field == "owners":
            assert "airflow" not in value, f"{dag_id}: a task has the default owner"
        if field == "retries":
            assert min(value) >= 1, f"{dag_id}: a task has no retries"
        if field == "schedule":
            assert value not in ("None", "Never"), f"{dag_id}: no schedule"
        if field == "doc_md":
            assert len(value) > 200, f"{dag_id}: documentation is too thin"


def test_dags_are_safe_to_schedule(dagbag: dict) -> None:
    for dag_id, dag in dagbag["dags"].items():
        assert dag["catchup"] is False, f"{dag_id} would backfill on first deploy"
        assert dag["tz_aware"], f"{dag_id}: start_date needs a time zone"
        assert dag["max_active_runs"] == 1, f"{dag_id}: nightly runs must not overlap"


def test_parsing_is_light(dagbag: dict) -> None:
    # DAG files only wire tasks: the heavy work is imported inside tasks, not at parse time.
    assert dagbag["heavy_imports"] == []
    assert dagbag["seconds"] < 10


def test_manual_runs_take_typed_parameters(dagbag: dict) -> None:
    assert dagbag["dags"]["bps_nightly"]["params"] == ["release_id", "source", "source_format"]
