"""Envelope encryption for non-Parquet objects: raw source exports (CSV, XML) and JSON state.

Each object gets a fresh AES-256 data key, wrapped by a master key through the KMS. The data is
encrypted in chunks (streaming AEAD, in the spirit of Tink's streaming AEAD / the STREAM
construction) so objects of hundreds of MB are sealed and opened with memory bounded by one
chunk. Layout (all integers big-endian):

    header: b"DSB" 0x01 | chunk_size u32 | nonce_prefix (7) | len u8 + KMS scheme
            | len u16 + master key name | len u16 + wrapped data key
    chunks: AES-256-GCM(chunk) + 16-byte tag, each chunk_size bytes of plaintext except the
            last, which is shorter (possibly empty)

Chunk i uses nonce = nonce_prefix | i (u32) | last flag (1 byte) and the fixed header part
(magic, chunk size, nonce prefix) as associated data. So reordering chunks (index), dropping the
tail (no chunk flagged last), appending, or editing the chunk size all fail authentication. The
key name and wrapped key are authenticated by the KMS instead (the name is associated data of
the wrap, and another wrapped key yields another data key), which is what lets `rewrap` re-wrap
the data key after a master-key rotation without re-encrypting the data.
"""

from __future__ import annotations

import io
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from datashare.crypto.kms import CryptoError, IntegrityError, Kms, canonical_context
from datashare.errors import ConfigError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SealedHeader",
    "is_sealed",
    "open_sealed",
    "open_stream",
    "read_header",
    "rewrap",
    "seal",
    "seal_stream",
]

MAGIC = b"DSB\x01"
DEFAULT_CHUNK_SIZE = 1024 * 1024
_MAX_CHUNK_SIZE = 64 * 1024 * 1024  # bounds what a reader allocates before anything is verified
_TAG = 16
_FIXED = struct.Struct(">4sI7s")
_MAX_CHUNKS = 2**32


@dataclass(frozen=True)
class SealedHeader:
    """The clear-text header of a sealed object (no secret in it: the data key is wrapped)."""

    chunk_size: int
    nonce_prefix: bytes
    kms_scheme: str
    key_name: str
    wrapped_key: bytes
    raw: bytes  # the exact header bytes

    @property
    def aad(self) -> bytes:
        """Associated data of every chunk: the fixed part of the header."""
        return self.raw[: _FIXED.size]

    def __repr__(self) -> str:
        return f"SealedHeader(key_name={self.key_name!r}, chunk_size={self.chunk_size})"


def _context(context: Mapping[str, str]) -> dict[str, str]:
    if "purpose" in context:
        raise ConfigError("`purpose` is reserved in a blob's encryption context")
    return canonical_context({"purpose": "blob", **context})


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= _MAX_CHUNKS:
        raise CryptoError("object too large for one sealed envelope (2^32 chunks)")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _read_exactly(src: BinaryIO, n: int) -> bytes:
    """Up to n bytes; fewer only at end of stream (a socket or pipe may return short reads)."""
    parts, got = [], 0
    while got < n:
        b = src.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _encode_header(
    chunk_size: int, prefix: bytes, scheme: str, key_name: str, wrapped: bytes
) -> bytes:
    s, k = scheme.encode(), key_name.encode()
    if len(s) > 255 or len(k) > 65535 or len(wrapped) > 65535:
        raise CryptoError("KMS scheme, key name or wrapped key too long for the header")
    return b"".join(
        [
            _FIXED.pack(MAGIC, chunk_size, prefix),
            struct.pack(">B", len(s)),
            s,
            struct.pack(">H", len(k)),
            k,
            struct.pack(">H", len(wrapped)),
            wrapped,
        ]
    )


def is_sealed(data: bytes) -> bool:
    """Whether `data` starts like a sealed envelope (cheap check, nothing verified)."""
    return data[:4] == MAGIC


def read_header(src: BinaryIO) -> SealedHeader:
    """Parse the header from the start of `src`, leaving it positioned at the first chunk."""
    fixed = _read_exactly(src, _FIXED.size)
    if len(fixed) < _FIXED.size or fixed[:4] != MAGIC:
        raise IntegrityError("not a sealed datashare object (bad magic or truncated header)")
    _, chunk_size, prefix = _FIXED.unpack(fixed)
    if not 0 < chunk_size <= _MAX_CHUNK_SIZE:
        raise IntegrityError(f"sealed object header has an invalid chunk size {chunk_size}")
    parts = [fixed]

    def field(fmt: str) -> bytes:
        size = struct.calcsize(fmt)
        raw_len = _read_exactly(src, size)
        if len(raw_len) < size:
            raise IntegrityError("sealed object header is truncated")
        (n,) = struct.unpack(fmt, raw_len)
        value = _read_exactly(src, n)
        if len(value) < n:
            raise IntegrityError("sealed object header is truncated")
        parts.extend([raw_len, value])
        return value

    try:
        scheme = field(">B").decode()
        key_name = field(">H").decode()
    except UnicodeDecodeError:
        raise IntegrityError("sealed object header is corrupt") from None
    wrapped = field(">H")
    return SealedHeader(chunk_size, prefix, scheme, key_name, wrapped, b"".join(parts))


