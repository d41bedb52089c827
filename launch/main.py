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

import socket
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

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
flags.mark_flags_as_required(["config", "workdir"])


def _check_process_flags() -> None:
  """Clear errors for process flags that cannot describe a run."""
  if _COORDINATOR.value is None:
    if _NUM_PROCESSES.value is not None or _PROCESS_ID.value is not None:
      raise app.UsageError(
          "--num_processes / --process_id need "
          "--coordinator_address (or use --distributed)."
      )
    return
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


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Polls ``host:port`` until it accepts a TCP connection, or errors.

  JAX's distributed client aborts the whole process (a C++ fatal error)
  when the coordinator never answers; probing first turns that into an
  error that names the address.
  """
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise app.UsageError(
        f"--coordinator_address={address!r} is not " "host:port."
    )
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise RuntimeError(
            f"No coordinator answered at {address} within {timeout_s:g} s "
            f"({type(e).__name__}: {e}). Start process 0 (which hosts the "
            "coordinator) with the same --coordinator_address, or check the "
            "address."
        ) from e
      time.sleep(0.5)


def _initialize_distributed(jax) -> None:
  if _COORDINATOR.value and _PROCESS_ID.value:
    _wait_for_coordinator(_COORDINATOR.value, _INIT_TIMEOUT.value)
  logging.info(
      "Joining the distributed run at %s as process %s of %s "
      "(waiting up to %d s for all processes).",
      _COORDINATOR.value or "<auto-detected>",
      _PROCESS_ID.value,
      _NUM_PROCESSES.value,
      _INIT_TIMEOUT.value,
  )
  try:
    jax.distributed.initialize(
        _COORDINATOR.value,
        _NUM_PROCESSES.value,
        _PROCESS_ID.value,
        initialization_timeout=_INIT_TIMEOUT.value,
    )
  except Exception as e:  # pylint: disable=broad-except
    where = _COORDINATOR.value or "the auto-detected coordinator"
    raise RuntimeError(
        f"Could not join the distributed run at {where} within "
        f"{_INIT_TIMEOUT.value} s (process {_PROCESS_ID.value} of "
        f"{_NUM_PROCESSES.value}): {type(e).__name__}: {str(e)[:300]}. Is "
        "process 0 running, reachable at that address, and started with "
        "the same --num_processes?"
    ) from e


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _check_process_flags()
  import jax  # After flag parsing, so XLA_FLAGS set by users apply.

  if _COORDINATOR.value or _DISTRIBUTED.value:
    _initialize_distributed(jax)
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
  metrics = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    print("Final test metrics:")
    for key, value in sorted(metrics.items()):
      print(f"  {key}: {value:.4f}")
    sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
