"""Small server-rendered SVG charts (no JavaScript, no CDN): a value over time as a step line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


def _label(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if value >= 10_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:,.0f}"


def step_chart(
    points: Sequence[tuple[datetime, float]],
    *,
    title: str,
    width: int = 640,
    height: int = 180,
    unit: str = "IDs",
) -> SafeString:
    """A step line of ``points`` (time, value), with the first and last values labelled.

    The SVG scales to its container (viewBox), has a <title> and a text description for screen
    readers, and draws nothing when there is nothing to draw.
    """
    if not points:
        return mark_safe("")
    points = sorted(points)
    left, right, top, bottom = 56, 12, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    t0, t1 = points[0][0], points[-1][0]
    span = max((t1 - t0).total_seconds(), 1.0)
    top_value = max(max(v for _, v in points), 1)

    def x(t: datetime) -> float:
        return left + plot_w * (t - t0).total_seconds() / span

    def y(v: float) -> float:
        return top + plot_h * (1 - v / top_value)

    path = [f"M{x(points[0][0]):.1f},{y(points[0][1]):.1f}"]
    for (_, previous), (t, v) in zip(points, points[1:], strict=False):
        path.append(f"H{x(t):.1f}V{y(v):.1f}")
        del previous
    if len(points) == 1:
        path.append(f"H{left + plot_w:.1f}")
    last_t, last_v = points[-1]
    description = (
        f"{escape(title)}: from {_label(points[0][1])} to {_label(last_v)} {unit} "
        f"between {t0:%Y-%m-%d %H:%M:%S} and {t1:%Y-%m-%d %H:%M:%S} UTC"
    )
    svg = f"""<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{description}" xmlns="http://www.w3.org/2000/svg">
<title>{description}</title>
<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>
<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>
<text class="tick" x="{left - 6}" y="{top + 4}" text-anchor="end">{_label(top_value)}</text>
<text class="tick" x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>
<text class="tick" x="{left}" y="{height - 8}">{t0:%H:%M:%S}</text>
<text class="tick" x="{left + plot_w}" y="{height - 8}" text-anchor="end">{t1:%H:%M:%S}</text>
<path class="line" d="{"".join(path)}"/>
<circle class="dot" cx="{x(last_t):.1f}" cy="{y(last_v):.1f}" r="3.5"/>
</svg>"""
    return mark_safe(svg)
