"""HTML building blocks of the report: the stylesheet, number formats, tables, figures, sections.

Every piece of text that comes from data (channel names, paths, file names, messages) goes
through :func:`html.escape` here, so a channel called ``<b>`` shows as written and cannot break
the page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

import pandas as pd

# One small stylesheet: the page has to read well printed and offline, so no web fonts.
STYLESHEET = """
:root {
  --ink: #1f2933; --muted: #5f6b7a; --line: #e3e7ed; --paper: #ffffff; --wash: #f5f7fa;
  --accent: #2f5d8a; --accent-soft: #e8eff7; --warn: #8a5a00; --warn-soft: #fff6e0;
}
* { box-sizing: border-box; }
html { background: var(--wash); }
body {
  margin: 0; color: var(--ink); font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, "Liberation Sans", "DejaVu Sans", sans-serif;
}
header.masthead { background: var(--accent); color: #fff; padding: 28px 0 22px; }
header.masthead h1 { margin: 0 0 4px; font-size: 26px; font-weight: 650;
  letter-spacing: -0.01em; }
header.masthead p { margin: 0; color: #d8e3ef; font-size: 14px; }
.wrap { max-width: 1080px; margin: 0 auto; padding: 0 24px; }
nav.toc { background: var(--paper); border-bottom: 1px solid var(--line); }
nav.toc ol { list-style: none; margin: 0 auto; padding: 10px 24px; max-width: 1080px;
  display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: 14px; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
a { color: var(--accent); }
main { padding: 8px 0 24px; }
section.block { background: var(--paper); border: 1px solid var(--line); border-radius: 8px;
  margin: 20px 0; padding: 6px 28px 22px; }
section.block h2 { font-size: 21px; margin: 18px 0 6px; font-weight: 650; }
section.block h3 { font-size: 16px; margin: 22px 0 6px; font-weight: 650; }
p.explain { color: var(--muted); margin: 4px 0 14px; max-width: 75ch; }
p.note { background: var(--warn-soft); color: var(--warn); border-radius: 6px; padding: 8px 12px;
  font-size: 14px; }
dl.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr));
  gap: 10px; margin: 14px 0 6px; }
dl.tiles div { background: var(--accent-soft); border-radius: 8px; padding: 10px 14px; }
dl.tiles dt { font-size: 12px; color: var(--muted); text-transform: uppercase;
  letter-spacing: 0.04em; }
dl.tiles dd { margin: 2px 0 0; font-size: 22px; font-weight: 650;
  font-variant-numeric: tabular-nums; }
figure.chart { margin: 14px 0 18px; }
figure.chart svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figure.chart figcaption { color: var(--muted); font-size: 13px; margin-top: 4px;
  text-align: center; }
