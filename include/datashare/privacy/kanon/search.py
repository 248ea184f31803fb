"""Optimal full-domain generalization with record suppression (k-anonymity, l-diversity).

The data is encoded once: each QI column becomes integer codes of its distinct values, each
hierarchy level a small code map (distinct value -> generalized code), and the records collapse
into base groups (distinct QI combinations with counts). A node's equivalence classes are then
found with numpy only: the generalized codes of all QIs are combined into one int64 key per group
(mixed radix) and equal keys counted (bincount when the key space is small, else a sort). A node
is computed from the groups of the smallest already evaluated specialization, not from scratch.

The search walks the lattice best-first in ascending order of the metric's lower bound and stops
as soon as no remaining node can beat the best anonymous node found, so the result is optimal.
Anonymity is monotone for k-anonymity and distinct l-diversity, also with suppression (a coarser
class is a union of finer ones; if it fails, all its parts fail, so a coarser node never
suppresses more records). That lets one check classify many nodes: an anonymous node makes all
its generalizations anonymous, a non-anonymous one all its specializations non-anonymous. To
decide an unknown node the search, like ARX's Flash, builds a path of generalizations upward from
it and binary-searches the path for the lowest anonymous node, tagging up-sets and down-sets as it
goes (see docs/kanon.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datashare.errors import ConfigError, DataShareError

from .hierarchy import Hierarchy, HierarchyError, to_strings
from .lattice import Lattice
from .metrics import Classes, Metric, NonUniformEntropy, QIStats

__all__ = [
    "KAnonResult",
    "NoSolutionError",
    "anonymize",
    "apply_transformation",
    "class_sizes",
    "measure_k",
    "measure_l",
]

_UNKNOWN, _ANON, _NOT = 0, 1, 2
_KEY_LIMIT = 1 << 62  # keep mixed-radix keys clear of int64 overflow
_ENTROPY_RTOL = 1e-12  # entropy-l ties (uniform classes) pass despite rounding order
_GEN_BUDGET_BYTES = 256 << 20  # precomputed generalized codes of the base groups
_CACHE_BUDGET = 8_000_000  # groups (8 bytes each) kept to compute coarser nodes from
# Count groups with bincount instead of sorting while the key space is at most this large.
_DENSE_FACTOR, _DENSE_MIN = 8, 1 << 16


class NoSolutionError(DataShareError):
    """No transformation satisfies the criteria within the suppression limit."""

    code = "kanon-no-solution"


# -- the encoded data ----------------------------------------------------------------------------


def _as_table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    try:
        return pa.Table.from_pandas(data, preserve_index=False)
    except Exception as exc:
        raise ConfigError(
            f"expected a pyarrow Table or pandas DataFrame, got {type(data).__name__}"
        ) from exc


def _encode(values: Any) -> tuple[np.ndarray, list[str]]:
    """Codes of distinct canonical strings, numbered in order of first appearance."""
    enc = pc.dictionary_encode(to_strings(values))
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary.to_pylist()


class _Model:
    """One data set encoded against its hierarchies (built once per run).

    Records are first collapsed into *base groups*: distinct combinations of original QI values
    (and of the sensitive value, with l-diversity), with their record counts. These are exactly
    the groups of the lattice's bottom node; every node is computed from them or from the groups
    of an already evaluated specialization, never from the raw records again.
    """

    def __init__(
        self,
        table: pa.Table,
        hierarchies: Mapping[str, Hierarchy],
        sensitive: str | None = None,
    ) -> None:
        self.qis = tuple(hierarchies)
        wanted = (*self.qis, *([sensitive] if sensitive else []))
        missing = [c for c in wanted if c not in table.column_names]
        if missing:
            raise ConfigError(
                f"column(s) {missing} not in the data (columns: {table.column_names})"
            )
        self.n = table.num_rows
        codes_by_qi: list[np.ndarray] = []
        self.maps: list[list[np.ndarray]] = []  # per QI, per level: distinct value -> gen code
        self.labels: list[list[list[str]]] = []  # per QI, per level: gen code -> string
        self.cards: list[list[int]] = []
        counts = []
        for name in self.qis:
            h = hierarchies[name]
            codes, distinct = _encode(table.column(name))
            rows = h.rows_of(distinct, column=name)
            maps, labels, cards = [], [], []
            for level in range(h.depth):
                col = h.column(level)
                gmap, glabels = _dense_codes([col[r] for r in rows.tolist()])
                maps.append(gmap)
                labels.append(glabels)
                cards.append(max(len(glabels), 1))
            codes_by_qi.append(codes)
            self.maps.append(maps)
            self.labels.append(labels)
            self.cards.append(cards)
            counts.append(np.bincount(codes, minlength=len(distinct)))
        self.stats = QIStats(
            names=self.qis,
            n=self.n,
            counts=tuple(counts),
            maps=tuple(tuple(m) for m in self.maps),
            cards=tuple(tuple(c) for c in self.cards),
        )
        cols = list(codes_by_qi)
        radices = [len(c) for c in counts]
        self.sens_bits = 0
        self.n_sens = 0
        if sensitive is not None:
            sens, sdistinct = _encode(table.column(sensitive))
            self.n_sens = len(sdistinct)
            # A power-of-two radix lets the class key be recovered from a group key by a shift.
            self.sens_bits = max(len(sdistinct) - 1, 1).bit_length()
            cols.append(sens)
            radices.append(1 << self.sens_bits)
        key, span, _ = _combine(cols, radices, self.n)
        first, self.base_of_row = _group_rows(key, span)
        u = len(first)
        self.base = _Groups(
            rep=np.arange(u, dtype=np.int64),
            size=np.bincount(self.base_of_row, minlength=u).astype(np.int64),
            levels=(0,) * len(self.qis),
        )
        self._base_codes = [c[first] for c in codes_by_qi]
        self.base_sens = cols[-1][first] if sensitive is not None else None
        self._xlogx: np.ndarray | None = None
        # Generalized codes of every base group at every level, if that fits a memory budget.
        cells = len(first) * sum(len(m) for m in self.maps)
        self._gen = (
            [[m[bc] for m in maps] for maps, bc in zip(self.maps, self._base_codes, strict=True)]
            if cells * 8 <= _GEN_BUDGET_BYTES
            else None
        )

    def xlogx(self) -> np.ndarray:
        """x * ln(x) for x = 0..n (0 for x = 0), for entropy-l-diversity."""
        if self._xlogx is None:
            x = np.arange(self.n + 1, dtype=np.float64)
            self._xlogx = x * np.log(np.maximum(x, 1.0))
        return self._xlogx

    def gen_codes(self, qi: int, level: int, rep: np.ndarray | None) -> np.ndarray:
        """Generalized codes of QI `qi` at `level` for the base groups `rep` (None: all)."""
        if self._gen is not None:
            return self._gen[qi][level] if rep is None else self._gen[qi][level][rep]
        base = self._base_codes[qi] if rep is None else self._base_codes[qi][rep]
        return self.maps[qi][level][base]


@dataclass(frozen=True)
class _Groups:
    """Groups of a node: distinct generalized QI combinations (with the sensitive value, if any).

    `rep` is one base group per group (any member: all share the node's generalized values, and
    by monotonicity those of every coarser node), `size` its number of records.
    """

    rep: np.ndarray
    size: np.ndarray
    levels: tuple[int, ...]


@dataclass(frozen=True)
class _Criteria:
    k: int
    max_suppressed: int
    l: float | None = None  # noqa: E741 (the l of l-diversity)
    l_kind: Literal["distinct", "entropy"] = "distinct"

    @property
    def monotone(self) -> bool:
        # Entropy-l is monotone under generalization only when nothing may be suppressed.
        return self.l is None or self.l_kind == "distinct" or self.max_suppressed == 0


class _Eval:
    """Equivalence classes of one node, computed from the groups of a specialization (`source`),
    and which classes fail the criteria.

    Each source group gets a mixed-radix key from its generalized codes at this node (radix =
    number of generalized values per QI, so the key space is small high up in the lattice).
    Equal keys form the node's groups: counted with `bincount` when the key space is small,
    else by sorting the keys.
    """

    def __init__(
        self, model: _Model, levels: tuple[int, ...], crit: _Criteria, source: _Groups
    ) -> None:
        self.levels = levels
        self._model = model
        self._source = source
        rep, size = source.rep, source.size
        m = len(rep)
        whole = source is model.base  # rep is 0..u-1: no gathers needed
        cols, radices = [], []
        for i, lv in enumerate(levels):
            card = model.cards[i][lv]
            if card > 1:  # a QI generalized to a single value does not split classes
                cols.append(model.gen_codes(i, lv, None if whole else rep))
                radices.append(card)
        if model.base_sens is not None:
            cols.append(model.base_sens if whole else model.base_sens[rep])
            radices.append(1 << model.sens_bits)
        key, span, _ = _combine(cols, radices, m)
        self._key, self._span = key, span
        self._order: np.ndarray | None = None
        self._gstarts: np.ndarray | None = None
        if span <= max(_DENSE_FACTOR * m, _DENSE_MIN):
            counts = np.bincount(key, weights=size, minlength=span)
            gkey = np.flatnonzero(counts)
            gsize = counts[gkey].astype(np.int64)
        else:
            bits = max(m - 1, 1).bit_length()
            if not _prod_exceeds(span, 1 << bits):
                # Packing the position into the low bits lets a plain (fast, SIMD) sort do
                # what an argsort would.
                packed = (key << bits) | np.arange(m, dtype=np.int64)
                packed.sort()
                order = packed & ((1 << bits) - 1)
                skey = np.right_shift(packed, bits, out=packed)
            else:
                order = np.argsort(key, kind="stable")
                skey = key[order]
            gstarts = _run_starts(skey)
            self._order, self._gstarts = order, gstarts
            gkey = skey[gstarts]
            gsize = _segment_sum(size[order], gstarts)
        self._gkey, self._gsize = gkey, gsize  # both in ascending key order
        self._groups: _Groups | None = None
        self._cstarts: np.ndarray | None = None
        if model.base_sens is not None:
            cstarts = _run_starts(gkey >> model.sens_bits)
            self._cstarts = cstarts
            self.sizes = _segment_sum(gsize, cstarts)
            fail = self.sizes < crit.k
            if crit.l is not None:
                fail |= np.diff(np.append(cstarts, len(gsize))) < math.ceil(crit.l)
                if crit.l_kind == "entropy":
                    # Shannon: entropy >= log l  <=>  sum f ln f <= N (ln N - ln l), as ARX.
                    xlogx = model.xlogx()
                    flogf = _segment_sum(xlogx[gsize], cstarts)
                    bound = xlogx[self.sizes] - self.sizes * math.log(crit.l)
                    fail |= flogf > bound + _ENTROPY_RTOL * np.abs(bound)
        else:
            self.sizes = gsize
            fail = gsize < crit.k
        self.fail = fail
        self.suppressed = int(self.sizes[fail].sum())
        self.anonymous = self.suppressed <= crit.max_suppressed

    @property
    def n_groups(self) -> int:
        return len(self._gkey)

    @property
    def groups(self) -> _Groups:
        if self._groups is None:
            if self._order is not None:
                first = self._order[self._gstarts]
            else:  # first source position of every key (written last-to-first, so first wins)
                pos = np.empty(self._span, dtype=np.int64)
                pos[self._key[::-1]] = np.arange(len(self._key) - 1, -1, -1, dtype=np.int64)
                first = pos[self._gkey]
            small = np.int32 if self._model.n < 2**31 else np.int64  # halves the cache's memory
            self._groups = _Groups(
                rep=self._source.rep[first].astype(small),
                size=self._gsize.astype(small),
                levels=self.levels,
            )
        return self._groups

    @property
    def min_class_size(self) -> int:
        kept = self.sizes[~self.fail]
        return int(kept.min()) if len(kept) else 0

    @property
    def n_classes(self) -> int:
        return int(len(self.sizes) - self.fail.sum())

    def codes(self, qi: int) -> np.ndarray:
        """Generalized code of QI `qi` for every class."""
        rep = self.groups.rep if self._cstarts is None else self.groups.rep[self._cstarts]
        return self._model.gen_codes(qi, self.levels[qi], rep)

    def classes(self) -> Classes:
        return Classes(
            levels=self.levels, sizes=self.sizes, suppressed=self.fail, _codes=self.codes
        )

    def source_failed(self) -> np.ndarray:
        """Per group of the source: is its class suppressed."""
        group = np.searchsorted(self._gkey, self._key)  # keys are unique and ascending
        if self._cstarts is not None:
            group = _run_ids(len(self._gkey), self._cstarts)[group]
        return self.fail[group]


def _segment_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of consecutive runs of `values` beginning at `starts` (sorted, starts[0] == 0)."""
    return np.add.reduceat(values, starts) if len(values) else values


