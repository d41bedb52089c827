"""AVE and VEGAS as pre-extracted clip features (TSTL-CA's benchmarks).

Published on-disk format (verified against the AV-CMR code of the TSTL-CA
authors' group):

* ZenzenDatabase/CMR (Zeng, Yu, Oyama, TNN-C-CCA), ``c_cca.py``: reads
  ``Data/vegas_feature.h5`` with h5py keys ``audio_train``, ``audio_test``,
  ``visual_train``, ``visual_test``, ``lab_train``, ``lab_test``; its README
  distributes ``vegas_feature.h5`` (VGGish audio, Inception-v3 visual).
* zhangjiwei-japan/cross-modal-visual-audio-retrieval (same group),
  ``datasets/load_data_vegas_ave.py`` and ``train_model.py``: the same six keys
  in ``vegas_feature.h5`` and ``AVE_feature_updated_squence.h5`` (sic),
  visual 1024-d, audio 128-d, VEGAS 10 classes, AVE 15 classes in that file,
  labels as integer class indices of shape [N] or [N, 1].

So each dataset is ONE HDF5 file in the manual directory::

    <manual_dir>/vegas_feature.h5                     (VEGAS)
    <manual_dir>/AVE_feature_updated_squence.h5       (AVE; the authors' name,
                                                        misspelling included)
      audio_train   float [N_train, 128]    VGGish clip embedding
      visual_train  float [N_train, 1024]   Inception clip embedding
      lab_train     int/float [N_train] or [N_train, 1] (or one-hot [N, C])
      audio_test / visual_test / lab_test   the same for the test clips

Decisions the papers leave open:

* Splits. The file holds the published train/test split. A validation split
  is carved from the file's train rows: a stratified ``validation_fraction``
  (default 10%) per class, chosen by a seeded permutation
  (``split_seed``), never emptying a class's train rows. ``train`` is the
  remainder; ``train+validation`` is exactly the file's train set (the
  protocol of the published numbers); ``test`` is the file's test set.
* clip_id: the row in the file's train set (0..N_train-1), test rows
  continue at N_train + row; carved validation rows keep their train ids.
* AVE classes. AVE has 28 event categories (4,143 clips); the AV-CMR group's
  released AVE file uses a 15-class subset. Config ``ave/full`` declares 28
  classes, ``ave/avcmr15`` declares 15. Label order inside the files is not
  documented, so classes are named by index ("0".."C-1").
* Non-finite feature rows: an error naming file, key and rows; with
  ``skip_bad_files=True`` such clips are skipped and counted in the log.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from avjax.data.builders import manual

FILE_SPLITS = ("train", "test")


@dataclasses.dataclass
class AvcmrFeaturesConfig(tfds.core.BuilderConfig):
  """Config of a clip-feature dataset.

  Attributes:
    filenames: accepted names of the HDF5 file (first existing one is used).
    num_classes: number of classes declared by the ClassLabel.
    audio_dim: expected audio feature size (VGGish: 128).
    visual_dim: expected visual feature size (Inception, AV-CMR: 1024).
    validation_fraction: share of each class's train rows held out as the
      validation split (0 → no validation split).
    split_seed: seed of the validation hold-out permutation.
  """

  filenames: tuple[str, ...] = ()
  num_classes: int = 0
  audio_dim: int = 128
  visual_dim: int = 1024
  validation_fraction: float = 0.1
  split_seed: int = 0


@dataclasses.dataclass(frozen=True)
class FeatureSplit:
  """Rows of one split of the file: audio [N, Da], visual [N, Dv], labels [N]."""

  audio: np.ndarray
  visual: np.ndarray
  labels: np.ndarray


def _read_labels(
    ds: h5py.Dataset, key: str, path: Path, num_classes: int
) -> np.ndarray:
  if ds.dtype.kind not in "biuf":
    is_text = (
        ds.dtype.kind in "OSU" or h5py.check_string_dtype(ds.dtype) is not None
    )
    kind = "string" if is_text else f"non-numeric ({ds.dtype})"
    raise ValueError(
        f"{path}:{key} holds {kind} labels; expected "
        f"integer class indices 0..{num_classes - 1} "
        "(shape [N], [N, 1] or one-hot)"
    )
  raw = np.asarray(ds[()])
  if raw.ndim == 2 and raw.shape[1] == 1:
    raw = raw[:, 0]
  elif raw.ndim == 2 and raw.shape[1] == num_classes:
    is_one_hot = np.all((raw == 0) | (raw == 1)) and np.all(
        raw.sum(axis=1) == 1
    )
    if not is_one_hot:
      raise ValueError(
          f"{path}:{key} has shape {raw.shape} but its rows "
          "are not one-hot vectors"
      )
    raw = raw.argmax(axis=1)
  if raw.ndim != 1:
    raise ValueError(
        f"{path}:{key} has shape {raw.shape}; expected [N], "
        f"[N, 1] or one-hot [N, {num_classes}]"
    )
  if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
    raise ValueError(f"{path}:{key} holds non-integer class labels")
  labels = raw.astype(np.int64)
  bad = (labels < 0) | (labels >= num_classes)
  if np.any(bad):
    raise ValueError(
        f"{path}:{key} has labels outside [0, {num_classes}) "
        f"(min {labels.min()}, max {labels.max()}); the config declares "
        f"{num_classes} classes — pick the config matching the file"
    )
  return labels.astype(np.int32)


def _read_matrix(
    ds: h5py.Dataset, key: str, path: Path, dim: int
) -> np.ndarray:
  if ds.ndim != 2 or ds.shape[1] != dim:
    raise ValueError(f"{path}:{key} has shape {ds.shape}; expected [N, {dim}]")
  return np.asarray(ds[()], dtype=np.float32)


def read_feature_file(
    path: Path, config: AvcmrFeaturesConfig
) -> dict[str, FeatureSplit]:
  """Reads and validates the six arrays of an AV-CMR feature file.

  Returns:
    {"train": FeatureSplit, "test": FeatureSplit}, features float32, labels
    int32 in [0, num_classes).

  Raises:
    ValueError: a missing key, a wrong feature size, or row counts of
      audio / visual / labels that differ (message names file, key, shape).
  """
  out: dict[str, FeatureSplit] = {}
  try:
    h5 = h5py.File(path, "r")
  except OSError as err:
    raise ValueError(f"{path} is not a readable HDF5 file ({err})") from err
  with h5:
    keys = [
        f"{kind}_{split}"
        for split in FILE_SPLITS
        for kind in ("audio", "visual", "lab")
    ]
    absent = [k for k in keys if k not in h5]
    if absent:
      raise ValueError(
          f"{path} lacks dataset key(s) {absent}; present: "
          f"{sorted(h5.keys())}"
      )
    for split in FILE_SPLITS:
      audio = _read_matrix(
          h5[f"audio_{split}"], f"audio_{split}", path, config.audio_dim
      )
      visual = _read_matrix(
          h5[f"visual_{split}"], f"visual_{split}", path, config.visual_dim
      )
      labels = _read_labels(
          h5[f"lab_{split}"], f"lab_{split}", path, config.num_classes
      )
      rows = {
          f"audio_{split}": audio.shape[0],
          f"visual_{split}": visual.shape[0],
          f"lab_{split}": labels.shape[0],
      }
      if len(set(rows.values())) != 1:
        raise ValueError(f"{path}: row counts differ between {rows}")
      out[split] = FeatureSplit(audio, visual, labels)
  return out


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Splits row indices into (kept, held_out), stratified by label.

  Each class holds out round(fraction * n_c) rows, at most n_c - 1, chosen
  by a permutation seeded with ``seed``. Both outputs are sorted int64.
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
  rng = np.random.default_rng(seed)
  held: list[np.ndarray] = []
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    n_hold = min(int(round(fraction * rows.size)), rows.size - 1)
    held.append(rng.permutation(rows)[:n_hold])
  held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
  kept = np.setdiff1d(np.arange(labels.size), held_out)
  return kept.astype(np.int64), held_out.astype(np.int64)


class _AvcmrFeatures(manual.ManualDownloadBuilder, skip_registration=True):
  """Clip-feature dataset read from one AV-CMR HDF5 file (see module doc)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Reads the AV-CMR HDF5 feature file."}
  BUILDER_CONFIG_CLASS = AvcmrFeaturesConfig

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
            {
                "audio": tfds.features.Tensor(
                    shape=(cfg.audio_dim,), dtype=np.float32
                ),
                "visual": tfds.features.Tensor(
                    shape=(cfg.visual_dim,), dtype=np.float32
                ),
                "label": tfds.features.ClassLabel(num_classes=cfg.num_classes),
                "clip_id": tfds.features.Scalar(dtype=np.int32),
            }
        ),
    )

  def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
    cfg = self.builder_config
    found = self._find_manual(dl_manager, [tuple(cfg.filenames)])
    path = found[cfg.filenames[0]]
    arrays = read_feature_file(path, cfg)
    train, test = arrays["train"], arrays["test"]
    present = np.unique(train.labels).size
    if present < cfg.num_classes:
      logging.warning(
          "%s/%s: %s has %d distinct train labels but the config declares "
          "%d classes",
          self.name,
          cfg.name,
          path,
          present,
          cfg.num_classes,
      )
    train_ids = np.arange(train.labels.size, dtype=np.int64)
    test_ids = train.labels.size + np.arange(test.labels.size, dtype=np.int64)
    kept, held = stratified_holdout(
        train.labels, cfg.validation_fraction, cfg.split_seed
    )
    splits = {
        "train": self._generate_examples(
            path, train, train_ids[kept], kept, "train"
        ),
        "test": self._generate_examples(
            path, test, test_ids, np.arange(test.labels.size), "test"
        ),
    }
    if held.size:
      splits["validation"] = self._generate_examples(
          path, train, train_ids[held], held, "validation"
      )
    return splits

  def _generate_examples(
      self,
      path: Path,
      arrays: FeatureSplit,
      clip_ids: np.ndarray,
      rows: np.ndarray,
      split: str,
  ):
    bad = self._bad_file_log(split)
    file_split = "test" if split == "test" else "train"
    finite = np.isfinite(arrays.audio).all(axis=1) & np.isfinite(
        arrays.visual
    ).all(axis=1)
    kept = 0
    for clip_id, row in zip(clip_ids, rows):
      if not finite[row]:
        bad.handle(
            manual.BadFileError(
                f"{path}:audio_{file_split}/visual_{file_split}[{row}]",
                "non-finite feature values",
            )
        )
        continue
      kept += 1
      yield int(clip_id), {
          "audio": arrays.audio[row],
          "visual": arrays.visual[row],
          "label": int(arrays.labels[row]),
          "clip_id": int(clip_id),
      }
    bad.report(kept)


