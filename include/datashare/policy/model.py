"""The tier policy as typed objects, and the rules a policy must satisfy to be loaded.

The policy file says who receives what; this module only reads it and refuses inconsistent
policies (fail closed): an unclassified column, a dataset whose output a tier does not allow, a
tier-3 dataset that does not exclude opted-out students, an aggregate below the tier's minimum
cell size. Checks run when the DAG file is parsed, so a bad policy never reaches a run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from datashare.errors import ConfigError

__all__ = [
    "AggregateSpec",
    "ColumnClass",
    "DatasetSpec",
    "MicrodataColumn",
    "Policy",
    "Tier",
    "load_policy",
]

_HERE = Path(__file__).parent
DEFAULT_POLICY = _HERE / "tier_policy.yaml"
SCHEMA = _HERE / "tier_policy.schema.json"


@dataclass(frozen=True)
class ColumnClass:
    cls: str  # direct_identifier | quasi_identifier | sensitive | non_personal
    directory: bool = False

    def matches(self, allowed: tuple[str, ...]) -> bool:
        """Whether a tier rule naming `allowed` classes covers this column."""
        return self.cls in allowed or (self.directory and "directory" in allowed)


@dataclass(frozen=True)
class MicrodataColumn:
    name: str  # output column
    treatment: str  # keep | tokenize | generalize
    source: str  # input column
    to: str | None = None  # generalization target


@dataclass(frozen=True)
class AggregateSpec:
    by: tuple[str, ...]
    subgroups: tuple[str, ...]
    measures: dict[str, tuple[str, str]]  # output -> (function, input column)
    min_cell: int | None


@dataclass(frozen=True)
class DatasetSpec:
    tier: int
    name: str
    description: str
    form: str
    source: str  # canonical dataset or derived view
    columns: tuple[MicrodataColumn, ...] = ()
    exclude_if: tuple[str, ...] = ()
    aggregate: AggregateSpec | None = None


@dataclass(frozen=True)
class Tier:
    tier: int
    name: str
    title: str
    bucket: str
    readers: tuple[str, ...]
    audience: str
    allows: dict[str, Any]
    datasets: tuple[DatasetSpec, ...]

    def dataset(self, name: str) -> DatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(f"tier {self.tier} has no dataset {name!r}")


@dataclass(frozen=True)
class Policy:
    version: str
    title: str
    owner: str
    classes: dict[str, str]
    classification: dict[str, ColumnClass]
    tiers: tuple[Tier, ...]
    digest: str  # sha256 of the policy file, recorded with the version

    def tier(self, number: int) -> Tier:
        for t in self.tiers:
            if t.tier == number:
                return t
        raise ConfigError(f"the policy has no tier {number}")

    def classify(self, dataset: str, column: str) -> ColumnClass:
        found = self.classification.get(f"{dataset}.{column}") or self.classification.get(column)
        if found is None:
            raise ConfigError(
                f"tier policy: column {dataset}.{column} is not classified; add it to "
                "`classification` in tier_policy.yaml"
            )
        return found


def _parse_dataset(tier: int, raw: dict) -> DatasetSpec:
    form = raw["form"]
    common = dict(
        tier=tier, name=raw["name"], description=raw["description"], form=form, source=raw["from"]
    )
    if form == "table":
        cols = tuple(MicrodataColumn(c, "keep", c) for c in raw["columns"])
        return DatasetSpec(**common, columns=cols)
    if form == "aggregate":
        measures = {out: next(iter(m.items())) for out, m in raw["measures"].items()}
        agg = AggregateSpec(
            by=tuple(raw["by"]),
            subgroups=tuple(raw.get("subgroups", ())),
            measures={k: (fn, col) for k, (fn, col) in measures.items()},
            min_cell=raw.get("min_cell"),
        )
        return DatasetSpec(**common, aggregate=agg)
    cols = []
    for out, spec in raw["columns"].items():
        if spec == "keep":
            cols.append(MicrodataColumn(out, "keep", out))
        elif "tokenize" in spec:
            cols.append(MicrodataColumn(out, "tokenize", spec["tokenize"]))
        else:
            cols.append(MicrodataColumn(out, "generalize", spec["generalize"], spec["to"]))
    return DatasetSpec(**common, columns=tuple(cols), exclude_if=tuple(raw.get("exclude_if", ())))


def _source_columns(source: str) -> list[str]:
    # Imported here: the view catalogue imports nothing from the policy, but keeps this module
    # importable on its own for the JSON-schema tests.
    from datashare.sources.canonical import model
    from datashare.tiers.views import VIEWS

    if source in VIEWS:
        return list(VIEWS[source].columns)
    if source in model().datasets:
        return model()[source].column_names
    raise ConfigError(f"tier policy: unknown source {source!r} (not a canonical dataset or view)")


def _check(policy: Policy) -> None:
    """Enforce each tier's own `allows` rules on its datasets."""
    from datashare.sources.canonical import model
    from datashare.tiers.views import VIEWS

    # Every column of the canonical model and of every view must be classified.
    for ds in model().datasets.values():
        for col in ds.column_names:
            policy.classify(ds.name, col)
    for view in VIEWS.values():
        for col in view.columns:
            policy.classify(view.name, col)

    seen_buckets: set[str] = set()
    for tier in policy.tiers:
        if tier.bucket in seen_buckets:
            raise ConfigError(f"tier policy: bucket {tier.bucket} is used by two tiers")
        seen_buckets.add(tier.bucket)
        allows = tier.allows
        names = [d.name for d in tier.datasets]
        if len(set(names)) != len(names):
            raise ConfigError(f"tier policy: tier {tier.tier} names a dataset twice")
        for ds in tier.datasets:
            where = f"tier policy: tier {tier.tier} dataset {ds.name}"
            if ds.form not in allows["forms"]:
                raise ConfigError(f"{where}: form {ds.form!r} is not allowed in this tier")
            available = _source_columns(ds.source)
            needed = [c.source for c in ds.columns] + list(ds.exclude_if)
            if ds.aggregate:
                needed += list(ds.aggregate.by) + list(ds.aggregate.subgroups)
                needed += [col for _, col in ds.aggregate.measures.values()]
            for col in needed:
                if col not in available:
                    raise ConfigError(f"{where}: source {ds.source} has no column {col!r}")
            for col in ds.columns:
                cls = policy.classify(ds.source, col.source)
                rule = {"keep": "keep", "tokenize": "tokenize", "generalize": "generalize"}[
                    col.treatment
                ]
                allowed = tuple(allows.get(rule, ()))
                if not cls.matches(allowed):
                    raise ConfigError(
                        f"{where}: column {col.source} ({cls.cls}"
                        f"{', directory' if cls.directory else ''}) may not be released as "
                        f"'{col.treatment}' in this tier (allows.{rule}: {list(allowed)})"
                    )
            for flag in allows.get("must_exclude", ()):
                if flag not in ds.exclude_if:
                    raise ConfigError(f"{where}: must exclude rows where {flag} is true")
            if ds.aggregate:
                group_allowed = tuple(allows.get("group_by", ()))
                for col in ds.aggregate.by + ds.aggregate.subgroups:
                    cls = policy.classify(ds.source, col)
                    if not cls.matches(group_allowed):
                        raise ConfigError(
                            f"{where}: may not group by {col} ({cls.cls}) in this tier"
                        )
                for out, (fn, col) in ds.aggregate.measures.items():
                    cls = policy.classify(ds.source, col)
                    if fn != "count" and not cls.matches(group_allowed):
                        raise ConfigError(
                            f"{where}: measure {out} summarises {col} ({cls.cls}), which this "
                            "tier may not receive even in aggregate"
                        )
                floor = allows.get("min_cell_at_least")
                if floor and (ds.aggregate.min_cell or 0) < floor:
                    raise ConfigError(f"{where}: min_cell must be at least {floor} in this tier")


