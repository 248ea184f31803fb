"""Lake identities and their grants, derived from the tier policy.

- `lake-admin` creates buckets; only `datashare lake up` uses it.
- `pipeline` reads and writes every tier bucket and the pipeline-only bucket (raw zone, staging,
  validation results); it cannot create or delete buckets.
- one read-only identity per reader the policy names (`tier1-reader` ... `tier4-reader`), each
  granted list on its own tier's bucket and read of its published releases, nothing else;
- one read-only identity per active research project (`research-<name>`), granted read of the
  datasets its data-use agreement names in tier 4; an expired agreement gets no grant.

Secrets are generated on first use into `.local/secrets/lake-identities.json` (0600). Grants are
recomputed from the policy every time the lake starts, so a policy edit changes access on restart.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from datashare.errors import KeyMissingError
from datashare.lake.layout import PIPELINE_BUCKET
from datashare.policy import load_policy
from datashare.settings import paths, write_private

__all__ = [
    "ADMIN",
    "PIPELINE",
    "Credentials",
    "Identity",
    "grants_document",
    "identities",
    "load_credentials",
    "seaweed_config",
]

ADMIN = "lake-admin"
PIPELINE = "pipeline"


@dataclass(frozen=True)
class Credentials:
    identity: str
    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class Identity:
    name: str
    actions: tuple[str, ...]
    description: str


def identities() -> list[Identity]:
    """Every identity and its grants, from the tier policy."""
    policy = load_policy()
    tier_buckets = [t.bucket for t in policy.tiers]
    pipeline_actions = tuple(
        f"{action}:{bucket}"
        for bucket in [*tier_buckets, PIPELINE_BUCKET]
        for action in ("Read", "Write", "List", "Tagging")
    )
    out = [
        Identity(ADMIN, ("Admin",), "creates buckets when the lake starts"),
        Identity(PIPELINE, pipeline_actions, "the nightly pipeline: writes every tier"),
    ]
    for tier in policy.tiers:
        for reader in tier.readers:
            out.append(
                Identity(
                    reader,
                    # Published releases and the LATEST pointer only; never `_staging/`.
                    (
                        f"Read:{tier.bucket}/releases/*",
                        f"Read:{tier.bucket}/LATEST*",
                        f"List:{tier.bucket}",
                    ),
                    f"reads tier {tier.tier} ({tier.title}) only",
                )
            )
    today = dt.datetime.now(dt.UTC).date()
    for project in policy.research_projects:
        if not project.active(today):
            continue  # an expired agreement gets no grant at all
        bucket = policy.tier(project.tier).bucket
        actions = [f"Read:{bucket}/releases/*/{d}/*" for d in project.datasets]
        actions += [
            f"Read:{bucket}/releases/*/_manifest.json*",
            f"Read:{bucket}/LATEST*",
            f"List:{bucket}",
        ]
        out.append(
            Identity(
                project.identity,
                tuple(actions),
                f"research project under {project.agreement} (until "
                f"{project.expires}): {', '.join(project.datasets)}",
            )
        )
    return out


def _secrets_path() -> Path:
    return paths().secrets / "lake-identities.json"


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def ensure_credentials() -> dict[str, Credentials]:
    """Load the identities' keys, generating any that do not exist yet."""
    path = _secrets_path()
    data = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for ident in identities():
        if ident.name not in data:
            data[ident.name] = {
                "access_key": "DS" + _random(string.ascii_uppercase + string.digits, 18),
                "secret_key": _random(string.ascii_letters + string.digits, 40),
            }
            changed = True
    if changed:
        write_private(path, json.dumps(data, indent=1, sort_keys=True))
    return {n: Credentials(n, v["access_key"], v["secret_key"]) for n, v in data.items()}


def load_credentials(identity: str) -> Credentials:
    """Keys of one identity of the embedded lake; fails closed if they were never generated."""
    path = _secrets_path()
    if not path.exists():
        raise KeyMissingError(f"no lake credentials at {path}: run `datashare lake up` first")
    data = json.loads(path.read_text())
    if identity not in data:
        known = ", ".join(sorted(data))
        raise KeyMissingError(f"unknown lake identity {identity!r} (known: {known})")
    v = data[identity]
    return Credentials(identity, v["access_key"], v["secret_key"])


def grants_document() -> dict:
    """Who may do what, without any secret: for auditors, and for operators who apply grants
    to a production object store by hand (IAM)."""
    return {
        "identities": [
            {"name": i.name, "actions": list(i.actions), "description": i.description}
            for i in identities()
        ]
    }


def seaweed_config(creds: dict[str, Credentials]) -> str:
    """The SeaweedFS `-s3.config` JSON: identities, their keys and their grants."""
    return json.dumps(
        {
            "identities": [
                {
                    "name": ident.name,
                    "credentials": [
                        {
                            "accessKey": creds[ident.name].access_key,
                            "secretKey": creds[ident.name].secret_key,
                        }
                    ],
                    "actions": list(ident.actions),
                }
                for ident in identities()
            ]
        },
        indent=1,
    )
