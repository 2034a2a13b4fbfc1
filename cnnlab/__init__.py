"""cnnlab: a laboratory for convolutional neural networks on PyTorch.

    import cnnlab
    cnnlab.summary(Net, input=(3, 32, 32)).params      # count any nn.Module, zoo name, spec or experiment
    run = cnnlab.run("simplenn-cifar10", "train.epochs=1", model=Net)
    run.metrics.to_pandas(); run.figure("acc"); run.report()
    cnnlab.compare([run_a, run_b]); cnnlab.explain(run)

The jobs live in cnnlab.api and are imported on first use, so that `import cnnlab` stays cheap. `cnnlab.explain`
is also the package of explain's parts (cnnlab.explain.layer_listing, ...): calling that package runs the job.
"""

import sys
import types

from cnnlab.errors import CnnlabError
from cnnlab.version import version as _version

__version__ = _version()  # pyproject.toml's, as installed: the one number every record and report names
__all__ = [
    "CnnlabError",
    "Comparison",
    "Explanation",
    "Run",
    "Summary",
    "compare",
    "explain",
    "load",
    "resume",
    "run",
    "summary",
]
_JOBS = set(__all__) - {"CnnlabError", "explain"}


class _CallablePackage(types.ModuleType):
    """cnnlab.explain: a package, and the job when called."""

    def __call__(self, *args, **kwargs):
        from cnnlab.api import explain

        return explain(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name == "explain" and isinstance(value, types.ModuleType):  # the import system binds the subpackage
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


def __getattr__(name: str):
    if name in _JOBS:
        from cnnlab import api

        return getattr(api, name)
    if name == "explain":
        import cnnlab.explain

        return cnnlab.explain
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(__all__ + ["__version__"])


sys.modules[__name__].__class__ = _Package
