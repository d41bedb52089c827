"""avjax.eval.audio_classifier: a classifier's labels for the AVC samplers."""

import os

import numpy as np

from avjax.config_utils import load_config_file
from avjax.data.io import labels_file
from avjax.eval import audio_classifier
from avjax.methods.avc import AVC

import launch_modules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_script_writes_a_label_per_training_clip(av_digits_pairs_dir, tmp_path):
  """launch/classifier_labels.py on the built AV-digits pairs: one label
  per training clip, and the accuracy it prints is the file's agreement
  with the annotation."""
  out_csv = tmp_path / "predicted.csv"
  out = launch_modules.run(
      "classifier_labels",
      f"--config={os.path.join(ROOT, 'configs', 'avc.py')}:quick",
      f"--config.data.data_dir={av_digits_pairs_dir}",
      f"--out={out_csv}",
      timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  config = load_config_file(os.path.join(ROOT, "configs", "avc.py"), "quick")
  config.data.data_dir = av_digits_pairs_dir
  train = AVC(config).split_arrays("train")
  ids = np.asarray(train["id"])
  labels = labels_file.labels_for_clips(str(out_csv), ids, 10)
  assert len(labels) == len(ids)
  agreement = float(np.mean(labels == np.asarray(train["true_label"])))
  assert f"accuracy against the annotation: {agreement:.3f}" in out.stdout
  assert agreement > 0.5  # the spoken digit is in the log-mel
