"""The ``Method`` contract: what a method plugs into training, evaluation
and prediction.

A method owns only what is different about it; everything else is shared:

* **Training.** Its data iterator, parameter initialisation, loss (possibly
  stage-dependent) and, where needed, its own update rule. The loop
  (``avjax.train.loop``) owns stepping, sharding, checkpointing, logging and
  the curriculum schedule, and hands the method a ``RunInfo``.
* **Prediction.** The modalities it embeds (``modalities``: name → kind of
  input), how embeddings are compared (``similarity``), a pure ``embed``
  per modality, and how records of the training dataset become model inputs
  (``eval_inputs`` for a batch of whole records, ``modality_inputs`` for
  inputs of one modality). Methods that predict something other than
  embeddings offer it in ``predict_fns`` (e.g. Synchformer's offsets).
  ``avjax.inference`` and the benchmarks use only this.
* **Evaluation.** The evaluators named in ``config.evals``
  (``avjax.eval.evaluators``: retrieval, linear probe, multiple choice,
  sync offset) run on the method's prediction functions; a method adds its
  own diagnostics in ``extra_metrics``.

See README "Adding a method" and ``tests/toy_method.py`` for a complete,
minimal method.
"""

from __future__ import annotations

import abc
import dataclasses
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from avjax.train import optim
from avjax.train.stages import Stage
from avjax.train.stages import StageScheduler
from avjax.train.state import TrainState

PyTree = Any
Batch = Mapping[str, Any]

# Kinds of input a modality reads (``Method.modalities`` values): files of
# these kinds are read by ``avjax.inference``; "features" are arrays only.
AUDIO, IMAGE, VIDEO, TEXT, FEATURES = (
    "audio",
    "image",
    "video",
    "text",
    "features",
)
INPUT_KINDS = (AUDIO, IMAGE, VIDEO, TEXT, FEATURES)


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What the loop tells a method about the run it is part of.

  Attributes:
    config: the run's config.
    stages: the curriculum (``config.stages``).
    mesh: the device mesh batches are sharded over (None outside a run,
      e.g. in unit tests of a method).
  """

  config: ml_collections.ConfigDict
  stages: StageScheduler
  mesh: jax.sharding.Mesh | None = None

  @property
  def total_steps(self) -> int:
    return self.stages.total_steps

  def learning_rate(self) -> optax.Schedule:
    """The schedule of ``config.optimizer`` over the whole run."""
    return optim.learning_rate_schedule(self.config.optimizer, self.total_steps)

  @classmethod
  def from_config(
      cls,
      config: ml_collections.ConfigDict,
      mesh: jax.sharding.Mesh | None = None,
  ) -> "RunInfo":
    return cls(config=config, stages=StageScheduler(config.stages), mesh=mesh)


class Method(abc.ABC):
  """Base class of the systems in ``avjax/methods``.

  Class attributes a method sets:
    modalities: {modality name: input kind} it embeds, e.g.
      ``{"audio": "audio", "visual": "image"}``; empty when it embeds
      nothing. Kinds are ``INPUT_KINDS``.
    similarity: "cosine" or "euclidean": how its embeddings are compared
      (retrieval evaluators and ``avjax.inference`` search).
    stage_optimizers: "shared" — one optimiser (and its state) carries
      across all stages — or "per_stage": ``make_optimizer`` builds one per
      stage and each stage starts with a fresh optimiser state (e.g.
      stages that freeze different parameters).
  """

  modalities: Mapping[str, str] = {}
  similarity: str = "cosine"
  stage_optimizers: str = "shared"

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  # Training -----------------------------------------------------------------
  @abc.abstractmethod
  def train_iterator(
      self, batch_size: int, seed: int, process_index: int, process_count: int
  ) -> Any:
    """A grain iterator of per-process numpy batches (with get/set_state)."""

  @abc.abstractmethod
  def init_params(self, rng: jax.Array, batch: Batch) -> PyTree:
    """Initial parameters, given one example batch for shapes."""

  def init_aux(self, rng: jax.Array, params: PyTree) -> PyTree:
    """Auxiliary learned state saved with the train state (default none),
    e.g. a meta-weight net and its optimiser state. ``rng`` is the key
    ``init_params`` got: derive this state's draws from it with
    ``jax.random.fold_in``, so they are not the parameters' own."""
    del rng, params
    return {}

  def make_optimizer(
      self, stage: Stage, run: RunInfo
  ) -> optax.GradientTransformation:
    """The optax transformation that trains ``stage``.

    With ``stage_optimizers == "shared"`` the loop calls this once, for the
    first stage, and uses the result throughout; with "per_stage", once per
    stage (e.g. ``optax.multi_transform`` with ``optax.set_to_zero()`` on
    what a stage freezes). The default builds ``config.optimizer`` with its
    schedule over the whole run.
    """
    del stage
    return optim.make_optimizer(self.config.optimizer, run.total_steps)

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

  def project_params(self, params: PyTree) -> PyTree:
    """Maps updated params back into their domain after every update
    (e.g. a learned temperature into its bounds); default: unchanged."""
    return params

  def train_step(
      self, state: TrainState, batch: Batch, stage: Stage, run: RunInfo
  ) -> tuple[TrainState, dict]:
    """One optimisation step; pure, jitted by the loop once per stage.

    The default differentiates ``loss_fn``, applies the optimiser and
    ``project_params``; methods with another update rule (e.g. MAMA's
    bilevel step) override it.
    """
    del run
    grad_fn = jax.value_and_grad(self.loss_fn, has_aux=True)
    (loss, metrics), grads = grad_fn(
        state.params, batch, state.step_rng(), stage, state.step
    )
    state = state.apply_gradients(grads)
    state = state.replace(params=self.project_params(state.params))
    return state, dict(metrics, loss=loss)

  # Prediction ---------------------------------------------------------------
  def embed(self, params: PyTree, modality: str, inputs: Batch) -> jax.Array:
    """float32 [B, E] embeddings of one modality's model inputs (pure,
    jittable with ``modality`` static).

    Args:
      params: the model parameters (``TrainState.params``).
      modality: one of ``self.modalities``.
      inputs: what ``eval_inputs`` / ``modality_inputs`` return (keys the
        method chooses; only this modality's are read).
    """
    raise ValueError(
        f"{type(self).__name__} embeds no modality (it offers "
        f"{sorted(self.predict_fns())})"
    )

  def predict_fns(self) -> dict[str, Callable[[PyTree, Batch], Any]]:
    """Named pure functions ``(params, inputs) -> outputs`` the method
    offers (big_vision's ``predict_fns``). Default: ``embed_<modality>``
    for each modality."""
    return {
        f"embed_{m}": (lambda p, x, m=m: self.embed(p, m, x))
        for m in self.modalities
    }

  def eval_source(self, split: str) -> Sequence[Batch]:
    """The records of an evaluation split (random access, stored format)."""
    raise ValueError(f"{type(self).__name__} has no evaluation source")

  def eval_inputs(self, records: dict[str, Any]) -> dict[str, Any]:
    """A stacked batch of ``eval_source`` records → model inputs of every
    modality plus per-row metadata the evaluators read (labels, ids,
    relevance groups, captions), as ``(inputs, metadata)``. Default: every
    field is a model input, no metadata."""
    return dict(records), {}

  def modality_inputs(
      self, modality: str, records: Sequence[Any]
  ) -> dict[str, np.ndarray]:
    """Records of one modality (``avjax.inference.records``) → the model
    inputs ``embed(params, modality, ·)`` reads, stacked over the batch."""
    raise ValueError(
        f"{type(self).__name__} does not embed inputs of modality "
        f"{modality!r}"
    )

  def train_subset(self) -> np.ndarray | None:
    """Indices of the train split the method trains on, when it trains on
    a subset (evaluators then draw few-shot probes from the rest); None =
    the whole split."""
    return None

  # Evaluation ---------------------------------------------------------------
  def evaluate(
      self,
      state: TrainState,
      split: str,
      run: RunInfo,
      plot_dir: str | None = None,
  ) -> dict[str, float]:
    """Metrics on ``split`` (a flat dict of floats): the evaluators of
    ``config.evals``, then ``extra_metrics``; plots when ``plot_dir``."""
    from avjax.eval import evaluators  # pylint: disable=import-outside-toplevel

    context = evaluators.EvalContext(self, state, split, plot_dir)
    metrics = evaluators.run_all(self.config.evals, context)
    metrics.update(self.extra_metrics(context, run))
    return metrics

  def extra_metrics(self, context: Any, run: RunInfo) -> dict[str, float]:
    """Method-specific diagnostics and plots beside the shared evaluators
    (``context`` is an ``avjax.eval.evaluators.EvalContext``: the state,
    split, plot dir and the split's cached predictions). Default none."""
    del context, run
    return {}

  # Artifacts ----------------------------------------------------------------
  def save_artifacts(self, workdir: str) -> None:
    """Writes what inference needs besides params and config (default none).

    Called once per run by the host process, e.g. MAMA's tokenizer, so that
    ``avjax.inference.load`` works without the training dataset.
    """
    del workdir

  def load_artifacts(self, workdir: str) -> None:
    """Reads what ``save_artifacts`` wrote, where present (default none)."""
    del workdir


