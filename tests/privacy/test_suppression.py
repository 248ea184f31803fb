"""Primary small-cell suppression of aggregates."""

from __future__ import annotations

import pyarrow as pa

from datashare.privacy.suppression import suppress_small_cells


def test_small_counts_and_their_measures_are_suppressed() -> None:
    t = pa.table(
        {
            "g": ["a", "b", "c", "d"],
            "students": [25, 9, 1, 10],
            "rate": [0.5, 0.2, 1.0, 0.3],
            "__n_rate": [25, 9, 1, 4],  # d: only 4 students contribute to the rate
        }
    )
    out, stats = suppress_small_cells(
        t, count="students", min_cell=10, measures={"rate": "__n_rate"}
    )
    assert out["students"].to_pylist() == [25, None, None, 10]
    assert out["rate"].to_pylist() == [0.5, None, None, None]
    assert out["suppressed"].to_pylist() == [False, True, True, False]
    assert stats == {"cells": 4, "suppressed_cells": 2, "suppressed_measure_values": 3}


def test_zero_is_not_a_small_cell() -> None:
    t = pa.table({"students": [0, 10]})
    out, stats = suppress_small_cells(t, count="students", min_cell=10, measures={})
    assert out["students"].to_pylist() == [0, 10]
    assert stats["suppressed_cells"] == 0
