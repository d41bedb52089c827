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
τ ≥ 0.01; with ``parametrization="log_logit_scale"`` the parameter is
log(1 / τ), as CLIP and MAMA learn it (with Adam the two parametrisations
follow mirrored trajectories; the choice keeps each method's arithmetic as
it was). With ``learn=False`` τ is the constant ``init`` and there is no
parameter.

Config (``config.loss.temperature``): ``init``, ``min``, ``max``, ``learn``
and ``parametrization``.
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

  PARAMETRIZATIONS = ("log_temperature", "log_logit_scale")

  def __init__(
      self,
      init: float,
      minimum: float,
      maximum: float,
      learn: bool = True,
      parametrization: str = "log_temperature",
  ):
    if not init > 0:
      raise ValueError(f"a temperature needs init > 0, got {init}")
    if learn and not 0 < minimum <= init <= maximum:
      raise ValueError(
          "a learned temperature needs 0 < min <= init <= max, got "
          f"min={minimum}, init={init}, max={maximum}"
      )
    if parametrization not in self.PARAMETRIZATIONS:
      raise ValueError(
          f"temperature parametrization={parametrization!r} is not one of "
          f"{self.PARAMETRIZATIONS}"
      )
    self.init = float(init)
    self.learn = bool(learn)
    self.scale = parametrization == "log_logit_scale"
    if self.scale:  # Bounds of log(1 / τ).
      self.log_bounds = (-math.log(maximum), -math.log(minimum))
    else:
      self.log_bounds = (math.log(minimum), math.log(maximum))

  @classmethod
  def from_config(
      cls,
      cfg: ml_collections.ConfigDict,
      where: str = "config.loss.temperature",
  ) -> "LearnedTemperature":
    """From a config block with ``init``, ``min``, ``max`` and ``learn``."""
    keys = ("init", "min", "max", "learn", "parametrization")
    missing = [k for k in keys if k not in cfg]
    if missing:
      raise ValueError(f"{where} lacks {missing} (has {sorted(cfg)})")
    try:
      return cls(
          float(cfg.init),
          float(cfg.min),
          float(cfg.max),
          cfg.learn,
          cfg.parametrization,
      )
    except ValueError as e:
      raise ValueError(f"{where}: {e}") from None

  def init_param(self) -> jax.Array:
    """The initial parameter: float32 scalar log τ (or log(1 / τ))."""
    value = 1.0 / self.init if self.scale else self.init
    return jnp.asarray(math.log(value), jnp.float32)

  def value(self, param: jax.Array | None) -> jax.Array:
    """τ, float32 scalar (the constant ``init`` when not learned)."""
    if not self.learn:
      return jnp.asarray(self.init, jnp.float32)
    if self.scale:
      return 1.0 / self.logit_scale(param)
    lo, hi = self.log_bounds
    return jnp.exp(jnp.clip(param, lo, hi))

  def logit_scale(self, param: jax.Array | None) -> jax.Array:
    """1 / τ, float32 scalar."""
    if not self.learn:
      return jnp.asarray(1.0 / self.init, jnp.float32)
    if self.scale:
      lo, hi = self.log_bounds
      return jnp.exp(jnp.clip(param, lo, hi))
    return 1.0 / self.value(param)

  def project(self, param: jax.Array) -> jax.Array:
    """The parameter clipped into the bounds (after an optimiser update)."""
    lo, hi = self.log_bounds
    return jnp.clip(param, lo, hi)
