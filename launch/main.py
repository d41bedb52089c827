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
SLURM).
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/tstl_ca.py:quick.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Directory for checkpoints, logs, metrics.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (auto-detect).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (multi-process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Number of processes (multi-process).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "Index of this process (multi-process).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  import jax  # After flag parsing, so XLA_FLAGS set by users apply.

  if _COORDINATOR.value or _DISTRIBUTED.value:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
  from avjax.train import logging_utils
  from avjax.train import loop

  logging_utils.quiet_library_logs()

  logging.info("JAX process %d / %d, %d local device(s), backend %s",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.default_backend())
  metrics = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    print("Final test metrics:")
    for key, value in sorted(metrics.items()):
      print(f"  {key}: {value:.4f}")
    sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