# Jitted prediction functions per method object and tuple of names, so the
# evaluations of a run and the calls of a loaded model compile each once.
_JITTED: "weakref.WeakKeyDictionary[Method, dict]" = weakref.WeakKeyDictionary()


class AudioVisualEmbedding:
  """``embed`` for a method whose ``encode(params, audio, visual)`` returns
  (audio [B, E], visual [B, E]) embeddings and accepts None for a tower it
  should not run: it embeds one modality (``"audio"`` or ``"visual"``)
  without computing the other. Mix in before ``Method``."""

  def embed(self, params: PyTree, modality: str, inputs: Batch) -> jax.Array:
    audio, visual = self.encode(
        params,
        inputs["audio"] if modality == "audio" else None,
        inputs["visual"] if modality == "visual" else None,
    )
    return audio if modality == "audio" else visual


def jitted_predictions(
    method: Method, names: Sequence[str]
) -> Callable[[PyTree, Batch], dict[str, Any]]:
  """One jitted ``(params, inputs) -> {name: output}`` computing the named
  ``method.predict_fns()`` together (cached per method and names).

  Raises:
    ValueError: naming the predictions the method does not offer.
  """
  names = tuple(names)
  cache = _JITTED.setdefault(method, {})
  if names not in cache:
    fns = method.predict_fns()
    unknown = [n for n in names if n not in fns]
    if unknown:
      raise ValueError(
          f"{type(method).__name__} offers no prediction {unknown}; it "
          f"offers {sorted(fns)}"
      )
    cache[names] = jax.jit(lambda p, x: {n: fns[n](p, x) for n in names})
  return cache[names]
