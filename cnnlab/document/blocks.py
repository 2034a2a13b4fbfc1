"""The document model every result is shown through: headings, paragraphs, tables, figures and code, each
written by one writer per format (terminal, Markdown, LaTeX, HTML, CSV). A column, a figure or a statistic is
added once, where the blocks are built from a record, and appears in every format.

Cells keep their raw values (integers, ratios, sympy formulas, shapes, text) until a writer formats them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union


@dataclass
class Heading:
    title: str
    level: int = 2  # 1: the document's title; 2: a section; 3: a part of one


@dataclass
class Text:
    lines: list  # each a string, or a list of strings and values (numbers, formulas) formatted per format
    title: str = ""
    note: bool = False  # a remark under a table or figure (smaller in HTML and PDF)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Any]]
    total: Optional[list[Any]] = None
    drop: tuple = ()  # headers (or tuples of headers that go together) a narrow terminal may leave out, first first
    emphasis: list[bool] = field(default_factory=list)  # rows shown in bold (e.g. a significant difference)
    name: str = ""  # the file name of its LaTeX and CSV copies (latex/<name>.tex); '' for none


@dataclass
class Figure:
    caption: str
    png: Path  # 150 dpi, for the terminal's list, Markdown and where vector is not wanted
    svg: Optional[Path] = None  # vector, embedded in HTML
    pdf: Optional[Path] = None  # vector, for LaTeX


@dataclass
class Code:
    text: str
    title: str = ""
    folded: bool = False  # shown folded (HTML <details>) under its title


Block = Union[Heading, Text, Table, Figure, Code]
