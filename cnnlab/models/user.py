"""The user's own network: any `nn.Module` class, or a function that returns one, wherever a model is named.

A name is `path/to/file.py:Name` (the file is imported from that path, found from the working directory, then
from the experiment file's folder) or `package.module:Name` (imported as Python imports it: the entry-point
convention); from Python the class itself is given (`given`). `model.args` are its keyword arguments;
`in_channels` and `classes` (or `num_classes`) are passed when its signature takes them and no arg gives them.

Loading a file executes it, so only a name the user wrote is ever loaded: a run folder records the path (and a
copy of the source, see `SourceRecord`) so that the user's own `cnnlab resume RUN` imports the same file again
and refuses when it has changed. Every failure is one CnnlabError naming the file and line, never a traceback.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from cnnlab.errors import CnnlabError

DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_given: dict[str, Callable] = {}  # classes handed over from Python (cnnlab.run(model=Net)), by their name
_loaded: dict[tuple[str, str], Any] = {}  # (file, its sha256) -> the module executed from it


def split(name: Optional[str]) -> Optional[tuple[str, str]]:
    """('path/file.py' or 'package.module', 'Name') for a user model's name; None for a zoo or torchvision name."""
    target, sep, attr = (name or "").rpartition(":")
    if not sep or not re.fullmatch(r"[A-Za-z_]\w*", attr):
        return None
    if target.endswith(".py") or DOTTED.match(target):
        return target, attr
    return None


def is_user_model(name: Optional[str]) -> bool:
    return split(name) is not None


def locate(name: str, folders: list[Path]) -> str:
    """A file reference made absolute: the first of `folders` that holds the file; other names as they are."""
    target, attr = split(name)
    if not target.endswith(".py") or Path(target).is_absolute():
        return name
    for folder in folders:
        if (Path(folder) / target).is_file():
            return f"{(Path(folder) / target).resolve()}:{attr}"
    looked = ", ".join(str(Path(f).resolve()) for f in dict.fromkeys(folders))
    raise CnnlabError(
        f"model.name {name}: no file {target} in {looked} (a relative path is looked for from the "
        f"working directory, then from the experiment file's folder)"
    )


def ref_of(obj: Callable) -> str:
    """The name a class or factory handed over from Python is recorded under: module:qualified name."""
    return f"{obj.__module__}:{obj.__qualname__.replace('.<locals>.', '_').replace('.', '_')}"


@contextmanager
def given(obj: Callable) -> Iterator[str]:
    """While it lasts, the name `ref_of(obj)` loads `obj` itself (a class defined in a notebook or a function)."""
    if not callable(obj):
        raise CnnlabError(f"model={obj!r}: give an nn.Module class or a function that returns one")
    ref = ref_of(obj)
    if split(ref) is None:
        raise CnnlabError(f"model={obj!r}: give a class or a function with a name (def make_net(): ...), not a lambda")
    _given[ref] = obj
    try:
        yield ref
    finally:
        _given.pop(ref, None)


