"""Read a torch file of tensors without ever running code from it (weights_only=True), with one-line errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError


def _code_names(path: Path) -> str:
    """The classes or functions a refused file would have run (torch lists them for zip-format files)."""
    try:
        return ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # an old (non-zip) format cannot be listed; the refusal stands without the names
        return "Python objects"


def read_weights_only(path: Path, what: str = "weights file") -> object:
    """The tensors, numbers, strings, lists and dicts in `path`, on the CPU; a file holding code is refused."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):  # torch's refusal of a global (a class or function) in the pickle
            raise CnnlabError(
                f"{what} {path} holds code ({_code_names(path)}) and was not loaded; "
                f"give a file that holds only tensors (a state dict or a cnnlab checkpoint)"
            ) from None
        raise CnnlabError(f"{what} {path} is not a readable torch file (damaged pickle: {e})") from None
    except Exception as e:  # not a torch file at all: a truncated download, another format
        first_line = (str(e).splitlines() or [""])[0]
        raise CnnlabError(f"{what} {path} is not a readable torch file ({type(e).__name__}: {first_line})") from None
