"""Audio files in: any wav libsndfile opens → mono int16 at a target rate.

Decisions recorded once for every reader of audio:

* Multichannel audio is averaged to mono before resampling.
* Float wavs are taken as full scale ±1.0, clipped, and scaled by 32768
  (so 16-bit PCM read as float round-trips exactly).
* Resampling is polyphase (``scipy.signal.resample_poly``, its default
  Kaiser(5.0) window), output length ``ceil(n * target / source)``.
* A wav whose chunks declare more bytes than the file holds is an error
  (libsndfile would silently return the samples that are there).
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

from avjax.data.io.errors import BadFileError

INT16_SCALE = 32768.0


def _to_int16(x: np.ndarray) -> np.ndarray:
  return np.clip(np.round(x * INT16_SCALE), -32768, 32767).astype(np.int16)


_UNKNOWN_SIZE = 0xFFFFFFFF  # Size field of a wav written as a stream.


def check_wav_complete(path: os.PathLike | str) -> None:
  """Checks that a RIFF/WAVE file holds every byte its chunks declare.

  libsndfile reads a truncated wav without complaint (it returns the
  samples that are there), so the chunk list is walked here: each chunk's
  declared size (padded to even) must fit in the file, and the ``data``
  chunk must be present. Files that are not RIFF/WAVE (RF64, AIFF, ...)
  and data chunks of unknown size (0xFFFFFFFF, streaming writers) are left
  to libsndfile.

  Raises:
    BadFileError: naming the file, the chunk, its declared size and the
      bytes present.
  """
  path = Path(path)
  file_size = path.stat().st_size
  with open(path, "rb") as f:
    header = f.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
      return
    offset = 12
    while offset + 8 <= file_size:
      f.seek(offset)
      chunk_id, size = f.read(4), int.from_bytes(f.read(4), "little")
      body = offset + 8
      if chunk_id == b"data":
        if size != _UNKNOWN_SIZE and body + size > file_size:
          raise BadFileError(
              path,
              f"truncated wav file (data chunk declares "
              f"{size} bytes, the file holds {file_size - body} "
              "bytes of it)",
          )
        return
      if body + size > file_size:
        raise BadFileError(
            path,
            f"truncated wav file ({chunk_id!r} chunk at byte "
            f"{offset} declares {size} bytes, the file holds "
            f"{file_size - body}; no data chunk)",
        )
      offset = body + size + (size & 1)
  raise BadFileError(
      path, f"truncated wav file (no data chunk in its " f"{file_size} bytes)"
  )


def read_wav(path: os.PathLike | str, target_rate: int = 16000) -> np.ndarray:
  """Reads a wav file as mono int16 samples at ``target_rate`` Hz.

  Args:
    path: wav file (any PCM/float subtype libsndfile opens).
    target_rate: output sample rate in Hz.

  Returns:
    int16 array [T]; multichannel input is averaged, other rates are
    resampled with a polyphase filter (T = ceil(n * target_rate / rate)).

  Raises:
    BadFileError: missing file, unreadable/garbage file, a truncated file
      (fewer bytes than its chunks declare), or zero samples.
  """
  path = Path(path)
  if not path.is_file():
    raise BadFileError(path, "missing wav file")
  check_wav_complete(path)
  try:
    data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
  except (RuntimeError, ValueError, EOFError) as err:
    raise BadFileError(path, f"unreadable wav file ({err})") from err
  if data.shape[0] == 0:
    raise BadFileError(path, "empty wav file (0 samples)")
  mono = data.mean(axis=1)
  if rate != target_rate:
    g = math.gcd(int(rate), int(target_rate))
    mono = signal.resample_poly(mono, target_rate // g, int(rate) // g)
  return _to_int16(mono)


@functools.lru_cache(maxsize=8)
def _resample_filter(up: int, down: int) -> np.ndarray:
  """resample_poly's default Kaiser(5.0) low-pass, designed once per ratio."""
  max_rate = max(up, down)
  taps = signal.firwin(
      2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)
  )
  taps.setflags(write=False)
  return taps


def resample(
    samples: np.ndarray, source_rate: int, target_rate: int
) -> np.ndarray:
  """Polyphase resampling of int16 audio [T]; returns int16 (clipped)."""
  if source_rate == target_rate or samples.size == 0:
    return samples.astype(np.int16, copy=True)
  g = math.gcd(source_rate, target_rate)
  up, down = target_rate // g, source_rate // g
  out = signal.resample_poly(
      samples.astype(np.float64), up, down, window=_resample_filter(up, down)
  )
  return np.clip(np.round(out), -32768, 32767).astype(np.int16)
