"""The cells and additive constraints of a release's linked aggregate tables, and applying the
suppression pattern `complementary.protect` chooses back to the tables.

Tables are in long format: one row per group (the `by` columns) and, for tables with subgroups,
per (`subgroup`, `subgroup_value`), where subgroup `all` / value `all` is the group's total. Each
row is one cell (its count column); absent rows are empty groups. Constraints:

* within a table with subgroups: for each group and subgroup type, the values sum to the `all`
  row (e.g. race_ethnicity over AA..MR = all, for one school and grade);
* across tables of one population: when a coarser table's `by` is a subset of a finer table's,
  each coarser cell is the sum of the finer cells that share its key (e.g. attendance_by_subgroup
  (school, s, v) = sum over grades of enrollment_by_subgroup(school, grade, s, v); a table
  without subgroups matches the `all` rows of one with them, so enrollment_totals(school,
  grade) = enrollment_by_subgroup(school, grade, all, all)).

A cross-table relation only holds if the finer table partitions the coarser one's population
(every student counted once, in one value of the extra columns); tables that count different
populations (assessment takers by subject) get different `population` names. Every derived
constraint is checked on the data, and a table pair whose sums disagree is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datashare.privacy.complementary import Audit, Constraints, Protection, audit, protect

__all__ = ["ALL", "LinkedTable", "System", "apply_suppression", "build_system"]

ALL = "all"
SUBGROUP, VALUE = "subgroup", "subgroup_value"


@dataclass(frozen=True)
class LinkedTable:
    """One published table, with its counts before suppression."""

    name: str
    table: pa.Table
    by: tuple[str, ...]
    count: str = "students"
    subgroups: bool = False  # has subgroup / subgroup_value columns with an `all` margin row
    primary: np.ndarray | None = None  # bool per row; None: 1 <= count < min_cell
    min_cell: int | None = None
    fixed_public: bool = False  # published as is by policy (tier 1): never suppressed
    measures: tuple[str, ...] = ()  # other columns nulled with a suppressed count
    population: str = "students"  # only tables counting the same population are linked
    # Attacker's lower bound per row (None: 1, a present row has a student). 0 for rows listed
    # whether or not they are empty (every category of a small group, say).
    lower: np.ndarray | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return (*self.by, SUBGROUP, VALUE) if self.subgroups else self.by


@dataclass
class System:
    """Cells (table rows, table after table) and the constraints linking them."""

    names: tuple[str, ...]
    offsets: np.ndarray  # table i's rows are cells offsets[i]:offsets[i + 1]
    values: np.ndarray  # int64
    primary: np.ndarray  # bool
    fixed_public: np.ndarray  # bool
    constraints: Constraints
    lower: np.ndarray  # float64: the attacker's lower bound per cell
    sources: dict[str, int]  # constraints derived per rule, e.g. "within enrollment_by_subgroup"

    def cells(self, name: str) -> slice:
        i = self.names.index(name)
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def locate(self, cell: int) -> tuple[str, int]:
        """(table name, row) of a cell."""
        i = int(np.searchsorted(self.offsets, cell, side="right")) - 1
        return self.names[i], int(cell - self.offsets[i])

    def protect(self, **kwargs: Any) -> Protection:
        return protect(
            self.values,
            self.primary,
            self.constraints,
            fixed_public=self.fixed_public,
            lower=self.lower,
            **kwargs,
        )

    def audit(self, suppressed: np.ndarray, **kwargs: Any) -> Audit:
        return audit(
            self.values,
            suppressed,
            self.constraints,
            primary=self.primary,
            lower=self.lower,
            **kwargs,
        )


def _codes(tables: Sequence[LinkedTable]) -> list[dict[str, np.ndarray]]:
    """Integer codes per key column, shared by all tables (nulls are a value of their own)."""
    out: list[dict[str, np.ndarray]] = [{} for _ in tables]
    for col in sorted({c for t in tables for c in t.keys}):
        arrays = [t.table.column(col) for t in tables if col in t.keys]
        if len({a.type for a in arrays}) > 1:
            arrays = [pc.cast(a, pa.string()) for a in arrays]
        dictionary = pc.unique(
            pa.chunked_array([c for a in arrays for c in a.chunks], arrays[0].type)
        )
        for i, t in enumerate(tables):
            if col in t.keys:
                a = t.table.column(col)
                if a.type != dictionary.type:
                    a = pc.cast(a, dictionary.type)
                out[i][col] = (
                    pc.index_in(a, value_set=dictionary, skip_nulls=False)
                    .to_numpy(zero_copy_only=False)
                    .astype(np.int64)
                )
    return out


def _group_ids(*keys: np.ndarray) -> list[np.ndarray]:
    """Shared ids of the rows of several (rows x k) key arrays."""
    stacked = np.concatenate(keys) if keys else np.zeros((0, 0), np.int64)
    if stacked.shape[1] == 0:  # no key columns: one group
        ids = np.zeros(len(stacked), np.int64)
    else:
        _, ids = np.unique(stacked, axis=0, return_inverse=True)
        ids = ids.reshape(-1)
    out, start = [], 0
    for k in keys:
        out.append(ids[start : start + len(k)])
        start += len(k)
    return out


def _sum_constraints(
    total_rows: np.ndarray, part_group: np.ndarray, n_groups: int, part_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One constraint per group g: total_rows[g] = sum of part_rows whose part_group is g."""
    order = np.argsort(part_group, kind="stable")
    indptr = np.zeros(n_groups + 1, np.int64)
    np.cumsum(np.bincount(part_group, minlength=n_groups), out=indptr[1:])
    return total_rows, indptr, part_rows[order]


