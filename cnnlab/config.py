"""The experiment config: a typed schema, YAML reading, `key=value` overrides, clear errors (experiments by name:
cnnlab.experiment_files).

Every section refuses unknown keys, so a typo (`optim.lrr`) stops the run before it starts with the
file, the key and the allowed keys named.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
import typing
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnlab import metrics
from cnnlab.data.registry import DATASETS
from cnnlab.errors import CnnlabError, close_names, did_you_mean
from cnnlab.models.init import INIT_SCHEMES
from cnnlab.models.layer_kinds import ACTIVATIONS, UPSAMPLE_MODES
from cnnlab.models.pretrained import WEIGHT_NAME, named_weights
from cnnlab.models.torchvision_models import segmentation_names, transfer_names
from cnnlab.models.user import is_user_model
from cnnlab.models.zoo import ZOO

MONITORS = tuple(metrics.split_key("val", m) for m in metrics.SPLIT_METRICS)  # validation metrics best.pt can follow
MAX_SEED = 2**32 - 1  # torch's generators take 64 bits; per-epoch seeds are derived as seed * 100003 + epoch
NAME_FORM = re.compile(r"[^\W_][\w.+=,-]*")  # one folder name: never a path, never . or ..
MAX_VALUES = 100_000  # values in a config once YAML aliases are expanded; more is a mistake or an attack
SHORT = reprlib.Repr()  # a value shown in a message: a few items, a few levels, never the whole of a huge one
SHORT.maxlevel, SHORT.maxlist, SHORT.maxdict, SHORT.maxstring, SHORT.maxother = 2, 6, 6, 80, 80
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


def name_problem(name: str) -> Optional[str]:
    """Why `name` (of an experiment or a sweep, which names a folder) is not a name, or None."""
    if NAME_FORM.fullmatch(name):
        return None
    return (
        "a name is one folder name: letters, digits and _ . - + = , starting with a letter or digit "
        "(no /, no .., no absolute path)"
    )


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a NaN would fail later, blamed on something else


class AugmentConfig(Section):
    crop_padding: int = Field(0, ge=0, le=16, description="random crop after zero padding by this many pixels (0: off)")
    flip: Union[bool, Literal["alternating"]] = Field(
        False,
        description="true: mirror a random half of each batch; "
        "alternating: each image on every other epoch, from a seeded random half",
    )
    translate: int = Field(
        0, ge=0, le=16, description="random shift by up to N pixels, the border filled by reflection (0: off)"
    )
    zoom: float = Field(
        1.0,
        ge=1.0,
        le=4.0,
        description="enlarge each image by a random factor in [1, zoom] about a random point, cut back to its "
        "size; masks alike (1: off)",
    )


class DataConfig(Section):
    dataset: Literal[tuple(DATASETS)] = "fashion_mnist"
    path: Optional[str] = Field(None, description="folder or archive for idx/imagefolder (relative to the data root)")
    image_size: Optional[int] = Field(None, ge=4, description="resize image-folder images to this square size")
    colour_class: str = Field("horse", description="colourize: the class whose images are used, or 'all'")
    palette_size: int = Field(24, ge=2, le=254, description="colourize: NC, the number of k-means palette colours")
    test_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="share held out for testing when a dataset has no test split (Penn-Fudan)"
    )
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    split_seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="seed of the subset and train/validation split (the run's seed does not move it)",
    )
    train_subset: Optional[int] = Field(
        None,
        ge=10,
        description="use N class-balanced training images (validation is "
        "held out of these; a class too small for its share is refused)",
    )
    test_subset: Optional[int] = Field(None, ge=10, description="use N class-balanced test images")
    normalize: bool = True
    augment: AugmentConfig = AugmentConfig()
    affine_a: float = Field(1.0, description="input transform y = a*x + b, applied after normalisation")
    affine_b: float = 0.0
    input_size: Optional[int] = Field(
        None,
        ge=8,
        description="classify: resize each batch on the device to NxN (bilinear, "
        "after augmentation), e.g. 224 for a network pretrained on ImageNet",
    )
    classes: Optional[list[str]] = Field(
        None,
        min_length=2,
        description="classify: keep only these classes, relabelled "
        "0..K-1 in this order, in every split (e.g. [cat, dog])",
    )

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, value):
        if value is not None and len(set(value)) != len(value):
            raise ValueError("data.classes names a class twice")
        return value


class ModelConfig(Section):
    name: Optional[str] = Field(
        None,
        description="a zoo model (see `cnnlab zoo`), a torchvision model by its name "
        "(resnet18, mobilenet_v3_small, deeplabv3_mobilenet_v3_large, ...), or your own "
        "nn.Module class or factory: path/to/file.py:Name or package.module:Name",
    )
    spec: Optional[str] = Field(
        None, description="a layer spec, e.g. 'conv 32 k5 p2 -> act -> maxpool 2 -> flatten -> dense classes'"
    )
    args: dict[str, Union[int, float, bool, str, list, None]] = Field(
        default_factory=dict,
        description="named hyper-parameters of the spec, e.g. NF: 32; for your own module its keyword arguments",
    )
    bn: Optional[bool] = Field(None, description="batch norm on/off (default: the model's own)")
    bn_position: Literal["before", "after"] = Field("before", description="batch norm before or after the activation")
    activation: Optional[Literal[tuple(ACTIVATIONS)]] = None
    dropout: Optional[float] = Field(None, ge=0.0, lt=1.0)
    init: Literal[INIT_SCHEMES] = Field(
        "default",
        description="conv and dense weights; dirac: each conv passes its "
        "input channels through unchanged (identity), its other filters torch's default",
    )
    upsample: Literal[UPSAMPLE_MODES] = Field("nearest", description="what the spec's 'upsample' layers do")
    whiten: bool = Field(
        False,
        description="the first conv's weights whiten k x k patches of the training images "
        "(from their covariance's eigenvectors, both signs), frozen; needs 2*C*k*k filters or fewer, even",
    )
    whiten_bias_epochs: Optional[int] = Field(
        None, ge=0, description="whiten: its bias trains for the first N epochs only (none: all)"
    )
    whiten_eps: float = Field(5e-4, gt=0.0, description="whiten: added to each eigenvalue before 1/sqrt")
    bn_momentum: Optional[float] = Field(
        None,
        gt=0.0,
        le=1.0,
        description="weight of each batch in batch norm's "
        "running statistics (torch's momentum; none: the network's own, torch's 0.1, "
        "torchvision's MobileNets 0.01)",
    )
    bn_weight_frozen: bool = Field(False, description="batch norm's scales stay 1 (only its shifts train)")
    pretrained: str = Field(
        "none",
        min_length=1,
        description="torchvision models: the starting weights: none, imagenet or "
        "coco (torchvision's; --download fetches them), torchvision's weight name (IMAGENET1K_V1, "
        "IMAGENET1K_V2, DEFAULT, ...), a weights file, or a cnnlab run folder (its best.pt)",
    )
    new_head: bool = Field(
        False,
        description="torchvision models: the head starts from a fresh initialisation even "
        "where model.pretrained's fits the classes (as a replaced 1000-way head would)",
    )
    trainable: Union[str, list[str]] = Field(
        "all",
        description="torchvision models: all, last (the new head only), or "
        "module-name prefixes that train, the rest frozen (e.g. [layer4, fc])",
    )

    @field_validator("trainable", mode="before")
    @classmethod
    def _trainable_policy(cls, value):
        if value in ("all", "last") or (isinstance(value, list) and value and all(isinstance(p, str) for p in value)):
            return value
        raise ValueError("model.trainable is all, last or a list of module names (e.g. [layer4, fc])")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.name is None) == (self.spec is None):
            raise ValueError("give exactly one of model.name (a zoo model) or model.spec (a layer spec)")
        return self

    def spec_options_given(self, *more: str) -> list[str]:
        """The options of zoo and spec models (and `more` of them) that differ from their defaults."""
        return [k for k in (*more, "bn", "activation", "dropout", "bn_weight_frozen") if getattr(self, k)] + [
            k
            for k, default in (("bn_position", "before"), ("init", "default"), ("upsample", "nearest"))
            if getattr(self, k) != default
        ]

    @model_validator(mode="after")
    def _whole_numbers_for_specs(self):
        """A spec's names are whole numbers; the user's own module takes any keyword arguments."""
        if is_user_model(self.name):
            return self
        for key, value in self.args.items():
            if isinstance(value, float) and value.is_integer():
                self.args[key] = int(value)
            elif isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"model.args.{key}: a spec's names take whole numbers (got {value!r})")
        return self


class LookaheadConfig(Section):
    """Lookahead as a running average written back: every `every` steps avg = d*avg + (1-d)*w, then w = avg,
    with d = decay**every * progress**power (progress: the share of training done; power 0: constant)."""

    every: int = Field(5, ge=1, description="steps between pulls")
    decay: float = Field(0.95, ge=0.0, le=1.0, description="per step; one pull keeps decay**every of the average")
    power: float = Field(3.0, ge=0.0, description="the decay grows from 0 as progress**power")


class MuonConfig(Section):
    """Muon (Keller Jordan's orthogonalised momentum) for the convolution filters: each filter bank's momentum,
    seen as an out x (in*k*k) matrix, is replaced by a nearby orthogonal matrix (Newton-Schulz iterations) before
    the step, so every direction moves by about the same amount; the rest steps with SGD."""

    lr: float = Field(
        0.24,
        gt=0.0,
        description="the filters' rate (not per lr_per examples: an update's size does not grow with the batch)",
    )
    momentum: float = Field(0.6, ge=0.0, lt=1.0)
    nesterov: bool = True
    ns_steps: int = Field(3, ge=1, le=10, description="Newton-Schulz iterations (3 orthogonalise roughly, 5 closer)")
    normalize: bool = Field(
        True,
        description="rescale each filter bank to Frobenius norm sqrt(out channels) before each step "
        "(instead of weight decay)",
    )


class OptimConfig(Section):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    betas: tuple[Beta, Beta] = Field(
        (0.9, 0.999), description="adam/adamw: decay rates of the gradients' running mean and variance, in [0, 1)"
    )
    weight_decay: float = Field(0.0, ge=0.0, description="L2 penalty (decoupled for adamw)")
    l1: float = Field(0.0, ge=0.0, description="L1 penalty on weights, added to the loss")
    body_lr_mult: float = Field(
        1.0,
        gt=0.0,
        description="learning rate of the trainable body (all but the new head) "
        "as a multiple of lr, e.g. 0.1 to move pretrained layers less",
    )
    lr_per: Optional[int] = Field(
        None,
        ge=1,
        description="lr and weight_decay are per this many examples: the rate is "
        "lr*batch_size/lr_per and each step decays weights by weight_decay*batch_size/lr_per",
    )
    bn_bias_lr_mult: float = Field(
        1.0,
        gt=0.0,
        description="batch norm shifts learn this many times faster (their decay per step stays the others')",
    )
    lookahead: Optional[LookaheadConfig] = Field(
        None, description="every few steps pull the weights towards their running average and evaluate that average"
    )
    muon: Optional[MuonConfig] = Field(
        None, description="convolution filters step with Muon, everything else with SGD (optim.name: sgd)"
    )

    @model_validator(mode="after")
    def _optimizer_combinations(self):
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("optim.nesterov needs optim.name: sgd with optim.momentum > 0")
        if self.muon is not None and self.name != "sgd":
            raise ValueError(
                f"optim.muon steps the parameters that are not filters with SGD; "
                f"set optim.name: sgd (not {self.name}) or optim.muon: null"
            )
        return self


class ScheduleConfig(Section):
    name: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    step_epochs: int = Field(10, ge=1, description="step: multiply the rate by gamma every step_epochs")
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    warmup_fraction: Optional[float] = Field(
        None, ge=0.0, lt=1.0, description="share of steps spent rising linearly (default: cosine 0, onecycle 0.25)"
    )
    min_lr_fraction: float = Field(0.0, ge=0.0, le=1.0, description="cosine/onecycle: final rate as a fraction of lr")
    start_lr_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="cosine/onecycle: the warm-up rises from this fraction of lr"
    )


class EarlyStopConfig(Section):
    """Stop a run whose monitored validation metric stopped improving (Lightning's EarlyStopping, Keras' callback)."""

    monitor: Optional[Literal[MONITORS]] = Field(
        None, description="the validation metric watched (default: train.monitor's, the one that picks best.pt)"
    )
    patience: int = Field(
        3, ge=1, description="evaluations (epochs, with eval_every 1) without improvement before it stops"
    )
    min_delta: float = Field(0.0, ge=0.0, description="a smaller change than this is no improvement")


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(
        128, ge=1, description="the global batch: under torchrun each of N processes takes batch_size/N of it"
    )
    eval_batch_size: int = Field(1000, ge=1, description="evaluation batch (per process under torchrun)")
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="training loss only: validation and test losses are plain cross-entropy"
    )
    dice: float = Field(
        0.0,
        ge=0.0,
        description="segment: add this weight times the soft Dice loss of the foreground classes to the training "
        "loss (it scores overlap, as IoU does; validation and test losses stay plain cross-entropy)",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="bf16: autocast on CPU and GPU; fp16: "
        "autocast with a gradient scaler, CUDA only (GPUs without bf16)",
    )
    channels_last: bool = True
    compile: bool = False
    monitor: Optional[Literal[MONITORS]] = Field(
        None,
        description="the validation metric that picks best.pt, e.g. val_loss "
        "(lowest kept) or val_acc (highest kept); default: the task's, val_acc (val_iou for segment)",
    )
    unfreeze_after: Optional[int] = Field(
        None,
        ge=1,
        description="torchvision models: train the new head alone for this "
        "many epochs, then model.trainable too (at optim.body_lr_mult)",
    )
    sync_bn: bool = Field(
        False,
        description="under torchrun: batch norm over the global batch (SyncBatchNorm), not each process's share of it",
    )
    drop_last: bool = Field(
        False,
        description="every batch one shape: training drops its partial last batch, "
        "evaluation pads its last one (the padding is not scored)",
    )
    eval_every: int = Field(
        1,
        ge=1,
        description="validation and test every K epochs and after the last; other epochs' "
        "metrics rows have training metrics only",
    )
    ema: Optional[float] = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="evaluate (and keep in best.pt) an exponential moving "
        "average of the weights with this decay per step",
    )
    tta: Literal["none", "flip", "flip_translate"] = Field(
        "none",
        description="evaluation averages the outputs on the "
        "mirrored image (flip) and on 1-pixel shifts of both (flip_translate)",
    )
    early_stop: Optional[EarlyStopConfig] = Field(
        None,
        description="stop when the monitored validation metric has "
        "not improved for `patience` evaluations; the run completes as usual",
    )
    clip_grad_norm: Optional[float] = Field(
        None, gt=0.0, description="clip the gradients' global L2 norm to this before each optimizer step"
    )
    accumulate: int = Field(
        1,
        ge=1,
        description="optimizer step every N batches, their gradients summed: an "
        "effective batch of N*batch_size for the rate, lr_per and schedules; batch norm sees "
        "batch_size",
    )
    log: list[Literal["tensorboard", "csv"]] = Field(
        [],
        description="also log per epoch where other tools look: "
        "tensorboard (event files in the run folder), csv (metrics.csv)",
    )
    targets: list[float] = Field(
        [0.75, 0.9], description="summary.json's time_to: training seconds until test accuracy first reaches each"
    )

    @model_validator(mode="after")
    def _targets_are_accuracies(self):
        if any(not 0 < t <= 1 for t in self.targets):
            raise ValueError(
                f"train.targets are accuracies between 0 and 1, e.g. [0.75, 0.9]; got {SHORT.repr(self.targets)}"
            )
        return self


class FiguresConfig(Section):
    count: int = Field(6, ge=1, le=32, description="validation and test images shown in prediction figures")
    temperature: Optional[float] = Field(
        None, gt=0.0, le=1.0, description="colourize: annealed-mean temperature (none: most likely colour)"
    )
    sparsity_threshold: float = Field(
        1e-3, gt=0.0, description="a weight with |w| below this counts as (nearly) zero in the sparsity figures"
    )


class SearchParam(Section):
    """One dimension of an Optuna search: a float or int range, or a list of choices."""

    type: Literal["float", "int", "categorical"]
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = Field(False, description="sample the range on a log scale")
    step: Optional[float] = Field(None, gt=0, description="sample the range on this grid")
    choices: Optional[list[Union[None, bool, int, float, str]]] = None

    @model_validator(mode="after")
    def _shape(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical search parameter needs choices: [a, b, ...]")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("low, high, log and step are for float and int search parameters, not categorical")
            return self
        if self.choices is not None:
            raise ValueError(f"choices are for categorical search parameters; a {self.type} one has low and high")
        if self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"a {self.type} search parameter needs low < high")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log: true needs low > 0 and no step")
        if self.type == "int" and not all(v is None or float(v).is_integer() for v in (self.low, self.high, self.step)):
            raise ValueError("an int search parameter needs whole numbers for low, high and step")
        return self


class SearchConfig(Section):
    """The search space of `cnnlab sweep --optuna TRIALS`: which keys vary, what is optimised, what prunes."""

    params: dict[str, SearchParam] = Field(
        ...,
        min_length=1,
        description="dotted config keys, e.g. optim.lr: {type: float, low: 0.0001, high: 0.1, log: true}",
    )
    metric: Optional[Literal[MONITORS]] = Field(
        None,
        description="the validation metric a trial is scored by, its best "
        "epoch's value (highest, or lowest for val_loss); default: the task's, val_acc "
        "(val_iou for segment)",
    )
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="stops trials whose per-epoch validation metric lags the others"
    )
    startup_trials: int = Field(3, ge=0, description="median pruner: trials that finish before any is pruned")
    warmup_epochs: int = Field(1, ge=0, description="median pruner: epochs every trial runs before it may be pruned")


def _section_of(annotation) -> Any:
    """The BaseModel (or dict) inside an annotation such as Optional[ModelConfig]; None for a plain value."""
    for ann in (annotation, *typing.get_args(annotation)):
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
        if ann is dict or typing.get_origin(ann) is dict:
            return dict
    return None


def _walk(path: list[str]) -> tuple[Any, Optional[str]]:
    """Follow a dotted key from Config, through Optional sections (optim.lookahead, search): the annotation of the
    field it ends at (Config for no key, dict inside a free-form section), or why one of its parts names nothing."""
    annotation: Any = Config
    for i, part in enumerate(path):
        model = _section_of(annotation)
        if model is dict:
            return dict, None
        if model is None:
            return None, f"'{'.'.join(path[:i])}' is a value, not a section"
        field = model.model_fields.get(part)
        if field is None:
            allowed = sorted(model.model_fields)
            return None, (
                f"'{part}' is not a key of {'.'.join(path[:i]) or 'the top level'}"
                f"{did_you_mean(part, allowed)}; allowed: {', '.join(allowed)}"
            )
        annotation = field.annotation
    return annotation, None


def key_problem(key: str) -> Optional[str]:
    """Why a dotted key (e.g. 'optim.lr') names no value of the config, or None if it does."""
    annotation, problem = _walk(key.split("."))
    model = _section_of(annotation)
    optional = type(None) in typing.get_args(annotation)  # a section that may be off (optim.lookahead: null)
    if problem is None and model is not None and model is not dict and not optional:
        return f"'{key}' is a section; name a key inside it"
    return problem


class Config(Section):
    name: str = Field(
        "experiment", description="names the folder of its runs (runs/<name>/): letters, digits and _ . - + = ,"
    )
    task: Literal["classify", "colourize", "segment"] = "classify"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    deterministic: bool = False
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="auto: a CUDA GPU, else Apple's mps, else the CPU"
    )
    data: DataConfig = DataConfig()
    model: ModelConfig
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    figures: FiguresConfig = FiguresConfig()
    search: Optional[SearchConfig] = Field(
        None, description="an Optuna search space for `cnnlab sweep --optuna TRIALS`"
    )

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        problem = name_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @model_validator(mode="after")
    def _task_fits_dataset(self):
        if (self.task == "segment") != DATASETS[self.data.dataset].masks:
            with_masks = ", ".join(name for name, d in DATASETS.items() if d.masks)
            raise ValueError(
                f"task '{self.task}' does not fit data.dataset '{self.data.dataset}': segment needs "
                f"a dataset with masks ({with_masks}), and datasets with masks are for task: segment"
            )
        return self

    @model_validator(mode="after")
    def _searchable_keys(self):
        for key in self.search.params if self.search else {}:
            problem = "the search cannot vary itself" if key.split(".")[0] in ("search", "name") else key_problem(key)
            if problem:
                raise ValueError(f"search.params key '{key}': {problem}")
        return self

    @model_validator(mode="after")
    def _monitors_what_the_task_records(self):
        """train.monitor and search.metric name a validation metric the task records; search.metric defaults to the
        task's own, so a sweep's objective is always written in its config."""
        if self.search is not None and self.search.metric is None:
            self.search.metric = metrics.split_key("val", metrics.TASK_MONITOR[self.task])
        for where, key in (
            ("train.monitor", self.train.monitor),
            ("search.metric", self.search and self.search.metric),
        ):
            if key and (problem := metrics.monitor_problem(self.task, key)):
                raise ValueError(f"{where} {key}: {problem}")
        return self

    @model_validator(mode="after")
    def _early_stop_fits_task(self):
        stop = self.train.early_stop
        if stop is not None and stop.monitor and (problem := metrics.monitor_problem(self.task, stop.monitor)):
            raise ValueError(f"train.early_stop.monitor {stop.monitor}: {problem}")
        return self

    @model_validator(mode="after")
    def _one_weight_average(self):
        if self.optim.lookahead is not None and self.train.ema is not None:
            raise ValueError("optim.lookahead and train.ema both average the weights; choose one")
        return self

    @model_validator(mode="after")
    def _dice_fits_task(self):
        if self.train.dice and self.task != "segment":
            raise ValueError(
                f"train.dice is for task: segment (foreground overlap); task {self.task} has no foreground"
            )
        return self

    @model_validator(mode="after")
    def _tta_fits_task(self):
        if self.train.tta == "flip_translate" and self.task != "classify":
            raise ValueError(f"train.tta: flip_translate is for task: classify; task {self.task} may use tta: flip")
        return self

    @model_validator(mode="after")
    def _known_model(self):
        name = self.model.name
        if name is not None and name not in ZOO and not is_user_model(name) and name not in transfer_names():
            close = did_you_mean(name, [*ZOO, *transfer_names()])
            raise ValueError(
                f"model.name '{name}' is not in the zoo ({', '.join(sorted(ZOO))}) nor a torchvision "
                f"model{close}; torchvision's classification and segmentation models are accepted by "
                f"their names, e.g. resnet18, mobilenet_v3_small, deeplabv3_mobilenet_v3_large; your own "
                f"nn.Module as path/to/file.py:Name or package.module:Name"
            )
        return self

    @model_validator(mode="after")
    def _transfer_keys(self):
        """Pretrained weights and freezing are for torchvision models, which take none of the spec's options and
        fit one task: classification models classify, segmentation models segment."""
        m = self.model
        if m.name is None or m.name in ZOO or is_user_model(m.name):
            given = [
                k
                for k, v in (
                    ("model.pretrained", m.pretrained != "none"),
                    ("model.trainable", m.trainable != "all"),
                    ("model.new_head", m.new_head),
                    ("train.unfreeze_after", self.train.unfreeze_after is not None),
                )
                if v
            ]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: for torchvision models (e.g. model.name: resnet18); zoo, spec "
                    f"and your own models train from scratch"
                )
            return self if not is_user_model(m.name) else self._own_module_keys()
        spec_options = m.spec_options_given("args")
        if spec_options:
            raise ValueError(
                f"model.{', model.'.join(spec_options)}: options of zoo and spec models; torchvision's "
                f"{m.name} is built as torchvision defines it"
            )
        if WEIGHT_NAME.fullmatch(m.pretrained):
            try:
                named_weights(m.name, m.pretrained)
            except CnnlabError as e:
                raise ValueError(str(e)) from None
        task = "segment" if m.name in segmentation_names() else "classify"
        if self.task != task:
            raise ValueError(
                f"{m.name} is a {'segmentation' if task == 'segment' else 'classification'} model: it "
                f"needs task: {task}, not {self.task}"
            )
        if self.train.unfreeze_after is not None and m.trainable == "last":
            raise ValueError(
                "train.unfreeze_after unfreezes model.trainable after the head trained alone; with "
                "model.trainable: last there is nothing to unfreeze (name the parts, e.g. [layer4, fc])"
            )
        return self

    def _own_module_keys(self):
        m = self.model
        spec_options = m.spec_options_given("whiten")
        if spec_options:
            raise ValueError(
                f"model.{', model.'.join(spec_options)}: options of zoo and spec models; your own module "
                f"{m.name} is built as its code says (give its keyword arguments as model.args)"
            )
        return self

    @model_validator(mode="after")
    def _classification_data_keys(self):
        for key, value in (("data.classes", self.data.classes), ("data.input_size", self.data.input_size)):
            if value is not None and self.task != "classify":
                raise ValueError(
                    f"{key} is for task: classify (per-pixel tasks keep every class of their dataset and "
                    f"are sized by data.image_size)"
                )
        return self


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys allowed in the section that holds the bad key at `loc`."""
    model = _section_of(_walk([str(p) for p in loc[:-1]])[0])
    return sorted(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _choices(loc: tuple) -> list[str]:
    """The values a Literal field at `loc` takes (data.dataset: cifar10, ...)."""
    annotation = _walk([str(p) for p in loc])[0]
    return [
        str(v)
        for ann in (annotation, *typing.get_args(annotation))
        if typing.get_origin(ann) is Literal
        for v in typing.get_args(ann)
    ]


def _describe(err: dict) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc)
        return f"unknown key '{key}'{did_you_mean(str(loc[-1]), allowed)}; allowed here: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"missing key '{key}'"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict) or got is None else f" (got {SHORT.repr(got)})"
    close = close_names(str(got), _choices(loc)) if err["type"] == "literal_error" else []
    if close:
        shown = f" (got {SHORT.repr(got)}; did you mean {' or '.join(close)}?)"
    if err["type"] in ("float_parsing", "int_parsing") and isinstance(got, str) and "," in got:
        shown += f"; to run each of several values, `cnnlab sweep EXPERIMENT --grid {key}={got}`"
    return f"key '{key}': {msg}{shown}" if loc else msg


def validate(raw: dict, source: str) -> Config:
    """Validate a raw dict; on failure raise one CnnlabError naming the source, every bad key and what is allowed."""
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        lines = [_describe(err) for err in e.errors()]
        raise CnnlabError(f"config error in {source}:\n  " + "\n  ".join(lines)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`optim.lr=0.01` -> (['optim', 'lr'], 0.01); the value is read as YAML (numbers, booleans, lists)."""
    if "=" not in text:
        raise CnnlabError(f"override '{text}' is not key=value (e.g. train.epochs=2)")
    key, value = text.split("=", 1)
    if not key or any(not p for p in key.split(".")):
        raise CnnlabError(f"override '{text}': the key must be dotted names like optim.lr")
    try:
        parsed = yaml.safe_load(value) if value != "" else None
    except yaml.YAMLError:
        parsed = value
    return key.split("."), bounded(parsed, f"override '{key}'")


def set_key(raw: dict, path: list[str], value: Any, what: str) -> dict:
    """Set `raw[a][b][c] = value` for path ['a', 'b', 'c'], making sections on the way; `what` names it in errors."""
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise CnnlabError(f"{what}: '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value
    return raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        set_key(raw, path, value, f"override '{text}'")
    return raw


def _count_values(value: Any, counted: dict[int, int]) -> int:
    """How many values `value` holds with YAML aliases expanded, each shared list or mapping counted once per use
    but walked once (a 'billion laughs' of nine levels is walked in microseconds); one that holds itself is
    counted as too many."""
    if not isinstance(value, (list, dict)):
        return 1
    if id(value) in counted:
        return counted[id(value)]
    counted[id(value)] = MAX_VALUES + 1  # while walking it: met again inside itself, it is endless
    total = 1
    for item in value.values() if isinstance(value, dict) else value:
        total += _count_values(item, counted)
        if total > MAX_VALUES:
            break
    counted[id(value)] = total
    return total


def bounded(raw: Any, source: str) -> Any:
    """`raw` as read from YAML, refused when its aliases expand it beyond MAX_VALUES values (or into itself)."""
    if _count_values(raw, {}) > MAX_VALUES:
        raise CnnlabError(
            f"{source}: its YAML aliases (*name) expand it to more than {MAX_VALUES:,} values, or into "
            "itself; write the values out, without aliases of aliases"
        )
    return raw


def read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CnnlabError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise CnnlabError(
            f"config file {path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
            f"save it as UTF-8"
        ) from None
    except yaml.YAMLError as e:
        raise CnnlabError(f"config file {path} is not valid YAML: {e}") from None
    if raw is None:
        return {}
    bounded(raw, f"config file {path}")
    if not isinstance(raw, dict):
        raise CnnlabError(
            f"config file {path} must hold a mapping of keys (data:, model:, ...), not {type(raw).__name__}"
        )
    return raw


def flatten(raw: dict, prefix: str = "") -> dict:
    """{"optim": {"lr": 0.01}} -> {"optim.lr": 0.01} (an empty section stays a value: {})."""
    out = {}
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def dump(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _defaults(model: type[BaseModel], prefix: str = "") -> dict:
    """Every key of `model` with its default, flattened; a required section by its own keys' defaults."""
    out: dict = {}
    for name, f in model.model_fields.items():
        section = _section_of(f.annotation)
        if f.is_required():
            if isinstance(section, type) and issubclass(section, BaseModel):
                out.update(_defaults(section, f"{prefix}{name}."))
            continue
        value = f.get_default(call_default_factory=True)
        value = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        out.update(flatten({name: value}, prefix) if isinstance(value, dict) else {f"{prefix}{name}": value})
    return out


def changes(config: Config) -> list[tuple[str, Any, Any]]:
    """(key, value, default) of every key whose value is not its default: what this run chose, as a report
    shows it first (a section switched on shows its keys; one switched off, its name with None)."""
    given = flatten(config.model_dump(mode="json"))
    default = _defaults(type(config))
    return [(k, v, default.get(k)) for k, v in given.items() if k not in default or default[k] != v]
