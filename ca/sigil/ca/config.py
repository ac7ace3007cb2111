"""Reading a Sigil configuration file, and layering it under the environment and flags.

Every command builds its settings once, in its ``cli.py``: a flag beats an environment variable, which beats the
file, which beats the default. This module gives them one way to read the file and report what is wrong with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sigil.ca.errors import ConfigError

__all__ = ["DEFAULT_DATA_DIR", "ConfigError", "data_dir_from", "load_config_file", "pick"]

DEFAULT_DATA_DIR = Path(".sigil")


def load_config_file(path: Path | None) -> dict[str, Any]:
    """The mapping in a YAML file (empty without one). Anything but a mapping at the top is an error."""
    if path is None:
        return {}
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(str(path), f"cannot read ({err.strerror})") from err
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(str(path), f"not valid YAML{where}") from err
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(str(path), "the top level must be a mapping of settings")
    return document


def pick(
    flag: Any, env_name: str, file_values: Mapping[str, Any], key: str, default: Any = None
) -> Any:
    """The first of: the flag if given, the environment variable if set, the file's key, the default."""
    if flag is not None:
        return flag
    env_value = os.environ.get(env_name)
    if env_value:
        return env_value
    if key in file_values and file_values[key] is not None:
        return file_values[key]
    return default


def data_dir_from(flag: str | None, file_values: Mapping[str, Any]) -> Path:
    """Where the embedded default keeps its state: ``--data-dir``, ``$SIGIL_DATA_DIR``, the file, ``./.sigil``."""
    return Path(pick(flag, "SIGIL_DATA_DIR", file_values, "data_dir", str(DEFAULT_DATA_DIR)))
