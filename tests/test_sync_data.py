"""AV-digits `sync` / `sync_dense` generation and the sync grain pipeline."""

import numpy as np
import pytest

from avjax.data.builders.av_digits import sync
from avjax.data.pipeline import sync as sp

SEED = 20240601
SR = sync.SAMPLE_RATE


@pytest.fixture(scope="module")
def material():
  return sync.split_material("sync", "test", SEED)


@pytest.fixture(scope="module")
def dense_material():
  return sync.split_material("sync_dense", "test", SEED)


def test_sparse_clip_events_on_screen_and_in_soundtrack(material):
  ex = sync.make_sparse("test", 3, 1003, SEED, material)
  assert ex["video"].shape == (sync.VIDEO_FRAMES, 32, 32)
  assert ex["audio"].shape == (sync.AUDIO_SAMPLES,)
  n = int(ex["num_events"])
  onsets = ex["event_frames"][:n]
  assert n >= 4 and np.all(ex["event_frames"][n:] == -10000)
  assert np.all(np.diff(onsets) >= sync.EVENT_GAP_FRAMES[0])
  # Frames show ink exactly during the events' flashes.
  lit = ex["video"].reshape(sync.VIDEO_FRAMES, -1).max(axis=1) > 0
  expected = np.zeros(sync.VIDEO_FRAMES, bool)
  for f in onsets:
    last = min(f + sync.EVENT_FRAMES, sync.VIDEO_FRAMES)
    expected[max(f, 0) : max(last, 0)] = True
  np.testing.assert_array_equal(lit, expected)
  # Each word starts at its onset: silence just before, sound just after.
  audio = np.abs(ex["audio"].astype(np.int32))
  for f in onsets:
    at = (f + sync.AUDIO_MARGIN_FRAMES) * sync.SAMPLES_PER_FRAME
    assert audio[max(at - 400, 0) : at].max() == 0
    assert audio[at : at + 800].max() > 1000
  # Deterministic in its arguments.
  again = sync.make_sparse("test", 3, 1003, SEED, material)
  for k in ex:
    np.testing.assert_array_equal(ex[k], again[k])


def _pitch(audio, centre, width=320):
  """Frequency (Hz) from zero crossings of a window around `centre`."""
  seg = audio[centre - width : centre + width].astype(np.float64)
  crossings = np.sum(np.diff(np.signbit(seg).astype(int)) != 0)
  return crossings / 2 / (2 * width / SR)


def test_dense_pitch_follows_digit_height(dense_material):
  ex = sync.make_dense("test", 5, 5, SEED, dense_material)
  video = ex["video"]
  rows = np.array([np.flatnonzero(f.max(axis=1))[0] for f in video])
  centres = (np.arange(sync.VIDEO_FRAMES) + sync.AUDIO_MARGIN_FRAMES) * (
      sync.SAMPLES_PER_FRAME
  )
  pitch = np.array([_pitch(ex["audio"], c) for c in centres])
  # Higher on screen (smaller row) = higher pitch, log scale.
  corr = np.corrcoef(rows, np.log(pitch))[0, 1]
  assert corr < -0.9
  assert 250 < pitch.min() and pitch.max() < 1300
  assert int(ex["num_events"]) == 0


def test_every_offset_class_overlaps_at_least_2_8_s_in_real_signal():
  """The paper's geometry from the clip and crop lengths: a 4.8 s crop,
  ±2 s in 21 classes; the video and its shifted audio window share >= 2.8 s
  for every class, and every crop start of the clip holds every class's
  window and a whole-crop unsynchronisable shift in real audio."""
  spec = sp.SyncSpec(crop_frames=sync.CROP_FRAMES)
  assert spec.crop_seconds == pytest.approx(4.8)
  assert spec.num_offsets == 21
  np.testing.assert_allclose(np.diff(spec.offsets()), 0.2)
  assert abs(spec.offsets()).max() == pytest.approx(sync.MAX_OFFSET_SECONDS)
  video_s = sync.VIDEO_FRAMES / sync.FPS
  audio_start = -sync.AUDIO_MARGIN_SECONDS  # video time of audio sample 0
  audio_end = sync.AUDIO_SAMPLES / SR - sync.AUDIO_MARGIN_SECONDS
  for start in range(sync.VIDEO_FRAMES - sync.CROP_FRAMES + 1):
    crop = (start / sync.FPS, start / sync.FPS + spec.crop_seconds)
    assert crop[1] <= video_s + 1e-9
    for o in list(spec.offsets()) + [-spec.crop_seconds, spec.crop_seconds]:
      window = (crop[0] + o, crop[1] + o)
      assert audio_start - 1e-9 <= window[0] and window[1] <= audio_end + 1e-9
      overlap = min(crop[1], window[1]) - max(crop[0], window[0])
      if abs(o) <= spec.max_offset:
        assert overlap >= 2.8 - 1e-9, (start, o, overlap)
  # The pipeline agrees: every start fits every shift at once.
  lo, hi = sp.start_range(
      spec,
      sync.VIDEO_FRAMES,
      sync.AUDIO_SAMPLES,
      sync.AUDIO_MARGIN_SAMPLES,
      "x",
  )
  assert (lo, hi) == (0, sync.VIDEO_FRAMES - sync.CROP_FRAMES)
  assert sync.MAX_EVAL_START == hi


