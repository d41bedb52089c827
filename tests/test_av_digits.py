"""Tests of the AV-digits tfds builder (avjax/data/builders/av_digits)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from avjax.data.builders.av_digits import builder as builder_lib
from avjax.data.builders.av_digits import canvas
from avjax.data.builders.av_digits import digits as digits_lib
from avjax.data.builders.av_digits import mixing
from avjax.data.builders.av_digits import speech
from avjax.data.builders.av_digits import sync
from avjax.data.pipeline import sources

SPLITS = digits_lib.SPLITS


def _records(av_digits_dir, config, split, keys=None):
  """Every record of a split, stacked by key (only ``keys`` when given).

  Features outside ``keys`` are left undecoded (tfds ``SkipDecoding``):
  reading the 21,000 ``captions`` records then takes a third to a half of
  the time of decoding them whole (their audio and canvases).
  """
  if keys is None:
    source = av_digits_dir.source(config, split)
  else:
    builder = sources.get_builder(
        f"av_digits/{config}", data_dir=av_digits_dir.prepare(config)
    )
    skipped = {
        k: tfds.decode.SkipDecoding()
        for k in builder.info.features
        if k not in keys
    }
    source = builder.as_data_source(split, decoders=skipped)
  rows = [source[i] for i in range(len(source))]
  keys = keys or rows[0].keys()
  return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in keys}


# --- source digits --------------------------------------------------------


def test_split_indices_is_a_stratified_partition():
  _, labels = digits_lib.load_digits()
  parts = digits_lib.split_indices(labels, seed=5)
  allidx = np.concatenate([parts[s] for s in SPLITS])
  assert len(allidx) == len(labels) == 1797
  assert len(np.unique(allidx)) == len(labels)
  for c in range(10):
    n = np.sum(labels == c)
    n_train = np.sum(labels[parts["train"]] == c)
    n_val = np.sum(labels[parts["validation"]] == c)
    assert abs(n_train - 0.7 * n) <= 1 and abs(n_val - 0.15 * n) <= 1
  again = digits_lib.split_indices(labels, seed=5)
  for s in SPLITS:
    np.testing.assert_array_equal(parts[s], again[s])
  other = digits_lib.split_indices(labels, seed=6)
  assert not np.array_equal(parts["test"], other["test"])


def test_split_indices_rejects_bad_fractions():
  with pytest.raises(ValueError, match="summing to 1"):
    digits_lib.split_indices(np.zeros(10, int), 0, (0.5, 0.2, 0.2))


def test_resize_digit_scales_levels_to_uint8():
  images, _ = digits_lib.load_digits()
  big = digits_lib.resize_digit(images[0], 32)
  assert big.shape == (32, 32) and big.dtype == np.uint8
  assert big.max() >= 200 and big[0, 0] == 0
  with pytest.raises(ValueError, match="one \\[H, W\\] image"):
    digits_lib.resize_digit(images[:2], 32)


# --- recording conditions -------------------------------------------------


def test_speaker_rates_never_coincide_across_splits():
  rng = np.random.default_rng(0)
  for split_index in range(3):
    for _ in range(200):
      speaker = mixing.draw_speaker(rng, split_index)
      assert speaker.rate % 3 == split_index
      assert speech.MIN_RATE <= speaker.rate <= speech.MAX_RATE
      assert speech.MIN_PITCH <= speaker.pitch <= speech.MAX_PITCH
      assert speech.VOICE_SETTINGS[speaker.voice_index].voice == (speaker.voice)


def test_render_clip_snr_gain_and_padding():
  rng = np.random.default_rng(1)
  tone = (8000 * np.sin(np.arange(4000) * 0.3)).astype(np.int16)
  clip = mixing.render_clip(
      tone, offset=1000, valid_length=9000, padded_length=12000, rng=rng
  )
  assert clip.dtype == np.int16 and clip.shape == (12000,)
  assert np.all(clip[9000:] == 0)
  peak = np.abs(clip.astype(float)).max() / 32767
  assert mixing.PEAK_RANGE[0] - 1e-3 <= peak <= mixing.PEAK_RANGE[1] + 1e-3
  speech_power = np.mean(clip[1000:5000].astype(float) ** 2)
  noise_power = np.mean(clip[6000:9000].astype(float) ** 2)
  snr = 10 * np.log10(speech_power / noise_power)
  assert 19 <= snr <= 41
  with pytest.raises(ValueError, match="offset"):
    mixing.render_clip(tone, 9000, 9000, 12000, rng)


# --- pairs ----------------------------------------------------------------


def test_pairs_splits_are_disjoint_and_complete(av_digits_dir):
  images, labels = digits_lib.load_digits()
  expected = digits_lib.split_indices(labels, builder_lib.DEFAULT_SEED)
  clip_ids = []
  for split in SPLITS:
    rec = _records(
        av_digits_dir, "pairs", split, ["image_id", "clip_id", "label"]
    )
    np.testing.assert_array_equal(rec["image_id"], expected[split])
    np.testing.assert_array_equal(rec["label"], labels[rec["image_id"]])
    clip_ids.append(rec["clip_id"])
  np.testing.assert_array_equal(np.concatenate(clip_ids), np.arange(1797))


def test_pairs_example_content(av_digits_dir):
  images, labels = digits_lib.load_digits()
  source = av_digits_dir.source("pairs", "validation")
  for i in (0, 17, len(source) - 1):
    ex = source[i]
    assert ex["image"].shape == (32, 32) and ex["image"].dtype == np.uint8
    np.testing.assert_array_equal(
        ex["image"], digits_lib.resize_digit(images[ex["image_id"]], 32)
    )
    assert ex["audio"].shape == (16000,) and ex["audio"].dtype == np.int16
    assert ex["audio_length"] == 16000
    peak = np.abs(ex["audio"].astype(float)).max() / 32767
    assert 0.29 <= peak <= 0.91
    assert 0 <= ex["voice"] < len(speech.VOICE_SETTINGS)


def test_pairs_example_regenerates_alone(av_digits_dir):
  """An example depends only on (seed, split, index): order-independent."""
  images, labels = digits_lib.load_digits()
  source = av_digits_dir.source("pairs", "test")
  i = 123
  stored = source[i]
  image = digits_lib.resize_digit(images[stored["image_id"]], 32)
  fresh = builder_lib.make_pair(
      stored["image_id"],
      "test",
      i,
      stored["clip_id"],
      builder_lib.DEFAULT_SEED,
      image,
      labels[stored["image_id"]],
  )
  for key, value in fresh.items():
    np.testing.assert_array_equal(np.asarray(stored[key]), value, key)


def test_pairs_audio_contains_the_word(av_digits_dir):
  """The loudest 0.1 s holds far more energy than the median (the word)."""
  source = av_digits_dir.source("pairs", "train")
  for i in range(5):
    audio = source[i]["audio"].astype(float)
    energy = np.convolve(audio**2, np.ones(1600), "valid")
    assert energy.max() > 10 * np.median(energy)


# --- captions -------------------------------------------------------------


def test_captions_sizes_and_unique_ids(av_digits_dir):
  ids = []
  for split in SPLITS:
    source = av_digits_dir.source("captions", split)
    assert len(source) == builder_lib.CAPTION_SPLIT_SIZES[split]
    rec = _records(av_digits_dir, "captions", split, ["image_id", "clip_id"])
    np.testing.assert_array_equal(rec["image_id"], rec["clip_id"])
    ids.append(rec["image_id"])
  ids = np.concatenate(ids)
  np.testing.assert_array_equal(ids, np.arange(len(ids)))


def test_captions_use_only_their_split_digits(av_digits_dir):
  _, labels = digits_lib.load_digits()
  expected = digits_lib.split_indices(labels, builder_lib.DEFAULT_SEED)
  for split in SPLITS:
    rec = _records(
        av_digits_dir, "captions", split, ["source_ids", "digits", "num_digits"]
    )
    used = rec["source_ids"][rec["source_ids"] >= 0]
    assert np.isin(used, expected[split]).all(), split
    valid = np.arange(4)[None, :] < rec["num_digits"][:, None]
    np.testing.assert_array_equal(valid, rec["source_ids"] >= 0)
    np.testing.assert_array_equal(valid, rec["digits"] >= 0)
    np.testing.assert_array_equal(
        rec["digits"][valid], labels[rec["source_ids"][valid]]
    )


def test_caption_layout_text_and_audio(av_digits_dir):
  images, _ = digits_lib.load_digits()
  source = av_digits_dir.source("captions", "validation")
  for i in range(0, 40, 3):
    ex = source[i]
    n = ex["num_digits"]
    assert 2 <= n <= 4
    boxes = ex["boxes"][:n]
    np.testing.assert_array_equal(canvas.reading_order(boxes), np.arange(n))
    ink = np.zeros((64, 64), bool)
    for top, left, bottom, right in boxes:
      assert not ink[top:bottom, left:right].any()  # no overlap
      ink[top:bottom, left:right] = True
    assert not ex["image"][~ink].any()
    np.testing.assert_array_equal(
        ex["image"], canvas.render_canvas(images[ex["source_ids"][:n]], boxes)
    )
    words = ex["caption"].decode().split()
    spoken = [digits_lib.DIGIT_WORDS[d] for d in ex["digits"][:n]]
    assert words[-n:] == spoken
    prefix = " ".join(words[:-n])
    assert prefix == "" or prefix in canvas.PREFIXES
    length = ex["audio_length"]
    assert length <= builder_lib.CAPTION_AUDIO_SAMPLES
    assert np.all(ex["audio"][length:] == 0)
    assert np.abs(ex["audio"][:length]).max() > 0.29 * 32767


def test_caption_example_regenerates_alone(av_digits_dir):
  images, labels = digits_lib.load_digits()
  split_sources = digits_lib.split_indices(labels, builder_lib.DEFAULT_SEED)
  stored = av_digits_dir.source("captions", "train")[2024]
  fresh = builder_lib.make_caption(
      "train",
      2024,
      2024,
      builder_lib.DEFAULT_SEED,
      split_sources["train"],
      images,
      labels,
  )
  # Stored unpadded; readers (sources.load_source) see it zero-padded.
  length = fresh["audio_length"]
  assert fresh["audio"].shape == (length,)
  padded = np.zeros((builder_lib.CAPTION_AUDIO_SAMPLES,), np.int16)
  padded[:length] = fresh["audio"]
  fresh["audio"] = padded
  for key, value in fresh.items():
    got = stored[key].decode() if key == "caption" else stored[key]
    np.testing.assert_array_equal(np.asarray(got), value, key)
  raw = sources.get_builder(
      "av_digits/captions", data_dir=av_digits_dir.prepare("captions")
  ).as_data_source("train")[2024]
  assert raw["audio"].shape == (length,)


def test_unpadded_caption_audio_has_the_padded_clip_values():
  """1.2.0 renders each clip at its own length; 1.1.0 rendered it padded
  to the feature's length. The samples drawn are the same."""
  utterance = speech.synthesize("three one four", "en", 175, 50)
  lead, length = 700, utterance.size + 1500
  unpadded = mixing.render_clip(
      utterance, lead, length, length, np.random.default_rng(7)
  )
  padded = mixing.render_clip(
      utterance,
      lead,
      length,
      builder_lib.CAPTION_AUDIO_SAMPLES,
      np.random.default_rng(7),
  )
  np.testing.assert_array_equal(padded[:length], unpadded)
  assert not padded[length:].any()


