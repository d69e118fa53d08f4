"""Charts as SVG, drawn on the server: a run timeline and value-over-time plots.

No chart library and no script: each chart is a few rects, a polyline and text, with a
``<title>`` and ``<desc>`` for screen readers, a ``<title>`` on every mark for a tooltip,
and the page shows the same numbers as a table. Every text is escaped here.
"""

import datetime
import math
from html import escape

STATUS_COLOURS = {
    # Contrast of at least 4.5:1 on white; failures are hatched too, so they differ without colour.
    "success": "#1a7f37", "failure": "#cf222e", "timed_out": "#9a6700", "killed": "#57606a", "running": "#0969da",
}
HATCHED = ("failure", "timed_out")


def _parse(iso):
    if not iso:
        return None
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _defs(chart_id):
    return "".join(
        f'<pattern id="{chart_id}-hatch-{s}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{STATUS_COLOURS[s]}"/><line x1="0" y1="0" x2="0" y2="6" '
        f'stroke="#ffffff" stroke-width="2"/></pattern>' for s in HATCHED)


def fill_for(status, chart_id):
    return f"url(#{chart_id}-hatch-{status})" if status in HATCHED else STATUS_COLOURS.get(status, "#57606a")


def _head(chart_id, width, height, title, desc):
    return (f'<svg class="chart" id="{chart_id}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(desc)}</desc>'
            f'<defs>{_defs(chart_id)}</defs>')


def run_label(run):
    parts = [run["status"], (run.get("created_at") or "")[:19].replace("T", " ") + " UTC"]
    if run.get("duration") is not None:
        parts.append(f"{run['duration']:.1f} s")
    if run.get("error"):
        parts.append(run["error"][:120])
    return " · ".join(parts)


def timeline(runs, chart_id="timeline", width=900, height=44, link=lambda run: None):
    """One bar per run, oldest on the left, coloured (and hatched) by status; bars link to runs."""
    counts = {}
    for run in runs:
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs"
    out = [_head(chart_id, width, height, f"Timeline of the last {len(runs)} runs",
                 f"Oldest on the left, newest on the right: {summary}.")]
    if runs:
        step = width / len(runs)
        gap = 1 if step >= 4 else 0
        for i, run in enumerate(runs):
            bar = (f'<rect x="{i * step:.2f}" y="4" width="{max(step - gap, 0.5):.2f}" height="{height - 8}" '
                   f'fill="{fill_for(run["status"], chart_id)}"><title>{escape(run_label(run))}</title></rect>')
            href = link(run)
            out.append(f'<a href="{escape(href)}" tabindex="-1">{bar}</a>' if href else bar)
    out.append("</svg>")
    return "".join(out)


def _nice_max(value):
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _fmt(value):
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def plot(runs, key, chart_id, title, unit, width=900, height=220, link=lambda run: None):
    """``run[key]`` against each run's start time: a line through dots coloured by status."""
    points = [(_parse(r.get("started_at") or r.get("created_at")), r[key], r) for r in runs if r.get(key) is not None]
    points = [p for p in points if p[0] is not None]
    left, right, top, bottom = 56, 12, 22, 24
    inner_w, inner_h = width - left - right, height - top - bottom
    if not points:
        desc = f"No run has a recorded {unit} yet."
    else:
        values = [v for _, v, _ in points]
        desc = (f"{len(points)} runs from {points[0][0]:%Y-%m-%d %H:%M} to {points[-1][0]:%Y-%m-%d %H:%M} UTC; "
                f"{unit}: min {min(values):g}, median {sorted(values)[len(values) // 2]:g}, max {max(values):g}.")
    out = [_head(chart_id, width, height, title, desc)]
    top_value = _nice_max(max((v for _, v, _ in points), default=0))
    for i in range(5):  # horizontal grid lines with their values
        value = top_value * i / 4
        y = top + inner_h - inner_h * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{escape(_fmt(value))}</text>')
    out.append(f'<text x="{left - 6}" y="12" text-anchor="end" class="axis">{escape(unit)}</text>')
    if points:
        start, end = points[0][0], points[-1][0]
        span = (end - start).total_seconds() or 1.0

        def xy(moment, value):
            x = left + inner_w * ((moment - start).total_seconds() / span if len(points) > 1 else 0.5)
            return x, top + inner_h - inner_h * (value / top_value)

        coords = [xy(m, v) for m, v, _ in points]
        out.append('<polyline class="line" fill="none" points="'
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
        radius = 3 if len(points) <= 300 else 1.6
        for (x, y), (_, value, run) in zip(coords, points):
            dot = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{fill_for(run["status"], chart_id)}">'
                   f'<title>{escape(f"{value:g} {unit} · " + run_label(run))}</title></circle>')
            href = link(run)
            out.append(f'<a href="{escape(href)}" tabindex="-1">{dot}</a>' if href else dot)
        out.append(f'<text x="{left}" y="{height - 6}" class="axis">{start:%Y-%m-%d %H:%M}</text>'
                   f'<text x="{width - right}" y="{height - 6}" text-anchor="end" class="axis">{end:%Y-%m-%d %H:%M}</text>')
    out.append("</svg>")
    return "".join(out)


def strip(runs, chart_id, width=100, height=16):
    """A small status strip of recent runs for the task list."""
    summary = ", ".join(r["status"] for r in runs) or "no runs"
    out = [f'<svg class="strip" id="{chart_id}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape("last runs, oldest first: " + summary)}" xmlns="http://www.w3.org/2000/svg">'
           f'<defs>{_defs(chart_id)}</defs>']
    step = width / 20
    for i, run in enumerate(runs[-20:]):
        out.append(f'<rect x="{i * step:.1f}" y="1" width="{step - 1:.1f}" height="{height - 2}" '
                   f'fill="{fill_for(run["status"], chart_id)}"><title>{escape(run_label(run))}</title></rect>')
    out.append("</svg>")
    return "".join(out)
