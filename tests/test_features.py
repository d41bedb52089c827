"""Tests of avjax.data.pipeline.features (log-mel, masks, image transforms)."""

import pickle

import librosa
import numpy as np
import pytest

from avjax.data.pipeline import features


def _librosa_log_mel(
    x,
    sr=16000,
    n_fft=512,
    win_length=400,
    hop_length=160,
    n_mels=40,
    fmin=20.0,
    fmax=8000.0,
):
  mel = librosa.feature.melspectrogram(
      y=x,
      sr=sr,
      n_fft=n_fft,
      hop_length=hop_length,
      win_length=win_length,
      window="hann",
      center=True,
      pad_mode="constant",
      power=2.0,
      n_mels=n_mels,
      fmin=fmin,
      fmax=fmax,
  )
  return np.log(mel + 1e-6).T


@pytest.fixture(name="waves")
def fixture_waves():
  rng = np.random.default_rng(0)
  t = np.arange(16000) / 16000
  tone = 8000 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)
  noise = rng.normal(0, 3000, 16000)
  return np.stack([tone, noise, tone + noise]).astype(np.int16)


def test_log_mel_matches_librosa(waves):
  ours = features.log_mel(waves)
  assert ours.shape == (3, 101, 40) and ours.dtype == np.float32
  for row, x in zip(ours, waves):
    ref = _librosa_log_mel(x.astype(np.float32) / 32768)
    np.testing.assert_allclose(row, ref, atol=1e-4, rtol=1e-4)


def test_log_mel_matches_librosa_other_parameters(waves):
  params = dict(
      sample_rate=16000,
      n_fft=1024,
      win_length=400,
      hop_length=160,
      n_mels=128,
      fmin=0.0,
      fmax=8000.0,
  )
  ours = features.log_mel(waves[2], **params)
  sr = params.pop("sample_rate")
  ref = _librosa_log_mel(waves[2].astype(np.float32) / 32768, sr=sr, **params)
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)


def test_log_mel_accepts_float_and_leading_axes(waves):
  as_float = waves.astype(np.float32) / 32768
  np.testing.assert_allclose(
      features.log_mel(as_float), features.log_mel(waves), atol=1e-6
  )
  stacked = np.stack([waves, waves[::-1]])  # [2, 3, N]
  out = features.log_mel(stacked)
  assert out.shape == (2, 3, 101, 40)
  np.testing.assert_allclose(out[1, 0], features.log_mel(waves[2]), atol=1e-6)


def test_log_mel_chunking_does_not_change_values(waves, monkeypatch):
  whole = features.log_mel(waves)
  monkeypatch.setattr(features, "_STFT_CHUNK_BYTES", 1)  # one row a chunk
  np.testing.assert_allclose(
      features.log_mel(waves), whole, rtol=1e-6, atol=1e-6
  )


def test_padding_leaves_valid_frames_unchanged(waves):
  length = 12345
  padded = waves[1].copy()
  padded[length:] = 0
  n = features.num_frames(length)
  assert n == 1 + length // 160
  np.testing.assert_allclose(
      features.log_mel(padded)[:n],
      features.log_mel(waves[1][:length]),
      atol=1e-5,
  )


def test_num_frames_and_frame_mask():
  assert features.num_frames(16000) == 101
  np.testing.assert_array_equal(
      features.num_frames(np.array([0, 159, 160, 56000])), [1, 1, 2, 351]
  )
  mask = features.frame_mask(np.array([16000, 800, 0]), 101)
  assert mask.shape == (3, 101) and mask.dtype == bool
  np.testing.assert_array_equal(mask.sum(1), [101, 6, 1])
  assert mask[1, :6].all() and not mask[1, 6:].any()
  with pytest.raises(ValueError, match="lengths must be \\[B\\]"):
    features.frame_mask(np.zeros((2, 2), int), 10)


def test_power_spectrogram_of_a_tone_peaks_at_its_bin():
  t = np.arange(16000) / 16000
  tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
  power = features.power_spectrogram(tone, n_fft=512, win_length=512)
  assert power.shape == (101, 257)
  assert np.all(np.argmax(power[5:-5], axis=-1) == 32)  # 1000 Hz / 31.25 Hz


