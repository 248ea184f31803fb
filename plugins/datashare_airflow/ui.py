"""Airflow UI plugin: each nightly run links to its validation Data Docs.

- a FastAPI app mounted on the Airflow API server at `/datashare` serves a night's Great
  Expectations Data Docs from the pipeline-only bucket (read as the `pipeline` identity);
- a global operator link "Data Docs" on every task of `bps_nightly` points to the docs of the
  task's run;
- a navigation entry "BPS data docs" lists recent nights.

The Data Docs contain counts and rule names only (never a student-level value; see
validation/runner.py), which is why they may be shown to every Airflow user.
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk.bases.operatorlink import BaseOperatorLink
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

DAG_ID = "bps_nightly"
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./@+=-]+$")

app = FastAPI(title="bps-datashare", docs_url=None, redoc_url=None)


def _lake():
    from datashare.lake.client import connect

    return connect("pipeline")


def _object(release_id: str, path: str) -> Response:
    from datashare.errors import ConfigError
    from datashare.lake.client import NotFound
    from datashare.lake.layout import PIPELINE_BUCKET, check_release_id, validation_prefix

    path = posixpath.normpath(path or "index.html")
    if path.startswith(("..", "/")) or not _SAFE_PATH.match(path):
        raise HTTPException(status_code=400, detail="bad path")
    try:
        check_release_id(release_id)
    except ConfigError as exc:
        raise HTTPException(status_code=400, detail="bad release id") from exc
    key = f"{validation_prefix(release_id)}docs/{path}"
    try:
        body = _lake().get_bytes(PIPELINE_BUCKET, key)
    except NotFound as exc:
        raise HTTPException(status_code=404, detail="no such document") from exc
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return Response(content=body, media_type=kind)


@app.get("/releases/{release_id}/data-docs/{path:path}")
def release_docs(release_id: str, path: str = "index.html") -> Response:
    return _object(release_id, path)


@app.get("/runs/{run_id}/data-docs/{path:path}")
def run_docs(run_id: str, path: str = "index.html") -> Response:
    from datashare.lake.client import NotFound
    from datashare.pipeline.runs import release_for_run

    try:
        release_id = release_for_run(_lake(), DAG_ID, run_id)
    except NotFound as exc:
        raise HTTPException(status_code=404, detail="this run planned no release") from exc
    return _object(release_id, path)


@app.get("/", response_class=HTMLResponse)
def index() -> str:
    from datashare.lake.layout import PIPELINE_BUCKET

    releases = sorted(_lake().list_prefixes(PIPELINE_BUCKET, "validation/"), reverse=True)
    items = "".join(
        f'<li><a href="releases/{r}/data-docs/index.html">{r}</a></li>' for r in releases[:60]
    )
    return (
        f"<html><head><title>BPS data docs</title></head><body>"
        f"<h1>Validation Data Docs by night</h1><ul>{items}</ul></body></html>"
    )


class DataDocsLink(BaseOperatorLink):
    """The Data Docs of the task's run, on every task of the nightly DAG."""

    name = "Data Docs"

    def get_link(self, operator, *, ti_key) -> str:
        if ti_key.dag_id != DAG_ID:
            return ""
        return f"/datashare/runs/{ti_key.run_id}/data-docs/index.html"


class DatashareUiPlugin(AirflowPlugin):
    name = "datashare"
    fastapi_apps: ClassVar[list[Any]] = [
        {"app": app, "url_prefix": "/datashare", "name": "bps-datashare"}
    ]
    global_operator_extra_links: ClassVar[list[Any]] = [DataDocsLink()]
    external_views: ClassVar[list[Any]] = [
        {
            "name": "BPS data docs",
            "href": "/datashare/",
            "destination": "nav",
            "url_route": "datashare-docs",
        }
    ]
