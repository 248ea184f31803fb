"""Complementary cell suppression and its audit, over cells linked by additive constraints.

Primary suppression (`suppression.py`) hides cells counting 1..min_cell-1 students. Published
margins, and other tables of the same release, often let an attacker recompute a hidden cell,
so more cells must be hidden ("complementary" suppressions). This module works on a generic
system, not on one table (`linked_tables.py` builds it from the published tables):

* cells: non-negative integer counts. An empty group is absent, so absent cells are not cells,
  and a present cell counts >= 1 -- which the attacker knows.
* constraints: ``cell[total] = sum(cell[parts])`` (a margin, or a coarser table's cell).
* a pattern: which cells are suppressed. Fixed-public cells (tier-1 totals) never are.

The attacker knows every published cell, every constraint, and that a suppressed cell is >= 1.
Primary and complementary suppressions look alike, so that is all "suppressed" tells. With
``min_cell`` the attacker is assumed to know more, which cells are primary: those lie in
[1, min_cell-1] and the others are >= min_cell. Either way its feasible values of a suppressed
cell form an interval [lo, hi]: the minimum and maximum of the cell over a polytope, each an LP.

Criterion: ``hi - lo >= min_width`` for every suppressed cell. Counts are integers: LP bounds are
rounded inward (exact for 2-way tables with margins, whose LP vertices are integral; in general
the LP relaxation, as in tau-ARGUS, can be a little wider than an integer attacker's interval).

`audit` computes the exact intervals per connected component of suppressed cells (cells linked
by a constraint that holds at least two suppressed cells; published cells are constants; a
constraint holding a single suppressed cell discloses it). Components are independent, so many
are solved as one block-diagonal LP whose objective sums one target per block, and HiGHS's
simplex re-solves warm after each objective change; a vertex where a cell sits at one of its
bounds settles that bound without an LP of its own.

`protect` audits the primary pattern, then, for each failing cell, solves a protection LP
(the formulation of Fischetti & Salazar, 2000): a perturbation y with A y = 0, y = 0 on fixed
cells, every suppressed (or to-be-suppressed) cell kept within the attacker's bounds, that moves
the failing cell by the missing width at the least weighted L1 movement of published cells
(weight: the cell's value, so small cells are preferred; suppressed cells move for free). The
published cells y moves become complementary suppressions: the true table x and x + y are then
both feasible for the attacker, so the cell is protected by construction -- and stays so, since
suppressing more only enlarges the attacker's polytope. The new complementary cells are audited
in turn (their components only) until none fails. A cell that stays exposed although every
other non-fixed cell could move is unprotectable (e.g. a small grade total that tier 1 itself
publishes); it is reported, and fails the audit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog
from scipy.sparse.csgraph import connected_components

__all__ = [
    "DEFAULT_MIN_WIDTH",
    "Audit",
    "Constraints",
    "Protection",
    "audit",
    "backend",
    "protect",
]

# An interval must span at least 3 values ([1, 3]): width 1 ("not exactly recoverable") still
# allows "1 or 2 students", which singles a student out nearly as well as an exact count. At BPS
# size width 2 costs 5% more complementary cells than width 1 (docs/suppression.md).
DEFAULT_MIN_WIDTH = 2

_EPS = 1e-6  # LP values are integers up to this tolerance
# Columns per block-diagonal LP: larger batches amortize HiGHS's ~0.1 ms per solve, smaller ones
# keep pivots cheap. Tuned at BPS size (docs/suppression.md).
_AUDIT_BATCH = 1000
_PROTECT_BATCH = 300


# --------------------------------------------------------------------------------------------
# The system


@dataclass(frozen=True)
class Constraints:
    """Additive constraints ``cell[total[k]] == sum(cell[parts[indptr[k]:indptr[k + 1]]])``."""

    total: np.ndarray  # int64 (m,)
    indptr: np.ndarray  # int64 (m + 1,)
    parts: np.ndarray  # int64 (nnz,)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, Sequence[int]]]) -> Constraints:
        total, lens, parts = [], [], []
        for t, p in pairs:
            total.append(int(t))
            lens.append(len(p))
            parts.extend(int(i) for i in p)
        indptr = np.zeros(len(total) + 1, np.int64)
        np.cumsum(lens, out=indptr[1:])
        return cls(np.asarray(total, np.int64), indptr, np.asarray(parts, np.int64))

    @property
    def m(self) -> int:
        return len(self.total)

    def matrix(self, n: int) -> sp.csr_matrix:
        """A (m x n): +1 for the total, -1 for each part, so that A @ cells == 0."""
        k = np.arange(self.m, dtype=np.int64)
        rows = np.concatenate([k, np.repeat(k, np.diff(self.indptr))])
        cols = np.concatenate([self.total, self.parts])
        data = np.concatenate([np.ones(self.m), -np.ones(len(self.parts))])
        return sp.csr_matrix((data, (rows, cols)), shape=(self.m, n))

    def pairs(self) -> list[tuple[int, list[int]]]:
        return [
            (int(t), self.parts[self.indptr[k] : self.indptr[k + 1]].tolist())
            for k, t in enumerate(self.total)
        ]


ConstraintsLike = Constraints | Sequence[tuple[int, Sequence[int]]]


def _system(
    values: np.ndarray, constraints: ConstraintsLike
) -> tuple[np.ndarray, Constraints, sp.csr_matrix]:
    values = np.asarray(values, np.int64)
    if values.ndim != 1 or (values < 0).any():
        raise ValueError("cell values must be a 1-d array of non-negative counts")
    cons = (
        constraints if isinstance(constraints, Constraints) else Constraints.from_pairs(constraints)
    )
    a = cons.matrix(len(values))
    bad = np.flatnonzero(a @ values.astype(np.float64))
    if bad.size:
        raise ValueError(f"{bad.size} constraints do not hold on the cell values, e.g. #{bad[0]}")
    return values, cons, a


def _bounds(
    values: np.ndarray,
    primary: np.ndarray | None,
    min_cell: int | None,
    lower: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The attacker's bounds on each cell, were it suppressed, and the cap standing for +inf
    (no cell exceeds all counts combined; an LP maximum at the cap means unbounded).

    `lower` is the attacker's known lower bound per cell: 1 for a present cell (the default),
    0 where every value of a category is listed whether or not it occurs (then a suppressed
    cell may be empty)."""
    cap = float(4 * int(values.sum()) + 10)
    lb = np.ones(len(values)) if lower is None else np.asarray(lower, np.float64).copy()
    ub = np.full(len(values), cap)
    if min_cell is not None:
        if primary is None:
            raise ValueError("an attacker who knows the primary cells needs the primary mask")
        if (values[primary] >= min_cell).any():
            raise ValueError(f"a primary cell counts min_cell={min_cell} or more")
        ub[primary] = min_cell - 1
        lb[~primary] = np.maximum(lb[~primary], np.minimum(min_cell, values[~primary]))
    return lb, ub, cap


