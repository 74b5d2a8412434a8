"""The HTML shell shared by ``report.html`` and ``compare.html``: one self-contained file.

Everything a page shows is inside it: the style sheet inline, every image a ``data:image/png``
URI, no script, no font or link to any network address. So a page opens from disk on a machine
with no network, can be mailed or attached to a ticket, and shows the same thing years later.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2329;
       margin: 2em auto; max-width: 1100px; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; }
p.verdict { font-size: 1.1em; padding: .6em .8em; border-radius: 4px; }
p.pass { background: #e6f4ea; } p.fail { background: #fce8e6; } p.neutral { background: #f1f3f4; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; text-align: right; }
th { background: #f6f8fa; } td.text, th.text { text-align: left; }
tr.fail td { background: #fdf1f0; } tr.pass td { background: #f3faf5; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #57606a; font-size: .9em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 12px; }
"""


def esc(text: object) -> str:
    """``text`` as HTML text (quotes included, so it is also safe inside an attribute)."""
    return html.escape(str(text), quote=True)


def image(png: bytes, alt: str, caption: str = "") -> str:
    """A figure whose image is embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    caption: str = "",
    table_id: str = "",
    row_classes: Sequence[str] | None = None,
    text_columns: int = 1,
) -> str:
    """A table; the first ``text_columns`` columns are left-aligned text, the rest numbers."""

    def cell(tag: str, i: int, value: object) -> str:
        cls = ' class="text"' if i < text_columns else ""
        return f"<{tag}{cls}>{esc(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = []
    for n, row in enumerate(rows):
        cls = row_classes[n] if row_classes is not None and n < len(row_classes) else ""
        attr = f' class="{esc(cls)}"' if cls else ""
        body.append(f"<tr{attr}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    rows_html = "".join(body)
    return f"<table{ident}>{cap}<thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"


def verdict(text: str, passed: bool | None) -> str:
    """The page's answer in one line, green, red, or grey when nothing is claimed."""
    cls = "neutral" if passed is None else ("pass" if passed else "fail")
    return f'<p class="verdict {cls}">{esc(text)}</p>'


def document(title: str, sections: Iterable[str]) -> str:
    """A whole page: ``sections`` are HTML fragments built with the functions above."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
