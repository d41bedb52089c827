"""A reusable bilevel (meta-reweighting) training step: ``bilevel_step``.

Meta-Weight-Net (Shu et al., NeurIPS 2019), which MAMA builds on, trains a
small net ``w_φ(ℓ)`` mapping each sample's loss to a weight, so that a model
trained on the weighted loss does well on a small clean *meta* set. One
training step of the model θ (parameters) with optax state s is:

1. **Virtual step.** Per-sample losses ℓᵢ(θ) on the training batch, weights
   wᵢ = w_φ(stop_gradient(ℓᵢ)), weighted loss L(θ, φ) = Σ wᵢℓᵢ / B (or
   Σ wᵢℓᵢ / Σ wᵢ with ``normalize``), and one differentiable update
   θ'(φ) = θ − α ∇θ L (``virtual_step="sgd"``) or
   θ'(φ) = θ + tx.update(∇θ L, s, θ) (``"optimizer"``: through the model's
   own optax transformation, which is a pure function).
2. **Meta step.** The meta loss M(θ'(φ)) (mean per-sample loss of the
   virtual model on a meta batch) is differentiated w.r.t. φ through the
   virtual update (second order: ∇φ M = −α ∇θ'M · ∇θφ L for SGD) and φ is
   updated by its own optax optimiser (Meta-Weight-Net: Adam 1e-3 with L2
   weight decay 1e-4).
3. **Real step.** Weights recomputed with the new φ, without gradient, and
   the real model update ``state.apply_gradients(∇θ L)`` on the weighted
   loss, exactly as the plain step would take it with those weights.

Everything is one pure function of (state, batch, meta batch), jitted by the
loop like any step; under the loop's mesh the batch is sharded over devices
and XLA inserts the collectives, so losses that need the whole batch (InfoNCE
negatives) see it as on one device (tested on 4 forced CPU devices).

Where Meta-Weight-Net / MAMA are silent, choices are options
(``BilevelOptions``, from ``config.meta``):
  * ``virtual_step``: "sgd" (Meta-Weight-Net's choice: its classifier is
    trained with SGD, so the virtual step is the real one) or "optimizer".
    The meta signal assumes the virtual step resembles the real one. For a
    model trained with Adam, an SGD virtual step at Adam's learning rate
    does not: Adam's response to a change of gradient is about
    lr (1 − β₁) / √v̂ per coordinate, not lr, so the SGD virtual step is
    much smaller where gradients are small and differently directed.
    On the noisy-label digits benchmark (``launch/bench_meta_weight.py``,
    Adam model) the "sgd" virtual step leaves the weight map flat (its
    meta-gradient is ~20× smaller and the weight decay dominates it), while
    "optimizer" separates clean from noisy samples (AUC ≈ 0.99) and gains
    accuracy; numbers in docs/results/mama.md. Differentiating through Adam
    needs ``eps_root`` > 0 in the model's Adam (``config.optimizer.eps_root``):
    a parameter whose gradient has been exactly zero so far (e.g. the
    embedding of a token not yet seen) otherwise gives ∞·0 = NaN through
    √v at v = 0. Adam's very first update is ≈ −lr·sign(g), whose
    derivative is ~0, so through Adam the meta signal starts from the
    second step. The library default stays "sgd" (no requirement on the
    model's optimiser).
  * ``virtual_lr``: α of the "sgd" virtual step; None takes the model's own
    learning rate at the current step (the schedule passed in). It must be
    None with "optimizer", whose step size is the optimiser's own.
  * ``meta_every``: φ is updated on steps with ``step % meta_every == 0``
    (``jax.lax.cond``); other steps only do step 3 with the current φ.
  * ``meta_start``: no meta update before this step (a warm-up): the real
    step uses the initial φ (a neutral net weighs every sample 0.5, i.e.
    plain training with ``normalize``). Early on, per-sample losses do not
    yet tell noisy from clean samples, and an Adam-trained φ would still
    move ~lr per coordinate per step on a meta-gradient that is mostly
    noise.
  * ``normalize``: weights divided by their batch sum (a later Meta-Weight-
    Net script) instead of the plain weighted mean (the original).
  * The meta batch size is a data setting (``config.meta.batch_size``); the
    meta batches come from their own data iterator (see
    ``avjax.data.pipeline.iterators.ZipIterator``).
  * Dropout / sampling keys: the real step uses ``state.step_rng()`` (as the
    plain step does), the virtual and meta passes keys folded from it.

The weight net's parameters and optimiser state live in
``state.aux[META_KEY]`` (``init_meta_state``), so they are checkpointed and
restored with the rest of the state.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from avjax.train.state import TrainState

PyTree = Any
Batch = Mapping[str, jax.Array]
# (params, batch, rng) -> (per-sample losses [B], dict of scalar metrics).
PerSampleLoss = Callable[[PyTree, Batch, jax.Array], tuple[jax.Array, dict]]
# (weight-net params, per-sample losses [B]) -> weights [B].
WeightFn = Callable[[PyTree, jax.Array], jax.Array]
LearningRate = float | Callable[[jax.Array], jax.Array] | None

META_KEY = "meta_weight"
VIRTUAL_STEPS = ("sgd", "optimizer")
_WEIGHT_OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class BilevelOptions:
  """How the bilevel step runs (see the module docstring).

  Attributes:
    virtual_step: "sgd" or "optimizer".
    virtual_lr: α of the "sgd" virtual step, ≥ 0; None: the model's current
      learning rate. Must be None with "optimizer".
    meta_every: update the weight net every this many steps (≥ 1).
    normalize: divide the weights by their batch sum.
    meta_start: first step with a weight-net update (≥ 0).
  """

  virtual_step: str = "sgd"
  virtual_lr: float | None = None
  meta_every: int = 1
  normalize: bool = False
  meta_start: int = 0

  def __post_init__(self):
    if self.virtual_step not in VIRTUAL_STEPS:
      raise ValueError(
          f"config.meta.virtual_step={self.virtual_step!r} is not "
          f"one of {list(VIRTUAL_STEPS)}"
      )
    if self.virtual_lr is not None:
      if self.virtual_step != "sgd":
        raise ValueError(
            f"config.meta.virtual_lr={self.virtual_lr} is only used with "
            "virtual_step='sgd'; the 'optimizer' virtual step takes the "
            "optimiser's own step size (set virtual_lr to None)"
        )
      if not float(self.virtual_lr) >= 0:
        raise ValueError(
            f"config.meta.virtual_lr={self.virtual_lr} must be " ">= 0"
        )
    if (
        isinstance(self.meta_every, bool)
        or int(self.meta_every) < 1
        or (int(self.meta_every) != self.meta_every)
    ):
      raise ValueError(
          f"config.meta.meta_every={self.meta_every!r} must be "
          "an integer >= 1"
      )
    if (
        isinstance(self.meta_start, bool)
        or int(self.meta_start) < 0
        or int(self.meta_start) != self.meta_start
    ):
      raise ValueError(
          f"config.meta.meta_start={self.meta_start!r} must be "
          "an integer >= 0"
      )

  @classmethod
  def from_config(cls, cfg: ml_collections.ConfigDict) -> "BilevelOptions":
    """From ``config.meta`` (every attribute a field of it)."""
    get = lambda key: _field(cfg, key, "config.meta")
    lr = get("virtual_lr")
    return cls(
        virtual_step=str(get("virtual_step")),
        virtual_lr=None if lr is None else float(lr),
        meta_every=get("meta_every"),
        normalize=bool(get("normalize")),
        meta_start=get("meta_start"),
    )


def _field(cfg, key: str, where: str):
  """``cfg[key]``, or an error naming the missing field."""
  if key not in cfg:
    raise ValueError(f"{where} lacks the field {key!r} (has {sorted(cfg)})")
  return cfg[key]


def make_weight_optimizer(
    cfg: ml_collections.ConfigDict,
) -> optax.GradientTransformation:
  """The weight net's own optimiser from ``config.meta.optimizer``.

  ``name`` "adam" (Meta-Weight-Net: learning_rate 1e-3, weight_decay 1e-4,
  L2 added to the gradient as PyTorch's Adam does) or "sgd" (with
  ``momentum``), constant learning rate.
  """
  where = "config.meta.optimizer"
  name = _field(cfg, "name", where)
  if name not in _WEIGHT_OPTIMIZERS:
    raise ValueError(
        f"config.meta.optimizer.name={name!r} is not one of "
        f"{list(_WEIGHT_OPTIMIZERS)}"
    )
  lr = float(_field(cfg, "learning_rate", where))
  decay = float(_field(cfg, "weight_decay", where) or 0.0)
  if name == "adam":
    opt = optax.adam(lr)
  else:
    opt = optax.sgd(lr, momentum=_field(cfg, "momentum", where) or None)
  if decay > 0:
    opt = optax.chain(optax.add_decayed_weights(decay), opt)
  return opt


def init_meta_state(
    weight_params: PyTree, weight_tx: optax.GradientTransformation
) -> dict:
  """``state.aux[META_KEY]``: the weight net's params and optimiser state."""
  return {"params": weight_params, "opt_state": weight_tx.init(weight_params)}


