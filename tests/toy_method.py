"""A tiny in-memory method for testing the shared loop without datasets."""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avjax.methods.base import Method


def toy_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict({
      "method": "toy",
      "seed": 0,
      "data": {"batch_size": 8, "nan_at_step": -1},
      "optimizer": {"name": "adam", "learning_rate": 0.3,
                    "schedule": "constant"},
      "stages": ({"name": "first", "steps": 6, "scale": 1.0},
                 {"name": "second", "steps": 6, "scale": 2.0}),
      "log_every": 2,
      "checkpoint_every": 4,
      "eval_every": 0,
      "max_checkpoints_to_keep": 5,
  })
  config.update_from_flattened_dict(overrides)
  return config


class ToyRegression(Method):
  """Linear regression y = x·w* on 64 fixed examples; stage scales the loss.

  ``config.data.nan_at_step`` makes the loss NaN from that (0-based) step on.
  """

  def __init__(self, config):
    super().__init__(config)
    rng = np.random.default_rng(0)
    self.x = rng.normal(size=(64, 3)).astype(np.float32)
    self.y = (self.x @ np.array([1.0, -2.0, 0.5], np.float32))
    self.seen_stages = set()

  def train_iterator(self, batch_size, seed, process_index, process_count):
    src = [{"x": self.x[i], "y": self.y[i]} for i in range(len(self.x))]
    ds = (grain.MapDataset.source(src)[process_index::process_count]
          .seed(seed).shuffle().repeat().batch(batch_size,
                                               drop_remainder=True))
    return iter(ds.to_iter_dataset())

  def init_params(self, rng, batch):
    return {"w": jax.random.normal(rng, (batch["x"].shape[1],)) * 0.1}

  def loss_fn(self, params, batch, rng, stage, step):
    self.seen_stages.add(stage.name)
    err = batch["x"] @ params["w"] - batch["y"]
    loss = stage.options.scale * jnp.mean(err ** 2)
    nan_at = self.config.data.nan_at_step
    loss = jnp.where((nan_at >= 0) & (step >= nan_at), jnp.nan, loss)
    return loss, {"progress": stage.progress(step)}

  def evaluate(self, params, split, plot_dir=None):
    err = self.x @ np.asarray(params["w"]) - self.y
    return {"mse": float(np.mean(err ** 2)),
            "w0": float(np.asarray(params["w"])[0])}
