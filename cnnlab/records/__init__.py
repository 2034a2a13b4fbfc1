"""What cnnlab produces, as typed records with one reader and one writer each: a run's summary.json
(RunSummary), a comparison of runs (Comparison, compare.json) and a network's count (Counts).

Every record carries its schema version and the cnnlab version (and git commit) that made it; reading one
checks its shape, so a damaged or hand-edited file is named with the key that is wrong, never a traceback.
"""

from cnnlab.records.base import SCHEMA, RecordError, Provenance
from cnnlab.records.comparison import Comparison, MetricComparison, PairTest, Stats, VariantStats
from cnnlab.records.counts import Counts
from cnnlab.records.run_summary import STATUSES, EpochRow, RunSummary, check_epoch_rows

__all__ = [
    "SCHEMA",
    "RecordError",
    "Provenance",
    "Comparison",
    "MetricComparison",
    "PairTest",
    "Stats",
    "VariantStats",
    "Counts",
    "STATUSES",
    "EpochRow",
    "RunSummary",
    "check_epoch_rows",
]