def weighted_loss(
    losses: jax.Array, weights: jax.Array, normalize: bool
) -> jax.Array:
  """Σ wᵢℓᵢ / B, or Σ wᵢℓᵢ / Σ wᵢ with ``normalize`` (scalar).

  Args:
    losses: [B] per-sample losses.
    weights: [B] non-negative weights.
    normalize: divide by the weight sum instead of B (a zero sum gives 0).
  """
  total = jnp.sum(weights * losses)
  if normalize:
    return total / jnp.maximum(jnp.sum(weights), jnp.finfo(losses.dtype).tiny)
  return total / losses.shape[0]


def _learning_rate(learning_rate: LearningRate, step: jax.Array) -> jax.Array:
  if learning_rate is None:
    raise ValueError(
        "config.meta.virtual_lr is None, so the 'sgd' virtual step takes the "
        "model's learning rate, but bilevel_step got learning_rate=None; "
        "pass the optimiser's schedule or set config.meta.virtual_lr"
    )
  if callable(learning_rate):
    return jnp.asarray(learning_rate(step))
  return jnp.asarray(learning_rate)


def virtual_update(
    params: PyTree,
    grads: PyTree,
    opt_state: PyTree,
    tx: optax.GradientTransformation,
    options: BilevelOptions,
    step: jax.Array,
    learning_rate: LearningRate = None,
) -> PyTree:
  """θ' after one differentiable step from θ along ``grads`` (step 1)."""
  if options.virtual_step == "optimizer":
    updates, _ = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates)
  lr = (
      options.virtual_lr
      if options.virtual_lr is not None
      else _learning_rate(learning_rate, step)
  )
  return jax.tree.map(
      lambda p, g: p - jnp.asarray(lr, g.dtype) * g, params, grads
  )


