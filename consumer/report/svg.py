"""The compliance report's two charts as inline SVG, written by hand (no plotting library).

- `latency_chart`: time to erasure per day requested, p50 and p99, with a line for the deadline
  and the target. The y axis is **logarithmic**: the figures span milliseconds (a quick
  erasure) to days (one that waited on the DLQ for a replay) and the deadline is usually weeks;
  on a linear axis everything under an hour sits on the floor, one stuck day flattens the rest,
  and the deadline line dwarfs the data. A log axis keeps each decade (1 s, 1 min, 1 h, 1 d)
  readable and shows "how far below the deadline" as a distance.
- `age_chart`: outstanding erasures by age bucket, one bar each with its count written on it.

Both are deterministic (the same input gives the same bytes, coordinates rounded to 0.1), use no
script, no external reference and no XML namespace URL (an HTML parser puts `<svg>` in the SVG
namespace itself), and are well-formed XML. Every label is escaped here: reasons and bucket
labels are text from elsewhere. Meaning never rests on colour alone: p50 and p99 differ in line
style and marker shape, and every bar carries its count as text, so a grey print reads the same.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from consumer.core.dlq import printable
from consumer.core.erasure_report import AgeBucket, DayLatency, Latency

__all__ = ["LOG_TICKS", "Threshold", "age_chart", "latency_chart", "text"]

_WIDTH = 960
_LEFT = 78  # room for "100 ms" and the axis title
_RIGHT = 130  # room for "deadline 30 d" at the end of its line (both charts: they align)
_BOTTOM = 64  # room for the x labels and the axis title
_PLOT_W = _WIDTH - _LEFT - _RIGHT
_INSET = 8  # the log axis's ends sit this far inside the plot: no marker lies on an axis line
_MIN_LABEL_GAP = 84  # px between day labels ("2025-03-01" at 12 px is about 70 px wide)
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"

_INK = "#1f1f1f"
_GRID = "#d9d9d9"
_P50 = "#1f4e9a"
_P99 = "#b34700"
_LIMIT = "#8b0000"
_BAR = "#4a6f9c"

# Ticks of the log axis at units a reader knows; the axis spans the ticks around the data.
LOG_TICKS: tuple[tuple[int, str], ...] = (
    (1, "1 ms"),
    (10, "10 ms"),
    (100, "100 ms"),
    (1_000, "1 s"),
    (10_000, "10 s"),
    (60_000, "1 min"),
    (600_000, "10 min"),
    (3_600_000, "1 h"),
    (21_600_000, "6 h"),
    (86_400_000, "1 d"),
    (604_800_000, "7 d"),
    (2_592_000_000, "30 d"),
    (31_536_000_000, "365 d"),
)


@dataclass(frozen=True, slots=True)
class _Frame:
    """A chart's height and where its plot area is, top to bottom."""

    height: int
    top: int  # room above the plot (the legend, or the top bar's count)

    @property
    def plot_bottom(self) -> int:
        return self.height - _BOTTOM

    @property
    def plot_height(self) -> int:
        return self.plot_bottom - self.top


_LATENCY_FRAME = _Frame(height=380, top=44)
_AGE_FRAME = _Frame(height=300, top=28)


@dataclass(frozen=True, slots=True)
class Threshold:
    """A horizontal line on the latency chart: the deadline or the target, already labelled."""

    name: str  # for the legend: "deadline"
    label: str  # at the line's end: "deadline 30 d"
    ms: int


def text(value: str) -> str:
    """Anyone's text fit for SVG or HTML content and attributes: control characters (an ANSI
    escape's ESC, which XML forbids) shown escaped, then `<>&"'` escaped."""
    return html.escape(printable(value), quote=True)


def _n(value: float) -> str:
    """A coordinate, rounded so that the output is the same on every run and platform."""
    rounded = round(value, 1)
    return f"{rounded:.1f}".removesuffix(".0")


def _open_svg(frame: _Frame, title: str, aria_label: str) -> list[str]:
    height = frame.height
    return [
        f'<svg viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" role="img" '
        f'aria-label="{text(aria_label)}" font-family="{_FONT}" font-size="12" fill="{_INK}">',
        f"<title>{text(title)}</title>",
    ]


