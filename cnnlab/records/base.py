"""What every record shares: its provenance (schema, cnnlab version, git commit) and a checked reader."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypeVar

import pydantic

from cnnlab.errors import CnnlabError
from cnnlab.version import git_commit, version

SCHEMA = 1  # raised when a record's layout changes in a way an older reader would misread

T = TypeVar("T")


class RecordError(CnnlabError):
    """A record file that is not of the shape its reader expects: `what` names the key and the problem."""

    def __init__(self, path: Path, what: str):
        super().__init__(f"{path}: {what}")
        self.path, self.what = Path(path), what


@dataclass
class Provenance:
    """Who made a record: `schema` is absent (0) in records written before records were versioned."""

    schema: int = 0
    cnnlab_version: Optional[str] = None
    git_commit: Optional[str] = None

    @classmethod
    def now(cls) -> "Provenance":
        return cls(SCHEMA, version(), git_commit())


def _where(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(the whole record)"


def validated(cls: type[T], data: Any, path: Path) -> T:
    """`data` (parsed JSON) as a `cls`, its types checked; a RecordError naming the first wrong key otherwise."""
    if not isinstance(data, dict):
        raise RecordError(path, f"not a JSON object (found {type(data).__name__})")
    try:
        return pydantic.TypeAdapter(cls).validate_python(data)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        shown = json.dumps(first.get("input"), default=str)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise RecordError(path, f"{_where(first['loc'])}: {first['msg'].lower()} (found {shown})") from None


def read_json(path: Path) -> Any:
    """Parsed JSON of a record file; a RecordError (not a traceback) when it is not JSON."""
    try:
        return json.loads(Path(path).read_bytes())
    except ValueError as e:
        raise RecordError(path, f"not JSON: {e}") from None