def test_mel_filterbank_is_cached_and_checked():
  a = features.mel_filterbank(16000, 512, 40, 20.0, 8000.0)
  assert a is features.mel_filterbank(16000, 512, 40, 20.0, 8000.0)
  assert a.shape == (40, 257) and not a.flags.writeable
  with pytest.raises(ValueError, match="Nyquist"):
    features.mel_filterbank(16000, 512, 40, 20.0, 9000.0)


def test_waveform_dtype_is_checked():
  with pytest.raises(ValueError, match="integer or float"):
    features.log_mel(np.array([True, False]))
  with pytest.raises(ValueError, match="N>0"):
    features.log_mel(np.zeros((2, 0), np.int16))


def test_image_to_float():
  images = np.array([[[0, 255], [51, 102]]], np.uint8)
  out = features.image_to_float(images)
  assert out.shape == (1, 2, 2, 1) and out.dtype == np.float32
  np.testing.assert_allclose(out[0, :, :, 0], [[0, 1], [0.2, 0.4]])
  rgb = np.zeros((2, 4, 4, 3), np.uint8)
  assert features.image_to_float(rgb).shape == (2, 4, 4, 3)
  with pytest.raises(ValueError, match="uint8"):
    features.image_to_float(images.astype(np.float32))
  with pytest.raises(ValueError, match="\\[B, H, W\\]"):
    features.image_to_float(np.zeros((4, 4), np.uint8))


def test_pad_or_crop():
  x = np.arange(6).reshape(2, 3)
  np.testing.assert_array_equal(
      features.pad_or_crop(x, 5), [[0, 1, 2, 0, 0], [3, 4, 5, 0, 0]]
  )
  np.testing.assert_array_equal(features.pad_or_crop(x, 2), [[0, 1], [3, 4]])


def _raw_batch(lengths, n=16000):
  b = len(lengths)
  rng = np.random.default_rng(1)
  audio = rng.integers(-2000, 2000, (b, n)).astype(np.int16)
  for i, length in enumerate(lengths):
    audio[i, length:] = 0
  return {
      "audio": audio,
      "audio_length": np.array(lengths, np.int64),
      "image": rng.integers(0, 256, (b, 32, 32)).astype(np.uint8),
      "label": np.arange(b, dtype=np.int64),
      "caption": np.array([b"one two", b"three"][:b]),
  }


def test_pairs_features_batch():
  batch = _raw_batch([16000, 16000])
  out = features.PairsFeatures()(batch)
  assert set(out) == {"audio", "audio_length", "image", "label"}
  assert out["audio"].shape == (2, 101, 40)
  assert out["audio"].dtype == np.float32
  assert out["image"].shape == (2, 32, 32, 1)
  assert out["label"].dtype == np.int32
  np.testing.assert_allclose(out["audio"], features.log_mel(batch["audio"]))


def test_captions_features_mask_and_text():
  batch = _raw_batch([16000, 4000])
  out = features.CaptionsFeatures(keep_text=True).map(batch)
  np.testing.assert_array_equal(out["audio_mask"].sum(1), [101, 26])
  assert list(out["caption"]) == ["one two", "three"]
  dropped = features.CaptionsFeatures()(batch)
  assert "caption" not in dropped
  as_objects = dict(batch, caption=np.array([b"one two", "three"], object))
  kept = features.CaptionsFeatures(keep_text=True)(as_objects)
  assert list(kept["caption"]) == ["one two", "three"]


def test_mask_needs_lengths():
  batch = _raw_batch([16000])
  del batch["audio_length"]
  with pytest.raises(ValueError, match="audio_length"):
    features.CaptionsFeatures()(batch)


def test_custom_mel_spec_and_pickling():
  transform = features.BatchFeatures(
      features.MelSpec(n_mels=64, hop_length=320)
  )
  clone = pickle.loads(pickle.dumps(transform))
  out = clone(_raw_batch([16000]))
  assert out["audio"].shape == (1, 51, 64)
