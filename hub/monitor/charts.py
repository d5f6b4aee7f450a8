"""Server-rendered SVG of the last 24 hours' throughput: messages in and out per partner, hour by hour.

Two panels on one time axis, "in" (what each partner sent) above "out" (what was addressed to it), one
line per partner. Partners differ by colour AND by dash pattern and marker, named in a legend drawn with
the same pattern, so the chart reads without colour; the SVG carries a <title> and a <desc> that says
the totals in words (role="img", aria-labelledby), and every figure is also in the table the page shows
beside it. Right-to-left: the time axis runs from right to left and the text is anchored the other way;
numbers and times stay left-to-right.

`throughput_svg` is pure: it is given the series, a gettext function and how to write an hour.
"""
from __future__ import annotations

import datetime as dt
import math
from html import escape
from typing import Callable

from markupsafe import Markup

# colours with at least 3:1 contrast against white (WCAG 1.4.11), each with its own dash and marker
STYLES = [("#1f5fa8", "", "circle"), ("#b3401a", "6 3", "square"), ("#2e7d32", "2 3", "triangle"),
          ("#6a3d9a", "9 3 2 3", "diamond"), ("#7a6200", "4 4", "circle"), ("#c2185b", "1 3", "square"),
          ("#00695c", "10 4", "triangle"), ("#4e342e", "3 2 3 6", "diamond")]
WIDTH, PANEL, GAP, LEFT, RIGHT, TOP = 760, 150, 46, 56, 16, 28


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 x 10^k at least `value` (and at least 4, for four grid steps)."""
    if value <= 4:
        return 4
    exponent = 10 ** int(math.floor(math.log10(value)))
    for step in (1, 2, 2.5, 5, 10):
        if step * exponent >= value:
            return int(math.ceil(step * exponent))
    return value


def throughput_svg(hours: list[dt.datetime], messages_in: dict[str, list[int]], messages_out: dict[str, list[int]],
                   *, gettext: Callable[..., str], hour_label: Callable[[dt.datetime], str], rtl: bool = False,
                   number: Callable[[int], str] = str, element_id: str = "throughput") -> Markup:
    _ = gettext
    partners = list(messages_in)
    count = len(hours)
    plot_width = WIDTH - LEFT - RIGHT
    legend_rows = (len(partners) + 3) // 4
    height = TOP + 2 * PANEL + GAP + 30 + legend_rows * 22
    step = plot_width / max(1, count - 1)

    def x(i: int) -> float:
        offset = i * step
        return round(LEFT + (plot_width - offset if rtl else offset), 1)

    title = _("Messages per hour, last 24 hours")
    totals_in = ", ".join(f"{code} {number(sum(values))}" for code, values in messages_in.items())
    totals_out = ", ".join(f"{code} {number(sum(values))}" for code, values in messages_out.items())
    desc = _("Received from each partner: %(totals_in)s. Sent to each partner: %(totals_out)s.",
             totals_in=totals_in or "-", totals_out=totals_out or "-")
    anchor_start = "end" if rtl else "start"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {WIDTH} {height}" '
           f'width="100%" aria-labelledby="{element_id}-title {element_id}-desc" '
           f'direction="{"rtl" if rtl else "ltr"}" font-size="12" font-family="inherit">',
           f'<title id="{element_id}-title">{escape(title)}</title>',
           f'<desc id="{element_id}-desc">{escape(desc)}</desc>']
    for panel, (label, series) in enumerate(((_("Messages in (sent by the partner)"), messages_in),
                                             (_("Messages out (addressed to the partner)"), messages_out))):
        top = TOP + panel * (PANEL + GAP)
        peak = nice_ceiling(max((max(values) for values in series.values() if values), default=0))
        out.append('<g class="panel" aria-hidden="true">')
        # the title's own direction is the page's (rtl in Arabic): its start is on the right there
        out.append(f'<text x="{WIDTH - RIGHT if rtl else LEFT}" y="{top - 10}" text-anchor="start" '
                   f'font-weight="bold" fill="#1a1a1a">{escape(label)}</text>')
        for tick in range(5):
            value = peak * tick // 4
            y = round(top + PANEL - PANEL * tick / 4, 1)
            out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#d0d0d0" stroke-width="1"/>')
            label_x = WIDTH - RIGHT + 4 if rtl else LEFT - 6
            out.append(f'<text x="{label_x}" y="{y + 4}" text-anchor="{"start" if rtl else "end"}" fill="#3a3a3a" '
                       f'direction="ltr">{escape(number(value))}</text>')
        for i, hour in enumerate(hours):
            if i % 3 == 0 or i == count - 1:
                out.append(f'<text x="{x(i)}" y="{top + PANEL + 16}" text-anchor="middle" fill="#3a3a3a" '
                           f'direction="ltr">{escape(hour_label(hour))}</text>')
        for index, code in enumerate(partners):
            colour, dash, marker = STYLES[index % len(STYLES)]
            values = series.get(code) or [0] * count
            points = " ".join(f"{x(i)},{round(top + PANEL - PANEL * v / peak, 1)}" for i, v in enumerate(values))
            dashed = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dashed}/>')
            last = values[-1] if values else 0
            out.append(_marker(marker, x(count - 1), round(top + PANEL - PANEL * last / peak, 1), colour))
        out.append("</g>")
    legend_top = TOP + 2 * PANEL + GAP + 30
    out.append('<g class="legend">')
    for index, code in enumerate(partners):
        colour, dash, marker = STYLES[index % len(STYLES)]
        row, column = divmod(index, 4)
        cell = plot_width / 4
        start = LEFT + column * cell if not rtl else WIDTH - RIGHT - column * cell
        y = legend_top + row * 22
        x1, x2 = (start, start + 28) if not rtl else (start - 28, start)
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{x1}" x2="{x2}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2"{dashed}/>')
        out.append(_marker(marker, x2 if not rtl else x1, y, colour))
        text_x = x2 + 8 if not rtl else x1 - 8
        out.append(f'<text x="{text_x}" y="{y + 4}" text-anchor="{anchor_start}" fill="#1a1a1a" direction="ltr">'
                   f'{escape(code)}</text>')
    out.append("</g></svg>")
    return Markup("".join(out))


def _marker(shape: str, x: float, y: float, colour: str) -> str:
    if shape == "square":
        return f'<rect x="{x - 3.5}" y="{y - 3.5}" width="7" height="7" fill="{colour}"/>'
    if shape == "triangle":
        return f'<polygon points="{x},{y - 4.5} {x + 4.5},{y + 3.5} {x - 4.5},{y + 3.5}" fill="{colour}"/>'
    if shape == "diamond":
        return f'<polygon points="{x},{y - 5} {x + 5},{y} {x},{y + 5} {x - 5},{y}" fill="{colour}"/>'
    return f'<circle cx="{x}" cy="{y}" r="3.5" fill="{colour}"/>'
