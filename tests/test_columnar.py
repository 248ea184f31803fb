"""Column-wise sort: the same order as pyarrow's own sort_by, on every key type the model has."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from datashare.columnar import dictionary_codes, sort_by_key, sort_indices


def _table(n: int = 5000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 10**6, size=(5, n))

    def nulls(col: np.ndarray, every: int) -> np.ndarray:
        return col % every == 0

    return pa.table(
        {
            "s": pa.array([f"k{v % 300}" for v in x[0]], mask=nulls(x[0], 97)),
            "d": pa.array(
                [dt.date(2025, 9, 1) + dt.timedelta(int(v % 200)) for v in x[1]],
                mask=nulls(x[1], 89),
            ),
            "i": pa.array(x[2] - 500_000, pa.int64(), mask=nulls(x[2], 83)),
            "wide": pa.array(x[3] * 10**9, pa.int64()),  # range too wide for offsets: ranked
            "ts": pa.array(x[4] * 1_000_000, pa.timestamp("us"), mask=nulls(x[4], 81)),
            "f": pa.array(rng.normal(size=n)),
            "b": pa.array(x[0] % 2 == 0),
        }
    )


@pytest.mark.parametrize(
    "keys",
    [["s", "d"], ["d", "s", "i"], ["i"], ["ts", "s"], ["f"], ["b", "wide"], ["s", "i", "ts", "d"]],
)
def test_same_order_as_pyarrow(keys: list[str]) -> None:
    t = _table()
    chunked = pa.concat_tables([t.slice(0, 1234), t.slice(1234)])  # several chunks
    expected = t.sort_by([(k, "ascending") for k in keys]).combine_chunks()
    assert sort_by_key(chunked, keys).equals(expected)


def test_ties_keep_input_order() -> None:
    t = pa.table({"k": ["b", "a", "b", "a"], "row": [0, 1, 2, 3]})
    assert sort_by_key(t, ["k"]).column("row").to_pylist() == [1, 3, 0, 2]


def test_already_sorted_is_identity_and_empty_is_fine() -> None:
    t = _table().sort_by([("s", "ascending"), ("d", "ascending")])
    assert sort_indices(t, ["s", "d"]).tolist() == list(range(t.num_rows))
    assert sort_by_key(t, ["s", "d"]).equals(t.combine_chunks())
    empty = t.slice(0, 0)
    assert sort_by_key(empty, ["s", "d"]).num_rows == 0


def test_many_keys_beyond_int64_are_renumbered_in_order() -> None:
    n = 3000
    rng = np.random.default_rng(3)
    cols = {f"c{i}": pa.array([f"v{v}" for v in rng.integers(0, 2000, n)]) for i in range(7)}
    t = pa.table(cols)  # 2000^7 > 2^62: the radix key must be renumbered on the way
    keys = list(cols)
    expected = t.sort_by([(k, "ascending") for k in keys]).combine_chunks()
    assert sort_by_key(t, keys).equals(expected)


def test_dictionary_codes_of_an_empty_chunked_column() -> None:
    col = pa.chunked_array([], pa.string())
    assert len(dictionary_codes(col)) == 0
