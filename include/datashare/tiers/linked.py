"""Complementary suppression across every aggregate a night publishes.

A tier's small-cell tables are protected together with the aggregates other tiers publish from
the same night: tier 1's enrollment totals are public, so they are constraints an attacker
knows (never suppressed here). The engine (privacy/complementary.py) picks extra cells to
suppress until no suppressed cell can be narrowed below the required width, and the pattern is
applied to the tier's tables: counts and every measure of those cells become null.

Cells that tier-1 totals alone determine (e.g. a small grade's total, published in tier 1 on
purpose) are public by policy; they stay suppressed in tier 2 and are not counted as exposed.
Any other cell left exposed stops the night.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datashare.errors import GateError
from datashare.policy import DatasetSpec, Policy
from datashare.privacy.linked_tables import LinkedTable, System, build_system
from datashare.tiers.builder import BuiltDataset

__all__ = ["determined_by_public", "linked_table", "protect_aggregates", "suppress_more"]


def count_column(spec: DatasetSpec) -> str:
    assert spec.aggregate is not None
    return next(out for out, (fn, _) in spec.aggregate.measures.items() if fn == "count")


def linked_table(
    name: str,
    spec: DatasetSpec,
    table: pa.Table,
    *,
    fixed_public: bool,
    primary: np.ndarray | None = None,
    lower: np.ndarray | None = None,
) -> LinkedTable:
    agg = spec.aggregate
    assert agg is not None
    count = count_column(spec)
    return LinkedTable(
        name=name,
        table=table,
        by=agg.by,
        count=count,
        subgroups=bool(agg.subgroups),
        primary=None if fixed_public else primary,
        lower=lower,
        min_cell=None if fixed_public else agg.min_cell,
        fixed_public=fixed_public,
        measures=tuple(m for m in agg.measures if m != count),
        population=spec.source,
    )


def determined_by_public(system: System) -> np.ndarray:
    """Cells whose value follows from fixed-public cells alone, through the constraints."""
    known = system.fixed_public.copy()
    cons = system.constraints
    changed = True
    while changed:
        changed = False
        for j in range(len(cons.total)):
            cells = np.concatenate(
                [[cons.total[j]], cons.parts[cons.indptr[j] : cons.indptr[j + 1]]]
            )
            unknown = cells[~known[cells]]
            if len(unknown) == 1:
                known[unknown[0]] = True
                changed = True
    return known & ~system.fixed_public


def suppress_more(table: pa.Table, mask: np.ndarray, columns: list[str]) -> pa.Table:
    """Null `columns` where `mask` (numpy bool per row) is set, and flag those rows suppressed."""
    m = pa.array(mask)
    for col in columns:
        if col in table.column_names:
            i = table.schema.get_field_index(col)
            typ = table.schema.field(col).type
            table = table.set_column(i, col, pc.if_else(m, pa.scalar(None, typ), table.column(col)))
    i = table.schema.get_field_index("suppressed")
    return table.set_column(i, "suppressed", pc.or_(table.column("suppressed"), m))


def protect_aggregates(
    policy: Policy,
    tier: int,
    built: dict[str, BuiltDataset],
    others: dict[tuple[int, str], BuiltDataset],
) -> dict[str, Any]:
    """Apply linked complementary suppression to `tier`'s aggregates, in place."""
    spec = policy.tier(tier)
    tables: list[LinkedTable] = []
    mine = [d for d in spec.datasets if d.aggregate and d.aggregate.min_cell]
    for ds in mine:
        b = built[ds.name]
        tables.append(
            linked_table(ds.name, ds, b.raw, fixed_public=False, primary=b.primary, lower=b.lower)
        )
    for (t, name), b in others.items():
        ds = policy.tier(t).dataset(name)
        assert ds.aggregate is not None
        if ds.aggregate.min_cell:
            raise GateError(
                f"tier {t} dataset {name} also suppresses small cells: protect it "
                "with this tier's tables (not supported across tiers)"
            )
        tables.append(linked_table(f"tier{t}.{name}", ds, b.table, fixed_public=True))
    system = build_system(tables)
    result = system.protect(verify=True)
    public = determined_by_public(system)
    assert result.audit is not None
    exposed = result.audit.failing[~public[result.audit.failing]]
    if exposed.size:
        where = {system.locate(int(c))[0] for c in exposed}
        raise GateError(
            f"complementary suppression left {exposed.size} cells recoverable in "
            f"{', '.join(sorted(where))}; nothing is published"
        )
    for ds in mine:
        b = built[ds.name]
        cells = system.cells(ds.name)
        extra = result.suppressed[cells] & ~b.primary
        agg = ds.aggregate
        assert agg is not None
        columns = [*agg.measures, *(f"{m}_coded" for m in (agg.top_bottom or ((),))[0])]
        b.table = suppress_more(b.table, extra, columns)
        b.privacy["complementary_cells"] = int(extra.sum())
        b.privacy["suppressed_cells"] = int(pc.sum(b.table.column("suppressed")).as_py() or 0)
        b.privacy["protection"] = {
            "min_width": result.min_width,
            "public_by_policy": int(public[cells].sum()),
        }
    return {
        "cells": len(system.values),
        "complementary": int(result.complementary.sum()),
        "lp_solves": result.lp_solves,
        "seconds": round(result.seconds, 3),
    }
