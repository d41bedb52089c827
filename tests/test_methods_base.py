"""The Method contract: a method of one's own, registered in one line, gets
training, evaluation, inference and the benchmark with no shared code
changed (tests/toy_method.py: ToyRetrieval)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from avjax import inference
from avjax import methods
from avjax.eval import retrieval
from avjax.methods import base

import toy_method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))

# A user's config file: registers the method, builds its config.
_CONFIG_FILE = """
from avjax import methods
import toy_method

methods.register_method("toy_retrieval", toy_method.ToyRetrieval)


def get_config(arg=None):
  return toy_method.toy_retrieval_config()
"""


def _python(*args, timeout=900):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, ROOT]))
  return subprocess.run(
      [sys.executable, *args],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
  )


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  """(config file, workdir, metrics) of a launcher run of ToyRetrieval."""
  root = tmp_path_factory.mktemp("toy")
  config_file = root / "toy_config.py"
  config_file.write_text(_CONFIG_FILE)
  workdir = root / "run"
  out = _python(
      os.path.join(ROOT, "launch", "main.py"),
      f"--config={config_file}",
      f"--workdir={workdir}",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  metrics = json.loads((workdir / "metrics.json").read_text())
  return config_file, workdir, metrics


@pytest.mark.slow
def test_launcher_trains_and_evaluates_a_registered_method(toy_run):
  _, _, metrics = toy_run
  # The retrieval evaluator named in config.evals, with the method's own
  # modality names in the keys; 4 balanced classes: chance MAP ~0.3.
  assert set(metrics) >= {"map_a2b", "map_b2a", "map_mean", "r1_a2b"}
  assert metrics["map_mean"] > 0.8


@pytest.mark.slow
def test_inference_embeds_as_the_evaluation_did(toy_run):
  _, workdir, metrics = toy_run
  methods.register_method("toy_retrieval", toy_method.ToyRetrieval)
  model = inference.load(workdir)
  assert model.modalities == ("a", "b") and model.metric == "cosine"
  rows = toy_method.toy_pairs("test")
  a = model.embed("a", [r["a"] for r in rows])
  b = model.embed("b", [r["b"] for r in rows])
  w = model.params
  np.testing.assert_allclose(
      a, np.stack([r["a"] for r in rows]) @ w["a"], atol=1e-5
  )
  labels = np.asarray([r["label"] for r in rows])
  got = retrieval.cross_modal_retrieval_metrics(
      a, b, labels, labels, names=("a", "b"), metric="cosine"
  )
  assert got["map_a2b"] == pytest.approx(metrics["map_a2b"], abs=1e-6)
  top = model.search(a, model.gallery("b", [r["b"] for r in rows]), k=1)
  assert np.mean(labels[top.indices[:, 0]] == labels) == pytest.approx(
      metrics["r1_a2b"], abs=1e-6
  )
  with pytest.raises(ValueError, match="pre-extracted feature vectors"):
    model.embed("a", ["some_file.wav"])


@pytest.mark.slow
def test_bench_train_times_a_registered_method(toy_run, tmp_path):
  config_file, _, _ = toy_run
  out = _python(
      os.path.join(ROOT, "launch", "bench_train.py"),
      f"--configs={config_file}",
      "--rounds=1",
      "--steps=1",
      "--pipeline_batches=2",
      "--peak_n=128",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"| {config_file} [train] |" in out.stdout


def test_a_method_offers_one_prediction_per_modality():
  method = toy_method.ToyRetrieval(toy_method.toy_retrieval_config())
  assert sorted(method.predict_fns()) == ["embed_a", "embed_b"]
  params = {"a": np.eye(6, 8, dtype=np.float32), "b": np.eye(6, 8)}
  inputs = method.modality_inputs("a", [np.arange(6.0)] * 2)
  out = base.jitted_predictions(method, ["embed_a"])(params, inputs)
  np.testing.assert_allclose(out["embed_a"][0], np.arange(6.0) @ np.eye(6, 8))
  with pytest.raises(ValueError, match="offers no prediction \\['embed_c'\\]"):
    base.jitted_predictions(method, ["embed_c"])


def test_unknown_method_and_bad_registration_are_named():
  config = toy_method.toy_retrieval_config()
  config.method = "no_such_method"
  with pytest.raises(ValueError, match="config.method='no_such_method'"):
    methods.get_method(config)
  with pytest.raises(TypeError, match="Method subclass"):
    methods.register_method("x", object)