def test_padded_caption_view_pads_and_names_bad_records():
  records = [
      {"audio": np.array([3, -4], np.int16), "audio_length": 2},
      {"audio": np.zeros((2, 2), np.int16), "audio_length": 4},
  ]
  view = builder_lib.PaddedCaptionAudio(records)
  assert len(view) == 2
  audio = view[0]["audio"]
  assert audio.shape == (builder_lib.CAPTION_AUDIO_SAMPLES,)
  assert audio.dtype == np.int16
  np.testing.assert_array_equal(audio[:3], [3, -4, 0])
  assert not audio[2:].any() and view[0]["audio_length"] == 2
  with pytest.raises(ValueError, match=r"record 1: 'audio' has shape \(2, 2\)"):
    view[1]


def test_same_digits_in_another_order_give_another_caption(av_digits_dir):
  rec = _records(
      av_digits_dir, "captions", "train", ["digits", "num_digits", "caption"]
  )
  by_multiset = {}
  found = 0
  for digits, n, caption in zip(
      rec["digits"], rec["num_digits"], rec["caption"]
  ):
    order = tuple(digits[:n])
    key = tuple(sorted(order))
    for other_order, other_caption in by_multiset.get(key, []):
      if other_order != order:
        found += 1
        assert other_caption.split()[-n:] != caption.split()[-n:]
    by_multiset.setdefault(key, []).append((order, caption))
  assert found > 0


