"""`datashare kanon`: anonymize a CSV file with optimal k-anonymity (the main CLI delegates here).

    datashare kanon --input data.csv --sep ';' --hierarchy age=age.csv --hierarchy zip=zip.csv \\
        --k 5 --suppression 4% --out released.csv [--l 3 --sensitive diagnosis]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from datashare.errors import DataShareError

from .hierarchy import Hierarchy
from .metrics import metric_by_name
from .search import anonymize, apply_transformation

__all__ = ["main", "parse_suppression", "read_csv", "write_csv"]


def parse_suppression(text: str) -> float:
    """'0.04' or '4%' -> 0.04; must lie in [0, 1]."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction or percentage: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"suppression limit must be within 0..1 (0%..100%): {text!r}"
        )
    return value


def _hierarchy_arg(text: str) -> tuple[str, str]:
    column, sep, path = text.partition("=")
    if not sep or not column or not path:
        raise argparse.ArgumentTypeError(f"expected COLUMN=FILE, got {text!r}")
    return column, path


def read_csv(path: str | Path, sep: str = ",") -> pa.Table:
    """Read a CSV with a header row, every column as text (keeps '02128' and '007' intact)."""
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh, delimiter=sep), None)
    if not header:
        raise DataShareError(f"{path}: empty file or no header row")
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(delimiter=sep),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def write_csv(table: pa.Table, path: str | Path, sep: str = ",") -> None:
    """Write with a header, quoting only where needed; replaces `path` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter=sep, lineterminator="\n")
            writer.writerow(table.column_names)
            writer.writerows(zip(*(col.to_pylist() for col in table.columns), strict=True))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="datashare kanon",
        description=(
            "Optimal k-anonymity by full-domain generalization with record suppression. "
            "Searches the generalization lattice for the transformation (one hierarchy level "
            "per quasi-identifier) of least information loss, as ARX does, prints the levels "
            "and the loss, and writes the anonymized CSV."
        ),
        epilog=(
            "Hierarchy files use ARX's format: no header, one row per value, the value first "
            "and then its generalizations from level 1 upward, separated by --hierarchy-sep. "
            "Example: datashare kanon --input adult.csv --sep ';' --hierarchy age=age.csv "
            "--hierarchy sex=sex.csv --k 5 --suppression 4%% --out adult_k5.csv"
        ),
    )
    p.add_argument("--input", required=True, metavar="CSV", help="input CSV with a header row")
    p.add_argument("--sep", default=",", help="field separator of --input and --out (default ',')")
    p.add_argument(
        "--hierarchy",
        required=True,
        action="append",
        type=_hierarchy_arg,
        metavar="COLUMN=FILE",
        help="a quasi-identifier and its hierarchy file; repeat per QI (QI order = given order)",
    )
    p.add_argument(
        "--hierarchy-sep", default=";", help="field separator of hierarchy files (default ';')"
    )
    p.add_argument("--k", required=True, type=int, help="minimum equivalence class size")
    p.add_argument(
        "--suppression",
        type=parse_suppression,
        default=0.0,
        metavar="S",
        help="most records that may be suppressed, as a fraction (0.04) or percentage (4%%); "
        "default 0",
    )
    p.add_argument("--out", required=True, metavar="CSV", help="where to write the anonymized CSV")
    p.add_argument("--l", type=float, help="also require l-diversity of --sensitive")
    p.add_argument("--sensitive", metavar="COL", help="sensitive attribute for --l")
    p.add_argument(
        "--l-diversity",
        choices=("distinct", "entropy"),
        default="distinct",
        help="l-diversity variant (default distinct)",
    )
    p.add_argument(
        "--metric",
        choices=("entropy", "entropy-nm", "precision", "precision-nm", "discernibility"),
        default="entropy",
        help="information loss to minimize (default: ARX's monotonic non-uniform entropy)",
    )
    p.add_argument(
        "--suppressed",
        choices=("remove", "mask"),
        default="remove",
        help="drop suppressed records (default) or keep them with every QI set to '*'",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run `datashare kanon`; returns the exit status (0 ok, 1 data/config error, 2 usage)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if (args.l is None) != (args.sensitive is None):
        parser.print_usage(sys.stderr)
        print("datashare kanon: error: --l and --sensitive go together", file=sys.stderr)
        return 2
    columns = [c for c, _ in args.hierarchy]
    if len(set(columns)) != len(columns):
        print("datashare kanon: error: a column is given twice in --hierarchy", file=sys.stderr)
        return 2
    try:
        table = read_csv(args.input, args.sep)
        hierarchies = {
            col: Hierarchy.from_csv(path, sep=args.hierarchy_sep, name=col)
            for col, path in args.hierarchy
        }
        result = anonymize(
            table,
            hierarchies,
            k=args.k,
            suppression_limit=args.suppression,
            metric=metric_by_name(args.metric),
            l=args.l,
            sensitive=args.sensitive,
            l_diversity=args.l_diversity,
        )
        out = apply_transformation(table, result, suppressed=args.suppressed)
        write_csv(out, args.out, args.sep)
    except (DataShareError, OSError, ValueError, pa.ArrowInvalid) as exc:
        print(f"datashare kanon: error: {exc}", file=sys.stderr)
        return 1
    width = max(len(q) for q in result.qis)
    print("levels:")
    for qi, level in result.levels.items():
        depth = hierarchies[qi].max_level
        print(f"  {qi:<{width}}  {level} of {depth}")
    print(f"information loss ({result.metric}): {result.information_loss!r}")
    print(
        f"suppressed {result.suppressed} of {result.n_records} records "
        f"(limit {result.max_suppressed}); smallest class {result.min_class_size}; "
        f"{result.nodes_checked} of {result.lattice_size} transformations checked in "
        f"{result.elapsed:.3f} s"
    )
    print(f"wrote {out.num_rows} records to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
