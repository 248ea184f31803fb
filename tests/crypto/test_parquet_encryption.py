"""Parquet Modular Encryption: per-file data keys, column groups, the DuckDB-readable mode.

Files are written and read in memory (or a temporary directory for DuckDB); no lake.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datashare.crypto.kms import CryptoError, IntegrityError, LocalKms
from datashare.crypto.parquet import (
    ReleaseKey,
    TierKeys,
    decryption_properties,
    encryption_properties,
    read_encrypted,
    write_encrypted,
)
from datashare.errors import ConfigError, KeyMissingError
from datashare.keys import LocalKeyring

N = 2000
SENSITIVE = {"sensitive": ["disability", "sasid"]}
# Values that must never appear in an encrypted file (nor its column names, the footer is
# encrypted too).
NEEDLES = [
    b"Quixotemarch00042",
    b"Zebulonia01234",
    b"SID-9181234",
    b"SASID-77001234",
    b"IEP-AUTISM-SPECTRUM",
    b"student_surname",
    b"disability",
]


def _table(n: int = N) -> pa.Table:
    return pa.table(
        {
            "student_id": [f"SID-{9_180_000 + i}" for i in range(n)],
            "student_surname": [f"Quixotemarch{i:05d}" for i in range(n)],
            "first_name": [f"Zebulonia{i:05d}" for i in range(n)],
            "sasid": [f"SASID-7700{i:04d}" for i in range(n)],
            "disability": ["IEP-AUTISM-SPECTRUM" if i % 3 else "NONE" for i in range(n)],
            "grade": pa.array([i % 13 for i in range(n)], pa.int16()),
        }
    )


def _key_material(data: bytes) -> list[dict]:
    """The PME key material pyarrow stores in the clear (FileCryptoMetaData): wrapped keys only."""
    return [json.loads(m) for m in re.findall(rb'\{"keyMaterialType".*?\}', data)]


def _decompressions(data: bytes) -> Iterator[bytes]:
    """The bytes as they are, and whatever zstd / zlib / gzip streams decode from any offset."""
    yield data
    for off in range(len(data)):
        if data.startswith(b"\x28\xb5\x2f\xfd", off):  # zstd frame magic
            stream = pa.CompressedInputStream(pa.BufferReader(data[off:]), "zstd")
            out = []
            while True:  # small reads: keep what decodes before the frame ends in garbage
                try:
                    piece = stream.read(4096)
                except (OSError, pa.ArrowException):
                    break
                if not piece:
                    break
                out.append(piece)
            yield b"".join(out)
        if data[off] in (0x78, 0x1F):  # zlib / gzip headers
            for wbits in (15, 31):
                try:
                    out = zlib.decompressobj(wbits).decompress(data[off:], 1 << 22)
                except zlib.error:
                    continue
                yield out


def _found(data: bytes) -> set[bytes]:
    return {n for blob in _decompressions(data) for n in NEEDLES if n in blob}


def _plain(table: pa.Table, compression: str) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue()


def test_round_trip(kms: LocalKms) -> None:
    t = _table()
    keys = TierKeys(kms, 3, "student_directory")
    assert read_encrypted(write_encrypted(t, keys), keys).equals(t)
    assert read_encrypted(write_encrypted(t, keys), keys, columns=["sasid"]).equals(
        t.select(["sasid"])
    )
    # The module-level helpers, as a streaming ParquetWriter would use them.
    sink = io.BytesIO()
    props = encryption_properties(kms, 3, "student_directory")
    with pq.ParquetWriter(sink, t.schema, encryption_properties=props) as w:
        w.write_table(t.slice(0, 1000))
        w.write_table(t.slice(1000))
    got = pq.read_table(
        pa.BufferReader(sink.getvalue()),
        decryption_properties=decryption_properties(kms, 3, "student_directory"),
    )
    assert got.equals(t)


@pytest.mark.parametrize("double_wrapping", [False, True])
def test_every_file_gets_fresh_wrapped_data_keys(recording, double_wrapping: bool) -> None:
    t = _table(200)
    keys = TierKeys(recording, 4, "student_year", SENSITIVE, double_wrapping=double_wrapping)
    a, b = write_encrypted(t, keys), write_encrypted(t, keys)
    assert a != b
    ma, mb = _key_material(a), _key_material(b)
    assert len(ma) == len(mb) == 1  # the footer's; column key material is inside the footer
    assert ma[0]["masterKeyID"] == "master/tier4" and ma[0]["doubleWrapping"] is double_wrapping
    assert ma[0]["wrappedDEK"] != mb[0]["wrappedDEK"]
    if double_wrapping:
        assert ma[0]["wrappedKEK"] != mb[0]["wrappedKEK"]
    # Each file wrapped its own keys under both masters, with the tier and dataset as context:
    # one wrap per master key (double wrapping: of a fresh KEK) or one per data key (footer
    # and each column: 2 sensitive, 4 other columns).
    names = [w[0] for w in recording.wraps]
    per_file = (1, 1) if double_wrapping else (2, 5)
    assert names.count("master/tier4/sensitive") == 2 * per_file[0]
    assert names.count("master/tier4") == 2 * per_file[1]
    assert all(
        w[1] == {"purpose": "parquet-dek", "tier": "4", "dataset": "student_year"}
        for w in recording.wraps
    )
    assert len(set(recording.key_digests)) == len(recording.key_digests)  # no key reused
    for data in (a, b):
        assert read_encrypted(data, keys).equals(t)


@pytest.mark.parametrize("compression", ["none", "zstd", "gzip", "snappy"])
def test_ciphertext_contains_no_plaintext(kms: LocalKms, compression: str) -> None:
    t = _table()
    if compression != "snappy":  # the search works: it finds every value in a plain file
        assert _found(_plain(t, compression)) == set(NEEDLES)
    for keys in (TierKeys(kms, 4, "student_year", SENSITIVE), TierKeys(kms, 3, "directory")):
        data = write_encrypted(t, keys, compression=compression)
        assert _found(data) == set()
    release = ReleaseKey.create(kms, 2, "20261125T020000Z")
    assert _found(write_encrypted(t, release, compression=compression)) == set()


def test_pyarrow_refuses_without_keys_or_with_wrong_ones(
    kms: LocalKms, reader_kms: Callable[..., LocalKms], tmp_path: Path
) -> None:
    t = _table(100)
    keys = TierKeys(kms, 3, "student_directory")
    data = write_encrypted(t, keys)
    with pytest.raises(OSError, match="no decryption found"):
        pq.read_table(pa.BufferReader(data))
    with pytest.raises(OSError, match="no decryption found"):
        pq.ParquetFile(pa.BufferReader(data)).schema  # noqa: B018  (not even the schema)
    # A keyring whose master/tier3 is another secret: the wrapped key does not open.
    other = LocalKeyring(tmp_path / "other" / "keyring.json")
    other.ensure(["master/tier3"])
    with pytest.raises(IntegrityError):
        read_encrypted(data, TierKeys(LocalKms(other), 3, "student_directory"))
    # A reader of another tier, and the right key under another dataset's context.
    with pytest.raises(KeyMissingError):
        read_encrypted(data, TierKeys(reader_kms("master/tier2"), 3, "student_directory"))
    with pytest.raises(IntegrityError):
        read_encrypted(data, TierKeys(kms, 3, "some_other_dataset"))


def test_column_group_needs_its_own_master_key(
    kms: LocalKms, reader_kms: Callable[..., LocalKms]
) -> None:
    t = _table(300)
    data = write_encrypted(t, TierKeys(kms, 4, "student_year", SENSITIVE))
    others = ["student_id", "student_surname", "first_name", "grade"]

    tier_only = TierKeys(reader_kms("master/tier4"), 4, "student_year")
    assert read_encrypted(data, tier_only, columns=others).equals(t.select(others))
    for cols in (["disability"], ["sasid", "grade"], None):
        with pytest.raises(KeyMissingError, match="master/tier4/sensitive"):
            read_encrypted(data, tier_only, columns=cols)

    full = TierKeys(reader_kms("master/tier4", "master/tier4/sensitive"), 4, "student_year")
    assert read_encrypted(data, full).equals(t)
    # The group key alone opens nothing: the footer is under the tier key.
    group_only = TierKeys(reader_kms("master/tier4/sensitive"), 4, "student_year")
    with pytest.raises(KeyMissingError, match="'master/tier4'"):
        read_encrypted(data, group_only, columns=["disability"])


def test_column_groups_are_checked(kms: LocalKms) -> None:
    t = _table(10)
    with pytest.raises(ConfigError, match="does not have"):
        write_encrypted(t, TierKeys(kms, 4, "student_year", {"sensitive": ["no_such_column"]}))
    with pytest.raises(ConfigError, match="two column groups"):
        TierKeys(kms, 4, "x", {"sensitive": ["sasid"], "other": ["sasid"]}).encryption_properties(
            t.column_names
        )
    with pytest.raises(ConfigError, match="column names"):
        encryption_properties(kms, 4, "student_year", SENSITIVE)


@pytest.mark.parametrize("mode", ["per-file", "release"])
def test_tampering_is_detected(kms: LocalKms, mode: str) -> None:
    t = _table(500)
    keys = TierKeys(kms, 2, "x") if mode == "per-file" else ReleaseKey.create(kms, 2, "r1")
    data = write_encrypted(t, keys, compression="none")
    for pos in (8, len(data) // 3, len(data) // 2, len(data) - 60):  # pages ... footer
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises((OSError, IntegrityError)):
            read_encrypted(bytes(bad), keys)


def _write_release(tmp: Path, release: ReleaseKey, t: pa.Table) -> list[Path]:
    paths = []
    for i, part in enumerate((t.slice(0, N // 2), t.slice(N // 2))):
        p = tmp / f"part-{i:04d}.parquet"
        p.write_bytes(write_encrypted(part, release))
        paths.append(p)
    return paths


def test_release_key_mode_is_readable_by_duckdb_and_pyarrow(
    kms: LocalKms, reader_kms: Callable[..., LocalKms], tmp_path: Path
) -> None:
    t = _table()
    writer = ReleaseKey.create(kms, 2, "20261125T020000Z")
    doc = json.loads(json.dumps(writer.document()))  # as stored in the manifest
    paths = _write_release(tmp_path, writer, t)
    assert doc["master_key"] == "master/tier2" and doc["kms"] == "local"

    # An entitled reader: only the tier master key, the document and the files.
    release = ReleaseKey.open(
        reader_kms("master/tier2"), doc, tier=2, release_id="20261125T020000Z"
    )
    con = duckdb.connect()
    name = release.duckdb_register(con)
    rows = con.execute(
        "SELECT count(*), count(DISTINCT sasid), sum(grade) FROM read_parquet(?, "
        f"encryption_config={{footer_key: '{name}'}})",
        [str(tmp_path / "part-*.parquet")],
    ).fetchone()
    assert rows == (N, N, pa.compute.sum(t["grade"]).as_py())
    got = pa.concat_tables([read_encrypted(p.read_bytes(), release) for p in paths])
    assert got.equals(t)

    # Without the key (or with another release's key) DuckDB refuses.
    with pytest.raises(duckdb.InvalidInputException, match="encrypted"):
        duckdb.connect().execute(f"SELECT * FROM read_parquet('{paths[0]}')").fetchall()
    con2 = duckdb.connect()
    ReleaseKey.create(kms, 2, "20261126T020000Z").duckdb_register(con2, "other")
    with pytest.raises(duckdb.InvalidInputException, match="AES tag"):
        con2.execute(
            f"SELECT * FROM read_parquet('{paths[0]}', encryption_config={{footer_key: 'other'}})"
        ).fetchall()
    with pytest.raises(OSError, match="no decryption found"):
        pq.read_table(paths[0])


def test_release_key_document_holds_only_the_wrapped_key(
    kms: LocalKms, reader_kms: Callable[..., LocalKms]
) -> None:
    release = ReleaseKey.create(kms, 1, "r1")
    plain = release._key  # test-only peek
    text = json.dumps(release.document()) + repr(release) + str(release)
    assert base64.b64encode(plain).decode() not in text and plain.hex() not in text
    doc = release.document()
    with pytest.raises(CryptoError, match="not tier 1 release 'r2'"):
        ReleaseKey.open(kms, doc, tier=1, release_id="r2")
    with pytest.raises(IntegrityError):  # an edited document does not open either
        ReleaseKey.open(kms, {**doc, "release_id": "r2"}, tier=1, release_id="r2")
    with pytest.raises(KeyMissingError):
        ReleaseKey.open(reader_kms("master/tier2"), doc, tier=1, release_id="r1")
    assert ReleaseKey.open(kms, doc, tier=1, release_id="r1")._key == plain


def test_encryption_overhead_5m_rows(kms: LocalKms) -> None:
    """Not a benchmark: prints plain vs encrypted (per-file data keys, one column group) write
    and read times for 5M rows x 4 columns, zstd, in memory."""
    n = 5_000_000
    rng = np.random.default_rng(1)
    t = pa.table(
        {
            "student_token": pa.array(rng.integers(10**11, 10**12, n)).cast(pa.string()),
            "school_year": pa.array(rng.integers(2015, 2027, n), pa.int16()),
            "days_present": pa.array(rng.integers(0, 181, n), pa.int32()),
            "attendance_rate": rng.random(n),
        }
    )
    keys = TierKeys(kms, 4, "bench", {"sensitive": ["attendance_rate"]})
    # Warm up codec, allocator and thread pools: the first read in a process pays for them.
    small = t.slice(0, 200_000)
    pq.read_table(pa.BufferReader(_plain(small, "zstd")))
    read_encrypted(write_encrypted(small, keys), keys)

    def timed(fn: Callable[[], object]) -> tuple[float, object]:
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out

    plain_write, plain = timed(lambda: _plain(t, "zstd"))
    enc_write, data = timed(lambda: write_encrypted(t, keys))
    plain_read, _ = timed(lambda: pq.read_table(pa.BufferReader(plain)))
    enc_read, back = timed(lambda: read_encrypted(data, keys))
    assert back.num_rows == n
    print(
        f"\n5M rows x 4 columns, zstd: write plain {plain_write:.2f}s, encrypted "
        f"{enc_write:.2f}s; read plain {plain_read:.2f}s, encrypted {enc_read:.2f}s; size "
        f"{len(plain)} B plain, +{len(data) - len(plain)} B encrypted"
    )
    assert enc_write < 10 * plain_write + 2  # only a gross regression fails


def test_master_key_rotation(kms: LocalKms, ring, reader_kms: Callable[..., LocalKms]) -> None:
    t = _table(50)
    keys = TierKeys(kms, 3, "student_directory")
    old = write_encrypted(t, keys)
    release = ReleaseKey.create(kms, 3, "r1")
    ring.rotate("master/tier3")
    new = write_encrypted(t, keys)
    for data, version in ((old, 1), (new, 2)):  # wrapped key: b"DSW\x01" | version u32 | ...
        wrapped = base64.b64decode(_key_material(data)[0]["wrappedDEK"].removeprefix("local:"))
        assert wrapped[:8] == b"DSW\x01" + version.to_bytes(4, "big")
    assert read_encrypted(old, keys).equals(t) and read_encrypted(new, keys).equals(t)
    # Readers holding only the new version read new files; old ones need rewriting (PME key
    # material lives inside the immutable file), while a release key is just re-wrapped.
    retired = reader_kms("master/tier3", current_only=True)
    assert read_encrypted(new, TierKeys(retired, 3, "student_directory")).equals(t)
    with pytest.raises(KeyMissingError, match="version 1"):
        read_encrypted(old, TierKeys(retired, 3, "student_directory"))
    doc = release.rewrapped(kms).document()
    assert doc["wrapped_key"] != release.document()["wrapped_key"]
    reopened = ReleaseKey.open(retired, doc, tier=3, release_id="r1")
    assert read_encrypted(write_encrypted(t, release), reopened).equals(t)
