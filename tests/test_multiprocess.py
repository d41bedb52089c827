"""launch/main.py as 2 processes × 2 CPU devices (gloo) against 1 × 4.

What a run holds at another process layout, each tested here:

* the same global batches: every process reads its slice of each global
  batch, so the runs take the same steps, and their per-step losses agree
  to float rounding (the first 6 of 20 within 2e-5 relative) -- not
  exactly, and not to the end: gloo sums the gradients of the two
  processes in another order than one process sums its four devices, and
  after some steps semi-hard mining picks other negatives, so later losses
  and the final metrics differ as another run's would;
* the same evaluation: the 2-process command on the 1-process run's final
  checkpoint reproduces its metrics.json exactly;
* only process 0 writes metrics, plots and logs;
* rerunning the 2-process command resumes from the shared checkpoint, also
  when its newest checkpoint is damaged, and then ends exactly as the
  uninterrupted 2-process run did.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "launch", "main.py")
CONFIG = os.path.join(ROOT, "configs", "tstl_ca.py") + ":quick,steps=20"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _args(workdir, data_dir):
  return [
      sys.executable,
      MAIN,
      f"--config={CONFIG}",
      f"--workdir={workdir}",
      f"--config.data.data_dir={data_dir}",
      "--config.checkpoint_every=5",
      "--config.log_every=1",
  ]


def _main(args, devices, timeout):
  """Runs launch/main.py (``args`` from ``_args`` plus flags) on
  ``devices`` CPU devices; its output captured as text."""
  return subprocess.run(
      args,
      cwd=ROOT,
      env=_env(devices),
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def _run_two_processes(workdir, data_dir):
  port = _free_port()
  procs = [
      subprocess.Popen(
          _args(workdir, data_dir)
          + [
              f"--coordinator_address=127.0.0.1:{port}",
              "--num_processes=2",
              f"--process_id={i}",
              "--distributed_timeout_s=120",
          ],
          cwd=ROOT,
          env=_env(2),
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
      )
      for i in range(2)
  ]
  outs = [p.communicate(timeout=900) for p in procs]
  for i, (p, (_, err)) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, f"process {i}:\n{err[-3000:]}"
  return outs


def _losses(workdir):
  with open(os.path.join(workdir, "log.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [r["train/loss"] for r in rows if "train/loss" in r]


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, av_digits_pairs_dir):
  workdir = tmp_path_factory.mktemp("one_process")
  out = _main(_args(workdir, av_digits_pairs_dir), devices=4, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir


@pytest.mark.slow
def test_two_processes_train_on_the_same_batches_and_resume(
    tmp_path, av_digits_pairs_dir, one_process_run
):
  one_process_losses = _losses(one_process_run)
  workdir = tmp_path / "two"
  (out0, err0), (out1, err1) = _run_two_processes(workdir, av_digits_pairs_dir)
  assert "JAX process 0 / 2" in err0 and "JAX process 1 / 2" in err1
  # The same global batches and updates as one process on 4 devices: a
  # different data order or a per-process batch would differ from step 1.
  # Only to rounding, and only at first (see the module docstring).
  losses = _losses(workdir)
  assert len(losses) == len(one_process_losses) == 20
  assert losses[:6] == pytest.approx(one_process_losses[:6], rel=2e-5)
  assert losses != one_process_losses
  finished = _metrics(workdir)
  # Only process 0 reports and writes logs and plots.
  assert "Final test metrics" in out0 and "Final test metrics" not in out1
  with open(workdir / "log.jsonl") as f:
    steps = [json.loads(line)["step"] for line in f if "train/loss" in line]
  assert steps == sorted(set(steps))  # one writer: no duplicated records
  assert len(os.listdir(workdir / "tensorboard")) == 1
  assert "training_curves.png" in os.listdir(workdir / "plots")

  # Rerunning the same command resumes from the shared checkpoints; with
  # the newest one damaged, process 0 moves it aside once and both
  # processes restore the one before it (one rerun checks both).
  for root, _, files in os.walk(workdir / "checkpoints" / "20" / "state"):
    for name in files:
      if name != "commit_success.txt":
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  os.remove(workdir / "metrics.json")
  (_, err0), (_, err1) = _run_two_processes(workdir, av_digits_pairs_dir)
  assert "Resumed from step 15" in err0 and "Resumed from step 15" in err1
  assert os.listdir(workdir / "checkpoints_damaged") == ["20"]
  assert _metrics(workdir) == finished  # same processes, same order: exact


@pytest.mark.slow
def test_two_processes_evaluate_a_checkpoint_as_one_does(
    tmp_path, av_digits_pairs_dir, one_process_run
):
  """The 2-process command on the finished 1-process workdir restores its
  last checkpoint, trains no step, and evaluates: the same metrics up to
  float rounding. Each process embeds its half of the split in a padded
  batch where its rows sit at other positions than in one process's batch,
  and XLA:CPU's results for a row depend on its position in the batch at
  the last bits (measured: map_mean 0.1448796 against 0.1448791)."""
  workdir = tmp_path / "copy"
  shutil.copytree(one_process_run, workdir)
  os.remove(workdir / "metrics.json")
  (out0, _), _ = _run_two_processes(workdir, av_digits_pairs_dir)
  assert "Final test metrics" in out0
  got, want = _metrics(workdir), _metrics(one_process_run)
  assert set(got) == set(want)
  for key in want:
    assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize(
    "flags,message",
    [
        (
            [
                "--coordinator_address=127.0.0.1:1",
                "--num_processes=2",
                "--process_id=2",
            ],
            "--process_id=2 is outside [0, 2)",
        ),
        (
            ["--coordinator_address=127.0.0.1:1", "--num_processes=2"],
            "needs --num_processes and --process_id",
        ),
        (
            [
                "--coordinator_address=localhost",
                "--num_processes=2",
                "--process_id=0",
            ],
            "--coordinator_address='localhost' is not host:port",
        ),
        (
            [
                "--coordinator_address=localhost:99999",
                "--num_processes=2",
                "--process_id=0",
            ],
            "is not host:port",
        ),
    ],
)
def test_bad_process_flags_are_named(tmp_path, flags, message):
  out = _main(_args(tmp_path, tmp_path) + flags, devices=1, timeout=120)
  assert out.returncode == 1 and message in out.stderr, out.stderr[-2000:]


def test_workdir_that_is_a_file_is_a_flag_error(tmp_path):
  workdir = tmp_path / "file"
  workdir.write_text("not a directory")
  out = _main(_args(workdir, tmp_path), devices=1, timeout=120)
  assert out.returncode == 1, out.stderr[-2000:]
  assert f"--workdir={workdir} is a file" in out.stderr


@pytest.mark.slow
def test_lonely_process_0_stops_in_time_naming_the_address(tmp_path):
  """Process 0 whose peer never comes: a message naming the coordinator
  within twice --distributed_timeout_s (JAX alone aborts, exit 134, after
  the timeout plus its own grace, naming no address)."""
  timeout = 10
  address = f"127.0.0.1:{_free_port()}"
  start = time.monotonic()
  out = _main(
      _args(tmp_path / "w", tmp_path)
      + [
          f"--coordinator_address={address}",
          "--num_processes=2",
          "--process_id=0",
          f"--distributed_timeout_s={timeout}",
      ],
      devices=1,
      timeout=120,
  )
  elapsed = time.monotonic() - start
  assert out.returncode == 1, out.stderr[-3000:]
  assert elapsed < 2 * timeout, elapsed
  assert f"Process 0 hosts the coordinator at {address}" in out.stderr
  assert f"--distributed_timeout_s={timeout} s; not all came" in out.stderr


def _wait_for(path, text, timeout):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if os.path.exists(path) and text in path.read_text(errors="replace"):
      return
    time.sleep(0.5)
  raise AssertionError(f"{text!r} not in {path} after {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_survivor_of_a_dead_peer_says_so_in_bounded_time(
    tmp_path, av_digits_pairs_dir, victim
):
  """Once both processes joined, one is killed (-9); the other stops within
  the heartbeat timeout plus slack, saying a peer died and that rerunning
  resumes. Victim 0 takes the coordinator with it (JAX aborts the survivor
  at once); victim 1 leaves the survivor's collectives or the heartbeat
  check to notice."""
  heartbeat = 5
  port = _free_port()
  workdir = tmp_path / "w"
  logs = [tmp_path / f"process{i}.log" for i in range(2)]
  procs = []
  for i in range(2):
    with open(logs[i], "w") as log:
      procs.append(
          subprocess.Popen(
              _args(workdir, av_digits_pairs_dir)
              + [
                  f"--coordinator_address=127.0.0.1:{port}",
                  "--num_processes=2",
                  f"--process_id={i}",
                  "--distributed_timeout_s=120",
                  f"--distributed_heartbeat_timeout_s={heartbeat}",
              ],
              cwd=ROOT,
              env=_env(2),
              stdout=log,
              stderr=subprocess.STDOUT,
          )
      )
  try:
    for i in range(2):
      _wait_for(logs[i], f"JAX process {i} / 2", 180)
    procs[victim].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    survivor = procs[1 - victim]
    survivor.wait(timeout=heartbeat + 60)
    elapsed = time.monotonic() - killed
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  text = logs[1 - victim].read_text(errors="replace")
  assert survivor.returncode == 1, text[-3000:]
  assert elapsed < heartbeat + 45, elapsed
  assert "another process of the run died or became unreachable" in text
  assert (
      "Rerun the same command on every process: training resumes from the "
      f"newest checkpoint in {workdir}" in text
  )


def test_silent_coordinator_is_an_error_naming_it(tmp_path):
  address = f"127.0.0.1:{_free_port()}"  # nobody listens there
  out = _main(
      _args(tmp_path, tmp_path)
      + [
          f"--coordinator_address={address}",
          "--num_processes=2",
          "--process_id=1",
          "--distributed_timeout_s=3",
      ],
      devices=1,
      timeout=120,
  )
  assert out.returncode != 0
  assert f"No coordinator answered at {address} within 3 s" in out.stderr
