"""Calling a method's evaluation outside the loop (tests only)."""

from __future__ import annotations

import types
from typing import Any

from avjax import methods


def evaluate(
    method: methods.Method,
    params: Any,
    split: str,
    plot_dir: str | None = None,
    aux: Any = None,
) -> dict[str, float]:
  """``method.evaluate`` of a state holding ``params`` (and ``aux``)."""
  state = types.SimpleNamespace(params=params, aux={} if aux is None else aux)
  run = methods.RunInfo.from_config(method.config)
  return method.evaluate(state, split, run, plot_dir=plot_dir)


def _context(method: methods.Method, params: Any, split: str):
  from avjax.eval import evaluators  # pylint: disable=import-outside-toplevel

  state = types.SimpleNamespace(params=params, aux={})
  return evaluators.EvalContext(method, state, split)


def embeddings(
    method: methods.Method, params: Any, split: str, modalities
) -> dict[str, Any]:
  """The evaluators' embeddings of ``split`` (``{modality: [N, E]}`` plus
  the split's metadata), as the method's evaluation computes them."""
  return _context(method, params, split).embeddings(modalities)


def predictions(
    method: methods.Method, params: Any, split: str, names
) -> dict[str, Any]:
  """The named ``predict_fns`` outputs over ``split`` plus its metadata, as
  the method's evaluation computes them."""
  return _context(method, params, split).predictions(names)
