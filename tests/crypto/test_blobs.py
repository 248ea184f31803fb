"""Sealed envelopes for raw exports and JSON state: chunked AES-256-GCM, fresh key per object."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
from collections.abc import Callable

import pytest

from datashare.crypto.blobs import (
    DEFAULT_CHUNK_SIZE,
    is_sealed,
    open_sealed,
    open_stream,
    read_header,
    rewrap,
    seal,
    seal_stream,
)
from datashare.crypto.kms import CryptoError, IntegrityError, LocalKms
from datashare.errors import ConfigError, DataShareError, KeyMissingError
from datashare.keys import LocalKeyring

KEY = "master/pipeline"
CTX = {"zone": "raw", "object": "raw/20261125T020000Z/students.csv"}
CSV = b"student_id,last_name,first_name\nSID-9181234,Quixotemarch,Zebulonia\n" * 50
CHUNK = 256
TAG = 16


def _chunks(sealed: bytes, chunk_size: int = CHUNK) -> tuple[bytes, list[bytes]]:
    src = io.BytesIO(sealed)
    header = read_header(src).raw
    body = src.read()
    step = chunk_size + TAG
    return header, [body[i : i + step] for i in range(0, len(body), step)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK, 10 * CHUNK + 7])
def test_round_trip_at_chunk_boundaries(kms: LocalKms, size: int) -> None:
    data = os.urandom(size)
    sealed = seal(kms, KEY, data, CTX, chunk_size=CHUNK)
    assert is_sealed(sealed) and not is_sealed(data)
    assert open_sealed(kms, sealed, CTX, key_name=KEY) == data
    _, chunks = _chunks(sealed)
    # Full chunks are never last: a size that is a multiple of the chunk size ends with an
    # empty (tag-only) chunk.
    assert len(chunks) == size // CHUNK + 1 and len(chunks[-1]) == size % CHUNK + TAG


def test_fresh_data_key_and_no_plaintext(recording) -> None:
    a = seal(recording, KEY, CSV, CTX)
    b = seal(recording, KEY, CSV, CTX)
    assert a != b
    ha, hb = read_header(io.BytesIO(a)), read_header(io.BytesIO(b))
    assert ha.wrapped_key != hb.wrapped_key and ha.nonce_prefix != hb.nonce_prefix
    assert ha.key_name == KEY and ha.kms_scheme == "local"
    assert [w[1] for w in recording.wraps] == [{"purpose": "blob", **CTX}] * 2
    for needle in (b"SID-9181234", b"Quixotemarch", b"student_id"):
        assert needle in CSV and needle not in a
    assert "wrapped" not in repr(ha) and ha.wrapped_key.hex() not in repr(ha)


def test_wrong_context_key_or_reader_is_refused(
    kms: LocalKms, reader_kms: Callable[..., LocalKms]
) -> None:
    sealed = seal(kms, KEY, CSV, CTX)
    with pytest.raises(IntegrityError):
        open_sealed(kms, sealed, {**CTX, "object": "raw/other.csv"})
    with pytest.raises(IntegrityError, match="expected 'master/tier1'"):
        open_sealed(kms, sealed, CTX, key_name="master/tier1")
    with pytest.raises(KeyMissingError):
        open_sealed(reader_kms("master/tier4"), sealed, CTX)
    with pytest.raises(ConfigError, match="reserved"):
        seal(kms, KEY, CSV, {"purpose": "x"})


def test_multi_chunk_truncation_reordering_and_edits_are_detected(kms: LocalKms) -> None:
    data = os.urandom(5 * CHUNK + 100)
    sealed = seal(kms, KEY, data, CTX, chunk_size=CHUNK)
    header, chunks = _chunks(sealed)
    assert len(chunks) == 6

    def refused(candidate: bytes) -> None:
        with pytest.raises(IntegrityError):
            open_sealed(kms, candidate, CTX)

    # truncation: inside the header, at a chunk boundary, inside a chunk, the last chunk lost
    refused(sealed[:10])
    refused(sealed[: len(header) - 1])
    refused(header)
    refused(header + b"".join(chunks[:3]))
    refused(header + b"".join(chunks[:5]))
    refused(sealed[:-1])
    refused(sealed[:-TAG])
    # reordering, duplication, appending
    refused(header + b"".join([chunks[0], chunks[2], chunks[1], *chunks[3:]]))
    refused(header + b"".join([chunks[0], chunks[0], *chunks[1:]]))
    refused(sealed + b"\x00")
    refused(sealed + chunks[-1])
    # a flipped bit anywhere after the magic: header fields, wrapped key, chunks, tags
    for pos in (5, 9, 13, len(header) - 3, len(header) + 1, len(sealed) // 2, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[pos] ^= 0x01
        refused(bytes(bad))
    # the key name is bound by the KMS: another name is missing or does not unwrap
    bad = bytearray(sealed)
    bad[header.index(KEY.encode()) + 7] ^= 0x01  # "master/qipeline"
    with pytest.raises(DataShareError):
        open_sealed(kms, bytes(bad), CTX)
    # a header rewritten to another chunk size (chunk boundaries move) is caught too
    refused(sealed[:4] + struct.pack(">I", CHUNK * 2) + sealed[8:])
    # a bogus chunk size is refused before anything is allocated
    refused(sealed[:4] + struct.pack(">I", 2**31) + sealed[8:])


def test_reader_of_another_kms_fails_clearly(kms: LocalKms) -> None:
    sealed = seal(kms, KEY, CSV, CTX)

    class Other(LocalKms):
        scheme = "aws-kms"

    with pytest.raises(CryptoError, match="sealed with KMS 'local'"):
        open_sealed(Other(kms._provider), sealed, CTX)


class _Generated(io.RawIOBase):
    """`size` pseudo-random bytes produced on demand (never all in memory), hashed as read."""

    def __init__(self, size: int) -> None:
        self.left, self.hash, self.counter = size, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(self.left if n < 0 else n, self.left, 1 << 20)
        block = hashlib.sha256(self.counter.to_bytes(8, "big")).digest() * (n // 32 + 1)
        self.counter += 1
        out = block[:n]
        self.left -= n
        self.hash.update(out)
        return out


class _HashSink(io.RawIOBase):
    def __init__(self) -> None:
        self.hash, self.size = hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:
        self.hash.update(b)
        self.size += len(b)
        return len(b)


def test_large_object_streams_with_bounded_memory(kms: LocalKms, tmp_path) -> None:
    size = 48 * 1024 * 1024 + 123  # 49 chunks of 1 MiB
    src = _Generated(size)
    path = tmp_path / "export.sealed"
    tracemalloc.start()
    try:
        with path.open("wb") as fh:
            assert seal_stream(kms, KEY, src, fh, CTX) == size
        _, peak_seal = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sink = _HashSink()
        with path.open("rb") as fh:
            assert open_stream(kms, fh, sink, CTX, key_name=KEY) == size
        _, peak_open = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.hash.digest() == src.hash.digest()
    overhead = path.stat().st_size - size
    assert overhead < 100 + (size // DEFAULT_CHUNK_SIZE + 1) * TAG + 200
    # a few chunk-sized buffers at most, for an object 48x the chunk size
    assert max(peak_seal, peak_open) < 6 * DEFAULT_CHUNK_SIZE, (peak_seal, peak_open)

    # Truncating the large file at a chunk boundary is detected at the end of the stream.
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size - (size % DEFAULT_CHUNK_SIZE + TAG))
    with path.open("rb") as fh, pytest.raises(IntegrityError, match="truncated"):
        open_stream(kms, fh, _HashSink(), CTX)


def test_rewrap_after_rotation_keeps_the_chunks(
    kms: LocalKms, ring: LocalKeyring, reader_kms: Callable[..., LocalKms]
) -> None:
    sealed = seal(kms, KEY, CSV, CTX, chunk_size=CHUNK)
    ring.rotate(KEY)
    fresh = rewrap(kms, sealed, CTX, key_name=KEY)
    old_header, old_chunks = _chunks(sealed)
    new_header, new_chunks = _chunks(fresh)
    assert new_chunks == old_chunks and new_header != old_header
    assert open_sealed(kms, sealed, CTX) == open_sealed(kms, fresh, CTX) == CSV
    # Once version 1 is retired, only the re-wrapped object opens.
    retired = reader_kms(KEY, current_only=True)
    assert open_sealed(retired, fresh, CTX) == CSV
    with pytest.raises(KeyMissingError, match="version 1"):
        open_sealed(retired, sealed, CTX)
    with pytest.raises(IntegrityError):
        rewrap(kms, sealed, {"zone": "staging"})
