"""`record_decoder` against tfds's own decoding of the same records."""

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from avjax.data.pipeline import record_decoder
from avjax.data.pipeline import sources

_F = tfds.features


def _assert_same_record(fast: Mapping[str, Any], ref: Mapping[str, Any], at=""):
  """Same keys, Python types, dtypes, shapes, bytes and writability."""
  assert set(fast) == set(ref), (at, sorted(set(fast) ^ set(ref)))
  for key, expected in ref.items():
    actual, where = fast[key], at + key
    if isinstance(expected, Mapping):
      _assert_same_record(actual, expected, where + "/")
      continue
    assert type(actual) is type(expected), (where, type(actual))
    if isinstance(expected, np.ndarray):
      assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape)
      assert actual.flags.writeable == expected.flags.writeable, where
      if expected.dtype == object:
        assert actual.tolist() == expected.tolist(), where
      else:
        assert actual.tobytes() == expected.tobytes(), where
    else:
      assert actual == expected, where


class AllKinds(tfds.core.GeneratorBasedBuilder):
  """Every plain-tensor kind `RecordDecoder` handles, with edge values."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=_F.FeaturesDict(
            {
                "int_scalar": _F.Scalar(np.int64),
                "float_scalar": _F.Scalar(np.float32),
                "bool_scalar": _F.Tensor(shape=(), dtype=np.bool_),
                "label": _F.ClassLabel(names=["a", "b", "c"]),
                "text": _F.Text(),
                "ints": _F.Tensor(shape=(3,), dtype=np.int32),
                "floats": _F.Tensor(shape=(2, 2), dtype=np.float32),
                "doubles": _F.Tensor(shape=(2,), dtype=np.float64),
                "bools": _F.Tensor(shape=(4,), dtype=np.bool_),
                "strings": _F.Tensor(shape=(2,), dtype=np.object_),
                "ragged_ints": _F.Tensor(shape=(None,), dtype=np.int64),
                "raw": _F.Tensor(
                    shape=(None, 4), dtype=np.uint8, encoding="bytes"
                ),
                "zipped": _F.Tensor(
                    shape=(5,), dtype=np.int16, encoding="zlib"
                ),
                "nested": {
                    "a": _F.Tensor(shape=(2,), dtype=np.int64),
                    "b": _F.Scalar(np.float64),
                },
            }
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(7)}

  def _generate_examples(self, count):
    rng = np.random.default_rng(0)
    for i in range(count):
      yield i, {
          "int_scalar": [np.iinfo(np.int64).min, -1, 0, 2**62][i % 4],
          "float_scalar": np.float32(rng.normal()),
          "bool_scalar": bool(i % 2),
          "label": i % 3,
          "text": ["", "digits 3 1", "ünïcode ✓"][i % 3],
          "ints": rng.integers(-(2**31), 2**31, 3).astype(np.int32),
          "floats": rng.normal(size=(2, 2)).astype(np.float32),
          "doubles": np.array([np.pi, -1e-300]) * i,
          "bools": rng.integers(0, 2, 4).astype(bool),
          "strings": np.array([b"x" * i, b"\x00\xff"], dtype=object),
          "ragged_ints": np.arange(i, dtype=np.int64) - 3,
          "raw": rng.integers(0, 256, (i, 4)).astype(np.uint8),
          "zipped": rng.integers(-(2**15), 2**15, 5).astype(np.int16),
          "nested": {"a": np.array([i, -i]), "b": float(i) / 3},
      }


@pytest.fixture(scope="module")
def all_kinds(tmp_path_factory):
  registry = dict(sources._BUILDERS)  # pylint: disable=protected-access
  registry["all_kinds"] = AllKinds
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(sources, "_BUILDERS", registry)
    data_dir = str(tmp_path_factory.mktemp("all_kinds"))
    builder = sources.get_builder("all_kinds", data_dir=data_dir)
    yield builder, data_dir


def test_every_plain_kind_decodes_as_tfds_does(all_kinds):
  builder, data_dir = all_kinds
  fast = sources.load_source("all_kinds", "train", data_dir=data_dir)
  assert isinstance(fast, record_decoder.DecodedSource)
  ref = builder.as_data_source(split="train")
  assert len(fast) == len(ref) == 7
  for i in range(len(ref)):
    _assert_same_record(fast[i], ref[i])
  for got, want in zip(
      fast.__getitems__([6, 0, 3]), ref.__getitems__([6, 0, 3])
  ):
    _assert_same_record(got, want)


def test_split_slices_read_the_same_records(all_kinds):
  builder, data_dir = all_kinds
  fast = sources.load_source("all_kinds", "train[2:5]", data_dir=data_dir)
  ref = builder.as_data_source(split="train[2:5]")
  assert len(fast) == 3
  for i in range(3):
    _assert_same_record(fast[i], ref[i])


@pytest.mark.parametrize(
    "feature",
    [
        _F.Image(shape=(4, 4, 3)),
        _F.Sequence(_F.Scalar(np.int64)),
        _F.Tensor(shape=(None, None), dtype=np.uint8, encoding="bytes"),
        _F.Tensor(shape=(2,), dtype=np.int64, optional=True),
        _F.Tensor(shape=(2,), dtype=np.uint64),
        _F.Text(encoder=tfds.deprecated.text.ByteTextEncoder()),
    ],
    ids=["image", "sequence", "dynamic", "optional", "uint64", "encoded"],
)
def test_other_features_are_left_to_tfds(feature):
  features = _F.FeaturesDict({"x": _F.Scalar(np.int64), "y": feature})
  assert record_decoder.RecordDecoder.for_features(features) is None


def test_a_missing_feature_is_named():
  features = _F.FeaturesDict(
      {"video": _F.Tensor(shape=(2,), dtype=np.uint8, encoding="bytes")}
  )
  decoder = record_decoder.RecordDecoder.for_features(features)
  example = tf_example_pb2.Example()
  example.features.feature["audio"].int64_list.value.append(1)
  with pytest.raises(ValueError, match="no feature 'video'.*'audio'"):
    decoder(example.SerializeToString())


@pytest.mark.parametrize("config", ["pairs", "sync", "captions", "video_text"])
def test_av_digits_records_decode_as_tfds_does(av_digits_dir, config):
  builder = sources.get_builder(
      f"av_digits/{config}", data_dir=av_digits_dir.prepare(config)
  )
  for split in builder.info.splits:
    fast = record_decoder.decoded_source(builder, split)
    assert fast is not None, split
    ref = builder.as_data_source(split=split)
    assert len(fast) == len(ref)
    for i in range(0, len(ref), max(1, len(ref) // 25)):
      _assert_same_record(fast[i], ref[i])


def test_a_scalar_with_several_values_is_an_error():
  features = _F.FeaturesDict({"clip_id": _F.Scalar(np.int64)})
  decoder = record_decoder.RecordDecoder.for_features(features)
  example = tf_example_pb2.Example()
  example.features.feature["clip_id"].int64_list.value.extend([1, 2])
  with pytest.raises(ValueError, match="'clip_id' holds 2 values"):
    decoder(example.SerializeToString())