def test_splits_use_disjoint_digits_and_speakers():
  mats = {
      s: sync.split_material("sync", s, SEED, synthesize=False)
      for s in ("train", "validation", "test")
  }
  flat = {s: {m.tobytes() for m in mat.digits} for s, mat in mats.items()}
  assert not flat["train"] & flat["test"]
  assert not flat["validation"] & flat["test"]


def _click_record(seconds=8.0, lead_seconds=2.6, seed=0):
  """A record whose audio is a random click train; video is blank."""
  rng = np.random.default_rng(seed)
  audio = np.zeros(int(seconds * SR), np.int16)
  clicks = rng.choice(audio.size - 10, size=50, replace=False)
  audio[clicks] = rng.integers(5000, 30000, size=50)
  frames = int((seconds - 2 * lead_seconds) * 25)
  return {
      "video": np.zeros((frames, 8, 8), np.uint8),
      "audio": audio,
      "audio_lead": int(lead_seconds * SR),
      "clip_id": 7,
      "eval_offsets": np.array([0, 10, 20], np.int32),
      "eval_starts": np.array([0, 3, 100], np.int32),
  }


def _position(window, audio):
  """Where `window` sits in `audio` (samples), by FFT cross-correlation."""
  n = len(audio) + len(window)
  spec = np.fft.rfft(audio.astype(np.float64), n) * np.conj(
      np.fft.rfft(window.astype(np.float64), n)
  )
  return int(np.argmax(np.fft.irfft(spec, n)))


def _lag(window, reference, audio):
  """Seconds by which `window` is later than `reference` in `audio`."""
  return (_position(window, audio) - _position(reference, audio)) / SR


def test_offset_applied_equals_label_for_every_class():
  record = _click_record()
  spec = sp.SyncSpec(crop_frames=64)
  start = 10
  for cls, seconds in enumerate(spec.offsets()):
    ex = sp.make_example(record, spec, start, cls, 0.0, False, 1)
    assert int(ex["offset_label"]) == cls
    # Located in the soundtrack by cross-correlation, the shifted window
    # starts exactly o seconds after the synced one.
    lag = _lag(ex["audio_shifted"], ex["audio_synced"], record["audio"])
    assert lag == pytest.approx(seconds, abs=0.5 / SR), (cls, seconds, lag)
    # ... and the synced one at the crop's own time.
    assert _position(ex["audio_synced"], record["audio"]) == (
        record["audio_lead"] + start * SR // 25
    )


def test_train_crops_jitter_and_unsync_windows():
  record = _click_record()
  spec = sp.SyncSpec(crop_frames=64, jitter=0.05)
  crops = sp.TrainCrops(spec)
  rng = np.random.default_rng(1)
  seen, unsync, unsync_lags = set(), 0, []
  for _ in range(120):
    ex = crops.random_map(record, rng)
    cls = int(ex["offset_label"])
    seen.add(cls)
    shift = float(ex["offset_seconds"])
    assert abs(shift - spec.offsets()[cls]) <= 0.05 + 1e-6
    lag = _lag(ex["audio_shifted"], ex["audio_synced"], record["audio"])
    assert abs(lag - shift) <= 0.5 / SR + 1e-9
    lag_check = _lag(ex["audio_check"], ex["audio_synced"], record["audio"])
    if int(ex["sync_label"]) == 1:
      np.testing.assert_array_equal(ex["audio_check"], ex["audio_shifted"])
    else:
      unsync += 1
      # A whole crop length, jittered towards the crop like the
      # synchronisable shifts (so sound onsets leave the frame grid alike).
      magnitude = abs(lag_check)
      assert spec.crop_seconds - 0.05 - 1e-9 <= magnitude
      assert magnitude <= spec.crop_seconds + 0.5 / SR
      unsync_lags.append(magnitude)
  assert seen == set(range(21))
  assert 35 < unsync < 85
  on_grid = [abs(m * 25 - round(m * 25)) < 1e-6 for m in unsync_lags]
  assert sum(on_grid) <= 2, unsync_lags


