"""Audio and image feature transforms in NumPy, vectorised over a batch.

Log-mel spectrogram: `log(mel_power + 1e-6)` where `mel_power` is librosa's
`melspectrogram` with the same parameters: centre-padded (with zeros) STFT
with a periodic Hann window of `win_length` samples zero-padded to `n_fft`,
power 2, Slaney-normalised mel filterbank from `librosa.filters.mel`.
Integer waveforms are scaled to [-1, 1) by 1 / 2^(bits - 1).

Variable-length audio: with zero padding after `length` valid samples, the
first `num_frames(length)` frames of the padded waveform equal the frames of
the unpadded one (the centre padding is zeros too), so `frame_mask` marks
exactly those frames valid.

Batch transforms (`BatchFeatures` and its `PairsFeatures` /
`CaptionsFeatures` presets) are `grain.transforms.Map`s applied after
`.batch(...)`: one call per batch, no per-example Python.
"""

from __future__ import annotations

import dataclasses
import functools

import grain
import numpy as np
import scipy.fft

# Bounds the [rows, T, n_fft] float32 frame buffer of one STFT chunk.
_STFT_CHUNK_BYTES = 32 * 2**20


@dataclasses.dataclass(frozen=True)
class MelSpec:
  """Parameters of `log_mel` (units: Hz and samples)."""

  sample_rate: int = 16_000
  n_fft: int = 512
  win_length: int = 400
  hop_length: int = 160
  n_mels: int = 40
  fmin: float = 20.0
  fmax: float = 8_000.0


@functools.lru_cache(maxsize=16)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
  """librosa's Slaney mel filterbank, float32 [n_mels, n_fft // 2 + 1]."""
  if fmax > sample_rate / 2:
    raise ValueError(
        f"fmax {fmax} Hz above the Nyquist frequency {sample_rate / 2} Hz"
    )
  import librosa  # pylint: disable=import-outside-toplevel

  bank = librosa.filters.mel(
      sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax
  ).astype(np.float32)
  bank.setflags(write=False)
  return bank


@functools.lru_cache(maxsize=16)
def stft_window(n_fft: int, win_length: int) -> np.ndarray:
  """Periodic Hann window of win_length, centred in float32 [n_fft]."""
  if not 0 < win_length <= n_fft:
    raise ValueError(
        f"need 0 < win_length <= n_fft, got {win_length}, " f"{n_fft}"
    )
  n = np.arange(win_length)
  hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
  window = np.zeros((n_fft,), np.float32)
  start = (n_fft - win_length) // 2
  window[start : start + win_length] = hann
  window.setflags(write=False)
  return window


def num_frames(num_samples, hop_length: int = 160):
  """Frames of a centred STFT of `num_samples` samples: 1 + N // hop.

  Works on ints and on integer arrays (elementwise).
  """
  if isinstance(num_samples, np.ndarray):
    return 1 + num_samples // hop_length
  return 1 + int(num_samples) // hop_length


def frame_mask(
    lengths: np.ndarray, total_frames: int, hop_length: int = 160
) -> np.ndarray:
  """Valid-frame mask of zero-padded audio.

  Args:
    lengths: int [B] valid samples per waveform.
    total_frames: T, frames of the padded waveforms.
    hop_length: STFT hop in samples.

  Returns:
    bool [B, T]; frame t of row b is valid iff t < num_frames(lengths[b]).
  """
  lengths = np.asarray(lengths)
  if lengths.ndim != 1:
    raise ValueError(f"lengths must be [B], got shape {lengths.shape}")
  valid = np.minimum(
      num_frames(lengths.astype(np.int64), hop_length), total_frames
  )
  return np.arange(total_frames)[None, :] < valid[:, None]


