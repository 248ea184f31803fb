"""Generalization hierarchies as data.

A hierarchy is a table: the first column holds an original value, the following columns its
generalizations from level 1 upward (ARX's CSV format: no header, one row per value). Every value
is handled as a string, because hierarchies are strings and matching must be exact; `to_strings`
is the one conversion used for both data and hierarchies so the two always agree.
"""

from __future__ import annotations

import csv
import datetime as _dt
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datashare.errors import ConfigError

__all__ = [
    "MISSING",
    "Hierarchy",
    "HierarchyError",
    "date_hierarchy",
    "flat_hierarchy",
    "interval_hierarchy",
    "mask_hierarchy",
    "to_strings",
]

#: How a missing (null) data value is spelled; give it a row in a hierarchy to allow nulls.
MISSING = "NULL"


class HierarchyError(ConfigError, ValueError):
    """A hierarchy is malformed or does not cover the data: names column, value and level."""

    code = "hierarchy"

    def __init__(
        self,
        problem: str,
        *,
        column: str | None = None,
        value: str | None = None,
        level: int | None = None,
    ) -> None:
        self.problem, self.column, self.value, self.level = problem, column, value, level
        where = [
            f"column {column!r}" if column is not None else None,
            f"level {level}" if level is not None else None,
            f"value {value!r}" if value is not None else None,
        ]
        prefix = ", ".join(w for w in where if w)
        super().__init__(
            f"hierarchy for {prefix}: {problem}" if prefix else f"hierarchy: {problem}"
        )


def to_strings(values: Any) -> pa.Array:
    """Canonical string form of a column (Arrow array, pandas Series, numpy array or iterable).

    Arrow's cast decides the spelling (2008 -> '2008', 76.0 -> '76', dates ISO); nulls become
    `MISSING`. Returned as a non-null Arrow string array.
    """
    if isinstance(values, pa.ChunkedArray):
        arr = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    elif isinstance(values, pa.Array):
        arr = values
    else:
        if not isinstance(values, (np.ndarray, Sequence)) and not hasattr(values, "__array__"):
            values = list(values)
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Mixed Python types: fall back to str() per item, keeping None as null.
            arr = pa.array([None if v is None else str(v) for v in values], pa.string())
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    elif not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    if arr.null_count:
        arr = pc.fill_null(arr, MISSING)
    return arr


def _scalar_str(value: Any) -> str:
    """One value spelled as `to_strings` spells it, so hierarchies built from Python numbers
    match data columns of numbers (76.0 -> '76' as Arrow casts it, not Python's '76.0')."""
    if value is None:
        return MISSING
    return to_strings([value])[0].as_py()


def _distinct(values: Any) -> list[str]:
    """Distinct canonical strings in order of first appearance."""
    return pc.unique(to_strings(values)).to_pylist()


