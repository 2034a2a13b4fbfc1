"""`cnnlab run ... --dry-run`: the resolved config and one line about the model it builds, without training
(Hydra's `--cfg job`): a typo or a wrong size shows before a run folder is made."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab import config as config_mod
from cnnlab.analysis.layer_table import layer_table
from cnnlab.analysis.subject import config_subject


@dataclass
class DryRun:
    config: str  # the resolved config as YAML, what config.yaml of the run would hold
    model_line: str  # e.g. "simplenn: 1x28x28 in, 62,006 parameters (62,006 trainable), 0.65 M MACs per image"
    params: int
    macs_per_image: int

    def __str__(self) -> str:
        return f"{self.config.rstrip()}\n# {self.model_line}\n"


def dry_run(cfg, data_dir=None) -> DryRun:
    """What `cnnlab run` would train: the config (defaults and overrides resolved) and the model's size; the data
    is read only where the dataset's record does not fix the input shape and class count."""
    subject = config_subject(cfg, {}, data_dir)
    model = subject.build(subject.input)
    rows = layer_table(model, subject.input)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    macs = sum(row["macs"] for row in rows)
    line = (
        f"{subject.label}: {'x'.join(map(str, subject.input))} in, {params:,} parameters "
        f"({trainable:,} trainable), {macs / 1e6:,.2f} M MACs per image"
    )
    return DryRun(config_mod.dump(cfg), line, params, macs)