def build_system(tables: Sequence[LinkedTable]) -> System:
    """Cells and constraints of `tables` (see the module docstring for the rules)."""
    names = tuple(t.name for t in tables)
    if len(set(names)) != len(names):
        raise ValueError("table names must be unique")
    sizes = [t.table.num_rows for t in tables]
    offsets = np.zeros(len(tables) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    values, primary, fixed, lower = [], [], [], []
    for t in tables:
        counts = t.table.column(t.count)
        if counts.null_count:
            raise ValueError(f"{t.name}.{t.count} has nulls: link the counts before suppression")
        v = counts.to_numpy(zero_copy_only=False).astype(np.int64)
        if (v < 0).any():
            raise ValueError(f"{t.name}.{t.count} has negative counts")
        if t.fixed_public:
            if t.primary is not None and np.asarray(t.primary).any():
                raise ValueError(f"{t.name} is fixed public but has primary suppressions")
            p = np.zeros(len(v), bool)
        elif t.primary is not None:
            p = np.asarray(t.primary, bool)
            if p.shape != v.shape:
                raise ValueError(f"{t.name}: primary mask has {p.size} rows, table {v.size}")
        elif t.min_cell is not None:
            p = (v >= 1) & (v < t.min_cell)
        else:
            raise ValueError(f"{t.name}: give its primary mask or min_cell, or fix it public")
        values.append(v)
        primary.append(p)
        fixed.append(np.full(len(v), t.fixed_public))
        low = np.ones(len(v)) if t.lower is None else np.asarray(t.lower, np.float64)
        if low.shape != v.shape:
            raise ValueError(f"{t.name}: lower bounds have {low.size} rows, table {v.size}")
        lower.append(low)
        if t.subgroups and ({SUBGROUP, VALUE} - set(t.table.column_names)):
            raise ValueError(f"{t.name} has no {SUBGROUP}/{VALUE} columns")

    codes = _codes(tables)
    all_code = {}
    for i, t in enumerate(tables):
        if t.subgroups:
            sub = t.table.column(SUBGROUP)
            all_code[i] = pc.fill_null(pc.equal(sub, ALL), False).to_numpy(zero_copy_only=False)

    def key(i: int, cols: Sequence[str], rows: np.ndarray) -> np.ndarray:
        return np.column_stack([codes[i][c][rows] for c in cols] or [np.zeros((len(rows), 0))])

    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    sources: dict[str, int] = {}
    checks: list[tuple[str, int, int]] = []  # (rule, first constraint, end)
    m = 0

    def add(rule: str, total: np.ndarray, indptr: np.ndarray, part: np.ndarray) -> None:
        nonlocal m
        parts.append((total, indptr, part))
        sources[rule] = sources.get(rule, 0) + len(total)
        checks.append((rule, m, m + len(total)))
        m += len(total)

    # (i) Within a table: the values of each subgroup type sum to the group's `all` row.
    for i, t in enumerate(tables):
        if not t.subgroups:
            continue
        rows = np.arange(t.table.num_rows)
        is_all = all_code[i]
        (group,) = _group_ids(key(i, t.by, rows))
        n_groups = int(group.max()) + 1 if len(group) else 0
        if np.bincount(group[is_all], minlength=n_groups).max(initial=1) > 1:
            raise ValueError(f"{t.name}: a group has several `all` rows")
        all_row = np.full(n_groups, -1, np.int64)
        all_row[group[is_all]] = rows[is_all]
        sub_rows = rows[~is_all]
        (pair,) = _group_ids(np.column_stack([group[sub_rows], codes[i][SUBGROUP][sub_rows]]))
        n_pairs = int(pair.max()) + 1 if len(pair) else 0
        pair_group = np.zeros(n_pairs, np.int64)
        pair_group[pair] = group[sub_rows]
        if (all_row[pair_group] < 0).any():
            raise ValueError(f"{t.name}: a group has subgroup rows but no `all` row")
        total, indptr, part = _sum_constraints(all_row[pair_group], pair, n_pairs, sub_rows)
        add(f"within {t.name}", total + offsets[i], indptr, part + offsets[i])

    # (ii) Across tables: a coarser cell is the sum of the finer cells sharing its key.
    for i, c in enumerate(tables):
        for j, f in enumerate(tables):
            if i == j or c.population != f.population or not set(c.by) <= set(f.by):
                continue
            same = set(c.by) == set(f.by)
            # At the same level, link a pair once: the table without subgroups is the coarser.
            if same and (c.subgroups, i) > (f.subgroups, j):
                continue
            c_rows = np.arange(c.table.num_rows)
            f_rows = np.arange(f.table.num_rows)
            cols: tuple[str, ...] = c.by
            if c.subgroups and f.subgroups:
                cols = c.keys
            elif f.subgroups:
                f_rows = f_rows[all_code[j]]
            elif c.subgroups:
                c_rows = c_rows[all_code[i]]
            c_id, f_id = _group_ids(key(i, cols, c_rows), key(j, cols, f_rows))
            n_ids = int(max(c_id.max(initial=-1), f_id.max(initial=-1))) + 1
            if np.bincount(c_id, minlength=n_ids).max(initial=0) > 1:
                raise ValueError(f"{c.name}: several rows share a key {cols}")
            owner = np.full(n_ids, -1, np.int64)
            owner[c_id] = np.arange(len(c_rows))
            orphans = owner[f_id] < 0
            if orphans.any():
                raise ValueError(
                    f"{f.name} has {int(orphans.sum())} rows without a {c.name} row to sum to"
                )
            total, indptr, part = _sum_constraints(c_rows, owner[f_id], len(c_rows), f_rows)
            rule = f"{c.name} = {f.name}" if same else f"{c.name} = sum of {f.name}"
            add(rule, total + offsets[i], indptr, part + offsets[j])

    if parts:
        total = np.concatenate([p[0] for p in parts])
        lens = np.concatenate([np.diff(p[1]) for p in parts])
        indptr = np.zeros(len(total) + 1, np.int64)
        np.cumsum(lens, out=indptr[1:])
        cons = Constraints(total, indptr, np.concatenate([p[2] for p in parts]))
    else:
        cons = Constraints(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))
    cells = np.concatenate(values) if values else np.zeros(0, np.int64)
    residual = cons.matrix(len(cells)) @ cells.astype(np.float64)
    for rule, lo, hi in checks:
        bad = np.flatnonzero(residual[lo:hi])
        if bad.size:
            raise ValueError(
                f"{rule}: {bad.size} sums do not hold (cell {int(cons.total[lo + bad[0]])}); "
                "do these tables count the same population?"
            )
    return System(
        names=names,
        offsets=offsets,
        values=cells,
        primary=np.concatenate(primary) if primary else np.zeros(0, bool),
        fixed_public=np.concatenate(fixed) if fixed else np.zeros(0, bool),
        constraints=cons,
        sources=sources,
        lower=np.concatenate(lower) if lower else np.zeros(0),
    )


def apply_suppression(
    tables: Sequence[LinkedTable], system: System, result: Protection | np.ndarray
) -> list[pa.Table]:
    """The tables as published: the count and the `measures` of every suppressed cell nulled,
    and a `suppressed` flag (kept when present, OR-ed with the pattern). Fixed-public tables come
    back unchanged."""
    suppressed = result.suppressed if isinstance(result, Protection) else np.asarray(result, bool)
    if suppressed.shape != system.values.shape:
        raise ValueError("the suppression pattern does not match the system")
    out = []
    for t in tables:
        if t.fixed_public:
            out.append(t.table)
            continue
        mask = pa.array(suppressed[system.cells(t.name)])
        tab = t.table
        for col in (t.count, *t.measures):
            i = tab.schema.get_field_index(col)
            typ = tab.schema.field(col).type
            tab = tab.set_column(i, col, pc.if_else(mask, pa.scalar(None, typ), tab.column(col)))
        if "suppressed" in tab.column_names:
            i = tab.schema.get_field_index("suppressed")
            flag = pc.or_(pc.fill_null(tab.column("suppressed"), False), mask)
            tab = tab.set_column(i, "suppressed", flag)
        else:
            tab = tab.append_column("suppressed", mask)
        out.append(tab)
    return out