def _run_ids(length: int, starts: np.ndarray) -> np.ndarray:
    """Run number of each position, given the start positions of the runs."""
    mark = np.zeros(length, dtype=np.int64)
    mark[starts] = 1
    return np.cumsum(mark) - 1


def _dense_codes(labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """Codes of labels numbered by first appearance (small lists: a dict beats Arrow here)."""
    index: dict[str, int] = {}
    codes = [index.setdefault(v, len(index)) for v in labels]
    return np.array(codes, dtype=np.int64), list(index)


def _group_rows(key: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Group equal keys: (first row of each group, group of each row), groups in key order."""
    n = len(key)
    bits = max(n - 1, 1).bit_length()
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if _prod_exceeds(span, 1 << bits):
        order = np.argsort(key, kind="stable")
        skey = key[order]
    else:  # pack the row number into the low bits: a plain sort then yields the order
        packed = np.sort((key << bits) | np.arange(n, dtype=np.int64))
        skey, order = packed >> bits, packed & ((1 << bits) - 1)
    starts = _run_starts(skey)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = _run_ids(n, starts)
    return order[starts], inverse


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(([0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1))


def _prod_exceeds(a: int, b: int) -> bool:
    return a * b >= _KEY_LIMIT


def _combine(
    cols: Sequence[np.ndarray], radices: Sequence[int], n: int
) -> tuple[np.ndarray, int, bool]:
    """Mixed-radix key of code columns (first column most significant) -> (key, span, exact).

    All keys are < span. If the span would overflow int64 the partial key is replaced by dense
    ranks (< n) first; `exact` then says the key is no longer a plain mixed-radix number.
    """
    key = np.zeros(n, dtype=np.int64)
    span, exact = 1, True
    for col, radix in zip(cols, radices, strict=True):
        if _prod_exceeds(span, radix):
            key, span, exact = _rank(key), max(n, 1), False
        if span > 1:  # in place: temporaries cost more than the arithmetic here
            np.multiply(key, radix, out=key)
            np.add(key, col, out=key)
        else:
            key = col.astype(np.int64, copy=True)
        span *= radix
    return key, span, exact


def _rank(key: np.ndarray) -> np.ndarray:
    return np.unique(key, return_inverse=True)[1].astype(np.int64).reshape(-1)


# -- result --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KAnonResult:
    """The optimal transformation and what it costs."""

    qis: tuple[str, ...]
    transformation: tuple[int, ...]  # chosen level per QI, in QI order
    information_loss: float
    metric: str
    k: int
    suppression_limit: float
    max_suppressed: int  # floor(suppression_limit * n), as ARX
    suppressed: int  # records suppressed by the chosen transformation
    min_class_size: int  # smallest equivalence class left after suppression
    n_classes: int  # equivalence classes left after suppression
    n_records: int
    nodes_checked: int  # nodes whose equivalence classes were computed
    lattice_size: int
    elapsed: float  # seconds, encoding + search
    l: float | None = None  # noqa: E741
    sensitive: str | None = None
    l_diversity: str = "distinct"
    hierarchies: Mapping[str, Hierarchy] = field(default_factory=dict, repr=False, compare=False)

    @property
    def levels(self) -> dict[str, int]:
        """Chosen generalization level per QI, by column name."""
        return dict(zip(self.qis, self.transformation, strict=True))

    def summary(self) -> str:
        levels = ", ".join(f"{q}={lv}" for q, lv in self.levels.items())
        crit = f"k={self.k}" + (
            f", {self.l_diversity} l={self.l:g} on {self.sensitive}" if self.l else ""
        )
        return (
            f"{crit}, suppression <= {self.suppression_limit:.2%}: levels [{levels}]; "
            f"{self.metric} = {self.information_loss!r}; suppressed {self.suppressed} of "
            f"{self.n_records} records; min class size {self.min_class_size}; "
            f"{self.nodes_checked} of {self.lattice_size} nodes checked in {self.elapsed:.3f} s"
        )


# -- search --------------------------------------------------------------------------------------


def _check_args(
    table: pa.Table,
    hierarchies: Mapping[str, Hierarchy],
    k: int,
    suppression_limit: float,
    l: float | None,  # noqa: E741
    sensitive: str | None,
    l_diversity: str,
) -> None:
    if not hierarchies:
        raise ConfigError("give at least one quasi-identifier with its hierarchy")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if not 0.0 <= suppression_limit <= 1.0:
        raise ConfigError(
            f"suppression limit must be a fraction in [0, 1], got {suppression_limit!r}"
        )
    if l is not None:
        if sensitive is None:
            raise ConfigError("l-diversity needs a sensitive attribute")
        if l < 1:
            raise ConfigError(f"l must be >= 1, got {l!r}")
        if l_diversity not in ("distinct", "entropy"):
            raise ConfigError(f"l_diversity must be 'distinct' or 'entropy', got {l_diversity!r}")
    if sensitive is not None and sensitive in hierarchies:
        raise ConfigError(f"sensitive attribute {sensitive!r} cannot also be a quasi-identifier")
    for name, h in hierarchies.items():
        if not isinstance(h, Hierarchy):
            raise HierarchyError(f"expected a Hierarchy, got {type(h).__name__}", column=name)


def anonymize(
    data: Any,
    hierarchies: Mapping[str, Hierarchy],
    *,
    k: int,
    suppression_limit: float = 0.0,
    metric: Metric | None = None,
    l: float | None = None,  # noqa: E741
    sensitive: str | None = None,
    l_diversity: Literal["distinct", "entropy"] = "distinct",
) -> KAnonResult:
    """Find the transformation (one level per QI) of minimal loss that is k-anonymous.

    `hierarchies` maps each quasi-identifier column to its hierarchy; its order is the QI order.
    A node is anonymous if the records in classes that fail the criteria (size < k; with `l`,
    fewer than l distinct `sensitive` values, or for l_diversity='entropy' entropy < log l) are at
    most floor(suppression_limit * n); those records are then suppressed. `metric` defaults to
    ARX's monotonic non-uniform entropy. Raises NoSolutionError if no node qualifies.
    """
    t0 = time.perf_counter()
    table = _as_table(data)
    _check_args(table, hierarchies, k, suppression_limit, l, sensitive, l_diversity)
    metric = metric or NonUniformEntropy()
    if table.num_rows == 0:
        raise ConfigError("the data has no records: nothing to anonymize")
    model = _Model(table, hierarchies, sensitive if l is not None else None)
    crit = _Criteria(
        k=int(k),
        max_suppressed=math.floor(suppression_limit * model.n),
        l=None if l is None else float(l),
        l_kind=l_diversity,
    )
    lattice = Lattice([len(m) for m in model.maps])
    bound = metric.bind(model.stats)
    if crit.l is not None and model.n_sens < math.ceil(crit.l) and crit.max_suppressed < model.n:
        best, loss, checked = None, math.nan, 0  # no class can hold l distinct values
    else:
        best, loss, checked = _search(model, lattice, bound, crit)
    if best is None:
        raise NoSolutionError(
            f"none of the {lattice.size} transformations is anonymous with k={k}"
            + (f", l={l:g}" if l is not None else "")
            + f" suppressing at most {crit.max_suppressed} of {model.n} records"
        )
    return KAnonResult(
        qis=model.qis,
        transformation=best.levels,
        information_loss=loss,
        metric=metric.name,
        k=crit.k,
        suppression_limit=float(suppression_limit),
        max_suppressed=crit.max_suppressed,
        suppressed=best.suppressed,
        min_class_size=best.min_class_size,
        n_classes=best.n_classes,
        n_records=model.n,
        nodes_checked=checked,
        lattice_size=lattice.size,
        elapsed=time.perf_counter() - t0,
        l=crit.l,
        sensitive=sensitive if l is not None else None,
        l_diversity=l_diversity,
        hierarchies=dict(hierarchies),
    )


def _search(
    model: _Model, lattice: Lattice, bound: Any, crit: _Criteria
) -> tuple[_Eval | None, float, int]:
    """Best-first over ascending lower bound; returns (best node's classes, loss, nodes checked)."""
    nodes = lattice.nodes()
    lower = bound.lower_bounds(nodes)
    # Ties: fewer generalization steps first, then node number (deterministic).
    order = np.lexsort((np.arange(lattice.size), nodes.sum(axis=1, dtype=np.int64), lower))
    status = np.zeros(lattice.shape, dtype=np.int8)
    flat = status.reshape(-1)
    depths = lattice.depths
    strides = [st // flat.itemsize for st in status.strides]
    losses: dict[int, float] = {}  # data-dependent loss of anonymous nodes evaluated
    cache = _GroupCache(len(depths), model.base)
    checked = 0

    def levels_of(idx: int) -> tuple[int, ...]:
        return tuple((idx // st) % d for st, d in zip(strides, depths, strict=True))

    def evaluate(idx: int) -> _Eval:
        nonlocal checked
        checked += 1
        levels = levels_of(idx)
        ev = _Eval(model, levels, crit, cache.source(levels))
        if cache.wants(ev.n_groups):
            cache.add(levels, ev.groups)
        if ev.anonymous:
            if not bound.exact:
                losses[idx] = bound.loss(ev.classes())
            if crit.monotone:
                status[lattice.generalizations(levels)] = _ANON
            else:
                flat[idx] = _ANON
        elif crit.monotone:
            status[lattice.specializations(levels)] = _NOT
        else:
            flat[idx] = _NOT
        return ev

    def is_anonymous(idx: int) -> bool:
        st = flat[idx]
        if st == _UNKNOWN:
            return evaluate(idx).anonymous
        return bool(st == _ANON)

    def decide(idx: int) -> None:
        # Path of generalizations upward from the node, always taking the cheapest (lowest
        # bound) successor whose status is unknown; it ends where every successor is known
        # anonymous (or at the top). Anonymity is monotone along the path, so a binary search
        # finds its lowest anonymous node; each check also tags a whole up- or down-set.
        path = [idx]
        current = idx
        while True:
            best_next, best_lb = -1, math.inf
            for lv, st, d in zip(levels_of(current), strides, depths, strict=True):
                j = current + st
                if lv + 1 < d and flat[j] == _UNKNOWN and lower[j] < best_lb:
                    best_next, best_lb = j, lower[j]
            if best_next < 0:
                break
            path.append(best_next)
            current = best_next
        lo, hi = 0, len(path)
        while lo < hi:
            mid = (lo + hi) // 2
            if is_anonymous(path[mid]):
                hi = mid
            else:
                lo = mid + 1

    best_idx, best_loss = -1, math.inf
    pos, chunk = 0, 512
    while pos < lattice.size:
        # Next node in bound order that is not known non-anonymous (vectorized skip).
        block = order[pos : pos + chunk]
        live = np.flatnonzero(flat[block] != _NOT)
        if not len(live):
            if lower[block[-1]] >= best_loss:
                break
            pos += len(block)
            continue
        pos += int(live[0]) + 1
        idx = int(block[live[0]])
        if lower[idx] >= best_loss:
            break
        if flat[idx] == _UNKNOWN:
            if crit.monotone:
                decide(idx)
            else:
                evaluate(idx)
            if flat[idx] != _ANON:
                continue
        if bound.exact:
            loss = float(lower[idx])
        else:
            if idx not in losses:  # tagged anonymous by a specialization
                evaluate(idx)
            loss = losses[idx]
        if loss < best_loss:
            best_idx, best_loss = idx, loss
    if best_idx < 0:
        return None, math.nan, checked
    # The chosen node's classes again, for the statistics (not counted as a check).
    levels = levels_of(best_idx)
    return _Eval(model, levels, crit, cache.source(levels)), best_loss, checked


class _GroupCache:
    """Groups of evaluated nodes, to compute a node from its smallest cached specialization.

    Bounded by the total number of groups kept; the oldest entries go first. The base groups
    (the bottom node) are always available.
    """

    def __init__(self, q: int, base: _Groups) -> None:
        self._base = base
        self._levels = np.zeros((64, q), dtype=np.int16)
        self._sizes = np.zeros(64, dtype=np.int64)
        self._groups: list[_Groups | None] = []
        self._total = 0
        self._oldest = 0

    def source(self, levels: Sequence[int]) -> _Groups:
        n = len(self._groups)
        if n:
            ok = (self._levels[:n] <= np.asarray(levels, dtype=np.int16)).all(axis=1)
            cand = np.flatnonzero(ok)
            if len(cand):
                best = int(cand[np.argmin(self._sizes[cand])])
                found = self._groups[best]
                if found is not None:
                    return found
        return self._base

    def wants(self, m: int) -> bool:
        return m < len(self._base.rep)  # no smaller than the base: nothing to gain

    def add(self, levels: Sequence[int], groups: _Groups) -> None:
        m = len(groups.rep)
        n = len(self._groups)
        if n == len(self._sizes):
            self._levels = np.concatenate([self._levels, np.zeros_like(self._levels)])
            self._sizes = np.concatenate([self._sizes, np.zeros_like(self._sizes)])
        self._levels[n] = levels
        self._sizes[n] = m
        self._groups.append(groups)
        self._total += m
        while self._total > _CACHE_BUDGET and self._oldest < n:
            # Forget the oldest entry; a huge size keeps it from being chosen again.
            self._total -= int(self._sizes[self._oldest])
            self._sizes[self._oldest] = np.iinfo(np.int64).max
            self._groups[self._oldest] = None
            self._oldest += 1


# -- applying and measuring ----------------------------------------------------------------------


def apply_transformation(
    data: Any,
    result: KAnonResult,
    *,
    suppressed: Literal["remove", "mask"] = "remove",
    mask: str = "*",
) -> pa.Table:
    """Generalize the QI columns of `data` to `result`'s levels and suppress failing classes.

    QI columns become strings (the hierarchy values); other columns are unchanged. Records in
    classes that fail the criteria are removed (default) or keep their row with every QI set to
    `mask` (then those records form one more class, which may be smaller than k).
    """
    if suppressed not in ("remove", "mask"):
        raise ConfigError(f"suppressed must be 'remove' or 'mask', got {suppressed!r}")
    table = _as_table(data)
    model = _Model(table, result.hierarchies, result.sensitive)
    crit = _Criteria(
        k=result.k,
        max_suppressed=table.num_rows,
        l=result.l,
        l_kind="entropy" if result.l_diversity == "entropy" else "distinct",
    )
    ev = _Eval(model, result.transformation, crit, model.base)
    failed = ev.source_failed()[model.base_of_row]
    out = table
    for i, (name, lv) in enumerate(zip(model.qis, result.transformation, strict=True)):
        codes = model.maps[i][lv][_encode(table.column(name))[0]]
        values = pc.take(pa.array(model.labels[i][lv], pa.string()), pa.array(codes))
        if suppressed == "mask" and failed.any():
            values = pc.if_else(pa.array(failed), pa.scalar(mask, pa.string()), values)
        out = out.set_column(out.schema.get_field_index(name), name, values)
    if suppressed == "remove" and failed.any():
        out = out.filter(pa.array(~failed))
    return out


def _group_keys(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    cols, radices = [], []
    for name in columns:
        codes, distinct = _encode(table.column(name))
        cols.append(codes)
        radices.append(max(len(distinct), 1))
    return _combine(cols, radices, table.num_rows)[0]


def class_sizes(data: Any, qis: Sequence[str]) -> np.ndarray:
    """Sizes of the equivalence classes of `data` over the columns `qis` (values compared as
    canonical strings)."""
    table = _as_table(data)
    s = np.sort(_group_keys(table, qis))
    return np.diff(np.append(_run_starts(s), len(s)))


def measure_k(data: Any, qis: Sequence[str]) -> int:
    """The k for which `data` is k-anonymous over `qis`: its smallest class (0 if empty)."""
    sizes = class_sizes(data, qis)
    return int(sizes.min()) if len(sizes) else 0


def measure_l(data: Any, qis: Sequence[str], sensitive: str) -> int:
    """Distinct l-diversity of `data`: fewest distinct `sensitive` values in any class."""
    table = _as_table(data)
    if table.num_rows == 0:
        return 0
    key = _rank(_group_keys(table, qis))
    scodes, sdistinct = _encode(table.column(sensitive))
    n_sens = max(len(sdistinct), 1)
    pair = np.sort(key * n_sens + scodes)
    pkeys = pair[_run_starts(pair)] // n_sens
    return int(np.diff(np.append(_run_starts(pkeys), len(pkeys))).min())
