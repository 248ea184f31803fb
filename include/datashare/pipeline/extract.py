"""Step 2: extract a source export into the raw zone and canonical staging Parquet.

The source adapter (chosen by `source_format`) maps the export into the canonical model. The raw
files are kept unchanged and checksummed in `raw/<release_id>/` (pipeline-only, for audit); the
canonical datasets go to `staging/<release_id>/<dataset>/part-NNNN.parquet`. If anything fails,
everything this step wrote for the release is removed and nothing is passed on. Incremental
sources get the state of the last successful night from `state/<source_format>.json`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import boto3.s3.transfer
import pyarrow as pa

from datashare.encryption import pipeline_keys
from datashare.errors import SourceError
from datashare.lake.client import Lake, NotFound, connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET, raw_prefix, source_state_key, staging_prefix
from datashare.lake.parquet_io import write_parquet
from datashare.pipeline.raw_zone import store_raw
from datashare.pipeline.staging import EXTRACT_RECORD, read_staged
from datashare.sources import open_source
from datashare.sources.base import ExtractContext
from datashare.sources.canonical import model

__all__ = ["extract"]

log = logging.getLogger(__name__)

_ROWS_PER_PART = 4_000_000
_TRANSFER = boto3.s3.transfer.TransferConfig(
    multipart_threshold=64 << 20, multipart_chunksize=32 << 20, max_concurrency=4
)


def _parts(batches: Iterator[pa.RecordBatch], limit: int) -> Iterator[list[pa.RecordBatch]]:
    """Group a stream of batches into lists of at most ~limit rows."""
    buf: list[pa.RecordBatch] = []
    rows = 0
    for b in batches:
        buf.append(b)
        rows += b.num_rows
        if rows >= limit:
            yield buf
            buf, rows = [], 0
    if buf:
        yield buf


def _previous(lake: Lake, source_format: str) -> tuple[dict | None, str | None]:
    """The state and release id of the last successful night from this source format."""
    try:
        doc = json.loads(lake.get_bytes(PIPELINE_BUCKET, source_state_key(source_format)))
    except NotFound:
        return None, None
    return doc.get("state"), doc.get("release_id")


def extract(
    *, release_id: str, source: str, source_format: str = "csv_drop", as_of: str | None = None
) -> dict[str, Any]:
    """Extract `source` for `release_id`; returns the staged datasets' keys and row counts."""
    started = time.perf_counter()
    lake = connect(PIPELINE)
    state, previous_release = _previous(lake, source_format)

    def previous_snapshot(dataset: str) -> pa.Table | None:
        if previous_release is None:
            return None
        return read_staged(lake, previous_release, dataset)

    ctx = ExtractContext(
        release_id=release_id,
        as_of=as_of or "",
        previous_state=state,
        previous_snapshot=previous_snapshot,
    )
    source_extract = open_source(source_format, source, ctx)
    staged: dict[str, Any] = {}
    missing = sorted(set(model().datasets) - set(source_extract.datasets()))
    try:
        for raw in source_extract.raw_files():
            store_raw(lake, release_id, raw)
        for dataset in sorted(model().datasets):
            schema = model()[dataset].schema
            batches = source_extract.batches(dataset) if dataset not in missing else iter(())
            keys, rows = [], 0
            for i, part in enumerate(_parts(batches, _ROWS_PER_PART)):
                key = f"{staging_prefix(release_id)}{dataset}/part-{i:04d}.parquet"
                entry = write_parquet(
                    lake, PIPELINE_BUCKET, key, part, schema, keys=pipeline_keys(dataset)
                )
                keys.append(key)
                rows += entry.rows
            expected = None if dataset in missing else source_extract.expected_rows(dataset)
            if expected is not None and rows != expected:
                raise SourceError(
                    f"read {rows} data rows but the source declares {expected}", dataset=dataset
                )
            if not keys:  # empty or not provided: stage an empty table so later steps see it
                key = f"{staging_prefix(release_id)}{dataset}/part-0000.parquet"
                write_parquet(
                    lake, PIPELINE_BUCKET, key, schema.empty_table(), keys=pipeline_keys(dataset)
                )
                keys.append(key)
            staged[dataset] = {
                "keys": keys,
                "rows": rows,
                "declared_rows": expected,
                "provided": dataset not in missing,
            }
            log.info("extracted %s: %d rows", dataset, rows)
    except BaseException:
        lake.delete_prefix(PIPELINE_BUCKET, staging_prefix(release_id))
        lake.delete_prefix(PIPELINE_BUCKET, raw_prefix(release_id))
        raise
    if missing:
        log.warning(
            "source %s does not provide: %s (staged empty)", source_format, ", ".join(missing)
        )
    record = {
        "release_id": release_id,
        "source_format": source_format,
        "as_of": as_of,
        "source_fingerprint": source_extract.fingerprint(),
        "source_state": source_extract.state,
        "previous_release": previous_release,
        "missing_datasets": missing,
        "warnings": list(getattr(source_extract, "warnings", [])),
        "datasets": staged,
        "seconds": round(time.perf_counter() - started, 3),
    }
    lake.put_bytes(
        PIPELINE_BUCKET,
        staging_prefix(release_id) + EXTRACT_RECORD,
        json.dumps(record, indent=1).encode(),
        content_type="application/json",
    )
    return {
        "release_id": release_id,
        "source_fingerprint": record["source_fingerprint"],
        "datasets": sorted(staged),
        "rows": {k: v["rows"] for k, v in staged.items()},
    }