def test_reading_order_is_row_major():
  boxes = np.array(
      [[44, 2, 60, 18], [1, 30, 17, 46], [3, 0, 19, 16], [22, 43, 38, 59]]
  )
  np.testing.assert_array_equal(canvas.reading_order(boxes), [2, 1, 3, 0])
  assert canvas.caption_text(np.array([3, 1, 4]), "the digits") == (
      "the digits three one four"
  )
  assert canvas.caption_text([3, 1, 4]) != canvas.caption_text([4, 1, 3])


def test_draw_boxes_validates_count():
  with pytest.raises(ValueError, match="num_digits"):
    canvas.draw_boxes(np.random.default_rng(0), 5)


def test_longest_caption_fits_the_audio_feature():
  """Slowest possible speaker, longest lead-in, four two-syllable digits."""
  slowest = min(s.rate for s in speech.VOICE_SETTINGS)
  rate = int(slowest * mixing.RATE_JITTER[0])
  prefix = max(canvas.PREFIXES, key=len)
  text = canvas.caption_text([7, 7, 7, 7], prefix)
  longest = max(
      speech.synthesize(text, s.voice, rate, s.pitch).size
      for s in speech.VOICE_SETTINGS
  )
  assert longest + 2 * builder_lib.CAPTION_MAX_MARGIN <= (
      builder_lib.CAPTION_AUDIO_SAMPLES
  )


