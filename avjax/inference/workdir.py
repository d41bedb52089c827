"""Reading a trained workdir: its config and one checkpoint's parameters.

A workdir written by ``avjax.train.loop`` holds ``config.json`` (the run's
full config) and ``checkpoints/<step>/`` (orbax: a ``state`` item with step,
params, optimiser state, RNG and aux, and a JSON ``meta`` item). Inference
restores only the ``params`` subtree: orbax's partial restore reads the
arrays under ``params`` and never the optimiser state (for Adam, twice the
parameters' size). The arrays land on JAX's default device, whatever
backend saved them.

Versions: checkpoints record ``avjax_version`` in their meta. A checkpoint
from another avjax major.minor version (or one written before the version
was recorded) is refused with an error naming the workdir, since parameter
trees and feature pipelines may differ between versions;
``allow_other_version=True`` tries anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

import avjax

PyTree = Any


class WorkdirError(ValueError):
  """A workdir that cannot be used for inference (the message names it)."""


def _configdicts(value: Any) -> Any:
  """JSON lists -> tuples and dicts (also inside them) -> ConfigDicts."""
  if isinstance(value, dict):
    return ml_collections.ConfigDict(
        {k: _configdicts(v) for k, v in value.items()}
    )
  if isinstance(value, list):
    return tuple(_configdicts(v) for v in value)
  return value


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config from ``workdir/config.json``.

  Raises:
    WorkdirError: no workdir, no config.json, or unreadable JSON.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(
        f"The workdir {workdir} is a file; give the directory that "
        "launch/main.py wrote (--workdir)."
    )
  if not os.path.isdir(workdir):
    raise WorkdirError(f"No such workdir: {workdir}")
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise WorkdirError(
        f"The workdir {workdir} has no config.json: it was not written by "
        "avjax's launch/main.py (or the run never started)."
    )
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise WorkdirError(f"Cannot read {path} in workdir {workdir}: {e}") from e
  if not isinstance(raw, dict) or "method" not in raw:
    raise WorkdirError(
        f"{path} in workdir {workdir} is not an avjax config (no 'method')."
    )
  return _configdicts(raw)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps of the committed checkpoints in ``workdir``, ascending.

  Orbax writes a step into a temporary directory and renames it to
  ``<step>`` when committed, so only all-digit names count.
  """
  root = checkpoint_dir(workdir)
  if not os.path.isdir(root):
    return []
  return sorted(
      int(name)
      for name in os.listdir(root)
      if name.isdigit() and os.path.isdir(os.path.join(root, name))
  )


def _major_minor(version: str) -> tuple[str, ...]:
  return tuple(str(version).split(".")[:2])


def read_meta(workdir: str, step: int) -> dict[str, Any]:
  """The JSON meta item of checkpoint ``step``."""
  path = os.path.join(checkpoint_dir(workdir), str(step), "meta", "metadata")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise WorkdirError(
        f"The checkpoint at step {step} in workdir {workdir} is damaged: its "
        f"meta ({path}) cannot be read ({type(e).__name__}: {e})."
    ) from e


def check_version(
    workdir: str, step: int, meta: dict[str, Any], allow_other: bool
) -> None:
  """Raises WorkdirError when ``meta`` is from another avjax version."""
  saved = meta.get("avjax_version")
  if saved is not None and _major_minor(saved) == _major_minor(
      avjax.__version__
  ):
    return
  what = (
      f"avjax {saved}"
      if saved is not None
      else "an avjax that did not record its version"
  )
  if allow_other:
    return
  raise WorkdirError(
      f"The checkpoint at step {step} in workdir {workdir} was written by "
      f"{what}; this is avjax {avjax.__version__}. Parameters and feature "
      "pipelines may differ between versions: retrain, or pass "
      "allow_other_version=True (--allow_other_version) to try anyway."
  )


