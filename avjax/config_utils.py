"""Helpers for config files: parsing the ``:arg`` of ``--config file.py:arg``.

``arg`` is a comma-separated list of tokens. A bare token names a variant
(``quick``, a dataset such as ``ave``); ``key=value`` tokens set values
(``seed=3``). Every config file validates its tokens against the variants it
knows, so a typo is an error, not a silently ignored option.
"""

from __future__ import annotations

import ast
import importlib.util
import os

import ml_collections


def parse_config_arg(
    arg: str | None,
    variants: set[str] | frozenset[str],
    keys: set[str] | frozenset[str] = frozenset(),
    config_name: str = "config",
) -> tuple[set[str], dict]:
  """Splits ``arg`` into variant names and ``key=value`` settings.

  Args:
    arg: e.g. ``"quick,one_stage,seed=2"`` or None.
    variants: allowed bare tokens.
    keys: allowed ``key=value`` keys; values are parsed as Python literals
      when possible (``2`` → int), otherwise kept as strings.
    config_name: used in error messages.

  Returns:
    (set of variant names, dict of settings).

  Raises:
    ValueError: naming an unknown token or key and listing the valid ones.
  """
  names, settings = set(), {}
  for token in filter(None, (t.strip() for t in (arg or "").split(","))):
    if "=" in token:
      key, value = token.split("=", 1)
      if key not in keys:
        raise ValueError(
            f"{config_name}: unknown config argument key {key!r}"
            f"; valid keys: {sorted(keys)}"
        )
      try:
        settings[key] = ast.literal_eval(value)
      except (ValueError, SyntaxError):
        settings[key] = value
    elif token in variants:
      names.add(token)
    else:
      raise ValueError(
          f"{config_name}: unknown config argument {token!r}; "
          f"valid: {sorted(variants)} or key=value with keys "
          f"{sorted(keys)}"
      )
  return names, settings


def positive_int_setting(
    settings: dict, key: str, default: int, config_name: str = "config"
) -> int:
  """``settings[key]`` (from :func:`parse_config_arg`), or ``default``.

  Raises:
    ValueError: naming the key and value when it is not an integer > 0.
  """
  value = settings.get(key, default)
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(
        f"{config_name}: {key}={value!r} is not a positive " "integer"
    )
  return value


def load_config_file(
    path: str, arg: str | None = None
) -> ml_collections.ConfigDict:
  """Calls ``get_config(arg)`` of the config file at ``path``.

  The programmatic twin of ``--config path:arg`` (notebooks, sweeps).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Config file {path!r} does not exist.")
  spec = importlib.util.spec_from_file_location(
      "avjax_config_" + os.path.splitext(os.path.basename(path))[0], path
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"Config file {path!r} defines no get_config(arg).")
  return module.get_config(arg)


def import_sibling(config_file: str, name: str):
  """Imports ``<name>.py`` from the directory of ``config_file``.

  Config files are loaded by path (``--config configs/x.py``), not as a
  package, so ``configs/common.py`` (the base every config builds on) is
  reached through this: ``common = import_sibling(__file__, "common")``.
  """
  path = os.path.join(
      os.path.dirname(os.path.abspath(config_file)), name + ".py"
  )
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Config module {path!r} does not exist.")
  spec = importlib.util.spec_from_file_location(f"avjax_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
