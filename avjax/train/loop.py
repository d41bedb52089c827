"""The one training loop every method uses: ``train_and_evaluate``.

Read top to bottom it is the story of a run: build the method, the data
iterator and the state; resume from the newest readable checkpoint; step
through the curriculum stages (one jitted step per stage); log, evaluate and
checkpoint periodically; stop on a non-finite loss or update without saving
it; evaluate on the test split and write ``metrics.json``. A workdir that
holds a run with another config is an error, never silently retrained.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging

import avjax
from avjax import methods
from avjax.train import checkpoint as checkpoint_lib
from avjax.train import host_memory
from avjax.train import logging_utils
from avjax.train import multihost
from avjax.train import optim
from avjax.train import sharding
from avjax.train import stages as stages_lib
from avjax.train.stages import StageScheduler
from avjax.train.state import TrainState


def _peek(iterator: Any) -> Any:
  """Returns the next batch without advancing the iterator."""
  saved = iterator.get_state()
  batch = next(iterator)
  iterator.set_state(saved)
  return batch


def _next_batch(iterator: Any, count: int) -> Any:
  """``count`` consecutive batches of ``iterator``, concatenated in order
  along the batch axis (a stage's ``batch_size`` over the data's)."""
  if count == 1:
    return next(iterator)
  parts = [next(iterator) for _ in range(count)]
  return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *parts)


def _iterator_states(train_iter: Any) -> dict[str, Any]:
  """Every process's data-iterator state, keyed ``process_<i>``."""
  states = multihost.gather_json(train_iter.get_state())
  return {f"process_{i}": state for i, state in enumerate(states)}


def _own_iterator_state(saved: dict[str, Any]) -> Any:
  """This process's iterator state from a checkpoint's meta.

  Every process walks the same sequence of global batches (see
  ``avjax.data.pipeline.iterators``), so a run resumed on more processes than it was
  saved from may take process 0's state; checkpoints of older avjax
  versions hold one state, not a dict of them.
  """
  if not any(k.startswith("process_") for k in saved):
    return saved
  own = f"process_{jax.process_index()}"
  if own not in saved:
    logging.info(
        "Checkpoint has no iterator state for %s (saved by %d "
        "process(es)); using process_0's.",
        own,
        len(saved),
    )
    own = "process_0"
  return saved[own]


def _write_text_atomic(path: str, text: str) -> None:
  """Writes ``path`` through a new temporary file and a rename, so neither
  a crash nor a symlink at ``path`` (or at a guessable temporary name)
  makes it write anywhere else."""
  tmp = f"{path}.{secrets.token_hex(8)}.tmp"
  # O_EXCL: a new file (never an existing one or a symlink's target);
  # mode 0o666 less the umask, as a plain open would create it.
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _write_json_atomic(path: str, obj: Any) -> None:
  _write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


# Config keys that may change between a run and its resumption (dotted
# paths; a path covers everything under it): how often the run logs,
# evaluates and checkpoints, how it evaluates, and where its data lives and
# how it is read — never what is trained. Every other key must equal the
# checkpoint's, or the resumed run would be one that neither config
# describes (another schedule, data order, loss or model).
RESUME_FREE_KEYS = (
    "log_every",
    "eval_every",
    "checkpoint_every",
    "max_checkpoints_to_keep",
    "eval_batch_size",
    "evals",
    "diagnostics",
    "data.data_dir",
    "data.manual_dir",
    "data.image_root",
    "data.skip_bad_files",
    "data.cache_features",
)
# Saved beside the fingerprint; checkpoints of avjax < 0.2 recorded a few
# config blocks only and cannot be compared key by key.
_FINGERPRINT_FORMAT = 2


def _without(cfg: dict[str, Any], dotted: str) -> None:
  head, _, rest = dotted.partition(".")
  if head in cfg:
    if rest:
      if isinstance(cfg[head], dict):
        _without(cfg[head], rest)
    else:
      del cfg[head]


def run_fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The whole config but ``RESUME_FREE_KEYS``: what a resumed run must
  share with the checkpoint's (as JSON-compatible values)."""
  cfg = json.loads(config.to_json_best_effort())
  for key in RESUME_FREE_KEYS:
    _without(cfg, key)
  return cfg


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out
  if isinstance(tree, (list, tuple)):
    out = {}
    for i, v in enumerate(tree):
      out.update(_flatten(v, f"{prefix}[{i}]"))
    return out or {prefix: []}
  return {prefix: tree}


