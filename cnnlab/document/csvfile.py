"""CSV of one table: raw numbers (no thousands separators), the total as its last row."""

from __future__ import annotations

import csv
import io

from cnnlab.document.blocks import Table
from cnnlab.document.cells import cell


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(table.header)
    for row in table.rows:
        writer.writerow([cell(v, "csv") for v in row])
    if table.total is not None:
        writer.writerow([cell(v, "csv") if v not in (None, "") else "" for v in table.total])
    return buf.getvalue()
