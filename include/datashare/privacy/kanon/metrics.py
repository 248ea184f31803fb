"""Information-loss metrics for full-domain generalization with record suppression.

A metric is bound to one data set (`Metric.bind`) and then gives, for every lattice node, a cheap
lower bound computed without touching the records (vectorized over all nodes), and the exact loss
of a node from its equivalence classes. When the bound is exact (`BoundMetric.exact`) the search
never needs the classes to know the loss, only to know whether the node is anonymous.

`NonUniformEntropy()` reproduces ARX's "non-uniform entropy", monotonic variant, as created by
`Metric.createPrecomputedEntropyMetric(0.1d, true)` / `createEntropyMetric(true)` (classes
`MetricMDNUEntropyPotentiallyPrecomputed` -> `MetricMDNUEntropy`, which inherits its loss from
`MetricMDNUEntropyPrecomputed`), including its floating-point order and its rounding, so the number
is bit-identical to what ARX prints. See docs/kanon.md for the definitions.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BoundMetric",
    "Classes",
    "Discernibility",
    "Metric",
    "NonUniformEntropy",
    "Precision",
    "QIStats",
    "metric_by_name",
]

_LN2 = math.log(2.0)
# ARX compares losses after truncating to 10 decimal digits (Metric.round: floor(x*1e10)/1e10).
_ARX_FACTOR = 10.0**10


def _arx_round(x: float) -> float:
    return math.floor(x * _ARX_FACTOR) / _ARX_FACTOR


def _log2(x: float) -> float:
    # Same expression as ARX (Math.log(x) / Math.log(2)), not math.log2, to get the same bits.
    return math.log(x) / _LN2


@dataclass(frozen=True)
class QIStats:
    """What metrics may know about the data, computed once per run.

    Distinct values of QI i are numbered 0..d_i-1 in order of first appearance in the data (the
    order in which ARX's dictionary numbers them, which fixes its summation order).
    """

    names: tuple[str, ...]
    n: int
    counts: tuple[np.ndarray, ...]  # per QI: number of records per distinct value
    maps: tuple[
        tuple[np.ndarray, ...], ...
    ]  # per QI, per level: distinct value -> generalized code
    cards: tuple[tuple[int, ...], ...]  # per QI, per level: number of generalized codes

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(m) for m in self.maps)


@dataclass(frozen=True)
class Classes:
    """The equivalence classes of one node after deciding which classes are suppressed."""

    levels: tuple[int, ...]
    sizes: np.ndarray  # records per class
    suppressed: np.ndarray  # bool per class: fails the privacy criteria, records removed
    _codes: Callable[[int], np.ndarray]

    def codes(self, qi: int) -> np.ndarray:
        """Generalized code (at this node's level) of QI `qi` for every class."""
        return self._codes(qi)

    @property
    def n_suppressed(self) -> int:
        return int(self.sizes[self.suppressed].sum())


class BoundMetric(ABC):
    """A metric bound to one data set."""

    #: True when `lower_bounds` is the loss itself (no classes needed to know the loss).
    exact: bool = False

    @abstractmethod
    def lower_bounds(self, nodes: np.ndarray) -> np.ndarray:
        """Lower bound of the loss of every node ((N, q) levels -> (N,) float64)."""

    @abstractmethod
    def loss(self, classes: Classes) -> float:
        """Loss of one node given its classes."""


class Metric(ABC):
    """A loss function to minimize; `bind` prepares it for one data set."""

    name: str = "metric"

    @abstractmethod
    def bind(self, stats: QIStats) -> BoundMetric: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _sum_in_order(tables: Sequence[np.ndarray], nodes: np.ndarray) -> np.ndarray:
    # Add per-QI terms column by column starting from 0.0: the order ARX's SUM aggregate uses.
    acc = np.zeros(len(nodes), dtype=np.float64)
    for i, table in enumerate(tables):
        acc = acc + table[nodes[:, i]]
    return acc


class NonUniformEntropy(Metric):
    """ARX's non-uniform entropy (sum aggregate, attribute weights 1).

    Per QI, with a(v) the number of records holding original value v and b(g) the number holding
    generalized value g at the node's level: loss = -sum_v a(v) * log2(a(v) / b(g(v))), i.e. the
    bits needed to recover each record's original value from its generalized one; the node's loss
    is the sum over QIs. Each per-QI term is truncated to 10 decimals as ARX does.

    monotonic=True (ARX `createEntropyMetric(true)`, used by ARX's adult tests): suppressed
    records count as if they were only generalized, so suppression costs nothing extra and the
    loss depends on the levels only. monotonic=False (ARX `MetricMDNUNMEntropy`): additionally,
    per QI, the records suppressed are charged -sum_g c(g) * log2(c(g) / S) over the generalized
    values g they hold (c(g) of them, S suppressed in total), weighted by the suppression factor.
    gs_factor weighs generalization against suppression exactly as ARX's gsFactor (0.5: equal).
    """

    def __init__(self, monotonic: bool = True, gs_factor: float = 0.5) -> None:
        if not 0.0 <= gs_factor <= 1.0:
            raise ValueError("gs_factor must be in [0, 1]")
        self.monotonic = monotonic
        self.gs_factor = gs_factor
        self.name = "non-uniform entropy" + ("" if monotonic else " (non-monotonic)")

    def __repr__(self) -> str:
        return f"NonUniformEntropy(monotonic={self.monotonic}, gs_factor={self.gs_factor})"

    def bind(self, stats: QIStats) -> BoundMetric:
        return _BoundEntropy(stats, self.monotonic, self.gs_factor)


class _BoundEntropy(BoundMetric):
    def __init__(self, stats: QIStats, monotonic: bool, gs: float) -> None:
        self.exact = monotonic
        self.g_factor = 1.0 if gs <= 0.5 else 1.0 - 2.0 * (gs - 0.5)
        self.s_factor = 2.0 * gs if gs < 0.5 else 1.0
        # raw[i][level]: generalization part before sign switch and rounding (ARX's cache).
        self.raw: list[list[float]] = []
        for counts, maps in zip(stats.counts, stats.maps, strict=True):
            a_list = counts.astype(np.float64).tolist()
            per_level = []
            for gmap in maps:
                b_of_group = np.bincount(gmap, weights=counts, minlength=int(gmap.max()) + 1)
                b_list = b_of_group[gmap].tolist()
                value = 0.0
                for a, b in zip(a_list, b_list, strict=True):  # distinct values, not records
                    if a != 0.0:
                        value += a * _log2(a / b)
                per_level.append(value * self.g_factor)
            self.raw.append(per_level)
        self.tables = [
            np.array([_arx_round(-v) if v != 0.0 else v for v in per_level], dtype=np.float64)
            for per_level in self.raw
        ]

    def lower_bounds(self, nodes: np.ndarray) -> np.ndarray:
        return _sum_in_order(self.tables, nodes)

    def loss(self, classes: Classes) -> float:
        levels = classes.levels
        if self.exact or not classes.suppressed.any():
            terms = [float(t[lv]) for t, lv in zip(self.tables, levels, strict=True)]
        else:
            sup_sizes = classes.sizes[classes.suppressed]
            total = float(sup_sizes.sum())
            terms = []
            for i, lv in enumerate(levels):
                value = self.raw[i][lv]
                codes = classes.codes(i)[classes.suppressed]
                per_value = np.bincount(codes, weights=sup_sizes)
                for c in per_value[per_value > 0].tolist():
                    value += c * _log2(c / total) * self.s_factor
                terms.append(_arx_round(-value) if value != 0.0 else value)
        acc = 0.0
        for t in terms:
            acc += t
        return acc


class Precision(Metric):
    """Generalization intensity (Sweeney's precision), in [0, 1].

    Mean over QIs of level / maximum level (a QI without generalization levels contributes 0).
    monotonic=True: suppressed records count like generalized ones (loss depends on levels only).
    monotonic=False: suppressed records count as fully generalized (1 per QI), averaged over
    records. Not an ARX-verified number; useful to compare transformations.
    """

    name = "precision"

    def __init__(self, monotonic: bool = True) -> None:
        self.monotonic = monotonic

    def __repr__(self) -> str:
        return f"Precision(monotonic={self.monotonic})"

    def bind(self, stats: QIStats) -> BoundMetric:
        return _BoundPrecision(stats, self.monotonic)


class _BoundPrecision(BoundMetric):
    def __init__(self, stats: QIStats, monotonic: bool) -> None:
        self.exact = monotonic
        self.n = stats.n
        q = len(stats.depths)
        self.tables = [
            np.arange(d, dtype=np.float64) / ((d - 1) * q) if d > 1 else np.zeros(1)
            for d in stats.depths
        ]
        self.q = q

    def lower_bounds(self, nodes: np.ndarray) -> np.ndarray:
        return _sum_in_order(self.tables, nodes)

    def loss(self, classes: Classes) -> float:
        base = sum(float(t[lv]) for t, lv in zip(self.tables, classes.levels, strict=True))
        if self.exact or self.n == 0:
            return base
        s = classes.n_suppressed / self.n
        return (1.0 - s) * base + s


class Discernibility(Metric):
    """Discernibility (DM*): sum of squared class sizes, each suppressed record costs n.

    Lower bound without the data: with C = min(n, product of the level cardinalities) possible
    classes, DM* >= n^2 / C (C >= 2) or 3n^2/4 (C = 1), by Cauchy-Schwarz. Not ARX-verified.
    """

    name = "discernibility"

    def bind(self, stats: QIStats) -> BoundMetric:
        return _BoundDiscernibility(stats)


class _BoundDiscernibility(BoundMetric):
    exact = False

    def __init__(self, stats: QIStats) -> None:
        self.n = stats.n
        self.log_cards = [np.log(np.asarray(c, dtype=np.float64)) for c in stats.cards]

    def lower_bounds(self, nodes: np.ndarray) -> np.ndarray:
        n = float(self.n)
        log_c = _sum_in_order(self.log_cards, nodes)
        c = np.minimum(np.exp(log_c), max(n, 1.0))
        return np.where(c >= 2.0, n * n / c, 0.75 * n * n) * (1 - 1e-12)

    def loss(self, classes: Classes) -> float:
        kept = classes.sizes[~classes.suppressed].astype(np.float64)
        return float((kept * kept).sum()) + float(classes.n_suppressed) * float(self.n)


_BY_NAME: dict[str, Callable[[], Metric]] = {
    "entropy": NonUniformEntropy,
    "entropy-nm": lambda: NonUniformEntropy(monotonic=False),
    "precision": Precision,
    "precision-nm": lambda: Precision(monotonic=False),
    "discernibility": Discernibility,
}


def metric_by_name(name: str) -> Metric:
    """'entropy' (default, ARX monotonic), 'entropy-nm', 'precision', 'precision-nm',
    'discernibility'."""
    try:
        return _BY_NAME[name]()
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(_BY_NAME)}") from None