def fingerprint_differences(
    saved: dict[str, Any], current: dict[str, Any]
) -> list[str]:
  """``key: saved → current`` for every leaf that differs (dotted keys)."""
  a, b = _flatten(saved), _flatten(current)
  missing = object()
  return [
      f"{k}: {a.get(k, '<unset>')!r} → {b.get(k, '<unset>')!r}"
      for k in sorted(set(a) | set(b))
      if a.get(k, missing) != b.get(k, missing)
  ]


def _resume_check(
    fingerprint: dict[str, Any], scheduler: StageScheduler, workdir: str
) -> checkpoint_lib.CheckFn:
  """Raises CheckpointMismatch when a checkpoint's run is not this one."""

  def check(step: int, meta: dict[str, Any]) -> None:
    saved = meta.get("config")
    if saved is None:
      logging.warning(
          "Checkpoint %d in %s has no config record (written by "
          "an older avjax); only its stage and shapes are "
          "checked.",
          step,
          workdir,
      )
    elif meta.get("config_format") != _FINGERPRINT_FORMAT:
      raise checkpoint_lib.CheckpointMismatch(
          f"The checkpoint at step {step} in {workdir} was written by an "
          f"older avjax ({meta.get('avjax_version', 'unknown version')}) "
          "whose config record cannot be compared with this config; use a "
          "new --workdir (the checkpoints are left untouched)."
      )
    else:
      diffs = fingerprint_differences(saved, fingerprint)
      if diffs:
        shown = diffs[:10] + (
            [f"... and {len(diffs) - 10} more"] if len(diffs) > 10 else []
        )
        raise checkpoint_lib.CheckpointMismatch(
            f"The run in {workdir} (checkpoint at step {step}) was trained "
            "with another config: " + "; ".join(shown) + ". The config "
            "changed between runs — rerun with the original config to "
            "resume, or use a new --workdir (the checkpoints are left "
            "untouched)."
        )
    expected = scheduler.stage_at(step)
    saved_stage = meta.get("stage")
    if saved_stage is not None and saved_stage != expected.index:
      raise checkpoint_lib.CheckpointMismatch(
          f"Checkpoint in {workdir} at step {step} was saved in stage "
          f"{saved_stage} ({meta.get('stage_name')!r}), but config.stages "
          f"puts step {step} in stage {expected.index} ({expected.name!r}); "
          "the config changed between runs — use a new --workdir."
      )

  return check


class _PendingMetrics:
  """Per-step metrics kept on device until the next flush (no host sync)."""

  def __init__(self):
    self._items: list[tuple[int, dict]] = []

  def add(self, step: int, metrics: dict) -> None:
    self._items.append((step, metrics))

  def flush(self) -> dict[str, float]:
    """Fetches, checks finiteness of loss and state, returns the means.

    Raises:
      FloatingPointError: naming the first step whose loss, or whose updated
        parameters / optimiser state, are not finite. The caller saves no
        checkpoint after such a step.
    """
    if not self._items:
      return {}
    steps = [s for s, _ in self._items]
    fetched = jax.device_get([m for _, m in self._items])
    self._items = []
    for step, m in zip(steps, fetched):
      loss = float(m["loss"])
      if not math.isfinite(loss):
        raise FloatingPointError(
            f"Training loss is {loss} at step {step + 1}; stopping. The last "
            "good checkpoint is left intact."
        )
      if not bool(m.get(_STATE_FINITE, True)):
        raise FloatingPointError(
            f"The parameters or optimiser state became non-finite at step "
            f"{step + 1} although the loss ({loss:.6g}) was finite: a "
            "non-finite gradient or update. Stopping; the last good "
            "checkpoint is left intact (try a lower learning rate or "
            "config.optimizer.grad_clip_norm)."
        )
    return {
        k: float(np.mean([m[k] for m in fetched]))
        for k in fetched[0]
        if k != _STATE_FINITE
    }


_STATE_FINITE = "state_finite"


def _all_finite(tree: Any) -> jax.Array:
  """True when every floating-point leaf of ``tree`` is finite (jittable)."""
  checks = [
      jnp.all(jnp.isfinite(x))
      for x in jax.tree.leaves(tree)
      if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
  ]
  return jnp.all(jnp.stack(checks)) if checks else jnp.array(True)


_STAGE_OPTIMIZERS = ("shared", "per_stage")


