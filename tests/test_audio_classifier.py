"""avjax.eval.audio_classifier: a classifier's labels for the AVC samplers."""

import numpy as np

from avjax.data.io import labels_file
from avjax.eval import audio_classifier


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
  ids, pred, accuracy = audio_classifier.predicted_labels(
      _FakeAVC(0.3), "validation", 1
  )
  truth = _FakeAVC(0.3).split_arrays("train")["true_label"]
  assert accuracy == np.mean(pred == truth) and accuracy > 0.95
  _, _, noisy = audio_classifier.predicted_labels(
      _FakeAVC(3.0), "validation", 1
  )
  assert noisy < accuracy  # a worse classifier gives worse labels
  path = tmp_path / "labels" / "pred.csv"
  audio_classifier.write_labels(str(path), ids, pred)
  np.testing.assert_array_equal(
      labels_file.labels_for_clips(str(path), ids, 10), pred
  )


def test_audio_features_pool_time():
  mel = np.arange(2 * 8 * 3, dtype=np.float64).reshape(2, 8, 3)
  feats = audio_classifier.audio_features({"audio": mel})
  assert feats.shape == (2, 6 * 3)
  np.testing.assert_allclose(feats[:, :3], mel.mean(1))
  np.testing.assert_allclose(feats[:, 6:9], mel[:, :2].mean(1))
