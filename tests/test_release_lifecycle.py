"""Atomic, durable releases: a lake outage mid-publish, re-running the night, rollback.

Runs in a lake of its own: the test stops it in the middle of a publish.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from datashare.errors import LakeError
from datashare.lake import server
from datashare.lake.client import Lake, connect
from datashare.policy import load_policy
from datashare.releases import latest, list_releases, list_staged, read_manifest
from datashare.synth.export import write_export
from night import run_night
from support import isolated_lake, run_cli

TIERS = load_policy().tiers
FIRST, SECOND = "20260401T020000Z", "20260402T020000Z"


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory, datashare_home: Path) -> Iterator[Path]:
    export = tmp_path_factory.mktemp("lifecycle") / "export"
    write_export(export, scale=0.01, seed=9)
    with isolated_lake(tmp_path_factory.mktemp("lifecycle-home")):
        night = run_night(str(export), FIRST)
        assert night.published, night.message
        yield export


def _latest() -> dict[str, str | None]:
    pipe = connect("pipeline")
    return {t.bucket: latest(pipe, t.bucket) for t in TIERS}


def test_an_outage_mid_publish_leaves_the_previous_release_and_a_rerun_completes(
    two_nights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datashare import pipeline as steps

    assert set(_latest().values()) == {FIRST}
    # Build and gate the second night, then take the lake down after the publish step has
    # copied a few objects of the first tier.
    night = run_night(str(two_nights), SECOND, stop_before="publish")
    assert night.stopped_at == "before publish", night.message
    copies = {"n": 0}
    original = Lake.copy

    def failing_copy(self: Lake, bucket: str, key: str, new_key: str) -> None:
        copies["n"] += 1
        if copies["n"] == 3:
            server.down()
        original(self, bucket, key, new_key)

    monkeypatch.setattr(Lake, "copy", failing_copy)
    with pytest.raises(LakeError):
        steps.publish_release(release_id=SECOND, tiers=[t.tier for t in TIERS])
    monkeypatch.setattr(Lake, "copy", original)
    server.up()
    # Readers still see the first release, complete and readable, in every tier.
    assert set(_latest().values()) == {FIRST}
    from datashare.sql import query

    for tier in TIERS:
        assert (
            query(f"SELECT count(*) AS n FROM {tier.datasets[0].name}", as_=tier.readers[0])
            .column("n")[0]
            .as_py()
            > 0
        )
    # Re-running the publish completes the night, once.
    steps.publish_release(release_id=SECOND, tiers=[t.tier for t in TIERS])
    assert set(_latest().values()) == {SECOND}
    pipe = connect("pipeline")
    for tier in TIERS:
        assert list_staged(pipe, tier.bucket) == []
        doc = read_manifest(pipe, tier.bucket, SECOND)
        expected = {f["key"] for d in doc["datasets"].values() for f in d["files"]}
        expected |= {
            f"releases/{SECOND}/{n}" for n in ("_manifest.json", "_report.md", "_report.html")
        }
        assert set(pipe.list_keys(tier.bucket, f"releases/{SECOND}/")) == expected
        assert list_releases(pipe, tier.bucket) == [FIRST, SECOND]


def test_rollback_points_latest_at_the_previous_release(two_nights: Path) -> None:
    if set(_latest().values()) != {SECOND}:
        pytest.skip("needs the second release published by the previous test")
    proc = run_cli("release", "rollback", "--tier", "2", check=True)
    assert f"{SECOND} -> {FIRST}" in proc.stdout
    assert _latest()["bps-tier2-aggregate"] == FIRST
    listing = run_cli("release", "list", "--tier", "2", check=True).stdout
    assert f"* {FIRST}" in listing and f"  {SECOND}" in listing
    run_cli("release", "rollback", "--tier", "2", "--to", SECOND, check=True)
    assert _latest()["bps-tier2-aggregate"] == SECOND
    report = run_cli("release", "show", "--tier", "2", check=True).stdout
    assert f"# Release {SECOND}: tier 2" in report and "release gate: **passed**" in report