def _fits(spec, record, start):
  try:
    for shift in (-spec.max_shift, spec.max_shift):
      sp.audio_window(spec, record["audio"], record["audio_lead"], start, shift)
  except sp.ClipTooShortError:
    return False
  return 0 <= start <= len(record["video"]) - spec.crop_frames


@pytest.mark.parametrize("lead,tail", [(1.0, 3.5), (3.0, 0.8), (2.6, 2.6)])
def test_start_range_is_exactly_the_fitting_starts(lead, tail):
  spec = sp.SyncSpec(crop_frames=64)
  frames = 150  # 6 s
  audio = np.zeros(int((lead + 6.0 + tail) * SR), np.int16)
  record = {
      "video": np.zeros((frames, 8, 8), np.uint8),
      "audio": audio,
      "audio_lead": int(lead * SR),
  }
  lo, hi = sp.start_range(spec, frames, audio.size, record["audio_lead"], "x")
  fitting = [s for s in range(frames) if _fits(spec, record, s)]
  assert fitting == list(range(lo, hi + 1))


def test_clip_shorter_than_crop_is_an_error_naming_it():
  record = _click_record(seconds=7.2, lead_seconds=2.6)  # 2 s of video
  record["clip_name"] = b"bad_clip_0042"
  with pytest.raises(sp.ClipTooShortError, match="bad_clip_0042.*2.56 s"):
    sp.TrainCrops(sp.SyncSpec(crop_frames=64)).random_map(
        record, np.random.default_rng(0)
    )


def test_eval_examples_use_stored_draws():
  record = _click_record()
  spec = sp.SyncSpec(crop_frames=64)
  data = sp.load_eval([record, record], spec)
  assert len(data["offset_label"]) == 6
  np.testing.assert_array_equal(data["offset_label"], [0, 10, 20] * 2)
  np.testing.assert_array_equal(data["sync_label"], [1, 0, 1, 0, 1, 0])
  lo, hi = sp.start_range(
      spec,
      len(record["video"]),
      len(record["audio"]),
      record["audio_lead"],
      "x",
  )
  ex = sp.eval_example(record, spec, 0, 2)  # stored start 100 > hi
  ref = sp.make_example(record, spec, hi, 20, 0.0, False, 1)
  np.testing.assert_array_equal(ex["audio_shifted"], ref["audio_shifted"])
  assert data["video"].shape == (6, 64, 8, 8, 1)


def test_train_iterator_resumes_same_batches(material):
  records = [sync.make_sparse("test", i, i, SEED, material) for i in range(8)]
  spec = sp.SyncSpec()
  it = sp.make_train_iterator(records, spec, batch_size=4, seed=3)
  next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  again = sp.make_train_iterator(records, spec, batch_size=4, seed=3)
  again.set_state(state)
  for want in expected:
    got = next(again)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  assert expected[0]["video"].shape == (4, 120, 32, 32, 1)
  assert expected[0]["audio_shifted"].dtype == np.int16
  # Event times follow the crop: a video event is at (onset - start) / fps.
  assert np.isfinite(expected[0]["video_events"]).any()


def test_short_real_clip_fits_each_example_and_keeps_its_label():
  # A 10 s clip, video and audio aligned (no lead), with the paper's 4.8 s
  # crop: no crop start holds every shift (±4.8 s) at once, as for
  # VGGSound, so each example is fitted to its own shifts.
  record = _click_record(seconds=10.0, lead_seconds=0.0, seed=3)
  record["clip_name"] = b"vggsound_10s"
  spec = sp.SyncSpec(crop_frames=120)
  crops = sp.TrainCrops(spec)
  unsync_signs = set()
  for seed in range(40):
    ex = crops.random_map(record, np.random.default_rng(seed))
    lag = _lag(ex["audio_shifted"], ex["audio_synced"], record["audio"])
    assert lag == pytest.approx(float(ex["offset_seconds"]), abs=2 / SR)
    if ex["sync_label"] == 0:
      check = _lag(ex["audio_check"], ex["audio_synced"], record["audio"])
      assert spec.crop_seconds - 0.05 - 2 / SR <= abs(check)
      assert abs(check) <= spec.crop_seconds + 2 / SR
      unsync_signs.add(np.sign(check))
  assert unsync_signs == {-1.0, 1.0}
  for draw in range(3):  # Stored evaluation draws fit the same way.
    ex = sp.eval_example(record, spec, 1, draw)
    lag = _lag(ex["audio_shifted"], ex["audio_synced"], record["audio"])
    assert lag == pytest.approx(float(ex["offset_seconds"]), abs=2 / SR)
