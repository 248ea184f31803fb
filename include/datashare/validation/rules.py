"""The rules of one canonical dataset, each with its severity from contracts.yaml.

A rule is one Great Expectations expectation plus what the pipeline needs around it: a stable
id operators see in logs (e.g. `gender.code_set`), its kind, its severity, a description, and
whether failing rows can be singled out (row-level rules can quarantine rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from datashare.errors import ConfigError
from datashare.sources.canonical import Dataset, model
from datashare.validation.checks import CheckContext, derived_checks, key_column

__all__ = ["Contracts", "Rule", "contracts", "rules_for"]

SEVERITIES = ("critical", "quarantine", "warning")


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    expectation: str
    kwargs: dict[str, Any]
    severity: str
    description: str
    row_level: bool = True

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "rule": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "description": self.description,
        }


@dataclass(frozen=True)
class Contracts:
    by_kind: dict[str, str]
    quarantine_max_share: float
    volume: dict[str, float]
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_dataset(self, dataset: str) -> dict[str, Any]:
        return self.datasets.get(dataset) or {}

    def severity(self, dataset: str, rule_id: str, kind: str) -> str:
        sev = self.for_dataset(dataset).get("rules", {}).get(rule_id) or self.by_kind.get(kind)
        if sev not in SEVERITIES:
            raise ConfigError(
                f"contracts.yaml: no valid severity for {dataset} rule {rule_id} "
                f"(kind {kind}); use one of {SEVERITIES}"
            )
        return sev

    def max_share(self, dataset: str) -> float:
        return float(
            self.for_dataset(dataset).get("quarantine_max_share", self.quarantine_max_share)
        )

    def volume_for(self, dataset: str) -> dict[str, float]:
        return {**self.volume, **self.for_dataset(dataset).get("volume", {})}

    def allow_empty(self, dataset: str) -> bool:
        return bool(self.for_dataset(dataset).get("allow_empty", False))


@cache
def contracts(path: str | None = None) -> Contracts:
    raw = yaml.safe_load(Path(path or Path(__file__).with_name("contracts.yaml")).read_text())
    d = raw["defaults"]
    unknown = set(raw.get("datasets", {})) - set(model().datasets)
    if unknown:
        raise ConfigError(f"contracts.yaml names unknown datasets: {sorted(unknown)}")
    return Contracts(
        by_kind=dict(d["by_kind"]),
        quarantine_max_share=float(d["quarantine_max_share"]),
        volume=dict(d["volume"]),
        datasets=dict(raw.get("datasets") or {}),
    )


def rules_for(ds: Dataset, ctx: CheckContext, c: Contracts | None = None) -> list[Rule]:
    """Every rule of `ds` for the night described by `ctx`."""
    c = c or contracts()

    def rule(
        rule_id: str,
        kind: str,
        expectation: str,
        kwargs: dict[str, Any],
        description: str,
        row_level: bool = True,
    ) -> Rule:
        return Rule(
            rule_id,
            kind,
            expectation,
            kwargs,
            c.severity(ds.name, rule_id, kind),
            description,
            row_level,
        )

    out = [
        rule(
            "schema",
            "schema",
            "ExpectTableColumnsToMatchSet",
            {"column_set": ds.column_names, "exact_match": False},
            "every canonical column is present",
            row_level=False,
        )
    ]
    if not c.allow_empty(ds.name):
        out.append(
            rule(
                "rows.not_empty",
                "not_empty",
                "ExpectTableRowCountToBeBetween",
                {"min_value": 1},
                "the dataset has rows",
                row_level=False,
            )
        )
    for col in ds.columns:
        if col.required:
            out.append(
                rule(
                    f"{col.name}.required",
                    "required",
                    "ExpectColumnValuesToNotBeNull",
                    {"column": col.name},
                    f"{col.name} is present",
                )
            )
        if col.code_set:
            values = list(model().code_sets[col.code_set])
            out.append(
                rule(
                    f"{col.name}.code_set",
                    "code_set",
                    "ExpectColumnValuesToBeInSet",
                    {"column": col.name, "value_set": values},
                    f"{col.name} is one of the {col.code_set} codes",
                )
            )
        if col.min is not None or col.max is not None:
            out.append(
                rule(
                    f"{col.name}.range",
                    "range",
                    "ExpectColumnValuesToBeBetween",
                    {"column": col.name, "min_value": col.min, "max_value": col.max},
                    f"{col.name} lies between {col.min} and {col.max}",
                )
            )
    out.append(
        rule(
            "key.unique",
            "key",
            "ExpectColumnValuesToBeUnique",
            {"column": key_column(ds)},
            f"the key ({', '.join(ds.key)}) identifies one row",
            row_level=False,
        )
    )
    for check in derived_checks(ds, ctx):
        out.append(
            rule(
                check.id,
                check.kind,
                "ExpectColumnValuesToBeInSet",
                {"column": check.column, "value_set": [True]},
                check.description,
            )
        )
    return out
