"""What the reports still written through their own templates (explain.html, the invariance report) share:
numbers as text, images embedded, per-class rows."""
from __future__ import annotations

import base64
from pathlib import Path


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def embed_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def embedded(run_path: Path, records: list[dict]) -> list[dict]:
    """Figure records (file relative to `run_path`) with their PNG embedded; figures no longer on disk left out."""
    return [{**fig, "data": embed_png(run_path / fig["file"])} for fig in records if (run_path / fig["file"]).exists()]


def class_rows(confusion: dict) -> list[dict]:
    """Per class (a row of the confusion counts): its test examples, how many were predicted right, the share."""
    rows = []
    for i, (name, row) in enumerate(zip(confusion["classes"], confusion["counts"])):
        n = sum(row)
        rows.append({"name": name, "examples": n, "right": row[i], "accuracy": fmt(row[i] / n) if n else "-"})
    return rows
