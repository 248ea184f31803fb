"""The tier policy: who receives which field, in what form (see tier_policy.yaml)."""

from datashare.policy.model import (
    AggregateSpec,
    ColumnClass,
    DatasetSpec,
    MicrodataColumn,
    Policy,
    ResearchProject,
    Tier,
    load_policy,
    parse_policy,
)

__all__ = [
    "AggregateSpec",
    "ColumnClass",
    "DatasetSpec",
    "MicrodataColumn",
    "Policy",
    "ResearchProject",
    "Tier",
    "load_policy",
    "parse_policy",
]
