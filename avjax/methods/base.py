"""What a method plugs into the shared training loop.

A method owns only what is different about it: its data pipeline, its model
and parameter initialisation, its loss (possibly stage-dependent), and its
evaluation. The loop (``avjax.train.loop``) owns stepping, sharding,
checkpointing, logging and the curriculum schedule, identically for all.
"""

from __future__ import annotations

import abc
from typing import Any, Mapping

import jax
import ml_collections
import optax

from avjax.train import optim
from avjax.train.stages import Stage
from avjax.train.state import TrainState

PyTree = Any
Batch = Mapping[str, jax.Array]


class Method(abc.ABC):
  """Base class of the five systems; see ``avjax/methods/*.py``."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  @abc.abstractmethod
  def train_iterator(
      self, batch_size: int, seed: int, process_index: int, process_count: int
  ) -> Any:
    """A grain iterator of per-process numpy batches (with get/set_state)."""

  @abc.abstractmethod
  def init_params(self, rng: jax.Array, batch: Batch) -> PyTree:
    """Initial parameters, given one example batch for shapes."""

  def make_optimizer(
      self, stage: Stage, total_steps: int
  ) -> optax.GradientTransformation:
    """The optax transformation that trains ``stage``.

    The default builds one optimiser from ``config.optimizer`` and returns
    that same object for every stage, so its state carries across stages.
    A method may return a different transformation per stage (e.g.
    ``optax.multi_transform`` with ``optax.set_to_zero()`` on the subtrees a
    stage freezes); the loop then starts that stage with a freshly
    initialised optimiser state (the params carry over).
    """
    del stage
    if getattr(self, "_shared_optimizer", None) is None:
      self._shared_optimizer = optim.make_optimizer(
          self.config.optimizer, total_steps
      )
    return self._shared_optimizer

  def save_artifacts(self, workdir: str) -> None:
    """Writes what inference needs besides params and config (default none).

    Called once per run by the host process, e.g. MAMA's tokenizer, so that
    ``avjax.inference.load`` works without the training dataset.
    """
    del workdir

  def load_artifacts(self, workdir: str) -> None:
    """Reads what ``save_artifacts`` wrote, where present (default none)."""
    del workdir

  def init_aux(self, rng: jax.Array, params: PyTree) -> PyTree:
    """Auxiliary learned state saved with the train state (default none)."""
    del rng, params
    return {}

  @abc.abstractmethod
  def loss_fn(
      self,
      params: PyTree,
      batch: Batch,
      rng: jax.Array,
      stage: Stage,
      step: jax.Array,
  ) -> tuple[jax.Array, dict]:
    """Scalar training loss and a dict of scalar metrics to log."""

  def train_step(
      self, state: TrainState, batch: Batch, stage: Stage
  ) -> tuple[TrainState, dict]:
    """One optimisation step; pure, jitted by the loop once per stage.

    The default differentiates ``loss_fn`` and applies the optimiser; methods
    with a different update rule (e.g. MAMA's bilevel step) override it.
    """
    grad_fn = jax.value_and_grad(self.loss_fn, has_aux=True)
    (loss, metrics), grads = grad_fn(
        state.params, batch, state.step_rng(), stage, state.step
    )
    metrics = dict(metrics, loss=loss)
    return state.apply_gradients(grads), metrics

  @abc.abstractmethod
  def evaluate(
      self, params: PyTree, split: str, plot_dir: str | None = None
  ) -> dict[str, float]:
    """Eval metrics (flat dict of floats) on ``split``; plots if plot_dir."""
