"""Checkpoints: written atomically, read with weights_only=True (never runs code from the file)."""
from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.atomic import save_torch
from cnnlab.errors import CnnlabError


def save(path: Path, **state) -> None:
    save_torch(path, state)


def load(path: Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CnnlabError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # unpickling errors come in many types; name the file and the reason
        raise CnnlabError(f"cannot load checkpoint {path} safely (weights only): {e}") from None