def stage_optimizers(
    method: methods.Method, run: methods.RunInfo
) -> tuple[list[optax.GradientTransformation], list[int]]:
  """Each stage's optimiser and optimiser group, as the method declares.

  Returns:
    ``(txs, groups)``: ``txs[i]`` trains stage ``i``; stages with equal
    ``groups[i]`` share one optimiser and carry its state across their
    boundary, a stage of a new group starts with a fresh optimiser state.
    ``Method.stage_optimizers`` "shared": one group; "per_stage": one per
    stage.
  """
  mode = method.stage_optimizers
  if mode not in _STAGE_OPTIMIZERS:
    raise ValueError(
        f"{type(method).__name__}.stage_optimizers={mode!r} is not one of "
        f"{_STAGE_OPTIMIZERS}"
    )
  stages = list(run.stages)
  if mode == "shared":
    tx = method.make_optimizer(stages[0], run)
    return [tx] * len(stages), [0] * len(stages)
  return [method.make_optimizer(s, run) for s in stages], list(
      range(len(stages))
  )


def checked_train_step(
    method: methods.Method, stage: Any, run: methods.RunInfo
):
  """``method.train_step`` for ``stage``, plus a finiteness flag.

  The flag covers the updated params, optimiser state and aux, so a
  non-finite gradient is caught on the step it happens even when that
  step's loss (computed before the update) is finite.
  """

  def step(state: TrainState, batch: Any) -> tuple[TrainState, dict]:
    new_state, metrics = method.train_step(state, batch, stage, run)
    finite = _all_finite((new_state.params, new_state.opt_state, new_state.aux))
    return new_state, dict(metrics, **{_STATE_FINITE: finite})

  return step


