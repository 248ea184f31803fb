"""Privacy-budget ledger: cumulative epsilon per (budget, school year), persisted across nights.

Semantics
- Basic (sequential) composition: the epsilons (and deltas) of releases about the same students
  add up. It is conservative and auditable: anyone can re-add the entries. Tighter accounting
  (zCDP, advanced composition) would allow more releases, but needs every mechanism expressed in
  one currency; see docs/differential_privacy.md.
- A budget is named by `budget` (default: the dataset), so several datasets can share one cap,
  e.g. `budget="tier2"`. Each school year has its own budget.
- `charge()` refuses with `BudgetExceeded` (naming dataset, school year, spent, requested, cap)
  when spent + epsilon > cap, and then records nothing.
- Idempotent: (dataset, school year, release id) is charged once. Charging it again with the
  same epsilon returns the recorded entry without spending (a re-run of a night); with a
  different epsilon it is refused (`LedgerError`), because a re-run must reproduce its release.
- An unreadable ledger is an error, never an empty ledger: failing closed is the point.

Storage is injected (`LedgerStorage`: `read() -> bytes | None`, `write(bytes)`); the pipeline
backs it with one object in its pipeline-only bucket. Concurrency: the pipeline has a single
writer (one nightly run at a time). Each charge re-reads the ledger, appends its entry to what it
read and writes the merged document, so it never drops entries it has seen. If the storage also
implements `ConditionalStorage` (`read_versioned`, `write_if`: e.g. S3 If-Match on the ETag, or
If-None-Match for the first write), a concurrent write is detected and the charge retried on the
fresh document. Without it, the charge re-reads after writing and retries if its entry is gone,
which narrows but cannot close the lost-update window: hence the single-writer rule.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from datashare.errors import DataShareError

__all__ = [
    "BudgetExceeded",
    "ConditionalStorage",
    "FileStorage",
    "LedgerConflict",
    "LedgerEntry",
    "LedgerError",
    "LedgerStorage",
    "MemoryStorage",
    "PrivacyLedger",
]

FORMAT = "bps-datashare/privacy-ledger"
VERSION = 1
#: Float slack in the cap comparison, so that 0.1 + 0.2 fits a cap of 0.3. Negligible as privacy.
TOLERANCE = 1e-9


class LedgerError(DataShareError):
    """The ledger is unreadable, or a charge contradicts a recorded one."""

    code = "ledger"


class LedgerConflict(LedgerError):
    """Another writer changed the ledger between our read and our write."""

    code = "ledger-conflict"
    deterministic = False


class BudgetExceeded(LedgerError):
    """The charge would take a budget past its annual cap; nothing was recorded."""

    code = "dp-budget"

    def __init__(
        self,
        *,
        dataset: str,
        budget: str,
        school_year: str,
        spent: float,
        requested: float,
        cap: float,
    ) -> None:
        self.dataset, self.budget, self.school_year = dataset, budget, school_year
        self.spent, self.requested, self.cap = spent, requested, cap
        pool = "" if budget == dataset else f" (budget {budget!r})"
        super().__init__(
            f"privacy budget exceeded for dataset {dataset!r}{pool}, school year {school_year}: "
            f"spent epsilon {spent:g} + requested {requested:g} > cap {cap:g}"
        )


# ---------------------------------------------------------------------------------------------
# Storage


class LedgerStorage(Protocol):
    """Where the ledger document lives: one blob, None when it does not exist yet."""

    def read(self) -> bytes | None: ...

    def write(self, data: bytes) -> None: ...


@runtime_checkable
class ConditionalStorage(Protocol):
    """Optional compare-and-swap: `write_if` raises `LedgerConflict` if the stored version is not
    `expected` (None: the blob must not exist yet)."""

    def read_versioned(self) -> tuple[bytes | None, str | None]: ...

    def write_if(self, data: bytes, expected: str | None) -> None: ...


def _version(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


class MemoryStorage:
    """In-process storage with compare-and-swap (tests, dry runs)."""

    def __init__(self, data: bytes | None = None) -> None:
        self._data = data
        self._lock = threading.Lock()

    def read(self) -> bytes | None:
        return self._data

    def write(self, data: bytes) -> None:
        self._data = bytes(data)

    def read_versioned(self) -> tuple[bytes | None, str | None]:
        with self._lock:
            return self._data, _version(self._data)

    def write_if(self, data: bytes, expected: str | None) -> None:
        with self._lock:
            if _version(self._data) != expected:
                raise LedgerConflict("the ledger changed since it was read")
            self._data = bytes(data)


class FileStorage:
    """A local file, replaced atomically; compare-and-swap under an exclusive lock file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # readers see the old or the new ledger, never half
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read_versioned(self) -> tuple[bytes | None, str | None]:
        data = self.read()
        return data, _version(data)

    def write_if(self, data: bytes, expected: str | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if _version(self.read()) != expected:
                    raise LedgerConflict(f"{self.path} changed since it was read")
                self.write(data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# The ledger


@dataclass(frozen=True)
class LedgerEntry:
    dataset: str
    school_year: str
    release_id: str
    epsilon: float
    delta: float
    budget: str
    cap: float  # the cap in force when charged (for the audit trail)
    charged_at: str  # ISO 8601, UTC
    mechanism: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dataset, self.school_year, self.release_id)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LedgerEntry:
        return cls(
            dataset=str(d["dataset"]),
            school_year=str(d["school_year"]),
            release_id=str(d["release_id"]),
            epsilon=float(d["epsilon"]),
            delta=float(d.get("delta", 0.0)),
            budget=str(d.get("budget", d["dataset"])),
            cap=float(d["cap"]),
            charged_at=str(d["charged_at"]),
            mechanism=d.get("mechanism"),
        )


def _positive_finite(name: str, value: float, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise LedgerError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} "
                          f"finite number, not {value!r}")  # fmt: skip
    return float(value)


