"""Joining and leaving a multi-process run, with errors that say what to do.

JAX's distributed runtime ends a process with a C++ abort (exit 134 and a
stack trace naming no address) when the processes of a run do not all join
in time, and when a peer dies (the coordination service reports its missed
heartbeats to every other process). This module turns both into messages
that name the coordinator and say what to do, within bounded time:

* ``parse_address``: ``host:port`` checked before anything starts;
* ``initialize``: joins the run under a watchdog that ends the process
  ``timeout_s`` after it starts waiting, naming the address;
* ``supervise``: runs the rest of the process in a forked child and waits
  for it, so that a C++ abort of the child (a peer died, or the
  coordinator is gone) ends with a message saying so and that rerunning
  the command resumes;
* ``exit_after_error``: the same for a Python-level error of a
  multi-process run (a collective whose peer is gone raises "Gloo ...
  Connection reset by peer"), without waiting in JAX's shutdown barrier
  for the dead peer (up to its heartbeat timeout).

Nothing here imports JAX at module level: ``supervise`` forks before JAX
starts any thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

# Exit status of a process that stopped for a failure of the run.
FAILURE_EXIT_CODE = 1
# Extra seconds JAX's own join timeout gets beyond ours: its expiry aborts
# the process (exit 134), so it must come after the watchdog's.
_JAX_TIMEOUT_GRACE_S = 30
# Substrings of the errors a collective or the coordination service raise
# when a peer process is gone.
_PEER_FAILURE_MARKS = (
    "gloo",
    "connection reset",
    "connection closed",
    "socket closed",
    "heartbeat",
    "coordination service",
    "coordinationservice",
    "deadline_exceeded",
    "unavailable",
)
_PR_SET_PDEATHSIG = 1
_EXIT_LOCK = threading.Lock()


def parse_address(address: str) -> tuple[str, int]:
  """``host:port`` (``[v6]:port`` too) as (host, port).

  Raises:
    ValueError: naming the address when it has no port or a bad one.
  """
  host, sep, port = str(address).rpartition(":")
  host = host.strip("[]")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(
        f"--coordinator_address={address!r} is not host:port (e.g. "
        "localhost:12355): give the port that process 0 listens on."
    )
  return host, int(port)


def _exit(message: str) -> None:
  """Writes ``message`` to stderr and ends the process at once (no JAX
  shutdown barrier, which would wait for peers that are gone). One message
  only: a second caller (the watchdog racing the main thread) blocks here
  until the process ends."""
  _EXIT_LOCK.acquire()  # pylint: disable=consider-using-with
  sys.stdout.flush()
  sys.stderr.write(f"\nError: {message}\n")
  sys.stderr.flush()
  os._exit(FAILURE_EXIT_CODE)  # pylint: disable=protected-access


def _no_coordinator(address: str, timeout_s: float, error: str) -> str:
  return (
      f"No coordinator answered at {address} within {timeout_s:g} s "
      f"({error}). Start process 0 (which hosts the coordinator) with the "
      "same --coordinator_address, or check the address."
  )


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Polls ``address`` until it accepts a TCP connection, or exits.

  JAX's client aborts the process when the coordinator never answers;
  probing first turns that into an error naming the address.
  """
  host, port = parse_address(address)
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host, port), timeout=2.0):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        _exit(_no_coordinator(address, timeout_s, f"{type(e).__name__}: {e}"))
      time.sleep(0.5)


def initialize(
    jax: Any,
    address: str | None,
    num_processes: int | None,
    process_id: int | None,
    timeout_s: float,
    heartbeat_timeout_s: int = 100,
) -> None:
  """``jax.distributed.initialize`` that ends in ``timeout_s`` seconds.

  Args:
    jax: the jax module (imported by the caller after flag parsing).
    address: the coordinator's host:port, or None to auto-detect.
    num_processes: processes of the run (None: auto-detect).
    process_id: this process's index (None: auto-detect).
    timeout_s: seconds to wait for the coordinator and every process.
    heartbeat_timeout_s: seconds without heartbeats after which JAX counts
      a process as dead and stops the others (JAX's default: 100).

  Ends the process (exit status ``FAILURE_EXIT_CODE``) with a message
  naming the coordinator address when the run does not form in time.
  """
  where = address or "the auto-detected coordinator"
  me = f"process {process_id} of {num_processes}"
  probing = bool(address and process_id)
  answered = threading.Event()

  def give_up() -> None:
    if probing and not answered.is_set():
      _exit(_no_coordinator(address, timeout_s, "no connection"))
    if process_id == 0:
      others = num_processes - 1 if num_processes else "the"
      waited = (
          f"Process 0 hosts the coordinator at {where} and waited for {others}"
          " other process(es) of the run to join"
      )
    else:
      waited = f"{me.capitalize()} waited at {where} for every process to join"
    _exit(
        f"{waited} for --distributed_timeout_s={timeout_s:g} s; not all came."
        " Start every process with the same --coordinator_address="
        f"{address or '...'} and --num_processes={num_processes}, and check "
        "that each can reach that address (or raise --distributed_timeout_s)."
    )

  watchdog = threading.Timer(timeout_s, give_up)
  watchdog.daemon = True
  watchdog.start()
  try:
    if probing:
      _wait_for_coordinator(address, timeout_s)
      answered.set()
    jax.distributed.initialize(
        address,
        num_processes,
        process_id,
        initialization_timeout=int(timeout_s) + _JAX_TIMEOUT_GRACE_S,
        heartbeat_timeout_seconds=int(heartbeat_timeout_s),
    )
  except Exception as e:  # pylint: disable=broad-except
    _exit(
        f"Could not join the distributed run at {where} as {me}: "
        f"{type(e).__name__}: {str(e)[:300]}. Is process 0 running, "
        "reachable at that address, and started with the same "
        "--num_processes?"
    )
  finally:
    watchdog.cancel()


