"""Access control and transport security of the real lake (SeaweedFS), adversarially.

Every reader identity x every bucket x every action: a reader may list and get its own tier's
bucket and nothing else (HTTP 403 everywhere else). The pipeline writes but cannot create or
delete buckets. TLS is verified: a client trusting another CA fails; plain HTTP is refused.
"""

from __future__ import annotations

import ssl
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
import pytest

from datashare.lake.client import Lake, connect, endpoint
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET
from datashare.lake.tls import ensure_tls
from datashare.policy import load_policy

POLICY = load_policy()
BUCKETS = [t.bucket for t in POLICY.tiers] + [PIPELINE_BUCKET]
READERS = {r: t.bucket for t in POLICY.tiers for r in t.readers}
ACTIONS = ["list", "get", "put", "delete"]
PROBE_KEY = "access-probe/object.txt"


@pytest.fixture(scope="module")
def seeded(lake: None) -> None:
    pipe = connect(PIPELINE)
    for bucket in BUCKETS:
        pipe.put_bytes(bucket, PROBE_KEY, b"probe")


def _attempt(lake: Lake, bucket: str, action: str) -> int:
    """HTTP status of one action (200-class = allowed)."""
    try:
        if action == "list":
            lake.s3.list_objects_v2(Bucket=bucket, Prefix="access-probe/")
        elif action == "get":
            lake.s3.get_object(Bucket=bucket, Key=PROBE_KEY)["Body"].read()
        elif action == "put":
            lake.s3.put_object(Bucket=bucket, Key="access-probe/written-by-reader", Body=b"x")
        else:
            lake.s3.delete_object(Bucket=bucket, Key=PROBE_KEY)
    except botocore.exceptions.ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("bucket", BUCKETS)
@pytest.mark.parametrize("action", ACTIONS)
def test_reader_access_matrix(seeded: None, reader: str, bucket: str, action: str) -> None:
    allowed = bucket == READERS[reader] and action in ("list", "get")
    status = _attempt(connect(reader), bucket, action)
    if allowed:
        assert status == 200
    else:
        assert status == 403, f"{reader} {action} on {bucket} returned {status}"


def test_pipeline_writes_but_cannot_manage_buckets(seeded: None) -> None:
    pipe = connect(PIPELINE)
    for bucket in BUCKETS:
        assert _attempt(pipe, bucket, "get") == 200
    for call in (
        lambda: pipe.s3.create_bucket(Bucket="bps-rogue"),
        lambda: pipe.s3.delete_bucket(Bucket=PIPELINE_BUCKET),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            call()
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_credentials_are_refused(lake: None) -> None:
    ep = endpoint()
    s3 = boto3.client(
        "s3",
        endpoint_url=ep.url,
        region_name=ep.region,
        aws_access_key_id="DSNOTAKEY0000000000",
        aws_secret_access_key="x" * 40,
        verify=str(ep.ca_bundle),
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.list_objects_v2(Bucket=BUCKETS[0])
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_tls_is_verified_against_the_lake_ca(lake: None, tmp_path) -> None:
    ep = endpoint()
    other = ensure_tls(tmp_path / "other-ca")  # a different, valid CA
    ctx = ssl.create_default_context(cafile=str(other.ca_cert))
    with pytest.raises(urllib.request.URLError) as err:
        urllib.request.urlopen(ep.url + "/", context=ctx, timeout=5)
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    # With the lake's own CA the handshake succeeds (anonymous request: 403, not a TLS error).
    good = ssl.create_default_context(cafile=str(ep.ca_bundle))
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(ep.url + "/", context=good, timeout=5)
    assert denied.value.code == 403


def test_plain_http_is_refused(lake: None) -> None:
    ep = endpoint()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen("http://" + ep.host_port + "/", timeout=5)
    assert err.value.code == 400
