"""launch/classifier_labels.py: a classifier's labels for the AVC samplers."""

import functools
import importlib.util
import os

import numpy as np

from avjax.data import labels_file

_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "launch",
    "classifier_labels.py",
)


@functools.cache
def _module():
  """The script as a module (loaded once: it defines absl flags)."""
  spec = importlib.util.spec_from_file_location("classifier_labels", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class _FakeAVC:
  """Split arrays whose log-mels carry the class in one band (+ noise)."""

  def __init__(self, noise: float):
    self.noise = noise

  def split_arrays(self, split):
    rng = np.random.default_rng(["train", "validation"].index(split))
    n = 200
    labels = rng.integers(0, 10, n)
    audio = self.noise * rng.normal(size=(n, 12, 10))
    audio[np.arange(n), :, labels] += 1.0
    return {"audio": audio, "true_label": labels, "id": np.arange(n) + 1000}


def test_predicted_labels_follow_the_classifier_and_read_back(tmp_path):
  module = _module()
  ids, pred, accuracy = module.predicted_labels(_FakeAVC(0.3), "validation", 1)
  truth = _FakeAVC(0.3).split_arrays("train")["true_label"]
  assert accuracy == np.mean(pred == truth) and accuracy > 0.95
  _, _, noisy = module.predicted_labels(_FakeAVC(3.0), "validation", 1)
  assert noisy < accuracy  # a worse classifier gives worse labels
  path = tmp_path / "labels" / "pred.csv"
  module.write_labels(str(path), ids, pred)
  np.testing.assert_array_equal(
      labels_file.labels_for_clips(str(path), ids, 10), pred
  )


def test_audio_features_pool_time():
  module = _module()
  mel = np.arange(2 * 8 * 3, dtype=np.float64).reshape(2, 8, 3)
  feats = module.audio_features({"audio": mel})
  assert feats.shape == (2, 6 * 3)
  np.testing.assert_allclose(feats[:, :3], mel.mean(1))
  np.testing.assert_allclose(feats[:, 6:9], mel[:, :2].mean(1))
