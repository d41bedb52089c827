"""Every notebook in launch/notebooks runs top to bottom in a Jupyter kernel.

Each notebook is executed by ``nbclient`` in a real ``ipykernel`` (the
``python3`` kernel of this interpreter), from the repository root, exactly
as a user would run it: shell (``!``) and magic lines included, so a Colab
set-up cell must itself do nothing outside Colab. Any cell error fails the
test with the cell's traceback.

Notebooks read these environment variables (all optional for users):
``AVJAX_REPO`` (repository root), ``AVJAX_DATA_DIR`` (tfds data dir, shared
with the rest of the suite), ``AVJAX_NOTEBOOK_WORKDIR`` (where runs go).
"""

import glob
import json
import os

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from avjax import inference

import sync_helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(
    glob.glob(os.path.join(ROOT, "launch", "notebooks", "*.ipynb"))
)
CELL_TIMEOUT_S = 900


def execute_notebook(path: str, env: dict[str, str]) -> nbformat.NotebookNode:
  """Runs ``path`` in a fresh kernel with ``env`` added; returns it run."""
  nb = nbformat.read(path, as_version=4)
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)  # The kernel subprocess inherits the environment.
  try:
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": ROOT}},
    )
    client.execute()
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  return nb


def _outputs_text(nb) -> str:
  parts = []
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      if out.get("output_type") == "stream":
        parts.append(out.get("text", ""))
      elif "data" in out:
        parts.append(out["data"].get("text/plain", ""))
  return "\n".join(parts)


def _has_image(nb) -> bool:
  return any(
      "image/png" in out.get("data", {})
      for cell in nb.cells
      for out in cell.get("outputs", [])
  )


def _assert_plots(run_dir: str, *names: str) -> None:
  plots = set(os.listdir(os.path.join(run_dir, "plots")))
  assert set(names) <= plots, plots


def _check_synchformer(metrics: dict, run_dir: str) -> None:
  """The Synchformer notebook's quick run (seed 0) must learn offsets.

  Measured on the 2-core CPU machine (issue 30 geometry, 3,000 steps):
  offset_top1 0.242 (chance 1/21; seeds 1 and 2: 0.237, 0.212),
  evidence_hit_rate 0.983 against a random rate of 0.637
  (docs/results/synchformer.md); the floors sit a margin below. This
  notebook is the suite's one quick Synchformer run, so its workdir is
  also the trained one that ``predict_offset`` reads mp4 files with.
  """
  assert metrics["offset_top1"] > 2 / 21, metrics
  assert metrics["evidence_hit_rate"] > metrics["evidence_random_rate"] + 0.2
  _assert_plots(
      run_dir, "offset_confusion.png", "evidence_0.png", "training_curves.png"
  )
  # The same trained workdir through files: test clips as mp4s.
  sync_helpers.assert_mp4_offsets_match_evaluation(
      inference.load(run_dir), metrics, os.path.join(run_dir, "mp4_check")
  )


def _check_mama(metrics: dict, run_dir: str) -> None:
  """The MAMA notebook's quick run (noise=40, seed 0) down-weights the
  noisy pairs (issue 31): the learned weights of noisy pairs sit below
  those of clean pairs, and rank them apart (AUC > 0.7)."""
  del run_dir
  assert metrics["weight_noisy"] < metrics["weight_clean"], metrics
  assert metrics["weight_auc"] > 0.7, metrics


def _check_cmd(metrics: dict, run_dir: str) -> None:
  """The CMD notebook's quick run (seed 0) must learn the digit sequence.

  Issue 15 item 10: well above 3× chance, i.e. more than the digit count.
  Chance on the 500 test canvases: R@1 0.0033 with relevance by digit
  sequence, 0.002 by exact image id; ranking by digit count alone scores
  3.0× chance (README). Measured for this config on the 2-core CPU machine
  (seed 0): R@1 mean 0.029 (8.8×), exact 0.019 (9.5×), R@10 mean 0.195
  (chance 0.032); reconstruction distance 0.229 against the corrupted
  input's 0.670 (ratio 0.34). The floors sit a margin from those values,
  above the count-only level. This notebook is the suite's one full quick
  CMD run (launch/main.py itself is the same ``train_and_evaluate``, run
  end to end by the other methods' tests).
  """
  for direction in ("speech2image", "image2speech"):
    for k in (1, 5, 10):
      assert 0.0 <= metrics[f"r{k}_{direction}"] <= 1.0
  assert metrics["r10_mean"] >= metrics["r1_mean"]
  assert metrics["head_params"] > 0
  assert metrics["r1_mean"] >= 5 * 0.0033, metrics
  assert metrics["exact_r1_mean"] >= 5 * 0.002, metrics
  assert metrics["r10_mean"] > 0.12, metrics
  assert metrics["exact_r10_mean"] <= metrics["r10_mean"]
  assert metrics["cmd_recon_ratio"] == pytest.approx(
      metrics["cmd_recon_dist"] / metrics["cmd_corrupt_dist"]
  )
  assert metrics["cmd_recon_ratio"] < 0.5, metrics
  assert 0.01 <= metrics["temperature"] <= 0.5
  _assert_plots(
      run_dir,
      "retrieval_examples.png",
      "cmd_attention_0.png",
      "training_curves.png",
  )


# Extra checks of what a notebook's training run produced, by notebook.
RUN_CHECKS = {
    "cmd.ipynb": _check_cmd,
    "mama.ipynb": _check_mama,
    "synchformer.ipynb": _check_synchformer,
}


def test_there_are_notebooks():
  assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_valid_and_opens_in_colab(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  first = "".join(nb.cells[0].source)
  assert "colab.research.google.com" in first, "no Open-in-Colab badge"
  assert os.path.basename(path) in first
  setup = next(c for c in nb.cells if c.cell_type == "code")
  assert (
      "google.colab" in setup.source
  ), "the set-up cell must only act in Colab"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_in_a_kernel(path, tmp_path, av_digits_dir):
  data_dir = av_digits_dir.prepare("pairs")
  env = {
      "AVJAX_REPO": ROOT,
      "AVJAX_DATA_DIR": data_dir,
      "AVJAX_NOTEBOOK_WORKDIR": str(tmp_path / "run"),
      "JAX_PLATFORMS": "cpu",
  }
  try:
    nb = execute_notebook(path, env)
  except CellExecutionError as e:
    pytest.fail(f"{os.path.basename(path)}: a cell failed:\n{e}")
  text = _outputs_text(nb)
  assert "devices" in text.lower(), "the notebook must print its devices"
  if os.path.exists(tmp_path / "run"):  # notebooks that train a model
    runs = []
    for dirpath, _, files in os.walk(tmp_path / "run"):
      if "metrics.json" in files:
        with open(os.path.join(dirpath, "metrics.json")) as f:
          runs.append((json.load(f), dirpath))
    assert runs, "a training notebook must finish its run"
    assert _has_image(nb), "a training notebook must show its plots"
    check = RUN_CHECKS.get(os.path.basename(path))
    if check:
      for metrics, run_dir in runs:
        check(metrics, run_dir)