def _label(x: float, y: float, value: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{extra}>{text(value)}</text>'


# --- time to erasure over time --------------------------------------------------------------


def _log_domain(values: Sequence[int]) -> tuple[int, int]:
    """The ticks just below the smallest value and just above the largest (at least 1 ms)."""
    low = max(1, min(values))
    high = max(1, *values)
    below = [ms for ms, _ in LOG_TICKS if ms <= low]
    above = [ms for ms, _ in LOG_TICKS if ms >= high]
    bottom = below[-1] if below else LOG_TICKS[0][0]
    top = above[0] if above else high
    if top <= bottom:  # every value on one tick: show the decade above it too
        top = next((ms for ms, _ in LOG_TICKS if ms > bottom), bottom * 10)
    return bottom, top


def _day_index(days: Sequence[DayLatency]) -> list[int]:
    """Each day's position counted from the first (days without a completion leave gaps)."""
    first = date.fromisoformat(days[0].day)
    return [(date.fromisoformat(d.day) - first).days for d in days]


def _segments(indexes: Sequence[int]) -> list[list[int]]:
    """Runs of consecutive days, as positions into `indexes`: a line is not drawn over a day
    with no completed erasure, which would claim a figure nobody measured."""
    runs: list[list[int]] = []
    for position, day in enumerate(indexes):
        if runs and indexes[runs[-1][-1]] == day - 1:
            runs[-1].append(position)
        else:
            runs.append([position])
    return runs


def latency_chart(
    days: Sequence[DayLatency], thresholds: Sequence[Threshold], aria_label: str
) -> str:
    """Time to erasure per day requested (p50 and p99, log scale) with the thresholds' lines.
    `days` ascending and not empty; `aria_label` says in words what the chart shows."""
    if not days:
        raise ValueError("latency_chart needs at least one day")
    indexes = _day_index(days)
    span = indexes[-1] + 1
    slot = _PLOT_W / span

    def x_at(index: int) -> float:
        return _LEFT + (index + 0.5) * slot

    values = [d.latency.p50_ms for d in days] + [d.latency.p99_ms for d in days]
    bottom, top = _log_domain(values + [t.ms for t in thresholds])
    log_bottom, log_top = math.log10(bottom), math.log10(top)

    frame = _LATENCY_FRAME
    span_h = frame.plot_height - 2 * _INSET

    def y_at(ms: int) -> float:
        share = (math.log10(max(ms, bottom)) - log_bottom) / (log_top - log_bottom)
        return frame.top + _INSET + span_h * (1 - min(share, 1.0))

    out = _open_svg(frame, "Time to erasure by day requested", aria_label)
    out.extend(_legend(thresholds))
    # Grid and y ticks.
    for ms, name in LOG_TICKS:
        if bottom <= ms <= top:
            y = y_at(ms)
            out.append(
                f'<line x1="{_LEFT}" y1="{_n(y)}" x2="{_LEFT + _PLOT_W}" y2="{_n(y)}" '
                f'stroke="{_GRID}" stroke-width="1"/>'
            )
            out.append(_label(_LEFT - 8, y + 4, name, "end"))
    out.extend(_axes(frame))
    # Day labels, thinned so that they never overlap.
    step = max(1, math.ceil(span / max(1, _PLOT_W // _MIN_LABEL_GAP)))
    first = date.fromisoformat(days[0].day)
    for index in range(0, span, step):
        x = x_at(index)
        label = date.fromordinal(first.toordinal() + index).isoformat()
        out.append(
            f'<line x1="{_n(x)}" y1="{frame.plot_bottom}" x2="{_n(x)}" '
            f'y2="{frame.plot_bottom + 5}" stroke="{_INK}"/>'
        )
        out.append(_label(x, frame.plot_bottom + 19, label))
    out.append(_label(_LEFT + _PLOT_W / 2, frame.height - 14, "day requested (UTC)"))
    out.append(_y_title(frame, "time to erasure (log scale)"))
    # Thresholds, then the data on top of them.
    label_ys: list[float] = []
    for threshold in sorted(thresholds, key=lambda t: -t.ms):
        y = y_at(threshold.ms)
        out.append(
            f'<line x1="{_LEFT}" y1="{_n(y)}" x2="{_LEFT + _PLOT_W}" y2="{_n(y)}" '
            f'stroke="{_LIMIT}" stroke-width="1.5" stroke-dasharray="2 3"/>'
        )
        # Two limits close together (a target of a week under a deadline of a month) would
        # print their labels over each other: the lower one moves down a line.
        label_y = max([y + 4, *(above + 14 for above in label_ys)])
        label_ys.append(label_y)
        out.append(
            _label(_LEFT + _PLOT_W + 6, label_y, threshold.label, "start", f' fill="{_LIMIT}"')
        )
    radius = 3.5 if span <= 60 else 2.0
    for series in _SERIES:
        points = [
            (x_at(i), y_at(series.value(d.latency))) for i, d in zip(indexes, days, strict=True)
        ]
        colour, dash, marker = series.colour, series.dash, series.marker
        for run in _segments(indexes):
            if len(run) > 1:
                coords = " ".join(f"{_n(points[p][0])},{_n(points[p][1])}" for p in run)
                out.append(
                    f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                    f'stroke-width="2"{dash}/>'
                )
        out.extend(_marker(marker, px, py, radius, colour) for px, py in points)
    out.append("</svg>")
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class _Series:
    """One line of the latency chart and how it looks (style and marker, not colour alone)."""

    name: str
    value: Callable[[Latency], int]
    colour: str
    dash: str  # an attribute, or nothing for a solid line
    marker: str  # "circle" or "square"


_SERIES = (
    _Series("p50 (median)", lambda latency: latency.p50_ms, _P50, "", "circle"),
    _Series("p99", lambda latency: latency.p99_ms, _P99, ' stroke-dasharray="7 4"', "square"),
)


def _marker(shape: str, x: float, y: float, radius: float, colour: str) -> str:
    if shape == "circle":
        return f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(radius)}" fill="{colour}"/>'
    return (
        f'<rect x="{_n(x - radius)}" y="{_n(y - radius)}" width="{_n(2 * radius)}" '
        f'height="{_n(2 * radius)}" fill="white" stroke="{colour}" stroke-width="1.5"/>'
    )


def _legend(thresholds: Sequence[Threshold]) -> list[str]:
    y = 18
    x = float(_LEFT)
    out: list[str] = []
    for series in _SERIES:
        out.append(
            f'<line x1="{_n(x)}" y1="{y}" x2="{_n(x + 28)}" y2="{y}" stroke="{series.colour}" '
            f'stroke-width="2"{series.dash}/>'
        )
        out.append(_marker(series.marker, x + 14, y, 3.5, series.colour))
        out.append(_label(x + 34, y + 4, series.name, "start"))
        x += 34 + 8 * len(series.name) + 24  # 8 px a character at 12 px is generous
    if thresholds:
        out.append(
            f'<line x1="{_n(x)}" y1="{y}" x2="{_n(x + 28)}" y2="{y}" stroke="{_LIMIT}" '
            f'stroke-width="1.5" stroke-dasharray="2 3"/>'
        )
        out.append(_label(x + 34, y + 4, " / ".join(t.name for t in thresholds), "start"))
    return out


def _axes(frame: _Frame) -> list[str]:
    bottom = frame.plot_bottom
    return [
        f'<line x1="{_LEFT}" y1="{frame.top}" x2="{_LEFT}" y2="{bottom}" stroke="{_INK}"/>',
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{_LEFT + _PLOT_W}" y2="{bottom}" stroke="{_INK}"/>',
    ]


def _y_title(frame: _Frame, title: str) -> str:
    middle = frame.top + frame.plot_height / 2
    return (
        f'<text x="16" y="{_n(middle)}" text-anchor="middle" '
        f'transform="rotate(-90 16 {_n(middle)})">{text(title)}</text>'
    )


# --- outstanding by age ---------------------------------------------------------------------


def _count_ticks(largest: int) -> list[int]:
    """0 and a few round counts (1, 2 or 5 times a power of ten) up to at least `largest`."""
    if largest <= 0:
        return [0, 1]
    raw_step = largest / 5
    power = 10 ** math.floor(math.log10(raw_step)) if raw_step >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw_step)
    top = math.ceil(largest / step) * step
    return list(range(0, top + 1, step))


def age_chart(buckets: Sequence[AgeBucket], aria_label: str) -> str:
    """Outstanding erasures by age: one bar per bucket, youngest first, its count written on it."""
    if not buckets:
        raise ValueError("age_chart needs at least one bucket")
    ticks = _count_ticks(max(b.count for b in buckets))
    top = ticks[-1]
    slot = _PLOT_W / len(buckets)
    bar_width = min(slot * 0.6, 120.0)

    frame = _AGE_FRAME

    def y_at(count: int) -> float:
        return frame.top + frame.plot_height * (1 - count / top)

    out = _open_svg(frame, "Outstanding erasures by age", aria_label)
    for tick in ticks:
        y = y_at(tick)
        out.append(
            f'<line x1="{_LEFT}" y1="{_n(y)}" x2="{_LEFT + _PLOT_W}" y2="{_n(y)}" '
            f'stroke="{_GRID}" stroke-width="1"/>'
        )
        out.append(_label(_LEFT - 8, y + 4, f"{tick:,}", "end"))
    for position, bucket in enumerate(buckets):
        middle = _LEFT + (position + 0.5) * slot
        y = y_at(bucket.count)
        if bucket.count:
            out.append(
                f'<rect x="{_n(middle - bar_width / 2)}" y="{_n(y)}" width="{_n(bar_width)}" '
                f'height="{_n(frame.plot_bottom - y)}" fill="{_BAR}" stroke="{_INK}" '
                f'stroke-width="0.5"/>'
            )
        out.append(_label(middle, y - 6, f"{bucket.count:,}", extra=' font-weight="bold"'))
        out.append(_label(middle, frame.plot_bottom + 19, bucket.label))
    out.extend(_axes(frame))
    out.append(_label(_LEFT + _PLOT_W / 2, frame.height - 14, "age (time since the request)"))
    out.append(_y_title(frame, "outstanding erasures"))
    out.append("</svg>")
    return "\n".join(out)
