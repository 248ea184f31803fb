"""`LocalKms`: AES-256-GCM key wrapping bound to key name, version and context."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from datashare.crypto.kms import IntegrityError, Kms, LocalKms, canonical_context
from datashare.errors import ConfigError, KeyMissingError
from datashare.keys import LocalKeyring

CTX = {"tier": "2", "dataset": "enrollment"}
DEK = bytes(range(32))


def test_wrap_round_trip_and_interface(kms: LocalKms) -> None:
    assert isinstance(kms, Kms)
    wrapped = kms.wrap("master/tier2", DEK, CTX)
    assert DEK not in wrapped and len(wrapped) == 4 + 4 + 12 + 32 + 16
    assert kms.unwrap("master/tier2", wrapped, dict(reversed(CTX.items()))) == DEK
    assert kms.wrap("master/tier2", DEK, CTX) != wrapped  # fresh nonce every time


def test_generate_data_key_is_fresh_and_never_printed(kms: LocalKms) -> None:
    a, b = (kms.generate_data_key("master/tier1", CTX) for _ in range(2))
    assert a.plaintext != b.plaintext and a.wrapped != b.wrapped and len(a.plaintext) == 32
    assert kms.unwrap("master/tier1", a.wrapped, CTX) == a.plaintext
    for text in (repr(a), str(a), repr(kms)):
        assert a.plaintext.hex() not in text and repr(a.plaintext) not in text


@pytest.mark.parametrize(
    ("name", "context"),
    [
        ("master/tier2", {"tier": "2", "dataset": "attendance"}),  # another dataset
        ("master/tier2", {"tier": "2"}),  # context dropped
        ("master/tier3", CTX),  # another master key
    ],
)
def test_unwrap_refuses_other_name_or_context(kms: LocalKms, name: str, context: dict) -> None:
    wrapped = kms.wrap("master/tier2", DEK, CTX)
    with pytest.raises(IntegrityError):
        kms.unwrap(name, wrapped, context)


def test_tampered_wrapped_key_is_refused(kms: LocalKms) -> None:
    wrapped = bytearray(kms.wrap("master/tier2", DEK, CTX))
    for pos in (10, 30, len(wrapped) - 1):
        bad = bytearray(wrapped)
        bad[pos] ^= 1
        with pytest.raises(IntegrityError):
            kms.unwrap("master/tier2", bytes(bad), CTX)
    with pytest.raises(IntegrityError, match="wrong KMS"):
        kms.unwrap("master/tier2", b"\x01" * 96, CTX)  # e.g. an AWS KMS blob


def test_wrong_or_missing_master_key(
    kms: LocalKms, reader_kms: Callable[..., LocalKms], tmp_path
) -> None:
    wrapped = kms.wrap("master/tier2", DEK, CTX)
    other = LocalKeyring(tmp_path / "other" / "keyring.json")
    other.ensure(["master/tier2"])  # same name, different secret
    with pytest.raises(IntegrityError):
        LocalKms(other).unwrap("master/tier2", wrapped, CTX)
    with pytest.raises(KeyMissingError):
        reader_kms("master/tier1").unwrap("master/tier2", wrapped, CTX)
    with pytest.raises(KeyMissingError):
        kms.wrap("master/tier9", DEK, CTX)


def test_rotation_keeps_old_wrapped_keys_readable(kms: LocalKms, ring: LocalKeyring) -> None:
    old = kms.wrap("master/tier3", DEK, CTX)
    ring.rotate("master/tier3")
    new = kms.wrap("master/tier3", DEK, CTX)
    assert struct.unpack(">I", old[4:8]) == (1,) and struct.unpack(">I", new[4:8]) == (2,)
    assert kms.unwrap("master/tier3", old, CTX) == kms.unwrap("master/tier3", new, CTX) == DEK
    # Claiming another version does not help: the version is authenticated.
    forged = old[:4] + struct.pack(">I", 2) + old[8:]
    with pytest.raises(IntegrityError):
        kms.unwrap("master/tier3", forged, CTX)


def test_context_values_must_be_strings() -> None:
    assert list(canonical_context({"b": "1", "a": "2"})) == ["a", "b"]
    with pytest.raises(ConfigError):
        canonical_context({"tier": 2})  # type: ignore[dict-item]
