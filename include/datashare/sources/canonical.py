"""The canonical staging model (canonical.yaml) as Arrow schemas and code sets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa
import yaml

__all__ = ["Column", "Dataset", "Model", "model"]

_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
}


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str
    required: bool
    code_set: str | None = None
    references: str | None = None
    min: float | None = None
    max: float | None = None
    description: str = ""

    @property
    def arrow_type(self) -> pa.DataType:
        return _TYPES[self.type_name]


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def schema(self) -> pa.Schema:
        """The staging schema. Every field is nullable here on purpose: `required` is a data
        contract, enforced by validation (which reports how many rows break it), not by the
        parser (which would stop at the first one)."""
        return pa.schema([pa.field(c.name, c.arrow_type) for c in self.columns])

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"dataset {self.name} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class Model:
    version: int
    code_sets: dict[str, tuple[str, ...]]
    datasets: dict[str, Dataset]

    def __getitem__(self, name: str) -> Dataset:
        return self.datasets[name]


def _load(path: Path) -> Model:
    raw = yaml.safe_load(path.read_text())
    datasets = {}
    for name, spec in raw["datasets"].items():
        cols = tuple(
            Column(
                name=cname,
                type_name=c["type"],
                required=bool(c.get("required", False)),
                code_set=c.get("code_set"),
                references=c.get("references"),
                min=c.get("min"),
                max=c.get("max"),
                description=c.get("description", ""),
            )
            for cname, c in spec["columns"].items()
        )
        for c in cols:
            if c.type_name not in _TYPES:
                raise ValueError(f"canonical.yaml: {name}.{c.name}: unknown type {c.type_name!r}")
            if c.code_set and c.code_set not in raw["code_sets"]:
                raise ValueError(f"canonical.yaml: {name}.{c.name}: unknown code set {c.code_set}")
        datasets[name] = Dataset(name, spec.get("description", ""), tuple(spec["key"]), cols)
    code_sets = {k: tuple(str(v) for v in vs) for k, vs in raw["code_sets"].items()}
    return Model(int(raw["version"]), code_sets, datasets)


@cache
def model() -> Model:
    """The canonical model shipped with the package (parsed once per process)."""
    return _load(Path(__file__).with_name("canonical.yaml"))
