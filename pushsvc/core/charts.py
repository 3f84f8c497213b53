"""Charts as inline SVG made on the server, so a page needs no script: horizontal bars in groups
(a delivery funnel, failure reasons) and stacked columns (messages per channel per day).

Pure functions returning markup. Colours come from classes (`Series.css`) in the stylesheet, never
from style attributes, so the pages' strict CSP holds; every label is escaped; lengths are
proportional to the values (a zero draws no bar, its number still shows); an empty chart says so
instead of drawing nothing.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
LABEL_WIDTH = 210  # the names left of the bars
VALUE_WIDTH = 64  # the numbers right of them
BAR = 14
ROW = 20
HEAD = 22  # a group's heading row, and the legend's
PAD = 8
COLUMNS_HEIGHT = 240
AXIS = 44  # room for the y labels left of the columns
X_LABELS = 36  # room for the dates under them
MAX_X_LABELS = 8
MAX_STEP = 48  # a column's room at most: a few days do not make slabs
LABEL_UNITS = 28  # about what LABEL_WIDTH holds at the stylesheet's 12px (a CJK character is 2)


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # the class that colours it


@dataclass(frozen=True)
class Group:
    label: str
    values: Sequence[float]  # one per series


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _units(ch: str) -> int:
    """Half-width units a character takes: 2 for CJK and other wide ones."""
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _clip(label: str, units: int = LABEL_UNITS) -> str:
    """Cut a label to about `units` half-width characters, ending with … when cut."""
    if sum(map(_units, label)) <= units:
        return label
    used = 0
    for i, ch in enumerate(label):
        used += _units(ch)
        if used > units - 1:
            return label[:i] + "…"
    return label


def _svg(title: str, height: float, body: list[str]) -> Markup:
    h = _number(height)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {h}" width="{WIDTH}" '
        f'height="{h}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def _empty(title: str, message: str) -> Markup:
    return _svg(title, 2 * HEAD, [f'<text class="chart-empty" x="{WIDTH / 2}" y="{HEAD + 4}" text-anchor="middle">{escape(message)}</text>'])


def _legend(series: Sequence[Series], y: float) -> list[str]:
    out, x = [], 0.0
    for s in series:
        out.append(f'<rect class="{escape(s.css)}" x="{_number(x)}" y="{_number(y - 10)}" width="10" height="10"/>'
                   f'<text x="{_number(x + 14)}" y="{_number(y)}">{escape(s.name)}</text>')
        x += 14 + 7 * sum(map(_units, s.name)) + 16
    return out


def bar_groups(title: str, series: Sequence[Series], groups: Sequence[Group], *, empty: str) -> Markup:
    """Horizontal bars, all on one scale. With one series a group is one row (its label left of
    its bar); with several, a group is a heading and a bar per series, with a legend on top."""
    top = max((v for g in groups for v in g.values), default=0)
    if top <= 0:
        return _empty(title, empty)
    scale = (WIDTH - LABEL_WIDTH - VALUE_WIDTH) / top
    single = len(series) == 1
    body: list[str] = []
    y = 0.0
    if not single:
        body += _legend(series, HEAD - 8)
        y = HEAD + PAD / 2
    for group in groups:
        if not single:
            body.append(f'<g><title>{escape(group.label)}</title><text class="chart-group" x="0" y="{_number(y + HEAD - 6)}">'
                        f'{escape(_clip(group.label, 2 * LABEL_UNITS))}</text></g>')
            y += HEAD
        for s, value in zip(series, group.values):
            label = group.label if single else s.name
            width = value * scale
            bar = (f'<rect class="bar {escape(s.css)}" x="{LABEL_WIDTH}" y="{_number(y)}" width="{_number(width)}" '
                   f'height="{BAR}"/>' if value > 0 else "")
            body.append(
                f'<g><title>{escape(label)}: {_number(value)}</title>'
                f'<text x="{LABEL_WIDTH - PAD}" y="{_number(y + BAR - 2)}" text-anchor="end">{escape(_clip(label))}</text>'
                f'{bar}<text class="chart-value" x="{_number(LABEL_WIDTH + width + 4)}" y="{_number(y + BAR - 2)}">'
                f'{_number(value)}</text></g>'
            )
            y += ROW
        y += 0 if single else PAD
    return _svg(title, y + PAD, body)


def stacked_columns(
    title: str, series: Sequence[Series], labels: Sequence[str], values: Sequence[Sequence[float]], *, empty: str
) -> Markup:
    """One column per label (a day), its series stacked from the bottom; `values[i]` holds the
    i-th series' value for every label. A few labels are written under the columns, evenly spaced."""
    totals = [sum(column) for column in zip(*values)] if values else []
    top = max(totals, default=0)
    if not labels or top <= 0:
        return _empty(title, empty)
    plot_top, plot_bottom = HEAD + PAD, COLUMNS_HEIGHT - X_LABELS
    scale = (plot_bottom - plot_top) / top
    step = min(MAX_STEP, (WIDTH - AXIS) / len(labels))
    body = _legend(series, HEAD - 8)
    body.append(f'<line class="chart-axis" x1="{AXIS}" y1="{plot_bottom}" x2="{WIDTH}" y2="{plot_bottom}"/>'
                f'<text x="{AXIS - 4}" y="{plot_top + 10}" text-anchor="end">{_number(top)}</text>'
                f'<text x="{AXIS - 4}" y="{plot_bottom}" text-anchor="end">0</text>')
    every = -(-len(labels) // MAX_X_LABELS)  # ceiling division
    for i, label in enumerate(labels):
        x = AXIS + i * step + step * 0.15
        y = float(plot_bottom)
        for s, row in zip(series, values):
            height = row[i] * scale
            y -= height
            if row[i] > 0:
                body.append(f'<rect class="bar {escape(s.css)}" x="{_number(x)}" y="{_number(y)}" width="{_number(step * 0.7)}" '
                            f'height="{_number(height)}"><title>{escape(label)} {escape(s.name)}: {_number(row[i])}</title></rect>')
        if i % every == 0:
            body.append(f'<text x="{_number(x + step * 0.35)}" y="{plot_bottom + 16}" text-anchor="middle">{escape(label)}</text>')
    return _svg(title, COLUMNS_HEIGHT, body)