def _where(error: BaseException, path: Optional[str]) -> str:
    """file:line where an error arose: in the user's file when it passed through it, else its innermost frame."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<frozen")]
    own = [f for f in frames if path and Path(f.filename) == Path(path)]
    outside = [f for f in frames if "site-packages" not in f.filename and "/cnnlab/" not in f.filename]
    frame = (own or outside or frames or [None])[-1]
    return f"{frame.filename}:{frame.lineno}" if frame else (path or "?")


def _failure(what: str, error: BaseException, path: Optional[str]) -> CnnlabError:
    text = (str(error).strip().splitlines() or [""])[0]
    return CnnlabError(f"{_where(error, path)}: {what}: {type(error).__name__}: {text}")


def _import_file(path: str) -> Any:
    data = Path(path).read_bytes()
    key = (path, hashlib.sha256(data).hexdigest())
    if key in _loaded:
        return _loaded[key]
    module_name = f"cnnlab_user_{key[1][:12]}_{re.sub(r'[^0-9A-Za-z_]', '_', Path(path).stem)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look their module up here
    sys.path.insert(0, str(Path(path).parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # a file that calls exit() at import too; Ctrl-C stays Ctrl-C
        sys.modules.pop(module_name, None)
        raise _failure(f"importing {path} failed", e, path) from None
    finally:
        sys.path.remove(str(Path(path).parent))
    _loaded[key] = module
    return module


def _import_module(target: str) -> Any:
    """A package.module, found as `python -m` finds it: on sys.path, then in the working directory (the `cnnlab`
    script's own folder is on sys.path instead)."""
    here = str(Path.cwd())
    added = here not in sys.path
    if added:
        sys.path.append(here)
    try:
        return importlib.import_module(target)
    finally:
        if added:
            sys.path.remove(here)


def load(name: str) -> Callable:
    """The class or factory a user model's name stands for."""
    if name in _given:
        return _given[name]
    target, attr = split(name)
    if target.endswith(".py"):
        if not Path(target).is_file():
            raise CnnlabError(f"model.name {name}: the file {target} does not exist")
        module, where = _import_file(str(Path(target).resolve())), target
    else:
        try:
            module = _import_module(target)
        except ModuleNotFoundError as e:
            if e.name and target.startswith(e.name):
                raise CnnlabError(
                    f"model.name {name}: no module named {e.name} in the working directory or on the "
                    f"Python path (a file is named by its path: mynet.py:Net)"
                ) from None
            raise _failure(f"importing {target} failed", e, None) from None
        except Exception as e:
            raise _failure(f"importing {target} failed", e, None) from None
        where = getattr(module, "__file__", None) or target
    if target == "__main__" and not hasattr(module, attr):
        raise CnnlabError(
            f"model.name {name}: the class was handed over from Python (a notebook or a script); "
            f"give it again: cnnlab.resume(RUN, model={attr}) (the command line cannot import it)"
        )
    obj = getattr(module, attr, None)
    if obj is None:
        found = [
            k
            for k, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__
        ]
        raise CnnlabError(f"{where}: no {attr} in it; its nn.Module classes: {', '.join(found) or 'none'}")
    return obj


def defined_at(obj: Any) -> str:
    """file:line where a class or function is defined (for messages)."""
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
    except (OSError, TypeError):
        code = getattr(getattr(obj, "forward", obj), "__code__", None)
        return f"{code.co_filename}:{code.co_firstlineno}" if code else getattr(obj, "__qualname__", repr(obj))


def keyword_args(obj: Callable, args: dict, in_channels: int, classes: Optional[int]) -> dict:
    """model.args, with in_channels and classes (or num_classes) added where the signature names them."""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return dict(args)
    out = dict(args)
    if "in_channels" in params and "in_channels" not in out:
        out["in_channels"] = in_channels
    if classes is not None and not {"classes", "num_classes"} & out.keys():
        out.update({key: classes for key in ("classes", "num_classes") if key in params})
    return out


def build(name: str, args: dict, in_channels: int, classes: Optional[int]) -> nn.Module:
    """The user's module, made with its keyword arguments; one message naming file and line when it cannot be."""
    obj = load(name)
    kwargs = keyword_args(obj, args, in_channels, classes)
    try:
        model = obj(**kwargs)
    except Exception as e:
        raise _failure(
            f"{name} with {kwargs or 'no arguments'} failed",
            e,
            inspect.getsourcefile(obj) if inspect.isclass(obj) or inspect.isfunction(obj) else None,
        ) from None
    if not isinstance(model, nn.Module):
        raise CnnlabError(f"{defined_at(obj)}: {name} returned a {type(model).__name__}, not an nn.Module")
    return model


def check_output(model: nn.Module, name: str, in_shape: tuple, classes: int, dense: bool) -> None:
    """A forward pass on two blank images (eval mode, no gradient): the output must be (2, classes), or
    (2, classes, H, W) for per-pixel tasks, so that a wrong head fails before a run folder is made."""
    expected = (2, classes, *in_shape[1:]) if dense else (2, classes)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *in_shape))
    except Exception as e:
        raise _failure(f"{name} on an input of {(2, *in_shape)} failed", e, _source_path(model)) from None
    finally:
        model.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != expected:
        raise CnnlabError(
            f"{defined_at(type(model))}: {name} returns {shape} for an input of {(2, *in_shape)}; the "
            f"task needs {expected} (batch, {classes} classes{', H, W: per pixel' if dense else ''})"
        )


def keeps_channels_last(model: nn.Module, in_shape: tuple) -> bool:
    """Whether the module runs on channels_last tensors: `x.view(n, -1)` after a convolution does not (students
    write it everywhere), so such a module trains in the contiguous format instead (on a copy: nothing changes)."""
    probe = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            probe(torch.zeros(2, *in_shape).to(memory_format=torch.channels_last))
    except RuntimeError:
        return False
    return True


def _source_path(model: nn.Module) -> Optional[str]:
    try:
        return inspect.getsourcefile(type(model))
    except (OSError, TypeError):
        return None


@dataclass(frozen=True)
class SourceRecord:
    """Where a user model came from and its source (the file's whole text; for a class handed over from a
    notebook, the source of the class) with its sha256: the run keeps a copy and compares before a resume."""

    name: str
    path: Optional[str]
    sha256: str
    text: str

    def as_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "sha256": self.sha256}


def _class_source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):  # a class from a notebook cell: its functions still know their source
        parts = [inspect.getsource(v) for v in vars(obj).values() if inspect.isfunction(v)]
        return "".join(parts)


def source_record(name: str) -> SourceRecord:
    """The source a user model's name stands for now (a file is read, not imported)."""
    target, _ = split(name)
    if target.endswith(".py"):
        path: Optional[str] = str(Path(target).resolve())
        if not Path(path).is_file():
            raise CnnlabError(f"model.name {name}: the file {target} does not exist")
    else:
        obj = load(name)
        path = None if target == "__main__" else getattr(sys.modules.get(obj.__module__), "__file__", None)
    text = Path(path).read_text(encoding="utf-8") if path else _class_source(obj)
    return SourceRecord(name, path, hashlib.sha256(text.encode()).hexdigest(), text)
