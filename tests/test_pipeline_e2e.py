"""The nightly pipeline through Airflow against the real lake, read back by each tier's reader."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from datashare.encryption import entitled_kms, reader_keys
from datashare.lake.client import connect
from datashare.lake.parquet_io import read_parquet_keys
from datashare.policy import load_policy
from datashare.releases import latest, read_manifest
from support import run_cli

TIERS = [t.tier for t in load_policy().tiers]


def _tier(n: int):
    return load_policy().tier(n)


def _read(
    reader: str, bucket: str, keys: list[str], doc: dict | None = None, dataset: str | None = None
) -> pa.Table:
    """Read published files as `reader`: its own lake credentials and its own keys."""
    lake = connect(reader)
    if doc is None:
        doc = read_manifest(lake, bucket, keys[0].split("/")[1])
    dataset = dataset or keys[0].split("/")[2]
    return read_parquet_keys(
        lake, bucket, keys, decrypt=reader_keys(entitled_kms(reader), doc, dataset)
    )


def test_run_reports_every_tier_published(published: dict) -> None:
    out = published["stdout"]
    for n in TIERS:
        assert re.search(rf"Tier {n} .*release {published['release_id']} \[published\]", out)


@pytest.mark.parametrize("n", TIERS)
def test_latest_points_at_the_release(published: dict, n: int) -> None:
    tier = _tier(n)
    assert latest(connect(tier.readers[0]), tier.bucket) == published["release_id"]


@pytest.mark.parametrize("n", TIERS)
def test_manifest_contract(published: dict, n: int) -> None:
    tier = _tier(n)
    doc = read_manifest(connect(tier.readers[0]), tier.bucket, published["release_id"])
    for field in (
        "release_id",
        "tier",
        "created_at",
        "policy_version",
        "source_fingerprint",
        "code_version",
        "datasets",
    ):
        assert doc[field], field
    assert doc["tier"] == n
    assert doc["policy_version"] == load_policy().version
    assert doc["gate"]["passed"] is True
    assert set(doc["datasets"]) == {d.name for d in tier.datasets}
    for name, ds in doc["datasets"].items():
        assert ds["files"], name
        for f in ds["files"]:
            assert set(f) == {"key", "rows", "bytes", "sha256"}
            assert f["key"].startswith(f"releases/{published['release_id']}/{name}/")
            assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"])
        assert [c["name"] for c in ds["columns"]]
        spec = tier.dataset(name)
        if spec.aggregate and spec.aggregate.min_cell:
            assert ds["min_cell"] == spec.aggregate.min_cell


@pytest.mark.parametrize("n", TIERS)
def test_each_tier_is_readable_by_its_reader_with_pyarrow(published: dict, n: int) -> None:
    tier = _tier(n)
    reader = tier.readers[0]
    doc = read_manifest(connect(reader), tier.bucket, published["release_id"])
    for name, ds in doc["datasets"].items():
        table = _read(reader, tier.bucket, [f["key"] for f in ds["files"]], doc, name)
        assert table.num_rows == ds["rows"] == sum(f["rows"] for f in ds["files"]), name
        assert table.column_names == [c["name"] for c in ds["columns"]]
        assert table.num_rows > 0, name


def test_tier2_is_readable_with_duckdb_over_s3(published: dict) -> None:
    """DuckDB reads tier 2's encrypted Parquet straight from the lake once the reader has
    unwrapped the release key (`datashare sql`)."""
    proc = run_cli(
        "sql",
        "--as",
        "tier2-reader",
        "--format",
        "csv",
        "SELECT count(*) AS cells, sum(students) AS students FROM "
        "enrollment_by_subgroup WHERE subgroup = 'all'",
        check=True,
    )
    header, row = proc.stdout.strip().splitlines()[:2]
    assert header.replace('"', "") == "cells,students"
    assert int(row.split(",")[0]) > 0


def test_sql_api_as_each_reader(published: dict) -> None:
    from datashare.sql import query

    for tier in load_policy().tiers:
        dataset = tier.datasets[0].name
        t = query(f"SELECT count(*) AS n FROM {dataset}", as_=tier.readers[0])
        assert t.column("n")[0].as_py() > 0, tier.tier


def test_tier1_totals_match_the_source(published: dict) -> None:
    tier = _tier(1)
    doc = read_manifest(connect(tier.readers[0]), tier.bucket, published["release_id"])
    totals = _read(
        tier.readers[0],
        tier.bucket,
        [f["key"] for f in doc["datasets"]["enrollment_totals"]["files"]],
    )
    students = pacsv.read_csv(published["source"] / "students.csv")
    assert pc.sum(totals["students"]).as_py() == students.num_rows


def test_tier2_suppresses_small_cells(published: dict) -> None:
    tier = _tier(2)
    doc = read_manifest(connect(tier.readers[0]), tier.bucket, published["release_id"])
    aggregates = [d for d in tier.datasets if d.aggregate and d.aggregate.min_cell]
    assert aggregates
    for spec in aggregates:
        ds = doc["datasets"][spec.name]
        t = _read(tier.readers[0], tier.bucket, [f["key"] for f in ds["files"]], doc, spec.name)
        counts = t["students"]
        small = pc.and_(pc.greater_equal(counts, 0), pc.less(counts, ds["min_cell"]))
        assert pc.sum(small).as_py() in (0, None), spec.name  # zeros are suppressed too
        assert ds["suppressed_cells"] == pc.sum(t["suppressed"]).as_py()
        # Every figure of a suppressed cell is suppressed with it.
        sup = t.filter(t["suppressed"])
        figures = [
            *spec.aggregate.measures,
            *(f"{m}_coded" for m in (spec.aggregate.top_bottom or ((),))[0]),
        ]
        for col in figures:
            assert sup[col].null_count == sup.num_rows, (spec.name, col)


def test_tier3_and_tier4_tokens_do_not_link(published: dict) -> None:
    rid = published["release_id"]
    t3, t4 = _tier(3), _tier(4)
    d3 = read_manifest(connect(t3.readers[0]), t3.bucket, rid)["datasets"]["student_directory"]
    d4 = read_manifest(connect(t4.readers[0]), t4.bucket, rid)["datasets"]["student_year"]
    tok3 = _read(t3.readers[0], t3.bucket, [f["key"] for f in d3["files"]])["student_token"]
    tok4 = _read(t4.readers[0], t4.bucket, [f["key"] for f in d4["files"]])["student_token"]
    assert all(t.startswith("t3v1_") for t in tok3.to_pylist())
    assert all(t.startswith("t4v1_") for t in tok4.to_pylist())
    suffix3 = {t[5:] for t in tok3.to_pylist()}
    suffix4 = {t[5:] for t in tok4.to_pylist()}
    assert not suffix3 & suffix4
    assert len(suffix3) == len(tok3) and len(suffix4) == len(tok4)
