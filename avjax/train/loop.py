"""The one training loop every method uses: ``train_and_evaluate``.

Read top to bottom it is the story of a run: build the method, the data
iterator and the state; resume from the newest readable checkpoint; step
through the curriculum stages (one jitted step per stage); log, evaluate and
checkpoint periodically; stop on a non-finite loss without touching the last
good checkpoint; evaluate on the test split and write ``metrics.json``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging

from avjax import methods
from avjax.train import checkpoint as checkpoint_lib
from avjax.train import logging_utils
from avjax.train import optim
from avjax.train import sharding
from avjax.train.stages import StageScheduler
from avjax.train.state import TrainState


def _peek(iterator: Any) -> Any:
  """Returns the next batch without advancing the iterator."""
  saved = iterator.get_state()
  batch = next(iterator)
  iterator.set_state(saved)
  return batch


def _write_json_atomic(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


class _PendingMetrics:
  """Per-step metrics kept on device until the next flush (no host sync)."""

  def __init__(self):
    self._items: list[tuple[int, dict]] = []

  def add(self, step: int, metrics: dict) -> None:
    self._items.append((step, metrics))

  def flush(self) -> dict[str, float]:
    """Fetches, checks finiteness of ``loss``, and returns the means.

    Raises:
      FloatingPointError: naming the first step whose loss is not finite.
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
            "good checkpoint is left intact.")
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def _check_resume(meta: dict, step: int, scheduler: StageScheduler,
                  directory: str) -> None:
  expected = scheduler.stage_at(step)
  saved_stage = meta.get("stage")
  if saved_stage is not None and saved_stage != expected.index:
    raise ValueError(
        f"Checkpoint in {directory} at step {step} was saved in stage "
        f"{saved_stage} ({meta.get('stage_name')!r}), but config.stages puts "
        f"step {step} in stage {expected.index} ({expected.name!r}); the "
        "config changed between runs — use a new --workdir.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       method: methods.Method | None = None
                       ) -> dict[str, float]:
  """Trains ``config.method`` per ``config`` in ``workdir``, resuming there.

  Args:
    config: the run's config (see ``configs/*.py``).
    workdir: output directory; an existing run there is resumed.
    method: a Method instance to train instead of looking up
      ``config.method`` (for custom methods, notebooks and tests).

  Returns:
    The final test metrics, also written to ``workdir/metrics.json``.
  """
  workdir = os.path.abspath(workdir)
  is_host = jax.process_index() == 0
  if is_host:
    os.makedirs(workdir, exist_ok=True)
  method = method or methods.get_method(config)
  scheduler = StageScheduler(config.stages)
  total_steps = scheduler.total_steps
  mesh = sharding.make_mesh()
  local_batch_size = sharding.check_batch_size(config.data.batch_size, mesh)

  train_iter = method.train_iterator(local_batch_size, config.seed,
                                     jax.process_index(), jax.process_count())
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  params_rng, aux_rng = jax.random.split(init_rng)
  params = method.init_params(params_rng, _peek(train_iter))
  state = TrainState.create(
      params, optim.make_optimizer(config.optimizer, total_steps), train_rng,
      aux=method.init_aux(aux_rng, params))
  state = sharding.replicate(state, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info("%s: %d parameters, %d steps in %d stage(s), %d device(s).",
               config.method, n_params, total_steps, len(scheduler),
               jax.device_count())

  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"),
      max_to_keep=config.get("max_checkpoints_to_keep", 3))
  restored = ckpt.restore_latest(state.checkpoint_tree())
  start_step = 0
  if restored is not None:
    start_step, tree, meta = restored
    _check_resume(meta, start_step, scheduler, ckpt.directory)
    state = state.from_checkpoint_tree(tree)
    train_iter.set_state(meta["data_iterator"])
    logging.info("Resumed from step %d (stage %r).", start_step,
                 scheduler.stage_at(start_step).name)

  writer = logging_utils.MetricWriter(workdir, enabled=is_host)
  step_fns: dict[int, Any] = {}
  pending = _PendingMetrics()
  log_every = int(config.get("log_every", 50))
  ckpt_every = int(config.get("checkpoint_every", 200))
  eval_every = int(config.get("eval_every", 0))
  bar = tqdm.tqdm(total=total_steps, initial=start_step, disable=not is_host,
                  desc=config.method, unit="step")
  t0 = time.time()
  try:
    for step in range(start_step, total_steps):
      stage = scheduler.stage_at(step)
      if stage.index not in step_fns:
        step_fns[stage.index] = jax.jit(
            functools.partial(method.train_step, stage=stage),
            donate_argnums=0)
      batch = sharding.shard_batch(next(train_iter), mesh)
      state, metrics = step_fns[stage.index](state, batch)
      pending.add(step, metrics)
      done = step + 1
      bar.update(1)
      at_save = (done % ckpt_every == 0 or done == total_steps
                 or done == stage.end)
      if done % log_every == 0 or at_save:
        scalars = pending.flush()
        scalars["stage"] = stage.index
        writer.write_scalars(done, {f"train/{k}": v
                                    for k, v in scalars.items()})
        bar.set_postfix(loss=f"{scalars['loss']:.4f}", stage=stage.name)
      if at_save:
        ckpt.save(done, state.checkpoint_tree(),
                  {"stage": scheduler.stage_at(done).index,
                   "stage_name": scheduler.stage_at(done).name,
                   "data_iterator": train_iter.get_state()})
      if eval_every and done % eval_every == 0 and done != total_steps:
        val = method.evaluate(state.params, "validation")
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
  final = {k: float(v) for k, v in
           method.evaluate(state.params, "test", plot_dir=plot_dir).items()}
  writer.write_scalars(total_steps, {f"test/{k}": v for k, v in final.items()})
  if is_host:
    _write_json_atomic(os.path.join(workdir, "metrics.json"), final)
    _plot_curves(writer.jsonl_path, plot_dir)
  writer.close()
  ckpt.close()
  logging.info("Trained %d steps in %.1f s; test metrics: %s",
               total_steps - start_step, train_seconds, final)
  return final


def _plot_curves(jsonl_path: str, plot_dir: str) -> None:
  from avjax.eval import plots  # matplotlib only when plotting.
  with open(jsonl_path, encoding="utf-8") as f:
    keys = sorted({k for line in f for k in json.loads(line)
                   if k.startswith("train/") and k != "train/stage"})
  if keys:
    plots.plot_training_curves(jsonl_path,
                               os.path.join(plot_dir, "training_curves.png"),
                               keys)
