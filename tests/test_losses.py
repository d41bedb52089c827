"""Every public loss of avjax.losses at every input dtype users run it with.

float32 is the reference. bfloat16 inputs, float32 inputs under
``jax_enable_x64`` and float64 inputs under ``jax_enable_x64`` must give a
finite value and gradient within that dtype's tolerance of the float32
result: under x64 the integer index arithmetic of the mining paths becomes
int64 and Python scalars float64, which once broke ``triplet_semihard``.

Inputs are rounded to bfloat16 first, so every dtype sees the same numbers;
their distances are well separated and every hinge is active, so mining
picks the same pairs at every precision and only the arithmetic's rounding
differs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import losses

_N, _DIM = 4, 4
_LABELS = np.arange(_N) % 2
# Every hinge is active at this margin (distances are below 8), so no term
# switches on or off with rounding.
_MARGIN = 10.0
_GAP = 0.015


def _separated(points: np.ndarray) -> bool:
  """Whether every row's distances to the others differ by >= _GAP (rel.)
  and no two points are near each other (euclidean and cosine)."""
  unit = points / np.linalg.norm(points, axis=1, keepdims=True)
  for d in (
      np.linalg.norm(points[:, None] - points[None], axis=-1),
      1.0 - unit @ unit.T,
  ):
    for i, row in enumerate(d):
      others = np.sort(np.delete(row, i))
      if others[0] < 0.1 or np.min(np.diff(others) / others[1:]) < _GAP:
        return False
  return True


def _inputs() -> dict[str, np.ndarray]:
  """x, y [N, D]: the first seed whose points are _separated once rounded
  to bfloat16 (so mining picks the same pairs at every precision)."""
  for seed in range(10000):
    points = np.random.default_rng(seed).normal(size=(2 * _N, _DIM))
    points = np.asarray(
        jnp.asarray(points, jnp.bfloat16).astype(jnp.float32), np.float32
    )
    if _separated(points.astype(np.float64)):
      return {"x": points[:_N], "y": points[_N:]}
  raise AssertionError("no separated inputs among 10000 seeds")


def _rng():
  return jax.random.PRNGKey(3)


def _both(fn, metric):
  """A loss of one set: x and y stacked, labels repeated."""
  lab = jnp.asarray(np.concatenate([_LABELS, _LABELS]))
  return lambda x, y: fn(
      jnp.concatenate([x, y]), lab, margin=_MARGIN, metric=metric
  )


def _cases():
  """name -> scalar function of two float arrays x, y [N, D].

  Each loss once at its defaults (plus each metric of pairwise_distances
  and each mining of cross_modal_triplet); their other metrics are checked
  at float32 in the loss's own test file.
  """
  lab = jnp.asarray(_LABELS)
  cases = {
      "info_nce": lambda x, y: jnp.mean(losses.info_nce(x, y, 0.5)),
      "angular_margin_info_nce": lambda x, y: jnp.mean(
          losses.angular_margin_info_nce(x, y, 0.1, 0.5)
      ),
      "interpolate_negatives": lambda x, y: jnp.sum(
          losses.interpolate_negatives(x, y, 0.3) ** 2
      ),
      "augment_with_interpolated_negatives": lambda x, y: jnp.sum(
          losses.augment_with_interpolated_negatives(
              x, lab, y, lab, 0.3, num_per_anchor=2
          )[0]
          ** 2
      ),
      "interpolated_hard_triplet": lambda x, y: losses.interpolated_hard_triplet(
          x, lab, y, lab, 0.3, margin=_MARGIN, rng=_rng(), num_per_anchor=2
      ),
      "triplet_semihard": _both(losses.triplet_semihard, "euclidean"),
      "triplet_batch_hard": _both(losses.triplet_batch_hard, "cosine"),
  }
  for metric in losses.METRICS:
    cases[f"pairwise_distances_{metric}"] = functools.partial(
        lambda x, y, metric: jnp.sum(
            losses.pairwise_distances(x, y, metric=metric)
        ),
        metric=metric,
    )
  for mining, metric in zip(losses.MINING, ("cosine", "euclidean", "cosine")):
    cases[f"cross_modal_triplet_{mining}"] = functools.partial(
        lambda x, y, mining, metric: losses.cross_modal_triplet(
            x, lab, y, lab, margin=_MARGIN, mining=mining, metric=metric
        ),
        mining=mining,
        metric=metric,
    )
  return cases


_CASES = _cases()
# name -> (input dtype, x64 on, tolerance as a fraction of the float32
# value's magnitude (the gradient's largest entry)).
_SETTINGS = {
    "bfloat16": (jnp.bfloat16, False, 3e-2),
    "float32_x64": (jnp.float32, True, 1e-5),
    "float64_x64": (jnp.float64, True, 1e-5),
}


def test_every_public_loss_is_in_the_matrix():
  public = {n for n in losses.__all__ if callable(getattr(losses, n, None))} - {
      "METRICS",
      "MINING",
  }
  covered = {
      n for n in public if any(c == n or c.startswith(n + "_") for c in _CASES)
  }
  assert covered == public, public - covered


def _value_and_grad(fn, inputs, dtype):
  x, y = (jnp.asarray(inputs[k], dtype) for k in ("x", "y"))
  value, grads = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))(x, y)
  return (
      np.asarray(value.astype(jnp.float32)),
      [np.asarray(g.astype(jnp.float32)) for g in grads],
      value.dtype,
      [g.dtype for g in grads],
  )


@pytest.fixture(scope="module")
def float32_results():
  inputs = _inputs()
  return inputs, {
      name: _value_and_grad(fn, inputs, jnp.float32)
      for name, fn in _CASES.items()
  }


@pytest.mark.parametrize("setting", sorted(_SETTINGS))
def test_losses_at_every_dtype_match_float32(setting, float32_results):
  dtype, x64, tol = _SETTINGS[setting]
  inputs, reference = float32_results
  failures = []
  with jax.enable_x64(x64):
    for name, fn in _CASES.items():
      want_value, want_grads = reference[name][:2]
      try:
        value, grads, value_dtype, grad_dtypes = _value_and_grad(
            fn, inputs, dtype
        )
      except Exception as e:  # pylint: disable=broad-except
        failures.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
        continue
      if not all(d == dtype for d in grad_dtypes):
        failures.append(f"{name}: gradients of dtype {grad_dtypes}")
      if not (np.isfinite(value) and all(np.isfinite(g).all() for g in grads)):
        failures.append(f"{name}: non-finite value or gradient")
        continue
      scale = max(abs(float(want_value)), 1e-3)
      if abs(value - want_value) > tol * scale:
        failures.append(f"{name}: value {value} vs float32 {want_value}")
      for g, w in zip(grads, want_grads):
        gscale = max(float(np.max(np.abs(w))), 1e-3)
        if np.max(np.abs(g - w)) > tol * gscale:
          failures.append(
              f"{name}: gradient off by {np.max(np.abs(g - w)) / gscale:.2g}"
              f" of its scale (value dtype {value_dtype})"
          )
  assert not failures, "\n".join(failures)
