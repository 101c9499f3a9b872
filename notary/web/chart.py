"""Small inline SVG charts drawn on the server (no script, no chart library):
the sender's view's last 30 days and the ``/log`` page's growth.

Presentation attributes only (``fill``, ``stroke``), never ``style``: the pages'
CSP allows no inline style. Every chart has a ``<title>`` and an ``aria-label``
and a table of the same figures beside it for screen readers (the caller's).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

__all__ = ["growth_chart", "volume_chart"]

W, H, PAD_L, PAD_B, PAD_T = 640, 200, 48, 28, 12


def _svg(label: str, body: str) -> str:
    e = html.escape(label)
    return (
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{e}"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{e}</title>'
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W}" y2="{H - PAD_B}" stroke="#888"/>'
        f"{body}</svg>"
    )


def _text(x: float, y: float, s: str, anchor: str = "start", fill: str = "#555") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="11" fill="{fill}"'
        f' text-anchor="{anchor}">{html.escape(s)}</text>'
    )


def volume_chart(
    days: Sequence[str], counts: Sequence[int], seconds: Sequence[float | None]
) -> str:
    """Bars of messages per day, dots of the median delivery time (right scale)."""
    n = max(len(days), 1)
    step = (W - PAD_L - 40) / n
    top = max([*counts, 1])
    slow = max([s for s in seconds if s is not None] or [1.0])
    plot = H - PAD_B - PAD_T
    parts = [
        _text(4, PAD_T + 8, f"{top} msgs"),
        _text(W - 2, PAD_T + 8, _dur(slow), "end", "#7a4d00"),
    ]
    for i, (day, c, s) in enumerate(zip(days, counts, seconds, strict=True)):
        x = PAD_L + i * step
        h = plot * c / top
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{H - PAD_B - h:.1f}" width="{max(step - 2, 1):.1f}"'
            f' height="{h:.1f}" fill="#1d4ed8">'
            f"<title>{html.escape(day)}: {c} messages</title></rect>"
        )
        if s is not None:
            y = H - PAD_B - plot * s / slow
            parts.append(
                f'<circle cx="{x + step / 2:.1f}" cy="{y:.1f}" r="3" fill="#7a4d00">'
                f"<title>{html.escape(day)}: median delivery {_dur(s)}</title></circle>"
            )
    if days:
        parts.append(_text(PAD_L, H - 8, days[0]))
        parts.append(_text(W - 40, H - 8, days[-1], "end"))
    return _svg(
        "Messages per day (bars) and median delivery time (dots), last 30 days", "".join(parts)
    )


def growth_chart(points: Sequence[tuple[str, int]]) -> str:
    """The tree size over time: (time label, size) points in time order, as a line."""
    if not points:
        return _svg(
            "Tree size over time: no checkpoint yet", _text(PAD_L, H / 2, "no checkpoint yet")
        )
    top = max(max(s for _, s in points), 1)
    plot = H - PAD_B - PAD_T
    step = (W - PAD_L - 8) / max(len(points) - 1, 1)
    xy = [(PAD_L + i * step, H - PAD_B - plot * s / top) for i, (_, s) in enumerate(points)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#1d4ed8"><title>{html.escape(t)}:'
        f" {s} entries</title></circle>"
        for (x, y), (t, s) in zip(xy, points, strict=True)
    )
    parts = [
        _text(4, PAD_T + 8, f"{top}"),
        f'<polyline points="{line}" fill="none" stroke="#1d4ed8" stroke-width="2"/>',
        dots,
        _text(PAD_L, H - 8, points[0][0]),
        _text(W - 4, H - 8, points[-1][0], "end"),
    ]
    return _svg("Tree size over time, from the stored checkpoints", "".join(parts))


def _dur(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
