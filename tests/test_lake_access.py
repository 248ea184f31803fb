"""Access control and transport security of the real lake (SeaweedFS), adversarially.

Every reader identity x every bucket x every action: a reader may list its own tier's bucket and
get its published releases, and nothing else (HTTP 403 everywhere else, including the staged
releases in its own bucket). The pipeline writes but cannot create or
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
# Readers may read published releases (and LATEST) only: probe both a published-area object and
# a staged one, which no reader may see even in its own tier.
PROBE_KEY = "releases/access-probe/object.txt"
STAGED_KEY = "_staging/access-probe/object.txt"


@pytest.fixture(scope="module")
def seeded(lake: None) -> None:
    pipe = connect(PIPELINE)
    for bucket in BUCKETS:
        pipe.put_bytes(bucket, PROBE_KEY, b"probe")
        pipe.put_bytes(bucket, STAGED_KEY, b"staged")


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


@pytest.mark.parametrize("reader", sorted(READERS))
def test_no_reader_sees_unpublished_releases(seeded: None, reader: str) -> None:
    lake = connect(reader)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        lake.s3.get_object(Bucket=READERS[reader], Key=STAGED_KEY)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


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


def test_research_projects_read_only_their_datasets(seeded: None) -> None:
    """A data-use agreement's identity reads the datasets it names in tier 4, nothing else."""
    pipe = connect(PIPELINE)
    tier4 = POLICY.tier(4)
    names = [d.name for d in tier4.datasets]
    for name in names:
        pipe.put_bytes(tier4.bucket, f"releases/probe-release/{name}/probe.bin", b"x")
    for project in POLICY.research_projects:
        lake = connect(project.identity)
        for name in names:
            status = _attempt_get(lake, tier4.bucket, f"releases/probe-release/{name}/probe.bin")
            assert status == (200 if name in project.datasets else 403), (project.name, name)
        for bucket in BUCKETS:
            if bucket != tier4.bucket:
                assert _attempt(lake, bucket, "get") == 403
                assert _attempt(lake, bucket, "list") == 403
        assert _attempt(lake, tier4.bucket, "put") == 403


def _attempt_get(lake: Lake, bucket: str, key: str) -> int:
    try:
        lake.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200
