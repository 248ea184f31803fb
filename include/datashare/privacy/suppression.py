"""Small-cell suppression of aggregate tables.

A cell counting 1 to min_cell-1 students is suppressed (its count becomes NULL), and so is every
measure computed from it (a rate or mean over a small group discloses as much as the count).
A mean or rate is also suppressed when fewer than min_cell students contribute to it, even if
the cell itself is large (e.g. chronic absence is only defined for students enrolled 20+ days).
Zero is not a small cell: an empty group is not a disclosure and is simply absent.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["suppress_cells", "suppress_small_cells"]


def _small(values: pa.ChunkedArray | pa.Array, min_cell: int) -> pa.ChunkedArray | pa.Array:
    v = pc.fill_null(values, 0)
    return pc.and_(pc.greater_equal(v, 1), pc.less(v, min_cell))


def suppress_small_cells(
    table: pa.Table, *, count: str, min_cell: int, measures: dict[str, str | None]
) -> tuple[pa.Table, dict[str, Any]]:
    """Null small counts and the measures that depend on them; add a `suppressed` flag.

    `measures` maps each other measure column to the column counting its contributors
    (None when the cell count itself is its support).
    """
    mask = _small(table.column(count), min_cell)
    return suppress_cells(table, count=count, mask=mask, min_cell=min_cell, measures=measures)


def suppress_cells(
    table: pa.Table, *, count: str, mask: Any, min_cell: int, measures: dict[str, str | None]
) -> tuple[pa.Table, dict[str, Any]]:
    """Null the cells in `mask` (their count and every measure), and every mean or rate that
    fewer than `min_cell` students contribute to; add the `suppressed` flag."""
    small = pa.array(mask) if not isinstance(mask, pa.Array | pa.ChunkedArray) else mask
    out = table.set_column(
        table.schema.get_field_index(count),
        count,
        pc.if_else(small, pa.scalar(None, table.schema.field(count).type), table.column(count)),
    )
    suppressed_values = 0
    for name, support in measures.items():
        mask = small
        if support is not None:
            mask = pc.or_(mask, _small(table.column(support), min_cell))
        col = out.column(name)
        before = col.null_count
        col = pc.if_else(mask, pa.scalar(None, col.type), col)
        suppressed_values += col.null_count - before
        out = out.set_column(out.schema.get_field_index(name), name, col)
    out = out.append_column("suppressed", small)
    stats = {
        "cells": table.num_rows,
        "suppressed_cells": int(pc.sum(small).as_py() or 0),
        "suppressed_measure_values": int(suppressed_values),
    }
    return out, stats
