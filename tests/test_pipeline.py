"""Tests of avjax.data.pipeline.iterators (grain training iterator, split loading)."""

import json

import numpy as np
import pytest

from avjax.data.builders.av_digits import AvDigits, AvDigitsConfig
from avjax.data.pipeline import features
from avjax.data.pipeline import iterators
from avjax.data.pipeline import sources


class ToySource:
  """In-memory random-access source of n records {"x": [2], "id": ()}."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if not 0 <= i < self.n:
      raise IndexError(i)
    return {"x": np.array([i, -i], np.float32), "id": i}


def _ids(iterator, num_batches):
  return [next(iterator)["id"].tolist() for _ in range(num_batches)]


def test_state_round_trip_is_exact_and_json(av_digits_pairs_dir):
  source = sources.load_source(
      "av_digits/pairs", "train", data_dir=av_digits_pairs_dir
  )
  make = lambda: iterators.make_train_iterator(  # noqa: E731
      source, batch_size=32, seed=7, batch_transform=features.PairsFeatures()
  )
  it = make()
  for _ in range(5):
    next(it)
  state = it.get_state()
  restored_state = json.loads(json.dumps(state))
  expected = [next(it) for _ in range(3)]
  resumed = make()
  resumed.set_state(restored_state)
  for want, got in zip(expected, (next(resumed) for _ in range(3))):
    assert set(want) == set(got)
    for key in want:
      np.testing.assert_array_equal(want[key], got[key], key)
  assert expected[0]["audio"].shape == (32, 101, 40)
  assert expected[0]["image"].shape == (32, 32, 32, 1)


def test_epochs_cover_every_example_once_and_reshuffle():
  it = iterators.make_train_iterator(ToySource(40), batch_size=8, seed=1)
  epoch1 = sum(_ids(it, 5), [])
  epoch2 = sum(_ids(it, 5), [])
  assert sorted(epoch1) == sorted(epoch2) == list(range(40))
  assert epoch1 != list(range(40)) and epoch1 != epoch2


def test_seed_determines_the_order():
  a = _ids(iterators.make_train_iterator(ToySource(40), 8, seed=1), 3)
  b = _ids(iterators.make_train_iterator(ToySource(40), 8, seed=1), 3)
  c = _ids(iterators.make_train_iterator(ToySource(40), 8, seed=2), 3)
  assert a == b and a != c


def test_no_shuffle_keeps_source_order_across_epochs():
  it = iterators.make_train_iterator(ToySource(10), 4, seed=0, shuffle=False)
  # Batches are cut from the endless stream, so one may span two epochs.
  assert _ids(it, 3) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]


@pytest.mark.parametrize("source_kind", ["records", "arrays"])
def test_processes_read_slices_of_the_one_process_global_batch(source_kind):
  def source():
    if source_kind == "records":
      return ToySource(23)
    return iterators.ArraySource(
        {"id": np.arange(23), "x": np.arange(46.0).reshape(23, 2)}
    )

  one = _ids(iterators.make_train_iterator(source(), 6, seed=3), 5)
  per_process = [
      _ids(
          iterators.make_train_iterator(
              source(), 3, seed=3, process_index=index, process_count=2
          ),
          5,
      )
      for index in range(2)
  ]
  for step in range(5):  # Several epochs: the same global batch each step.
    assert per_process[0][step] + per_process[1][step] == one[step]


def test_batch_transform_is_applied_per_batch():
  calls = []

  def transform(batch):
    calls.append(batch["x"].shape)
    return {"x": batch["x"] * 2, "id": batch["id"]}

  it = iterators.make_train_iterator(
      ToySource(12),
      4,
      seed=0,
      batch_transform=transform,
      shuffle=False,
      num_threads=0,
  )
  batch = next(it)
  np.testing.assert_array_equal(batch["x"][:, 0], [0, 2, 4, 6])
  assert calls[0] == (4, 2)


def test_bad_arguments():
  with pytest.raises(ValueError, match="fewer than the global batch of 12"):
    iterators.make_train_iterator(
        ToySource(10), 6, seed=0, process_index=1, process_count=2
    )
  with pytest.raises(ValueError, match="process_index"):
    iterators.make_train_iterator(
        ToySource(10), 2, seed=0, process_index=2, process_count=2
    )
  with pytest.raises(TypeError, match="callable"):
    iterators.make_train_iterator(
        ToySource(10), 2, seed=0, batch_transform="log_mel"
    )
  with pytest.raises(ValueError, match="empty split"):
    iterators.load_split(ToySource(0))


def test_load_split_in_source_order():
  data = iterators.load_split(ToySource(11), batch_size=4)
  np.testing.assert_array_equal(data["id"], np.arange(11))
  np.testing.assert_array_equal(data["x"][:, 1], -np.arange(11))


@pytest.fixture(scope="module")
def tiny_captions_test(tmp_path_factory):
  """The test split (150 canvases) of a tiny AV-digits `captions` config:
  a few seconds to prepare instead of minutes for the full config (21,000
  canvases), which this test of the pipeline does not need."""
  config = AvDigitsConfig(
      name="captions_tiny",
      kind="captions",
      caption_split_sizes={"train": 4, "validation": 4, "test": 150},
  )
  builder = AvDigits(
      config=config,
      file_format="array_record",
      data_dir=str(tmp_path_factory.mktemp("captions")),
  )
  builder.download_and_prepare(file_format="array_record")
  return builder.wrap_data_source(builder.as_data_source("test"), "test")


def test_load_split_captions(tiny_captions_test):
  source = tiny_captions_test
  data = iterators.load_split(
      source, features.CaptionsFeatures(), batch_size=64
  )
  assert data["audio"].shape == (150, 351, 40)
  assert data["audio_mask"].shape == (150, 351)
  assert data["image"].shape == (150, 64, 64, 1)
  np.testing.assert_array_equal(
      data["image_id"], [source[i]["image_id"] for i in range(150)]
  )
  np.testing.assert_array_equal(
      data["audio_mask"].sum(1), features.num_frames(data["audio_length"])
  )


def test_cache_features_matches_per_batch_transform():
  raw = [{"x": np.full(3, i, np.int16), "label": i % 2} for i in range(10)]

  def double(batch):
    return {"x": batch["x"].astype(np.float32) * 2, "label": batch["label"]}

  cached = iterators.cache_features(raw, double, batch_size=4)
  assert len(cached) == 10
  np.testing.assert_array_equal(cached[7]["x"], [14.0, 14.0, 14.0])
  a = iterators.make_train_iterator(cached, batch_size=4, seed=1)
  b = iterators.make_train_iterator(
      raw, batch_size=4, seed=1, batch_transform=double
  )
  for _ in range(4):
    ba, bb = next(a), next(b)
    np.testing.assert_array_equal(ba["x"], bb["x"])
    np.testing.assert_array_equal(ba["label"], bb["label"])
  # `cache=True` does the same inside the iterator, also for one process's
  # slice of the global batch.
  for process_index in (0, 1):
    kwargs = dict(
        batch_size=2,
        seed=1,
        batch_transform=double,
        process_index=process_index,
        process_count=2,
    )
    c = iterators.make_train_iterator(raw, cache=True, **kwargs)
    d = iterators.make_train_iterator(raw, **kwargs)
    for _ in range(6):
      bc, bd = next(c), next(d)
      assert bc["x"].dtype == np.float32
      np.testing.assert_array_equal(bc["x"], bd["x"])
      np.testing.assert_array_equal(bc["label"], bd["label"])


def test_array_source_rejects_ragged_arrays():
  with pytest.raises(ValueError, match="lengths"):
    iterators.ArraySource({"a": np.zeros(3), "b": np.zeros(4)})


class _CountingArraySource(iterators.ArraySource):
  """ArraySource that counts per-example reads and batch gathers."""

  def __init__(self, arrays):
    super().__init__(arrays)
    self.item_reads = self.gathers = 0

  def __getitem__(self, index):
    self.item_reads += 1
    return super().__getitem__(index)

  def gather(self, indices):
    self.gathers += 1
    return super().gather(indices)


@pytest.mark.parametrize("process_index,process_count", [(0, 1), (1, 2)])
def test_array_source_batches_are_gathered_whole(process_index, process_count):
  arrays = {
      "x": np.arange(46 * 3, dtype=np.float32).reshape(46, 3),
      "label": np.arange(46, dtype=np.int32) % 5,
  }
  counted = _CountingArraySource(arrays)
  # Reference: the same arrays behind a plain per-example source.
  plain = [{k: v[i] for k, v in arrays.items()} for i in range(46)]
  make = lambda src: iterators.make_train_iterator(  # noqa: E731
      src,
      batch_size=8,
      seed=3,
      process_index=process_index,
      process_count=process_count,
      num_threads=0,
  )
  fast, slow = make(counted), make(plain)
  for _ in range(7):  # Several epochs of the shard.
    a, b = next(fast), next(slow)
    assert a.keys() == b.keys()
    for key in a:
      assert a[key].dtype == b[key].dtype
      np.testing.assert_array_equal(a[key], b[key])
  assert counted.item_reads == 0
  assert counted.gathers == 7
  state = fast.get_state()
  expected = [next(fast)["x"] for _ in range(3)]
  resumed = make(counted)
  resumed.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(resumed)["x"], want)