def _rerun_hint(workdir: str) -> str:
  return (
      "Rerun the same command on every process: training resumes from the "
      f"newest checkpoint in {workdir}."
  )


def is_peer_failure(error: BaseException) -> bool:
  """Whether ``error`` (or its cause) says another process is gone."""
  while error is not None:
    text = f"{type(error).__name__}: {error}".lower()
    if any(mark in text for mark in _PEER_FAILURE_MARKS):
      return True
    error = error.__cause__ or error.__context__
  return False


def exit_after_error(
    error: BaseException,
    process_id: int,
    num_processes: int,
    address: str | None,
    workdir: str,
) -> None:
  """Ends a process of a multi-process run after ``error``, saying why.

  Prints the traceback, then whether a peer died (``is_peer_failure``) or
  this process failed, and that rerunning resumes; exits at once.
  """
  traceback.print_exception(error)
  if is_peer_failure(error) or coordinator_gone(process_id, address):
    what = (
        f"Process {process_id} of {num_processes} stopped because another "
        "process of the run died or became unreachable (see its log; "
        f"process 0 hosts the coordinator at {address or 'auto-detected'})."
    )
  else:
    what = (
        f"Process {process_id} of {num_processes} failed (traceback above); "
        "the other processes of the run stop too."
    )
  _exit(f"{what} {_rerun_hint(workdir)}")


def coordinator_gone(process_id: int | None, address: str | None) -> bool:
  """Whether process ``process_id`` (not 0) can no longer reach the
  coordinator at ``address``: then process 0, which hosts it, is gone.

  False for process 0 and for an auto-detected (unknown) address.
  """
  if not process_id or not address:
    return False
  try:
    with socket.create_connection(parse_address(address), timeout=2.0):
      return False
  except (OSError, ValueError):
    return True


def describe_signal_end(
    sig: int,
    process_id: int | None,
    num_processes: int | None,
    address: str | None,
) -> str:
  """Says why the child running process ``process_id`` was ended by ``sig``.

  A peer's death reaches the other processes as JAX's C++ abort, which is
  SIGABRT or, when the abort races Python's fault handler, SIGSEGV right
  after "Fatal Python error: Aborted". Where the coordinator no longer
  answers, process 0 is gone whatever the signal.
  """
  name = signal.Signals(sig).name
  me = f"Process {process_id} of {num_processes}"
  coordinator = (
      f"process 0 hosts the coordinator at {address or 'auto-detected'}"
  )
  if coordinator_gone(process_id, address):
    return (
        f"{me} was ended by {name} after the coordinator at {address} "
        "stopped answering: another process of the run died or became "
        "unreachable (see process 0's log)."
    )
  if sig == signal.SIGABRT:
    return (
        f"{me} was stopped by JAX's distributed runtime ({name}; its "
        "message is above): most likely another process of the run died or "
        f"became unreachable (see its log; {coordinator})."
    )
  if sig == signal.SIGSEGV:
    return (
        f"{me} crashed ({name}). In a multi-process run this most often "
        "happens while JAX's distributed runtime aborts the process because "
        "another process of the run died or became unreachable: look above "
        'for "the JAX distributed service detected fatal errors" and in '
        f"the other processes' logs ({coordinator})."
    )
  return f"{me} was ended by {name}."


def _die_with_parent(parent: int) -> None:
  """Asks Linux to kill this (child) process when its parent dies."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  except (OSError, AttributeError):
    return
  if os.getppid() != parent:  # The parent died before prctl.
    os._exit(FAILURE_EXIT_CODE)  # pylint: disable=protected-access


def supervise(
    process_id: int | None,
    num_processes: int | None,
    address: str | None,
    workdir: str,
) -> None:
  """Forks; the child returns and runs the process, the parent waits.

  The parent passes the child's exit status on. When the child is ended by
  a signal (JAX's C++ abort: exit 134), it prints what happened
  (``describe_signal_end``) and that rerunning the command resumes, and
  exits with ``FAILURE_EXIT_CODE``.
  SIGTERM and SIGHUP are forwarded to the child; SIGINT reaches both (the
  terminal's process group), so the parent ignores it. No-op where
  ``os.fork`` does not exist.
  """
  if not hasattr(os, "fork"):
    return
  sys.stdout.flush()
  sys.stderr.flush()
  parent = os.getpid()
  child = os.fork()
  if child == 0:
    _die_with_parent(parent)
    return
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  for sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, lambda s, _: os.kill(child, s))
  _, status = os.waitpid(child, 0)
  if os.WIFEXITED(status):
    os._exit(os.WEXITSTATUS(status))  # pylint: disable=protected-access
  what = describe_signal_end(
      os.WTERMSIG(status), process_id, num_processes, address
  )
  _exit(f"{what} {_rerun_hint(workdir)}")
