"""A BPS-like school calendar: 180 school days with the usual Boston holidays and vacations."""

from __future__ import annotations

import datetime as dt

import numpy as np

__all__ = ["SCHOOL_DAYS", "school_days"]

SCHOOL_DAYS = 180


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """n-th (1-based; -1 = last) given weekday (Mon=0) of a month."""
    if n > 0:
        d = dt.date(year, month, 1)
        d += dt.timedelta(days=(weekday - d.weekday()) % 7)
        return d + dt.timedelta(weeks=n - 1)
    last = dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def _week_of(monday: dt.date) -> set[dt.date]:
    return {monday + dt.timedelta(days=i) for i in range(5)}


def school_days(school_year: int) -> np.ndarray:
    """The 180 school days (numpy datetime64[D]) of a school year, 2026 meaning 2025-26.

    School starts the Thursday after Labor Day; closed on weekends, Indigenous Peoples' Day,
    Veterans Day, Thanksgiving Wednesday-Friday, December 24 - January 1, MLK Day, the February
    and April vacation weeks (the weeks of Presidents' Day and Patriots' Day), Memorial Day and
    Juneteenth; the year ends after the 180th day (mid to late June).
    """
    fall, spring = school_year - 1, school_year
    labor_day = _nth_weekday(fall, 9, 0, 1)
    start = labor_day + dt.timedelta(days=3)
    closed = {
        _nth_weekday(fall, 10, 0, 2),  # Indigenous Peoples' Day
        dt.date(fall, 11, 11),  # Veterans Day
        _nth_weekday(spring, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(spring, 5, 0, -1),  # Memorial Day
        dt.date(spring, 6, 19),  # Juneteenth
    }
    thanksgiving = _nth_weekday(fall, 11, 3, 4)
    closed |= {thanksgiving + dt.timedelta(days=i) for i in (-1, 0, 1)}
    closed |= {dt.date(fall, 12, d) for d in range(24, 32)} | {dt.date(spring, 1, 1)}
    closed |= _week_of(_nth_weekday(spring, 2, 0, 3))  # February vacation
    closed |= _week_of(_nth_weekday(spring, 4, 0, 3))  # April vacation (Patriots' Day week)
    days: list[dt.date] = []
    d = start
    while len(days) < SCHOOL_DAYS:
        if d.weekday() < 5 and d not in closed:
            days.append(d)
        d += dt.timedelta(days=1)
    return np.array(days, dtype="datetime64[D]")
