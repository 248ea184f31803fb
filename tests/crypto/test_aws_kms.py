"""`AwsKms` against moto's in-process KMS (an AWS-specific component: the one place the project
allows a mock). Wrap/unwrap with an encryption context, and both file formats end to end."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pyarrow as pa
import pytest

from datashare.crypto.blobs import open_sealed, seal
from datashare.crypto.kms import AwsKms, IntegrityError, LocalKms, kms_from_env
from datashare.crypto.parquet import ReleaseKey, TierKeys, read_encrypted, write_encrypted
from datashare.errors import DataShareError, KeyMissingError

# moto[kms] is a test requirement (requirements.in); skip visibly (-ra) where it is missing.
mock_aws = pytest.importorskip("moto", reason="moto[kms] is not installed").mock_aws

CTX = {"tier": "4", "dataset": "student_year"}
DEK = bytes(range(32))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsKms]:
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("kms")
        for name in ("master/tier2", "master/tier4", "master/tier4/sensitive", "master/pipeline"):
            key_id = client.create_key(Description=name)["KeyMetadata"]["KeyId"]
            client.create_alias(AliasName=f"alias/datashare/{name}", TargetKeyId=key_id)
        yield AwsKms()  # region and credentials from the standard AWS environment


def test_wrap_unwrap_with_encryption_context(aws: AwsKms) -> None:
    wrapped = aws.wrap("master/tier4", DEK, CTX)
    assert DEK not in wrapped
    assert aws.unwrap("master/tier4", wrapped, dict(reversed(CTX.items()))) == DEK
    dk = aws.generate_data_key("master/tier4", CTX)
    assert len(dk.plaintext) == 32 and aws.unwrap("master/tier4", dk.wrapped, CTX) == dk.plaintext
    assert dk.plaintext.hex() not in repr(dk) and repr(dk.plaintext) not in repr(dk)


def test_context_mismatch_and_other_keys_are_refused(aws: AwsKms) -> None:
    wrapped = aws.wrap("master/tier4", DEK, CTX)
    with pytest.raises(IntegrityError):
        aws.unwrap("master/tier4", wrapped, {**CTX, "dataset": "other"})
    with pytest.raises(IntegrityError):
        aws.unwrap("master/tier4", wrapped, {})
    # Decrypt pins KeyId: a blob presented as another master key's is refused (moto says
    # AccessDenied, AWS IncorrectKeyException; either way a DataShareError, never the key).
    with pytest.raises(DataShareError):
        aws.unwrap("master/tier2", wrapped, CTX)
    with pytest.raises(KeyMissingError):
        aws.wrap("master/tier9", DEK, CTX)
    with pytest.raises(IntegrityError):
        aws.unwrap("master/tier4", wrapped[:-1] + bytes([wrapped[-1] ^ 1]), CTX)


def test_parquet_and_blobs_over_aws_kms(aws: AwsKms, kms: LocalKms) -> None:
    t = pa.table({"student_token": ["t1", "t2"], "swd": [True, False], "grade": [3, 4]})
    keys = TierKeys(aws, 4, "student_year", {"sensitive": ["swd"]})  # double wrapping (AWS)
    data = write_encrypted(t, keys)
    assert b'"doubleWrapping":true' in data and b'"kmsInstanceID":"aws-kms"' in data
    assert read_encrypted(data, keys).equals(t)
    with pytest.raises(DataShareError, match="wrapped by KMS 'aws-kms'"):
        read_encrypted(data, TierKeys(kms, 4, "student_year"))

    release = ReleaseKey.create(aws, 2, "r1")
    opened = ReleaseKey.open(aws, release.document(), tier=2, release_id="r1")
    assert read_encrypted(write_encrypted(t, release), opened).equals(t)

    sealed = seal(aws, "master/pipeline", b"<xml>SID-9181234</xml>", {"zone": "raw"})
    assert open_sealed(aws, sealed, {"zone": "raw"}) == b"<xml>SID-9181234</xml>"
    with pytest.raises(IntegrityError):
        open_sealed(aws, sealed, {"zone": "staging"})


def test_kms_from_env(aws: AwsKms, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASHARE_KMS", "aws")
    assert isinstance(kms_from_env(), AwsKms)
    monkeypatch.setenv("DATASHARE_KMS", "local")
    assert isinstance(kms_from_env(), LocalKms)
    monkeypatch.setenv("DATASHARE_KMS", "vault")
    with pytest.raises(DataShareError, match="vault"):
        kms_from_env()
