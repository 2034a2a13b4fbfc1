"""The zoo: the study networks, each a spec in a few readable lines, registered by name.

Every entry names its hyper-parameters (`classes`, and e.g. `NF`, `NC`, `k` for later models) so
that the same text is instantiated for training and counted symbolically for the formulas table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cnnlab.models.build import ModelOptions


@dataclass(frozen=True)
class ZooEntry:
    name: str
    spec: str
    doc: str
    input: tuple[int, int, int]  # the input (C, H, W) it was studied at
    hyper: dict[str, int] = field(default_factory=dict)  # default values of named hyper-parameters
    options: ModelOptions = ModelOptions()


ZOO: dict[str, ZooEntry] = {}


def register(name: str, spec: str, doc: str, input: tuple[int, int, int], hyper: dict | None = None, **options) -> None:
    ZOO[name] = ZooEntry(name, spec, doc, input, {"classes": 10, **(hyper or {})}, ModelOptions(**options))


register(
    "table1",
    """conv 32 k5 p2 -> bn -> act -> maxpool 2
       conv 64 k5 p2 -> bn -> act -> maxpool 2
       conv 128 k5 p2 -> bn -> act -> maxpool 2
       flatten -> dense 64 -> act -> dropout -> dense classes""",
    "The 'Table 1' CIFAR-10 network: three conv5x5(pad 2)-ReLU-maxpool stages (32, 64, 128), dense 64, dense 10.",
    input=(3, 32, 32),
    bn=False,
)

register(
    "simplenn",
    """conv 8 k5 -> bn -> act -> maxpool 2
       conv 16 k3 -> bn -> act -> maxpool 2
       flatten -> dense 120 -> act -> dropout -> dense 84 -> act -> dropout -> dense classes""",
    "LeNet-5-like SimpleNN for CIFAR-10: conv5x5-8 BN ReLU pool, conv3x3-16 BN ReLU pool, dense 120, 84, 10.",
    input=(3, 32, 32),
    bn=True,
)

register(
    "net28",
    """conv 64 k5 -> bn -> act
       conv 32 k5 -> bn -> act -> maxpool 2
       conv 32 k3 -> bn -> act -> maxpool 2
       flatten -> dropout -> dense classes""",
    "The 28x28x3 classifier with no padding: 28 -> 24 -> 20 -> 10 -> 8 -> 4, so 32*4*4 = 512 features reach "
    "the dense layer; ELU; batch norm optional.",
    input=(3, 28, 28),
    hyper={"classes": 53},
    bn=False,
    activation="elu",
)

register(
    "fast_a",
    """conv 32 k3 p1 -> bn -> act -> maxpool 2
       conv 64 k3 p1 -> bn -> act -> maxpool 2
       conv 128 k3 p1 -> bn -> act -> maxpool 2
       conv 256 k3 p1 -> bn -> act -> gap -> dense classes""",
    "A plain fast CIFAR-10 network for CPUs: four conv3x3-BN-ReLU stages (32-64-128-256), pooling after "
    "each of the first three, global average pooling: about 15M multiply-accumulates per image.",
    input=(3, 32, 32),
)

register(
    "fast_b",
    """conv 32 k3 p1 -> bn -> act -> maxpool 2
       conv 64 k3 p1 -> bn -> act -> save r1
       conv 64 k3 p1 -> bn -> act -> conv 64 k3 p1 -> bn -> act -> add r1 -> maxpool 2
       conv 128 k3 p1 -> bn -> act -> save r2
       conv 128 k3 p1 -> bn -> act -> conv 128 k3 p1 -> bn -> act -> add r2 -> maxpool 2
       conv 256 k3 p1 -> bn -> act -> gap -> dense classes""",
    "A residual fast CIFAR-10 network: stem, two stages of conv + residual pair (64, 128) with pooling, "
    "conv 256, global average pooling.",
    input=(3, 32, 32),
)
