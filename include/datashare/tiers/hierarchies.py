"""Generalization hierarchies from the tier policy (`hierarchies:`), built for the values at hand.

The policy describes a hierarchy as data (flat, interval widths, masked characters, or explicit
level maps); the k-anonymity engine needs one row per value with its generalizations. Errors
name the column and level, never the value (a value may be a student's ZIP or birth year).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from datashare.errors import ConfigError
from datashare.privacy.kanon import (
    Hierarchy,
    HierarchyError,
    flat_hierarchy,
    interval_hierarchy,
    mask_hierarchy,
    to_strings,
)

__all__ = ["build_hierarchy", "qi_values"]

TOP = "*"


def qi_values(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A quasi-identifier as strings; dates become their year (hierarchies generalize years)."""
    if pa.types.is_date(values.type) or pa.types.is_timestamp(values.type):
        import pyarrow.compute as pc

        values = pc.year(values)
    return to_strings(values)


def build_hierarchy(name: str, spec: dict[str, Any], values: pa.Array) -> Hierarchy:
    """The hierarchy `spec` (from the policy) over the distinct `values` of one column."""
    kind = spec["type"]
    try:
        if kind == "flat":
            return flat_hierarchy(values, top=TOP, name=name)
        if kind == "interval":
            return interval_hierarchy(values, widths=spec["widths"], top=TOP, name=name)
        if kind == "mask":
            return mask_hierarchy(values, steps=spec["steps"], top=TOP, name=name)
        if kind == "levels":
            distinct = sorted({v for v in values.to_pylist() if v is not None})
            mapping = {}
            for v in distinct:
                gens = []
                for i, level in enumerate(spec["levels"], start=1):
                    if v not in level:
                        raise ConfigError(
                            f"hierarchy {name}: level {i} does not map one of the "
                            "values present (add it to the policy's hierarchy)"
                        )
                    gens.append(level[v])
                mapping[v] = [*gens, TOP]
            return Hierarchy.from_dict(mapping, name=name)
    except HierarchyError as exc:
        # Report where, not which value.
        raise ConfigError(f"hierarchy {name}: invalid at level {exc.level}") from None
    raise ConfigError(f"hierarchy {name}: unknown type {kind!r}")
