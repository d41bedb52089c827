import os

import numpy as np
import optax
import pytest

from avjax import config_utils
from avjax.train import optim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COMMON = config_utils.import_sibling(
    os.path.join(ROOT, "configs", "x.py"), "common"
)


def _cfg(**kw):
  """The shared optimiser block (configs/common.py) with overrides."""
  cfg = _COMMON.base_config("any").optimizer
  cfg.update(
      {"learning_rate": 1.0, "schedule": "constant", "end_lr_fraction": 0.0}
  )
  cfg.update(kw)
  return cfg


def test_warmup_cosine_shape():
  sched = optim.learning_rate_schedule(
      _cfg(schedule="warmup_cosine", warmup_steps=10, end_lr_fraction=0.1),
      total_steps=110,
  )
  assert float(sched(0)) == 0.0
  assert float(sched(10)) == pytest.approx(1.0)
  assert float(sched(110)) == pytest.approx(0.1)
  assert float(sched(5)) == pytest.approx(0.5)


def test_cosine_and_constant():
  assert float(optim.learning_rate_schedule(_cfg(), 10)(7)) == 1.0
  cos = optim.learning_rate_schedule(_cfg(schedule="cosine"), 100)
  assert float(cos(50)) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizers_step(name):
  tx = optim.make_optimizer(
      _cfg(name=name, learning_rate=0.1, grad_clip_norm=1.0), 10
  )
  params = {"w": np.ones(3, np.float32)}
  updates, _ = tx.update(
      {"w": np.full(3, 100.0, np.float32)}, tx.init(params), params
  )
  assert np.all(np.asarray(updates["w"]) < 0)
  # Clipping bounds the SGD step by lr * clip norm (plus weight decay: none).
  if name == "sgd":
    assert np.linalg.norm(np.asarray(updates["w"])) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("name", "rmsprop", "optimizer.name='rmsprop'"),
        ("schedule", "linear", "optimizer.schedule='linear'"),
    ],
)
def test_unknown_names(field, value, match):
  with pytest.raises(ValueError, match=match):
    optim.make_optimizer(_cfg(**{field: value}), 10)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_eps_root_makes_the_update_differentiable_at_zero_gradient(name):
  """A bilevel virtual step differentiates the update w.r.t. the gradient;
  at a zero gradient sqrt(v) has an infinite derivative unless eps_root."""
  import jax
  import jax.numpy as jnp

  params = {"w": jnp.ones(3)}

  def update_sum(g, eps_root):
    tx = optim.make_optimizer(
        _cfg(name=name, learning_rate=0.1, eps_root=eps_root), 10
    )
    updates, _ = tx.update({"w": g}, tx.init(params), params)
    return jnp.sum(updates["w"])

  zero = jnp.zeros(3)
  assert np.all(np.isnan(jax.grad(update_sum)(zero, 0.0)))
  grad = jax.grad(update_sum)(zero, 1e-16)
  assert np.all(np.isfinite(grad)) and np.all(grad < 0)