_AVCMR_SOURCE = """\
Feature files of the audio-visual cross-modal retrieval (AV-CMR) papers of
Zeng, Yu, Oyama et al. (TNN-C-CCA, MSNSCA, TSTL-CA): one HDF5 file per dataset
with six arrays, VGGish audio (128-d) and Inception visual (1024-d) clip
features:

  audio_train [N_train, 128]   visual_train [N_train, 1024]   lab_train [N_train]
  audio_test  [N_test, 128]    visual_test  [N_test, 1024]    lab_test  [N_test]

(lab_* may also be [N, 1] or one-hot [N, C]; integer class indices 0..C-1.)
"""

VEGAS_INSTRUCTIONS = _AVCMR_SOURCE + """
VEGAS (10 classes): download `vegas_feature.h5` from the Google Drive folder
linked in the README of https://github.com/ZenzenDatabase/CMR and put it at

  <manual_dir>/vegas_feature.h5
"""

AVE_INSTRUCTIONS = _AVCMR_SOURCE + """
AVE: the AV-CMR group's code (e.g.
https://github.com/zhangjiwei-japan/cross-modal-visual-audio-retrieval) expects
`AVE_feature_updated_squence.h5` (their spelling). Obtain it from those authors,
or build it from the AVE videos (https://github.com/YapengTian/AVE-ECCV18) with
the same six arrays (one row per clip), and put it at

  <manual_dir>/AVE_feature_updated_squence.h5
  (or <manual_dir>/AVE_feature_update1_squence.h5)

Configs: `ave/full` declares AVE's 28 event classes; `ave/avcmr15` declares
the 15-class subset used in the AV-CMR group's released file.
"""

