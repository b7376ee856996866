"""Hand-written SVG charts: scales, axes, lines, steps, markers, bars. No plotting dependency.

Why hand-written SVG rather than plotly or matplotlib: the report must be one offline file that opens quickly and
still works in ten years. Inline SVG needs no JavaScript library (plotly's inlined bundle alone is ~3.5 MB per file),
no optional extra (matplotlib would make the figures disappear for users without it), renders identically in every
browser, is crisp at any zoom, and the very same markup is written to ``figures/*.svg`` for papers (vector, editable
in Inkscape/Illustrator, convertible to PDF/PNG with ``rsvg-convert`` or a browser). Hover details come from SVG
``<title>`` elements, which every browser shows natively; the HTML page upgrades them to an instant tooltip with a
few lines of inline script.

Every element carries presentation attributes (no page CSS needed), so a figure copied out of the page is complete.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

import numpy as np

__all__ = [
    "MUTED",
    "PALETTE",
    "Panel",
    "Scale",
    "empty_figure",
    "esc",
    "figure",
    "finite",
    "fmt_ms",
    "fmt_tick",
    "log_ticks",
    "nice_log_bounds",
    "nice_max",
    "nice_ticks",
    "num",
    "path_data",
]

FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
# Okabe-Ito: distinguishable for colour-blind readers and in greyscale print
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442")
AXIS = "#444"
GRID = "#e4e4e4"
MUTED = "#666"


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def num(v: float) -> str:
    """A coordinate with one decimal, without a trailing '.0' (keeps large figures small)."""
    r = round(float(v), 1)
    return str(int(r)) if r == int(r) else f"{r:.1f}"


def finite(v: object) -> float | None:
    """A finite number as float, anything else (None, NaN, a bool, text) as None."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def fmt_ms(v: float | None) -> str:
    """A latency for a figure's text: '12.3 ms', '1.20 ms', '12.5 s'."""
    if v is None or not math.isfinite(v):
        return "-"
    if v >= 10_000:
        return f"{v / 1000:,.1f} s"
    return f"{v:,.1f} ms" if v >= 10 else f"{v:,.2f} ms"


def fmt_tick(v: float) -> str:
    """A short axis label: 0.5, 12, 1.5k, 20k, 3M."""
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e3:
        return f"{v / 1e3:g}k"
    if a >= 1:
        return f"{v:g}"
    return f"{v:.3g}"


