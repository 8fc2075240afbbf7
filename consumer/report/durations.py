"""Durations as a person reads them, the same in the report's text and HTML forms."""

from __future__ import annotations

__all__ = ["human_duration"]

_SECOND = 1_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


def human_duration(ms: int) -> str:
    """A duration as a person reads it: "850 ms", "3.2 s", "42 s", "4 min 10 s", "4 h 10 min",
    "2 d 3 h". Each part is rounded down, so a figure never shows a unit it has not reached
    (59 999 ms is "59 s", not "60 s")."""
    if ms < 0:
        return "-" + human_duration(-ms)
    if ms < _SECOND:
        return f"{ms} ms"
    if ms < 10 * _SECOND:
        tenths = ms // 100
        return f"{tenths // 10}.{tenths % 10} s"
    if ms < _MINUTE:
        return f"{ms // _SECOND} s"
    if ms < _HOUR:
        return _two_units(ms, _MINUTE, "min", _SECOND, "s")
    if ms < _DAY:
        return _two_units(ms, _HOUR, "h", _MINUTE, "min")
    return _two_units(ms, _DAY, "d", _HOUR, "h")


def _two_units(ms: int, unit: int, name: str, sub_unit: int, sub_name: str) -> str:
    whole, rest = divmod(ms, unit)
    part = rest // sub_unit
    return f"{whole} {name} {part} {sub_name}" if part else f"{whole} {name}"
