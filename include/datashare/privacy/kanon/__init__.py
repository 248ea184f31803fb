"""Optimal k-anonymity by global recoding over a generalization lattice, with record suppression.

Matches ARX (arx.deidentifier.org) on its adult benchmark: same optimal transformation, same
non-uniform entropy to the last digit. See docs/kanon.md.

    from datashare.privacy.kanon import Hierarchy, anonymize, apply_transformation
    h = {c: Hierarchy.from_csv(f"adult_hierarchy_{c}.csv") for c in qis}
    result = anonymize(table, h, k=5, suppression_limit=0.04)
    released = apply_transformation(table, result)
"""

from __future__ import annotations

from .hierarchy import (
    MISSING,
    Hierarchy,
    HierarchyError,
    date_hierarchy,
    flat_hierarchy,
    interval_hierarchy,
    mask_hierarchy,
    to_strings,
)
from .lattice import Lattice
from .metrics import (
    BoundMetric,
    Classes,
    Discernibility,
    Metric,
    NonUniformEntropy,
    Precision,
    QIStats,
    metric_by_name,
)
from .search import (
    KAnonResult,
    NoSolutionError,
    anonymize,
    apply_transformation,
    class_sizes,
    measure_k,
    measure_l,
)

__all__ = [
    "MISSING",
    "BoundMetric",
    "Classes",
    "Discernibility",
    "Hierarchy",
    "HierarchyError",
    "KAnonResult",
    "Lattice",
    "Metric",
    "NoSolutionError",
    "NonUniformEntropy",
    "Precision",
    "QIStats",
    "anonymize",
    "apply_transformation",
    "class_sizes",
    "date_hierarchy",
    "flat_hierarchy",
    "interval_hierarchy",
    "mask_hierarchy",
    "measure_k",
    "measure_l",
    "metric_by_name",
    "to_strings",
]
