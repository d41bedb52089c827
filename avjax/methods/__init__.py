"""The methods, one module each, looked up by ``config.method``.

This registry is the one place that names them; shared code (training,
evaluation, inference, benchmarks) reaches a method only through the
``Method`` contract (``avjax.methods.base``). A method of your own is
registered with ``register_method`` (README "Adding a method").
"""

from __future__ import annotations

import importlib

import ml_collections

from avjax.methods.base import Method
from avjax.methods.base import RunInfo

_METHODS: dict[str, str | type[Method]] = {
    "tstl_ca": "avjax.methods.tstl_ca:TSTLCA",
    "avc": "avjax.methods.avc:AVC",
    "cmd": "avjax.methods.cmd:CMD",
    "synchformer": "avjax.methods.synchformer:Synchformer",
    "mama": "avjax.methods.mama:MAMA",
}


def register_method(name: str, method: str | type[Method]) -> None:
  """Registers a ``Method`` subclass, or its "module:Class" path, under
  ``name`` (the value of ``config.method`` that selects it)."""
  if not name:
    raise ValueError("method name must be non-empty")
  if not isinstance(method, str) and not (
      isinstance(method, type) and issubclass(method, Method)
  ):
    raise TypeError(
        f"method {name!r} must be a Method subclass or a 'module:Class' "
        f"path, got {method!r}"
    )
  _METHODS[name] = method


def method_class(name: str) -> type[Method]:
  """The class registered as ``name`` (imports its module)."""
  if name not in _METHODS:
    raise ValueError(f"config.method={name!r} is not one of {sorted(_METHODS)}")
  entry = _METHODS[name]
  if isinstance(entry, str):
    module, _, cls = entry.partition(":")
    entry = getattr(importlib.import_module(module), cls)
  return entry


def get_method(config: ml_collections.ConfigDict) -> Method:
  """Instantiates the method named by ``config.method``."""
  return method_class(config.get("method"))(config)


__all__ = ["Method", "RunInfo", "get_method", "method_class", "register_method"]
