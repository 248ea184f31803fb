"""Which release an orchestrator run produced: `runs/<dag_id>/<run_id>.json` in the pipeline
bucket, written when the run is planned. Lets the Airflow UI link a run to its Data Docs (and,
later, its release report) without state outside the lake."""

from __future__ import annotations

import json
import re

from datashare.lake.client import Lake
from datashare.lake.layout import PIPELINE_BUCKET

__all__ = ["record_run", "release_for_run"]


def _key(dag_id: str, run_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    return f"runs/{dag_id}/{safe}.json"


def record_run(lake: Lake, dag_id: str, run_id: str, release_id: str) -> None:
    doc = {"dag_id": dag_id, "run_id": run_id, "release_id": release_id}
    lake.put_bytes(
        PIPELINE_BUCKET,
        _key(dag_id, run_id),
        json.dumps(doc).encode(),
        content_type="application/json",
    )


def release_for_run(lake: Lake, dag_id: str, run_id: str) -> str:
    """The release id planned by a run; NotFound if the run planned none."""
    return json.loads(lake.get_bytes(PIPELINE_BUCKET, _key(dag_id, run_id)))["release_id"]