def test_too_long_caption_is_an_error(monkeypatch):
  images, labels = digits_lib.load_digits()
  monkeypatch.setattr(builder_lib, "CAPTION_AUDIO_SAMPLES", 4000)
  with pytest.raises(ValueError, match="caption '.*' spoken by .* lasts"):
    builder_lib.make_caption("train", 0, 0, 1, np.arange(100), images, labels)


def test_custom_small_captions_config(tmp_path):
  config = builder_lib.AvDigitsConfig(
      name="captions_tiny",
      kind="captions",
      seed=3,
      caption_split_sizes={"train": 6, "validation": 2, "test": 2},
  )
  builder = builder_lib.AvDigits(
      config=config, data_dir=str(tmp_path), file_format="array_record"
  )
  builder.download_and_prepare(file_format="array_record")
  source = builder.as_data_source(split="test")
  assert len(source) == 2
  assert [source[i]["image_id"] for i in range(2)] == [8, 9]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "mystery"}, "has kind 'mystery'"),
        (
            {
                "name": "c",
                "kind": "captions",
                "caption_split_sizes": {"train": 5, "test": 1},
            },
            "needs a positive size for each of",
        ),
    ],
)
def test_bad_configs_are_explained(kwargs, message, tmp_path):
  config = builder_lib.AvDigitsConfig(**kwargs)
  with pytest.raises(ValueError, match=message):
    builder = builder_lib.AvDigits(
        config=config, data_dir=str(tmp_path), file_format="array_record"
    )
    builder.download_and_prepare(file_format="array_record")


