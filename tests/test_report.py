"""The run report opened in a real browser (Debian's chromium): self-contained, figures decode, tables present."""

import re
import shutil
import subprocess

import pytest

from cnnlab.runner import start_run
from tests.conftest import quick_config

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed; run scripts/install-system-packages.sh (Debian package chromium)")
    return path


@pytest.fixture(scope="module")
def run(data_root, tmp_path_factory):
    return start_run(quick_config(train={"epochs": 2}), tmp_path_factory.mktemp("runs"), data_root)


def test_report_is_self_contained(run):
    html = (run.path / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html), "the report must need no network"
    assert "<pre>" in html and "name: test" in html  # the configuration
    assert "<script" not in html and "Content-Security-Policy" in html  # and no script could run in it
    for heading in ("Final metrics", "Curves", "Architecture", "Per epoch"):
        assert f"<h2>{heading}</h2>" in html
    for layer in ("conv1", "bn1", "dense3"):
        assert f">{layer}<" in html


def probing(html: str, script: str) -> str:
    """A copy of a report's page with a probe script of the test's own: the page's content-security policy,
    which forbids every script, is taken out of the copy (and only of the copy)."""
    return re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html).replace("</body>", script + "</body>")


def open_in_chromium(page, tmp_path, images: int) -> str:
    """The DOM of a copy of `page` that writes into its title whether all `images` figures decoded and nothing but
    data: URLs was fetched (the Resource Timing API lists every fetch the page made)."""
    probe = tmp_path / f"probe-{page.name}"
    check = (
        "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
        " const fetched = performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith('data:'));"
        f" document.title = (imgs.length === {images} && imgs.every(i => i.complete && i.naturalWidth > 300)"
        " && fetched.length === 0) ? 'FIGURES-OK' : 'FIGURES-BAD ' + imgs.map(i => i.naturalWidth).join(',')"
        " + ' fetched: ' + fetched.join(','); });</script>"
    )
    probe.write_text(probing(page.read_text(), check))
    dom = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "<title>FIGURES-OK</title>" in dom.stdout, dom.stdout[:300] + dom.stderr[-2000:]
    return dom.stdout


def test_report_renders_in_chromium(run, tmp_path):
    # 2 curves; filters, 2 activations, Grad-CAM, confusion, most confused
    dom = open_in_chromium(run.path / "report.html", tmp_path, images=8)
    assert "test accuracy at best validation accuracy" in dom
    for heading in ("Look inside", "Accuracy per class (test split", "Sparsity of the weights"):
        assert heading in dom
    assert "share of peak (%)" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1100,1400",
            (run.path / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    page = Image.open(shot).convert("RGB")
    assert page.size == (1100, 1400)
    colours = page.getcolors(maxcolors=page.width * page.height)  # never None: there cannot be more colours than pixels
    assert len(colours) > 50  # text, tables and plot lines, not a blank page
    background = max(colours)[0] / (page.width * page.height)
    assert background < 0.97, f"{background:.1%} of the page is one colour"


def test_explain_page_renders_in_chromium(run, data_root, tmp_path):
    from cnnlab.report.explain_report import write_explain

    page = write_explain(run.path, data_root, index=4, layers=["conv1", "relu2"])
    # filters, activations of conv1 and relu2, Grad-CAM, confusion, most confused
    dom = open_in_chromium(page, tmp_path, images=6)
    assert "test example 4" in dom and "Accuracy per class" in dom


def test_report_reads_an_older_run_folder(run, tmp_path):
    """Reports read run folders made by earlier versions: a count they lack shows as '-'."""
    import json

    from cnnlab.report.run_report import write_run_report

    old = tmp_path / "old-run"
    shutil.copytree(run.path, old)
    rows = json.loads((old / "architecture.json").read_text())
    (old / "architecture.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "macs"} for r in rows]))
    html = write_run_report(old)["html"].read_text()
    assert re.search(r"<th[^>]*>-</th>", html) and "conv1" in html  # the total of the MACs it lacks


@pytest.mark.parametrize("threads, words", [(1, "(1 thread)"), (2, "(2 threads)")])
def test_thread_count_reads_as_english(run, tmp_path, threads, words):
    import json

    from cnnlab.report.run_report import write_run_report

    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps({**summary, "threads": threads}))
    assert words in write_run_report(copy)["html"].read_text()


def test_every_html_report_shrinks_images_to_the_page():
    """Every report (run, sweep, comparison, invariance, explain) is written through the one page template."""
    from cnnlab.report.page import TEMPLATES

    assert TEMPLATES.list_templates() == ["page.html.j2"]
    source = TEMPLATES.loader.get_source(TEMPLATES, "page.html.j2")[0]
    assert re.search(r"\bimg \{[^}]*width: 100%; height: auto;", source) or re.search(
        r"\bimg \{[^}]*max-width: 100%; height: auto;", source
    )


def test_a_figure_wider_than_the_page_fits_it_in_chromium(run, tmp_path):
    """A 1600 px figure (the segmentation rows are 1200 px in an 1100 px page) is drawn inside the page."""
    import base64
    import io

    from PIL import Image

    wide = io.BytesIO()
    Image.new("RGB", (1600, 300), "steelblue").save(wide, format="PNG")
    html = (run.path / "report.html").read_text()
    first = re.search(r'src="(data:image/(?:png|svg\+xml);base64,[^"]+)"', html).group(1)
    check = (
        "<script>window.addEventListener('load', () => { const page = document.documentElement.clientWidth;"
        " const body = document.body.getBoundingClientRect().right"
        " - parseFloat(getComputedStyle(document.body).paddingRight);"
        " const out = [...document.images].filter(i => i.getBoundingClientRect().right > body + 0.5).length;"
        " document.title = 'overflowing ' + out + ', page ' + document.documentElement.scrollWidth + '/' + page;"
        " });</script>"
    )
    probe = tmp_path / "wide.html"
    probe.write_text(
        probing(html.replace(first, "data:image/png;base64," + base64.b64encode(wide.getvalue()).decode()), check)
    )
    dom = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1100,900",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    title = re.search(r"<title>overflowing (\d+), page (\d+)/(\d+)</title>", dom.stdout)
    assert title, dom.stdout[:300] + dom.stderr[-2000:]
    assert title.group(1) == "0" and title.group(2) == title.group(3)  # no image past the margin, no sideways scrolling
