"""Source adapter: a SQL database (the SIS replica), read incrementally by watermark.

`location` is an SQLAlchemy URL (`sqlite:////path/sis.db`; in production a PostgreSQL or SQL
Server read replica), or `env:NAME` to read that URL from environment variable NAME so that the
location recorded in plans and logs carries no credential. A mapping (YAML or JSON, see
`load_mapping`) says which table or query and which columns feed each canonical dataset, and
which column is the watermark; the default is a table named like the dataset, canonical column
names and a timestamp watermark `updated_at`.

One night, for each mapped dataset:

- first night (no previous state, or the mapping changed): every row with
  `watermark <= as_of`;
- later nights: only rows with `previous watermark < watermark <= as_of` (the delta), upserted by
  canonical key into the previous night's staged table; then a key-only query gives the rows
  that still exist, and rows no longer in the source are dropped (deletions);
- the output is sorted by key, so re-running a night (same `as_of`, same previous state) yields
  exactly the same rows; `state` holds the new watermarks (the largest one read, never beyond
  `as_of`) for the pipeline to store after a successful night.

Reads use SQLAlchemy Core with bound parameters, in chunks (`yield_per`), into Arrow arrays of
the canonical types; merging is column-wise (Arrow joins). Identifiers from the mapping are
validated and quoted by SQLAlchemy, never formatted into SQL text. The raw zone keeps, for audit,
each dataset's delta as Parquet and a JSON of the query bounds. The URL's password never appears
in errors, raw files, state or logs (`redact_url`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import URL, make_url

from datashare.columnar import sort_by_key
from datashare.errors import ConfigError, SourceError
from datashare.sources.base import ExtractContext, RawFile, fingerprint
from datashare.sources.canonical import Column, Dataset, model
from datashare.sources.csv_drop import _first_bad

__all__ = [
    "BOUNDS_FILE",
    "DEFAULT_WATERMARK",
    "MAPPING_ENV",
    "DatasetMapping",
    "Mapping",
    "SqlExtract",
    "load_mapping",
    "open_extract",
    "redact_url",
]

log = logging.getLogger(__name__)

MAPPING_ENV = "DATASHARE_SQL_MAPPING"
DEFAULT_WATERMARK = "updated_at"
BOUNDS_FILE = "sql_extract.json"
CHUNK_ROWS = 50_000
_STATE_VERSION = 1
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SELECT = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key", re.IGNORECASE)
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_WM = "_watermark"
_LATE = "_late"


# -- credentials ------------------------------------------------------------------------------


def redact_url(url: str | URL) -> str:
    """The URL with its password (and any secret-looking query parameter) replaced by ***.

    Never raises and never echoes an unparsable URL: that could carry the password verbatim.
    """
    try:
        u = make_url(url) if isinstance(url, str) else url
    except Exception:  # any parse failure: say nothing about the text
        return "<unparsable database URL>"
    query = {k: ("***" if _SECRET_PARAM.search(k) else v) for k, v in u.query.items()}
    return u.set(query=query).render_as_string(hide_password=True)


def _secrets(url: URL) -> list[str]:
    """Every credential string of `url`, as given and URL-encoded, for scrubbing messages."""
    values = [url.password or ""]
    values += [v for k, v in url.query.items() if _SECRET_PARAM.search(k) and isinstance(v, str)]
    out = {
        form for v in values if v for form in (str(v), quote(str(v), safe=""), quote_plus(str(v)))
    }
    return sorted(out, key=len, reverse=True)


def _scrub(text: str, url: URL) -> str:
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def _parse_url(location: str) -> URL:
    if location.startswith("env:"):
        name = location[len("env:") :]
        value = os.environ.get(name)
        if not value:
            raise ConfigError(f"environment variable {name} (the database URL) is not set")
        location = value
    if location.startswith("postgres://"):  # Airflow's URI scheme for PostgreSQL connections
        location = "postgresql://" + location[len("postgres://") :]
    try:
        return make_url(location)
    except Exception:
        # The parser's message would quote the URL, password included.
        raise SourceError("the database URL cannot be parsed (check its syntax)") from None


# -- the mapping ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetMapping:
    """Where one canonical dataset comes from."""

    dataset: str
    table: str | None  # a table or view, or None when `query` is given
    schema: str | None
    query: str | None  # a SELECT used as a subquery, when no table fits
    columns: dict[str, str]  # canonical column -> source column
    watermark: str | None  # None: no watermark, the whole source is read every night

    @property
    def source_label(self) -> str:
        if self.table is None:
            return f"query for {self.dataset}"
        return f"table {self.schema}.{self.table}" if self.schema else f"table {self.table}"


@dataclass(frozen=True)
class Mapping:
    datasets: dict[str, DatasetMapping]
    explicit: bool  # False: the default, resolved against the tables the database has
    digest: str  # changes whenever the mapping does; a new mapping forces a full extract


def _identifier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigError(f"SQL mapping {where}: not a valid identifier (letters, digits, _)")
    return value


def _dataset_mapping(name: str, spec: dict[str, Any], where: str) -> DatasetMapping:
    if name not in model().datasets:
        raise ConfigError(f"SQL mapping {where}: unknown canonical dataset {name!r}")
    ds = model()[name]
    if not isinstance(spec, dict) or not isinstance(spec.get("columns") or {}, dict):
        raise ConfigError(f"SQL mapping {where}.{name}: expected a mapping of settings")
    unknown = set(spec) - {"table", "schema", "query", "columns", "watermark"}
    if unknown:
        raise ConfigError(f"SQL mapping {where}.{name}: unknown key(s) {sorted(unknown)}")
    query = spec.get("query")
    if query is not None and ("table" in spec or "schema" in spec):
        raise ConfigError(f"SQL mapping {where}.{name}: give either table or query, not both")
    if query is not None and (not _SELECT.match(query) or ";" in query):
        raise ConfigError(f"SQL mapping {where}.{name}: query must be one SELECT, without ';'")
    columns = {c: c for c in ds.column_names}
    for canon, source in (spec.get("columns") or {}).items():
        if canon not in columns:
            raise ConfigError(f"SQL mapping {where}.{name}: {canon!r} is not a column of {name}")
        columns[canon] = _identifier(source, f"{where}.{name}.columns.{canon}")
    watermark = spec.get("watermark", DEFAULT_WATERMARK)
    schema = spec.get("schema")
    return DatasetMapping(
        dataset=name,
        table=None if query else _identifier(spec.get("table", name), f"{where}.{name}.table"),
        schema=None if schema is None else _identifier(schema, f"{where}.{name}.schema"),
        query=query,
        columns=columns,
        watermark=None if watermark is None else _identifier(watermark, f"{where}.{name}"),
    )


def load_mapping(path: Path | str | None = None) -> Mapping:
    """The mapping in `path` (YAML or JSON), else in `$DATASHARE_SQL_MAPPING`, else the default.

    File format::

        version: 1
        datasets:
          students:                 # canonical dataset
            table: student_master   # default: the dataset's name
            schema: sis             # optional
            watermark: last_change  # default: updated_at; null = read everything every night
            columns:                # canonical -> source; unlisted columns keep their name
              student_id: lasid
          schools:
            query: SELECT ... FROM ...   # instead of table: one SELECT, used as a subquery

    Only the datasets listed are extracted. The default mapping extracts every canonical dataset
    whose table exists, with canonical column names and watermark `updated_at`.
    """
    path = path or os.environ.get(MAPPING_ENV)
    if not path:
        default = {"version": 1, "default": True}
        return Mapping({}, explicit=False, digest=_digest(default))
    where = Path(path).name
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"SQL mapping {where}: cannot be read ({type(exc).__name__})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise ConfigError(f"SQL mapping {where}: expected a 'datasets' mapping")
    if raw.get("version", 1) != 1:
        raise ConfigError(f"SQL mapping {where}: unsupported version {raw.get('version')!r}")
    datasets = {
        name: _dataset_mapping(name, spec or {}, where) for name, spec in raw["datasets"].items()
    }
    return Mapping(datasets, explicit=True, digest=_digest(raw))


def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# -- time bounds ------------------------------------------------------------------------------


def _utc(value: str, what: str) -> datetime:
    """A naive UTC datetime (how the replica's watermark columns are compared)."""
    try:
        ts = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise SourceError(f"{what} is not an ISO-8601 timestamp") from None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.replace(tzinfo=UTC).isoformat()


# -- reading ----------------------------------------------------------------------------------


@dataclass
class _Read:
    """What one dataset's extraction read and produced."""

    mode: str  # full | incremental | repair (incremental found rows it could not place)
    lower: datetime | None
    table: pa.Table
    delta: pa.Table  # rows actually read, with their watermark
    key_rows: int | None
    watermark: datetime | None


def _to_array(values: list, col: Column) -> pa.Array:
    """Database values -> an Arrow array of the column's canonical type."""
    target = col.arrow_type
    try:
        return pa.array(values, type=target)
    except (TypeError, ValueError, OverflowError):  # ArrowTypeError, ArrowInvalid among them
        pass  # e.g. dates stored as text, booleans as 0/1, IDs as integers: cast below
    inferred = pa.array(values)
    return inferred.cast(target)


class SqlExtract:
    """The `Extract` of one night of an SQL source."""

    format = "sql"

    def __init__(self, url: URL, mapping: Mapping, ctx: ExtractContext) -> None:
        self.url = url
        self.redacted = redact_url(url)
        self.ctx = ctx
        if not ctx.as_of:
            raise ConfigError("the sql source needs the night's as_of timestamp (ExtractContext)")
        self.as_of = _utc(ctx.as_of, "as_of")
        self.mapping = mapping
        self._reads: dict[str, _Read] = {}
        self.engine = self._guard(lambda: sa.create_engine(url))
        self.sources = self._guard(self._resolve)

    # -- errors never carry the password ------------------------------------------------------

    def _guard(self, fn: Any, dataset: str | None = None) -> Any:
        """Run `fn`, turning driver and SQLAlchemy errors into SourceErrors without secrets."""
        try:
            return fn()
        except (SourceError, ConfigError):
            raise
        except (sa.exc.SQLAlchemyError, ImportError, OSError) as exc:
            # Driver messages may quote the DSN or a value, SQLAlchemy's the statement and its
            # parameters: keep the first line, without quoted literals or secrets, and drop the
            # chained exception.
            detail = str(exc).splitlines()[0] if str(exc) else ""
            detail = re.sub(r"\[SQL:.*", "", _scrub(detail, self.url))
            if isinstance(exc, sa.exc.DBAPIError):  # raised by the database: may quote values
                detail = _QUOTED.sub("'…'", detail)
            detail = detail.strip()
            raise SourceError(
                f"database error ({type(exc).__name__}: {detail}) at {self.redacted}",
                dataset=dataset,
            ) from None

    # -- mapping resolution --------------------------------------------------------------------

    def _resolve(self) -> dict[str, DatasetMapping]:
        insp = sa.inspect(self.engine)
        if self.mapping.explicit:
            sources = self.mapping.datasets
        else:
            tables = set(insp.get_table_names()) | set(insp.get_view_names())
            sources = {
                name: _dataset_mapping(name, {}, "default")
                for name in sorted(model().datasets)
                if name in tables
            }
        for m in sources.values():
            if m.table is not None:
                self._check_columns(insp, m)
        return sources

    def _check_columns(self, insp: sa.Inspector, m: DatasetMapping) -> None:
        try:
            have = {c["name"] for c in insp.get_columns(m.table, schema=m.schema)}
        except sa.exc.NoSuchTableError:
            raise SourceError(f"{m.source_label} does not exist", dataset=m.dataset) from None
        needed = dict(m.columns)
        if m.watermark:
            needed["(watermark)"] = m.watermark
        for canon, source in needed.items():
            if source not in have:
                raise SourceError(
                    f"{m.source_label} has no column {source} (mapped to {canon})",
                    dataset=m.dataset,
                    column=canon,
                )

    def _selectable(self, m: DatasetMapping) -> sa.FromClause:
        # Only the watermark is typed, so SQLAlchemy parses it (e.g. SQLite's text timestamps);
        # every other value arrives as the driver returns it and is converted in Arrow.
        cols = [sa.column(c) for c in dict.fromkeys(m.columns.values()) if c != m.watermark]
        if m.watermark:
            cols.append(sa.column(m.watermark, sa.DateTime()))
        if m.query is not None:
            return sa.text(m.query).columns(*cols).subquery("src")
        return sa.table(m.table, *cols, schema=m.schema)

    # -- the Extract protocol ----------------------------------------------------------------

    def datasets(self) -> list[str]:
        return sorted(self.sources)

    def batches(self, dataset: str) -> Iterator[pa.RecordBatch]:
        yield from self._read(dataset).table.to_batches(max_chunksize=1 << 16)

    def expected_rows(self, dataset: str) -> int | None:
        return None  # a database declares no count independent of what was read

    def raw_files(self) -> list[RawFile]:
        return self._raw

    def fingerprint(self) -> str:
        return fingerprint({f.name: f.sha256 for f in self._raw})

    @property
    def state(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "as_of": _iso(self.as_of),
            "mapping_sha256": self.mapping.digest,
            "watermarks": {ds: _iso(self._read(ds).watermark) for ds in self.datasets()},
        }

    @property
    def stats(self) -> dict[str, dict[str, Any]]:
        """Per dataset: mode, delta rows read, key rows read, rows staged (reads everything)."""
        return {ds: self._stats(ds) for ds in self.datasets()}

    def _stats(self, dataset: str) -> dict[str, Any]:
        r = self._read(dataset)
        m = self.sources[dataset]
        return {
            "mode": r.mode,
            "source": m.source_label,
            "watermark_column": m.watermark,
            "lower_exclusive": _iso(r.lower),
            "upper_inclusive": _iso(self.as_of) if m.watermark else None,
            "delta_rows": r.delta.num_rows,
            "key_rows": r.key_rows,
            "rows": r.table.num_rows,
            "new_watermark": _iso(r.watermark),
        }

    @cached_property
    def _raw(self) -> list[RawFile]:
        files = []
        for ds in self.datasets():
            buf = io.BytesIO()
            pq.write_table(self._read(ds).delta, buf, compression="zstd")
            files.append(_raw_bytes(f"{ds}.delta.parquet", buf.getvalue()))
        bounds = {
            "source": self.redacted,
            "as_of": _iso(self.as_of),
            "mapping_sha256": self.mapping.digest,
            "datasets": self.stats,
        }
        files.append(_raw_bytes(BOUNDS_FILE, json.dumps(bounds, indent=1, sort_keys=True).encode()))
        return files

    # -- one dataset ---------------------------------------------------------------------------

    def _read(self, dataset: str) -> _Read:
        if dataset not in self._reads:
            if dataset not in self.sources:
                raise SourceError("the SQL mapping does not provide this dataset", dataset=dataset)
            self._reads[dataset] = self._guard(lambda: self._extract(dataset), dataset)
        return self._reads[dataset]

    def _previous(self, dataset: str) -> tuple[datetime | None, pa.Table | None]:
        """The previous watermark and staged table, or (None, None) for a full extract."""
        m, prev = self.sources[dataset], self.ctx.previous_state
        if not m.watermark or not prev or prev.get("mapping_sha256") != self.mapping.digest:
            return None, None
        mark = (prev.get("watermarks") or {}).get(dataset)
        if mark is None or self.ctx.previous_snapshot is None:
            return None, None
        lower = _utc(mark, f"the previous watermark of {dataset}")
        if lower > self.as_of:
            raise SourceError(
                "the previous night's watermark is later than as_of: an earlier night cannot be "
                "rebuilt incrementally (clear the source state for a full extract)",
                dataset=dataset,
            )
        snapshot = self.ctx.previous_snapshot(dataset)
        if snapshot is None:
            return None, None
        ds = model()[dataset]
        return lower, snapshot.select(ds.column_names).cast(ds.schema)

    def _extract(self, dataset: str) -> _Read:
        m, ds = self.sources[dataset], model()[dataset]
        lower, previous = self._previous(dataset)
        with self._connect() as conn:
            delta = self._fetch(conn, m, ds, lower)
            if previous is None:
                return _full(ds, delta)
            present = self._keys(conn, m, ds, previous)
            table = _merge(previous, delta.drop_columns([_WM]), present, list(ds.key))
            if table.num_rows != present.num_rows:
                # Some existing rows are neither in the snapshot nor in the delta: they were
                # written without advancing the watermark. Read everything once to recover.
                log.warning(
                    "sql %s: %d row(s) missing from the incremental merge; full re-read",
                    dataset,
                    present.num_rows - table.num_rows,
                )
                return _full(ds, self._fetch(conn, m, ds, None), mode="repair")
        return _Read(
            mode="incremental",
            lower=lower,
            table=_sorted(table, ds),
            delta=delta,
            key_rows=present.num_rows,
            watermark=_max_watermark(delta, lower),
        )

    def _connect(self) -> sa.Connection:
        conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            # One snapshot for the delta and the key set, so they agree with each other.
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        return conn

    def _fetch(
        self, conn: sa.Connection, m: DatasetMapping, ds: Dataset, lower: datetime | None
    ) -> pa.Table:
        """Rows with lower < watermark <= as_of (all rows without a watermark), key-ordered."""
        src = self._selectable(m)
        cols = [src.c[m.columns[c.name]].label(c.name) for c in ds.columns]
        stmt = sa.select(*cols)
        if m.watermark:
            wm = src.c[m.watermark]
            stmt = stmt.add_columns(wm.label(_WM)).where(wm <= self.as_of)
            if lower is not None:
                stmt = stmt.where(wm > lower)
        stmt = stmt.order_by(*[src.c[m.columns[k]] for k in ds.key])
        return self._collect(conn, stmt, ds, m, with_watermark=bool(m.watermark))

    def _keys(
        self, conn: sa.Connection, m: DatasetMapping, ds: Dataset, previous: pa.Table
    ) -> pa.Table:
        """Keys of the rows that exist as of `as_of`: a key-only query.

        A row whose watermark is beyond as_of belongs to a later night: it counts as present
        only if the previous night had it (then its previous version is kept); a row inserted
        after as_of is not. This keeps re-runs of a night identical.
        """
        src = self._selectable(m)
        wm = src.c[m.watermark]
        late = sa.case((wm > self.as_of, 1), else_=0).label(_LATE)
        stmt = sa.select(*[src.c[m.columns[k]].label(k) for k in ds.key], late)
        key_ds = Dataset(ds.name, "", ds.key, tuple(ds.column(k) for k in ds.key))
        keys = self._collect(conn, stmt, key_ds, m, extra=(_LATE,))
        is_late = pc.equal(keys.column(_LATE), 1)
        on_time = keys.filter(pc.invert(is_late)).select(list(ds.key))
        late_known = keys.filter(is_late).select(list(ds.key))
        known = previous.select(list(ds.key))
        late_known = late_known.join(known, keys=list(ds.key), join_type="left semi")
        return pa.concat_tables([on_time, late_known])

    def _collect(
        self,
        conn: sa.Connection,
        stmt: sa.Select,
        ds: Dataset,
        m: DatasetMapping,
        *,
        with_watermark: bool = False,
        extra: tuple[str, ...] = (),
    ) -> pa.Table:
        """Execute `stmt` in chunks of CHUNK_ROWS into one Arrow table of canonical types."""
        schema = _schema(ds, with_watermark, extra)
        parts = []
        result = conn.execution_options(yield_per=CHUNK_ROWS).execute(stmt)
        row = 0
        for chunk in result.partitions():
            columns = list(zip(*chunk, strict=True))
            parts.append(self._chunk(columns, ds, m, schema, row))
            row += len(chunk)
        return pa.Table.from_batches(parts, schema=schema)

    def _chunk(
        self, columns: list[tuple], ds: Dataset, m: DatasetMapping, schema: pa.Schema, first: int
    ) -> pa.RecordBatch:
        arrays = []
        for i, field in enumerate(schema):
            values = list(columns[i])
            if field.name in ds.column_names:
                arrays.append(self._convert(values, ds.column(field.name), ds, m, first))
            else:
                arrays.append(pa.array(values, field.type))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _convert(
        self, values: list, col: Column, ds: Dataset, m: DatasetMapping, first: int
    ) -> pa.Array:
        try:
            return _to_array(values, col)
        except (ValueError, TypeError, pa.ArrowNotImplementedError):  # Arrow's errors
            i = _first_bad_value(values, col)
            raise SourceError(
                f"value is not a valid {col.type_name} (line = row of the key-ordered query)",
                file=m.source_label,
                line=first + i + 1,
                dataset=ds.name,
                column=col.name,
            ) from None  # Arrow's message quotes the value: never chain it into logs


def _first_bad_value(values: list, col: Column) -> int:
    """Index of the first value `_to_array` rejects."""
    arr = pa.array([None if v is None else str(v) for v in values], pa.string())
    try:
        return _first_bad(arr, lambda a: _to_array(a.to_pylist(), col))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return 0


def _schema(ds: Dataset, with_watermark: bool, extra: tuple[str, ...]) -> pa.Schema:
    fields = list(ds.schema)
    if with_watermark:
        fields.append(pa.field(_WM, pa.timestamp("us")))
    fields += [pa.field(name, pa.int8()) for name in extra]
    return pa.schema(fields)


def _full(ds: Dataset, delta: pa.Table, mode: str = "full") -> _Read:
    """Everything read is the table (no previous snapshot involved)."""
    table = delta.drop_columns([_WM]) if _WM in delta.column_names else delta
    return _Read(mode, None, _sorted(table, ds), delta, None, _max_watermark(delta, None))


def _merge(previous: pa.Table, delta: pa.Table, present: pa.Table, key: list[str]) -> pa.Table:
    """Upsert `delta` into `previous` by `key`, then keep only keys still `present`."""
    kept = previous.join(delta.select(key), keys=key, join_type="left anti")
    merged = pa.concat_tables([kept, delta.cast(previous.schema)])
    return merged.join(present, keys=key, join_type="left semi")


def _sorted(table: pa.Table, ds: Dataset) -> pa.Table:
    return sort_by_key(table, ds.key)  # Table.sort_by takes minutes on 9M rows (columnar.py)


def _max_watermark(delta: pa.Table, lower: datetime | None) -> datetime | None:
    if _WM not in delta.column_names or delta.num_rows == 0:
        return lower
    return pc.max(delta.column(_WM)).as_py()


def _raw_bytes(name: str, data: bytes) -> RawFile:
    return RawFile(name, hashlib.sha256(data).hexdigest(), len(data), data=data)


def open_extract(
    location: str, ctx: ExtractContext | None = None, *, mapping: Path | str | None = None
) -> SqlExtract:
    """Open an SQL source: `location` is an SQLAlchemy URL or `env:NAME`; checks the mapping."""
    if ctx is None:
        raise ConfigError("the sql source needs an ExtractContext with the night's as_of")
    return SqlExtract(_parse_url(location), load_mapping(mapping), ctx)
