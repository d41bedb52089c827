"""A user's audio, image or video as a record of the training dataset.

The datasets store what the builders produced at generation time: 16 kHz
int16 waveforms of a fixed length, uint8 grey or RGB images of one size,
videos of a fixed frame count. Everything after that (log-mel, scaling to
[0, 1], masks, tokenisation) happens in the methods' batch transforms,
which inference calls unchanged. This module does the build-time steps for
a user's input, with the functions the builders use:

* audio: down-mixed to mono (the channel mean), to int16, resampled with
  ``avjax.data.builders.av_digits.speech.resample`` (the builders' resampler) to the dataset's
  rate, then cropped or zero-padded with ``features.pad_or_crop`` to the
  dataset's stored length; the valid length is kept for masks;
* images: to grey (ITU-R 601 luma, Pillow's "L") when the dataset is grey,
  then resized with ``digits.resize_grey`` (the builders' bicubic resize)
  or, for RGB datasets, Pillow's bicubic resize per image;
* videos: frames sampled with ``msrvtt.sample_frames`` (the MSR-VTT
  builder's uniform sampling), each frame treated as an image above.

An input already in the dataset's format (an int16 waveform at its rate and
length, a uint8 image of its size and mode) passes through unchanged, so
inference on the dataset's own records gives exactly the evaluation's
embeddings.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np

from avjax.data.builders.av_digits import digits as digits_lib
from avjax.data.builders.av_digits import speech
from avjax.data.io import audio as audio_io
from avjax.data.pipeline import features as features_lib
from avjax.data.pipeline import sources
from avjax.inference.readers import UnreadableFileError

# Smallest image side accepted: the source digits are 8x8; anything smaller
# holds no content a model trained on them could use.
MIN_IMAGE_SIDE = 4
# Shortest audio accepted: one STFT hop at 16 kHz (10 ms).
MIN_AUDIO_SECONDS = 0.01


@dataclasses.dataclass(frozen=True)
class RecordSpec:
  """Shapes of the training dataset's records (from its tfds features).

  Attributes:
    dataset: config.data.name, for messages.
    sample_rate: Hz of the stored audio.
    audio_samples: stored waveform length (None: variable).
    image_size: (H, W) of stored images, or None.
    image_channels: 1 (grey, stored [H, W]) or 3 (RGB).
    video_frames: frames per stored video, or None (variable / none).
    video_size: (H, W) of stored video frames, or None.
    video_channels: 1 (grey) or 3.
  """

  dataset: str
  sample_rate: int = speech.SAMPLE_RATE
  audio_samples: int | None = None
  image_size: tuple[int, int] | None = None
  image_channels: int = 1
  video_frames: int | None = None
  video_size: tuple[int, int] | None = None
  video_channels: int = 1


def _spatial(shape: tuple[Any, ...]) -> tuple[tuple[int, int] | None, int]:
  """(H, W) and channels of an image feature shape [H, W] or [H, W, C]."""
  hw = shape[:2]
  size = None if None in hw else (int(hw[0]), int(hw[1]))
  return size, (int(shape[2]) if len(shape) == 3 else 1)


@functools.lru_cache(maxsize=16)
def _feature_spec(name: str, data_dir: str | None) -> dict[str, Any]:
  builder = sources.get_builder(name, data_dir=data_dir, prepare=False)
  return sources.read_feature_spec(builder)


def record_spec(data_cfg: Any) -> RecordSpec:
  """The record shapes of ``config.data``'s dataset (nothing is prepared).

  ``config.data.max_audio_seconds`` (CMD on real datasets), when set,
  fixes the audio length as the method's source does.
  """
  spec = _feature_spec(data_cfg.name, data_cfg.get("data_dir"))
  rate = int(data_cfg.get("sample_rate") or speech.SAMPLE_RATE)
  kwargs: dict[str, Any] = {"dataset": data_cfg.name, "sample_rate": rate}
  if "audio" in spec and len(spec["audio"][0]) == 1:
    kwargs["audio_samples"] = spec["audio"][0][0]
  seconds = data_cfg.get("max_audio_seconds")
  if seconds:
    kwargs["audio_samples"] = int(round(seconds * rate))
  if "image" in spec and len(spec["image"][0]) in (2, 3):
    kwargs["image_size"], kwargs["image_channels"] = _spatial(spec["image"][0])
  video_key = "video" if "video" in spec else "frames"
  if video_key in spec and len(spec[video_key][0]) in (3, 4):
    shape = spec[video_key][0]
    kwargs["video_frames"] = shape[0]
    kwargs["video_size"], kwargs["video_channels"] = _spatial(shape[1:])
  return RecordSpec(**kwargs)


def _integer_to_unit(samples: np.ndarray) -> np.ndarray:
  """Integer PCM -> float64 in [-1, 1): signed x / 2^(bits-1); unsigned
  (WAV's 8-bit format) centred first, (x - 2^(bits-1)) / 2^(bits-1)."""
  half = 2.0 ** (np.iinfo(samples.dtype).bits - 1)
  if np.issubdtype(samples.dtype, np.signedinteger):
    return samples.astype(np.float64) / half
  return (samples.astype(np.float64) - half) / half


# A float waveform peaking above this is integer-scaled, not [-1, 1] with
# some overshoot (which is clipped, as the builders' conversion does).
MAX_FLOAT_PEAK = 2.0


def to_int16(samples: np.ndarray) -> np.ndarray:
  """float [..] in [-1, 1] -> int16 (x 32768, rounded, clipped); ints as is.

  The inverse of ``features.to_float_waveform`` on int16, so an int16 file
  read as float comes back bit-exact. Other integer types are rescaled to
  16 bits; unsigned ones (8-bit WAV) are centred on their midpoint first.
  """
  samples = np.asarray(samples)
  if samples.dtype == np.int16:
    return samples
  if np.issubdtype(samples.dtype, np.integer):
    samples = _integer_to_unit(samples)
  return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def _check_waveform(samples: np.ndarray, sample_rate: Any, name: str) -> int:
  """The sample rate as a positive int; errors name the input."""
  try:
    rate = float(sample_rate)
  except (TypeError, ValueError):
    rate = float("nan")
  if not (np.isfinite(rate) and rate > 0 and rate == int(rate)):
    raise UnreadableFileError(
        name,
        f"sample rate must be a positive whole number of Hz, got "
        f"{sample_rate!r}",
    )
  if samples.dtype.kind == "f":
    if not np.all(np.isfinite(samples)):
      raise UnreadableFileError(name, "audio holds non-finite samples")
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > MAX_FLOAT_PEAK:
      raise UnreadableFileError(
          name,
          f"float audio must lie in [-1, 1], its peak is {peak:.6g}: "
          "integer-scaled samples? Divide by 32768 (or pass them as int16)",
      )
  return int(rate)


def audio_record(
    samples: np.ndarray, sample_rate: int, spec: RecordSpec, name: str
) -> tuple[np.ndarray, int]:
  """A waveform as the dataset stores it.

  Args:
    samples: [N] or [N, C] (channels last): int PCM (unsigned centred on
      its midpoint) or float in [-1, 1] (overshoot up to MAX_FLOAT_PEAK is
      clipped).
    sample_rate: Hz of ``samples`` (a positive whole number).
    spec: the dataset's record shapes.
    name: the input's name (file path or "inputs[i]") for errors.

  Returns:
    (int16 [spec.audio_samples] (or [M] when variable) at spec.sample_rate,
    valid length in samples (<= the stored length)).

  Raises:
    UnreadableFileError: naming the input when it is empty, too short,
      not a waveform, non-finite, a float waveform peaking above
      MAX_FLOAT_PEAK, or its sample rate is not a positive whole number.
  """
  samples = np.asarray(samples)
  if samples.ndim not in (1, 2) or samples.dtype.kind not in "iuf":
    raise UnreadableFileError(
        name,
        f"audio must be a waveform [N] or [N, channels] of numbers, got "
        f"{samples.dtype} {samples.shape}",
    )
  sample_rate = _check_waveform(samples, sample_rate, name)
  if samples.ndim == 2:
    if np.issubdtype(samples.dtype, np.integer):
      samples = _integer_to_unit(samples)
    samples = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
  if samples.shape[0] < MIN_AUDIO_SECONDS * sample_rate:
    raise UnreadableFileError(
        name,
        f"audio too short ({samples.shape[0]} samples at {sample_rate} Hz; "
        f"need at least {MIN_AUDIO_SECONDS} s)",
    )
  wave = audio_io.resample(
      to_int16(samples), int(sample_rate), spec.sample_rate
  )
  length = spec.audio_samples or wave.shape[0]
  return features_lib.pad_or_crop(wave, length), min(wave.shape[0], length)


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
    raise UnreadableFileError(
        name, f"image must be [H, W] or [H, W, 3], got shape {image.shape}"
    )
  if min(image.shape[:2]) < MIN_IMAGE_SIDE:
    raise UnreadableFileError(
        name,
        f"image of {image.shape[0]}x{image.shape[1]} pixels is too small "
        f"(need at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE})",
    )
  if image.dtype == np.uint8:
    return image
  if image.dtype.kind not in "iuf":
    raise UnreadableFileError(name, f"image of dtype {image.dtype}")
  if image.dtype == np.uint16:  # 16-bit images: the top 8 bits' scale.
    return np.round(image.astype(np.float64) * (255.0 / 65535.0)).astype(
        np.uint8
    )
  if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
    raise UnreadableFileError(name, "image holds non-finite values")
  low, high = float(np.min(image)), float(np.max(image))
  if image.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
    image = image * 255.0  # Floats in [0, 1], as most libraries make them.
  elif low < 0.0 or high > 255.0:
    raise UnreadableFileError(
        name,
        f"image values must lie in [0, 255] (or [0, 1] for floats), got "
        f"[{low:.6g}, {high:.6g}]",
    )
  return np.round(image).astype(np.uint8)


def _to_grey(image: np.ndarray) -> np.ndarray:
  from PIL import Image  # pylint: disable=import-outside-toplevel

  if image.ndim == 2:
    return image
  return np.asarray(Image.fromarray(image, mode="RGB").convert("L"))


def image_record(
    image: np.ndarray,
    size: tuple[int, int],
    channels: int,
    name: str,
) -> np.ndarray:
  """An image as the dataset stores it.

  Args:
    image: uint8 [h, w] grey or [h, w, 3] RGB; uint16 is scaled to 8
      bits, floats all in [0, 1] by 255, other values in [0, 255] rounded.
    size: the dataset's (H, W).
    channels: 1 (grey) or 3 (RGB).
    name: the input's name for errors.

  Returns:
    uint8 [H, W] (grey) or [H, W, 3].

  Raises:
    UnreadableFileError: naming the input when it is smaller than
      MIN_IMAGE_SIDE pixels, not an image array, or holds values outside
      [0, 255] (non-finite ones included).
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel

  image = _check_image(image, name)
  size = (int(size[0]), int(size[1]))
  if channels == 1:
    grey = _to_grey(image)
    if grey.shape == size:
      return grey
    return digits_lib.resize_grey(grey.astype(np.float32), size)
  rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
  if rgb.shape[:2] == size:
    return rgb
  resized = Image.fromarray(rgb, mode="RGB").resize(
      (size[1], size[0]), Image.Resampling.BICUBIC
  )
  return np.asarray(resized)


def frames_record(
    frames: np.ndarray, spec: RecordSpec, name: str
) -> np.ndarray:
  """A video's frames as the dataset stores them.

  Args:
    frames: uint8 [T, h, w] or [T, h, w, 3] at any frame rate.
    spec: the dataset's record shapes (video_frames, video_size, channels).
    name: the input's name for errors.

  Returns:
    uint8 [spec.video_frames, H, W] (grey) or [.., H, W, 3]: frames sampled
    uniformly over the clip (``msrvtt.sample_frames``), each resized as by
    ``image_record``.
  """
  from avjax.data.builders import msrvtt  # pylint: disable=import-outside-toplevel

  frames = np.asarray(frames)
  if frames.ndim not in (3, 4) or not len(frames):
    raise UnreadableFileError(
        name, f"video frames must be [T>0, H, W(, 3)], got {frames.shape}"
    )
  if spec.video_frames is not None:
    frames = msrvtt.sample_frames(frames, int(spec.video_frames))
  return np.stack(
      [
          image_record(f, spec.video_size, spec.video_channels, name)
          for f in frames
      ]
  )


def feature_record(vector: Any, name: str) -> np.ndarray:
  """A pre-extracted feature vector (AVE / VEGAS models): float32 [D].

  Raises:
    UnreadableFileError: not a 1-D real vector of finite values.
  """
  x = np.asarray(vector)
  if x.ndim != 1 or not x.size or not np.issubdtype(x.dtype, np.number):
    raise UnreadableFileError(
        name, f"a feature vector must be 1-D and real, got {x.dtype} {x.shape}"
    )
  if not np.all(np.isfinite(x)):
    raise UnreadableFileError(name, "feature vector has NaN or inf values")
  return x.astype(np.float32)


def input_name(item: Any, index: int) -> str:
  """A path's string, or "inputs[i]" for an array."""
  if isinstance(item, (str, os.PathLike)):
    return os.fspath(item)
  return f"inputs[{index}]"
