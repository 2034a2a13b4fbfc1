"""README's config reference (the YAML block under "### Configs"), written from the schema in cnnlab/config.py:
every section and key with its default, its choices and its description, so the README cannot drift from
the code. tests/test_readme.py fails when the README's block differs from what this prints.

    python scripts/config_reference.py                   # print the block
    python scripts/config_reference.py --write README.md  # rewrite the block in README.md (make readme-config)
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from cnnlab.config import Config  # noqa: E402

COMMENT_COLUMN = 29  # where the comments start, as in the README
HEADING = "### Configs"


def section_of(annotation) -> tuple[Optional[type[BaseModel]], bool]:
    """(the section class inside an annotation, whether it is the value type of a dict), or (None, False)."""
    for ann in (annotation, *typing.get_args(annotation)):
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann, False
        if typing.get_origin(ann) is dict:
            value = typing.get_args(ann)[1]
            if isinstance(value, type) and issubclass(value, BaseModel):
                return value, True
    return None, False


def choices(annotation) -> list:
    """The allowed values of a Literal annotation (also inside Optional[...]), else []."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    return [c for ann in typing.get_args(annotation) for c in choices(ann)]


def flow(value: Any) -> str:
    """A default as one line of YAML (tuples as lists)."""
    text = yaml.safe_dump(json.loads(json.dumps(value)), default_flow_style=True, width=10_000)
    return text.removesuffix("\n...\n").strip()


def line(indent: int, key: str, value: str, comment: str) -> str:
    text = f"{' ' * indent}{key}:" + (f" {value}" if value else "")
    if not comment:
        return text
    return f"{text.ljust(COMMENT_COLUMN - 1)} # {comment}"


def section_lines(model: type[BaseModel], indent: int = 0) -> list[str]:
    """One line per key of `model` (a nested section as a block under its key), in the schema's order."""
    lines = []
    for key, field in model.model_fields.items():
        section, in_dict = section_of(field.annotation)
        words = [" | ".join(map(str, choices(field.annotation))), field.description or ""]
        if field.is_required():
            words.insert(0, "required")
        elif section is not None and field.get_default() is None:
            words.insert(0, "default: none")
        comment = "; ".join(w for w in words if w)
        if section is None:
            value = "" if field.is_required() else flow(field.get_default(call_default_factory=True))
            lines.append(line(indent, key, value, comment))
            continue
        lines.append(line(indent, key, "", comment))
        if in_dict:  # a mapping of names to sections: one example entry shows the section's keys
            lines.append(line(indent + 2, "KEY", "", "one entry per key"))
            indent_inside = indent + 4
        else:
            indent_inside = indent + 2
        lines += section_lines(section, indent_inside)
    return lines


def reference() -> str:
    """The YAML block, without its fences."""
    return "\n".join(section_lines(Config)) + "\n"


def rewrite(readme: Path) -> bool:
    """Put the block under README's "### Configs" heading; True if the file changed."""
    text = readme.read_text(encoding="utf-8")
    start = text.index("```yaml\n", text.index(HEADING)) + len("```yaml\n")
    end = text.index("```", start)
    new = text[:start] + reference() + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str]) -> None:
    if argv[:1] == ["--write"] and len(argv) == 2:
        print(f"{argv[1]}: {'rewritten' if rewrite(Path(argv[1])) else 'already up to date'}")
    elif not argv:
        sys.stdout.write(reference())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
