"""The tier policy as typed objects, and the rules a policy must satisfy to be loaded.

The policy file says who receives what; this module only reads it and refuses inconsistent
policies (fail closed): an unclassified column, a dataset whose output a tier does not allow, a
tier-3 dataset that does not exclude opted-out students, an aggregate below the tier's minimum
cell size. Checks run when the DAG file is parsed, so a bad policy never reaches a run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from datashare.errors import ConfigError

__all__ = [
    "AggregateSpec",
    "ColumnClass",
    "DPSpec",
    "DatasetSpec",
    "KAnonSpec",
    "MicrodataColumn",
    "Policy",
    "ResearchProject",
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
    # measures whose values below/above these shares are published as the bound, flagged
    top_bottom: tuple[tuple[str, ...], float, float] | None = None


@dataclass(frozen=True)
class KAnonSpec:
    k: int
    suppression_limit: float
    quasi_identifiers: dict[str, tuple[str, str]]  # output column -> (source column, hierarchy)
    keep: tuple[str, ...]
    l_diversity: tuple[str, float] | None = None  # (sensitive attribute, l)


@dataclass(frozen=True)
class DPSpec:
    by: tuple[str, ...]
    domain: dict[str, str]  # column -> name of a public domain in the policy
    epsilon: float
    annual_cap: float
    mechanism: str = "laplace"
    max_contributions: int = 1
    refresh_days: int = 28


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
    k_anon: KAnonSpec | None = None
    dp: DPSpec | None = None
    column_groups: dict[str, tuple[str, ...]] | None = None  # encrypted under their own keys

    @property
    def output_columns(self) -> list[str]:
        """The columns the dataset publishes, in order."""
        if self.aggregate:
            agg = self.aggregate
            cols = list(agg.by) + (["subgroup", "subgroup_value"] if agg.subgroups else [])
            cols += list(agg.measures)
            if agg.top_bottom:
                cols += [f"{m}_coded" for m in agg.top_bottom[0]]
            return cols + (["suppressed"] if agg.min_cell else [])
        if self.k_anon:
            return list(self.k_anon.quasi_identifiers) + list(self.k_anon.keep)
        if self.dp:
            return [*self.dp.by, "count"]
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class ResearchProject:
    """A data-use agreement: a read-only identity limited to some datasets of a tier."""

    name: str
    agreement: str
    tier: int
    datasets: tuple[str, ...]
    column_groups: tuple[str, ...]
    expires: dt.date

    @property
    def identity(self) -> str:
        return f"research-{self.name}"

    def active(self, today: dt.date | None = None) -> bool:
        return (today or dt.datetime.now(dt.UTC).date()) <= self.expires


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
    encryption_mode: str = "per_file"  # per_file | release_key

    @property
    def column_groups(self) -> set[str]:
        return {g for d in self.datasets for g in (d.column_groups or {})}

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
    domains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    hierarchies: dict[str, dict[str, Any]] = field(default_factory=dict)
    research_projects: tuple[ResearchProject, ...] = ()

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
        tb = raw.get("top_bottom_code")
        agg = AggregateSpec(
            by=tuple(raw["by"]),
            subgroups=tuple(raw.get("subgroups", ())),
            measures={k: (fn, col) for k, (fn, col) in measures.items()},
            min_cell=raw.get("min_cell"),
            top_bottom=(tuple(tb["measures"]), float(tb["below"]), float(tb["above"]))
            if tb
            else None,
        )
        return DatasetSpec(**common, aggregate=agg)
    if form == "k_anonymous":
        ld = raw.get("l_diversity")
        spec = KAnonSpec(
            k=int(raw["k"]),
            suppression_limit=float(raw.get("suppression_limit", 0.0)),
            quasi_identifiers={
                out: (q.get("from", out), q["hierarchy"])
                for out, q in raw["quasi_identifiers"].items()
            },
            keep=tuple(raw["keep"]),
            l_diversity=(ld["attribute"], float(ld["l"])) if ld else None,
        )
        return DatasetSpec(**common, k_anon=spec)
    if form == "dp_count":
        dp = DPSpec(
            by=tuple(raw["by"]),
            domain=dict(raw["domain"]),
            epsilon=float(raw["epsilon"]),
            annual_cap=float(raw["annual_cap"]),
            mechanism=raw.get("mechanism", "laplace"),
            max_contributions=int(raw.get("max_contributions", 1)),
            refresh_days=int(raw.get("refresh_days", 28)),
        )
        return DatasetSpec(**common, dp=dp)
    cols = []
    for out, spec in raw["columns"].items():
        if spec == "keep":
            cols.append(MicrodataColumn(out, "keep", out))
        elif "tokenize" in spec:
            cols.append(MicrodataColumn(out, "tokenize", spec["tokenize"]))
        else:
            cols.append(MicrodataColumn(out, "generalize", spec["generalize"], spec["to"]))
    groups = {g: tuple(c) for g, c in (raw.get("column_groups") or {}).items()}
    return DatasetSpec(
        **common,
        columns=tuple(cols),
        exclude_if=tuple(raw.get("exclude_if", ())),
        column_groups=groups or None,
    )


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

    for project in policy.research_projects:
        where = f"tier policy: research project {project.name}"
        tier = policy.tier(project.tier)
        unknown = [d for d in project.datasets if d not in {x.name for x in tier.datasets}]
        if unknown:
            raise ConfigError(f"{where}: tier {tier.tier} has no dataset(s) {unknown}")
        groups = [g for g in project.column_groups if g not in tier.column_groups]
        if groups:
            raise ConfigError(f"{where}: tier {tier.tier} has no column group(s) {groups}")
    for tier in policy.tiers:
        if tier.column_groups and tier.encryption_mode != "per_file":
            raise ConfigError(
                f"tier policy: tier {tier.tier} has column groups, which need "
                "encryption mode per_file (one release key cannot separate them)"
            )
    seen_buckets: set[str] = set()
    for tier in policy.tiers:
        for ds in tier.datasets:
            _check_form(policy, tier, ds)
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
            if ds.k_anon:
                needed += [src for src, _ in ds.k_anon.quasi_identifiers.values()]
                needed += list(ds.k_anon.keep)
            if ds.dp:
                needed += list(ds.dp.by)
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


def _check_form(policy: Policy, tier: Tier, ds: DatasetSpec) -> None:
    """Rules of the k_anonymous and dp_count forms, column groups and top/bottom coding."""
    where = f"tier policy: tier {tier.tier} dataset {ds.name}"
    allows = tier.allows
    if ds.k_anon:
        spec = ds.k_anon
        floor = allows.get("k_at_least")
        if floor and spec.k < floor:
            raise ConfigError(f"{where}: k must be at least {floor} in this tier")
        for out, (src, hierarchy) in spec.quasi_identifiers.items():
            if hierarchy not in policy.hierarchies:
                raise ConfigError(
                    f"{where}: quasi-identifier {out} names unknown hierarchy "
                    f"{hierarchy!r} (see `hierarchies`)"
                )
            cls = policy.classify(ds.source, src)
            if not cls.matches(tuple(allows.get("generalize", ()))):
                raise ConfigError(
                    f"{where}: {src} ({cls.cls}) may not be released even generalized in this tier"
                )
        for col in spec.keep:
            cls = policy.classify(ds.source, col)
            if cls.cls == "direct_identifier" or not cls.matches(tuple(allows.get("keep", ()))):
                raise ConfigError(
                    f"{where}: attribute {col} ({cls.cls}) may not be kept in this tier"
                )
            if cls.cls == "quasi_identifier":
                raise ConfigError(
                    f"{where}: {col} is a quasi-identifier: list it under "
                    "quasi_identifiers so k-anonymity covers it"
                )
    if ds.dp:
        cap = allows.get("epsilon_at_most")
        if cap is not None and ds.dp.epsilon > cap:
            raise ConfigError(f"{where}: epsilon {ds.dp.epsilon} exceeds this tier's {cap}")
        if ds.dp.epsilon > ds.dp.annual_cap:
            raise ConfigError(f"{where}: epsilon exceeds the annual cap")
        group_allowed = tuple(allows.get("group_by", ()))
        for col in ds.dp.by:
            cls = policy.classify(ds.source, col)
            if not cls.matches(group_allowed):
                raise ConfigError(f"{where}: may not count by {col} ({cls.cls}) in this tier")
            if ds.dp.domain.get(col) not in policy.domains:
                raise ConfigError(f"{where}: {col} needs a public domain listed in `domains`")
    if ds.column_groups:
        outputs = set(ds.output_columns)
        for group, cols in ds.column_groups.items():
            missing = [c for c in cols if c not in outputs]
            if missing:
                raise ConfigError(
                    f"{where}: column group {group} names {missing}, which the "
                    "dataset does not publish"
                )
    if ds.aggregate and ds.aggregate.top_bottom:
        missing = [m for m in ds.aggregate.top_bottom[0] if m not in ds.aggregate.measures]
        if missing:
            raise ConfigError(f"{where}: top_bottom_code names unknown measures {missing}")


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
            encryption_mode=t["encryption"]["mode"],
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
        domains={k: tuple(str(x) for x in v) for k, v in (raw.get("domains") or {}).items()},
        hierarchies=dict(raw.get("hierarchies") or {}),
        research_projects=tuple(
            ResearchProject(
                name=r["name"],
                agreement=r["agreement"],
                tier=int(r["tier"]),
                datasets=tuple(r["datasets"]),
                column_groups=tuple(r.get("column_groups", ())),
                expires=dt.date.fromisoformat(r["expires"]),
            )
            for r in raw.get("research_projects") or ()
        ),
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
