"""A run that fails (bad data, missing key) publishes nothing: LATEST stays where it was."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from datashare.lake.client import connect
from datashare.policy import load_policy
from datashare.releases import latest, list_releases
from support import run_cli

TIERS = load_policy().tiers


def _rewrite_manifest(export: Path) -> None:
    """Make the manifest match the edited files, as a consistent (but wrong) export would."""
    manifest = json.loads((export / "manifest.json").read_text())
    for f in manifest["files"]:
        data = (export / f["file"]).read_bytes()
        f["bytes"] = len(data)
        f["sha256"] = hashlib.sha256(data).hexdigest()
        f["rows"] = max(0, data.count(b"\n") - 1)
    (export / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _latest_everywhere() -> dict[str, str | None]:
    pipe = connect("pipeline")
    return {t.bucket: latest(pipe, t.bucket) for t in TIERS}


@pytest.fixture
def duplicate_students(published: dict, tmp_path: Path) -> Path:
    export = shutil.copytree(published["source"], tmp_path / "export")
    path = export / "students.csv"
    rows = list(csv.reader(path.open(newline="")))
    rows.append(rows[1])  # the same student twice
    with path.open("w", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_MINIMAL).writerows(rows)
    _rewrite_manifest(export)
    return export


def test_failing_validation_publishes_nothing(published: dict, duplicate_students: Path) -> None:
    before = _latest_everywhere()
    assert set(before.values()) == {published["release_id"]}
    releases_before = {t.bucket: list_releases(connect("pipeline"), t.bucket) for t in TIERS}
    proc = run_cli("run", "--source", str(duplicate_students), "--release-id", "20260102T020000Z")
    assert proc.returncode != 0
    # The operator is told which dataset and which rule, without any student value.
    assert "students" in proc.stderr
    assert "key.unique" in proc.stderr
    assert "critical" in proc.stderr
    assert _latest_everywhere() == before
    # Nothing of the failed release reached any tier bucket.
    after = {t.bucket: list_releases(connect("pipeline"), t.bucket) for t in TIERS}
    assert after == releases_before


def test_missing_key_stops_the_run_before_writing(published: dict, datashare_home: Path) -> None:
    ring = datashare_home / "keys" / "keyring.json"
    saved = ring.read_bytes()
    ring.unlink()
    try:
        before = _latest_everywhere()
        proc = run_cli(
            "run", "--source", str(published["source"]), "--release-id", "20260103T020000Z"
        )
        assert proc.returncode != 0
        assert "keys init" in proc.stderr
        assert _latest_everywhere() == before
        pipe = connect("pipeline")
        assert pipe.list_keys("bps-pipeline", "raw/20260103T020000Z/") == []
    finally:
        ring.write_bytes(saved)
        ring.chmod(0o600)
