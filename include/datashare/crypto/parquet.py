"""Parquet Modular Encryption (PME) for lake files, in two modes.

- Per-file data keys (`TierKeys`, the default): pyarrow's `CryptoFactory` draws fresh random
  data keys for every file (footer and columns), wraps them under the tier master key through
  our KMS, and stores only the wrapped keys in the file's key material. The footer (schema,
  statistics) is encrypted too. Optional column groups (e.g. tier-4 `sensitive`) are encrypted
  under their own master key: a reader granted the tier key but not the group key reads every
  other column and fails on those. DuckDB cannot read these files (it has no KMS support).
- Per-release key (`ReleaseKey`, the DuckDB-readable mode): one random AES-256 key per tier
  release encrypts the footer and every column of every file of that release, so DuckDB can
  read them with `PRAGMA add_parquet_key`. The key is stored only wrapped by the tier master
  (`ReleaseKey.document()`, for the manifest); an entitled reader unwraps it with `open`.

Both modes use AES_GCM_V1 (every page and footer authenticated: a flipped byte fails to read).
`write_encrypted` / `read_encrypted` take either kind of keys.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe

from datashare.crypto.kms import DATA_KEY_BYTES, CryptoError, Kms
from datashare.errors import ConfigError
from datashare.keys import PIPELINE_MASTER_KEY, column_group_key_name, tier_master_key_name

__all__ = [
    "RELEASE_KEY_SCHEME",
    "ParquetKeys",
    "ReleaseKey",
    "TierKeys",
    "decryption_properties",
    "encryption_properties",
    "file_context",
    "read_encrypted",
    "write_encrypted",
]

RELEASE_KEY_SCHEME = "datashare-parquet-release-key/1"
_ALGORITHM = "AES_GCM_V1"  # GCM on pages too (CTR would leave page bodies unauthenticated)
_COMPRESSION = "zstd"
_ROW_GROUP = 1_000_000


def file_context(tier: int, dataset: str) -> dict[str, str]:
    """The context every data key of a per-file-keys Parquet file is wrapped with."""
    return {"purpose": "parquet-dek", "tier": str(int(tier)), "dataset": dataset}


def _release_context(tier: int, release_id: str) -> dict[str, str]:
    return {"purpose": "parquet-release-key", "tier": str(int(tier)), "release": release_id}


class _KmsClient(pe.KmsClient):
    """pyarrow's KMS client interface over our `Kms`, bound to one (tier, dataset) context.

    The wrapped string pyarrow stores is `<kms scheme>:<base64>`, so a file wrapped by AWS KMS
    and read with the local KMS (or the reverse) fails with a clear message.
    """

    def __init__(self, kms: Kms, context: Mapping[str, str]) -> None:
        super().__init__()
        self._kms = kms
        self._context = dict(context)

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        wrapped = self._kms.wrap(master_key_identifier, bytes(key_bytes), self._context)
        return f"{self._kms.scheme}:{base64.b64encode(wrapped).decode()}"

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        scheme, _, b64 = wrapped_key.partition(":")
        if scheme != self._kms.scheme:
            raise CryptoError(
                f"key {master_key_identifier!r} was wrapped by KMS {scheme!r}; this reader "
                f"uses {self._kms.scheme!r}"
            )
        return self._kms.unwrap(master_key_identifier, base64.b64decode(b64), self._context)


class ParquetKeys(Protocol):
    """Anything that can produce encryption properties for a file and decryption for readers."""

    def encryption_properties(self, columns: Sequence[str]) -> pe.FileEncryptionProperties: ...

    def decryption_properties(self) -> pe.FileDecryptionProperties: ...


@dataclass(frozen=True)
class TierKeys:
    """Per-file data keys wrapped by the tier master (and column-group masters).

    Tier 0 is the pipeline's own zone (raw, staging, quarantine): its files are wrapped by
    `master/pipeline`, which no reader holds.
    """

    kms: Kms
    tier: int
    dataset: str
    #: group name -> top-level column names encrypted under `master/tier<N>/<group>`
    column_groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: None: what the KMS prefers (local: off, AES-256 end to end; AWS: on, fewer calls)
    double_wrapping: bool | None = None

    def _factory(self) -> tuple[pe.CryptoFactory, pe.KmsConnectionConfig]:
        # A new factory per call: pyarrow caches KMS clients and key-encryption keys inside a
        # factory, keyed by access token only, so a shared one could wrap under a stale context.
        context = file_context(self.tier, self.dataset)
        factory = pe.CryptoFactory(lambda _config: _KmsClient(self.kms, context))
        return factory, pe.KmsConnectionConfig(kms_instance_id=self.kms.scheme)

    @property
    def master(self) -> str:
        return PIPELINE_MASTER_KEY if self.tier == 0 else tier_master_key_name(self.tier)

    def encryption_properties(
        self, columns: Sequence[str] | None = None
    ) -> pe.FileEncryptionProperties:
        """Fresh data keys for one file. `columns` (top-level names) is required with groups."""
        footer = self.master
        double = (
            self.kms.prefers_double_wrapping
            if self.double_wrapping is None
            else self.double_wrapping
        )
        common: dict[str, Any] = {
            "encryption_algorithm": _ALGORITHM,
            "plaintext_footer": False,
            "double_wrapping": double,
            "internal_key_material": True,  # wrapped keys travel inside the file
            "data_key_length_bits": DATA_KEY_BYTES * 8,
        }
        if not self.column_groups:
            config = pe.EncryptionConfiguration(footer, uniform_encryption=True, **common)
        else:
            config = pe.EncryptionConfiguration(
                footer, column_keys=self._column_keys(columns), **common
            )
        factory, conn = self._factory()
        return factory.file_encryption_properties(conn, config)

    def _column_keys(self, columns: Sequence[str] | None) -> dict[str, list[str]]:
        if columns is None:
            raise ConfigError("column groups need the file's column names to encrypt all of them")
        # pyarrow leaves columns absent from column_keys in plaintext: assign every column,
        # the ones outside any group to the tier master.
        assigned: dict[str, str] = {}
        for group, cols in self.column_groups.items():
            name = column_group_key_name(self.tier, group)
            for col in cols:
                if col not in columns:
                    raise ConfigError(
                        f"column group {group!r} of tier {self.tier} names {col!r}, which "
                        f"dataset {self.dataset!r} does not have"
                    )
                if col in assigned:
                    raise ConfigError(f"column {col!r} is in two column groups")
                assigned[col] = name
        keys: dict[str, list[str]] = {}
        for col in columns:
            keys.setdefault(assigned.get(col, self.master), []).append(col)
        return keys

    def decryption_properties(self) -> pe.FileDecryptionProperties:
        """Reusable across files of this (tier, dataset); keys are unwrapped when needed."""
        factory, conn = self._factory()
        return factory.file_decryption_properties(conn, pe.DecryptionConfiguration())


class ReleaseKey:
    """One AES-256 key for every file of a tier release: the DuckDB-readable mode.

    Holds the plaintext key in memory; `document()` is the only form meant for storage.
    """

    def __init__(
        self,
        key: bytes,
        *,
        kms_scheme: str,
        key_name: str,
        wrapped: bytes,
        tier: int,
        release_id: str,
    ) -> None:
        if len(key) != DATA_KEY_BYTES:
            raise CryptoError("a release key must be 32 bytes (AES-256)")
        self._key = bytes(key)
        self.kms_scheme, self.key_name, self.wrapped = kms_scheme, key_name, bytes(wrapped)
        self.tier, self.release_id = int(tier), release_id

    def __repr__(self) -> str:  # never print key material
        return f"ReleaseKey(tier={self.tier}, release_id={self.release_id!r})"

    @classmethod
    def create(cls, kms: Kms, tier: int, release_id: str) -> ReleaseKey:
        """A new random key for one release, wrapped under the tier master key."""
        name = tier_master_key_name(tier)
        dk = kms.generate_data_key(name, _release_context(tier, release_id))
        return cls(
            dk.plaintext,
            kms_scheme=kms.scheme,
            key_name=name,
            wrapped=dk.wrapped,
            tier=tier,
            release_id=release_id,
        )

    @classmethod
    def open(
        cls, kms: Kms, document: Mapping[str, Any], *, tier: int, release_id: str
    ) -> ReleaseKey:
        """Unwrap the key of a release; the expected tier and release come from the reader,
        not from the document, so a key document copied from elsewhere does not open."""
        if document.get("scheme") != RELEASE_KEY_SCHEME:
            raise CryptoError(f"not a release key document: scheme {document.get('scheme')!r}")
        if document.get("kms") != kms.scheme:
            raise CryptoError(
                f"release key wrapped by KMS {document.get('kms')!r}; this reader uses "
                f"{kms.scheme!r}"
            )
        if int(document.get("tier", -1)) != int(tier) or document.get("release_id") != release_id:
            raise CryptoError(
                f"release key document is for tier {document.get('tier')} release "
                f"{document.get('release_id')!r}, not tier {tier} release {release_id!r}"
            )
        name = tier_master_key_name(tier)
        wrapped = base64.b64decode(document["wrapped_key"])
        key = kms.unwrap(name, wrapped, _release_context(tier, release_id))
        return cls(
            key,
            kms_scheme=kms.scheme,
            key_name=name,
            wrapped=wrapped,
            tier=tier,
            release_id=release_id,
        )

    def document(self) -> dict[str, Any]:
        """What the manifest stores: the wrapped key and how to unwrap it (no plaintext)."""
        return {
            "scheme": RELEASE_KEY_SCHEME,
            "kms": self.kms_scheme,
            "master_key": self.key_name,
            "tier": self.tier,
            "release_id": self.release_id,
            "algorithm": _ALGORITHM,
            "key_bits": DATA_KEY_BYTES * 8,
            "wrapped_key": base64.b64encode(self.wrapped).decode(),
        }

    def rewrapped(self, kms: Kms) -> ReleaseKey:
        """The same key wrapped under the current master version (after a rotation): replace
        the document in the manifest; the files themselves do not change."""
        wrapped = kms.wrap(self.key_name, self._key, _release_context(self.tier, self.release_id))
        return ReleaseKey(
            self._key,
            kms_scheme=kms.scheme,
            key_name=self.key_name,
            wrapped=wrapped,
            tier=self.tier,
            release_id=self.release_id,
        )

    def encryption_properties(
        self, columns: Sequence[str] | None = None
    ) -> pe.FileEncryptionProperties:
        # No AAD prefix: DuckDB 1.5 cannot read files written with one. Files of a release are
        # therefore not bound to their object key; the manifest's SHA-256 per file covers that.
        return pe.create_encryption_properties(
            self._key, encryption_algorithm=_ALGORITHM, plaintext_footer=False
        )

    def decryption_properties(self) -> pe.FileDecryptionProperties:
        return pe.create_decryption_properties(self._key)

    def duckdb_register(self, con: Any, name: str = "datashare_release") -> str:
        """Add the key to a DuckDB connection (`PRAGMA add_parquet_key`); return its name.

        Read with `read_parquet(path, encryption_config={footer_key: '<name>'})`.
        """
        if not name.replace("_", "").isalnum():
            raise ConfigError(f"DuckDB key name {name!r} must be alphanumeric or underscore")
        # PRAGMA statements cannot be prepared; base64 has no quote characters to escape.
        con.execute(f"PRAGMA add_parquet_key('{name}', '{base64.b64encode(self._key).decode()}')")
        # DuckDB 1.5.5 fails with "Computed AES tag differs" when a WHERE filter is pushed into
        # the scan of an encrypted file (whole-file reads work): keep filters above the scan.
        con.execute("SET disabled_optimizers = 'filter_pushdown'")
        return name


def encryption_properties(
    kms: Kms,
    tier: int,
    dataset: str,
    column_groups: Mapping[str, Sequence[str]] | None = None,
    *,
    columns: Sequence[str] | None = None,
) -> pe.FileEncryptionProperties:
    """Fresh per-file data keys under the tier master (column groups under their own)."""
    return TierKeys(kms, tier, dataset, column_groups or {}).encryption_properties(columns)


def decryption_properties(kms: Kms, tier: int, dataset: str) -> pe.FileDecryptionProperties:
    """Decryption for files written with `encryption_properties(kms, tier, dataset, ...)`."""
    return TierKeys(kms, tier, dataset).decryption_properties()


def write_encrypted(
    table: pa.Table,
    keys: ParquetKeys,
    *,
    compression: str = _COMPRESSION,
    row_group_size: int = _ROW_GROUP,
) -> bytes:
    """Serialize `table` as one encrypted Parquet file (fresh properties for every call)."""
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression=compression,
        row_group_size=row_group_size,
        encryption_properties=keys.encryption_properties(table.column_names),
    )
    return sink.getvalue()


def read_encrypted(
    data: bytes | pa.Buffer, keys: ParquetKeys, columns: Sequence[str] | None = None
) -> pa.Table:
    """Read an encrypted Parquet file (or some of its columns) from memory."""
    return pq.read_table(
        pa.BufferReader(data),
        columns=list(columns) if columns is not None else None,
        decryption_properties=keys.decryption_properties(),
    )
