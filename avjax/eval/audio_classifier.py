"""A classifier's class labels for clips, for the AVC samplers.

The soft-positive paper's second setting takes the classes of training clips
from a classifier instead of the annotation. ``predicted_labels`` fits a
logistic-regression audio classifier (scikit-learn) on log-mel statistics of
a labelled split other than train and predicts every training clip;
``write_labels`` writes them in the ``labels_file`` format
(``launch/classifier_labels.py`` is the command).
"""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np
from sklearn import linear_model
from sklearn import pipeline as sk_pipeline
from sklearn import preprocessing


def audio_features(arrays: dict[str, np.ndarray]) -> np.ndarray:
  """[N, T, M] log-mel → [N, 6·M]: mean, std and the means of 4 time
  quarters per mel band."""
  mel = np.asarray(arrays["audio"], np.float64)
  quarters = np.array_split(mel, 4, axis=1)
  parts = [mel.mean(1), mel.std(1)] + [q.mean(1) for q in quarters]
  return np.concatenate(parts, axis=1)


def predicted_labels(
    method: Any, fit_split: str, c: float
) -> tuple[np.ndarray, np.ndarray, float]:
  """(clip ids [N], predicted labels [N], accuracy) on the train split.

  Args:
    method: anything with ``split_arrays(split)`` returning ``audio``
      log-mels ``[N, T, M]``, ``true_label`` and ``id`` (e.g. ``AVC``).
    fit_split: the labelled split the classifier is fitted on.
    c: inverse L2 strength of the logistic regression.
  """
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
