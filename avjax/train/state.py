"""The training state: one pytree holding everything a step changes.

Params, optimiser state and any auxiliary learned state (e.g. a meta-weight
network and its optimiser state) are plain pytrees, so the whole state can be
jitted, sharded, differentiated through (bilevel steps) and checkpointed by
orbax without special handling.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything that changes from one training step to the next.

  Attributes:
    step: int32 scalar, number of optimiser steps taken so far.
    params: model parameters.
    opt_state: optax state of ``tx`` for ``params``.
    rng: base PRNG key (uint32 [2]); the key of step ``s`` is
      ``fold_in(rng, s)``, so resuming needs no RNG bookkeeping.
    aux: method-specific learned state (e.g. MAMA's meta-net params and its
      optimiser state); an empty dict when unused.
    tx: the optax transformation (static, not saved).
  """

  step: jax.Array
  params: PyTree
  opt_state: PyTree
  rng: jax.Array
  aux: PyTree
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(
      cls,
      params: PyTree,
      tx: optax.GradientTransformation,
      rng: jax.Array,
      aux: PyTree | None = None,
  ) -> "TrainState":
    return cls(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=jax.jit(tx.init)(params),  # one program, not one per leaf
        rng=rng,
        aux={} if aux is None else aux,
        tx=tx,
    )

  def apply_gradients(self, grads: PyTree) -> "TrainState":
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(
        step=self.step + 1,
        params=optax.apply_updates(self.params, updates),
        opt_state=opt_state,
    )

  def step_rng(self) -> jax.Array:
    """PRNG key for the current step (dropout, noise, sampling)."""
    return jax.random.fold_in(self.rng, self.step)

  def checkpoint_tree(self) -> dict[str, PyTree]:
    """The saved part of the state (everything but the static ``tx``)."""
    return {
        "step": self.step,
        "params": self.params,
        "opt_state": self.opt_state,
        "rng": self.rng,
        "aux": self.aux,
    }

  def from_checkpoint_tree(self, tree: dict[str, PyTree]) -> "TrainState":
    return self.replace(**tree)
