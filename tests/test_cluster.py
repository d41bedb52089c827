"""avjax.train.cluster: what a process of a multi-process run says when it
ends for a reason outside it.

The end-to-end kills live in test_multiprocess.py; here each way a child can
end is produced on purpose, in a subprocess, so the message does not depend
on which signal JAX's abort happens to end with on a loaded machine.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from avjax.train import cluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_DIED = "another process of the run died or became unreachable"


def _closed_port() -> int:
  """A port nobody listens on (bound, then released)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture
def listening_address():
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"127.0.0.1:{server.getsockname()[1]}"


def _run_python(code: str) -> subprocess.CompletedProcess:
  """Runs ``code`` in a fresh interpreter; its output captured as text."""
  return subprocess.run(
      [sys.executable, "-c", code],
      cwd=ROOT,
      env={**os.environ, "PYTHONPATH": ROOT},
      capture_output=True,
      text=True,
      timeout=60,
  )


def _supervised_child_killed_by(sig, process_id, address, workdir):
  """Runs ``supervise`` in a fresh interpreter whose child then ends by
  ``sig``; returns the parent's completed process."""
  code = textwrap.dedent(f"""
      import os, signal
      from avjax.train import cluster
      cluster.supervise({process_id}, 2, {address!r}, {str(workdir)!r})
      signal.signal({int(sig)}, signal.SIG_DFL)
      os.kill(os.getpid(), {int(sig)})
      """)
  return _run_python(code)


@pytest.mark.parametrize(
    "sig", [signal.SIGSEGV, signal.SIGABRT], ids=["SIGSEGV", "SIGABRT"]
)
def test_child_ended_after_the_coordinator_went_says_a_peer_died(tmp_path, sig):
  """Process 1 whose coordinator no longer answers: whichever signal the
  abort ends with, the message says a peer died and that rerunning
  resumes."""
  address = f"127.0.0.1:{_closed_port()}"
  out = _supervised_child_killed_by(sig, 1, address, tmp_path)
  assert out.returncode == cluster.FAILURE_EXIT_CODE, out.stderr
  assert PEER_DIED in out.stderr
  assert f"the coordinator at {address} stopped answering" in out.stderr
  assert f"training resumes from the newest checkpoint in {tmp_path}" in (
      out.stderr
  )


def test_child_ended_while_the_coordinator_answers_names_the_signal(
    tmp_path, listening_address
):
  """SIGTERM with the coordinator alive is not blamed on a peer."""
  out = _supervised_child_killed_by(
      signal.SIGTERM, 1, listening_address, tmp_path
  )
  assert out.returncode == cluster.FAILURE_EXIT_CODE, out.stderr
  assert "Process 1 of 2 was ended by SIGTERM." in out.stderr
  assert PEER_DIED not in out.stderr


def test_child_exit_status_passes_through(tmp_path, listening_address):
  code = textwrap.dedent(f"""
      import sys
      from avjax.train import cluster
      cluster.supervise(1, 2, {listening_address!r}, {str(tmp_path)!r})
      sys.exit(7)
      """)
  out = _run_python(code)
  assert out.returncode == 7, out.stderr
  assert "Error:" not in out.stderr


@pytest.mark.parametrize(
    "sig, process_id, alive, peer_died",
    [
        (signal.SIGABRT, 0, True, True),  # JAX's abort in the coordinator
        (signal.SIGSEGV, 0, True, True),  # the abort racing faulthandler
        (signal.SIGSEGV, 1, False, True),
        (signal.SIGTERM, 1, False, True),  # coordinator gone: process 0 died
        (signal.SIGTERM, 1, True, False),
        (signal.SIGTERM, 0, True, False),
    ],
)
def test_describe_signal_end(
    sig, process_id, alive, peer_died, listening_address
):
  address = listening_address if alive else f"127.0.0.1:{_closed_port()}"
  text = cluster.describe_signal_end(sig, process_id, 2, address)
  assert text.startswith(f"Process {process_id} of 2 ")
  assert signal.Signals(sig).name in text
  assert (PEER_DIED in text) == peer_died, text


def test_coordinator_gone(listening_address):
  assert not cluster.coordinator_gone(1, listening_address)
  assert cluster.coordinator_gone(1, f"127.0.0.1:{_closed_port()}")
  # Process 0 hosts the coordinator; an auto-detected address is unknown.
  assert not cluster.coordinator_gone(0, f"127.0.0.1:{_closed_port()}")
  assert not cluster.coordinator_gone(1, None)


def test_exit_after_error_blames_a_peer_when_the_coordinator_is_gone(
    tmp_path,
):
  """A Python-level error whose text names no peer failure (an XLA
  'INTERNAL' error) on process 1 after process 0 vanished."""
  address = f"127.0.0.1:{_closed_port()}"
  code = textwrap.dedent(f"""
      from avjax.train import cluster
      cluster.exit_after_error(
          RuntimeError("INTERNAL: something in a collective"),
          1, 2, {address!r}, {str(tmp_path)!r})
      """)
  out = _run_python(code)
  assert out.returncode == cluster.FAILURE_EXIT_CODE, out.stderr
  assert "INTERNAL: something in a collective" in out.stderr  # traceback
  assert PEER_DIED in out.stderr
