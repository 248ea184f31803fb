"""Source adapter: the Aspen-style CSV export drop (the default source).

A drop is a directory with one UTF-8 CSV per canonical dataset and a `manifest.json` listing
each file's dataset, rows, bytes and SHA-256. Reading is strict and streaming:

- the manifest must list every canonical dataset, and each file must match its size and
  checksum (a truncated or altered file is refused before any parsing);
- the header must be exactly the canonical columns (any order); an unknown or missing column
  stops the source;
- every value is parsed to its canonical type; the first bad value stops the source with an
  error naming file, record number, column and rule, never the value itself. (Rules on values,
  such as required fields or code sets, are the data contracts' job: see validation/.)

pyarrow's streaming CSV reader does the parsing; it reports neither row numbers nor values we
may log, so on failure we locate the record ourselves (a bisection over the failing batch).
"""

from __future__ import annotations

import json
import mmap
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from datashare.errors import SourceError
from datashare.sources.base import ExtractContext, RawFile, fingerprint, sha256_file
from datashare.sources.canonical import Dataset, model

__all__ = ["CsvDropExtract", "DropFile", "open_extract", "read_batches", "read_drop"]

MANIFEST = "manifest.json"
_BLOCK = 8 << 20


@dataclass(frozen=True)
class DropFile:
    dataset: str
    path: Path
    rows: int
    bytes: int
    sha256: str


def read_drop(directory: Path, *, verify_checksums: bool = True) -> list[DropFile]:
    """Check the drop's manifest and files; return the files to read, in manifest order."""
    mpath = directory / MANIFEST
    if not directory.is_dir():
        raise SourceError("source directory does not exist", file=str(directory))
    if not mpath.exists():
        raise SourceError("the export drop has no manifest.json", file=str(mpath))
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        entries = manifest["files"]
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise SourceError(
            f"manifest is not valid JSON with a 'files' list ({exc})", file=str(mpath)
        ) from exc
    files = []
    listed = set()
    for e in entries:
        ds = e.get("dataset")
        if ds not in model().datasets:
            raise SourceError(f"manifest lists unknown dataset {ds!r}", file=str(mpath))
        listed.add(ds)
        path = directory / e["file"]
        if not path.exists():
            raise SourceError("file listed in the manifest is missing", file=str(path), dataset=ds)
        size = path.stat().st_size
        if size == 0:
            raise SourceError("file is empty (no header, no rows)", file=str(path), dataset=ds)
        if size != e["bytes"]:
            raise SourceError(
                f"file has {size} bytes but the manifest says {e['bytes']} "
                "(truncated or altered export)",
                file=str(path),
                dataset=ds,
            )
        if verify_checksums and sha256_file(path) != e["sha256"]:
            raise SourceError(
                "SHA-256 differs from the manifest (altered export)", file=str(path), dataset=ds
            )
        files.append(DropFile(ds, path, int(e["rows"]), size, e["sha256"]))
    missing = sorted(set(model().datasets) - listed)
    if missing:
        raise SourceError(f"the export lacks dataset(s) {', '.join(missing)}", file=str(mpath))
    return files


