"""Differentially private counts over a declared, public domain of cells, built with OpenDP.

`dp_counts(table, ["home_zip", "grade"], epsilon=0.5, domain={...})` releases one noisy count per
cell of the declared domain (every Boston ZIP x every grade), whether or not any student is in it.
The steps, each chosen so that the privacy map OpenDP reports is the whole truth:

1. Rows with no `unit` (student id) are dropped: they cannot be bounded per person.
2. Rows are matched to the declared domain; rows outside it are dropped. The released cells come
   only from the domain, never from the data (which categories occur is itself a disclosure).
3. Contribution bounding: a unit counts once per cell, and in at most `max_contributions` cells.
   Its rows are ranked by `order_by` (then by `seed`-keyed hash or by domain order); the unit
   contributes to the distinct cells of its first rows in that order. Adding or removing one
   student therefore adds or removes at most `max_contributions` cell ids (symmetric distance
   d_in = max_contributions), and never changes what any other student contributes.
4. OpenDP measurement: `make_count_by_categories` (one count per cell, fixed order, no "other"
   bucket) chained with discrete Laplace (`then_laplace` on integers) or discrete Gaussian
   (`then_gaussian`, zCDP, converted to (epsilon, delta) by `make_zCDP_to_approxDP` and
   `make_fix_delta`). The noise scale is calibrated so that `measurement.map(max_contributions)`
   is <= the requested epsilon; the map's value is what `DPResult.epsilon` reports and what the
   ledger should be charged.
5. Post-processing (free under DP): the outputs are already integers; negatives are clamped to 0.
   Totals are not forced to be consistent (the sum of a ZIP's grades is not a published total,
   and summing noisy cells adds their noise).

Noise comes only from OpenDP's CSPRNG, which cannot be seeded (by design: reproducible noise can
be subtracted). `seed` only makes the choice of a unit's kept cells pseudo-random instead of
favouring cells early in the domain; it never makes the noise reproducible.

`DPResult.manifest_entry()` holds the facts a public manifest may carry; the exact counts of
dropped rows (`DPResult.diagnostics()`) are *not* differentially private and belong in the
pipeline-only run record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb
import numpy as np
import opendp.prelude as dp
import pyarrow as pa
import pyarrow.compute as pc

from datashare.errors import ConfigError

__all__ = [
    "MECHANISMS",
    "DPResult",
    "PreparedCells",
    "build_measurement",
    "dp_counts",
    "prepare_cells",
    "privacy_loss",
]

dp.enable_features("contrib")

Mechanism = Literal["laplace", "gaussian"]
#: Accepted `mechanism` values and the OpenDP noise they select (integer inputs -> discrete).
MECHANISMS: dict[str, str] = {"laplace": "discrete_laplace", "gaussian": "discrete_gaussian"}
_CELL = "__cell"
_MAX_CELLS = 2**31 - 1  # cell ids travel to OpenDP as i32


@dataclass(frozen=True)
class PreparedCells:
    """The bounded input of the measurement: one declared-domain cell id per kept contribution."""

    domain: pa.Table  # the declared cells, in release order (by columns only)
    codes: np.ndarray  # int32 cell ids (row numbers of `domain`), at most k per unit
    stats: dict[str, int]  # exact row accounting (not DP: pipeline-only)


@dataclass(frozen=True)
class DPResult:
    """A noisy count table and the privacy facts the release manifest records."""

    table: pa.Table  # by columns + `count` (int64, >= 0), one row per domain cell, domain order
    epsilon: float  # the privacy map's output at d_in = max_contributions
    delta: float  # 0 for pure DP (laplace)
    rho: float | None  # zCDP rho at d_in (gaussian only)
    scale: float  # the noise scale passed to OpenDP
    mechanism: str  # "laplace" or "gaussian"
    noise: str  # "discrete_laplace" or "discrete_gaussian"
    max_contributions: int  # d_in: cells one unit may change
    unit: str
    by: tuple[str, ...]
    cells: int
    requested_epsilon: float
    dropped_out_of_domain: int  # rows whose cell is not in the domain (exact: not DP)
    dropped_missing_unit: int  # rows without a unit id (exact: not DP)
    dropped_over_bound: int  # distinct (unit, cell) pairs beyond max_contributions (exact: not DP)
    stats: dict[str, int] = field(default_factory=dict)

    def manifest_entry(self) -> dict[str, Any]:
        """Privacy facts safe to publish: no statistic of the data outside the noisy counts."""
        return {
            "mechanism": self.mechanism,
            "noise": self.noise,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "rho": self.rho,
            "scale": self.scale,
            "max_contributions": self.max_contributions,
            "unit": self.unit,
            "by": list(self.by),
            "cells": self.cells,
            "post_processing": ["clamp_at_zero"],
            "library": f"opendp {dp.__version__}",
        }

    def diagnostics(self) -> dict[str, int]:
        """Exact row accounting for the pipeline-only run record: not differentially private."""
        return {
            "dropped_out_of_domain": self.dropped_out_of_domain,
            "dropped_missing_unit": self.dropped_missing_unit,
            "dropped_over_bound": self.dropped_over_bound,
            **self.stats,
        }


# ---------------------------------------------------------------------------------------------
# OpenDP measurement and calibration


def build_measurement(
    cells: int, mechanism: Mechanism, scale: float, delta: float | None = None
) -> dp.Measurement:
    """count_by_categories over cell ids 0..cells-1, then integer noise of `scale`.

    Laplace: pure DP (MaxDivergence), map(d_in) -> epsilon. Gaussian: with `delta`, the zCDP
    measurement converted to (epsilon, delta), map(d_in) -> (epsilon, delta); without `delta`,
    the zCDP measurement itself, map(d_in) -> rho.
    """
    input_domain = dp.vector_domain(dp.atom_domain(T=int))
    if mechanism == "laplace":
        counts = dp.t.make_count_by_categories(
            input_domain, dp.symmetric_distance(), categories=list(range(cells)),
            null_category=False,
        )  # fmt: skip
        return counts >> dp.m.then_laplace(scale)
    if mechanism == "gaussian":
        counts = dp.t.make_count_by_categories(
            input_domain, dp.symmetric_distance(), categories=list(range(cells)),
            null_category=False, MO="L2Distance<int>",
        )  # fmt: skip
        zcdp = counts >> dp.m.then_gaussian(scale)
        if delta is None:
            return zcdp
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(zcdp), delta)
    raise ConfigError(f"unknown DP mechanism {mechanism!r}; expected one of {sorted(MECHANISMS)}")


def privacy_loss(meas: dp.Measurement, d_in: int) -> float:
    """Epsilon of a measurement from `build_measurement` at d_in, read from its privacy map."""
    out = meas.map(d_in)
    return float(out[0] if isinstance(out, tuple) else out)


def _calibrate(
    cells: int, mechanism: Mechanism, epsilon: float, delta: float | None, d_in: int
) -> tuple[dp.Measurement, float]:
    """The smallest-noise measurement whose privacy map at d_in is <= epsilon, and its scale."""

    def build(scale: float) -> dp.Measurement:
        return build_measurement(cells, mechanism, scale, delta)

    if mechanism == "laplace":
        # OpenDP's discrete-Laplace map is d_in / scale, rounded conservatively: start from the
        # analytic scale and step up by ulps if rounding pushed the map just over epsilon.
        scale = d_in / epsilon
        for _ in range(8):
            meas = build(scale)
            if privacy_loss(meas, d_in) <= epsilon:
                return meas, scale
            scale = float(np.nextafter(scale, math.inf))
    # Gaussian (no closed form through the zCDP -> approx-DP conversion) or a stubborn rounding
    # case: OpenDP's own bisection over the scale, checked against the same map.
    d_out: Any = epsilon if mechanism == "laplace" else (epsilon, delta)
    scale = float(dp.binary_search_param(build, d_in=d_in, d_out=d_out, T=float))
    meas = build(scale)
    if privacy_loss(meas, d_in) > epsilon:  # binary_search_param promises this; keep it checked
        raise ConfigError(f"could not calibrate {mechanism} noise to epsilon {epsilon}")
    return meas, scale


# ---------------------------------------------------------------------------------------------
# Domain and contribution bounding (data handling, vectorized in Arrow and DuckDB)


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _domain_table(domain: dict[str, list] | pa.Table, by: list[str], schema: pa.Schema) -> pa.Table:
    """The declared cells as a table with the data's column types, checked for duplicates."""
    if isinstance(domain, pa.Table):
        missing = [c for c in by if c not in domain.column_names]
        if missing:
            raise ConfigError(f"DP domain table lacks columns {missing}")
        dom = domain.select(by)
    elif isinstance(domain, dict):
        if set(domain) != set(by):
            raise ConfigError(
                f"DP domain keys {sorted(domain)} must be exactly the by columns {by}"
            )
        values = [list(domain[c]) for c in by]
        for c, vals in zip(by, values, strict=True):
            if len(set(vals)) != len(vals):
                raise ConfigError(f"DP domain for {c!r} lists a value twice")
        sizes = [len(v) for v in values]
        n = math.prod(sizes)
        if n > _MAX_CELLS:
            raise ConfigError(f"DP domain has {n} cells; at most {_MAX_CELLS}")
        # Cartesian product in `by` order, the last column varying fastest. Values are cast to
        # the data's types below: declare them in those types (a ZIP as the string "02108").
        idx = np.indices(sizes).reshape(len(by), -1) if n else np.zeros((len(by), 0), int)
        try:
            dom = pa.table(
                {c: pa.array(v).take(pa.array(i)) for c, v, i in zip(by, values, idx, strict=True)}
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise ConfigError(f"DP domain values are not of one type per column: {exc}") from exc
    else:
        raise ConfigError("DP domain must be a dict of value lists or an Arrow table of cells")
    if dom.num_rows == 0:
        raise ConfigError("DP domain is empty")
    if dom.num_rows > _MAX_CELLS:
        raise ConfigError(f"DP domain has {dom.num_rows} cells; at most {_MAX_CELLS}")
    cols = {}
    for c in by:
        target = _value_type(schema.field(c).type)
        col = dom.column(c)
        if col.null_count:
            raise ConfigError(f"DP domain column {c!r} contains nulls")
        try:
            cols[c] = col.cast(target) if col.type != target else col
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ConfigError(f"DP domain column {c!r} cannot be read as {target}: {exc}") from exc
    dom = pa.table(cols)
    if dom.group_by(by).aggregate([]).num_rows != dom.num_rows:
        raise ConfigError("DP domain lists a cell twice")
    return dom


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _order_terms(order_by: Sequence[str | tuple[str, str]] | None, columns: list[str]) -> list[str]:
    terms = []
    for item in order_by or ():
        name, direction = (item, "ascending") if isinstance(item, str) else item
        if name not in columns:
            raise ConfigError(f"order_by column {name!r} is not in the table")
        if direction not in ("ascending", "descending"):
            raise ConfigError(f"order_by direction {direction!r}: use ascending or descending")
        terms.append(f"{_ident(name)} {'ASC' if direction == 'ascending' else 'DESC'} NULLS LAST")
    return terms


def prepare_cells(
    table: pa.Table,
    by: list[str],
    *,
    domain: dict[str, list] | pa.Table,
    max_contributions: int = 1,
    unit: str = "student_id",
    order_by: Sequence[str | tuple[str, str]] | None = None,
    seed: int | None = None,
) -> PreparedCells:
    """Match rows to the declared domain and bound each unit's contributions.

    Rule: a unit's rows are ordered by `order_by` (ascending unless given as (column,
    "descending")), then by a `seed`-keyed hash of the cell (if `seed` is given) or by the cell's
    position in the domain. The unit contributes once to each distinct cell among its rows, in
    that order, up to `max_contributions` cells. The order is independent of the input row order.
    """
    if not by:
        raise ConfigError("dp counts need at least one by column")
    missing = [c for c in [*by, unit] if c not in table.column_names]
    if missing:
        raise ConfigError(f"table lacks columns {missing}")
    if unit in by:
        raise ConfigError(f"unit column {unit!r} cannot also be a by column")
    if not isinstance(max_contributions, int) or max_contributions < 1:
        raise ConfigError(
            f"max_contributions must be a positive integer, not {max_contributions!r}"
        )
    dom = _domain_table(domain, by, table.schema)
    order_terms = _order_terms(order_by, table.column_names)

    # Only the columns the rule needs; dictionary columns decoded so the join compares values.
    needed = list(
        dict.fromkeys([*by, unit, *[t if isinstance(t, str) else t[0] for t in order_by or ()]])
    )
    data = pa.table(
        {
            c: (
                table.column(c).cast(_value_type(table.schema.field(c).type))
                if pa.types.is_dictionary(table.schema.field(c).type)
                else table.column(c)
            )
            for c in needed
        }
    )
    cells = dom.append_column(_CELL, pa.array(np.arange(dom.num_rows, dtype=np.int32)))
    missing_unit = data.column(unit).null_count
    rows = data.num_rows

    tiebreak = (
        f"hash({_CELL}, {int(seed)}::BIGINT)" if seed is not None else _CELL
    )  # seed: pseudo-random, still deterministic, choice among a unit's cells
    u = _ident(unit)
    on = " AND ".join(f"d.{_ident(c)} = c.{_ident(c)}" for c in by)
    sql = f"""
        WITH matched AS (
            SELECT d.*, c.{_CELL} FROM data d JOIN cells c ON {on} WHERE d.{u} IS NOT NULL
        ), ranked AS (
            SELECT {u}, {_CELL}, row_number() OVER (
                PARTITION BY {u} ORDER BY {", ".join([*order_terms, tiebreak, _CELL])}
            ) AS r
            FROM matched
        ), per_cell AS (
            SELECT {u}, {_CELL}, min(r) AS first_r, count(*) AS n FROM ranked GROUP BY {u}, {_CELL}
        )
        SELECT {_CELL}, n, row_number() OVER (PARTITION BY {u} ORDER BY first_r) AS k
        FROM per_cell
    """
    con = duckdb.connect()
    try:
        con.register("data", data)
        con.register("cells", cells)
        pairs = con.execute(sql).to_arrow_table()
    finally:
        con.close()
    matched = int(pc.sum(pairs.column("n")).as_py() or 0)
    kept = pc.less_equal(pairs.column("k"), max_contributions)
    # A writable copy: OpenDP hands the buffer to ctypes, which refuses Arrow's read-only views.
    codes_arr = np.array(pairs.column(_CELL).filter(kept).to_numpy(), dtype=np.int32)
    stats = {
        "rows": rows,
        "rows_missing_unit": missing_unit,
        "rows_out_of_domain": rows - missing_unit - matched,
        "rows_in_domain": matched,
        "unit_cell_pairs": pairs.num_rows,
        "pairs_over_bound": pairs.num_rows - len(codes_arr),
        "contributions_kept": len(codes_arr),
    }
    return PreparedCells(domain=dom, codes=codes_arr, stats=stats)


# ---------------------------------------------------------------------------------------------
# The release


def dp_counts(
    table: pa.Table,
    by: list[str],
    *,
    epsilon: float,
    domain: dict[str, list] | pa.Table,
    max_contributions: int = 1,
    unit: str = "student_id",
    mechanism: Mechanism = "laplace",
    delta: float | None = None,
    seed: int | None = None,
    order_by: Sequence[str | tuple[str, str]] | None = None,
) -> DPResult:
    """Differentially private count of units per declared cell of `by` (see the module doc).

    `epsilon` is the budget of this release for adding or removing one unit (all of its rows).
    `mechanism="gaussian"` needs `delta` (0 < delta < 1): the release is (epsilon, delta)-DP via
    OpenDP's zCDP conversion, and `DPResult.rho` records the zCDP cost as well.
    """
    if mechanism not in MECHANISMS:
        raise ConfigError(
            f"unknown DP mechanism {mechanism!r}; expected one of {sorted(MECHANISMS)}"
        )
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"epsilon must be a positive finite number, not {epsilon!r}")
    if mechanism == "gaussian":
        if delta is None or not 0 < delta < 1:
            raise ConfigError(f"gaussian DP needs 0 < delta < 1, not {delta!r}")
    elif delta not in (None, 0, 0.0):
        raise ConfigError("laplace DP is pure epsilon-DP: delta must be None or 0")

    prepared = prepare_cells(
        table, by, domain=domain, max_contributions=max_contributions, unit=unit,
        order_by=order_by, seed=seed,
    )  # fmt: skip
    cells = prepared.domain.num_rows
    meas, scale = _calibrate(cells, mechanism, float(epsilon), delta, max_contributions)
    spent = privacy_loss(meas, max_contributions)
    rho = None
    if mechanism == "gaussian":
        rho = float(build_measurement(cells, "gaussian", scale).map(max_contributions))

    noisy = np.asarray(meas(prepared.codes), dtype=np.int64)
    if noisy.shape != (cells,):  # one count per declared cell, nothing else
        raise RuntimeError(f"OpenDP returned {noisy.shape[0]} counts for {cells} cells")
    counts = np.maximum(noisy, 0)  # post-processing: a negative count carries no extra meaning

    out = prepared.domain.append_column("count", pa.array(counts, type=pa.int64()))
    st = prepared.stats
    return DPResult(
        table=out,
        epsilon=spent,
        delta=float(delta or 0.0),
        rho=rho,
        scale=scale,
        mechanism=mechanism,
        noise=MECHANISMS[mechanism],
        max_contributions=max_contributions,
        unit=unit,
        by=tuple(by),
        cells=cells,
        requested_epsilon=float(epsilon),
        dropped_out_of_domain=st["rows_out_of_domain"],
        dropped_missing_unit=st["rows_missing_unit"],
        dropped_over_bound=st["pairs_over_bound"],
        stats=dict(st),
    )
