"""Encryption at rest, envelope style: master keys (KMS) wrap fresh per-object data keys.

- `kms`: the KMS interface, `LocalKms` (keyring) and `AwsKms` (AWS KMS).
- `parquet`: Parquet Modular Encryption (per-file data keys, column groups, or a per-release
  key that DuckDB can read).
- `blobs`: chunked AES-256-GCM envelopes for raw exports and JSON state.

See docs/encryption.md for the key hierarchy and reader instructions.
"""

from __future__ import annotations

from datashare.crypto.kms import AwsKms, CryptoError, IntegrityError, Kms, LocalKms, kms_from_env

__all__ = ["AwsKms", "CryptoError", "IntegrityError", "Kms", "LocalKms", "kms_from_env"]
