"""Recording conditions of AV-digits clips: voice jitter, noise, gain, padding.

Decisions (not given by any paper; they define this synthetic set):
- Speaker: one of `speech.VOICE_SETTINGS`, with the rate scaled by
  U(0.9, 1.1) and the pitch shifted by an integer in [-8, 8]. The rate is
  then raised by 0-2 to the next value congruent to the split's index mod 3,
  so no two splits ever use the same (text, voice, rate, pitch): since
  synthesis is a pure function of those, no recording is shared between
  splits.
- Noise: white Gaussian noise over the clip's valid part at a signal-to-noise
  ratio drawn from U(20, 40) dB, measured against the speech's mean power.
- Gain: the mixture is scaled so its peak is U(0.3, 0.9) of int16 full scale.
- Samples after the valid part are exact zeros (padding).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from avjax.data.builders.av_digits import speech

SNR_DB_RANGE = (20.0, 40.0)
PEAK_RANGE = (0.3, 0.9)
RATE_JITTER = (0.9, 1.1)
PITCH_JITTER = 8
NUM_SPLIT_RESIDUES = 3


@dataclasses.dataclass(frozen=True)
class Speaker:
  """Concrete synthesis parameters of one recording."""

  voice_index: int  # index into speech.VOICE_SETTINGS
  voice: str
  rate: int
  pitch: int
  seed: int  # espeak-ng breath-noise seed


def draw_speaker(
    rng: np.random.Generator,
    split_index: int,
    voices: Sequence[int] | None = None,
) -> Speaker:
  """Draws a jittered speaker for a recording of split `split_index`.

  `voices` restricts the draw to those indices of `speech.VOICE_SETTINGS`
  (default: all of them, uniformly).
  """
  if not 0 <= split_index < NUM_SPLIT_RESIDUES:
    raise ValueError(
        f"split_index must be in [0, {NUM_SPLIT_RESIDUES}), got "
        f"{split_index}"
    )
  if voices is None:
    voice_index = int(rng.integers(len(speech.VOICE_SETTINGS)))
  else:
    bad = [v for v in voices if not 0 <= v < len(speech.VOICE_SETTINGS)]
    if not voices or bad:
      raise ValueError(
          f"voices must be a non-empty list of indices into "
          f"speech.VOICE_SETTINGS (0-{len(speech.VOICE_SETTINGS) - 1}); "
          f"got {list(voices)}"
      )
    voice_index = int(voices[int(rng.integers(len(voices)))])
  setting = speech.VOICE_SETTINGS[voice_index]
  rate = int(round(setting.rate * rng.uniform(*RATE_JITTER)))
  rate += (split_index - rate) % NUM_SPLIT_RESIDUES
  if rate > speech.MAX_RATE:
    rate -= NUM_SPLIT_RESIDUES
  pitch = int(
      np.clip(
          setting.pitch + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1),
          speech.MIN_PITCH,
          speech.MAX_PITCH,
      )
  )
  seed = int(rng.integers(2**31 - 1))
  return Speaker(voice_index, setting.voice, rate, pitch, seed)


def speak(text: str, speaker: Speaker) -> np.ndarray:
  """Speaks `text` as `speaker`: int16 [N] at 16 kHz, silence trimmed."""
  return speech.synthesize(
      text,
      speaker.voice,
      speaker.rate,
      speaker.pitch,
      seed=speaker.seed,
      trim=True,
  )


def render_clip(
    utterance: np.ndarray,
    offset: int,
    valid_length: int,
    padded_length: int,
    rng: np.random.Generator,
    snr_db_range: tuple[float, float] = SNR_DB_RANGE,
) -> np.ndarray:
  """Places an utterance in a noisy, gain-scaled, zero-padded clip.

  Args:
    utterance: int16 [M] speech; cropped if it does not fit.
    offset: first sample of the utterance inside the clip.
    valid_length: samples of the clip that carry signal (speech + noise).
    padded_length: total samples; the tail after `valid_length` is zero.
    rng: draws the SNR, the noise and the peak level.
    snr_db_range: (low, high) of the uniform signal-to-noise ratio in dB.

  Returns:
    int16 [padded_length].
  """
  if not 0 < valid_length <= padded_length:
    raise ValueError(
        f"need 0 < valid_length <= padded_length, got {valid_length}, "
        f"{padded_length}"
    )
  if not 0 <= offset < valid_length:
    raise ValueError(f"offset {offset} outside [0, {valid_length})")
  speech_part = utterance[: valid_length - offset].astype(np.float64)
  if speech_part.size == 0:
    raise ValueError("empty utterance")
  mixture = np.zeros((valid_length,), np.float64)
  mixture[offset : offset + speech_part.size] = speech_part
  snr_db = rng.uniform(*snr_db_range)
  speech_power = max(float(np.mean(speech_part**2)), 1.0)
  noise_std = np.sqrt(speech_power / 10.0 ** (snr_db / 10.0))
  mixture += rng.normal(0.0, noise_std, size=valid_length)
  peak = rng.uniform(*PEAK_RANGE) * 32767.0
  mixture *= peak / max(float(np.max(np.abs(mixture))), 1e-9)
  clip = np.zeros((padded_length,), np.int16)
  clip[:valid_length] = np.clip(np.round(mixture), -32768, 32767)
  return clip