class Hierarchy:
    """One generalization hierarchy: rows of (value, level 1, ..., level h).

    Validated on construction: at least one row, every row the same depth, an original value at
    most once, and monotone (values equal at level i are equal at every level above i), which
    the search relies on (a coarser node's classes are unions of a finer node's classes).
    """

    __slots__ = ("_columns", "_index", "name")

    def __init__(self, rows: Iterable[Sequence[Any]], name: str | None = None) -> None:
        self.name = name
        table: list[tuple[str, ...]] = []
        index: dict[str, int] = {}
        depth = None
        for number, raw in enumerate(rows, start=1):
            row = tuple(v if isinstance(v, str) else _scalar_str(v) for v in raw)
            if not row:
                raise HierarchyError(f"row {number} is empty", column=name)
            if depth is None:
                depth = len(row)
            elif len(row) != depth:
                raise HierarchyError(
                    f"row {number} has {len(row)} levels, expected {depth} like row 1"
                    f" (every row must have the same depth)",
                    column=name,
                    value=row[0],
                    level=len(row) - 1,
                )
            seen = index.get(row[0])
            if seen is not None:
                if table[seen] != row:
                    raise HierarchyError(
                        "listed twice with different generalizations"
                        f" (rows {seen + 1} and {number})",
                        column=name,
                        value=row[0],
                        level=0,
                    )
                continue
            index[row[0]] = len(table)
            table.append(row)
        if depth is None:
            raise HierarchyError("no rows", column=name)
        self._columns: tuple[tuple[str, ...], ...] = tuple(zip(*table, strict=True))
        self._index = index
        self._check_monotone()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_csv(
        cls, path: str | Path, *, sep: str = ";", name: str | None = None, encoding: str = "utf-8"
    ) -> Hierarchy:
        """Load ARX's format: no header, `sep`-separated, '"' quoting, blank lines ignored."""
        with open(path, newline="", encoding=encoding) as fh:
            rows = [r for r in csv.reader(fh, delimiter=sep, quotechar='"') if r]
        if not rows:
            raise HierarchyError(f"file {str(path)!r} has no rows", column=name)
        return cls(rows, name=name)

    @classmethod
    def from_table(cls, table: Any, *, name: str | None = None) -> Hierarchy:
        """From an Arrow table or pandas DataFrame: column order is level order (0 first)."""
        if not isinstance(table, pa.Table):
            table = pa.Table.from_pandas(table, preserve_index=False)
        columns = [to_strings(table.column(i)).to_pylist() for i in range(table.num_columns)]
        return cls(zip(*columns, strict=True), name=name)

    @classmethod
    def from_dict(
        cls, mapping: Mapping[Any, Sequence[Any]], *, name: str | None = None
    ) -> Hierarchy:
        """From {value: [level 1, level 2, ...]} (a scalar generalization means one level)."""
        rows = []
        for value, gens in mapping.items():
            gens = [gens] if isinstance(gens, str) or not isinstance(gens, Sequence) else gens
            rows.append([value, *gens])
        return cls(rows, name=name)

    def named(self, name: str) -> Hierarchy:
        """The same hierarchy labelled with a column name (for error messages)."""
        clone = object.__new__(Hierarchy)
        clone._columns, clone._index, clone.name = self._columns, self._index, name
        return clone

    # -- access ---------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Number of columns, i.e. levels 0..depth-1."""
        return len(self._columns)

    @property
    def max_level(self) -> int:
        return len(self._columns) - 1

    def __len__(self) -> int:
        return len(self._columns[0])

    def __contains__(self, value: object) -> bool:
        return value in self._index

    def __repr__(self) -> str:
        return f"Hierarchy(name={self.name!r}, values={len(self)}, depth={self.depth})"

    def column(self, level: int) -> tuple[str, ...]:
        """All values of one level, in row order."""
        return self._columns[level]

    def row(self, value: str) -> tuple[str, ...]:
        """A value and its generalizations."""
        i = self._lookup(value)
        return tuple(col[i] for col in self._columns)

    def generalize(self, values: Any, level: int) -> pa.Array:
        """Generalize values (any column-like) to `level`, as an Arrow string array."""
        self._check_level(level)
        enc = pc.dictionary_encode(to_strings(values))
        rows = self.rows_of(enc.dictionary.to_pylist(), column=self.name)
        col = self._columns[level]
        labels = pa.array([col[r] for r in rows.tolist()], pa.string())
        return pc.take(labels, enc.indices)

    def rows_of(self, values: Sequence[str], *, column: str | None = None) -> np.ndarray:
        """Row number of each (distinct, canonical) value; error names the first missing one."""
        out = np.empty(len(values), dtype=np.int64)
        index = self._index
        missing: list[str] = []
        for i, v in enumerate(values):
            r = index.get(v)
            if r is None:
                missing.append(v)
                r = -1
            out[i] = r
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise HierarchyError(
                f"value occurs in the data but not in the hierarchy{more}",
                column=column or self.name,
                value=missing[0],
                level=0,
            )
        return out

    def check_values(self, values: Any, *, column: str | None = None) -> None:
        """Raise HierarchyError if a value of the data column is not covered."""
        self.rows_of(_distinct(values), column=column)

    def to_table(self) -> pa.Table:
        return pa.table({f"level_{i}": list(c) for i, c in enumerate(self._columns)})

    def to_csv(self, path: str | Path, *, sep: str = ";") -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, delimiter=sep, lineterminator="\n").writerows(
                zip(*self._columns, strict=True)
            )

    # -- internals ------------------------------------------------------------------------------

    def _lookup(self, value: str) -> int:
        i = self._index.get(value)
        if i is None:
            raise HierarchyError("not in the hierarchy", column=self.name, value=value, level=0)
        return i

    def _check_level(self, level: int) -> None:
        if not 0 <= level < self.depth:
            raise HierarchyError(
                f"no such level (levels are 0..{self.max_level})", column=self.name, level=level
            )

    def _check_monotone(self) -> None:
        cols = self._columns
        for level in range(1, len(cols) - 1):
            up: dict[str, int] = {}
            here, above = cols[level], cols[level + 1]
            for r, v in enumerate(here):
                first = up.setdefault(v, r)
                if above[first] != above[r]:
                    raise HierarchyError(
                        f"not monotone: {v!r} generalizes to {above[first]!r} (for value"
                        f" {cols[0][first]!r}) and to {above[r]!r} (for value {cols[0][r]!r})"
                        f" at level {level + 1}",
                        column=self.name,
                        value=v,
                        level=level,
                    )


# -- builders ------------------------------------------------------------------------------------


