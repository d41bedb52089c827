"""Side-by-side step timing for the benchmarks in ``launch/bench_*.py``.

Two (or more) jitted train steps are compared fairly on a loaded machine by
interleaving them: each round times every variant for the same number of
steps in turn, and the median over rounds is reported, so a burst of load
hits all variants alike.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np

Step = Callable[[Any, Any], tuple[Any, Any]]


def time_steps(step: Step, state: Any, batch: Any, n: int) -> tuple[Any, float]:
  """Runs ``n`` steps on one batch; (new state, seconds per step)."""
  t0 = time.perf_counter()
  metrics = None
  for _ in range(n):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  return state, (time.perf_counter() - t0) / n


def interleaved_step_times(
    variants: Mapping[str, tuple[Step, Any]],
    batch: Any,
    rounds: int,
    steps_per_round: int,
) -> dict[str, dict[str, Any]]:
  """Times each ``name: (jitted step, state)`` side by side.

  Returns, per name: ``step_ms`` (median over rounds of the mean step time,
  compile excluded), ``compile_s`` (the first call) and the final ``state``.
  """
  out = {}
  for name, (step, state) in variants.items():
    t0 = time.perf_counter()
    state, _ = time_steps(step, state, batch, 1)  # Compiles.
    out[name] = {"compile_s": time.perf_counter() - t0, "state": state}
  times = {name: [] for name in variants}
  for _ in range(rounds):
    for name, (step, _) in variants.items():
      out[name]["state"], dt = time_steps(
          step, out[name]["state"], batch, steps_per_round
      )
      times[name].append(dt)
  for name in variants:
    out[name]["step_ms"] = 1e3 * float(np.median(times[name]))
  return out


def print_and_save(result: dict[str, Any], path: str | None) -> None:
  """Prints ``result`` as JSON and writes it to ``path`` (if given)."""
  print(json.dumps(result, indent=2))
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