def first_stage_step(
    method: methods.Method, config: ml_collections.ConfigDict, batch: Any
) -> tuple[Callable[[TrainState, Any], tuple[TrainState, dict]], TrainState]:
  """(jitted ``checked_train_step`` of the first stage, an initial state):
  what the loop runs, on one device, for benchmarks that time a step.

  Parameters and aux are initialised from ``config.seed`` with ``batch``
  (host arrays) for shapes; the state's rng is ``PRNGKey(seed + 1)``.
  """
  run = methods.RunInfo.from_config(config)
  rng = jax.random.PRNGKey(config.seed)
  params = method.init_params(rng, batch)
  state = TrainState.create(
      params,
      stage_optimizers(method, run)[0][0],
      jax.random.PRNGKey(config.seed + 1),
      aux=method.init_aux(rng, params),
  )
  return jax.jit(checked_train_step(method, run.stages[0], run)), state


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    method: methods.Method | None = None,
) -> dict[str, float]:
  """Trains ``config.method`` per ``config`` in ``workdir``, resuming there.

  Args:
    config: the run's config (see ``configs/*.py``).
    workdir: output directory; an existing run there is resumed.
    method: a Method instance to train instead of looking up
      ``config.method`` (for custom methods, notebooks and tests).

  Returns:
    The final test metrics, also written to ``workdir/metrics.json``.

  Raises:
    checkpoint.CheckpointMismatch: ``workdir`` holds a run with another
      config (nothing in it is changed).
    FloatingPointError: the loss or the updated state became non-finite.
  """
  workdir = os.path.abspath(workdir)
  host_memory.retain_freed_memory()
  is_host = jax.process_index() == 0
  if is_host:
    os.makedirs(workdir, exist_ok=True)
  method = method or methods.get_method(config)
  scheduler = StageScheduler(config.stages)
  total_steps = scheduler.total_steps
  draws = stages_lib.batches_per_step(scheduler, int(config.data.batch_size))
  mesh = sharding.make_mesh()
  local_batch_size = sharding.check_batch_size(config.data.batch_size, mesh)
  fingerprint = run_fingerprint(config)
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"),
      max_to_keep=config.max_checkpoints_to_keep,
  )
  resume_check = _resume_check(fingerprint, scheduler, workdir)
  try:  # Refuse a workdir of another run before building model and data.
    ckpt.check_latest(resume_check)
  except checkpoint_lib.CheckpointMismatch:
    ckpt.close()
    raise

  train_iter = method.train_iterator(
      local_batch_size, config.seed, jax.process_index(), jax.process_count()
  )
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  params_rng, _ = jax.random.split(init_rng)
  params = method.init_params(params_rng, _peek(train_iter))
  run = methods.RunInfo(config=config, stages=scheduler, mesh=mesh)
  txs, groups = stage_optimizers(method, run)

  def for_stage(state: TrainState, old: int, new: int) -> TrainState:
    """``state`` moved from stage ``old`` to ``new``: the new stage's
    optimiser, with a fresh state when it is another group's."""
    if groups[old] == groups[new]:
      return state
    opt_state = sharding.replicate(jax.jit(txs[new].init)(state.params), mesh)
    return state.replace(tx=txs[new], opt_state=opt_state)

  state = TrainState.create(
      params, txs[0], train_rng, aux=method.init_aux(params_rng, params)
  )
  state = sharding.replicate(state, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info(
      "%s: %d parameters, %d steps in %d stage(s), %d device(s).",
      config.method,
      n_params,
      total_steps,
      len(scheduler),
      jax.device_count(),
  )

  restored = ckpt.restore_latest(
      lambda step, meta: for_stage(
          state, 0, scheduler.stage_at(step).index
      ).checkpoint_tree(),
      check=resume_check,
  )
  start_step = 0
  if restored is not None:
    start_step, tree, meta = restored
    state = for_stage(state, 0, scheduler.stage_at(start_step).index)
    state = state.from_checkpoint_tree(tree)
    train_iter.set_state(_own_iterator_state(meta["data_iterator"]))
    logging.info(
        "Resumed from step %d (stage %r).",
        start_step,
        scheduler.stage_at(start_step).name,
    )

  if is_host:  # The full config of the run, for people and for inference.
    _write_text_atomic(
        os.path.join(workdir, "config.json"),
        config.to_json_best_effort(indent=2, sort_keys=True),
    )
    method.save_artifacts(workdir)
  writer = logging_utils.MetricWriter(workdir, enabled=is_host)
  step_fns: dict[int, Any] = {}
  pending = _PendingMetrics()
  log_every = int(config.log_every)
  ckpt_every = int(config.checkpoint_every)
  eval_every = int(config.eval_every)
  bar = tqdm.tqdm(
      total=total_steps,
      initial=start_step,
      disable=not is_host,
      desc=config.method,
      unit="step",
  )
  t0 = time.time()
  try:
    for step in range(start_step, total_steps):
      stage = scheduler.stage_at(step)
      if stage.index not in step_fns:
        step_fns[stage.index] = jax.jit(
            checked_train_step(method, stage, run), donate_argnums=0
        )
      batch = sharding.shard_batch(
          _next_batch(train_iter, draws[stage.index]), mesh
      )
      state, metrics = step_fns[stage.index](state, batch)
      pending.add(step, metrics)
      done = step + 1
      bar.update(1)
      at_save = (
          done % ckpt_every == 0 or done == total_steps or done == stage.end
      )
      at_eval = eval_every and done % eval_every == 0 and done != total_steps
      if done % log_every == 0 or at_save or at_eval:
        scalars = pending.flush()  # Raises before a non-finite state is saved.
        scalars["stage"] = stage.index
        writer.write_scalars(
            done, {f"train/{k}": v for k, v in scalars.items()}
        )
        bar.set_postfix(loss=f"{scalars['loss']:.4f}", stage=stage.name)
      if done == stage.end and done < total_steps:
        # Switch optimisers before saving, so the checkpoint at a stage
        # boundary already has the next stage's structure, as its meta says.
        state = for_stage(state, stage.index, stage.index + 1)
      if at_save:
        ckpt.save(
            done,
            state.checkpoint_tree(),
            {
                "stage": scheduler.stage_at(done).index,
                "stage_name": scheduler.stage_at(done).name,
                "config": fingerprint,
                "config_format": _FINGERPRINT_FORMAT,
                "data_iterator": _iterator_states(train_iter),
                # Read by avjax.inference.load to refuse other versions.
                "avjax_version": avjax.__version__,
            },
        )
      if at_eval:
        val = method.evaluate(state, "validation", run)
        writer.write_scalars(done, {f"val/{k}": v for k, v in val.items()})
        logging.info("step %d validation: %s", done, val)
  finally:
    bar.close()
    ckpt.wait_until_finished()
    writer.flush()
  train_seconds = time.time() - t0

  plot_dir = os.path.join(workdir, "plots") if is_host else None
  if plot_dir:
    os.makedirs(plot_dir, exist_ok=True)
  final = {
      k: float(v)
      for k, v in method.evaluate(state, "test", run, plot_dir=plot_dir).items()
  }
  writer.write_scalars(total_steps, {f"test/{k}": v for k, v in final.items()})
  if is_host:
    _write_json_atomic(os.path.join(workdir, "metrics.json"), final)
    _plot_curves(writer.jsonl_path, plot_dir)
  writer.close()
  ckpt.close()
  logging.info(
      "Trained %d steps in %.1f s; test metrics: %s",
      total_steps - start_step,
      train_seconds,
      final,
  )
  return final


def _plot_curves(jsonl_path: str, plot_dir: str) -> None:
  from avjax.eval import plots  # matplotlib only when plotting.

  with open(jsonl_path, encoding="utf-8") as f:
    keys = sorted(
        {
            k
            for line in f
            for k in json.loads(line)
            if k.startswith("train/") and k != "train/stage"
        }
    )
  if keys:
    plots.plot_training_curves(
        jsonl_path, os.path.join(plot_dir, "training_curves.png"), keys
    )
