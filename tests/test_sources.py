"""Tests of avjax.data.pipeline.sources (dataset registry, preparation, checks)."""

import numpy as np
import pytest

from avjax.data.builders.av_digits import AvDigits
from avjax.data.pipeline import sources


def test_load_source_pairs(av_digits_pairs_dir):
  source = sources.load_source(
      "av_digits/pairs", "validation", data_dir=av_digits_pairs_dir
  )
  assert len(source) == 269
  example = source[0]
  assert set(example) == {
      "image",
      "audio",
      "audio_length",
      "label",
      "image_id",
      "clip_id",
      "voice",
  }
  assert example["audio"].shape == (16000,)


def test_load_source_slice(av_digits_pairs_dir):
  source = sources.load_source(
      "av_digits/pairs", "train[:10]", data_dir=av_digits_pairs_dir
  )
  assert len(source) == 10


def test_load_source_uses_env_data_dir(av_digits_pairs_dir, monkeypatch):
  monkeypatch.setenv(sources.DATA_DIR_ENV, av_digits_pairs_dir)
  assert sources.default_data_dir() == av_digits_pairs_dir
  assert len(sources.load_source("av_digits/pairs", "test")) == 270


def test_default_data_dir_without_env(monkeypatch):
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  assert sources.default_data_dir().endswith("avjax_data")


@pytest.mark.parametrize(
    "name, message",
    [
        ("nope", "unknown dataset 'nope'; registered datasets: .*av_digits"),
        (
            "av_digits",
            "needs a config; choose one of: av_digits/pairs, "
            "av_digits/pairs_heldout, av_digits/captions",
        ),
        ("av_digits/sync2", "unknown config 'sync2' .* av_digits/pairs"),
        ("a/b/c", "must be 'name' or 'name/config'"),
    ],
)
def test_bad_names_are_explained(name, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    sources.load_source(name, "train", data_dir=str(tmp_path))


def test_unknown_split_lists_valid_ones(av_digits_pairs_dir):
  with pytest.raises(
      ValueError, match="unknown split 'dev'.*train, validation, test"
  ):
    sources.load_source("av_digits/pairs", "dev", data_dir=av_digits_pairs_dir)


def test_registered_module_that_cannot_be_imported(monkeypatch, tmp_path):
  registry = sources._BUILDERS  # pylint: disable=protected-access
  monkeypatch.setitem(registry, "ghost", "avjax.data.no_such_module")
  with pytest.raises(ValueError, match="avjax.data.no_such_module"):
    sources.load_source("ghost", "train", data_dir=str(tmp_path))
  # The other datasets still load their builders.
  assert sources.builder_class("av_digits") is AvDigits


def test_register_builder(monkeypatch):
  registry = dict(sources._BUILDERS)  # pylint: disable=protected-access
  monkeypatch.setattr(sources, "_BUILDERS", registry)
  sources.register_builder("digits_again", AvDigits)
  assert "digits_again" in sources.registered_names()
  assert sources.builder_class("digits_again") is AvDigits
  with pytest.raises(TypeError, match="DatasetBuilder subclass"):
    sources.register_builder("bad", dict)
  with pytest.raises(ValueError, match="without '/'"):
    sources.register_builder("a/b", AvDigits)


def test_every_registered_dataset_resolves_to_its_builder():
  for name in ("av_digits", "ave", "vegas", "flickr8k_audio", "spokencoco"):
    assert name in sources.registered_names()
  for name in sources.registered_names():
    assert sources.builder_class(name).name == name


def test_check_example_names_key_and_shapes(av_digits_pairs_dir):
  builder = sources.get_builder("av_digits/pairs", data_dir=av_digits_pairs_dir)
  spec = sources.feature_spec(builder.info.features)
  assert spec["audio"] == ((16000,), np.dtype(np.int16))
  example = dict(builder.as_data_source("train")[0])
  sources.check_example(example, spec, "av_digits/pairs:train")

  cropped = dict(example, audio=example["audio"][:8000])
  with pytest.raises(
      ValueError,
      match=r"av_digits/pairs:train: key 'audio' "
      r"has shape \(8000,\), expected \(16000,\)",
  ):
    sources.check_example(cropped, spec, "av_digits/pairs:train")

  wrong_type = dict(example, image=example["image"].astype(np.float32))
  with pytest.raises(
      ValueError, match="key 'image' has dtype float32, " "expected uint8"
  ):
    sources.check_example(wrong_type, spec, "src")

  missing = {k: v for k, v in example.items() if k != "label"}
  with pytest.raises(ValueError, match="missing keys \\['label'\\]"):
    sources.check_example(missing, spec, "src")


def test_check_example_nested_and_unknown_dims():
  spec = {
      "a": ((None, 3), np.dtype(np.float32)),
      "b": {"c": ((), np.dtype(np.int64))},
      "t": ((), np.dtype(object)),
  }
  good = {"a": np.zeros((7, 3), np.float32), "b": {"c": 4}, "t": b"x"}
  sources.check_example(good, spec, "src")
  with pytest.raises(ValueError, match="key 'b/c' has shape \\(2,\\)"):
    sources.check_example(
        dict(good, b={"c": np.zeros(2, np.int64)}), spec, "src"
    )


def test_load_source_checks_the_first_record(av_digits_pairs_dir, monkeypatch):
  """A builder producing a wrong shape is named in the error."""
  original = AvDigits.as_data_source

  class WrongShapes:

    def __init__(self, source):
      self._source = source

    def __len__(self):
      return len(self._source)

    def __getitem__(self, i):
      record = dict(self._source[i])
      record["image"] = record["image"][:16]
      return record

  # tfds decodes (not `record_decoder`), through the wrong-shape source.
  monkeypatch.setattr(
      sources.record_decoder, "decoded_source", lambda builder, split: None
  )
  monkeypatch.setattr(
      AvDigits,
      "as_data_source",
      lambda self, split, **kw: WrongShapes(original(self, split, **kw)),
  )
  with pytest.raises(
      ValueError,
      match=r"av_digits/pairs:train: key 'image' "
      r"has shape \(16, 32\), expected \(32, 32\)",
  ):
    sources.load_source(
        "av_digits/pairs", "train", data_dir=av_digits_pairs_dir
    )
