"""Reading a user's files: audio, images and videos, with errors naming them.

Every reader returns the file's content as found (its own sample rate,
channels, size and colour mode); turning it into what a model was trained
on is ``avjax.inference.records``' job. Audio is read with soundfile
(libsndfile: WAV, FLAC, OGG, ...) and, for anything it does not know
(mp3, m4a, the audio track of a video), with PyAV; images with Pillow;
videos with ``avjax.data.io.video``; text files as UTF-8.
"""

from __future__ import annotations

import os

import numpy as np

from avjax.data.io import audio as audio_io
from avjax.data.io import errors
from avjax.data.io import video as video_lib


class UnreadableFileError(errors.FileError):
  """An input file is missing, empty, corrupt or holds no usable content.

  Attributes:
    path: the file at fault.
    reason: short description.
  """


def _check_file(path: str, what: str) -> None:
  if os.path.isdir(path):
    raise UnreadableFileError(
        path,
        f"{what} input is a directory, not a file (gallery() takes "
        "directories)",
    )
  if not os.path.isfile(path):
    raise UnreadableFileError(path, f"missing {what} file")
  if os.path.getsize(path) == 0:
    raise UnreadableFileError(path, f"empty {what} file (0 bytes)")


def _read_audio_av(path: str) -> tuple[np.ndarray, int]:
  """First audio stream with PyAV: float32 [N, C] and its rate."""
  av = video_lib._import_av()  # pylint: disable=protected-access
  try:
    with av.open(path, mode="r") as container:
      if not container.streams.audio:
        raise UnreadableFileError(path, "no audio stream")
      stream = container.streams.audio[0]
      rate = int(stream.rate)
      resampler = av.AudioResampler(format="flt", layout=None, rate=rate)
      parts = []
      for frame in container.decode(stream):
        for out in resampler.resample(frame):
          parts.append(out.to_ndarray().reshape(-1, len(out.layout.channels)))
  except UnreadableFileError:
    raise
  except (av.FFmpegError, OSError, ValueError, EOFError) as e:
    raise UnreadableFileError(path, f"not a readable audio file ({e})") from e
  if not parts:
    raise UnreadableFileError(path, "audio stream holds no samples")
  return np.concatenate(parts).astype(np.float32), rate


def read_audio(path: os.PathLike | str) -> tuple[np.ndarray, int]:
  """Decodes an audio file (or a video's audio track).

  Args:
    path: any format libsndfile or FFmpeg reads.

  Returns:
    (samples float32 [N, C] in [-1, 1], sample rate in Hz), N >= 1.

  Raises:
    UnreadableFileError: naming the file when it is missing, empty, not
      audio, a WAV shorter than its header declares (as the builders
      reject it), or holds zero samples.
  """
  import soundfile  # pylint: disable=import-outside-toplevel

  path = os.fspath(path)
  _check_file(path, "audio")
  try:
    audio_io.check_wav_complete(path)
  except errors.BadFileError as e:
    raise UnreadableFileError(path, e.reason) from e
  try:
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
  except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
    samples, rate = _read_audio_av(path)
  if samples.shape[0] == 0:
    raise UnreadableFileError(path, "audio file holds zero samples")
  if not np.all(np.isfinite(samples)):
    raise UnreadableFileError(path, "audio file holds non-finite samples")
  return samples, int(rate)


def read_image(path: os.PathLike | str) -> np.ndarray:
  """Decodes an image file to uint8 RGB [H, W, 3] (grey images too).

  Raises:
    UnreadableFileError: naming the file when it is missing, empty or not
      an image Pillow reads.
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel

  path = os.fspath(path)
  _check_file(path, "image")
  try:
    with Image.open(path) as image:
      image.load()
      if image.mode in ("I;16", "I", "F"):  # High bit depth: scale to 8 bit.
        values = np.asarray(image, np.float64)
        top = max(float(values.max()), 1.0)
        image = Image.fromarray(
            np.clip(values / top * 255.0, 0, 255).astype(np.uint8)
        )
      rgb = np.asarray(image.convert("RGB"))
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise UnreadableFileError(path, f"not a readable image ({e})") from e
  return rgb


def read_text(path: os.PathLike | str) -> str:
  """A text file's content (UTF-8), e.g. one caption per ``.txt`` file.

  Returns:
    The content with surrounding whitespace removed (non-empty).

  Raises:
    UnreadableFileError: naming the file when it is missing, a directory,
      not UTF-8, or holds only whitespace.
  """
  path = os.fspath(path)
  _check_file(path, "text")
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read().strip()
  except UnicodeDecodeError as e:
    raise UnreadableFileError(path, f"not a UTF-8 text file ({e})") from e
  except OSError as e:
    raise UnreadableFileError(path, f"cannot read the text file ({e})") from e
  if not text:
    raise UnreadableFileError(path, "text file holds only whitespace")
  return text


def read_video(path: os.PathLike | str, **kwargs) -> video_lib.Video:
  """``avjax.data.io.video.read_video`` with its errors as UnreadableFileError."""
  try:
    return video_lib.read_video(path, **kwargs)
  except video_lib.VideoDecodeError as e:
    raise UnreadableFileError(e.path, e.reason) from e
