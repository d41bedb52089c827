r"""Trains and evaluates one avjax method from a config file.

Usage:
  python launch/main.py --config configs/tstl_ca.py:quick --workdir runs/q
  python launch/main.py --config configs/tstl_ca.py --workdir runs/t \
      --config.seed=1

Rerunning the same command on the same workdir resumes from the newest valid
checkpoint. On success the workdir holds metrics.json, checkpoints/,
tensorboard/ events, log.jsonl and plots/*.png.

Multi-host: pass --coordinator_address/--num_processes/--process_id, or
--distributed to let ``jax.distributed.initialize`` auto-detect (TPU pods,
SLURM). A run that does not form within --distributed_timeout_s, and a
process whose peer dies, stop with a message naming the coordinator
(``avjax.train.cluster``); rerunning the command on every process resumes.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from avjax.train import cluster

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Config file, e.g. configs/tstl_ca.py:quick.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, logs, metrics."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (auto-detect)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (multi-process)."
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Number of processes (multi-process)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Index of this process (multi-process)."
)
_INIT_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout_s",
    300,
    "Seconds to wait for every process to join the coordinator.",
)
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "distributed_heartbeat_timeout_s",
    100,
    "Seconds without heartbeats after which a process of a multi-process "
    "run counts as dead; the others then stop, saying so (at most this long "
    "after a peer dies).",
)
flags.mark_flags_as_required(["config", "workdir"])


def _check_flags() -> None:
  """Clear errors for flags that cannot describe a run."""
  if os.path.exists(_WORKDIR.value) and not os.path.isdir(_WORKDIR.value):
    raise app.UsageError(
        f"--workdir={_WORKDIR.value} is a file; give a directory (new, or "
        "the workdir of the run to resume)."
    )
  if _COORDINATOR.value is None:
    if _NUM_PROCESSES.value is not None or _PROCESS_ID.value is not None:
      raise app.UsageError(
          "--num_processes / --process_id need "
          "--coordinator_address (or use --distributed)."
      )
    return
  try:
    cluster.parse_address(_COORDINATOR.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  if _NUM_PROCESSES.value is None or _PROCESS_ID.value is None:
    raise app.UsageError(
        "--coordinator_address needs --num_processes and " "--process_id."
    )
  if _NUM_PROCESSES.value < 1:
    raise app.UsageError(
        f"--num_processes={_NUM_PROCESSES.value} must be " ">= 1."
    )
  if not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
    raise app.UsageError(
        f"--process_id={_PROCESS_ID.value} is outside [0, "
        f"{_NUM_PROCESSES.value}) for --num_processes="
        f"{_NUM_PROCESSES.value}."
    )
  for flag in (_INIT_TIMEOUT, _HEARTBEAT_TIMEOUT):
    if flag.value < 1:
      raise app.UsageError(f"--{flag.name}={flag.value} must be >= 1.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _check_flags()
  distributed = bool(_COORDINATOR.value or _DISTRIBUTED.value)
  workdir = os.path.abspath(_WORKDIR.value)
  if distributed:  # Before JAX starts threads: see cluster.supervise.
    cluster.supervise(
        _PROCESS_ID.value, _NUM_PROCESSES.value, _COORDINATOR.value, workdir
    )
  import jax  # After flag parsing, so XLA_FLAGS set by users apply.

  if distributed:
    logging.info(
        "Joining the distributed run at %s as process %s of %s "
        "(waiting up to %d s for all processes).",
        _COORDINATOR.value or "<auto-detected>",
        _PROCESS_ID.value,
        _NUM_PROCESSES.value,
        _INIT_TIMEOUT.value,
    )
    cluster.initialize(
        jax,
        _COORDINATOR.value,
        _NUM_PROCESSES.value,
        _PROCESS_ID.value,
        _INIT_TIMEOUT.value,
        heartbeat_timeout_s=_HEARTBEAT_TIMEOUT.value,
    )
  from avjax.train import checkpoint as checkpoint_lib
  from avjax.train import logging_utils
  from avjax.train import loop

  logging_utils.quiet_library_logs()

  logging.info(
      "JAX process %d / %d, %d local device(s), backend %s",
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.default_backend(),
  )
  try:
    metrics = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except Exception as e:  # pylint: disable=broad-except
    if jax.process_count() > 1:
      cluster.exit_after_error(
          e,
          jax.process_index(),
          jax.process_count(),
          _COORDINATOR.value,
          workdir,
      )
    if isinstance(e, checkpoint_lib.CheckpointMismatch):
      # A refused resume is the user's to resolve, not a crash: the message
      # names the workdir and every changed key; no traceback.
      logging.error("%s", e)
      sys.exit(1)
    raise
  if jax.process_index() == 0:
    print("Final test metrics:")
    for key, value in sorted(metrics.items()):
      print(f"  {key}: {value:.4f}")
    sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
