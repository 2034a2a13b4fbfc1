"""The zoo: the study networks, each a spec in a few readable lines, registered by name.

Every entry names its hyper-parameters (`classes`, and e.g. `NF`, `NC`, `k` for later models) so
that the same text is instantiated for training and counted symbolically for the formulas table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cnnlab.models.spec_builder import ModelOptions


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

# The colourization networks: greyscale in, NC colour classes per pixel out. Sizes are named
# hyper-parameters (NF filters, NC colours, kernel k, padding k//2 keeps H and W for odd k), so the
# formulas table reads in NF, NC and k. Layer order as studied: conv, then pool/upsample, then BN, ReLU.
COLOUR = dict(input=(1, 32, 32), hyper={"NF": 32, "NC": 24, "k": 3}, bn=True)

register(
    "colour_cnn",
    """conv NF k=k p=k//2 -> maxpool 2 -> bn -> act
       conv 2*NF k=k p=k//2 -> maxpool 2 -> bn -> act
       conv 2*NF k=k p=k//2 -> bn -> act
       conv NF k=k p=k//2 -> upsample 2 -> bn -> act
       conv NC k=k p=k//2 -> upsample 2 -> bn -> act
       conv NC k=k p=k//2""",
    "Colourization CNN: [conv-NF, maxpool, BN, ReLU], [conv-2NF, maxpool, BN, ReLU], [conv-2NF, BN, ReLU], "
    "[conv-NF, upsample x2, BN, ReLU], [conv-NC, upsample x2, BN, ReLU], conv-NC; "
    "greyscale 32x32 in, NC scores per pixel.",
    **COLOUR,
)

# U-Net wiring (skips by concatenation along channels, current tensor first):
#   d1 = block1(x)            NF  x H/2      ->  concatenated before block 5
#   d2 = block2(d1)           2NF x H/4      ->  concatenated before block 4
#   block3(d2)                2NF x H/4;  cat d2 -> 4NF
#   block4                    NF  x H/2;  cat d1 -> 2NF
#   block5                    NC  x H;    cat x  -> NC + 1 (the greyscale input)
#   final conv                NC  x H
register(
    "colour_unet",
    """save x
       conv NF k=k p=k//2 -> maxpool 2 -> bn -> act -> save d1
       conv 2*NF k=k p=k//2 -> maxpool 2 -> bn -> act -> save d2
       conv 2*NF k=k p=k//2 -> bn -> act
       cat d2
       conv NF k=k p=k//2 -> upsample 2 -> bn -> act
       cat d1
       conv NC k=k p=k//2 -> upsample 2 -> bn -> act
       cat x
       conv NC k=k p=k//2""",
    "Colourization U-Net: the colourization CNN with skips by channel concatenation, first block to last, "
    "second to second last, and the greyscale input concatenated before the final convolution.",
    **COLOUR,
)

register(
    "seg_unet",
    """conv NF k3 p1 -> bn -> act -> conv NF k3 p1 -> bn -> act -> save e1 -> maxpool 2
       conv 2*NF k3 p1 -> bn -> act -> conv 2*NF k3 p1 -> bn -> act -> save e2 -> maxpool 2
       conv 4*NF k3 p1 -> bn -> act -> conv 4*NF k3 p1 -> bn -> act -> save e3 -> maxpool 2
       conv 8*NF k3 p1 -> bn -> act -> conv 8*NF k3 p1 -> bn -> act -> save e4 -> maxpool 2
       conv 8*NF k3 p1 -> bn -> act -> conv 8*NF k3 p1 -> bn -> act
       upsample 2 -> cat e4 -> conv 8*NF k3 p1 -> bn -> act -> conv 4*NF k3 p1 -> bn -> act
       upsample 2 -> cat e3 -> conv 4*NF k3 p1 -> bn -> act -> conv 4*NF k3 p1 -> bn -> act
       upsample 2 -> cat e2 -> conv 2*NF k3 p1 -> bn -> act -> conv 2*NF k3 p1 -> bn -> act
       upsample 2 -> cat e1 -> conv NF k3 p1 -> bn -> act -> conv NF k3 p1 -> bn -> act
       conv classes k1""",
    "A small U-Net for semantic segmentation: four down stages (NF, 2NF, 4NF, 8NF) and a bottleneck (8NF) at "
    "1/16 of the input's size, each two conv3x3-BN-act; up stages concatenate the matching encoder output; "
    "model.upsample chooses nearest, bilinear or transposed-convolution upsampling, model.activation e.g. relu "
    "or elu.",
    input=(3, 128, 128),
    hyper={"NF": 16, "classes": 2},
)
