"""AVE / VEGAS builders on tiny HDF5 fixtures in the AV-CMR published layout."""

import logging

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds

from avjax.data.builders import avcmr_features
from avjax.data.builders.manual import BadFileError, MissingManualFilesError
from manual_fixtures import build, read_all

N_TRAIN, N_TEST = 12, 4


def _arrays(rng, n, num_classes, split):
  # Train: two classes of 6 rows (10% validation → one row each); test: all.
  labels = np.arange(n) % (2 if split == "train" else num_classes)
  audio = rng.normal(size=(n, 128)).astype(np.float32) + labels[:, None]
  visual = rng.normal(size=(n, 1024)).astype(np.float32) - labels[:, None]
  return audio, visual, labels


def write_feature_file(
    path, num_classes, *, label_shape="flat", overrides=None
):
  """Writes the six AV-CMR arrays; ``overrides`` replaces arrays by key."""
  rng = np.random.default_rng(0)
  data = {}
  for split, n in (("train", N_TRAIN), ("test", N_TEST)):
    audio, visual, labels = _arrays(rng, n, num_classes, split)
    if label_shape == "column":
      labels = labels[:, None].astype(np.float64)
    elif label_shape == "onehot":
      labels = np.eye(num_classes)[labels]
    data.update(
        {
            f"audio_{split}": audio,
            f"visual_{split}": visual,
            f"lab_{split}": labels,
        }
    )
  data.update(overrides or {})
  with h5py.File(path, "w") as f:
    for key, value in data.items():
      f.create_dataset(key, data=value)
  return data


def test_vegas_builds_all_splits(tmp_path):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  data = write_feature_file(manual_dir / "vegas_feature.h5", 10)
  builder = build(avcmr_features.Vegas, manual_dir, tmp_path / "data")

  assert builder.info.features["label"].num_classes == 10
  train, val, test = (
      read_all(builder, s) for s in ("train", "validation", "test")
  )
  assert len(train) + len(val) == N_TRAIN and len(test) == N_TEST
  assert len(val) == 2  # 10% of each class's 6 train rows, rounded
  assert sorted(e["label"] for e in val) == [0, 1]
  ex = train[0]
  assert ex["audio"].dtype == np.float32 and ex["audio"].shape == (128,)
  assert ex["visual"].dtype == np.float32 and ex["visual"].shape == (1024,)
  # clip ids: train rows 0..11 (train + validation), test rows 12..15.
  assert sorted(e["clip_id"] for e in train + val) == list(range(N_TRAIN))
  assert sorted(e["clip_id"] for e in test) == list(
      range(N_TRAIN, N_TRAIN + N_TEST)
  )
  for e in train + val:
    row = e["clip_id"]
    np.testing.assert_allclose(e["audio"], data["audio_train"][row])
    np.testing.assert_allclose(e["visual"], data["visual_train"][row])
    assert e["label"] == data["lab_train"][row]
  for e in test:
    row = e["clip_id"] - N_TRAIN
    np.testing.assert_allclose(e["visual"], data["visual_test"][row])
    assert e["label"] == data["lab_test"][row]
  assert len(builder.as_data_source("train+validation")) == N_TRAIN
  # A prepared dataset reopens without the manual directory.
  reopened = tfds.data_source("vegas", data_dir=str(tmp_path / "data"))
  assert len(reopened["test"]) == N_TEST


def test_zero_validation_fraction_gives_train_and_test_only(tmp_path):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  write_feature_file(manual_dir / "vegas_feature.h5", 10)
  config = avcmr_features.AvcmrFeaturesConfig(
      name="noval",
      filenames=("vegas_feature.h5",),
      num_classes=10,
      validation_fraction=0.0,
  )
  builder = build(
      avcmr_features.Vegas, manual_dir, tmp_path / "data", config=config
  )
  assert set(builder.info.splits.keys()) == {"train", "test"}
  assert len(builder.as_data_source("train")) == N_TRAIN


@pytest.mark.parametrize("label_shape", ["column", "onehot"])
def test_ave_label_layouts(tmp_path, label_shape):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  data = write_feature_file(
      manual_dir / "AVE_feature_updated_squence.h5", 15, label_shape=label_shape
  )
  builder = build(
      avcmr_features.Ave, manual_dir, tmp_path / "data", config="avcmr15"
  )
  assert builder.info.features["label"].num_classes == 15
  expected = data["lab_test"].reshape(N_TEST, -1)
  expected = expected.argmax(1) if label_shape == "onehot" else expected[:, 0]
  got = {e["clip_id"] - N_TRAIN: e["label"] for e in read_all(builder, "test")}
  assert [got[i] for i in range(N_TEST)] == expected.astype(int).tolist()


