"""Seeded, class-balanced subsets and stratified train/validation splits (indices only)."""

from __future__ import annotations

import torch


def class_balanced_subset(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of `n` examples drawn evenly from every class (the first n % K classes get one more)."""
    classes = torch.unique(labels)
    per_class = [n // len(classes) + (1 if i < n % len(classes) else 0) for i in range(len(classes))]
    picked = []
    for c, k in zip(classes.tolist(), per_class):
        members = torch.nonzero(labels == c).flatten()
        picked.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.sort(torch.cat(picked)).values


def stratified_split(
    labels: torch.Tensor, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices) with `fraction` of every class held out for validation."""
    train, val = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        k = int(round(len(members) * fraction))
        val.append(members[:k])
        train.append(members[k:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values


def random_subset(total: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of `n` of `total` examples, seeded (for per-pixel datasets, where classes share images)."""
    return torch.sort(torch.randperm(total, generator=generator)[:n]).values


def random_split(total: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out) indices with `fraction` of `total` held out, seeded."""
    order = torch.randperm(total, generator=generator)
    k = int(round(total * fraction))
    return torch.sort(order[k:]).values, torch.sort(order[:k]).values