_AVE_FILENAMES = (
    "AVE_feature_updated_squence.h5",
    "AVE_feature_update1_squence.h5",
)


class Ave(_AvcmrFeatures):
  """AVE clip features: audio [128], visual [1024], label, clip_id."""

  name = "ave"
  MANUAL_DOWNLOAD_INSTRUCTIONS = AVE_INSTRUCTIONS
  BUILDER_CONFIGS = [
      AvcmrFeaturesConfig(
          name="full",
          filenames=_AVE_FILENAMES,
          num_classes=28,
          description="AVE, 28 event classes.",
      ),
      AvcmrFeaturesConfig(
          name="avcmr15",
          filenames=_AVE_FILENAMES,
          num_classes=15,
          description="AVE, the 15-class subset of the AV-CMR "
          "group's released feature file.",
      ),
  ]


class Vegas(_AvcmrFeatures):
  """VEGAS clip features: audio [128], visual [1024], label (10), clip_id."""

  name = "vegas"
  MANUAL_DOWNLOAD_INSTRUCTIONS = VEGAS_INSTRUCTIONS
  BUILDER_CONFIGS = [
      AvcmrFeaturesConfig(
          name="default",
          filenames=("vegas_feature.h5",),
          num_classes=10,
          description="VEGAS, 10 classes.",
      ),
  ]
