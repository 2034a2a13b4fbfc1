"""cnnlab: a laboratory for convolutional neural networks on PyTorch."""
from cnnlab.version import version as _version

__version__ = _version()  # pyproject.toml's, as installed: the one number every record and report names
