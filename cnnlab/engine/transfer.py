"""Transfer learning in a run: a torchvision network sized for the data's classes, its starting weights
(model.pretrained), which parameters train in each epoch (model.trainable, train.unfreeze_after), and the
optimizer groups whose learning rates the loop multiplies by their `lr_mult` (optim.body_lr_mult).

Normalisation: with torchvision's weights (imagenet, coco) inputs are normalised with the statistics those
weights were trained with, as torchvision's own transforms do. With a weights file or a cnnlab run folder they
are normalised with the target's own training split: a checkpoint carries no statistics, and the source run
normalised with its own training split, so either way the network's first layer sees inputs of per-channel mean
0 and std 1, as it did while it was trained. A restored or resumed run gets the same statistics from its config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from cnnlab.data import Statistics
from cnnlab.errors import CnnlabError
from cnnlab.models.spec_builder import set_batch_norms
from cnnlab.models.freeze import FreezeRecord, Prefixes, param_groups, set_trainable, trainable_at, trainable_prefixes
from cnnlab.models.pretrained import load_pretrained, weights_statistics
from cnnlab.models.torchvision_models import TransferNet, build_for_classes
from cnnlab.models.user import is_user_model
from cnnlab.models.zoo import ZOO


@dataclass
class Transfer:
    net: TransferNet
    prefixes: Prefixes  # model.trainable as module-name prefixes (None: all)
    pretrained: Optional[dict]  # what load_pretrained loaded; None when a checkpoint's weights replace them anyway
    freeze: FreezeRecord  # the selection in force now

    def summary(self, unfreeze_after: Optional[int]) -> dict:
        """What summary.json records of the transfer: the new heads, the policy, the weights loaded."""
        return {
            "heads": self.net.heads,
            "trainable": self.prefixes or "all",
            "unfreeze_after": unfreeze_after,
            "frozen_blocks": self.freeze.frozen_blocks,
            "pretrained": self.pretrained,
        }


def uses_torchvision(cfg) -> bool:
    return cfg.model.name is not None and cfg.model.name not in ZOO and not is_user_model(cfg.model.name)


def input_statistics(cfg) -> Optional[Statistics]:
    """The normalisation of torchvision's weights when the run starts from them, else None (see the docstring)."""
    if not uses_torchvision(cfg):
        return None
    found = weights_statistics(cfg.model.name, cfg.model.pretrained)
    return None if found is None else Statistics(mean=found[1], std=found[2], source=found[0])


def build_transfer(cfg, in_shape: tuple, classes: int, load_weights: bool, download: bool) -> Transfer:
    """The network with its pretrained weights (unless `load_weights` is false), model.bn_momentum and the
    model.trainable selection."""
    if in_shape[0] != 3:
        raise CnnlabError(
            f"{cfg.model.name} takes colour images (3 channels); {cfg.data.dataset} has {in_shape[0]}; "
            f"use a colour dataset or a zoo model"
        )
    net = build_for_classes(cfg.model.name, classes)
    set_batch_norms(net.module, cfg.model.bn_momentum, weight_frozen=False)
    record = (
        load_pretrained(net, cfg.model.pretrained, download, cfg.model.new_head).as_dict() if load_weights else None
    )
    prefixes = trainable_prefixes(cfg.model.trainable, net.heads)
    return Transfer(net, prefixes, record, set_trainable(net.module, prefixes))


def optimizer_groups(transfer: Transfer, body_lr_mult: float) -> list[dict]:
    """Every parameter that trains in some epoch, the heads apart from the body (the body at body_lr_mult)."""
    return param_groups(transfer.net.module, transfer.net.heads, transfer.prefixes, body_lr_mult)


def select_for_epoch(transfer: Transfer, epoch: int, unfreeze_after: Optional[int]) -> list[str]:
    """Apply the selection of 1-based `epoch` (the heads alone until unfreeze_after); the parameter names that
    became trainable with it."""
    transfer.freeze = set_trainable(
        transfer.net.module, trainable_at(epoch - 1, transfer.prefixes, transfer.net.heads, unfreeze_after)
    )
    return transfer.freeze.became_trainable
