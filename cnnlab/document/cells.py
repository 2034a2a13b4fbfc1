"""One cell in one format: 1,234 and NF*k^2 in a terminal, `NF*k^2` in Markdown, $\\mathrm{NF} k^{2}$ in LaTeX
(a name of several letters is one upright name, not a product of italic letters), escaped text in HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import sympy as sp

LATEX_ESCAPES = (
    ("\\", r"\textbackslash{}"),
    ("&", r"\&"),
    ("%", r"\%"),
    ("#", r"\#"),
    ("_", r"\_"),
    ("^", r"\^{}"),
    ("~", r"\~{}"),
    ("$", r"\$"),
    ("{", r"\{"),
    ("}", r"\}"),
    ("->", r"$\rightarrow$"),
    ("±", r"$\pm$"),
    ("−", "-"),
    ("α", r"$\alpha$"),
)


def latex_text(s: str) -> str:
    out = []
    for ch in s:  # one pass, so that the braces an escape adds are not escaped again
        out.append(next((b for a, b in LATEX_ESCAPES if len(a) == 1 and a == ch), ch))
    text = "".join(out)
    for a, b in LATEX_ESCAPES:
        if len(a) > 1:
            text = text.replace(a, b)
    return text


@dataclass(frozen=True)
class Fixed:
    """A measured number shown with a fixed number of decimals (0.6350), the same in every format."""

    value: float
    digits: int = 4

    def __str__(self) -> str:
        return f"{self.value:.{self.digits}f}"


@dataclass(frozen=True)
class Link:
    """Text that points at a file beside the document (a run's report): a link where the format has them."""

    text: str
    href: str


def human_bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _float(v: float) -> str:
    """Three significant digits, thousands separated: 0.0123, 4.24, 96.6, 1,234."""
    if v == 0 or abs(v) >= 100:
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def latex_formula(value: sp.Basic) -> str:
    """LaTeX of a formula with each name of several letters upright and whole: NF is \\mathrm{NF}, not N times F."""
    names = {s: r"\mathrm{%s}" % s.name.replace("_", r"\_") for s in value.free_symbols if len(s.name) > 1}
    return sp.latex(value, symbol_names=names)


def numeric(value) -> bool:
    return isinstance(value, (int, float, sp.Basic, Fixed)) and not isinstance(value, bool)


def _sequence(value, fmt: str) -> str:
    parts = [cell(v, "csv" if fmt != "latex" else fmt).strip("$") for v in value]
    parts = [f"({p})" if isinstance(v, sp.Add) else p for v, p in zip(value, parts)]  # 8 x (H - 4) x (W - 4)
    if fmt == "latex":
        return "$" + r" \times ".join(parts) + "$"
    text = " x ".join(parts)
    symbolic = any(isinstance(v, sp.Basic) and not v.is_Integer for v in value)
    return f"`{text}`" if fmt == "markdown" and symbolic else text


def cell(value: Any, fmt: str) -> str:
    """One cell in format `fmt` (table, markdown, latex, csv, html)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Fixed):
        return str(value)
    if isinstance(value, Link):
        if fmt == "html":
            return f'<a href="{html.escape(value.href)}">{html.escape(value.text)}</a>'
        return f"[{cell(value.text, fmt)}]({value.href})" if fmt == "markdown" else cell(value.text, fmt)
    if isinstance(value, sp.Basic) and value.is_Integer:
        value = int(value)
    if isinstance(value, int):
        return str(value) if fmt == "csv" else f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}" if fmt == "csv" else _float(value)
    if isinstance(value, sp.Basic):
        if fmt == "latex":
            return f"${latex_formula(value)}$"
        text = str(value).replace("**", "^")
        return f"`{text}`" if fmt == "markdown" else html.escape(text) if fmt == "html" else text
    if isinstance(value, (list, tuple)):
        text = _sequence(value, fmt)
        return html.escape(text) if fmt == "html" else text
    text = str(value)
    if fmt == "latex":
        return latex_text(text)
    if fmt == "markdown":
        return text.replace("|", "\\|").replace("\n", " ")
    if fmt == "html":
        return html.escape(text)
    return text


def line_text(line, fmt: str) -> str:
    """A paragraph line: a string, or strings and values each formatted for `fmt`."""
    if isinstance(line, str):
        return latex_text(line) if fmt == "latex" else html.escape(line) if fmt == "html" else line
    return "".join(line_text(part, fmt) if isinstance(part, str) else cell(part, fmt) for part in line)
