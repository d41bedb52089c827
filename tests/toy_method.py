"""Tiny in-memory methods for testing the shared code without datasets.

``ToyRegression`` (and ``ToyFrozenSecondStage``) exercise the loop: stages,
resumption, non-finite steps. ``ToyRetrieval`` implements only the
``Method`` contract — training, prediction and evaluation through a shared
evaluator — and is the walk-through of README "Adding a method".
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from avjax import config_utils
from avjax import losses
from avjax.data.pipeline import iterators
from avjax.methods import base


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
              "end_lr_fraction": 0.0,
              "b1": 0.9,
              "b2": 0.999,
              "eps_root": 0.0,
              "grad_clip_norm": 0.0,
          },
          "stages": (
              {"name": "first", "steps": 6, "scale": 1.0},
              {"name": "second", "steps": 6, "scale": 2.0},
          ),
          "log_every": 2,
          "checkpoint_every": 4,
          "eval_every": 0,
          "max_checkpoints_to_keep": 5,
          "eval_batch_size": 16,
          "evals": {},
          "toy": {"unused": 0.5},
      }
  )
  config.update_from_flattened_dict(overrides)
  return config


class ToyRegression(base.Method):
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
    self.rows = {}  # stage name -> rows of the batch its step traced with

  def train_iterator(self, batch_size, seed, process_index, process_count):
    src = [{"x": self.x[i], "y": self.y[i]} for i in range(len(self.x))]
    return iterators.make_train_iterator(
        src, batch_size, seed, None, process_index, process_count
    )

  def init_params(self, rng, batch):
    return {"w": jax.random.normal(rng, (batch["x"].shape[1],)) * 0.1}

  def loss_fn(self, params, batch, rng, stage, step):
    self.seen_stages.add(stage.name)
    self.rows[stage.name] = batch["x"].shape[0]
    err = batch["x"] @ params["w"] - batch["y"]
    loss = stage.options.scale * jnp.mean(err**2)
    nan_at = self.nan_loss_at
    loss = jnp.where((nan_at >= 0) & (step >= nan_at), jnp.nan, loss)
    poison = jnp.where(step == self.nan_grad_at, jnp.nan, 1.0)
    loss = _scale_gradient(loss, poison)
    return loss, {"progress": stage.progress(step)}

  def evaluate(self, state, split, run, plot_dir=None):
    params = state.params
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

  stage_optimizers = "per_stage"

  def make_optimizer(self, stage, run):
    if stage.index == 0:
      return super().make_optimizer(stage, run)
    return optax.multi_transform(
        {"train": optax.sgd(0.05), "frozen": optax.set_to_zero()},
        {"w": "frozen", "b": "train"},
    )

  def evaluate(self, state, split, run, plot_dir=None):
    params = state.params
    w, b = np.asarray(params["w"]), float(params["b"])
    err = self.x @ w + b - self.y - 1.0
    return {
        "mse": float(np.mean(err**2)),
        "b": b,
        **{f"w{i}": float(v) for i, v in enumerate(w)},
    }


_COMMON = config_utils.import_sibling(
    os.path.join(os.path.dirname(__file__), os.pardir, "configs", "x.py"),
    "common",
)


def toy_retrieval_config(**overrides) -> ml_collections.ConfigDict:
  """The config of ``ToyRetrieval``: ``configs/common.py``'s base, the
  method's own blocks, one evaluator entry."""
  config = _COMMON.base_config("toy_retrieval", 0)
  config.data.name = "toy_pairs"
  config.data.batch_size = 16
  config.data.num_classes = 4
  config.model = ml_collections.ConfigDict({"embed_dim": 8})
  config.loss = ml_collections.ConfigDict({"temperature": 0.1})
  config.optimizer.learning_rate = 0.05
  config.optimizer.warmup_steps = 0
  config.stages = (_COMMON.stage("train", 30),)
  config.log_every = 10
  config.checkpoint_every = 15
  config.eval_batch_size = 32
  config.evals.retrieval = _COMMON.retrieval_eval("a", "b", relevance="label")
  config.update_from_flattened_dict(overrides)
  return config


def toy_pairs(split: str, num_classes: int = 4) -> list[dict[str, np.ndarray]]:
  """Paired 6-d vectors of two "modalities" seen through different fixed
  maps of a class prototype, plus noise; 64 (train) or 32 rows."""
  protos = np.random.default_rng(0).normal(size=(num_classes, 3))
  maps = np.random.default_rng(1).normal(size=(2, 3, 6))
  rng = np.random.default_rng({"train": 2, "validation": 3, "test": 4}[split])
  n = 64 if split == "train" else 32
  labels = np.arange(n) % num_classes
  rows = []
  for i, c in enumerate(labels):
    a = protos[c] @ maps[0] + 0.3 * rng.normal(size=6)
    b = protos[c] @ maps[1] + 0.3 * rng.normal(size=6)
    rows.append(
        {
            "a": a.astype(np.float32),
            "b": b.astype(np.float32),
            "label": np.int32(c),
            "id": np.int32(i),
        }
    )
  return rows


class ToyRetrieval(base.Method):
  """Two linear towers aligned by InfoNCE: the ``Method`` contract alone.

  Training: ``train_iterator``, ``init_params``, ``loss_fn``. Prediction:
  ``modalities`` (two feature-vector modalities "a" and "b"),
  ``similarity``, ``embed``, ``modality_inputs``. Evaluation:
  ``eval_source`` and ``eval_inputs`` feed the retrieval evaluator named in
  ``config.evals``. Nothing in the shared code knows this class.
  """

  modalities = {"a": base.FEATURES, "b": base.FEATURES}
  similarity = "cosine"

  def train_iterator(self, batch_size, seed, process_index, process_count):
    rows = toy_pairs("train", self.config.data.num_classes)
    return iterators.make_train_iterator(
        rows, batch_size, seed, None, process_index, process_count
    )

  def init_params(self, rng, batch):
    dim, width = batch["a"].shape[1], int(self.config.model.embed_dim)
    ka, kb = jax.random.split(rng)
    return {
        "a": jax.random.normal(ka, (dim, width)) / np.sqrt(dim),
        "b": jax.random.normal(kb, (dim, width)) / np.sqrt(dim),
    }

  def loss_fn(self, params, batch, rng, stage, step):
    del rng, stage, step
    a = self.embed(params, "a", batch)
    b = self.embed(params, "b", batch)
    loss = jnp.mean(
        losses.info_nce(a, b, temperature=self.config.loss.temperature)
    )
    return loss, {}

  def embed(self, params, modality, inputs):
    return inputs[modality] @ params[modality]

  def eval_source(self, split):
    return toy_pairs(split, self.config.data.num_classes)

  def eval_inputs(self, records):
    return {"a": records["a"], "b": records["b"]}, {"label": records["label"]}

  def modality_inputs(self, modality, records):
    return {modality: np.stack(records).astype(np.float32)}
