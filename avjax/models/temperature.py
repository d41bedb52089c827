"""A learned softmax temperature, kept inside its bounds.

The contrastive losses divide similarities by a temperature τ. Methods that
learn it (CMD, MAMA, Synchformer) learn ``log τ`` — a parameter whose
updates are scale-free — and keep it in ``[min, max]`` in two places:

* ``value`` clips ``log τ`` before use, so a step never sees τ outside the
  bounds;
* ``project`` is applied to the parameter after every optimiser update
  (``Method.project_params``), so the parameter itself stays in range and
  can move back as soon as the gradient turns. (Clipping at use alone lets
  it drift past a bound, where it gets no gradient and stays stuck.)

MAMA's "logit scale capped at 100" is the same thing: scale = 1 / τ with
τ ≥ 0.01. With ``learn=False`` τ is the constant ``init`` and there is no
parameter.

Config (``config.loss.temperature``): ``init``, ``min``, ``max``, ``learn``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections


class LearnedTemperature:
  """τ = exp(clip(log τ, log min, log max)); see the module docstring.

  Args:
    init: initial τ (> 0).
    minimum, maximum: bounds of a learned τ, 0 < minimum <= init <= maximum.
    learn: False → τ is ``init`` (the bounds are not used) and
      ``init_param`` is not used.
  """

  def __init__(
      self, init: float, minimum: float, maximum: float, learn: bool = True
  ):
    if not init > 0:
      raise ValueError(f"a temperature needs init > 0, got {init}")
    if learn and not 0 < minimum <= init <= maximum:
      raise ValueError(
          "a learned temperature needs 0 < min <= init <= max, got "
          f"min={minimum}, init={init}, max={maximum}"
      )
    self.init = float(init)
    self.learn = bool(learn)
    self.log_bounds = (math.log(minimum), math.log(maximum))

  @classmethod
  def from_config(
      cls,
      cfg: ml_collections.ConfigDict,
      where: str = "config.loss.temperature",
  ) -> "LearnedTemperature":
    """From a config block with ``init``, ``min``, ``max`` and ``learn``."""
    missing = [k for k in ("init", "min", "max", "learn") if k not in cfg]
    if missing:
      raise ValueError(f"{where} lacks {missing} (has {sorted(cfg)})")
    try:
      return cls(float(cfg.init), float(cfg.min), float(cfg.max), cfg.learn)
    except ValueError as e:
      raise ValueError(f"{where}: {e}") from None

  def init_param(self) -> jax.Array:
    """The initial parameter: float32 scalar log τ."""
    return jnp.asarray(math.log(self.init), jnp.float32)

  def value(self, log_t: jax.Array | None) -> jax.Array:
    """τ, float32 scalar (the constant ``init`` when not learned)."""
    if not self.learn:
      return jnp.asarray(self.init, jnp.float32)
    lo, hi = self.log_bounds
    return jnp.exp(jnp.clip(log_t, lo, hi))

  def project(self, log_t: jax.Array) -> jax.Array:
    """``log_t`` clipped into the bounds (after an optimiser update)."""
    lo, hi = self.log_bounds
    return jnp.clip(log_t, lo, hi)