def _mean_loss(loss_fn: PerSampleLoss) -> Callable[..., jax.Array]:
  return lambda params, batch, rng: jnp.mean(loss_fn(params, batch, rng)[0])


def meta_objective(
    weight_params: PyTree,
    weight_fn: WeightFn,
    loss_fn: PerSampleLoss,
    params: PyTree,
    opt_state: PyTree,
    tx: optax.GradientTransformation,
    batch: Batch,
    meta_batch: Batch,
    rngs: tuple[jax.Array, jax.Array],
    options: BilevelOptions,
    step: jax.Array,
    learning_rate: LearningRate = None,
    meta_loss_fn: Callable[..., jax.Array] | None = None,
) -> jax.Array:
  """M(θ'(φ)): meta loss of the virtual model, a function of φ (steps 1–2).

  Args:
    weight_params: φ, the weight net's parameters.
    weight_fn: (φ, losses [B]) → weights [B].
    loss_fn: (θ, batch, rng) → (per-sample losses [B], metrics).
    params, opt_state, tx: the model's θ, optax state and transformation.
    batch: training batch (leading axis B).
    meta_batch: meta-set batch (leading axis B_meta).
    rngs: keys of the virtual pass and of the meta pass.
    options: see ``BilevelOptions``.
    step: the current step (learning-rate schedule).
    learning_rate: the model's learning rate or schedule (for "sgd" with
      ``virtual_lr=None``).
    meta_loss_fn: (θ, meta batch, rng) → scalar; default the mean of
      ``loss_fn``'s per-sample losses.

  Returns:
    Scalar meta loss.
  """
  rng_virtual, rng_meta = rngs

  def inner(p):
    losses, _ = loss_fn(p, batch, rng_virtual)
    weights = weight_fn(weight_params, jax.lax.stop_gradient(losses))
    return weighted_loss(losses, weights, options.normalize)

  grads = jax.grad(inner)(params)
  new_params = virtual_update(
      params, grads, opt_state, tx, options, step, learning_rate
  )
  meta_loss_fn = meta_loss_fn or _mean_loss(loss_fn)
  return meta_loss_fn(new_params, meta_batch, rng_meta)


