"""README's config block against the schema: every section and key of cnnlab.config.Config, with its actual
default, walked here independently of scripts/config_reference.py (which writes the block)."""

from __future__ import annotations

import importlib.util
import json
import re
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from cnnlab.config import Config

ROOT = Path(__file__).resolve().parent.parent


def readme_config_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"### Configs\n.*?```yaml\n(.*?)```", text, re.S)
    assert match, "README.md has no ```yaml block under '### Configs'"
    return match.group(1)


def nested_section(annotation) -> tuple[type[BaseModel] | None, bool]:
    """The section class in an annotation, and whether it is a dict's value type (search.params)."""
    for ann in (annotation, *typing.get_args(annotation)):
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann, False
        args = typing.get_args(ann)
        if typing.get_origin(ann) is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            return args[1], True
    return None, False


def check_section(model: type[BaseModel], documented: dict, where: str) -> int:
    """Every key of `model` documented with its default, and no key that is not in the schema; returns the count."""
    assert isinstance(documented, dict), f"{where or 'the top level'} should be a section in README"
    assert list(documented) == list(model.model_fields), f"keys of {where or 'the top level'} in README"
    count = 0
    for key, field in model.model_fields.items():
        path = f"{where}.{key}".lstrip(".")
        section, in_dict = nested_section(field.annotation)
        if section is not None:
            value = documented[key]
            count += check_section(section, next(iter(value.values())) if in_dict else value, path)
        elif not field.is_required():
            default = json.loads(json.dumps(field.get_default(call_default_factory=True)))  # tuples as lists
            assert documented[key] == default, f"README says {path}: {documented[key]!r}, the default is {default!r}"
        count += 1
    return count


def test_readme_config_block_lists_every_key_with_its_default():
    block = readme_config_block()
    assert check_section(Config, yaml.safe_load(block), "") > 60
    assert re.search(r"^search: +# default: none", block, re.M)  # a section that is off unless given
    assert re.search(r"^model: +# required", block, re.M)


def test_readme_config_block_is_what_the_generator_writes():
    """Descriptions and choices too: after a change to the schema, `make readme-config` rewrites the block."""
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert readme_config_block() == module.reference(), "README's config block is stale: run `make readme-config`"
