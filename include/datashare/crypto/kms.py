"""Key management for encryption at rest: master keys wrap per-object data keys (envelopes).

One interface, two implementations:

- `LocalKms`: master keys come from the project's key provider (the 0600 keyring under
  `.local/keys/`). A data key is wrapped with AES-256-GCM under a key derived from the master
  secret; the key name, its version and a context (tier, dataset, release, ...) are bound as
  associated data, so a wrapped key only opens for the same name and context. The version is
  stored in the wrapped blob: after a rotation new keys use the new version and old files stay
  readable as long as the old version stays in the keyring.
- `AwsKms`: AWS KMS `Encrypt`/`Decrypt`/`GenerateDataKey` with the context as the KMS
  *encryption context* (logged by CloudTrail, enforced by KMS). Key names map to aliases
  (`alias/datashare/master/tier4`); rotation is AWS's automatic key rotation.

The plaintext data key only ever exists in memory; what is stored is the wrapped form.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from datashare.errors import ConfigError, DataShareError, KeyMissingError
from datashare.keys import KeyProvider, key_provider

__all__ = [
    "AwsKms",
    "CryptoError",
    "DataKey",
    "IntegrityError",
    "Kms",
    "LocalKms",
    "canonical_context",
    "kms_from_env",
]

DATA_KEY_BYTES = 32  # AES-256 data keys everywhere

# Local wrapped-key format: magic | master version (u32) | nonce (12) | AES-GCM(data key) + tag.
_WRAP_MAGIC = b"DSW\x01"
_WRAP_HEAD = struct.Struct(">4sI12s")


class CryptoError(DataShareError):
    """Encryption or decryption could not be done as asked."""

    code = "crypto"


class IntegrityError(CryptoError):
    """Authentication failed: wrong key, wrong context, or the bytes were altered/truncated.

    AES-GCM cannot tell these apart, and saying which would help an attacker anyway.
    """

    code = "crypto-integrity"


@dataclass(frozen=True)
class DataKey:
    """A fresh data key: the plaintext for this process only, the wrapped form for storage."""

    key_name: str
    plaintext: bytes
    wrapped: bytes

    def __repr__(self) -> str:  # never print key material
        return f"DataKey(key_name={self.key_name!r}, wrapped={len(self.wrapped)} bytes)"


def canonical_context(context: Mapping[str, str]) -> dict[str, str]:
    """Validate a context: string keys and string values (what AWS KMS accepts)."""
    out = {}
    for k, v in context.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConfigError(f"encryption context entries must be strings, got {k!r}: {type(v)}")
        out[k] = v
    return dict(sorted(out.items()))


@runtime_checkable
class Kms(Protocol):
    """Wraps and unwraps data keys under named master keys, bound to a context."""

    #: Recorded next to wrapped keys, so a reader configured for another KMS fails clearly.
    scheme: str
    #: Whether Parquet files should use double wrapping (fewer KMS calls, see docs).
    prefers_double_wrapping: bool

    def wrap(self, key_name: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        """Encrypt `data_key` under the current version of master key `key_name`."""
        ...

    def unwrap(self, key_name: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """Decrypt a wrapped key; raises IntegrityError or KeyMissingError."""
        ...

    def generate_data_key(self, key_name: str, context: Mapping[str, str]) -> DataKey:
        """A fresh random AES-256 key and its wrapped form."""
        ...


class LocalKms:
    """Master keys from the key provider; AES-256-GCM key wrapping with associated data."""

    scheme = "local"
    # Local wrapping costs microseconds, so wrap each 256-bit DEK directly under the AES-256
    # master; pyarrow's double wrapping would interpose a 128-bit KEK.
    prefers_double_wrapping = False

    def __init__(self, provider: KeyProvider | None = None) -> None:
        self._provider = provider or key_provider()

    def __repr__(self) -> str:
        return f"LocalKms(provider={type(self._provider).__name__})"

    @staticmethod
    def _kek(secret: bytes, key_name: str, version: int) -> AESGCM:
        # Derive the wrapping key instead of using the keyring secret directly: domain
        # separation from any other use of a secret (e.g. HMAC tokenization keys).
        info = f"datashare/kms-wrap/v1/{key_name}/{version}".encode()
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
        return AESGCM(hkdf.derive(secret))

    @staticmethod
    def _aad(key_name: str, version: int, context: Mapping[str, str]) -> bytes:
        doc = {"key": key_name, "version": version, "context": canonical_context(context)}
        return _WRAP_MAGIC + json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def wrap(self, key_name: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        master = self._provider.current(key_name)
        nonce = secrets.token_bytes(12)
        ct = self._kek(master.secret, key_name, master.version).encrypt(
            nonce, bytes(data_key), self._aad(key_name, master.version, context)
        )
        return _WRAP_HEAD.pack(_WRAP_MAGIC, master.version, nonce) + ct

    def unwrap(self, key_name: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        wrapped = bytes(wrapped)
        if len(wrapped) < _WRAP_HEAD.size + 16 or not wrapped.startswith(_WRAP_MAGIC):
            raise IntegrityError(f"not a local wrapped key for {key_name!r} (wrong KMS?)")
        _, version, nonce = _WRAP_HEAD.unpack_from(wrapped)
        master = self._provider.version(key_name, version)  # KeyMissingError if not granted
        try:
            return self._kek(master.secret, key_name, version).decrypt(
                nonce, wrapped[_WRAP_HEAD.size :], self._aad(key_name, version, context)
            )
        except InvalidTag:
            raise IntegrityError(
                f"cannot unwrap a data key under {key_name!r} v{version}: wrong master key, "
                "wrong context, or altered bytes"
            ) from None

    def generate_data_key(self, key_name: str, context: Mapping[str, str]) -> DataKey:
        key = secrets.token_bytes(DATA_KEY_BYTES)
        return DataKey(key_name, key, self.wrap(key_name, key, context))


class AwsKms:
    """AWS KMS: one symmetric KMS key per master-key name, found by alias.

    Region, credentials and endpoint come from the standard AWS settings (`AWS_REGION`,
    `AWS_PROFILE`, `AWS_ENDPOINT_URL_KMS`, instance roles, ...) unless given here.
    """

    scheme = "aws-kms"
    # Double wrapping: one KMS call per master key per file instead of one per column.
    prefers_double_wrapping = True

    def __init__(
        self,
        *,
        client: Any = None,
        key_ids: Mapping[str, str] | None = None,
        alias_prefix: str = "alias/datashare/",
        region_name: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("kms", region_name=region_name, endpoint_url=endpoint_url)
        self._client = client
        self._key_ids = dict(key_ids or {})
        self._alias_prefix = alias_prefix

    def __repr__(self) -> str:
        return f"AwsKms(alias_prefix={self._alias_prefix!r})"

    def key_id(self, key_name: str) -> str:
        """The KMS key id, ARN or alias that holds master key `key_name`."""
        return self._key_ids.get(key_name) or f"{self._alias_prefix}{key_name}"

    def _call(self, op: str, key_name: str, **kwargs: Any) -> dict:
        from botocore.exceptions import ClientError

        try:
            return getattr(self._client, op)(**kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise IntegrityError(
                    f"AWS KMS refused to unwrap under {key_name!r}: wrong key, wrong context, "
                    "or altered bytes"
                ) from None
            if code in ("NotFoundException", "AccessDeniedException", "DisabledException"):
                raise KeyMissingError(
                    f"AWS KMS key for {key_name!r} ({self.key_id(key_name)}) is not available "
                    f"to this identity: {code}"
                ) from None
            raise CryptoError(f"AWS KMS {op} failed for {key_name!r}: {code}") from None

    def wrap(self, key_name: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        r = self._call(
            "encrypt",
            key_name,
            KeyId=self.key_id(key_name),
            Plaintext=bytes(data_key),
            EncryptionContext=canonical_context(context),
        )
        return bytes(r["CiphertextBlob"])

    def unwrap(self, key_name: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        # KeyId on Decrypt makes KMS refuse a blob made under any other key (AWS best practice).
        r = self._call(
            "decrypt",
            key_name,
            KeyId=self.key_id(key_name),
            CiphertextBlob=bytes(wrapped),
            EncryptionContext=canonical_context(context),
        )
        return bytes(r["Plaintext"])

    def generate_data_key(self, key_name: str, context: Mapping[str, str]) -> DataKey:
        r = self._call(
            "generate_data_key",
            key_name,
            KeyId=self.key_id(key_name),
            KeySpec="AES_256",
            EncryptionContext=canonical_context(context),
        )
        return DataKey(key_name, bytes(r["Plaintext"]), bytes(r["CiphertextBlob"]))


def kms_from_env() -> Kms:
    """The configured KMS: `$DATASHARE_KMS` = `local` (default) or `aws`."""
    kind = os.environ.get("DATASHARE_KMS", "local")
    if kind == "local":
        return LocalKms()
    if kind == "aws":
        return AwsKms(alias_prefix=os.environ.get("DATASHARE_KMS_ALIAS_PREFIX", "alias/datashare/"))
    raise ConfigError(f"unknown KMS {kind!r} (DATASHARE_KMS); known: local, aws")