def _parse(raw: dict, digest: str) -> Policy:
    classification = {
        k: ColumnClass(v["class"], bool(v.get("directory", False)))
        for k, v in raw["classification"].items()
    }
    tiers = tuple(
        Tier(
            tier=t["tier"],
            name=t["name"],
            title=t["title"],
            bucket=t["bucket"],
            readers=tuple(t["readers"]),
            audience=t.get("audience", ""),
            allows=dict(t["allows"]),
            datasets=tuple(_parse_dataset(t["tier"], d) for d in t["datasets"]),
        )
        for t in raw["tiers"]
    )
    if sorted(t.tier for t in tiers) != [t.tier for t in tiers]:
        raise ConfigError("tier policy: list tiers in increasing order")
    return Policy(
        version=raw["policy_version"],
        title=raw["title"],
        owner=raw.get("owner", ""),
        classes=dict(raw["classes"]),
        classification=classification,
        tiers=tiers,
        digest=digest,
    )


def parse_policy(text: str) -> Policy:
    """Parse, schema-validate and rule-check a policy document."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"tier policy is not valid YAML: {exc}") from exc
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(raw), key=lambda e: list(e.path)
    )
    if errors:
        first = errors[0]
        path = "/".join(str(p) for p in first.absolute_path) or "(top)"
        raise ConfigError(f"tier policy does not match its schema at {path}: {first.message}")
    policy = _parse(raw, hashlib.sha256(text.encode()).hexdigest())
    _check(policy)
    return policy


@cache
def _load_cached(path: str, mtime_ns: int) -> Policy:
    return parse_policy(Path(path).read_text())


def load_policy(path: Path | None = None) -> Policy:
    """The tier policy (default: the one shipped in this package), validated and checked."""
    p = Path(path or DEFAULT_POLICY)
    return _load_cached(str(p.resolve()), p.stat().st_mtime_ns)
