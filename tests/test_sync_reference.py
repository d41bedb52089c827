"""avjax.eval.sync_reference: the non-learned offset reference."""

import numpy as np
import pytest

from avjax.eval import sync_reference

FPS, SR = 25.0, 16000
PER_FRAME = 640
OFFSETS = np.linspace(-2.0, 2.0, 21)
CROP = 120


def _click_flash(rng, offset_frames, crop=CROP, margin=60):
  """Flashes at random frames of a long timeline, a click at each flash.

  Returns the video crop [crop, 8, 8] (timeline frames [margin, margin +
  crop)) and the audio window starting ``offset_frames`` later: audio frame
  k is video frame k + offset_frames.
  """
  total = crop + 2 * margin
  onsets = np.cumsum(rng.integers(8, 26, 14))  # 0.32-1 s apart
  # None at the first frame of the crop or of the audio window, where an
  # onset has no visible rise (the envelopes start at 0).
  starts = np.array([margin, margin + offset_frames])
  onsets = onsets[np.abs(onsets[:, None] - starts).min(axis=1) > 2]
  frames = np.zeros((total, 8, 8), np.uint8)
  audio = np.zeros(total * PER_FRAME, np.int16)
  for f in onsets:
    frames[f : f + 3, 2:6, 2:6] = 200
    audio[f * PER_FRAME : f * PER_FRAME + 160] = 12000  # a 10 ms click
  first = (margin + offset_frames) * PER_FRAME
  return (
      frames[margin : margin + crop],
      audio[first : first + crop * PER_FRAME],
  )


def _every_offset(make, rng, repeats: int):
  """(videos, audios, labels): ``repeats`` tracks of each offset class."""
  tracks = [
      (make(rng, int(round(seconds * FPS))), label)
      for label, seconds in enumerate(OFFSETS)
      for _ in range(repeats)
  ]
  videos = np.stack([v for (v, _), _ in tracks])
  audios = np.stack([a for (_, a), _ in tracks])
  return videos, audios, np.array([label for _, label in tracks])


def test_onset_reference_recovers_click_flash_offsets_exactly():
  videos, audios, labels = _every_offset(
      _click_flash, np.random.default_rng(0), 3
  )
  scores = sync_reference.offset_scores(
      videos, audios, FPS, SR, OFFSETS, cue="onset"
  )
  assert scores.shape == (len(labels), 21)
  np.testing.assert_array_equal(np.argmax(scores, 1), labels)
  # At the true offset every onset matches: correlation 1.
  np.testing.assert_allclose(
      scores[np.arange(len(labels)), labels], 1.0, atol=1e-9
  )


def test_onset_reference_scores_unrelated_audio_lower():
  rng = np.random.default_rng(1)
  synced = [_click_flash(rng, 0) for _ in range(20)]
  video = np.stack([v for v, _ in synced])
  audio = np.stack([a for _, a in synced])
  # Another clip's audio: no candidate offset lines its clicks up.
  shuffled = np.roll(audio, 1, axis=0)
  good = sync_reference.offset_scores(video, audio, FPS, SR, OFFSETS).max(1)
  bad = sync_reference.offset_scores(video, shuffled, FPS, SR, OFFSETS).max(1)
  assert good.min() > bad.max()


def _tone_blob(rng, offset_frames, crop=CROP, margin=60):
  """A blob whose height follows a smooth path; a tone whose pitch does."""
  total = crop + 2 * margin
  t = np.arange(total * PER_FRAME) / SR
  # Three incommensurate sinusoids: no shift repeats the path.
  freqs, phases = rng.uniform(0.3, 1.2, 3), rng.uniform(0, 6.3, 3)
  height = np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]).mean(0)
  pitch = 2.0 ** (np.log2(300) + (height + 1) / 2 * 2)  # 300..1,200 Hz
  audio = np.round(0.3 * 32767 * np.sin(2 * np.pi * np.cumsum(pitch) / SR))
  frames = np.zeros((total, 24, 8), np.uint8)
  rows = np.round((1 - height[::PER_FRAME]) / 2 * 20).astype(int)
  for f, r in enumerate(rows):
    frames[f, r : r + 4, 2:6] = 255
  first = (margin + offset_frames) * PER_FRAME
  return (
      frames[margin : margin + crop, ..., None],  # [L, H, W, 1]
      audio[first : first + crop * PER_FRAME].astype(np.int16),
  )


def test_pitch_reference_recovers_tone_height_offsets():
  videos, audios, labels = _every_offset(
      _tone_blob, np.random.default_rng(2), 1
  )
  scores = sync_reference.offset_scores(
      videos, audios, FPS, SR, OFFSETS, cue="pitch"
  )
  np.testing.assert_array_equal(np.argmax(scores, 1), labels)


def test_correlate_against_a_loop_over_the_overlap():
  rng = np.random.default_rng(3)
  v, a = rng.standard_normal((2, 30)), rng.standard_normal((2, 30))
  shifts = np.array([-7, 0, 4, 29])
  got = sync_reference.correlate(v, a, shifts)
  for n in range(2):
    for c, s in enumerate(shifts):
      pairs = [(v[n, f], a[n, f - s]) for f in range(30) if 0 <= f - s < 30]
      x, y = np.array(pairs).T
      want = np.corrcoef(x, y)[0, 1] if len(x) >= 2 else 0.0
      assert got[n, c] == pytest.approx(want, abs=1e-12), (n, s)


def test_correlate_features_as_one_centred_signal():
  """[N, L, D] features: every dimension centred over the overlap, then the
  cosine of the two centred blocks, written out per pair of frames."""
  rng = np.random.default_rng(4)
  v, a = rng.standard_normal((2, 20, 3)), rng.standard_normal((2, 20, 3))
  shifts = np.array([-5, 0, 3])
  got = sync_reference.correlate(v, a, shifts)
  for n in range(2):
    for c, s in enumerate(shifts):
      frames = [f for f in range(20) if 0 <= f - s < 20]
      x = np.array([v[n, f] for f in frames])
      y = np.array([a[n, f - s] for f in frames])
      x, y = x - x.mean(axis=0), y - y.mean(axis=0)
      want = np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y))
      assert got[n, c] == pytest.approx(want, abs=1e-12), (n, s)
  # D = 1 is the envelope case.
  np.testing.assert_allclose(
      sync_reference.correlate(v[..., :1], a[..., :1], shifts),
      sync_reference.correlate(v[..., 0], a[..., 0], shifts),
      atol=1e-12,
  )


def test_bad_inputs_are_named():
  video = np.zeros((2, 10, 4, 4), np.uint8)
  with pytest.raises(ValueError, match="unknown reference cue 'edges'"):
    sync_reference.offset_scores(
        video, np.zeros((2, 6400), np.int16), FPS, SR, OFFSETS, cue="edges"
    )
  with pytest.raises(ValueError, match=r"\[N, >= 6400\]"):
    sync_reference.offset_scores(
        video, np.zeros((2, 100), np.int16), FPS, SR, OFFSETS
    )
  with pytest.raises(ValueError, match="not a whole number"):
    sync_reference.offset_scores(
        video, np.zeros((2, 6400), np.int16), 30.0, SR, OFFSETS
    )
  with pytest.raises(ValueError, match="video must be"):
    sync_reference.offset_scores(
        np.zeros((2, 10), np.uint8),
        np.zeros((2, 6400), np.int16),
        FPS,
        SR,
        OFFSETS,
    )
