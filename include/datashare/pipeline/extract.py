"""Step 2: extract a source export into the raw zone and canonical staging Parquet.

The raw files are kept unchanged and checksummed in `raw/<release_id>/` (pipeline-only, for
audit); the canonical datasets go to `staging/<release_id>/<dataset>/part-NNNN.parquet`. If any
file fails, everything this step wrote for the release is removed and nothing is passed on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3.s3.transfer
import pyarrow as pa

from datashare.errors import SourceError
from datashare.lake.client import connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET, raw_prefix, staging_prefix
from datashare.lake.parquet_io import write_parquet
from datashare.pipeline.staging import EXTRACT_RECORD
from datashare.sources import csv_drop
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


def _fingerprint(files: list[csv_drop.DropFile]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.dataset):
        h.update(f"{f.dataset}:{f.sha256}\n".encode())
    return h.hexdigest()


def extract(*, release_id: str, source: str, source_format: str = "csv_drop") -> dict[str, Any]:
    """Extract `source` for `release_id`; returns the staged datasets' keys and row counts."""
    started = time.perf_counter()
    lake = connect(PIPELINE)
    directory = Path(source)
    files = csv_drop.read_drop(directory)
    staged: dict[str, Any] = {}
    try:
        for name in ("manifest.json",):
            lake.s3.upload_file(
                str(directory / name),
                PIPELINE_BUCKET,
                raw_prefix(release_id) + name,
                Config=_TRANSFER,
            )
        for f in files:
            lake.s3.upload_file(
                str(f.path),
                PIPELINE_BUCKET,
                raw_prefix(release_id) + f.path.name,
                ExtraArgs={"Metadata": {"sha256": f.sha256}},
                Config=_TRANSFER,
            )
            schema = model()[f.dataset].schema
            keys, rows = [], 0
            for i, part in enumerate(_parts(csv_drop.read_batches(f), _ROWS_PER_PART)):
                key = f"{staging_prefix(release_id)}{f.dataset}/part-{i:04d}.parquet"
                entry = write_parquet(lake, PIPELINE_BUCKET, key, part, schema)
                keys.append(key)
                rows += entry.rows
            if rows != f.rows:
                raise SourceError(
                    f"file has {rows} data rows but the manifest says {f.rows}",
                    file=str(f.path),
                    dataset=f.dataset,
                )
            if not keys:  # header only: stage an empty table so later steps see the dataset
                key = f"{staging_prefix(release_id)}{f.dataset}/part-0000.parquet"
                write_parquet(lake, PIPELINE_BUCKET, key, schema.empty_table())
                keys.append(key)
            staged[f.dataset] = {
                "keys": keys,
                "rows": rows,
                "file": f.path.name,
                "manifest_rows": f.rows,
            }
            log.info("extracted %s: %d rows from %s", f.dataset, rows, f.path.name)
    except BaseException:
        lake.delete_prefix(PIPELINE_BUCKET, staging_prefix(release_id))
        lake.delete_prefix(PIPELINE_BUCKET, raw_prefix(release_id))
        raise
    record = {
        "release_id": release_id,
        "source_format": source_format,
        "source_fingerprint": _fingerprint(files),
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
