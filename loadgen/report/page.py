"""The page skeleton and number formatting shared by the run, comparison and sweep pages (one self-contained,
offline HTML file each: inline CSS, a few lines of inline script, inline SVG; no network, no JavaScript library).

Every number in a table carries ``data-key`` (its path in the JSON the page was made from) and ``data-value`` (the
unrounded value), so a test or a script can check a page against its summary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from loadgen.report.svg import esc

__all__ = ["FIGURES_DIR", "cell", "fig_block", "fmt", "page", "table", "write_figures"]

FIGURES_DIR = "figures"


def fmt(v: Any, kind: str = "") -> str:
    """A number for people: thousands separators, sensible decimals, '-' for missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if kind == "pct":
        return f"{v:.1%}"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15 and kind != "dec"):
        return f"{int(v):,}"
    if isinstance(v, float):
        a = abs(v)
        if a >= 100:
            return f"{v:,.0f}"
        if a >= 10:
            return f"{v:,.1f}"
        return f"{v:,.2f}"
    return str(v)


def cell(v: Any, key: str = "", kind: str = "", cls: str = "num") -> str:
    """A table cell; with ``key``, tagged with its summary path and raw value."""
    attrs = f' class="{cls}"'
    if key:
        raw = (
            ""
            if v is None
            else repr(v)
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            else str(v)
        )
        attrs += f' data-key="{esc(key)}" data-value="{esc(raw)}"'
    return f"<td{attrs}>{esc(fmt(v, kind))}</td>"


def table(head: Sequence[str], rows: Iterable[str], cls: str = "") -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


CSS = """
:root{--fg:#1d1d1f;--mut:#5f6368;--line:#e3e3e3;--ok:#0a7d32;--bad:#b3261e;--warn:#8a5a00;--acc:#0072B2}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:var(--fg);margin:0;background:#f6f7f9}
main{max-width:1120px;margin:0 auto;padding:18px 22px 60px;background:#fff;min-height:100vh}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;margin:30px 0 8px;padding-top:8px;border-top:1px solid var(--line)}
h3{font-size:14px;margin:16px 0 6px}
.sub{color:var(--mut);margin:0 0 12px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid var(--line);padding:6px 0;margin-bottom:8px;z-index:5;font-size:13px}
nav a{margin-right:14px;color:var(--acc);text-decoration:none}
.verdict{border-radius:6px;padding:9px 12px;margin:8px 0;border:1px solid}
.verdict.ok{background:#edf7ef;border-color:#b7dfc0}.verdict.bad{background:#fdeceb;border-color:#f1b8b3}
.verdict.info{background:#eef4fb;border-color:#bcd3ee}.verdict.warn{background:#fff6e0;border-color:#efd69a}
.verdict b{margin-right:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(158px,1fr));gap:8px;margin:10px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:7px 10px}
.card .v{font-size:19px;font-weight:600}.card .l{color:var(--mut);font-size:12px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{padding:3px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.what{color:var(--mut);font-size:12px}
table.kv td:first-child{color:var(--mut);white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:10px}
.fig{overflow-x:auto}.fig svg{max-width:100%;height:auto}
.note{color:var(--mut);font-size:12.5px;margin:4px 0 10px}
details{margin:8px 0}summary{cursor:pointer;color:var(--acc)}
code{background:#f3f4f6;padding:0 4px;border-radius:3px;font-size:12.5px}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;font-size:12px;padding:6px 8px;border-radius:4px;
white-space:pre;display:none;z-index:10;max-width:520px;line-height:1.35}
.xhair{stroke:#555;stroke-width:0.8;stroke-dasharray:2,2}
tr.untrusted td{background:#fff6e0}td.bad{color:var(--bad)}tr.why td{border-top:0;padding-top:0}td.run{white-space:nowrap}
"""

# Hover: SVG <title> texts become an instant tooltip; the timeline gets a crosshair across its panels.
JS = """
(function(){
var tip=document.getElementById('tip');
document.querySelectorAll('main svg title').forEach(function(t){
  var p=t.parentNode; if(p&&p.tagName!=='svg'){p.setAttribute('data-tip',t.textContent);p.removeChild(t);}});
document.addEventListener('mousemove',function(e){
  var el=e.target&&e.target.closest?e.target.closest('[data-tip]'):null;
  if(!el){tip.style.display='none';return;}
  tip.textContent=el.getAttribute('data-tip');tip.style.display='block';
  var x=e.clientX+14,y=e.clientY+14,w=tip.offsetWidth,h=tip.offsetHeight;
  if(x+w>innerWidth-4)x=e.clientX-w-10; if(y+h>innerHeight-4)y=e.clientY-h-10;
  tip.style.left=x+'px';tip.style.top=y+'px';});
var tl=document.getElementById('timeline');
if(tl){var z=tl.querySelector('.xhair-zone');
 if(z){var ns='http://www.w3.org/2000/svg',ln=document.createElementNS(ns,'line'),lb=document.createElementNS(ns,'text');
  ln.setAttribute('class','xhair');lb.setAttribute('font-size','10.5');lb.setAttribute('fill','#333');
  var x0=+z.getAttribute('x'),w=+z.getAttribute('width'),y0=+z.getAttribute('y'),h=+z.getAttribute('height');
  ln.setAttribute('y1',y0);ln.setAttribute('y2',y0+h);ln.style.display=lb.style.display='none';
  tl.appendChild(ln);tl.appendChild(lb);
  var t0=+z.getAttribute('data-t0'),t1=+z.getAttribute('data-t1');
  tl.addEventListener('mousemove',function(e){var pt=tl.createSVGPoint();pt.x=e.clientX;pt.y=e.clientY;
   var q=pt.matrixTransform(tl.getScreenCTM().inverse());
   if(q.x<x0||q.x>x0+w){ln.style.display=lb.style.display='none';return;}
   ln.setAttribute('x1',q.x);ln.setAttribute('x2',q.x);lb.setAttribute('x',q.x+4);lb.setAttribute('y',y0+10);
   lb.textContent=(t0+(q.x-x0)/w*(t1-t0)).toFixed(2)+' s';ln.style.display=lb.style.display='';});
  tl.addEventListener('mouseleave',function(){ln.style.display=lb.style.display='none';});}}
})();
"""


def page(title: str, body: str, nav: Sequence[tuple[str, str]] = ()) -> str:
    links = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        + (f"<nav>{links}</nav>" if links else "")
        + body
        + f'</main><div id="tip"></div><script>{JS}</script></body></html>\n'
    )


def fig_block(svg: str, caption: str = "") -> str:
    cap = f'<div class="note">{caption}</div>' if caption else ""
    return f'<div class="fig">{svg}{cap}</div>'


def write_figures(out_dir: Path, figs: dict[str, str]) -> None:
    d = out_dir / FIGURES_DIR
    d.mkdir(parents=True, exist_ok=True)
    for name, svg in figs.items():
        (d / f"{name}.svg").write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + svg, encoding="utf-8")
