"""torchvision's networks built untrained (weights=None: nothing is downloaded), with the head sized for K classes.

Classification models are any of `torchvision.models.list_models(module=torchvision.models)` (resnet18,
mobilenet_v3_small, efficientnet_b0, ...). Segmentation models are torchvision's DeepLabV3 and FCN; they
return a dict, so `SegmentationLogits` re-hosts their `backbone` and `classifier` and returns the
(B, K, H, W) logits that cnnlab's per-pixel task expects. It keeps torchvision's attribute names, so its
state-dict keys are exactly those of torchvision's model built with `aux_loss=False`: a torchvision
checkpoint loads into it and its checkpoints load back into torchvision.

The auxiliary head (`aux_classifier`, a training-time branch on an earlier stage) is not built: it would cost
a forward pass of its own every step and cnnlab's loss does not use it. torchvision's COCO weights include
it; loading them lists its tensors as unexpected (see `TransferNet.absent_parts`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.errors import CnnlabError

SEGMENTATION_FAMILIES = ("deeplabv3_*", "fcn_*")  # _SimpleSegmentationModel: backbone -> classifier -> upsample


def classification_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def segmentation_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models.segmentation, include=SEGMENTATION_FAMILIES)


def transfer_names() -> list[str]:
    """Every torchvision name `build_for_classes` accepts (config validation can offer these)."""
    return classification_names() + segmentation_names()


def builder(name: str) -> Optional[Callable[..., nn.Module]]:
    """torchvision's builder function for `name`, or None when torchvision has no model of that name."""
    import torchvision

    if name not in torchvision.models.list_models():
        return None
    return torchvision.models.get_model_builder(name)


def build_untrained(name: str, **kwargs) -> nn.Module:
    """torchvision's `name` with random weights: weights=None and weights_backbone=None, so nothing is fetched."""
    make = builder(name)
    if make is None:
        raise CnnlabError(f"torchvision has no model '{name}'; see torchvision.models.list_models()")
    accepted = inspect.signature(make).parameters
    config = {"weights": None, **({"weights_backbone": None} if "weights_backbone" in accepted else {}), **kwargs}
    try:
        return make(**config)
    except TypeError as e:
        raise CnnlabError(f"torchvision's {name} does not take {', '.join(kwargs)}: {e}") from None


class SegmentationLogits(nn.Module):
    """torchvision's DeepLabV3 / FCN without the auxiliary head, returning the 'out' logits as a tensor.

    Children are torchvision's own `backbone` and `classifier` under the same names, so state-dict keys match
    torchvision's. The forward is torchvision's (`_SimpleSegmentationModel.forward`) minus the auxiliary branch.
    """

    def __init__(self, segmentation_model: nn.Module):
        super().__init__()
        self.backbone = segmentation_model.backbone
        self.classifier = segmentation_model.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)["out"]
        logits = self.classifier(features)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


@dataclass
class TransferNet:
    """A torchvision network sized for the task, and what loading and freezing need to know about it."""

    name: str  # torchvision's name, e.g. resnet18
    module: nn.Module
    heads: list[str]  # the layers sized for K classes (`fc`, `classifier.3`, `classifier.4`): skipped when
    # their shape differs from the weights', trained alone by `trainable: last`
    task: str  # "classify" or "segment"
    absent_parts: tuple[str, ...] = ()  # torchvision weights' parts this build leaves out (the auxiliary head)


def head_names(module: nn.Module, classes: int) -> list[str]:
    """The last Linear or Conv2d registered: torchvision registers the head after the body in all these models."""
    layers = [(n, m) for n, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    name, layer = layers[-1]
    width = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    if width != classes:
        raise CnnlabError(
            f"cannot tell the head of this model: its last layer {name} has {width} outputs, not {classes}"
        )
    return [name]


def build_for_classes(name: str, classes: int) -> TransferNet:
    """torchvision's `name`, untrained, whose head(s) output `classes` scores (per pixel for segmentation)."""
    if name in segmentation_names():
        module = SegmentationLogits(build_untrained(name, num_classes=classes, aux_loss=False))
        return TransferNet(name, module, head_names(module, classes), "segment", absent_parts=("aux_classifier",))
    if name in classification_names():
        module = build_untrained(name, num_classes=classes)
        return TransferNet(name, module, head_names(module, classes), "classify")
    raise CnnlabError(
        f"'{name}' is not a torchvision classification model or one of its segmentation models "
        f"({', '.join(segmentation_names())}); e.g. resnet18, mobilenet_v3_small, efficientnet_b0"
    )