def flat_hierarchy(values: Any, *, top: str = "*", name: str | None = None) -> Hierarchy:
    """Value -> top: one generalization level (sex, race, program flags)."""
    return Hierarchy(([v, top] for v in _distinct(values)), name=name)


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def interval_hierarchy(
    values: Any,
    widths: Sequence[float] | None = None,
    *,
    bands: Sequence[Sequence[float]] | None = None,
    origin: float = 0,
    top: str = "*",
    name: str | None = None,
) -> Hierarchy:
    """Numeric values -> intervals, one level per entry, then `top`.

    `widths`: equal-width intervals aligned at `origin`; each width must be a multiple of the
    previous one so the hierarchy is monotone. Integers are labelled 'lo-hi' (inclusive, as in
    ARX's adult age hierarchy: 0-4, 0-9, ...), other numbers '[lo, hi)'.
    `bands`: explicit cut points per level (ascending); value x falls in [e_i, e_i+1); values below
    the first or at/above the last edge become '<e0' / '>=eN' (bottom/top coding). Every edge of
    a level must also be an edge of the level below, which keeps the hierarchy monotone.
    """
    if (widths is None) == (bands is None):
        raise HierarchyError("give exactly one of widths= or bands=", column=name)
    distinct = _distinct(values)
    nums: list[float] = []
    for v in distinct:
        try:
            x = float(v)
        except ValueError:
            raise HierarchyError("not a number", column=name, value=v, level=0) from None
        if math.isnan(x):
            raise HierarchyError("not a number", column=name, value=v, level=0)
        nums.append(x)
    integral = all(x.is_integer() for x in nums)
    levels: list[list[str]] = []
    if widths is not None:
        prev = None
        for w in widths:
            if w <= 0 or (prev is not None and not float(w / prev).is_integer()):
                raise HierarchyError(
                    f"width {w} must be positive and a multiple of the previous width {prev}",
                    column=name,
                )
            prev = w
            col = []
            for x in nums:
                lo = origin + math.floor((x - origin) / w) * w
                whole = integral and float(w).is_integer() and float(origin).is_integer()
                if whole:
                    col.append(f"{int(lo)}-{int(lo + w - 1)}")
                else:
                    col.append(f"[{_fmt_num(lo)}, {_fmt_num(lo + w)})")
            levels.append(col)
    else:
        for edges in bands or ():
            e = sorted(float(x) for x in edges)
            if not e:
                raise HierarchyError("a band level needs at least one edge", column=name)
            col = []
            for x in nums:
                if x < e[0]:
                    col.append(f"<{_fmt_num(e[0])}")
                elif x >= e[-1]:
                    col.append(f">={_fmt_num(e[-1])}")
                else:
                    i = int(np.searchsorted(e, x, side="right")) - 1
                    if integral and e[i].is_integer() and e[i + 1].is_integer():
                        col.append(f"{int(e[i])}-{int(e[i + 1]) - 1}")
                    else:
                        col.append(f"[{_fmt_num(e[i])}, {_fmt_num(e[i + 1])})")
            levels.append(col)
    rows = [[v, *(lv[i] for lv in levels), top] for i, v in enumerate(distinct)]
    return Hierarchy(rows, name=name)


_DATE_LEVELS = {
    "month": lambda d: f"{d.year:04d}-{d.month:02d}",
    "quarter": lambda d: f"{d.year:04d}-Q{(d.month - 1) // 3 + 1}",
    "year": lambda d: f"{d.year:04d}",
    "decade": lambda d: f"{d.year // 10 * 10:04d}s",
}


def date_hierarchy(
    values: Any,
    levels: Sequence[str] = ("month", "year"),
    *,
    top: str = "*",
    name: str | None = None,
) -> Hierarchy:
    """Dates (date, datetime or ISO 'YYYY-MM-DD...' strings) -> month -> year -> top.

    `levels` picks from 'month', 'quarter', 'year', 'decade' (finest first).
    """
    for lv in levels:
        if lv not in _DATE_LEVELS:
            raise HierarchyError(
                f"unknown date level {lv!r} (use {sorted(_DATE_LEVELS)})", column=name
            )
    rows = []
    for v in _distinct(values):
        try:
            d = _dt.date.fromisoformat(v[:10])
        except ValueError:
            raise HierarchyError("not an ISO date", column=name, value=v, level=0) from None
        rows.append([v, *(_DATE_LEVELS[lv](d) for lv in levels), top])
    return Hierarchy(rows, name=name)


def mask_hierarchy(
    values: Any,
    steps: Sequence[int] | None = None,
    *,
    mask: str = "*",
    top: str = "*",
    name: str | None = None,
) -> Hierarchy:
    """Mask trailing characters: ZIP 02128 -> 0212* -> 021** -> ... -> top.

    `steps`: how many trailing characters each level masks (increasing), e.g. (1, 2) gives
    02128 -> 0212* -> 021** -> '*'. Default: 1, 2, ..., longest length - 1.
    """
    distinct = _distinct(values)
    longest = max((len(v) for v in distinct), default=1)
    steps = list(range(1, longest)) if steps is None else [int(s) for s in steps]
    if any(b <= a for a, b in itertools.pairwise(steps)) or any(s < 1 for s in steps):
        raise HierarchyError(f"steps {steps} must be positive and increasing", column=name)
    rows = []
    for v in distinct:
        gens = [v[: max(len(v) - s, 0)] + mask * min(s, len(v)) for s in steps]
        rows.append([v, *gens, top])
    return Hierarchy(rows, name=name)
