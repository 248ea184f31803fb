"""Parquet files in the lake: write (encrypted) with a manifest entry (rows, bytes, SHA-256),
read back (decrypted with the reader's keys).

Files are serialized in memory, hashed, then uploaded, so the checksum recorded in a manifest is
the checksum of exactly the bytes stored. Large datasets are written as several files (parts)
to keep memory bounded.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import boto3.s3.transfer
import pyarrow as pa
import pyarrow.parquet as pq

from datashare.crypto.parquet import ParquetKeys
from datashare.lake.client import Lake

__all__ = ["FileEntry", "read_parquet", "read_parquet_keys", "write_parquet"]

_COMPRESSION = "zstd"
_ROW_GROUP = 1_000_000
_TRANSFER = boto3.s3.transfer.TransferConfig(
    multipart_threshold=64 * 1024 * 1024, multipart_chunksize=32 * 1024 * 1024, max_concurrency=4
)


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset, as the manifest lists it."""

    key: str
    rows: int
    bytes: int
    sha256: str

    def to_json(self) -> dict:
        return asdict(self)


def serialize(
    batches: Iterable[pa.RecordBatch | pa.Table], schema: pa.Schema, keys: ParquetKeys | None = None
) -> tuple[bytes, int]:
    """One Parquet file in memory; encrypted (Parquet modular encryption) when `keys` given."""
    sink = io.BytesIO()
    rows = 0
    extra = {"encryption_properties": keys.encryption_properties(schema.names)} if keys else {}
    with pq.ParquetWriter(
        sink, schema, compression=_COMPRESSION, write_statistics=True, **extra
    ) as w:
        for b in batches:
            t = b if isinstance(b, pa.Table) else pa.Table.from_batches([b])
            if t.num_rows:
                w.write_table(t.cast(schema), row_group_size=_ROW_GROUP)
                rows += t.num_rows
    return sink.getvalue(), rows


def write_parquet(
    lake: Lake,
    bucket: str,
    key: str,
    data: pa.Table | Iterable[pa.RecordBatch | pa.Table],
    schema: pa.Schema | None = None,
    *,
    keys: ParquetKeys | None,
) -> FileEntry:
    """Write one Parquet object and return its manifest entry. `keys=None` writes plaintext
    and must be asked for explicitly: every file the pipeline writes passes its keys."""
    if isinstance(data, pa.Table):
        schema = schema or data.schema
        data = [data]
    if schema is None:
        raise ValueError("schema is required when writing batches")
    payload, rows = serialize(data, schema, keys)
    lake.s3.upload_fileobj(io.BytesIO(payload), bucket, key, Config=_TRANSFER)
    return FileEntry(
        key=key, rows=rows, bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest()
    )


def read_parquet_keys(
    lake: Lake,
    bucket: str,
    keys: list[str],
    columns: list[str] | None = None,
    *,
    decrypt: ParquetKeys | None,
    read_dictionary: list[str] | None = None,
) -> pa.Table:
    """Read Parquet objects as one table, decrypting with `decrypt` (None: plaintext files).

    `read_dictionary` columns come back dictionary-encoded straight from Parquet's dictionary
    pages (half the time of materializing 9M strings, for callers that only compare values)."""
    props = decrypt.decryption_properties() if decrypt else None
    tables = []
    for key in keys:
        buf = io.BytesIO()
        lake.s3.download_fileobj(bucket, key, buf, Config=_TRANSFER)
        tables.append(
            pq.read_table(
                pa.BufferReader(buf.getvalue()),
                columns=columns,
                decryption_properties=props,
                read_dictionary=read_dictionary,
            )
        )
    if not tables:
        raise ValueError(f"no files to read under s3://{bucket}")
    return pa.concat_tables(tables, promote_options="none") if len(tables) > 1 else tables[0]


def read_parquet(
    lake: Lake,
    bucket: str,
    prefix: str,
    columns: list[str] | None = None,
    *,
    decrypt: ParquetKeys | None,
) -> pa.Table:
    """Every `.parquet` object under `prefix`, in key order, as one table."""
    keys = sorted(k for k in lake.list_keys(bucket, prefix) if k.endswith(".parquet"))
    return read_parquet_keys(lake, bucket, keys, columns, decrypt=decrypt)
