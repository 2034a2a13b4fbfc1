"""Where a torchvision network's starting weights come from (`model.pretrained`), and what was loaded.

  none            torchvision's random initialisation
  imagenet, coco  torchvision's weights for that model (its DEFAULT when that is of the kind asked for), read
                  from torchvision's cache, $TORCH_HOME/hub/checkpoints/<file name in the weights' URL>;
                  fetched there only when the caller passes download=True (nothing is fetched silently)
  IMAGENET1K_V2   torchvision's weights by their name in the model's Weights enum (IMAGENET1K_V1, DEFAULT,
                  COCO_WITH_VOC_LABELS_V1, ...), read and fetched the same way
  a file          a torchvision-format state dict (.pth), or a cnnlab checkpoint (a dict with a 'model' key)
  a folder        a cnnlab run folder: its checkpoints/best.pt; or a folder of run folders (runs/<experiment>):
                  the newest run in it (run ids begin with the date and time) that has a best.pt
Files are read with weights_only=True (cnnlab.torchfile). A tensor loads when its name and shape match the
model's; a head whose shape changed (another number of classes), or any head when the caller asks for a new one
(model.new_head), is skipped and keeps its fresh initialisation;
any other difference means the file belongs to another architecture, and it is refused, naming the first keys
that do not fit. The record keeps the normalisation torchvision's weights were trained with, so the data side
can normalise inputs the same way.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import torch

from cnnlab.errors import CnnlabError
from cnnlab.models.torchvision_models import TransferNet
from cnnlab.torchfile import read_weights_only

TORCHVISION_SOURCES = {"imagenet": "IMAGENET1K_", "coco": "COCO_"}  # source -> prefix of torchvision's weight names
RUN_CHECKPOINT = Path("checkpoints") / "best.pt"  # inside a run folder (the layout is cnnlab/runfolder.py's)
SHOWN_MISFITS = 4


@dataclass
class LoadRecord:
    """What `load_pretrained` did, for the run's record."""

    source: str  # as given: none, imagenet, coco, or a path
    file: Optional[str] = None  # the file read
    weights: Optional[str] = None  # torchvision's name for them, e.g. ResNet18_Weights.IMAGENET1K_V1
    loaded: int = 0  # tensors loaded
    skipped_head: list[str] = field(
        default_factory=list
    )  # head tensors not loaded: shape changed, or a new head asked for
    missing: list[str] = field(default_factory=list)  # model tensors the file lacks (a new head, batch counters)
    unexpected: list[str] = field(default_factory=list)  # file tensors of parts this build leaves out
    left_out: list[str] = field(
        default_factory=list
    )  # parts of torchvision's model not built (DeepLab's aux_classifier)
    mean: Optional[list[float]] = None  # input normalisation the weights were trained with (torchvision's only)
    std: Optional[list[float]] = None

    def as_dict(self) -> dict:
        return asdict(self)


WEIGHT_NAME = re.compile(r"[A-Z][A-Z0-9_]*")  # how torchvision names weights: IMAGENET1K_V1, DEFAULT


def from_torchvision(source: str) -> bool:
    """Whether model.pretrained names torchvision's weights: a kind (imagenet, coco) or a name (IMAGENET1K_V1)."""
    return source in TORCHVISION_SOURCES or WEIGHT_NAME.fullmatch(source) is not None


def named_weights(name: str, source: str):
    """The member `source` (IMAGENET1K_V1, DEFAULT, ...) of model `name`'s Weights enum; refused with its names."""
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    if source not in enum.__members__:
        raise CnnlabError(
            f"model.pretrained {source}: {name}'s weights (torchvision's {enum.__name__}) are named "
            f"{', '.join(enum.__members__)}; or give none, imagenet, coco, a weights file or a run "
            f"folder"
        )
    return enum[source]


def torchvision_weights(name: str, source: str):
    """torchvision's weights enum member of kind `source` (imagenet, coco), or named `source`, for model `name`."""
    import torchvision

    if source not in TORCHVISION_SOURCES:
        return named_weights(name, source)
    available = list(torchvision.models.get_model_weights(name))
    kind = [w for w in available if w.name.startswith(TORCHVISION_SOURCES[source])]
    if not kind:
        raise CnnlabError(
            f"torchvision has no {source} weights for {name} (it has {', '.join(map(str, available)) or 'none'}); "
            f"set model.pretrained to the kind it has, to a weights file or to none"
        )
    default = getattr(type(kind[0]), "DEFAULT", None)
    return default if default in kind else kind[0]


def weights_statistics(name: str, source: str) -> Optional[tuple[str, list[float], list[float]]]:
    """(weights' name, mean, std): the input normalisation torchvision's `source` weights for model `name` were
    trained with, known without their file; None for files and run folders, which carry none."""
    if not from_torchvision(source):
        return None
    weights = torchvision_weights(name, source)
    transform = weights.transforms()
    return str(weights), list(transform.mean), list(transform.std)


