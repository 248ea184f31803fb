"""The generalization lattice: one node per combination of levels (one level per QI).

Nodes are numbered in C order of the box [0, depth_0) x ... x [0, depth_q-1), so per-node state
lives in flat numpy arrays and the up-set / down-set of a node are array slices (boxes), which
makes tagging by monotonicity a single vectorized assignment.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["MAX_LATTICE_SIZE", "Lattice"]

#: Refuse lattices whose per-node arrays would not fit comfortably in memory.
MAX_LATTICE_SIZE = 20_000_000


class Lattice:
    """Lattice over QIs with `depths[i]` levels each (levels 0..depths[i]-1)."""

    __slots__ = ("depths", "shape", "size")

    def __init__(self, depths: Sequence[int]) -> None:
        if not depths or any(int(d) < 1 for d in depths):
            raise ValueError(f"every QI needs at least one level, got depths {list(depths)}")
        self.depths = tuple(int(d) for d in depths)
        self.shape = self.depths
        self.size = math.prod(self.depths)
        if self.size > MAX_LATTICE_SIZE:
            raise ValueError(
                f"lattice has {self.size} nodes (> {MAX_LATTICE_SIZE}): use fewer QIs or"
                " shallower hierarchies"
            )

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"Lattice(depths={self.depths}, size={self.size})"

    @property
    def height(self) -> int:
        """Levels from bottom to top (sum of maximum levels)."""
        return sum(d - 1 for d in self.depths)

    @property
    def bottom(self) -> tuple[int, ...]:
        return (0,) * len(self.depths)

    @property
    def top(self) -> tuple[int, ...]:
        return tuple(d - 1 for d in self.depths)

    def nodes(self) -> np.ndarray:
        """(size, q) array: row i holds the levels of node i."""
        dtype = np.int8 if max(self.depths) < 127 else np.int32
        grids = np.indices(self.shape, dtype=dtype)
        return grids.reshape(len(self.depths), -1).T

    def index(self, levels: Sequence[int]) -> int:
        return int(np.ravel_multi_index(tuple(levels), self.shape))

    def levels(self, index: int) -> tuple[int, ...]:
        return tuple(int(x) for x in np.unravel_index(index, self.shape))

    def generalizations(self, levels: Sequence[int]) -> tuple[slice, ...]:
        """Slice (into an array of `shape`) selecting the node and all its generalizations."""
        return tuple(slice(int(lv), None) for lv in levels)

    def specializations(self, levels: Sequence[int]) -> tuple[slice, ...]:
        """Slice selecting the node and all its specializations."""
        return tuple(slice(0, int(lv) + 1) for lv in levels)

    def successors(self, levels: Sequence[int]) -> Iterator[tuple[int, ...]]:
        """Direct generalizations: one QI one level up."""
        for i, (lv, d) in enumerate(zip(levels, self.depths, strict=True)):
            if lv + 1 < d:
                yield (*levels[:i], lv + 1, *levels[i + 1 :])

    def predecessors(self, levels: Sequence[int]) -> Iterator[tuple[int, ...]]:
        """Direct specializations: one QI one level down."""
        for i, lv in enumerate(levels):
            if lv > 0:
                yield (*levels[:i], lv - 1, *levels[i + 1 :])
