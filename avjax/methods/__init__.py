"""The seed systems, one module each, looked up by ``config.method``."""

from __future__ import annotations

import importlib

import ml_collections

from avjax.methods.base import Method

_METHODS = {
    "tstl_ca": "avjax.methods.tstl_ca:TSTLCA",
    "avc": "avjax.methods.avc:AVC",
    "cmd": "avjax.methods.cmd:CMD",
    "synchformer": "avjax.methods.synchformer:Synchformer",
    "mama": "avjax.methods.mama:MAMA",
}


def get_method(config: ml_collections.ConfigDict) -> Method:
  """Instantiates the method named by ``config.method``."""
  name = config.get("method")
  if name not in _METHODS:
    raise ValueError(
        f"config.method={name!r} is not one of " f"{sorted(_METHODS)}"
    )
  module, cls = _METHODS[name].split(":")
  return getattr(importlib.import_module(module), cls)(config)


__all__ = ["Method", "get_method"]