class PrivacyLedger:
    """Charge and query privacy budgets kept in an injected `LedgerStorage`."""

    def __init__(
        self,
        storage: LedgerStorage,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        max_attempts: int = 5,
    ) -> None:
        self.storage = storage
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._max_attempts = max_attempts

    # -- reading ---------------------------------------------------------------------------

    def _read(self) -> tuple[list[LedgerEntry], str | None]:
        if isinstance(self.storage, ConditionalStorage):
            raw, version = self.storage.read_versioned()
        else:
            raw, version = self.storage.read(), None
        return self._parse(raw), version

    @staticmethod
    def _parse(raw: bytes | None) -> list[LedgerEntry]:
        if raw is None:
            return []
        try:
            doc = json.loads(raw)
            if doc.get("format") != FORMAT or doc.get("version") != VERSION:
                raise ValueError(f"not a {FORMAT} v{VERSION} document")
            return [LedgerEntry.from_json(e) for e in doc["entries"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Never fall back to an empty ledger: that would reset every budget.
            raise LedgerError(f"privacy ledger is unreadable: {exc}") from exc

    @staticmethod
    def _dump(entries: list[LedgerEntry]) -> bytes:
        doc = {"format": FORMAT, "version": VERSION, "entries": [asdict(e) for e in entries]}
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    def entries(
        self,
        dataset: str | None = None,
        school_year: int | str | None = None,
        *,
        budget: str | None = None,
    ) -> list[LedgerEntry]:
        """Recorded charges, oldest first, optionally filtered."""
        year = None if school_year is None else str(school_year)
        return [
            e
            for e in self._read()[0]
            if (dataset is None or e.dataset == dataset)
            and (year is None or e.school_year == year)
            and (budget is None or e.budget == budget)
        ]

    @staticmethod
    def _sum(entries: list[LedgerEntry], budget: str, year: str, attr: str) -> float:
        return math.fsum(
            getattr(e, attr) for e in entries if e.budget == budget and e.school_year == year
        )

    def spent(self, budget: str, school_year: int | str) -> float:
        """Epsilon charged to a budget (by default named after its dataset) in a school year."""
        return self._sum(self._read()[0], budget, str(school_year), "epsilon")

    def spent_delta(self, budget: str, school_year: int | str) -> float:
        return self._sum(self._read()[0], budget, str(school_year), "delta")

    def remaining(self, budget: str, school_year: int | str, cap: float) -> float:
        return max(0.0, cap - self.spent(budget, school_year))

    # -- charging --------------------------------------------------------------------------

    def charge(
        self,
        dataset: str,
        school_year: int | str,
        release_id: str,
        epsilon: float,
        cap: float,
        *,
        budget: str | None = None,
        delta: float = 0.0,
        mechanism: str | None = None,
    ) -> LedgerEntry:
        """Record `epsilon` for a release, or raise `BudgetExceeded` and record nothing.

        Call it after computing the noisy release and before publishing it. Re-charging the
        same (dataset, school_year, release_id) with the same epsilon is a no-op.
        """
        if not dataset or not release_id:
            raise LedgerError("a charge needs a dataset and a release id")
        epsilon = _positive_finite("epsilon", epsilon)
        cap = _positive_finite("cap", cap, allow_zero=True)
        delta = _positive_finite("delta", delta, allow_zero=True)
        year, pool = str(school_year), budget or dataset

        for _ in range(self._max_attempts):
            entries, version = self._read()
            key = (dataset, year, release_id)
            existing = next((e for e in entries if e.key == key), None)
            if existing is not None:
                same = (existing.epsilon, existing.delta, existing.budget) == (epsilon, delta, pool)
                if not same:
                    raise LedgerError(
                        f"release {release_id} of dataset {dataset!r}, school year {year}, was "
                        f"charged epsilon {existing.epsilon:g} (delta {existing.delta:g}, budget "
                        f"{existing.budget!r}); refusing a different charge of {epsilon:g}"
                    )
                return existing  # a re-run of the same night: already paid for
            spent = self._sum(entries, pool, year, "epsilon")
            if spent + epsilon > cap + TOLERANCE:
                raise BudgetExceeded(
                    dataset=dataset, budget=pool, school_year=year, spent=spent,
                    requested=epsilon, cap=cap,
                )  # fmt: skip
            entry = LedgerEntry(
                dataset=dataset,
                school_year=year,
                release_id=release_id,
                epsilon=epsilon,
                delta=delta,
                budget=pool,
                cap=cap,
                charged_at=self._clock().astimezone(dt.UTC).isoformat(timespec="seconds"),
                mechanism=mechanism,
            )
            data = self._dump([*entries, entry])  # merged onto what we just read
            if isinstance(self.storage, ConditionalStorage):
                try:
                    self.storage.write_if(data, version)
                except LedgerConflict:
                    continue  # someone else wrote: re-read, re-check the cap, retry
                return entry
            self.storage.write(data)
            # Plain storage: confirm our entry survived (a concurrent writer may have replaced
            # the document); if not, the next attempt merges it onto the newer document.
            if any(e.key == key for e in self._parse(self.storage.read())):
                return entry
        raise LedgerConflict(
            f"could not record the charge for {dataset!r}, school year {year}, release "
            f"{release_id} after {self._max_attempts} attempts: concurrent ledger writers"
        )
