"""What `cnnlab summary MODEL` and `cnnlab cost` count: the MODEL argument made into something to build.

MODEL is looked up in this order:
  1. a zoo name (`colour_cnn`), its hyper-parameters given as NAME=VALUE (`NF=32 NC=24 k=3`);
  2. a file: .yaml/.yml is an experiment, any other file a spec; a run folder: the experiment it ran;
  3. an inline spec: text with a space, a new line or '->' (`conv 100 k3`, `conv 8 k3 -> relu`), which no
     name has, so a spec is never mistaken for a name nor a misspelt name for a spec;
  4. an experiment name from experiments/ (its input shape and class count come from --input, classes=K,
     the task and the dataset's fixed facts; its data is loaded only when none of these tells; a torchvision
     model there is built with its head for those classes and its model.trainable selection);
  5. a torchvision model name (`resnet18`), built with weights=None (nothing is downloaded);
     NAME=VALUE go to its builder (`num_classes=10`; `classes=10` means the same);
  0. before all these, the user's own module, `file.py:Name` or `package.module:Name` (cnnlab.models.user):
     NAME=VALUE are its keyword arguments (read as YAML), in_channels comes from the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import yaml
from torch import nn

from cnnlab.analysis.fits import build_within_memory
from cnnlab.errors import CnnlabError
from cnnlab.models import recipe as recipes
from cnnlab.models.spec_builder import ModelOptions
from cnnlab.models.recipe import Recipe
from cnnlab.models.spec import short
from cnnlab.models.freeze import set_trainable, trainable_prefixes
from cnnlab.models.torchvision_models import build_for_classes, build_untrained, builder
from cnnlab.models import user
from cnnlab.models.zoo import ZOO

NAME = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")


@dataclass
class Subject:
    """A network to count: a spec recipe (buildable at any size, countable in formulas) or a module factory."""

    label: str
    input: Optional[tuple]  # the input it was made for, if known
    recipe: Optional[Recipe] = None
    factory: Optional[Callable[[tuple], nn.Module]] = None  # the input shape -> the module
    optim: object = None  # the experiment's OptimConfig, if it came from one
    own: bool = False  # the user's own module (file.py:Name): counted as it is, no formulas nor what-if sizes

    def build(self, in_shape: tuple, options: Optional[ModelOptions] = None) -> nn.Module:
        advice = "give a smaller --input or smaller hyper-parameters"
        if self.recipe is not None:
            return build_within_memory(lambda: self.recipe.build(in_shape, options), advice)
        return build_within_memory(lambda: self.factory(tuple(in_shape)), advice)


def parse_assignments(items: list[str], whole: bool = True) -> dict:
    """['NF=32', 'k=3'] -> {'NF': 32, 'k': 3}; values are whole numbers, or read as YAML when not `whole`
    (keyword arguments of the user's own module: act=elu, p=0.1)."""
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not NAME.match(name.strip()):
            raise CnnlabError(f"'{item}' is not NAME=VALUE (e.g. NF=32)")
        try:
            out[name.strip()] = int(value) if whole else yaml.safe_load(value)
        except (ValueError, yaml.YAMLError):
            raise CnnlabError(f"'{item}': the value must be a whole number") from None
    return out


def parse_input(text: str) -> tuple:
    """'3x32x32' -> (3, 32, 32); names stay names: '1xHxW' -> (1, 'H', 'W')."""
    parts = [p.strip() for p in re.split(r"[x,]", text)]
    if len(parts) != 3 or not all(p.isdigit() or NAME.match(p) for p in parts):
        raise CnnlabError(f"--input '{text}' is not CxHxW (e.g. 3x32x32, or 1xHxW with names for --symbolic)")
    return tuple(int(p) if p.isdigit() else p for p in parts)


def own_subject(
    name: str, args: dict, classes: Optional[int], label: str, shape: Optional[tuple] = None, optim=None
) -> Subject:
    """The user's own module: its keyword arguments; classes=K (or num_classes=K) is its class count."""
    args = dict(args)
    for key in ("classes", "num_classes"):
        found = args.pop(key, None)
        classes = found if classes is None else classes
    return Subject(label, shape, factory=lambda s: user.build(name, args, s[0], classes), optim=optim, own=True)


def _torchvision(name: str, kwargs: dict) -> Optional[Subject]:
    if builder(name) is None:
        return None
    if "classes" in kwargs:
        kwargs["num_classes"] = kwargs.pop("classes")
    label = " ".join([name] + [f"{k}={v}" for k, v in kwargs.items()])
    return Subject(label, (3, 224, 224), factory=lambda shape: build_untrained(name, **kwargs))


def _fixed_by_files(dataset: str, image_size: Optional[int]) -> tuple[Optional[tuple], Optional[int]]:
    """((C, H, W), class count) as far as the dataset's record fixes them (None where only loading it tells)."""
    from cnnlab.data.registry import lookup

    record = lookup(dataset)
    classes = len(record.classes) if record.classes else None
    if record.shape:
        return record.shape, classes
    if record.default_size is None:  # an image folder: its channels are known only from its files
        return None, classes
    size = record.decode_size(image_size)
    return (3, size, size), classes


def _experiment_io(cfg, given: dict, in_shape: Optional[tuple], data_dir) -> tuple[tuple, int]:
    """(input shape, class count) the experiment's model is built for; the data is loaded only when neither
    --input, classes=K, the task (colourize: greyscale in, data.palette_size colours out) nor the dataset tells."""
    from cnnlab.data import input_shape
    from cnnlab.data.root import data_root

    def model_input(images: tuple) -> tuple:
        return (1,) + tuple(images[1:]) if cfg.task == "colourize" else tuple(images)

    images, classes = _fixed_by_files(cfg.data.dataset, cfg.data.image_size)
    if images and cfg.data.input_size:  # batches are resized on the device before the model sees them
        images = (images[0], cfg.data.input_size, cfg.data.input_size)
    classes = len(cfg.data.classes) if cfg.data.classes else classes
    shape = in_shape or (model_input(images) if images else None)
    classes = cfg.data.palette_size if cfg.task == "colourize" else given.get("classes", classes)
    if shape is None or classes is None:
        try:
            images, found = input_shape(cfg.data, data_root(data_dir))
        except CnnlabError as e:
            raise CnnlabError(
                f"{e}\nTo count without the data, give the input and the class count: --input CxHxW classes=K"
            ) from None
        shape = shape or model_input(images)
        classes = found if classes is None else classes
    return shape, classes


def _experiment(
    path_or_name: str, given: dict, data_dir, in_shape: Optional[tuple], what: str = "experiment"
) -> Subject:
    from cnnlab.experiment_files import load_experiment

    return config_subject(load_experiment(path_or_name), given, data_dir, in_shape, what)


def config_subject(cfg, given: dict, data_dir, in_shape: Optional[tuple] = None, what: str = "experiment") -> Subject:
    """The network a validated config trains, as something to count (also `cnnlab run --dry-run`)."""
    shape, classes = _experiment_io(cfg, given, in_shape, data_dir)
    if user.is_user_model(cfg.model.name):
        return own_subject(
            cfg.model.name,
            {**cfg.model.args, **given},
            classes,
            f"experiment {cfg.name} ({cfg.model.name})",
            tuple(shape),
            cfg.optim,
        )
    if cfg.model.name is not None and cfg.model.name not in ZOO:
        if given:
            raise CnnlabError(
                f"experiment {cfg.name} uses torchvision's {cfg.model.name}, which has no named hyper-parameters"
            )
        return Subject(
            f"experiment {cfg.name} ({cfg.model.name})",
            tuple(shape),
            factory=lambda s: _transfer_module(cfg.model, classes),
            optim=cfg.optim,
        )
    recipe = recipes.from_config(cfg.model, classes).with_values(given)
    return Subject(f"{what} {cfg.name} ({cfg.model.name or 'spec'})", shape, recipe=recipe, optim=cfg.optim)


def _transfer_module(model_cfg, classes: int) -> nn.Module:
    """A torchvision model as an experiment trains it (untrained weights): its head and trainable selection."""
    net = build_for_classes(model_cfg.name, classes)
    set_trainable(net.module, trainable_prefixes(model_cfg.trainable, net.heads))
    return net.module


def _experiment_exists(name: str) -> bool:
    from cnnlab.experiment_files import find_experiment

    try:
        find_experiment(name)
        return True
    except CnnlabError:
        return False


def _is_file(path: Path) -> bool:
    """Whether `path` is a file; False for a name no file can have (a long inline spec: 'File name too long')."""
    try:
        return path.is_file()
    except OSError:
        return False


def _inline_spec(model: str) -> Recipe:
    try:
        return recipes.from_spec(model)
    except CnnlabError as e:
        raise CnnlabError(f"'{short(model)}' is read as an inline spec (it has a space or '->'): {e}") from None


def resolve(model: str, args: list[str] = (), data_dir=None, in_shape: Optional[tuple] = None) -> Subject:
    """The Subject a MODEL argument names, with its NAME=VALUE arguments applied (`in_shape`: the --input, if given)."""
    own = user.is_user_model(model)
    given = parse_assignments(list(args), whole=not own)
    label = " ".join([model] + list(args))
    if own:
        return own_subject(user.locate(model, [Path.cwd()]), given, None, label)
    if model in ZOO:
        return Subject(label, ZOO[model].input, recipe=recipes.from_zoo(model).with_values(given))
    path = Path(model)
    if _is_file(path / "config.yaml"):  # a run folder: the config it was trained with
        return _experiment(str(path / "config.yaml"), given, data_dir, in_shape, what=f"run {path.name} of")
    if _is_file(path):
        if path.suffix in (".yaml", ".yml"):
            return _experiment(str(path), given, data_dir, in_shape)
        return Subject(path.name, None, recipe=recipes.from_spec(path.read_text(encoding="utf-8")).with_values(given))
    if "->" in model or any(c.isspace() for c in model):
        return Subject(f"spec '{' '.join(model.split())}'", None, recipe=_inline_spec(model).with_values(given))
    if _experiment_exists(model):
        return _experiment(model, given, data_dir, in_shape)
    found = _torchvision(model, dict(given))
    if found is not None:
        return found
    raise CnnlabError(
        f"'{model}' is not a zoo model ({', '.join(ZOO)}), a spec file, an experiment, a run folder, a torchvision "
        f"model (e.g. resnet18) or your own module (mynet.py:Net, mypackage.nets:Net); an inline spec is layers with "
        f"their numbers, e.g. 'conv 100 k3' or 'conv 8 k3 -> relu -> flatten -> dense 10'; see `cnnlab zoo`"
    )
