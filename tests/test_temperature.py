"""avjax.models.temperature: a learned τ kept in its bounds."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from avjax.models import temperature as temperature_lib


def _block(**overrides):
  cfg = dict(
      init=0.07,
      min=0.01,
      max=0.5,
      learn=True,
      parametrization="log_temperature",
  )
  cfg.update(overrides)
  return ml_collections.ConfigDict(cfg)


@pytest.mark.parametrize(
    "parametrization", ["log_temperature", "log_logit_scale"]
)
def test_value_is_init_and_clipped_into_the_bounds(parametrization):
  t = temperature_lib.LearnedTemperature(0.07, 0.01, 0.5, True, parametrization)
  p0 = t.init_param()
  assert p0.dtype == jnp.float32
  want_p0 = (
      math.log(1 / 0.07)
      if parametrization == "log_logit_scale"
      else (math.log(0.07))
  )
  assert float(p0) == pytest.approx(want_p0, rel=1e-6)
  assert float(t.value(p0)) == pytest.approx(0.07, rel=1e-6)
  assert float(t.logit_scale(p0)) == pytest.approx(1 / 0.07, rel=1e-6)
  # Parameters far past either bound read as the bound.
  for param in (-20.0, 20.0):
    tau = float(t.value(jnp.float32(param)))
    assert 0.01 - 1e-7 <= tau <= 0.5 + 1e-7
  sign = -1.0 if parametrization == "log_logit_scale" else 1.0
  assert float(t.value(jnp.float32(sign * 20.0))) == pytest.approx(0.5)
  assert float(t.value(jnp.float32(-sign * 20.0))) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "parametrization", ["log_temperature", "log_logit_scale"]
)
def test_projection_brings_an_updated_parameter_back(parametrization):
  t = temperature_lib.LearnedTemperature(0.07, 0.01, 0.5, True, parametrization)
  # A loss that wants τ as small as possible: plain SGD with a large step
  # leaves the bounds; projection after the update puts it on the bound,
  # where the next gradient (pointing inward) moves it again.
  loss = (
      lambda p: t.value(p)
      if parametrization == "log_temperature"
      else (-t.logit_scale(p))
  )
  tx = optax.sgd(100.0)
  param = t.init_param()
  state = tx.init(param)
  for _ in range(3):
    grads = jax.grad(loss)(param)
    updates, state = tx.update(grads, state)
    param = t.project(optax.apply_updates(param, updates))
    lo, hi = t.log_bounds
    assert lo - 1e-6 <= float(param) <= hi + 1e-6
  assert float(t.value(param)) == pytest.approx(0.01, rel=1e-5)
  inward = jax.grad(lambda p: -loss(p))(param)
  assert float(inward) != 0.0  # On the bound the gradient is not cut off.


def test_fixed_temperature_has_no_parameter_use():
  t = temperature_lib.LearnedTemperature(0.2, 0.2, 0.2, learn=False)
  assert float(t.value(None)) == pytest.approx(0.2)
  assert float(t.logit_scale(None)) == pytest.approx(5.0)


def test_from_config_names_missing_keys_and_bad_bounds():
  t = temperature_lib.LearnedTemperature.from_config(_block())
  assert float(t.value(t.init_param())) == pytest.approx(0.07, rel=1e-6)
  cfg = _block()
  del cfg["max"]
  with pytest.raises(
      ValueError, match=r"config.loss.temperature lacks \['max'\]"
  ):
    temperature_lib.LearnedTemperature.from_config(cfg)
  with pytest.raises(ValueError, match="0 < min <= init <= max"):
    temperature_lib.LearnedTemperature.from_config(_block(min=0.1))
  with pytest.raises(ValueError, match="parametrization='log_tau'"):
    temperature_lib.LearnedTemperature.from_config(
        _block(parametrization="log_tau")
    )


def test_jit_and_vmap():
  t = temperature_lib.LearnedTemperature(0.07, 0.01, 0.5)
  params = jnp.log(jnp.array([0.001, 0.07, 3.0], jnp.float32))
  got = jax.jit(jax.vmap(t.value))(params)
  np.testing.assert_allclose(got, [0.01, 0.07, 0.5], rtol=1e-6)
