"""Each night's Data Docs are rendered, linked from the Airflow UI, and hold no student value."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from datashare.lake.client import connect
from datashare.lake.layout import PIPELINE_BUCKET, validation_prefix
from datashare.local_airflow import airflow_env, bootstrap
from datashare.sources.canonical import model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(published: dict) -> dict[str, str]:
    pipe = connect("pipeline")
    prefix = validation_prefix(published["release_id"]) + "docs/"
    return {
        k[len(prefix) :]: pipe.get_bytes(PIPELINE_BUCKET, k).decode("utf-8", "replace")
        for k in pipe.list_keys(PIPELINE_BUCKET, prefix)
        if k.endswith(".html")
    }


def test_every_dataset_has_a_validation_page(site: dict[str, str]) -> None:
    assert "index.html" in site
    pages = "\n".join(site)
    for dataset in model().datasets:
        assert f"canonical/{dataset}/" in pages, dataset


def test_data_docs_hold_no_student_level_value(published: dict, site: dict[str, str]) -> None:
    source = published["source"]
    students = pacsv.read_csv(
        source / "students.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={"student_id": pa.string(), "sasid": pa.string()}
        ),
    )
    values = set()
    for column in ("student_id", "sasid", "first_name", "last_name", "home_address"):
        values |= {v for v in students.column(column).to_pylist() if v and len(v) >= 4}
    values |= {str(d) for d in students.column("birth_date").to_pylist()}
    text = "\n".join(site.values())
    leaked = sorted(v for v in values if v in text)
    assert leaked == []


_PROBE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from fastapi.testclient import TestClient
    from datashare_airflow.ui import DataDocsLink, app

    class Key:
        dag_id, run_id = "bps_nightly", sys.argv[2]

    client = TestClient(app)
    link = DataDocsLink().get_link(None, ti_key=Key())
    out = {"link": link}
    base = "/releases/" + sys.argv[3] + "/data-docs/"
    for name, url in [("by_run", link.removeprefix("/datashare")),
                      ("by_release", base + "index.html"),
                      ("index", "/"), ("escape", base + "..%2F..%2Fx")]:
        r = client.get(url)
        out[name] = [r.status_code, r.headers.get("content-type", ""), r.text[:20000]]
    print("JSON" + json.dumps(out))
    """
)


def test_airflow_ui_links_each_run_to_its_data_docs(published: dict) -> None:
    pipe = connect("pipeline")
    runs = [
        json.loads(pipe.get_bytes(PIPELINE_BUCKET, k))
        for k in pipe.list_keys(PIPELINE_BUCKET, "runs/bps_nightly/")
    ]
    run = next(r for r in runs if r["release_id"] == published["release_id"])
    bootstrap()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            str(REPO / "plugins"),
            run["run_id"],
            published["release_id"],
        ],
        env=airflow_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")), None)
    assert line, proc.stderr[-3000:]
    out = json.loads(line[4:])
    assert out["link"].startswith("/datashare/runs/")
    for name in ("by_run", "by_release"):
        status, kind, body = out[name]
        assert status == 200 and kind.startswith("text/html"), name
        assert "Great Expectations" in body or "Validation" in body
    assert published["release_id"] in out["index"][2]
    assert out["escape"][0] in (400, 404)
