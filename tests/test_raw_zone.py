"""The raw zone keeps every source file exactly, compressed and sealed, and detects tampering."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from datashare.crypto.kms import IntegrityError
from datashare.errors import DataShareError
from datashare.lake.client import connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET, raw_prefix
from datashare.pipeline.raw_zone import read_raw, store_raw
from datashare.sources.base import RawFile

RELEASE = "20250101T020000Z"


def _raw(name: str, data: bytes, tmp_path: Path) -> RawFile:
    path = tmp_path / name
    path.write_bytes(data)
    return RawFile(name, hashlib.sha256(data).hexdigest(), len(data), path=path)


def test_round_trip_is_exact_and_stored_compressed_and_sealed(
    lake: None, keyring: Path, small_export: Path, tmp_path: Path
) -> None:
    pipe = connect(PIPELINE)
    original = (small_export / "students.csv").read_bytes()
    key = store_raw(pipe, RELEASE, _raw("students.csv", original, tmp_path))
    try:
        stored = pipe.get_bytes(PIPELINE_BUCKET, key)
        assert read_raw(pipe, RELEASE, "students.csv") == original
        # Compressed: CSV text shrinks several-fold; sealed: no line of it is visible.
        assert len(stored) < len(original) / 3
        first_record = original.splitlines()[1]
        assert first_record not in stored and b"student_id" not in stored
        meta = pipe.head(PIPELINE_BUCKET, key)["Metadata"]
        assert meta["encoding"] == "zstd" and meta["sha256"] == hashlib.sha256(original).hexdigest()
    finally:
        pipe.delete_prefix(PIPELINE_BUCKET, raw_prefix(RELEASE))


def test_empty_and_binary_files_round_trip(lake: None, keyring: Path, tmp_path: Path) -> None:
    pipe = connect(PIPELINE)
    files = {"empty.csv": b"", "blob.bin": bytes(range(256)) * 4099}
    try:
        for name, data in files.items():
            store_raw(pipe, RELEASE, _raw(name, data, tmp_path))
        for name, data in files.items():
            assert read_raw(pipe, RELEASE, name) == data
    finally:
        pipe.delete_prefix(PIPELINE_BUCKET, raw_prefix(RELEASE))


def test_altered_encoding_or_checksum_is_refused(lake: None, keyring: Path, tmp_path: Path) -> None:
    pipe = connect(PIPELINE)
    data = b"student_id,name\n" + b"S0001,Ana\n" * 1000
    key = store_raw(pipe, RELEASE, _raw("a.csv", data, tmp_path))
    sealed = pipe.get_bytes(PIPELINE_BUCKET, key)
    meta = pipe.head(PIPELINE_BUCKET, key)["Metadata"]
    try:
        # Dropping the encoding (so a reader would hand out compressed bytes) breaks the
        # encryption context the envelope was sealed under.
        pipe.s3.put_object(
            Bucket=PIPELINE_BUCKET, Key=key, Body=sealed, Metadata={"sha256": meta["sha256"]}
        )
        with pytest.raises(IntegrityError):
            read_raw(pipe, RELEASE, "a.csv")
        # A checksum that does not match the original bytes is caught after opening.
        pipe.s3.put_object(
            Bucket=PIPELINE_BUCKET, Key=key, Body=sealed, Metadata={**meta, "sha256": "0" * 64}
        )
        with pytest.raises(DataShareError, match="does not match its checksum"):
            read_raw(pipe, RELEASE, "a.csv")
    finally:
        pipe.delete_prefix(PIPELINE_BUCKET, raw_prefix(RELEASE))
