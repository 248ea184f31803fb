"""The raw zone: every file a source gave us, unchanged, checksummed and sealed.

Kept for audit in `s3://bps-pipeline/raw/<release_id>/` (pipeline-only), each file sealed in a
chunked AES-256-GCM envelope under a fresh data key wrapped by `master/pipeline`. The object's
metadata carries the SHA-256 of the plaintext; `read_raw` returns the original bytes, verified.
Sealing streams through a temporary file, so a file of any size needs little memory.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from typing import BinaryIO

import boto3.s3.transfer

from datashare.crypto.blobs import open_stream, seal_stream
from datashare.encryption import system_kms
from datashare.errors import DataShareError
from datashare.keys import PIPELINE_MASTER_KEY
from datashare.lake.client import Lake
from datashare.lake.layout import PIPELINE_BUCKET, raw_prefix
from datashare.sources.base import RawFile

__all__ = ["read_raw", "store_raw"]

_TRANSFER = boto3.s3.transfer.TransferConfig(
    multipart_threshold=64 << 20, multipart_chunksize=32 << 20, max_concurrency=4
)


def _context(release_id: str, name: str) -> dict[str, str]:
    return {"zone": "raw", "release": release_id, "file": name}


def _open(raw: RawFile) -> BinaryIO:
    if raw.path is not None:
        return raw.path.open("rb")
    return io.BytesIO(raw.data or b"")


def store_raw(lake: Lake, release_id: str, raw: RawFile) -> str:
    key = raw_prefix(release_id) + raw.name
    with _open(raw) as src, tempfile.TemporaryFile() as sealed:
        seal_stream(system_kms(), PIPELINE_MASTER_KEY, src, sealed, _context(release_id, raw.name))
        sealed.seek(0)
        lake.s3.upload_fileobj(
            sealed,
            PIPELINE_BUCKET,
            key,
            Config=_TRANSFER,
            ExtraArgs={"Metadata": {"sha256": raw.sha256, "sealed": "datashare-blob"}},
        )
    return key


def read_raw(lake: Lake, release_id: str, name: str) -> bytes:
    """The original bytes of a raw file, checked against the SHA-256 recorded at extraction."""
    key = raw_prefix(release_id) + name
    expected = lake.head(PIPELINE_BUCKET, key).get("Metadata", {}).get("sha256")
    out = io.BytesIO()
    open_stream(
        system_kms(),
        io.BytesIO(lake.get_bytes(PIPELINE_BUCKET, key)),
        out,
        _context(release_id, name),
    )
    data = out.getvalue()
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise DataShareError(f"raw file {name} of {release_id} does not match its checksum")
    return data