def has_bom(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(3) == b"\xef\xbb\xbf"


def _header(path: Path, ds: Dataset) -> list[str]:
    with open(path, "rb") as fh:
        first = fh.readline(1 << 16)
    # A UTF-8 byte-order mark (as Excel writes) is harmless: it is skipped, and reported.
    first = first.removeprefix(b"\xef\xbb\xbf")
    try:
        text = first.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise SourceError(
            "header is not valid UTF-8", file=str(path), line=1, dataset=ds.name
        ) from exc
    names = [n.strip('"') for n in text.split(",")]
    if len(names) == 1 and len(ds.columns) > 1:
        sep = next((s for s in (";", "\t", "|") if s in text), None)
        hint = f"; the header looks {sep!r}-separated" if sep else ""
        raise SourceError(
            f"header has one column, expected {len(ds.columns)} comma-separated columns{hint}",
            file=str(path),
            line=1,
            dataset=ds.name,
        )
    unknown = [n for n in names if n not in ds.column_names]
    if unknown:
        raise SourceError(
            f"unknown column(s) {', '.join(unknown)} (not in the canonical model of {ds.name})",
            file=str(path),
            line=1,
            dataset=ds.name,
            column=unknown[0],
        )
    missing = [c for c in ds.column_names if c not in names]
    if missing:
        raise SourceError(
            f"missing column(s) {', '.join(missing)}",
            file=str(path),
            line=1,
            dataset=ds.name,
            column=missing[0],
        )
    if len(set(names)) != len(names):
        raise SourceError(
            "a column name appears twice in the header", file=str(path), line=1, dataset=ds.name
        )
    return names


def _first_bad(values: pa.Array, convert: callable) -> int:
    """Index of the first element `convert` rejects (bisection; only used on failure)."""
    lo, hi = 0, len(values)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(values.slice(lo, mid - lo))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
        else:
            lo = mid
    return lo


def _to_string(values: pa.Array) -> pa.Array:
    out = values.cast(pa.string())
    out.validate(full=True)
    return out


def _convert(batch: pa.RecordBatch, ds: Dataset, path: Path, first_record: int) -> pa.RecordBatch:
    arrays = []
    for col in ds.columns:
        raw = batch.column(col.name)
        try:
            text = _to_string(raw)
        except pa.ArrowInvalid as exc:
            i = _first_bad(raw, _to_string)
            raise SourceError(
                "value is not valid UTF-8 (the export must be UTF-8; Latin-1?)",
                file=str(path),
                line=first_record + i + 1,
                dataset=ds.name,
                column=col.name,
            ) from exc
        if col.type_name == "string":
            typed = text
        else:
            try:
                typed = text.cast(col.arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                i = _first_bad(text, lambda a, t=col.arrow_type: a.cast(t))
                raise SourceError(
                    f"value is not a valid {col.type_name}",
                    file=str(path),
                    line=first_record + i + 1,
                    dataset=ds.name,
                    column=col.name,
                ) from exc
        arrays.append(typed)
    return pa.RecordBatch.from_arrays(arrays, schema=ds.schema)


def _line_of(path: Path, text: str | None) -> int | None:
    """Line number of a malformed row, found by searching the file for its raw text."""
    if not text:
        return None
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = mm.find(text.encode("utf-8", "surrogateescape"))
        if pos < 0:
            return None
        return mm[:pos].count(b"\n") + 1


def read_batches(f: DropFile) -> Iterator[pa.RecordBatch]:
    """Typed canonical batches of one drop file; raises SourceError naming where it failed."""
    ds = model()[f.dataset]
    names = _header(f.path, ds)
    bad_rows: list[pacsv.InvalidRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad_rows.append(row)
        return "skip"

    reader = pacsv.open_csv(
        f.path,
        read_options=pacsv.ReadOptions(block_size=_BLOCK, use_threads=True),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.binary() for n in names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    record = 1  # data records are numbered from 1; the header is line 1, record n is line n+1
    try:
        for batch in reader:
            if bad_rows:
                break
            yield _convert(batch, ds, f.path, record)
            record += batch.num_rows
    except pa.ArrowInvalid as exc:
        msg = re.sub(r":\s.*$", "", str(exc))  # drop any echoed row content
        raise SourceError(
            f"unreadable CSV ({msg})", file=str(f.path), line=record, dataset=ds.name
        ) from exc
    if bad_rows:
        row = bad_rows[0]
        line = _line_of(f.path, row.text)
        raise SourceError(
            f"malformed row: expected {row.expected_columns} fields, found {row.actual_columns}",
            file=str(f.path),
            line=line,
            dataset=ds.name,
        )


class CsvDropExtract:
    """The `Extract` of one CSV export drop."""

    format = "csv_drop"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = {f.dataset: f for f in read_drop(directory)}

    def datasets(self) -> list[str]:
        return sorted(self.files)

    def batches(self, dataset: str) -> Iterator[pa.RecordBatch]:
        return read_batches(self.files[dataset])

    def expected_rows(self, dataset: str) -> int | None:
        return self.files[dataset].rows

    def raw_files(self) -> list[RawFile]:
        manifest = self.directory / MANIFEST
        out = [RawFile(MANIFEST, sha256_file(manifest), manifest.stat().st_size, path=manifest)]
        out += [RawFile(f.path.name, f.sha256, f.bytes, path=f.path) for f in self.files.values()]
        return out

    def fingerprint(self) -> str:
        return fingerprint({name: f.sha256 for name, f in self.files.items()})

    @property
    def warnings(self) -> list[dict[str, str]]:
        return [
            {
                "dataset": f.dataset,
                "file": f.path.name,
                "problem": "file starts with a UTF-8 byte-order mark (skipped)",
            }
            for f in self.files.values()
            if has_bom(f.path)
        ]

    @property
    def state(self) -> dict:
        return {}


def open_extract(location: str, ctx: ExtractContext | None = None) -> CsvDropExtract:
    """Open a CSV drop directory (checks the manifest, sizes and checksums)."""
    return CsvDropExtract(Path(location))
