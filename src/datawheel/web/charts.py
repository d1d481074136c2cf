"""Charts as SVG drawn on the server: no charting library to vendor, nothing fetched, no script needed.

Every text is escaped, colours meet WCAG AA against white, and each chart carries a ``<title>`` and a
``<desc>`` (read by screen readers through ``role="img"``/``aria-labelledby``) plus a ``<title>`` per mark,
so the numbers are available without seeing the picture; the console also lists them in tables.
Only presentation attributes are used (no ``style``), so the strict Content-Security-Policy holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

W, H = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 28, 44
INK, GRID, BLUE, GREEN, RED, ORANGE = "#1f2328", "#d0d7de", "#1f5fa8", "#1a7f37", "#b42318", "#9a4a00"


@dataclass(frozen=True)
class Point:
    label: str  # x-axis label (a cycle's short id, "v1")
    value: float
    kind: str = ""  # promoted | rejected | unchanged | skipped | start


def _frame(chart_id: str, title: str, desc: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" class="chart" '
            f'id="{escape(chart_id)}" aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d">'
            f'<title id="{escape(chart_id)}-t">{escape(title)}</title><desc id="{escape(chart_id)}-d">{escape(desc)}'
            f'</desc><rect width="{W}" height="{H}" fill="#ffffff"/>'
            f'<text x="{LEFT}" y="18" fill="{INK}" font-size="13" font-weight="600">{escape(title)}</text>'
            + "".join(body) + "</svg>")


def _y_axis(low: float, high: float, fmt: str) -> tuple[list[str], float, float]:
    span = (high - low) or 1.0
    out = []
    for i in range(5):
        v = low + span * i / 4
        y = H - BOTTOM - (H - TOP - BOTTOM) * i / 4
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" fill="{INK}" font-size="11" text-anchor="end">'
                   f'{escape(format(v, fmt))}</text>')
    return out, low, span


def _x(i: int, n: int) -> float:
    inner = W - LEFT - RIGHT
    return LEFT + inner * (i + 0.5) / max(n, 1)


def _y(v: float, low: float, span: float) -> float:
    return H - BOTTOM - (H - TOP - BOTTOM) * (v - low) / span


def _x_labels(labels: Sequence[str]) -> list[str]:
    step = max(1, len(labels) // 10)
    return [f'<text x="{_x(i, len(labels)):.1f}" y="{H - BOTTOM + 16}" fill="{INK}" font-size="11" '
            f'text-anchor="middle">{escape(lab)}</text>' for i, lab in enumerate(labels) if i % step == 0]


def accuracy_chart(points: Sequence[Point]) -> str:
    """The champion's golden-set accuracy after each cycle; promoted cycles as green dots, rejected as red
    crosses."""
    title = "Champion accuracy on the golden set, per cycle"
    if not points:
        return _frame("chart-accuracy", title, "No cycle has run yet.", [])
    values = [p.value for p in points]
    low, high = max(0.0, min(values) - 0.02), min(1.0, max(values) + 0.02)
    axis, low, span = _y_axis(low, high, ".0%")
    n = len(points)
    line = " ".join(f"{_x(i, n):.1f},{_y(p.value, low, span):.1f}" for i, p in enumerate(points))
    body = [*axis, f'<polyline points="{line}" fill="none" stroke="{BLUE}" stroke-width="2"/>']
    for i, p in enumerate(points):
        x, y = _x(i, n), _y(p.value, low, span)
        tip = f"<title>{escape(p.label)}: {p.value:.2%} ({escape(p.kind or 'start')})</title>"
        if p.kind == "rejected":
            body.append(f'<g class="pt rejected" data-value="{p.value:.4f}">{tip}<path d="M{x - 5:.1f},{y - 5:.1f}'
                        f'l10,10m0,-10l-10,10" stroke="{RED}" stroke-width="2.5"/></g>')
        else:
            fill = GREEN if p.kind == "promoted" else BLUE
            body.append(f'<g class="pt {escape(p.kind or "start")}" data-value="{p.value:.4f}">{tip}'
                        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}"/></g>')
    body += _x_labels([p.label for p in points])
    body.append(f'<text x="{W - RIGHT}" y="{H - 8}" fill="{INK}" font-size="11" text-anchor="end">'
                '● promoted  ✕ rejected  ● (blue) start / unchanged / skipped</text>')
    desc = "; ".join(f"{p.label}: {p.value:.2%} {p.kind}" for p in points)
    return _frame("chart-accuracy", title, desc, body)


def bar_chart(chart_id: str, title: str, bars: Sequence[tuple[str, float]], colour: str = BLUE) -> str:
    """One bar per (label, value), values from zero."""
    if not bars:
        return _frame(chart_id, title, "Nothing to show yet.", [])
    high = max(v for _, v in bars) or 1.0
    axis, low, span = _y_axis(0.0, float(high), ",.0f")
    n = len(bars)
    width = max(4.0, (W - LEFT - RIGHT) / n * 0.7)
    body = list(axis)
    for i, (label, value) in enumerate(bars):
        y = _y(value, low, span)
        body.append(f'<rect class="mark" x="{_x(i, n) - width / 2:.1f}" y="{y:.1f}" width="{width:.1f}" '
                    f'height="{H - BOTTOM - y:.1f}" fill="{colour}"><title>{escape(label)}: {value:,.0f}</title>'
                    '</rect>')
    body += _x_labels([b[0] for b in bars])
    return _frame(chart_id, title, "; ".join(f"{label}: {value:,.0f}" for label, value in bars), body)


def activity_chart(days: Sequence[dict]) -> str:
    """Interactions (blue) and feedback (orange) per day, side by side."""
    title = "Interactions and feedback per day"
    if not days:
        return _frame("chart-activity", title, "No activity in the last 30 days.", [])
    high = max(max(d["interaction"] + d["contribution"], d["feedback"]) for d in days) or 1
    axis, low, span = _y_axis(0.0, float(high), ",.0f")
    n = len(days)
    width = max(3.0, (W - LEFT - RIGHT) / n * 0.35)
    body = list(axis)
    for i, d in enumerate(days):
        for offset, value, colour, name in ((-width, d["interaction"] + d["contribution"], BLUE, "interactions"),
                                            (0.0, d["feedback"], ORANGE, "feedback")):
            y = _y(value, low, span)
            body.append(f'<rect x="{_x(i, n) + offset:.1f}" y="{y:.1f}" width="{width:.1f}" '
                        f'height="{H - BOTTOM - y:.1f}" fill="{colour}"><title>{escape(d["day"])} {name}: {value}'
                        '</title></rect>')
    body += _x_labels([d["day"][5:] for d in days])
    body.append(f'<text x="{W - RIGHT}" y="{H - 8}" fill="{INK}" font-size="11" text-anchor="end">'
                'blue: interactions and contributions, orange: feedback</text>')
    desc = "; ".join(f'{d["day"]}: {d["interaction"] + d["contribution"]} interactions, {d["feedback"]} feedback'
                     for d in days)
    return _frame("chart-activity", title, desc, body)
