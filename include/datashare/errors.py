"""One exception family for the whole package.

Every error says *where* (file, line or row, dataset, column, rule) and *how many*, never the
student-level value itself. Callers (the DAG, the CLI) match on the class or on `code`.
Data errors are deterministic: retrying the same input cannot succeed, so the DAG fails such
tasks without retries; infrastructure errors (the lake unreachable) are retried.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataShareError",
    "GateError",
    "KeyMissingError",
    "LakeError",
    "SourceError",
    "ValidationFailed",
]


class DataShareError(Exception):
    """Base class. `code` is a short stable identifier callers can match on."""

    code = "datashare"
    #: A deterministic failure: the same input fails the same way; do not retry.
    deterministic = True


class ConfigError(DataShareError):
    """A setting, the tier policy or a command-line argument is wrong."""

    code = "config"


class KeyMissingError(DataShareError):
    """A key or secret the run needs is not available: fail closed, write nothing."""

    code = "key-missing"


class LakeError(DataShareError):
    """The object store is unreachable or refused an operation."""

    code = "lake"
    deterministic = False


class SourceError(DataShareError):
    """A source export cannot be read: names file, line/record, column and problem."""

    code = "source"

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        line: int | None = None,
        dataset: str | None = None,
        column: str | None = None,
    ) -> None:
        self.problem, self.file, self.line = problem, file, line
        self.dataset, self.column = dataset, column
        where = [
            f"file {file}" if file else None,
            f"line {line}" if line is not None else None,
            f"dataset {dataset}" if dataset else None,
            f"column {column}" if column else None,
        ]
        prefix = ", ".join(w for w in where if w)
        super().__init__(f"{prefix}: {problem}" if prefix else problem)


class ValidationFailed(DataShareError):
    """Critical data-contract failures: nothing built from these datasets may publish."""

    code = "validation"

    def __init__(self, summary: str, findings: list[dict] | None = None) -> None:
        self.findings = findings or []
        super().__init__(summary)


class GateError(DataShareError):
    """The release gate found a staged tier that must not be published."""

    code = "gate"

    def __init__(self, summary: str, findings: list[dict] | None = None) -> None:
        self.findings = findings or []
        super().__init__(summary)