def seal_stream(
    kms: Kms,
    key_name: str,
    src: BinaryIO,
    dst: BinaryIO,
    context: Mapping[str, str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Encrypt `src` into `dst` under a fresh data key wrapped by `key_name`.

    `context` (e.g. {"zone": "raw", "object": key}) must be given again to open it: bind it to
    where the object lives so a copy elsewhere does not open. Returns plaintext bytes read.
    """
    if not 0 < chunk_size <= _MAX_CHUNK_SIZE:
        raise ConfigError(f"chunk_size must be in 1..{_MAX_CHUNK_SIZE}")
    dk = kms.generate_data_key(key_name, _context(context))
    prefix = secrets.token_bytes(7)
    header = _encode_header(chunk_size, prefix, kms.scheme, key_name, dk.wrapped)
    aad = header[: _FIXED.size]
    aead = AESGCM(dk.plaintext)
    dst.write(header)
    total, index = 0, 0
    while True:
        chunk = _read_exactly(src, chunk_size)
        # A full chunk is never the last one: when the size is a multiple of chunk_size an
        # empty final chunk follows, so a reader can always tell "ended" from "cut off".
        last = len(chunk) < chunk_size
        dst.write(aead.encrypt(_nonce(prefix, index, last), chunk, aad))
        total += len(chunk)
        if last:
            return total
        index += 1


def _checked_header(kms: Kms, src: BinaryIO, key_name: str | None) -> SealedHeader:
    header = read_header(src)
    if key_name is not None and header.key_name != key_name:
        raise IntegrityError(f"object is sealed under {header.key_name!r}, expected {key_name!r}")
    if header.kms_scheme != kms.scheme:
        raise CryptoError(
            f"object sealed with KMS {header.kms_scheme!r}; this reader uses {kms.scheme!r}"
        )
    return header


def open_stream(
    kms: Kms,
    src: BinaryIO,
    dst: BinaryIO,
    context: Mapping[str, str],
    *,
    key_name: str | None = None,
) -> int:
    """Decrypt a sealed stream into `dst`; returns plaintext bytes written.

    Chunks are verified one at a time, so on IntegrityError `dst` already holds the verified
    prefix: write to a temporary file and keep it only if this returns. `key_name`, when
    given, is the master key the caller expects (refuses objects sealed under another).
    """
    header = _checked_header(kms, src, key_name)
    aead = AESGCM(kms.unwrap(header.key_name, header.wrapped_key, _context(context)))
    aad = header.aad
    full = header.chunk_size + _TAG
    total, index = 0, 0
    while True:
        block = _read_exactly(src, full)
        last = len(block) < full
        if len(block) < _TAG:
            raise IntegrityError(f"sealed object is truncated (chunk {index} missing)")
        try:
            plain = aead.decrypt(_nonce(header.nonce_prefix, index, last), block, aad)
        except InvalidTag:
            raise IntegrityError(
                f"sealed object chunk {index} failed authentication: altered, reordered, "
                "truncated, or wrong context"
            ) from None
        dst.write(plain)
        total += len(plain)
        if last:
            return total
        index += 1


def seal(
    kms: Kms,
    key_name: str,
    data: bytes,
    context: Mapping[str, str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """Seal bytes in memory (see `seal_stream` for large files)."""
    out = io.BytesIO()
    seal_stream(kms, key_name, io.BytesIO(data), out, context, chunk_size=chunk_size)
    return out.getvalue()


def open_sealed(
    kms: Kms, sealed: bytes, context: Mapping[str, str], *, key_name: str | None = None
) -> bytes:
    """Open bytes sealed by `seal`; raises IntegrityError on any alteration."""
    out = io.BytesIO()
    open_stream(kms, io.BytesIO(sealed), out, context, key_name=key_name)
    return out.getvalue()


def rewrap(
    kms: Kms,
    sealed: bytes,
    context: Mapping[str, str],
    *,
    key_name: str | None = None,
    new_key_name: str | None = None,
) -> bytes:
    """Re-wrap the data key under the current version of its master key (after a rotation),
    or under `new_key_name`; the encrypted chunks are kept byte for byte."""
    src = io.BytesIO(sealed)
    header = _checked_header(kms, src, key_name)
    ctx = _context(context)
    data_key = kms.unwrap(header.key_name, header.wrapped_key, ctx)
    target = new_key_name or header.key_name
    wrapped = kms.wrap(target, data_key, ctx)
    new_header = _encode_header(header.chunk_size, header.nonce_prefix, kms.scheme, target, wrapped)
    return new_header + sealed[len(header.raw) :]
