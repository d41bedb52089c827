"""Tests of avjax.data.builders.av_digits.speech (espeak-ng synthesis through ctypes)."""

import concurrent.futures
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from avjax.data.builders.av_digits import speech
from avjax.data.io import audio as audio_io


def test_synthesize_returns_16khz_int16_speech():
  audio = speech.synthesize("seven", "en", rate=175, pitch=50)
  assert audio.dtype == np.int16 and audio.ndim == 1
  # "seven" at 175 wpm lasts a few tenths of a second.
  assert 0.2 * speech.SAMPLE_RATE < audio.size < 1.0 * speech.SAMPLE_RATE
  assert np.abs(audio.astype(np.int32)).max() > 3000
  # Trimmed: shorter than the raw output, and sound within 2 ms of each end.
  raw = speech.synthesize("seven", "en", rate=175, pitch=50, trim=False)
  assert audio.size < raw.size
  edge = int(0.002 * speech.SAMPLE_RATE)
  assert np.abs(audio[:edge]).max() > 64 and np.abs(audio[-edge:]).max() > 64


def test_synthesize_is_pure_despite_history():
  first = speech.synthesize("seven", "en+f3", 170, 60, seed=3)
  speech.synthesize("three one four", "en-us", 200, 20, seed=9)
  speech.synthesize("nine", "en+klatt", 140, 80)
  again = speech.synthesize("seven", "en+f3", 170, 60, seed=3)
  np.testing.assert_array_equal(first, again)


def test_seed_changes_breathy_voice_only_slightly():
  a = speech.synthesize("seven", "en+f3", 170, 60, seed=1)
  b = speech.synthesize("seven", "en+f3", 170, 60, seed=2)
  assert a.shape == b.shape
  assert not np.array_equal(a, b)
  # Same utterance: the waveforms stay strongly correlated.
  assert np.corrcoef(a.astype(float), b.astype(float))[0, 1] > 0.9


def test_synthesize_is_identical_in_a_fresh_process():
  here = speech.synthesize("four two", "en-us+f4", 180, 55, seed=11)
  code = (
      "import hashlib; from avjax.data.builders.av_digits import speech; "
      "a = speech.synthesize('four two', 'en-us+f4', 180, 55, seed=11); "
      "print(hashlib.sha256(a.tobytes()).hexdigest())"
  )
  out = subprocess.run(
      [sys.executable, "-c", code], capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == hashlib.sha256(here.tobytes()).hexdigest()


def test_concurrent_calls_match_serial_calls():
  texts = [
      f"{w} {v}" for w in ("one", "two", "three") for v in ("six", "eight")
  ]
  serial = [speech.synthesize(t, "en-gb-x-rp", 160, 45) for t in texts]
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    threaded = list(
        pool.map(lambda t: speech.synthesize(t, "en-gb-x-rp", 160, 45), texts)
    )
  for s, t in zip(serial, threaded):
    np.testing.assert_array_equal(s, t)


def test_voice_settings_are_distinct_speakers():
  assert len(speech.VOICE_SETTINGS) >= 8
  assert len({(s.voice, s.rate, s.pitch) for s in speech.VOICE_SETTINGS}) == (
      len(speech.VOICE_SETTINGS)
  )
  lengths = set()
  for setting in speech.VOICE_SETTINGS:
    audio = speech.synthesize_setting("five", setting)
    assert audio.size > 0.15 * speech.SAMPLE_RATE, setting
    lengths.add(audio.size)
  assert len(lengths) >= len(speech.VOICE_SETTINGS) // 2


def test_slower_rate_gives_longer_audio():
  slow = speech.synthesize("three one four", "en", rate=120)
  fast = speech.synthesize("three one four", "en", rate=240)
  assert slow.size > 1.5 * fast.size


@pytest.mark.parametrize(
    "voice, message",
    [
        ("xx-nonexistent", "unknown espeak-ng voice 'xx-nonexistent'"),
        ("en+nosuchvariant", "unknown espeak-ng voice variant 'nosuchvariant'"),
        ("", "voice must be a non-empty string"),
    ],
)
def test_unknown_voice_is_named(voice, message):
  with pytest.raises(ValueError, match=message):
    speech.synthesize("one", voice)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": ""}, "text must be a non-empty string"),
        ({"text": "one", "rate": 10}, "rate 10 outside"),
        ({"text": "one", "pitch": 150}, "pitch 150 outside"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    speech.synthesize(**kwargs)


def test_missing_library_gives_clear_error(monkeypatch, tmp_path):
  bogus = tmp_path / "libespeak-ng.so"
  bogus.write_bytes(b"not a shared library")
  monkeypatch.setattr(speech, "_library_path", lambda: str(bogus))
  engine = speech._Engine(slot=99)  # pylint: disable=protected-access
  with pytest.raises(RuntimeError, match="could not load the espeak-ng"):
    engine.speak("one", "en", 175, 50, 0)


def test_resample_keeps_frequency_and_duration():
  t = np.arange(22050) / 22050
  tone = (10000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
  out = audio_io.resample(tone, 22050, 16000)
  assert out.dtype == np.int16 and out.size == 16000
  spectrum = np.abs(np.fft.rfft(out.astype(float)))
  assert np.argmax(spectrum) == 1000  # 1 s of audio: bin k is k Hz
  np.testing.assert_allclose(np.abs(out[1000:15000]).max(), 10000, rtol=0.02)


def test_trim_silence():
  x = np.array([0, 3, -10, 500, -700, 20, 0, 0], np.int16)
  np.testing.assert_array_equal(
      speech.trim_silence(x, threshold=64), [500, -700]
  )
  assert speech.trim_silence(np.zeros(5, np.int16)).size == 0
