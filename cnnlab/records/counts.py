"""What a network costs, as `cnnlab summary --format json` writes it: per layer counts, totals, the training
step's memory, with the network and input they were counted for (formulas as text in symbolic mode)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cnnlab.atomic import write_json
from cnnlab.records.base import Provenance, read_json, validated


@dataclass
class Counts:
    model: str
    input: list[Any]  # C, H, W: numbers, or names in symbolic mode
    symbolic: bool
    layers: list[dict[str, Any]]  # one a layer: name, type, output_shape, weights, biases, params, buffers, macs, ...
    total: dict[str, Any]
    conventions: list[str]  # what the columns count, as every table's footer says
    training: Optional[dict[str, Any]] = None  # the training step's memory (estimated; measured where it ran)
    extra: dict[str, Any] = field(default_factory=dict)  # by_type, what-ifs, peers, shape arithmetic: as computed
    provenance: Provenance = field(default_factory=Provenance.now)

    def to_dict(self) -> dict:
        """Flat, as `cnnlab summary --format json` has always printed it, with the provenance keys added."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra", "provenance")}
        if out["training"] is None:
            del out["training"]
        return {**out, **self.extra, **dataclasses.asdict(self.provenance)}

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> "Counts":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "provenance"}
        prov = {f.name for f in dataclasses.fields(Provenance)}
        shaped = {k: v for k, v in (data if isinstance(data, dict) else {}).items() if k in names}
        if isinstance(data, dict):
            shaped["extra"] = {k: v for k, v in data.items() if k not in names and k not in prov}
            shaped["provenance"] = {k: v for k, v in data.items() if k in prov}
        return validated(cls, shaped if isinstance(data, dict) else data, path)

    @classmethod
    def read(cls, path: Path) -> "Counts":
        return cls.from_dict(read_json(path), path)

    def write(self, path: Path) -> None:
        write_json(path, self.to_dict())