.table-scroll { overflow-x: auto; margin: 8px 0 16px; }
table.data { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; }
table.data caption { text-align: left; font-weight: 600; padding: 4px 0 6px; }
table.data th, table.data td { padding: 5px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
table.data th { background: var(--wash); text-align: left; font-weight: 600;
  vertical-align: bottom; }
table.data td.num, table.data th.num { text-align: right; white-space: nowrap; }
table.data tbody tr:nth-child(even) { background: #fafbfc; }
table.data tfoot td { font-weight: 650; border-top: 2px solid var(--line); }
table.data small { display: block; color: var(--muted); font-size: 11.5px; }
ul.reasons li { margin: 3px 0; }
ul.reasons code, p code { background: var(--wash); padding: 0 4px; border-radius: 3px; }
details { margin: 8px 0 14px; }
details summary { cursor: pointer; color: var(--accent); }
dl.guide dt { font-weight: 650; margin-top: 14px; }
dl.guide dd { margin: 4px 0 0; max-width: 80ch; }
footer.colophon { color: var(--muted); font-size: 13px; padding: 8px 0 32px; }
@media print {
  html { background: #fff; }
  nav.toc { display: none; }
  section.block { border: 0; break-inside: avoid-page; }
}
"""


def escape(text) -> str:
    """``text`` as HTML text (``&``, ``<``, ``>`` and quotes escaped).

    Examples
    --------
    >>> escape('<b> & "co"')
    '&lt;b&gt; &amp; &quot;co&quot;'
    """
    return html.escape(str(text), quote=True)


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA or x is pd.NaT


def number(x, digits: int | None = None) -> str:
    """A number for people: thousands separated, decimals only where they carry information.

    Examples
    --------
    >>> number(19784.6), number(3.14159), number(0.012345), number(float("nan"))
    ('19,785', '3.14', '0.0123', '–')
    >>> number(2.5, digits=0)
    '2'
    """
    if _missing(x):
        return "–"
    x = float(x)
    if digits is not None:
        return f"{x:,.{digits}f}"
    if x == 0 or x.is_integer() or abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.3g}"


def count(x) -> str:
    """A (possibly fractional) count: whole from 100 or when whole, else one decimal.

    Examples
    --------
    >>> count(19784.6), count(2.674), count(2.0)
    ('19,785', '2.7', '2')
    """
    if _missing(x):
        return "–"
    x = float(x)
    return f"{x:,.0f}" if abs(x) >= 100 or x.is_integer() else f"{x:.1f}"


def percent(x) -> str:
    """A share as a percentage with one decimal.

    Examples
    --------
    >>> percent(0.1234), percent(float("nan"))
    ('12.3%', '–')
    """
    return "–" if _missing(x) else f"{100 * float(x):.1f}%"


def money(x) -> str:
    """An amount with two decimals under 100, none above.

    Examples
    --------
    >>> money(1234.6), money(12.345)
    ('1,235', '12.35')
    """
    if _missing(x):
        return "–"
    return f"{float(x):,.0f}" if abs(float(x)) >= 100 else f"{float(x):,.2f}"


def table(frame: pd.DataFrame, formats: dict[str, Callable] | None = None, *,
          labels: dict[str, str] | None = None, caption: str | None = None,
          footer: list | None = None, right=None, css_id: str | None = None) -> str:
    """An HTML table of ``frame``; numeric columns right-aligned and formatted.

    Parameters
    ----------
    frame : pandas.DataFrame
    formats : dict of str to callable, optional
        Column -> function giving a cell's HTML (already escaped) from its value. Numeric
        columns default to :func:`number`, others to escaped text (a cell holding ready HTML
        needs a format, e.g. ``str``).
    labels : dict of str to str, optional
        Column -> header text.
    caption : str, optional
    footer : list, optional
        One footer row of cell texts (already formatted), as many as columns.
    right : iterable of str, optional
        Columns to right-align although they are not numeric (cells built as HTML).
    css_id : str, optional
        The table's ``id``.

    Examples
    --------
    >>> import pandas as pd
    >>> page = table(pd.DataFrame({"channel": ["a<b"], "conversions": [1234.0]}))
    >>> page[page.index("<tbody>"):page.index("</tbody>")]
    '<tbody><tr><td>a&lt;b</td><td class="num">1,234</td></tr>'
    >>> table(pd.DataFrame({"last_touch": [1.0]})).count("last_<wbr>touch")
    1
    """
    formats, labels = dict(formats or {}), dict(labels or {})
    right = set(() if right is None else right)
    numeric = {c: c in right or pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns}
    head = "".join(f'<th{_num(numeric[c])}>{_breakable(labels.get(c, c))}</th>'
                   for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, values):
            if column in formats:
                text = formats[column](value)
            elif numeric[column]:
                text = number(value)
            else:
                text = escape("–" if _missing(value) else value)
            cells.append(f"<td{_num(numeric[column])}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    parts = ['<div class="table-scroll"><table class="data"'
             + (f' id="{escape(css_id)}"' if css_id else "") + ">"]
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    parts.append(f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>")
    if footer is not None:
        cells = "".join(f"<td{_num(numeric[c])}>{text}</td>"
                        for c, text in zip(frame.columns, footer))
        parts.append(f"<tfoot><tr>{cells}</tr></tfoot>")
    parts.append("</table></div>")
    return "".join(parts)


def _breakable(label) -> str:
    """A header that may wrap after its underscores (model names), so wide tables fit."""
    return escape(label).replace("_", "_<wbr>")


def _num(numeric: bool) -> str:
    return ' class="num"' if numeric else ""


def figure(chart_id: str, svg: str, caption: str | None = None) -> str:
    """An inline SVG chart in ``<figure class="chart" id=...>``.

    Examples
    --------
    >>> figure("chart-x", "<svg></svg>", "a < b")
    '<figure class="chart" id="chart-x"><svg></svg><figcaption>a &lt; b</figcaption></figure>'
    """
    text = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure class="chart" id="{escape(chart_id)}">{svg}{text}</figure>'


def section(section_id: str, heading: str, explanation: str, body: str) -> str:
    """A report section: heading, a plain-language explanation (HTML), then its content.

    Examples
    --------
    >>> section("kpis", "Cost", "Spend <em>per</em> channel.", "<p>...</p>")[:56]
    '<section class="block" id="kpis"><h2>Cost</h2><p class="'
    """
    return (f'<section class="block" id="{escape(section_id)}"><h2>{escape(heading)}</h2>'
            f'<p class="explain">{explanation}</p>{body}</section>')


def note(text: str) -> str:
    """A highlighted remark (a section that could not be computed, a warning).

    Examples
    --------
    >>> note("no <spend>")
    '<p class="note">no &lt;spend&gt;</p>'
    """
    return f'<p class="note">{escape(text)}</p>'


def tiles(items: list[tuple[str, str]]) -> str:
    """Key figures as tiles: ``[(label, formatted value), ...]``.

    Examples
    --------
    >>> tiles([("journeys", "1,968")])
    '<dl class="tiles"><div><dt>journeys</dt><dd>1,968</dd></div></dl>'
    """
    cells = "".join(f"<div><dt>{escape(label)}</dt><dd>{escape(value)}</dd></div>"
                    for label, value in items)
    return f'<dl class="tiles">{cells}</dl>'
