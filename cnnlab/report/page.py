"""Writing a report's blocks in every format: report.html (self-contained: images embedded, no script, a
content-security policy that forbids any), report.md, a latex/ folder (a document that `\\input`s one booktabs
file per table and includes vector figures) and report.pdf (report.html printed by headless Chromium, with the
print rules of the page: the route that prints exactly what a reader sees, with the browser the tests use)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import jinja2
import torch

from cnnlab.atomic import write_atomic, write_text
from cnnlab.document import Block, Figure, Table, to_html, to_latex, to_markdown
from cnnlab.document.latex import latex_document, table_latex
from cnnlab.errors import CnnlabError
from cnnlab.version import made_by

FORMATS = ("html", "md", "latex", "pdf")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("cnnlab", "report/templates"),
    autoescape=jinja2.select_autoescape(["html", "html.j2"]),  # the templates are named *.html.j2
    undefined=jinja2.StrictUndefined,
)


def report_link(out_dir: Path, run_dir: Path) -> str:
    """A link from a report in `out_dir` to a run's report.html, relative, so that the folders can move together."""
    return Path(os.path.relpath(Path(run_dir, "report.html"), out_dir)).as_posix()


def write_html(path: Path, title: str, blocks: list[Block]) -> Path:
    page = TEMPLATES.get_template("page.html.j2").render(
        title=title, body=jinja2.utils.markupsafe.Markup(to_html(blocks)), made_by=made_by(), torch=torch.__version__
    )
    write_text(path, page)
    return path


def write_markdown(path: Path, blocks: list[Block]) -> Path:
    write_text(path, to_markdown(blocks, path.parent) + f"\n*Made by {made_by()}.*\n")
    return path


def write_latex(folder: Path, title: str, blocks: list[Block]) -> Path:
    """latex/report.tex, with latex/tables/<name>.tex (booktabs, to \\input into a write-up) and latex/figures/."""
    out = folder / "latex"
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    body, used = [], set()
    for b in blocks:
        if isinstance(b, Table) and b.name:
            name = b.name if b.name not in used else f"{b.name}-{len(used)}"
            used.add(name)
            write_text(out / "tables" / f"{name}.tex", table_latex(b))
            body.append(rf"\input{{tables/{name}}}")
        elif isinstance(b, Figure):
            source = b.pdf if b.pdf is not None and b.pdf.exists() else b.png
            copy = out / "figures" / source.name
            write_atomic(copy, lambda f, s=source: f.write(s.read_bytes()), binary=True)
            body.append(to_latex([Figure(b.caption, copy)], out))
        else:
            body.append(to_latex([b], out))
    body.append(rf"\vfill{{\small Made by {made_by()} with torch {torch.__version__}.}}")
    write_text(out / "report.tex", latex_document("\n".join(body), title))
    return out / "report.tex"


def find_browser() -> str:
    found = os.environ.get("CNNLAB_BROWSER") or next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if not found:
        raise CnnlabError(
            "--format pdf prints the HTML report with headless Chromium, and none was found (looked for "
            f"{', '.join(BROWSERS)} on PATH and $CNNLAB_BROWSER); install chromium, or write "
            "--format latex and compile latex/report.tex with pdflatex"
        )
    return found


def write_pdf(html_path: Path) -> Path:
    """The PDF beside an HTML report, printed by headless Chromium (A4, the page's print rules)."""
    browser, html_path, pdf = find_browser(), html_path.resolve(), html_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="cnnlab-pdf-") as scratch:
        target = Path(scratch) / "report.pdf"
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-pdf-header-footer",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={scratch}/profile",
            f"--print-to-pdf={target}",
            html_path.as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise CnnlabError(f"{browser} could not print {html_path} to PDF ({type(e).__name__}: {e})") from None
        if not target.exists() or target.stat().st_size == 0:
            tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise CnnlabError(f"{browser} did not print {html_path} to PDF (exit {done.returncode}: {tail})")
        write_atomic(pdf, lambda f: f.write(target.read_bytes()), binary=True)
    return pdf


def write_report(
    folder: Path, title: str, blocks: list[Block], formats: tuple = ("html", "md"), stem: str = "report"
) -> dict[str, Path]:
    """The report as folder/<stem>.html, .md, .pdf (printed from the HTML, written first) and folder/latex/,
    those of `formats` (html, md, latex, pdf)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise CnnlabError(f"--format {', '.join(unknown)}: choose from {', '.join(FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    written = {"html": write_html(folder / f"{stem}.html", title, blocks)} if {"html", "pdf"} & set(formats) else {}
    if "md" in formats:
        written["md"] = write_markdown(folder / f"{stem}.md", blocks)
    if "latex" in formats:
        written["latex"] = write_latex(folder, title, blocks)
    if "pdf" in formats:
        written["pdf"] = write_pdf(written["html"])
    return written