def test_heldout_pairs_speak_test_clips_only_in_voices_train_never_hears():
  options = builder_lib.HELDOUT_PAIRS
  held_out = set(options.test_voices)
  every = set(range(len(speech.VOICE_SETTINGS)))
  assert set(options.voices("train")) == every - held_out
  assert options.voices("validation") == options.voices("train")
  image = np.zeros((32, 32), np.uint8)
  seen = {}
  for split in digits_lib.SPLITS:
    seen[split] = {
        int(
            builder_lib.make_pair(
                i, split, i, i, 7, image, i % 10, options=options
            )["voice"]
        )
        for i in range(24)
    }
  assert seen["test"] <= held_out and len(seen["test"]) > 1
  assert not (seen["train"] | seen["validation"]) & held_out
  # The default `pairs` options draw test voices from all settings.
  default = {
      int(builder_lib.make_pair(i, "test", i, i, 7, image, 0)["voice"])
      for i in range(24)
  }
  assert default - held_out


def test_noise_level_follows_the_snr_range():
  utterance = (3000 * np.sin(np.arange(8000) / 5.0)).astype(np.int16)
  residual = {}
  for name, snr in (("quiet", (40.0, 40.0)), ("loud", (5.0, 5.0))):
    clip = mixing.render_clip(
        utterance, 0, 8000, 8000, np.random.default_rng(1), snr_db_range=snr
    ).astype(np.float64)
    speech_wave = utterance.astype(np.float64)
    scale = np.dot(clip, speech_wave) / np.dot(speech_wave, speech_wave)
    noise = clip - scale * speech_wave
    residual[name] = 10 * np.log10(
        np.mean((scale * speech_wave) ** 2) / np.mean(noise**2)
    )
  assert abs(residual["quiet"] - 40.0) < 1.0
  assert abs(residual["loud"] - 5.0) < 1.0


def test_resize_grey_takes_numpy_sizes_and_pairs():
  image = np.arange(64, dtype=np.float32).reshape(8, 8) * 4
  square = digits_lib.resize_grey(image, 16)
  assert square.shape == (16, 16) and square.dtype == np.uint8
  np.testing.assert_array_equal(
      digits_lib.resize_grey(image, np.int32(16)), square
  )
  assert digits_lib.resize_grey(image, (12, 20)).shape == (12, 20)


def test_read_feature_spec_is_what_load_source_returns(av_digits_dir):
  builder = sources.get_builder(
      "av_digits/captions", data_dir=av_digits_dir.prepare("captions")
  )
  stored = sources.feature_spec(builder.info.features)
  read = sources.read_feature_spec(builder)
  assert stored["audio"] == ((None,), np.dtype(np.int16))
  assert read["audio"] == ((builder_lib.CAPTION_AUDIO_SAMPLES,), np.int16)
  assert {k: v for k, v in read.items() if k != "audio"} == {
      k: v for k, v in stored.items() if k != "audio"
  }
  record = av_digits_dir.source("captions", "test")[0]
  sources.check_example(record, read, "av_digits/captions:test")
  pairs = sources.get_builder(
      "av_digits/pairs", data_dir=av_digits_dir.prepare("pairs")
  )
  assert sources.read_feature_spec(pairs) == sources.feature_spec(
      pairs.info.features
  )


# --- sync -----------------------------------------------------------------


def test_stored_sync_records_are_their_regenerated_examples(av_digits_dir):
  """Video and audio are stored as raw bytes (1.3.0; zlib before): what a
  reader gets back is exactly the example the generator made."""
  sizes = sync.split_sizes("sync")
  first_id = sizes["train"]
  source = av_digits_dir.source("sync", "validation")
  assert len(source) == sizes["validation"]
  material = sync.split_material("sync", "validation", builder_lib.DEFAULT_SEED)
  for index in (0, 57, sizes["validation"] - 1):
    made = sync.make_example(
        "sync",
        "validation",
        index,
        first_id + index,
        builder_lib.DEFAULT_SEED,
        material,
    )
    stored = source[index]
    assert sorted(stored) == sorted(made)
    for key, value in made.items():
      np.testing.assert_array_equal(stored[key], value, err_msg=key)
    assert stored["video"].dtype == np.uint8
    assert stored["audio"].dtype == np.int16