def to_float_waveform(waveform: np.ndarray) -> np.ndarray:
  """int16/int32 -> float32 in [-1, 1); floats -> float32 unchanged."""
  waveform = np.asarray(waveform)
  if np.issubdtype(waveform.dtype, np.integer):
    scale = float(np.iinfo(waveform.dtype).max) + 1.0
    return waveform.astype(np.float32) / np.float32(scale)
  if np.issubdtype(waveform.dtype, np.floating):
    return waveform.astype(np.float32, copy=False)
  raise ValueError(f"waveform must be integer or float, got {waveform.dtype}")


def _frame_rows(waveform: np.ndarray, n_fft: int, hop_length: int):
  """Float rows [R, N + 2 * (n_fft // 2)] (centre zero-padded), lead shape."""
  x = to_float_waveform(waveform)
  if x.ndim < 1 or x.shape[-1] < 1:
    raise ValueError(f"waveform must be [..., N>0], got shape {x.shape}")
  pad = n_fft // 2
  rows = np.pad(x.reshape(-1, x.shape[-1]), ((0, 0), (pad, pad)))
  frames_total = 1 + (rows.shape[-1] - n_fft) // hop_length
  return rows, x.shape[:-1], frames_total


def _power_chunks(
    rows: np.ndarray,
    frames_total: int,
    n_fft: int,
    win_length: int,
    hop_length: int,
):
  """Yields (start, power float32 [r, T, n_fft // 2 + 1]) over row chunks."""
  window = stft_window(n_fft, win_length)
  chunk = max(1, _STFT_CHUNK_BYTES // (frames_total * n_fft * 4))
  for start in range(0, rows.shape[0], chunk):
    frames = np.lib.stride_tricks.sliding_window_view(
        rows[start : start + chunk], n_fft, axis=-1
    )[:, ::hop_length]
    spectrum = scipy.fft.rfft(frames * window, axis=-1)
    yield start, spectrum.real**2 + spectrum.imag**2


def power_spectrogram(
    waveform: np.ndarray,
    n_fft: int = 512,
    win_length: int = 400,
    hop_length: int = 160,
) -> np.ndarray:
  """|STFT|^2 of centred, zero-padded frames.

  Args:
    waveform: [..., N] int or float samples (ints scaled to [-1, 1)).

  Returns:
    float32 [..., num_frames(N), n_fft // 2 + 1].
  """
  rows, lead_shape, frames_total = _frame_rows(waveform, n_fft, hop_length)
  out = np.empty((rows.shape[0], frames_total, n_fft // 2 + 1), np.float32)
  for start, power in _power_chunks(
      rows, frames_total, n_fft, win_length, hop_length
  ):
    out[start : start + len(power)] = power
  return out.reshape(lead_shape + out.shape[1:])


def log_mel(
    waveform: np.ndarray,
    sample_rate: int = 16_000,
    n_fft: int = 512,
    win_length: int = 400,
    hop_length: int = 160,
    n_mels: int = 40,
    fmin: float = 20.0,
    fmax: float = 8_000.0,
) -> np.ndarray:
  """Log-mel spectrogram (see the module docstring for the definition).

  Args:
    waveform: [..., N] int16 (scaled to [-1, 1)) or float samples.
    sample_rate .. fmax: STFT and filterbank parameters (Hz, samples).

  Returns:
    float32 [..., num_frames(N, hop_length), n_mels].
  """
  bank_t = mel_filterbank(
      sample_rate, n_fft, n_mels, float(fmin), float(fmax)
  ).T
  rows, lead_shape, frames_total = _frame_rows(waveform, n_fft, hop_length)
  out = np.empty((rows.shape[0], frames_total, n_mels), np.float32)
  for start, power in _power_chunks(
      rows, frames_total, n_fft, win_length, hop_length
  ):
    # A 2-D product: NumPy's stacked (3-D) matmul is far slower here.
    mel = power.reshape(-1, power.shape[-1]) @ bank_t
    out[start : start + len(power)] = mel.reshape(power.shape[:2] + (n_mels,))
  np.log(out + np.float32(1e-6), out=out)
  return out.reshape(lead_shape + out.shape[1:])


def image_to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [B, H, W] or [B, H, W, C] -> float32 [B, H, W, C] in [0, 1]."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(f"images must be uint8, got {images.dtype}")
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4:
    raise ValueError(
        f"images must be [B, H, W] or [B, H, W, C], got {images.shape}"
    )
  return images.astype(np.float32) * np.float32(1.0 / 255.0)


def pad_or_crop(waveforms: np.ndarray, length: int) -> np.ndarray:
  """Zero-pads or crops the last axis of [..., N] to [..., length]."""
  waveforms = np.asarray(waveforms)
  n = waveforms.shape[-1]
  if n >= length:
    return waveforms[..., :length]
  pad = [(0, 0)] * (waveforms.ndim - 1) + [(0, length - n)]
  return np.pad(waveforms, pad)


def _is_text(values: np.ndarray) -> bool:
  return values.dtype.kind in ("S", "U", "O")


def _to_str(values: np.ndarray) -> np.ndarray:
  """bytes / str / object arrays -> str array (UTF-8 decoded)."""
  if values.dtype.kind == "S":
    return np.char.decode(values, "utf-8")
  if values.dtype.kind == "O":
    flat = [
        v.decode("utf-8") if isinstance(v, bytes) else str(v)
        for v in values.ravel()
    ]
    return np.array(flat, dtype=np.str_).reshape(values.shape)
  return values


class BatchFeatures(grain.transforms.Map):
  """Turns a batch of raw records into model inputs (one call per batch).

  Input: dict of numpy arrays with a leading batch axis B, e.g. a batch of
  av_digits records. Output keys:
    `audio_key`: float32 [B, T, n_mels] log-mel of the int16 waveform;
    "audio_mask": bool [B, T] (only when `audio_mask=True`; needs
      `length_key`);
    `image_key`: float32 [B, H, W, C] in [0, 1];
    other integer arrays: int32; float arrays: float32; bool unchanged;
    text arrays (bytes/str): dropped, or kept as str arrays with
      `keep_text=True` (they cannot go to an accelerator).
  """

  def __init__(
      self,
      mel: MelSpec = MelSpec(),
      audio_mask: bool = False,
      audio_key: str = "audio",
      image_key: str = "image",
      length_key: str = "audio_length",
      keep_text: bool = False,
  ):
    self.mel = mel
    self.audio_mask = audio_mask
    self.audio_key = audio_key
    self.image_key = image_key
    self.length_key = length_key
    self.keep_text = keep_text

  def map(self, element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    batch = element
    out = {}
    for key, values in batch.items():
      values = np.asarray(values)
      if key == self.audio_key:
        out[key] = log_mel(values, **dataclasses.asdict(self.mel))
      elif key == self.image_key:
        out[key] = image_to_float(values)
      elif _is_text(values):
        if self.keep_text:
          out[key] = _to_str(values)
      elif np.issubdtype(values.dtype, np.integer):
        out[key] = values.astype(np.int32)
      elif np.issubdtype(values.dtype, np.floating):
        out[key] = values.astype(np.float32)
      else:
        out[key] = values
    if self.audio_mask:
      if self.length_key not in batch or self.audio_key not in batch:
        raise ValueError(
            f"audio_mask needs keys {self.audio_key!r} and "
            f"{self.length_key!r}; batch has {sorted(batch)}"
        )
      out["audio_mask"] = frame_mask(
          batch[self.length_key],
          out[self.audio_key].shape[-2],
          self.mel.hop_length,
      )
    return out

  def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return self.map(batch)


class PairsFeatures(BatchFeatures):
  """`BatchFeatures` for av_digits/pairs: fixed 1 s audio, no mask."""

  def __init__(self, mel: MelSpec = MelSpec()):
    super().__init__(mel=mel, audio_mask=False)


class CaptionsFeatures(BatchFeatures):
  """`BatchFeatures` for av_digits/captions: padded audio + "audio_mask"."""

  def __init__(self, mel: MelSpec = MelSpec(), keep_text: bool = False):
    super().__init__(mel=mel, audio_mask=True, keep_text=keep_text)