def cached_file(weights) -> Path:
    """Where torchvision keeps these weights: $TORCH_HOME/hub/checkpoints/<the URL's file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def torchvision_file(weights, download: bool) -> Path:
    """The cached file of `weights`, downloaded first only when `download` is true."""
    path = cached_file(weights)
    if path.is_file():
        return path
    if not download:
        raise CnnlabError(
            f"{weights} is not on this machine: put {path.name} (from {weights.url}) into "
            f"{path.parent}, run with --download to fetch it, or set model.pretrained to a local file"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = torch.hub.HASH_REGEX.search(path.name)  # torchvision's file names end in a prefix of their sha256
    try:
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=digest.group(1) if digest else None)
    except Exception as e:  # no network, a proxy, a checksum mismatch: all end the same way for the user
        raise CnnlabError(
            f"could not download {weights.url} into {path.parent} ({e}); put the file there by hand "
            f"or set model.pretrained to a local file"
        ) from None
    return path


def state_dict_file(source: Path) -> Path:
    """The file to read for a path source: the file itself, a run folder's checkpoints/best.pt, or that of the
    newest run in a folder of runs."""
    if not source.exists():
        raise CnnlabError(
            f"model.pretrained: {source} does not exist; give none, imagenet, coco, a weights file "
            f"or a cnnlab run folder (run its source experiment first)"
        )
    if not source.is_dir():
        return source
    if (source / RUN_CHECKPOINT).is_file():
        return source / RUN_CHECKPOINT
    runs = sorted(run for run in source.iterdir() if (run / RUN_CHECKPOINT).is_file())
    if not runs:
        raise CnnlabError(
            f"model.pretrained: {source} holds no {RUN_CHECKPOINT}, neither itself nor in a run folder "
            f"inside it; give a cnnlab run that has finished at least one epoch, or a weights file"
        )
    return runs[-1] / RUN_CHECKPOINT


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a torchvision-format file or a cnnlab checkpoint (its 'model' entry)."""
    blob = read_weights_only(path, "pretrained weights file")
    state = blob["model"] if isinstance(blob, dict) and "model" in blob else blob
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise CnnlabError(
            f"{path} holds no state dict: expected a dict of tensors (torchvision's format) or a "
            f"cnnlab checkpoint (a dict whose 'model' entry is one)"
        )
    return state


def _under(key: str, parts) -> bool:
    return any(key == p or key.startswith(p + ".") for p in parts)


def _show(shape: torch.Size) -> str:
    return "x".join(map(str, shape)) or "scalar"


def match(
    net: TransferNet, state: dict[str, torch.Tensor], record: LoadRecord, new_head: bool = False
) -> dict[str, torch.Tensor]:
    """The tensors of `state` to load into `net` (none of its heads if `new_head`); fills the record's lists; refuses
    another architecture."""
    own = net.module.state_dict()
    load, misfits = {}, []
    for key, tensor in state.items():
        if key not in own:
            if _under(key, net.absent_parts):
                record.unexpected.append(key)
            else:
                misfits.append(f"{key} (only in the file)")
            continue
        head = _under(key, net.heads)
        if tensor.shape == own[key].shape and not (new_head and head):
            load[key] = tensor
        elif head:
            record.skipped_head.append(key)
        else:
            misfits.append(f"{key} (file {_show(tensor.shape)}, model {_show(own[key].shape)})")
    for key in own:
        if key not in state:
            if _under(key, net.heads) or key.endswith("num_batches_tracked"):  # a new head; a counter old files lack
                record.missing.append(key)
            else:
                misfits.append(f"{key} (not in the file)")
    if misfits:
        more = f" and {len(misfits) - SHOWN_MISFITS} more" if len(misfits) > SHOWN_MISFITS else ""
        raise CnnlabError(
            f"{record.file} does not fit {net.name}: {', '.join(misfits[:SHOWN_MISFITS])}{more}; "
            f"give weights saved from {net.name} (torchvision's format or a cnnlab run of {net.name})"
        )
    return load


def load_pretrained(net: TransferNet, source: str, download: bool = False, new_head: bool = False) -> LoadRecord:
    """Load `source`'s weights into `net.module` (see the module docstring), its heads too unless `new_head`, and
    say what was loaded."""
    left_out = list(net.absent_parts)
    if source == "none":
        return LoadRecord("none", left_out=left_out)
    if from_torchvision(source):
        path = torchvision_file(torchvision_weights(net.name, source), download)
        weights, mean, std = weights_statistics(net.name, source)
        record = LoadRecord(source, str(path), weights, mean=mean, std=std, left_out=left_out)
    else:
        path = state_dict_file(Path(source))
        record = LoadRecord(source, str(path), left_out=left_out)
    load = match(net, read_state_dict(path), record, new_head)
    net.module.load_state_dict(load, strict=False)
    record.loaded = len(load)
    return record