def bilevel_step(
    state: TrainState,
    batch: Batch,
    meta_batch: Batch,
    *,
    loss_fn: PerSampleLoss,
    weight_fn: WeightFn,
    weight_tx: optax.GradientTransformation,
    options: BilevelOptions,
    learning_rate: LearningRate = None,
    meta_loss_fn: Callable[..., jax.Array] | None = None,
) -> tuple[TrainState, dict, dict]:
  """One bilevel training step (steps 1–3 of the module docstring).

  Pure and jittable; call it from a method's ``train_step``.

  Args:
    state: the train state; ``state.aux[META_KEY]`` holds the weight net's
      ``params`` and ``opt_state`` (``init_meta_state``).
    batch: training batch.
    meta_batch: meta-set batch.
    loss_fn: (θ, batch, rng) → (per-sample losses [B], dict of scalars).
    weight_fn: (φ, losses [B]) → weights [B], e.g. ``MetaWeightNet.apply``.
    weight_tx: the weight net's optimiser (``make_weight_optimizer``).
    options: ``BilevelOptions``.
    learning_rate: the model's learning rate (float) or schedule
      (step → lr), used by the "sgd" virtual step when ``virtual_lr`` is
      None.
    meta_loss_fn: optional (θ, meta batch, rng) → scalar meta loss.

  Returns:
    (new state, metrics, per_sample). Metrics (scalars): ``loss`` (the
    weighted loss of the real step), ``loss_mean`` (unweighted), ``meta_loss``
    (virtual model on the meta batch; 0 on steps without a meta update),
    ``meta_step`` (1.0 where φ was updated), ``meta_grad_norm``,
    ``weight_mean``, ``weight_std`` and ``loss_fn``'s metrics.
    ``per_sample``: ``losses`` [B] and the real step's ``weights`` [B].
  """
  if META_KEY not in state.aux:
    raise ValueError(
        f"bilevel_step needs state.aux[{META_KEY!r}] (from "
        f"init_meta_state); state.aux has {sorted(state.aux)}"
    )
  meta = state.aux[META_KEY]
  rng = state.step_rng()
  rngs = (jax.random.fold_in(rng, 1), jax.random.fold_in(rng, 2))

  def meta_update(meta_state):
    objective = lambda phi: meta_objective(
        phi,
        weight_fn,
        loss_fn,
        state.params,
        state.opt_state,
        state.tx,
        batch,
        meta_batch,
        rngs,
        options,
        state.step,
        learning_rate,
        meta_loss_fn,
    )
    meta_loss, grads = jax.value_and_grad(objective)(meta_state["params"])
    updates, opt_state = weight_tx.update(
        grads, meta_state["opt_state"], meta_state["params"]
    )
    new = {
        "params": optax.apply_updates(meta_state["params"], updates),
        "opt_state": opt_state,
    }
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return new, (f32(meta_loss), f32(optax.global_norm(grads)), f32(1.0))

  def skip(meta_state):
    zero = jnp.zeros((), jnp.float32)
    return meta_state, (zero, zero, zero)

  if options.meta_every == 1 and options.meta_start == 0:
    meta, meta_out = meta_update(meta)
  else:
    due = (state.step % options.meta_every == 0) & (
        state.step >= options.meta_start
    )
    meta, meta_out = jax.lax.cond(due, meta_update, skip, meta)
  meta_loss, meta_grad_norm, did_meta = meta_out

  def real_loss(p):
    losses, metrics = loss_fn(p, batch, rng)
    weights = jax.lax.stop_gradient(
        weight_fn(meta["params"], jax.lax.stop_gradient(losses))
    )
    return weighted_loss(losses, weights, options.normalize), (
        losses,
        weights,
        metrics,
    )

  (loss, (losses, weights, metrics)), grads = jax.value_and_grad(
      real_loss, has_aux=True
  )(state.params)
  aux = dict(state.aux)
  aux[META_KEY] = meta
  new_state = state.apply_gradients(grads).replace(aux=aux)
  metrics = dict(
      metrics,
      loss=loss,
      loss_mean=jnp.mean(losses),
      meta_loss=meta_loss,
      meta_grad_norm=meta_grad_norm,
      meta_step=did_meta,
      weight_mean=jnp.mean(weights),
      weight_std=jnp.std(weights),
  )
  return new_state, metrics, {"losses": losses, "weights": weights}
