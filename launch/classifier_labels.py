r"""Writes a classifier's predicted class of every training clip (AVC).

The soft-positive paper's second setting takes class labels from a
classifier instead of the annotation. This script fits a logistic-regression
audio classifier (scikit-learn) on log-mel features of a *labelled split other
than train* (default: validation), predicts the class of every clip of the
training split, and writes ``clip_id,label`` rows that
``--config.sampling.labels_file`` feeds to the AVC samplers:

  python launch/classifier_labels.py --config configs/avc.py \
      --out runs/avc_labels/predicted.csv
  python launch/main.py --config configs/avc.py:strategy=soft,per_class=20 \
      --workdir runs/avc_pred \
      --config.sampling.labels_file=runs/avc_labels/predicted.csv

It prints the classifier's accuracy against the training split's annotation
(how noisy the predicted labels are).
"""

from __future__ import annotations

import csv
import os

import numpy as np
from absl import app
from absl import flags
from sklearn import linear_model
from sklearn import pipeline as sk_pipeline
from sklearn import preprocessing

from avjax import config_utils
from avjax.methods.avc import AVC

_CONFIG = flags.DEFINE_string("config", None, "AVC config file[:args].")
_OUT = flags.DEFINE_string("out", None, "CSV file to write.")
_FIT_SPLIT = flags.DEFINE_string(
    "fit_split", "validation", "Labelled split the classifier is fitted on."
)
_L2 = flags.DEFINE_float("c", 0.1, "Inverse L2 strength of the classifier.")
flags.mark_flags_as_required(["config", "out"])


def audio_features(arrays: dict[str, np.ndarray]) -> np.ndarray:
  """[N, T, M] log-mel → [N, 2·M + 4·M]: mean, std and 4 time quarters."""
  mel = np.asarray(arrays["audio"], np.float64)
  quarters = np.array_split(mel, 4, axis=1)
  parts = [mel.mean(1), mel.std(1)] + [q.mean(1) for q in quarters]
  return np.concatenate(parts, axis=1)


def predicted_labels(
    method: AVC, fit_split: str, c: float
) -> tuple[np.ndarray, np.ndarray, float]:
  """(clip ids [N], predicted labels [N], accuracy) on the train split."""
  fit = method.split_arrays(fit_split)
  train = method.split_arrays("train")
  classifier = sk_pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      linear_model.LogisticRegression(C=c, max_iter=2000),
  )
  classifier.fit(audio_features(fit), fit["true_label"])
  pred = classifier.predict(audio_features(train)).astype(np.int64)
  return train["id"], pred, float(np.mean(pred == train["true_label"]))


def write_labels(path: str, ids: np.ndarray, labels: np.ndarray) -> None:
  """Writes ``clip_id,label`` rows (the format of ``labels_file``)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["clip_id", "label"])
    writer.writerows(zip(ids.tolist(), labels.tolist()))


def main(argv):
  del argv
  path, _, arg = _CONFIG.value.partition(":")
  config = config_utils.load_config_file(path, arg or None)
  ids, pred, accuracy = predicted_labels(
      AVC(config), _FIT_SPLIT.value, _L2.value
  )
  write_labels(_OUT.value, ids, pred)
  print(
      f"wrote {len(ids)} predicted labels to {_OUT.value}; accuracy against "
      f"the annotation: {accuracy:.3f}"
  )


if __name__ == "__main__":
  app.run(main)
