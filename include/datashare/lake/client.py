"""Connections to the lake as one identity: boto3 for objects, pyarrow for Parquet.

The endpoint is the embedded SeaweedFS (from `.local/lake/lake.json`) unless
`DATASHARE_LAKE_ENDPOINT` points elsewhere (production S3 or a shared SeaweedFS); then the
standard AWS variables supply region, CA bundle and, for the running identity, credentials.
TLS is verified against the lake's CA; plain HTTP is refused unless `DATASHARE_LAKE_ALLOW_HTTP=1`
(a development escape hatch that `make run` never sets).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pyarrow.fs as pafs

from datashare.errors import ConfigError, KeyMissingError, LakeError
from datashare.lake.identities import Credentials, load_credentials
from datashare.settings import paths

__all__ = ["Endpoint", "Lake", "NotFound", "connect", "endpoint"]

DEFAULT_REGION = "us-east-1"


class NotFound(LakeError):
    """The object does not exist (a normal answer, not an outage)."""

    code = "not-found"
    deterministic = True


@dataclass(frozen=True)
class Endpoint:
    url: str  # https://127.0.0.1:8333
    region: str
    ca_bundle: Path | None

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def host_port(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/")


def endpoint() -> Endpoint:
    """Where the lake is, and how to verify it."""
    url = os.environ.get("DATASHARE_LAKE_ENDPOINT")
    if url:
        ca = os.environ.get("AWS_CA_BUNDLE")
        ep = Endpoint(
            url, os.environ.get("AWS_DEFAULT_REGION", DEFAULT_REGION), Path(ca) if ca else None
        )
    else:
        cfg_path = paths().lake / "lake.json"
        if not cfg_path.exists():
            raise LakeError(
                f"the embedded lake is not configured ({cfg_path} missing): run `datashare lake up`"
            )
        cfg = json.loads(cfg_path.read_text())
        ep = Endpoint(
            cfg["endpoint"],
            cfg.get("region", DEFAULT_REGION),
            Path(cfg["ca_bundle"]) if cfg.get("ca_bundle") else None,
        )
    if ep.scheme != "https" and os.environ.get("DATASHARE_LAKE_ALLOW_HTTP") != "1":
        raise ConfigError(
            f"lake endpoint {ep.url} is not HTTPS; refusing plain HTTP "
            "(set DATASHARE_LAKE_ALLOW_HTTP=1 only for development)"
        )
    return ep


def _error_code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    err = exc.response.get("Error", {})
    return str(err.get("Code", "")), int(
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    )


class Lake:
    """The lake as seen by one identity."""

    def __init__(self, creds: Credentials, ep: Endpoint) -> None:
        self.creds = creds
        self.endpoint = ep

    def __repr__(self) -> str:
        return f"Lake(identity={self.creds.identity!r}, endpoint={self.endpoint.url!r})"

    @cached_property
    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint.url,
            region_name=self.endpoint.region,
            aws_access_key_id=self.creds.access_key,
            aws_secret_access_key=self.creds.secret_key,
            verify=str(self.endpoint.ca_bundle) if self.endpoint.ca_bundle else True,
            config=botocore.config.Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 4, "mode": "standard"},
                connect_timeout=5,
                read_timeout=120,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @cached_property
    def fs(self) -> pafs.S3FileSystem:
        kwargs: dict[str, Any] = dict(
            access_key=self.creds.access_key,
            secret_key=self.creds.secret_key,
            region=self.endpoint.region,
            endpoint_override=self.endpoint.host_port,
            scheme=self.endpoint.scheme,
            force_virtual_addressing=False,
            connect_timeout=5,
            request_timeout=120,
        )
        if self.endpoint.ca_bundle:
            kwargs["tls_ca_file_path"] = str(self.endpoint.ca_bundle)
        return pafs.S3FileSystem(**kwargs)

    # -- objects --------------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code, status = _error_code(exc)
            target = (
                f"s3://{kwargs.get('Bucket', '')}/{kwargs.get('Key', kwargs.get('Prefix', ''))}"
            )
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"{target} does not exist") from exc
            raise LakeError(
                f"{what} {target} as {self.creds.identity}: {code} (HTTP {status})"
            ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise LakeError(
                f"{what} failed: the lake at {self.endpoint.url} is unreachable "
                f"({type(exc).__name__})"
            ) from exc

    def check_bucket(self, bucket: str) -> None:
        """Raise LakeError unless this identity can reach `bucket`."""
        self._call("check bucket", self.s3.head_bucket, Bucket=bucket)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        resp = self._call("get", self.s3.get_object, Bucket=bucket, Key=key)
        return resp["Body"].read()

    def put_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self._call(
            "put", self.s3.put_object, Bucket=bucket, Key=key, Body=data, ContentType=content_type
        )

    def copy(self, bucket: str, key: str, new_key: str) -> None:
        """Server-side copy within a bucket (no data passes through this process)."""
        self._call(
            "copy",
            self.s3.copy_object,
            Bucket=bucket,
            Key=new_key,
            CopySource={"Bucket": bucket, "Key": key},
        )

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        return self._call("head", self.s3.head_object, Bucket=bucket, Key=key)

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.head(bucket, key)
        except NotFound:
            return False
        return True

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        keys: list[str] = []
        token = None
        while True:
            kwargs: dict[str, Any] = dict(Bucket=bucket, Prefix=prefix)
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call("list", self.s3.list_objects_v2, **kwargs)
            keys += [o["Key"] for o in resp.get("Contents", [])]
            if not resp.get("IsTruncated"):
                return keys
            token = resp["NextContinuationToken"]

    def list_prefixes(self, bucket: str, prefix: str) -> list[str]:
        """Immediate 'subdirectories' under prefix (e.g. release ids under releases/)."""
        out: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
                out += [
                    p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])
                ]
        except botocore.exceptions.ClientError as exc:
            code, status = _error_code(exc)
            raise LakeError(
                f"list s3://{bucket}/{prefix} as {self.creds.identity}: {code} (HTTP {status})"
            ) from exc
        return out

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        keys = self.list_keys(bucket, prefix)
        for i in range(0, len(keys), 1000):
            self._call(
                "delete",
                self.s3.delete_objects,
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
            )
        return len(keys)


def connect(identity: str) -> Lake:
    """A connection as `identity`.

    Keys come from the generated identities file (`.local/secrets`, also mounted into the
    containers of docker-compose.yaml). With an external endpoint and no such file, the
    standard AWS variables supply the keys of the one identity running this process.
    """
    ep = endpoint()
    try:
        creds = load_credentials(identity)
    except KeyMissingError:
        if not (os.environ.get("DATASHARE_LAKE_ENDPOINT") and os.environ.get("AWS_ACCESS_KEY_ID")):
            raise
        creds = Credentials(
            identity, os.environ["AWS_ACCESS_KEY_ID"], os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        )
    return Lake(creds, ep)