class Scale:
    """Maps a data domain [lo, hi] onto pixels [a, b]; ``log`` for base-10 axes (domain must be > 0)."""

    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False) -> None:
        if log:
            lo = max(lo, 1e-12)
            hi = max(hi, lo * 10)
        elif hi <= lo:
            hi = lo + (abs(lo) or 1.0)
        self.lo, self.hi, self.a, self.b, self.log = lo, hi, a, b, log
        self._l0 = math.log10(lo) if log else lo
        self._l1 = math.log10(hi) if log else hi

    def __call__(self, v: float) -> float:
        x = math.log10(max(v, 1e-300)) if self.log else v
        return self.a + (x - self._l0) / (self._l1 - self._l0) * (self.b - self.a)

    def many(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        x = np.log10(np.maximum(v, 1e-300)) if self.log else v
        return self.a + (x - self._l0) / (self._l1 - self._l0) * (self.b - self.a)

    def ticks(self, n: int = 5) -> list[float]:
        if self.log:
            return log_ticks(self.lo, self.hi)
        return nice_ticks(self.lo, self.hi, n)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick positions (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo]
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    out = []
    v = start
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten in [lo, hi]; 2 and 5 multiples too when the range is short."""
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    decades = math.log10(hi / lo)
    mult = (1, 1.5, 2, 3, 5, 7) if decades <= 1.2 else (1, 2, 5) if decades <= 3.5 else (1,)
    out = [m * 10**e for e in range(e0, e1 + 1) for m in mult if lo <= m * 10**e <= hi * (1 + 1e-9)]
    return out or [lo, hi]


def nice_log_bounds(lo: float, hi: float) -> tuple[float, float]:
    """The 1-2-5 values just outside [lo, hi], for a log axis."""
    steps = (1, 2, 5, 10)
    e = math.floor(math.log10(lo))
    nlo = max(m * 10**e for m in steps if m * 10**e <= lo * (1 + 1e-12))
    e = math.floor(math.log10(hi))
    nhi = min(m * 10**e for m in steps if m * 10**e >= hi * (1 - 1e-12))
    if nhi <= nlo:
        nhi = nlo * 10
    return nlo, nhi


def nice_max(v: float) -> float:
    """A round upper bound just above ``v`` for a linear axis starting at 0."""
    if v <= 0 or not math.isfinite(v):
        return 1.0
    ticks = nice_ticks(0, v, 5)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else v
    return ticks[-1] if ticks[-1] >= v else ticks[-1] + step


class Panel:
    """One plotting area with its own axes, drawn at (left, top) inside a figure."""

    def __init__(
        self,
        x: Scale,
        y: Scale,
        *,
        left: float,
        top: float,
        width: float,
        height: float,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        yfmt: object = fmt_tick,
        xfmt: object = fmt_tick,
        show_xticks: bool = True,
    ) -> None:
        self.x, self.y = x, y
        self.left, self.top, self.width, self.height = left, top, width, height
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.yfmt, self.xfmt = yfmt, xfmt
        self.show_xticks = show_xticks
        self.parts: list[str] = []
        self.legend: list[tuple[str, str, str]] = []  # (label, colour, kind)
        # "top" (right), "bottom" (right), "top-left": keep the legend off the data; "below": under the x-axis
        # label, outside the data altogether (the figure must leave below_height() for it)
        self.legend_at = "top"

    # --- marks -------------------------------------------------------------------------------------
    def line(
        self,
        xs: Sequence[float] | np.ndarray,
        ys: Sequence[float] | np.ndarray,
        *,
        color: str = PALETTE[0],
        width: float = 1.6,
        dash: str | None = None,
        label: str | None = None,
        step: bool = False,
        title: str | None = None,
        css: str = "series",
    ) -> None:
        """A polyline (or a step function holding each value until the next x); NaN breaks the line."""
        xs = np.asarray(xs, dtype=np.float64)
        ys = np.asarray(ys, dtype=np.float64)
        if xs.size == 0:
            return
        px, py = self.x.many(xs), self.y.many(ys)
        d = path_data(px, py, step=step)
        if not d:
            return
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        inner = f"<title>{esc(title)}</title>" if title else ""
        self.parts.append(
            f'<path class="{css}" d="{d}" fill="none" stroke="{color}" stroke-width="{width}"'
            f' stroke-linejoin="round"{extra}>{inner}</path>'
        )
        if label:
            self.legend.append((label, color, "dash" if dash else "line"))

    def area(
        self, xs: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, color: str, opacity: float = 0.25
    ) -> None:
        """A filled band between lo and hi (min/max envelopes of downsampled series)."""
        xs = np.asarray(xs, dtype=np.float64)
        if xs.size == 0:
            return
        px = self.x.many(xs)
        top = self.y.many(np.asarray(hi, dtype=np.float64))
        bot = self.y.many(np.asarray(lo, dtype=np.float64))
        pts = [f"{num(a)},{num(b)}" for a, b in zip(px, top, strict=True)]
        pts += [f"{num(a)},{num(b)}" for a, b in zip(px[::-1], bot[::-1], strict=True)]
        self.parts.append(
            f'<path class="series" d="M{"L".join(pts)}Z" fill="{color}" fill-opacity="{opacity}" stroke="none"/>'
        )

    def points(
        self,
        xs: Iterable[float],
        ys: Iterable[float],
        *,
        color: str = PALETTE[0],
        r: float = 3.0,
        shape: str = "circle",
        titles: Iterable[str] | None = None,
        label: str | None = None,
        hollow: bool = False,
    ) -> None:
        titles_l = list(titles) if titles is not None else None
        out = []
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            cx, cy = self.x(x), self.y(y)
            inner = f"<title>{esc(titles_l[i])}</title>" if titles_l else ""
            paint = f'fill="white" stroke="{color}" stroke-width="1.5"' if hollow else f'fill="{color}"'
            if shape == "triangle":
                d = f"M{num(cx)},{num(cy - r)}L{num(cx + r)},{num(cy + r * 0.8)}L{num(cx - r)},{num(cy + r * 0.8)}Z"
                out.append(f'<path class="point" d="{d}" {paint}>{inner}</path>')
            elif shape == "cross":
                d = (
                    f"M{num(cx - r)},{num(cy - r)}L{num(cx + r)},{num(cy + r)}"
                    f"M{num(cx - r)},{num(cy + r)}L{num(cx + r)},{num(cy - r)}"
                )
                out.append(
                    f'<path class="point" d="{d}" stroke="{color}" stroke-width="2" fill="none">{inner}</path>'
                )
            else:
                out.append(
                    f'<circle class="point" cx="{num(cx)}" cy="{num(cy)}" r="{r}" {paint}>{inner}</circle>'
                )
        self.parts.append("".join(out))
        if label:
            self.legend.append((label, color, shape if not hollow else "hollow"))

    def hline(self, y: float, *, color: str = MUTED, dash: str = "3,3", text: str | None = None) -> None:
        py = self.y(y)
        self.parts.append(
            f'<line x1="0" x2="{num(self.width)}" y1="{num(py)}" y2="{num(py)}" stroke="{color}"'
            f' stroke-width="0.8" stroke-dasharray="{dash}"/>'
        )
        if text:
            self.parts.append(
                f'<text x="4" y="{num(py - 3)}" font-size="10" fill="{color}">{esc(text)}</text>'
            )

    def raw(self, markup: str) -> None:
        """Markup in panel pixel coordinates (origin at the panel's top-left)."""
        self.parts.append(markup)

    # --- rendering ---------------------------------------------------------------------------------
    def render(self) -> str:
        w, h = self.width, self.height
        out = [f'<g transform="translate({num(self.left)},{num(self.top)})">']
        # grid + ticks
        grid, labels = [], []
        for t in self.y.ticks(4 if h < 120 else 5):
            py = self.y(t)
            if py - 0 >= -0.5 and py <= h + 0.5:
                grid.append(f'<line x1="0" x2="{num(w)}" y1="{num(py)}" y2="{num(py)}" stroke="{GRID}"/>')
                labels.append(
                    f'<text x="-5" y="{num(py + 3.5)}" text-anchor="end" font-size="10.5" fill="{AXIS}">'
                    f"{esc(self.yfmt(t))}</text>"  # type: ignore[operator]
                )
        for t in self.x.ticks(6):
            px = self.x(t)
            if -0.5 <= px <= w + 0.5:
                grid.append(f'<line x1="{num(px)}" x2="{num(px)}" y1="0" y2="{num(h)}" stroke="{GRID}"/>')
                if self.show_xticks:
                    labels.append(
                        f'<text x="{num(px)}" y="{num(h + 14)}" text-anchor="middle" font-size="10.5"'
                        f' fill="{AXIS}">{esc(self.xfmt(t))}</text>'  # type: ignore[operator]
                    )
        out += grid
        out.append(f'<svg x="0" y="0" width="{num(w)}" height="{num(h)}" overflow="hidden">')
        out += self.parts
        out.append("</svg>")
        out.append(
            f'<rect class="frame" x="0" y="0" width="{num(w)}" height="{num(h)}" fill="none" stroke="{AXIS}"'
            ' stroke-width="0.8"/>'
        )
        out += labels
        if self.title:
            out.append(
                f'<text x="0" y="-7" font-size="12.5" font-weight="600" fill="#222">{esc(self.title)}</text>'
            )
        if self.xlabel and self.show_xticks:
            out.append(
                f'<text class="xlabel" x="{num(w / 2)}" y="{num(h + 30)}" text-anchor="middle" font-size="11"'
                f' fill="{AXIS}">'
                f"{esc(self.xlabel)}</text>"
            )
        if self.ylabel:
            out.append(
                f'<text transform="translate(-40,{num(h / 2)}) rotate(-90)" text-anchor="middle" font-size="11"'
                f' fill="{AXIS}">{esc(self.ylabel)}</text>'
            )
        if self.legend:
            out.append(self._legend())
        out.append("</g>")
        return "".join(out)

    BELOW_ROW = 15
    BELOW_TOP = 44  # below the x tick labels and the x-axis label

    def _below_layout(self) -> list[tuple[float, int]]:
        """(x, row) of each legend entry laid out left to right under the axis, wrapping at the panel's width."""
        out, x, row = [], 0.0, 0
        for lbl, _, _ in self.legend:
            w = len(lbl) * 6.2 + 27
            if x > 0 and x + w > self.width:
                x, row = 0.0, row + 1
            out.append((x, row))
            x += w + 14
        return out

    def below_height(self) -> float:
        """Extra figure height that a legend "below" takes (0 for a legend inside the panel)."""
        if self.legend_at != "below" or not self.legend:
            return 0.0
        return (self._below_layout()[-1][1] + 1) * self.BELOW_ROW

    def _legend(self) -> str:
        """Legend inside the panel's top-right corner, on a white backing (or below the axis: ``legend_at``)."""
        rows = self.legend
        if self.legend_at == "below":
            return self._legend_below()
        lw = max(len(lbl) for lbl, _, _ in rows) * 6.2 + 30
        x0 = 6 if self.legend_at == "top-left" else self.width - lw - 6
        bh = len(rows) * 15 + 6
        top = self.height - bh - 5 if self.legend_at == "bottom" else 5
        out = [
            f'<g class="legend"><rect x="{num(x0)}" y="{num(top)}" width="{num(lw)}" height="{num(bh)}" fill="white"'
            f' fill-opacity="0.88" stroke="{GRID}"/>'
        ]
        for i, (lbl, color, kind) in enumerate(rows):
            y = top + 11 + i * 15
            if kind in ("line", "dash"):
                dash = ' stroke-dasharray="5,3"' if kind == "dash" else ""
                out.append(
                    f'<line x1="{num(x0 + 5)}" x2="{num(x0 + 22)}" y1="{y - 3}" y2="{y - 3}" stroke="{color}"'
                    f' stroke-width="2"{dash}/>'
                )
            elif kind == "rect":
                out.append(f'<rect x="{num(x0 + 6)}" y="{y - 8}" width="15" height="8" fill="{color}"/>')
            elif kind == "cross":
                out.append(
                    f'<path d="M{num(x0 + 9.5)},{y - 6.5}L{num(x0 + 16.5)},{y + 0.5}M{num(x0 + 9.5)},{y + 0.5}'
                    f'L{num(x0 + 16.5)},{y - 6.5}" stroke="{color}" stroke-width="2" fill="none"/>'
                )
            else:
                fill = "white" if kind == "hollow" else color
                out.append(
                    f'<circle cx="{num(x0 + 13)}" cy="{y - 3}" r="3.5" fill="{fill}" stroke="{color}" stroke-width="1.5"/>'
                )
            out.append(f'<text x="{num(x0 + 27)}" y="{y}" font-size="10.5" fill="#222">{esc(lbl)}</text>')
        return "".join(out) + "</g>"

    def _legend_below(self) -> str:
        out = ['<g class="legend">']
        for (lbl, color, kind), (x0, row) in zip(self.legend, self._below_layout(), strict=True):
            y = self.height + self.BELOW_TOP + row * self.BELOW_ROW
            if kind in ("line", "dash"):
                dash = ' stroke-dasharray="5,3"' if kind == "dash" else ""
                out.append(
                    f'<line x1="{num(x0)}" x2="{num(x0 + 18)}" y1="{num(y - 3)}" y2="{num(y - 3)}" '
                    f'stroke="{color}" stroke-width="2"{dash}/>'
                )
            else:
                out.append(f'<rect x="{num(x0 + 1)}" y="{num(y - 8)}" width="15" height="8" fill="{color}"/>')
            out.append(
                f'<text x="{num(x0 + 23)}" y="{num(y)}" font-size="10.5" fill="#222">{esc(lbl)}</text>'
            )
        out.append("</g>")
        return "".join(out)


def path_data(px: np.ndarray, py: np.ndarray, *, step: bool = False) -> str:
    """SVG path data for a polyline; non-finite points split it into separate runs."""
    ok = np.isfinite(px) & np.isfinite(py)
    out: list[str] = []
    pen = False
    prev_y = 0.0
    for x, y, good in zip(px.tolist(), py.tolist(), ok.tolist(), strict=True):
        if not good:
            pen = False
            continue
        if not pen:
            out.append(f"M{num(x)},{num(y)}")
            pen = True
        elif step:
            out.append(f"H{num(x)}V{num(y)}")
        else:
            out.append(f"L{num(x)},{num(y)}")
        prev_y = y
    del prev_y
    return "".join(out)


def figure(width: float, height: float, body: Iterable[str], *, title: str = "", fig_id: str = "") -> str:
    """A complete, standalone <svg> element (also valid as a file on its own)."""
    ident = f' id="{esc(fig_id)}"' if fig_id else ""
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg"{ident} class="figure" viewBox="0 0 {num(width)} {num(height)}"'
        f' width="{num(width)}" height="{num(height)}" font-family="{esc(FONT)}" role="img"'
        f' aria-label="{esc(title)}">'
    )
    t = f"<title>{esc(title)}</title>" if title else ""
    return (
        head
        + t
        + f'<rect width="{num(width)}" height="{num(height)}" fill="white"/>'
        + "".join(body)
        + "</svg>"
    )


def empty_figure(width: float, height: float, message: str, *, title: str = "", fig_id: str = "") -> str:
    """A figure slot that says why there is nothing to plot (no data), instead of an empty box."""
    body = [
        f'<rect x="10" y="10" width="{num(width - 20)}" height="{num(height - 20)}" fill="#fafafa" stroke="{GRID}"/>',
        f'<text x="{num(width / 2)}" y="{num(height / 2)}" text-anchor="middle" font-size="12" fill="{MUTED}">'
        f"{esc(message)}</text>",
    ]
    if title:
        body.append(f'<text x="14" y="28" font-size="12.5" font-weight="600" fill="#222">{esc(title)}</text>')
    return figure(width, height, body, title=title, fig_id=fig_id).replace(
        'class="figure"', 'class="figure empty"'
    )
