"""The demo's HTML report: a table per cycle and a plot of champion accuracy, in one self-contained file."""

from __future__ import annotations

import html
from pathlib import Path


def _svg_plot(points: list[tuple[int, float]], width: int = 560, height: int = 260) -> str:
    pad = 40
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    lo, hi = min(ys) - 0.02, min(1.0, max(ys) + 0.02)
    span_x = max(max(xs) - min(xs), 1)

    def sx(x: float) -> float:
        return pad + (x - min(xs)) / span_x * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - lo) / max(hi - lo, 1e-9) * (height - 2 * pad)

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4"/>'
                   f'<text x="{sx(x):.1f}" y="{sy(y) - 10:.1f}" text-anchor="middle">{y:.1%}</text>'
                   for x, y in points)
    ticks = "".join(f'<text x="{sx(x):.1f}" y="{height - pad + 18}" text-anchor="middle">{x}</text>' for x in xs)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="12" '
            f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>'
            f'<polyline points="{line}" fill="none" stroke="#2b6cb0" stroke-width="2"/>'
            f'<g fill="#2b6cb0">{dots}</g>{ticks}'
            f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">cycle</text>'
            f'<text x="12" y="{height / 2}" transform="rotate(-90 12 {height / 2})" text-anchor="middle">'
            f'champion accuracy (golden set)</text></svg>')


def write_report(path: Path, title: str, headers: list[str], rows: list[list[str]],
                 accuracy: list[tuple[int, float]], notes: list[str]) -> None:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Champion accuracy per cycle</h2>{_svg_plot(accuracy)}
<h2>Cycles</h2><table><tr>{head}</tr>{body}</table>
<ul>{items}</ul></body></html>
""", encoding="utf-8")
