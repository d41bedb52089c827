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

from absl import app
from absl import flags
from ml_collections import config_flags

from avjax.eval.audio_classifier import predicted_labels
from avjax.eval.audio_classifier import write_labels
from avjax.methods.avc import AVC

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "AVC config file[:args]; fields can be overridden as in launch/main.py "
    "(e.g. --config.data.data_dir=...).",
    lock_config=True,
)
_OUT = flags.DEFINE_string("out", None, "CSV file to write.")
_FIT_SPLIT = flags.DEFINE_string(
    "fit_split", "validation", "Labelled split the classifier is fitted on."
)
_L2 = flags.DEFINE_float("c", 0.1, "Inverse L2 strength of the classifier.")
flags.mark_flags_as_required(["config", "out"])


def main(argv):
  del argv
  ids, pred, accuracy = predicted_labels(
      AVC(_CONFIG.value), _FIT_SPLIT.value, _L2.value
  )
  write_labels(_OUT.value, ids, pred)
  print(
      f"wrote {len(ids)} predicted labels to {_OUT.value}; accuracy against "
      f"the annotation: {accuracy:.3f}"
  )


if __name__ == "__main__":
  app.run(main)