def restore_params(workdir: str, step: int) -> PyTree:
  """The ``params`` subtree of checkpoint ``step`` (no optimiser state).

  Raises:
    WorkdirError: the checkpoint cannot be read (damaged or truncated).
  """
  path = os.path.join(checkpoint_dir(workdir), str(step), "state")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    # The item's own metadata: the checkpointer's would also look for step
    # metadata inside the item directory and warn that it is missing.
    tree = ocp.PyTreeCheckpointHandler().metadata(epath.Path(path)).tree
    if "params" not in tree:
      raise KeyError(f"no 'params' in the saved state (keys {sorted(tree)})")
    template = {
        "params": jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
            tree["params"],
        )
    }
    restored = checkpointer.restore(
        path,
        args=ocp.args.PyTreeRestore(
            item=template,
            restore_args=ocp.checkpoint_utils.construct_restore_args(template),
            partial_restore=True,
        ),
    )
  except Exception as e:  # pylint: disable=broad-except
    raise WorkdirError(
        f"The checkpoint at step {step} in workdir {workdir} is damaged or "
        f"unreadable ({type(e).__name__}: {str(e)[:300]}). Pick another "
        f"step (available: {checkpoint_steps(workdir)})."
    ) from e
  return restored["params"]


def _as_step(step: Any) -> int:
  """``step`` as an int: ints, integral numpy scalars and digit strings
  ("120"); anything else is a ValueError naming it."""
  if isinstance(step, str) and step.strip().isdigit():
    return int(step)
  if isinstance(step, (int, np.integer)) and not isinstance(step, bool):
    return int(step)
  raise ValueError(
      f"step must be a checkpoint step (a whole number), got {step!r}"
  )


def pick_step(workdir: str, step: int | str | None) -> int:
  """``step`` if its checkpoint exists, else the newest; errors name it."""
  if step is not None:
    step = _as_step(step)
  steps = checkpoint_steps(workdir)
  if not steps:
    raise WorkdirError(
        f"The workdir {workdir} has no checkpoints (nothing under "
        f"{checkpoint_dir(workdir)}): train first with launch/main.py."
    )
  if step is None:
    return steps[-1]
  if step not in steps:
    raise WorkdirError(
        f"The workdir {workdir} has no checkpoint at step {step}; "
        f"available: {steps}."
    )
  return int(step)


def config_fingerprint(meta: dict[str, Any], config: Any) -> str:
  """A short hash of what the run trained (``avjax.train.loop``'s
  ``run_fingerprint``, saved in every checkpoint's meta; the full config
  for checkpoints without it): two workdirs share it when their method,
  seed, data, model, loss, optimiser and stages agree.
  """
  what = meta.get("config")
  if what is None:
    what = json.loads(config.to_json_best_effort())
  text = json.dumps(what, sort_keys=True, default=str)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _token_table_rows(params: PyTree) -> int | None:
  """Rows of the text encoder's token embedding table, if the model has one."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [str(getattr(k, "key", k)) for k in path]
    if "token_embed" in keys and keys[-1] == "embedding":
      return int(leaf.shape[0])
  return None


def check_tokenizer(workdir: str, method: Any, params: PyTree) -> None:
  """Checks the method's tokenizer against the model's token table.

  A token id at or beyond the table's rows would read outside it (NaN
  embeddings), so a ``tokenizer.json`` that is not the one the model was
  trained with is refused here. No-op for models without text.

  Raises:
    WorkdirError: naming the tokenizer file and both sizes.
  """
  rows = _token_table_rows(params)
  if rows is None or "tokenizer" not in vars(method):
    return
  top = method.tokenizer.max_id
  if top >= rows:
    raise WorkdirError(
        f"{os.path.join(workdir, 'tokenizer.json')} maps words to ids up to "
        f"{top}, but the model in workdir {workdir} has {rows} token "
        "embeddings (ids 0.."
        f"{rows - 1}): it is not the tokenizer this model was trained with."
    )