def test_ave_full_has_28_classes_and_accepts_alternative_name(tmp_path):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  write_feature_file(manual_dir / "AVE_feature_update1_squence.h5", 28)
  builder = build(avcmr_features.Ave, manual_dir, tmp_path / "data")
  assert builder.builder_config.name == "full"
  assert builder.info.features["label"].num_classes == 28
  assert len(builder.as_data_source("test")) == N_TEST


def test_missing_file_names_dir_and_every_alternative(tmp_path):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  (manual_dir / "unrelated.txt").write_text("x")
  with pytest.raises(MissingManualFilesError) as err:
    build(avcmr_features.Ave, manual_dir, tmp_path / "data")
  msg = str(err.value)
  assert str(manual_dir) in msg
  assert "AVE_feature_updated_squence.h5" in msg
  assert "AVE_feature_update1_squence.h5" in msg
  with pytest.raises(MissingManualFilesError, match="does not exist"):
    build(avcmr_features.Vegas, tmp_path / "absent", tmp_path / "data2")


@pytest.mark.parametrize(
    "key,value,pattern",
    [
        (
            "visual_train",
            np.zeros((N_TRAIN, 512), np.float32),
            r"visual_train has shape \(12, 512\)",
        ),
        (
            "audio_test",
            np.zeros((N_TEST, 64), np.float32),
            r"audio_test has shape \(4, 64\)",
        ),
        (
            "lab_train",
            np.zeros(N_TRAIN - 1),
            r"row counts differ.*lab_train': 11",
        ),
        (
            "lab_test",
            np.full(N_TEST, 12),
            r"lab_test has labels outside \[0, 10\)",
        ),
    ],
)
def test_shape_and_label_errors_name_key(tmp_path, key, value, pattern):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  write_feature_file(
      manual_dir / "vegas_feature.h5", 10, overrides={key: value}
  )
  with pytest.raises(ValueError, match=pattern) as err:
    build(avcmr_features.Vegas, manual_dir, tmp_path / "data")
  assert "vegas_feature.h5" in str(err.value)


def test_missing_key_is_named(tmp_path):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  with h5py.File(manual_dir / "vegas_feature.h5", "w") as f:
    f.create_dataset("audio_train", data=np.zeros((2, 128)))
  with pytest.raises(ValueError, match=r"lacks dataset key\(s\).*visual_train"):
    build(avcmr_features.Vegas, manual_dir, tmp_path / "data")


def test_non_finite_rows_error_or_skip_and_count(tmp_path, caplog):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  audio = np.ones((N_TEST, 128), np.float32)
  audio[2, 5] = np.nan
  write_feature_file(
      manual_dir / "vegas_feature.h5", 10, overrides={"audio_test": audio}
  )
  with pytest.raises(
      BadFileError, match=r"non-finite.*audio_test/visual_test\[2\]"
  ):
    build(avcmr_features.Vegas, manual_dir, tmp_path / "data")

  with caplog.at_level(logging.WARNING):
    builder = build(
        avcmr_features.Vegas,
        manual_dir,
        tmp_path / "data2",
        skip_bad_files=True,
    )
  test = read_all(builder, "test")
  assert sorted(e["clip_id"] for e in test) == [
      N_TRAIN,
      N_TRAIN + 1,
      N_TRAIN + 3,
  ]
  assert (
      "vegas/test: skipped 1 example(s) because of 1 bad file(s)" in caplog.text
  )
  assert "audio_test/visual_test[2]" in caplog.text


def test_stratified_holdout_keeps_every_class_in_train():
  labels = np.array([0] * 20 + [1] * 10 + [2])
  kept, held = avcmr_features.stratified_holdout(labels, 0.2, seed=3)
  assert np.bincount(labels[held], minlength=3).tolist() == [4, 2, 0]
  assert set(labels[kept]) == {0, 1, 2}
  assert np.intersect1d(kept, held).size == 0
  assert kept.size + held.size == labels.size
  again, _ = avcmr_features.stratified_holdout(labels, 0.2, seed=3)
  np.testing.assert_array_equal(kept, again)
  with pytest.raises(ValueError, match="validation_fraction"):
    avcmr_features.stratified_holdout(labels, 1.0, seed=0)


@pytest.mark.parametrize(
    "labels",
    [
        np.array([b"dog", b"cat"] * 6),  # HDF5 byte strings
        np.array(["3", "1"] * 6, dtype=object),  # variable-length str
    ],
)
def test_string_labels_name_file_and_key(tmp_path, labels):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  if labels.dtype == object:
    labels = labels.astype(h5py.string_dtype())
  path = manual_dir / "vegas_feature.h5"
  write_feature_file(path, 10, overrides={"lab_train": labels})
  with pytest.raises(ValueError, match="string labels") as err:
    build(avcmr_features.Vegas, manual_dir, tmp_path / "data")
  assert f"{path}:lab_train" in str(err.value)
