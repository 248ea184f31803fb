"""A synthetic SIS replica in SQLite, for tests and demos of the SQL source adapter.

`load_sqlite` loads a synthetic CSV drop into one table per canonical dataset (canonical column
names and types, the canonical key as primary key) plus the `updated_at` watermark column every
incremental extract needs. `apply_changes` then simulates a night in the SIS: some rows updated,
some inserted, some deleted, the changed rows stamped with a later `updated_at`. Both are
deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from datashare.sources.canonical import Dataset, model
from datashare.sources.csv_drop import read_batches, read_drop
from datashare.sources.sql import DEFAULT_WATERMARK

__all__ = ["apply_changes", "load_sqlite"]

_SA_TYPES: dict[str, type[sa.types.TypeEngine]] = {
    "string": sa.String,
    "int16": sa.SmallInteger,
    "int32": sa.Integer,
    "int64": sa.BigInteger,
    "float64": sa.Float,
    "bool": sa.Boolean,
    "date": sa.Date,
}
_INSERT_CHUNK = 10_000
# Columns an update may change without breaking a code set or a reference, by preference.
_UPDATABLE = ("home_address", "address", "exit_date", "end_date", "mark", "offense_code")


def _engine(db_path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{db_path}")


def _timestamp(value: str) -> datetime:
    """A naive UTC datetime, as the replica stores its watermark."""
    ts = datetime.fromisoformat(value)
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _table(metadata: sa.MetaData, ds: Dataset) -> sa.Table:
    cols = [
        sa.Column(
            c.name, _SA_TYPES[c.type_name](), primary_key=c.name in ds.key, nullable=not c.required
        )
        for c in ds.columns
    ]
    cols.append(sa.Column(DEFAULT_WATERMARK, sa.DateTime(), nullable=False, index=True))
    return sa.Table(ds.name, metadata, *cols)


def load_sqlite(
    export_dir: Path, db_path: Path, updated_at: str, *, datasets: Iterable[str] | None = None
) -> dict[str, int]:
    """Load the drop in `export_dir` into SQLite `db_path`, every row stamped `updated_at`.

    Tables are recreated, so loading twice gives the same database. Returns rows per table.
    """
    names = set(datasets) if datasets is not None else set(model().datasets)
    stamp = _timestamp(updated_at)
    metadata = sa.MetaData()
    tables = {n: _table(metadata, model()[n]) for n in sorted(names)}
    engine = _engine(db_path)
    rows: dict[str, int] = {}
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
        with engine.begin() as conn:
            for f in read_drop(export_dir):
                if f.dataset not in tables:
                    continue
                rows[f.dataset] = 0
                for batch in read_batches(f):
                    records = batch.to_pylist()
                    for r in records:
                        r[DEFAULT_WATERMARK] = stamp
                    for i in range(0, len(records), _INSERT_CHUNK):
                        conn.execute(tables[f.dataset].insert(), records[i : i + _INSERT_CHUNK])
                    rows[f.dataset] += len(records)
    finally:
        engine.dispose()
    return rows


def _changed_value(ds: Dataset, i: int) -> tuple[str, Any] | None:
    """The column the i-th update of `ds` changes, and its new value; None: watermark only."""
    for name in _UPDATABLE:
        if name in ds.column_names:
            if ds.column(name).type_name == "date":
                return name, date(2026, 6, 30)
            return name, f"changed {i + 1}"
    return None


def _where(table: sa.Table, ds: Dataset, key: tuple) -> sa.ColumnElement[bool]:
    return sa.and_(*[table.c[k] == v for k, v in zip(ds.key, key, strict=True)])


def apply_changes(
    db_path: Path,
    *,
    updated_at: str,
    seed: int = 0,
    updates: int = 5,
    inserts: int = 3,
    deletes: int = 2,
    datasets: Iterable[str] | None = None,
) -> dict[str, dict[str, int]]:
    """Simulate a night of SIS changes in every canonical table of `db_path` (or `datasets`).

    Updates change one free-text or date column, inserts copy an existing row under a new key
    (its first string key column suffixed), deletes remove rows; updated and inserted rows get
    `updated_at`. Returns, per table, how many rows were updated, inserted and deleted.
    """
    stamp = _timestamp(updated_at)
    engine = _engine(db_path)
    metadata = sa.MetaData()
    metadata.reflect(engine)
    names = sorted(datasets) if datasets is not None else sorted(model().datasets)
    out = {}
    try:
        with engine.begin() as conn:
            for name in names:
                if name in metadata.tables:
                    rng = random.Random(f"{seed}:{name}")
                    table, ds = metadata.tables[name], model()[name]
                    out[name] = _change_table(
                        conn, table, ds, rng, stamp, (updates, inserts, deletes)
                    )
    finally:
        engine.dispose()
    return out


def _change_table(
    conn: sa.Connection,
    table: sa.Table,
    ds: Dataset,
    rng: random.Random,
    stamp: datetime,
    counts: tuple[int, int, int],
) -> dict[str, int]:
    n_upd, n_ins, n_del = counts
    order = [table.c[k] for k in ds.key]
    keys = [tuple(r) for r in conn.execute(sa.select(*order).order_by(*order))]
    picked = rng.sample(keys, min(len(keys), n_upd + n_del))
    to_update, to_delete = picked[:n_upd], picked[n_upd:]
    for i, key in enumerate(to_update):
        values: dict[str, Any] = {DEFAULT_WATERMARK: stamp}
        if (change := _changed_value(ds, i)) is not None:
            values[change[0]] = change[1]
        conn.execute(table.update().where(_where(table, ds, key)).values(**values))
    inserted = _insert_copies(conn, table, ds, rng, keys, n_ins, stamp)
    for key in to_delete:
        conn.execute(table.delete().where(_where(table, ds, key)))
    return {"updated": len(to_update), "inserted": inserted, "deleted": len(to_delete)}


def _insert_copies(
    conn: sa.Connection,
    table: sa.Table,
    ds: Dataset,
    rng: random.Random,
    keys: list[tuple],
    n: int,
    stamp: datetime,
) -> int:
    text_key = next((k for k in ds.key if ds.column(k).type_name == "string"), None)
    if text_key is None or not keys:
        return 0
    done = 0
    for i, key in enumerate(rng.sample(keys, min(len(keys), n))):
        row = dict(conn.execute(sa.select(table).where(_where(table, ds, key))).one()._mapping)
        row[text_key] = f"{row[text_key]}N{i + 1}"
        row[DEFAULT_WATERMARK] = stamp
        conn.execute(table.insert().values(**row))
        done += 1
    return done
