"""Typed configuration shared by every process.

Each process (edge daemon, server, demo) has one pydantic model built on
`StrictModel`, so an unknown or misspelt key is an error that names the key
instead of being silently ignored.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def known_timezone(value: str) -> str:
    """A config validator: the IANA zone must exist on this machine (tzdata)."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


class ConfigError(Exception):
    """A config file that cannot be used; the message names the bad key."""


def describe_validation_error(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item.get("loc", ())) or "(top level)"
        if item.get("type") == "extra_forbidden":
            parts.append(f"unknown key '{where}'")
        else:
            parts.append(f"key '{where}': {item.get('msg')}")
    return "; ".join(parts)


def parse_config(model: type[ModelT], data: object, source: str = "config") -> ModelT:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {describe_validation_error(err)}") from None


def load_config(model: type[ModelT], path: str | pathlib.Path) -> ModelT:
    """Read a YAML or JSON file into `model`; raises ConfigError naming the bad key."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not valid YAML/JSON: {err}") from None
    return parse_config(model, data, str(path))


def load_config_or_report(model: type[ModelT], path: str | pathlib.Path, command: str) -> ModelT | None:
    """load_config for a CLI command: on a bad file, print the reason for the operator and return None."""
    import sys

    try:
        return load_config(model, path)
    except ConfigError as err:
        print(f"checkgate {command}: bad config: {err}", file=sys.stderr)
        return None
