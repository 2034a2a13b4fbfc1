"""Grad-CAM (Selvaraju et al. 2017): where in the image a layer's evidence for a class lies.

For a layer with output A (channels k) and the class score y (the logit, before softmax), each channel
is weighted by its mean gradient alpha_k = mean_ij dy/dA_kij, and the map is ReLU(sum_k alpha_k A_k),
upsampled (bilinear) to the input size.

Written on a forward hook and `torch.autograd.grad` rather than on `register_full_backward_hook`:
the hook keeps the layer's own output tensor and passes the network a copy (cnnlab.explain.hooks),
so the gradient is taken with respect to exactly that tensor. A backward hook is fired per module
call and gets confused when one module runs in several places (captum issue 1082); and a tensor
grabbed after an in-place ReLU has been overwritten and re-parented in the graph (pytorch-grad-cam
issues 147, 185). Neither can happen here: the tensor belongs to one named call of one module, and no
later operation touches it. The parameters' `.grad` are left as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.errors import CnnlabError
from cnnlab.explain.hooks import evaluating, recording
from cnnlab.explain.layer_listing import find_layer


@dataclass
class ClassMap:
    """Maps (N, H, W) at the input size, each scaled to 0..1 by its own maximum `peak` (N,) (0 where the map is 0)."""

    maps: torch.Tensor
    peak: torch.Tensor
    probs: torch.Tensor  # (N, classes) softmax of the model's outputs
    layer: str
    call: int  # which call of the layer (1-based)
    grid: tuple[int, int]  # the layer's own map (H, W) before upsampling: the finest detail the map can show


def grad_cam(
    model: nn.Module, x: torch.Tensor, layer: str, targets: Optional[torch.Tensor] = None, call: Optional[int] = None
) -> ClassMap:
    """Grad-CAM of the classes `targets` (N,; default: the predicted ones) for inputs `x` (N, C, H, W) at
    `layer`, at its call number `call` (1, 2, ...; default: its last) when the layer runs more than once."""
    modules = {layer: find_layer(model, layer)}
    with evaluating(model), recording(modules, keep_graph=True) as outputs, torch.enable_grad():
        logits = model(x)
        if not outputs[layer]:
            raise CnnlabError(
                f"layer '{layer}' did not run in the forward pass; pick one that does (see `cnnlab layers`)"
            )
        calls = outputs[layer]
        call = len(calls) if call is None else call
        if not 1 <= call <= len(calls):
            raise CnnlabError(f"layer '{layer}' ran {len(calls)} time(s); there is no call {call}")
        a = calls[call - 1]
        if a.dim() != 4:
            raise CnnlabError(f"Grad-CAM needs a layer with (C, H, W) output; '{layer}' gives {list(a.shape[1:])}")
        if targets is None:
            targets = logits.argmax(1)
        score = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()  # images are independent in eval mode
        (grad,) = torch.autograd.grad(score, a)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a.detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1)
    maps = cam / peak.clamp_min(torch.finfo(cam.dtype).tiny).view(-1, 1, 1)
    return ClassMap(maps, peak, logits.detach().float().softmax(1), layer, call, tuple(a.shape[-2:]))
