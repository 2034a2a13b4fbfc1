"""Initial weights: torch's default, Xavier, Kaiming or identity (dirac) for a whole network, and the whitening
first convolution, computed from training images.

Identity convolutions make a deep plain network start as a shallow one (each conv passes its input channels on);
a whitening first layer hands the network decorrelated pixels of unit variance, so it need not learn that first.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.errors import CnnlabError

INIT_SCHEMES = ("default", "xavier", "kaiming", "dirac")
WHITEN_IMAGES = 5000  # training images whose patches estimate the covariance (more change it little)


def dirac_(conv: nn.Conv2d) -> None:
    """Each group's first filters copy its input channels (a 1 at the kernel's centre); the other filters keep
    their weights; the bias is zeroed, so the conv is the identity on its input channels."""
    g = conv.groups
    out_g, in_g = conv.out_channels // g, conv.in_channels // g
    with torch.no_grad():
        for w in conv.weight.view(g, out_g, in_g, *conv.kernel_size):
            nn.init.dirac_(w[:in_g])
        if conv.bias is not None:
            conv.bias.zero_()


def initialise(model: nn.Module, scheme: str) -> None:
    """Xavier or Kaiming for conv and dense weights (biases to zero); dirac for convs (dense layers keep torch's
    own); 'default' keeps torch's own."""
    if scheme == "default":
        return
    for m in model.modules():
        if scheme == "dirac":
            if isinstance(m, nn.Conv2d):
                dirac_(m)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def patch_covariance(images: torch.Tensor, k: int, chunk: int = 1000) -> torch.Tensor:
    """The (C*k*k)-square second-moment matrix of every k x k patch (stride 1, no padding) of `images`, entries
    ordered as a conv weight's (C, kh, kw): each chunk's sum of outer products in float32 (one batched matmul of
    the unfolded patches, no copy of them), summed over chunks in float64."""
    c = images.shape[1]
    total = torch.zeros(c * k * k, c * k * k, dtype=torch.float64, device=images.device)
    count = 0
    for part in images.split(chunk):
        patches = F.unfold(part.float(), k)  # (B, C*k*k, positions)
        total += torch.bmm(patches, patches.transpose(1, 2)).sum(0).double()
        count += patches.shape[0] * patches.shape[2]
    return total / count


def whitening_filters(images: torch.Tensor, k: int, out: int, eps: float) -> torch.Tensor:
    """`out` filters (out/2 pairs) of shape (C, k, k): the covariance's leading eigenvectors scaled by
    1/sqrt(eigenvalue + eps), then the same negated (so a following ReLU-like activation loses no sign)."""
    values, vectors = torch.linalg.eigh(patch_covariance(images, k))  # ascending
    order = values.flip(0)[: out // 2], vectors.flip(1)[:, : out // 2]
    scaled = (order[1] / torch.sqrt(order[0] + eps)).T.reshape(out // 2, images.shape[1], k, k)
    return torch.cat([scaled, -scaled]).float()


def first_conv(model: nn.Module) -> nn.Conv2d:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise CnnlabError("model.whiten needs a convolution in the model; it has none")
    return conv


def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float) -> nn.Conv2d:
    """Set the first convolution's weights to whitening filters of `images` (normalised, (N, C, H, W); a random
    sample of the training images, WHITEN_IMAGES are enough) and freeze them; its bias (if any) stays trainable.
    Returns that convolution."""
    conv = first_conv(model)
    c, (kh, kw), out = conv.in_channels, conv.kernel_size, conv.out_channels
    most = 2 * c * kh * kw
    if kh != kw or conv.groups != 1 or conv.dilation != (1, 1) or out % 2 or out > most:
        raise CnnlabError(
            f"model.whiten: the first convolution ({c} -> {out} channels, kernel {kh}x{kw}, groups "
            f"{conv.groups}) must have a square kernel, groups=1 and an even number of filters, at most "
            f"2*C*k*k = {most}; change it in the spec (e.g. 'conv {most} k{kh}') or turn model.whiten off"
        )
    with torch.no_grad():
        conv.weight.copy_(whitening_filters(images, kh, out, eps).to(conv.weight.device))
    conv.weight.requires_grad_(False)
    return conv
