"""A tiny in-memory method for testing the shared loop without datasets."""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from avjax.methods.base import Method


@jax.custom_vjp
def _scale_gradient(x, factor):
  """Identity on ``x``; multiplies the gradient flowing through by factor."""
  del factor
  return x


def _scale_gradient_fwd(x, factor):
  return x, factor


def _scale_gradient_bwd(factor, g):
  return g * factor, jnp.zeros_like(factor)


_scale_gradient.defvjp(_scale_gradient_fwd, _scale_gradient_bwd)


def toy_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(
      {
          "method": "toy",
          "seed": 0,
          "data": {"batch_size": 8},
          "optimizer": {
              "name": "adam",
              "learning_rate": 0.3,
              "schedule": "constant",
          },
          "stages": (
              {"name": "first", "steps": 6, "scale": 1.0},
              {"name": "second", "steps": 6, "scale": 2.0},
          ),
          "log_every": 2,
          "checkpoint_every": 4,
          "eval_every": 0,
          "max_checkpoints_to_keep": 5,
      }
  )
  config.update_from_flattened_dict(overrides)
  return config


class ToyRegression(Method):
  """Linear regression y = x·w* on 64 fixed examples; stage scales the loss.

  Test triggers (not config fields, so a resumed run has the same config):
  ``nan_loss_at`` makes the loss NaN from that (0-based) step on;
  ``nan_grad_at`` makes the gradient NaN on that step only, while its loss
  stays finite.
  """

  def __init__(self, config, nan_loss_at: int = -1, nan_grad_at: int = -1):
    super().__init__(config)
    self.nan_loss_at = nan_loss_at
    self.nan_grad_at = nan_grad_at
    rng = np.random.default_rng(0)
    self.x = rng.normal(size=(64, 3)).astype(np.float32)
    self.y = self.x @ np.array([1.0, -2.0, 0.5], np.float32)
    self.seen_stages = set()

  def train_iterator(self, batch_size, seed, process_index, process_count):
    src = [{"x": self.x[i], "y": self.y[i]} for i in range(len(self.x))]
    ds = (
        grain.MapDataset.source(src)[process_index::process_count]
        .seed(seed)
        .shuffle()
        .repeat()
        .batch(batch_size, drop_remainder=True)
    )
    return iter(ds.to_iter_dataset())

  def init_params(self, rng, batch):
    return {"w": jax.random.normal(rng, (batch["x"].shape[1],)) * 0.1}

  def loss_fn(self, params, batch, rng, stage, step):
    self.seen_stages.add(stage.name)
    err = batch["x"] @ params["w"] - batch["y"]
    loss = stage.options.scale * jnp.mean(err**2)
    nan_at = self.nan_loss_at
    loss = jnp.where((nan_at >= 0) & (step >= nan_at), jnp.nan, loss)
    poison = jnp.where(step == self.nan_grad_at, jnp.nan, 1.0)
    loss = _scale_gradient(loss, poison)
    return loss, {"progress": stage.progress(step)}

  def evaluate(self, params, split, plot_dir=None):
    err = self.x @ np.asarray(params["w"]) - self.y
    return {
        "mse": float(np.mean(err**2)),
        "w0": float(np.asarray(params["w"])[0]),
    }


class ToyFrozenSecondStage(ToyRegression):
  """ToyRegression plus a bias; stage 2 freezes ``w`` through its optimiser.

  Stage 1 trains ``{"w", "b"}`` with the config's optimiser; stage 2 uses
  ``optax.multi_transform`` with ``optax.set_to_zero()`` on ``w``, so the loop
  must start stage 2 with a fresh optimiser state of another structure.
  """

  def init_params(self, rng, batch):
    return dict(super().init_params(rng, batch), b=jnp.zeros(()))

  def loss_fn(self, params, batch, rng, stage, step):
    self.seen_stages.add(stage.name)
    err = batch["x"] @ params["w"] + params["b"] - batch["y"] - 1.0
    return stage.options.scale * jnp.mean(err**2), {}

  def make_optimizer(self, stage, total_steps):
    if stage.index == 0:
      return super().make_optimizer(stage, total_steps)
    if getattr(self, "_frozen_tx", None) is None:
      self._frozen_tx = optax.multi_transform(
          {"train": optax.sgd(0.05), "frozen": optax.set_to_zero()},
          {"w": "frozen", "b": "train"},
      )
    return self._frozen_tx

  def evaluate(self, params, split, plot_dir=None):
    w, b = np.asarray(params["w"]), float(params["b"])
    err = self.x @ w + b - self.y - 1.0
    return {
        "mse": float(np.mean(err**2)),
        "b": b,
        **{f"w{i}": float(v) for i, v in enumerate(w)},
    }