# --------------------------------------------------------------------------------------------
# LP backend: HiGHS through highspy if installed, else the same HiGHS that SciPy bundles (a
# private module, hence guarded), else scipy.optimize.linprog without warm starts (~10x slower).


def _highs() -> tuple[Any, Any] | None:
    try:
        import highspy  # type: ignore[import-not-found]

        return highspy, highspy.Highs
    except ImportError:
        pass
    try:
        from scipy.optimize._highspy import _core  # type: ignore[attr-defined]

        return _core, _core._Highs
    except (ImportError, AttributeError):
        return None


_HIGHS = _highs()


def backend() -> str:
    """The LP backend used by default: "highspy", "scipy-highs" or "linprog"."""
    if _HIGHS is None:
        return "linprog"
    return "highspy" if _HIGHS[0].__name__ == "highspy" else "scipy-highs"


class _LP:
    """min c.x s.t. A x = rhs, lb <= x <= ub; costs and bounds change between warm re-solves."""

    def __init__(
        self,
        a: sp.csc_matrix,
        rhs: np.ndarray,
        lb: np.ndarray,
        ub: np.ndarray,
        engine: str,
        *,
        primal: bool,
    ) -> None:
        self.n = a.shape[1]
        self.cost = np.zeros(self.n)
        self.lb, self.ub = lb.astype(np.float64), ub.astype(np.float64)
        self.solves = 0
        self.engine = engine
        if engine == "linprog":
            self.a, self.rhs = a.tocsr(), rhs.astype(np.float64)
            return
        if _HIGHS is None:
            raise ValueError(f"LP backend {engine!r} is not available")
        core, highs = _HIGHS
        self.optimal = core.HighsModelStatus.kOptimal
        self.unbounded = (
            core.HighsModelStatus.kUnbounded,
            core.HighsModelStatus.kUnboundedOrInfeasible,
        )
        lp = core.HighsLp()
        lp.num_col_, lp.num_row_ = self.n, a.shape[0]
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = self.n, a.shape[0]
        lp.a_matrix_.format_ = core.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = a.indices.astype(np.int32)
        lp.a_matrix_.value_ = a.data.astype(np.float64)
        lp.col_cost_ = self.cost
        lp.col_lower_, lp.col_upper_ = self.lb, self.ub
        lp.row_lower_ = lp.row_upper_ = rhs.astype(np.float64)
        self.h = highs()
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("presolve", "off")  # small models; presolve defeats warm starts
        # Only the objective changes: the last basis stays primal feasible, so primal simplex.
        # Bounds change too (protection): dual simplex. Measured both ways at BPS size.
        self.h.setOptionValue("simplex_strategy", 4 if primal else 1)
        self.h.passModel(lp)

    def set_bounds(self, idx: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        self.lb[idx], self.ub[idx] = lb, ub
        if self.engine != "linprog" and len(idx):
            self.h.changeColsBounds(len(idx), idx.astype(np.int32), self.lb[idx], self.ub[idx])

    def solve(self, cost: np.ndarray) -> np.ndarray:
        """The optimal x; raises if the LP is not solved to optimality."""
        self.solves += 1
        if self.engine == "linprog":
            r = linprog(
                cost,
                A_eq=self.a,
                b_eq=self.rhs,
                bounds=np.column_stack([self.lb, self.ub]),
                method="highs-ds",
            )
            if r.status != 0:
                raise RuntimeError(f"LP not solved: {r.message}")
            return np.asarray(r.x)
        changed = np.flatnonzero(cost != self.cost)
        if changed.size:
            self.h.changeColsCost(changed.size, changed.astype(np.int32), cost[changed])
            self.cost = cost.copy()
        self.h.run()
        if self.h.getModelStatus() != self.optimal:  # rare warm-start trouble: start cold
            self.h.clearSolver()
            self.h.run()
        status = self.h.getModelStatus()
        if status != self.optimal:
            # The true table is feasible and every variable is bounded, so this is a bug.
            raise RuntimeError(f"LP not solved: {self.h.modelStatusToString(status)}")
        return np.asarray(self.h.getSolution().col_value)


# --------------------------------------------------------------------------------------------
# Components and batches


def _components(b: sp.spmatrix) -> np.ndarray:
    """Connected components of the columns of b (rows x cols) linked through shared rows,
    labelled 0.. in order of their lowest column."""
    m, n = b.shape
    if n == 0:
        return np.zeros(0, np.int64)
    b = b.tocoo()
    g = sp.coo_matrix((np.ones(b.nnz), (b.row, m + b.col)), shape=(m + n, m + n))
    _, lab = connected_components(g, directed=False)
    lab = lab[m:]
    _, first = np.unique(lab, return_index=True)
    relabel = np.empty(lab.max() + 1, np.int64)
    relabel[lab[np.sort(first)]] = np.arange(len(first))
    return relabel[lab]


def _batches(label: np.ndarray, which: np.ndarray, max_cols: int) -> list[np.ndarray]:
    """Group components `which` into batches of about max_cols columns, similar sizes together
    (a batch takes as many rounds as its largest block has targets)."""
    sizes = np.bincount(label)
    which = which[np.argsort(sizes[which], kind="stable")]
    out, cur, acc = [], [], 0
    for c in which:
        cur.append(c)
        acc += sizes[c]
        if acc >= max_cols:
            out.append(np.asarray(cur))
            cur, acc = [], 0
    if cur:
        out.append(np.asarray(cur))
    return out


def _first_per_block(block: np.ndarray, todo: np.ndarray) -> np.ndarray:
    """Positions of the first todo column of each block."""
    idx = np.flatnonzero(todo)
    _, first = np.unique(block[idx], return_index=True)
    return idx[first]


@dataclass
class _Stats:
    solves: int = 0  # solver calls
    problems: int = 0  # per-cell problems they answered (one per block targeted)

    def add(self, other: _Stats) -> None:
        self.solves += other.solves
        self.problems += other.problems


# --------------------------------------------------------------------------------------------
# Exact intervals


def _intervals(
    values: np.ndarray,
    suppressed: np.ndarray,
    a: sp.csr_matrix,
    lb_all: np.ndarray,
    ub_all: np.ndarray,
    targets: np.ndarray,
    engine: str,
    stats: _Stats,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact [lo, hi] of the `targets` (a subset of `suppressed`); NaN elsewhere. Also returns
    the component of every suppressed cell (-1 for published cells)."""
    n = len(values)
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    comp = np.full(n, -1, np.int64)
    sidx = np.flatnonzero(suppressed)
    if sidx.size == 0:
        return lo, hi, comp
    a_s = a[:, sidx].tocsr()
    per_row = np.diff(a_s.indptr)
    rhs = -(a @ np.where(suppressed, 0.0, values.astype(np.float64)))  # A_s x_s = -A_pub v_pub
    label = _components(a_s[per_row >= 2])
    comp[sidx] = label
    # A constraint holding a single suppressed cell gives it away: no LP needed.
    pinned = np.zeros(n, bool)
    pinned[sidx[np.unique(a_s[per_row == 1].indices)]] = True
    lo[targets & pinned] = hi[targets & pinned] = values[targets & pinned]
    want = targets[sidx] & ~pinned[sidx]
    a_c = a_s.tocsc()

    def solve_batch(batch: np.ndarray) -> None:
        cols = np.flatnonzero(np.isin(label, batch))  # positions in sidx, ascending
        sub = a_c[:, cols]
        rows = np.unique(sub.indices)
        cells = sidx[cols]
        lp = _LP(sub[rows], rhs[rows], lb_all[cells], ub_all[cells], engine, primal=True)
        block = label[cols]
        need_hi, need_lo = want[cols].copy(), want[cols].copy()
        blo, bhi = np.full(len(cols), np.nan), np.full(len(cols), np.nan)
        for sign, need, out in ((-1.0, need_hi, bhi), (1.0, need_lo, blo)):
            while need.any():
                pick = _first_per_block(block, need)
                cost = np.zeros(len(cols))
                cost[pick] = sign
                x = lp.solve(cost)
                stats.problems += len(pick)
                out[pick], need[pick] = x[pick], False
                # A vertex with a cell at one of its bounds settles that bound exactly.
                at_lb = need_lo & (x <= lp.lb + _EPS)
                blo[at_lb], need_lo[at_lb] = lp.lb[at_lb], False
                at_ub = need_hi & (x >= lp.ub - _EPS)
                bhi[at_ub], need_hi[at_ub] = lp.ub[at_ub], False
        stats.solves += lp.solves
        sel = want[cols]
        lo[cells[sel]] = np.ceil(blo[sel] - _EPS)
        hi[cells[sel]] = np.floor(bhi[sel] + _EPS)

    for batch in _batches(label, np.unique(label[want]), _AUDIT_BATCH):
        solve_batch(batch)
    return lo, hi, comp


def _exposed(lo: np.ndarray, hi: np.ndarray, lb: np.ndarray, min_width: int) -> np.ndarray:
    """Cells whose feasible interval is too narrow. A cell that may be empty (lower bound 0) is
    also protected while the attacker cannot tell 0 from at least 1: for a group of one
    student, [0, 1] is all there is to know."""
    narrow = hi - lo < min_width
    return narrow & ~((lb <= 0) & (lo <= _EPS) & (hi >= 1 - _EPS))


@dataclass
class Audit:
    """The attacker's feasible interval of every suppressed cell (NaN where published)."""

    lo: np.ndarray  # float64: the exact LP minimum, rounded up to an integer
    hi: np.ndarray  # float64: the exact LP maximum, rounded down; inf when unbounded
    ok: np.ndarray  # bool: hi - lo >= min_width (True for published cells)
    component: np.ndarray  # int64: component of suppressed cells; -1 where published
    min_width: int
    lp_solves: int = 0  # solver calls
    lp_problems: int = 0  # per-cell min/max problems they answered
    seconds: float = 0.0

    @property
    def failing(self) -> np.ndarray:
        """Indices of the suppressed cells whose interval is too narrow."""
        return np.flatnonzero(~self.ok)

    @property
    def passed(self) -> bool:
        return bool(self.ok.all())


def audit(
    values: np.ndarray,
    suppressed: np.ndarray,
    constraints: ConstraintsLike,
    *,
    min_width: int = DEFAULT_MIN_WIDTH,
    primary: np.ndarray | None = None,
    min_cell: int | None = None,
    engine: str | None = None,
    lower: np.ndarray | None = None,
) -> Audit:
    """The exact feasible interval of every suppressed cell for an attacker who knows the
    published cells, the constraints and that suppressed cells are >= 1; with `min_cell`, also
    which are `primary` (in [1, min_cell-1]; the others >= min_cell)."""
    t0 = time.perf_counter()
    values, _, a = _system(values, constraints)
    suppressed = np.asarray(suppressed, bool)
    floor = np.ones(len(values)) if lower is None else np.asarray(lower, np.float64)
    if (values[suppressed] < floor[suppressed]).any():
        raise ValueError(
            "a suppressed cell counts less than its lower bound (absent cells are "
            "not cells unless every category is listed)"
        )
    if primary is not None and (np.asarray(primary, bool) & ~suppressed).any():
        raise ValueError("a primary cell is published")
    lb, ub, cap = _bounds(
        values, None if primary is None else np.asarray(primary, bool), min_cell, lower
    )
    stats = _Stats()
    lo, hi, comp = _intervals(values, suppressed, a, lb, ub, suppressed, engine or backend(), stats)
    hi[hi >= cap - _EPS] = np.inf
    ok = ~suppressed | ~_exposed(lo, hi, lb, min_width)
    seconds = time.perf_counter() - t0
    return Audit(lo, hi, ok, comp, min_width, stats.solves, stats.problems, seconds)


# --------------------------------------------------------------------------------------------
# Protection


@dataclass
class Protection:
    """A suppression pattern passing the audit, but for the `unprotectable` cells."""

    suppressed: np.ndarray  # bool: primary | complementary
    complementary: np.ndarray  # bool
    unprotectable: np.ndarray  # bool: exposed even if every other non-fixed cell were suppressed
    min_width: int
    min_cell: int | None  # the attacker model (see audit)
    passes: int = 0  # audit -> protect rounds
    lp_solves: int = 0
    lp_problems: int = 0
    seconds: float = 0.0
    audit: Audit | None = None  # the closing audit, with protect(verify=True)
    log: list[dict[str, int]] = field(default_factory=list)


@dataclass
class _Target:
    cell: int
    lo: float  # attainable values of the cell: its true interval contains [lo, hi]
    hi: float
    up_done: bool = False  # that direction moves no further
    down_done: bool = False


def _protect_pass(
    values: np.ndarray,
    hidden: np.ndarray,
    movable: np.ndarray,
    a_c: sp.csc_matrix,
    block_of: np.ndarray,
    weights: np.ndarray,
    lb_all: np.ndarray,
    ub_all: np.ndarray,
    targets: list[_Target],
    min_width: int,
    engine: str,
    stats: _Stats,
) -> np.ndarray:
    """Protect every target, suppressing more cells (updates `hidden` in place); returns the
    unprotectable targets.

    Blocks (components of movable cells) are independent, so a batch of them is one LP whose
    objective sums theirs. Each round, every block takes one step: its first pending target is
    moved up, or once up is exhausted down, by the missing width.
    """
    unprotectable = np.zeros(len(values), bool)
    queues: dict[int, list[_Target]] = {}
    for t in sorted(targets, key=lambda t: t.cell):
        queues.setdefault(int(block_of[t.cell]), []).append(t)
    midx = np.flatnonzero(movable)
    mlabel = block_of[midx]
    for batch in _batches(mlabel, np.asarray(sorted(queues)), _PROTECT_BATCH):
        cells = midx[np.isin(mlabel, batch)]  # ascending
        k = len(cells)
        local = {int(c): i for i, c in enumerate(cells)}
        sub = a_c[:, cells]
        rows = np.unique(sub.indices)
        # The perturbation y = p - q: column 2i is p (up), 2i+1 is q (down) of cells[i].
        order = np.empty(2 * k, np.int64)
        order[0::2], order[1::2] = np.arange(k), k + np.arange(k)
        x = values[cells].astype(np.float64)
        lb, ub = np.zeros(2 * k), np.empty(2 * k)
        ub[0::2], ub[1::2] = ub_all[cells] - x, x - lb_all[cells]  # the attacker's bounds
        lp = _LP(
            sp.hstack([sub[rows], -sub[rows]], format="csc")[:, order],
            np.zeros(len(rows)),
            lb,
            ub,
            engine,
            primal=False,
        )
        # A published cell costs its (normalized) weight per unit moved, a hidden one nothing.
        # A target earns `reward` per unit, more than a unit of its movement can cost in its
        # block when |y_j| <= |y_target| (cycles in tables with margins): the LP moves it as far
        # as it needs (or can), then as cheaply as it can.
        block = block_of[cells]
        is_hidden = hidden[cells].copy()
        w = weights[cells] / weights[cells].max()
        w[is_hidden] = 0.0
        cost = np.repeat(w, 2)
        reward = 2.0 * np.bincount(block, w) + 1.0
        queue = {int(b): queues[int(b)] for b in batch}
        while True:
            step: list[tuple[int, _Target, int, float]] = []  # (block, target, column, amount)
            for b, q in queue.items():
                while q:
                    t = q[0]
                    if t.hi - t.lo >= min_width - _EPS:
                        q.pop(0)
                    elif t.up_done and t.down_done:
                        unprotectable[t.cell] = True
                        q.pop(0)
                    else:
                        i, v = local[t.cell], float(values[t.cell])
                        if not t.up_done:  # up, to lo + width
                            step.append((b, t, 2 * i, t.lo + min_width - v))
                        else:  # down, to hi - width
                            step.append((b, t, 2 * i + 1, v - (t.hi - min_width)))
                        break
            if not step:
                break
            cols = np.asarray([s[2] for s in step])
            other = cols ^ 1  # the target's opposite direction stays at 0
            want = np.asarray([s[3] for s in step])
            zeros = np.zeros(len(cols))
            lp.set_bounds(cols, zeros, np.minimum(want, ub[cols]))
            lp.set_bounds(other, zeros, zeros)
            c = cost.copy()
            c[cols] = -reward[[s[0] for s in step]]
            sol = lp.solve(c)
            stats.problems += len(step)
            moved = (sol[0::2] + sol[1::2] > _EPS) & ~is_hidden
            hidden[cells[moved]] = is_hidden[moved] = True
            w[moved] = 0.0
            cost[np.repeat(moved, 2)] = 0.0
            reach = sol[cols]
            short = reach < want - _EPS
            if short.any():
                # Did a target stop short because it can go no further, or because moving it
                # cost more than its reward (possible off +-1 structures)? Ask without costs.
                c = np.zeros(2 * k)
                c[cols[short]] = -1.0
                free = lp.solve(c)[cols]
                stats.problems += int(short.sum())
                stuck = short & (free < reach + _EPS)
                for b in {step[j][0] for j in np.flatnonzero(short & ~stuck)}:
                    reward[b] *= 100.0  # and retry next round
            else:
                stuck = short
            for j, (_, t, col, _) in enumerate(step):
                if col % 2 == 0:
                    t.hi = max(t.hi, values[t.cell] + reach[j])
                    t.up_done = t.up_done or bool(stuck[j])
                else:
                    t.lo = min(t.lo, values[t.cell] - reach[j])
                    t.down_done = t.down_done or bool(stuck[j])
            lp.set_bounds(cols, lb[cols], ub[cols])
            lp.set_bounds(other, lb[other], ub[other])
        stats.solves += lp.solves
    return unprotectable


def protect(
    values: np.ndarray,
    primary: np.ndarray,
    constraints: ConstraintsLike,
    *,
    fixed_public: np.ndarray | None = None,
    min_width: int = DEFAULT_MIN_WIDTH,
    min_cell: int | None = None,
    weights: np.ndarray | None = None,
    verify: bool = False,
    engine: str | None = None,
    lower: np.ndarray | None = None,
) -> Protection:
    """Choose complementary suppressions so that every suppressed cell's feasible interval is
    at least `min_width` wide, for the attacker described in `audit`.

    `weights` (default: the cell values) is the information lost by suppressing each cell;
    fixed-public cells are never suppressed. Deterministic: same input, same pattern (ties lean
    to lower cell indices). `verify` runs `audit` on the result.
    """
    t0 = time.perf_counter()
    engine = engine or backend()
    values, cons, a = _system(values, constraints)
    n = len(values)
    primary = np.asarray(primary, bool)
    fixed = np.zeros(n, bool) if fixed_public is None else np.asarray(fixed_public, bool)
    if (primary & fixed).any():
        raise ValueError("a fixed-public cell cannot be primary-suppressed")
    floor = np.ones(n) if lower is None else np.asarray(lower, np.float64)
    if (values[primary] < floor[primary]).any():
        raise ValueError("a primary cell counts less than its lower bound")
    if min_width < 1:
        raise ValueError("min_width must be >= 1")
    lb, ub, _ = _bounds(values, primary, min_cell, lower)
    w = values.astype(np.float64) if weights is None else np.asarray(weights, np.float64)
    if w.shape != values.shape or (w < 0).any():
        raise ValueError("weights must be one non-negative number per cell")
    w = w + 0.5 * (1 + np.arange(n)) / n  # > 0, and ties lean to lower indices
    # Cells a protection may move (suppress): present and not fixed-public. Blocks are their
    # components; a constraint with one movable cell pins it, so it links nothing.
    movable = ~fixed & ((values >= 1) | (lb <= 0))  # listed-if-empty cells may move too
    m_idx = np.flatnonzero(movable)
    a_m = a[:, m_idx].tocsr()
    block_of = np.full(n, -1, np.int64)
    block_of[m_idx] = _components(a_m[np.diff(a_m.indptr) >= 2])
    a_c = a.tocsc()

    stats = _Stats()
    hidden = primary.copy()
    unprotectable = np.zeros(n, bool)
    check = primary.copy()
    log = []
    while check.any():
        lo, hi, _ = _intervals(values, hidden, a, lb, ub, check, engine, stats)
        failing = np.flatnonzero(check & _exposed(lo, hi, lb, min_width))
        log.append({"checked": int(check.sum()), "failing": len(failing), "added": 0})
        if failing.size == 0:
            break
        before = hidden.copy()
        targets = [_Target(int(c), float(lo[c]), float(hi[c])) for c in failing]
        unprotectable |= _protect_pass(
            values, hidden, movable, a_c, block_of, w, lb, ub, targets, min_width, engine, stats
        )
        check = hidden & ~before
        log[-1]["added"] = int(check.sum())
    result = Protection(
        suppressed=hidden,
        complementary=hidden & ~primary,
        unprotectable=unprotectable,
        min_width=min_width,
        min_cell=min_cell,
        passes=len(log),
        lp_solves=stats.solves,
        lp_problems=stats.problems,
        log=log,
    )
    if verify:
        result.audit = audit(
            values,
            hidden,
            cons,
            min_width=min_width,
            primary=primary,
            min_cell=min_cell,
            engine=engine,
            lower=lower,
        )
    result.seconds = time.perf_counter() - t0
    return result
