"""Video files in and out: decode mp4 (frames + mono audio), write fixtures.

PyAV (``pip install -e '.[video]'``) is imported inside the functions, so
``import avjax`` works without it. PyAV bundles its own FFmpeg, and decoded
pixels (and, downstream, accuracy) can change with the FFmpeg version; the
``[video]`` extra pins one PyAV major release and ``tests/test_video.py``
checks the decoded frame count, frame rate, audio length and known pixel and
tone patterns on fixtures it writes itself.

Decisions:
* Frame-rate conversion picks, for output time ``k / fps``, the last decoded
  frame whose presentation time is at or before it (what a player shows at
  that instant); frames are neither blended nor interpolated. The output has
  ``floor(duration * fps + 1e-6)`` frames, where ``duration`` is the end
  time of the last decoded frame (its time plus one source frame period).
* Resizing uses FFmpeg's swscale with area interpolation (good for the large
  down-scaling this library does) to exactly (H, W); the aspect ratio is not
  kept — crop first if it matters.
* Audio is down-mixed to mono and resampled by FFmpeg's swresample as part of
  decoding, to float32 in [-1, 1]. Sample 0 is at time 0 of the file: a
  stream that starts late is padded with zeros in front, samples before 0
  are dropped (the mp4 demuxer already drops AAC encoder priming), and the
  padding of the last AAC frame is cut to the stream's declared duration.
* ``max_seconds`` stops decoding early: frames at times >= max_seconds and
  audio samples beyond ``max_seconds * sample_rate`` are dropped.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
import os

import numpy as np

from avjax.data.io import errors

# Frames per encoded AAC packet; audio is fed to the encoder in such chunks.
_AAC_FRAME_SIZE = 1024


class VideoDecodeError(errors.FileError):
  """A video file is missing, corrupt, truncated or lacks a needed stream.

  Attributes:
    path: the file at fault.
    reason: short description.
  """


@dataclasses.dataclass
class Video:
  """A decoded video.

  Attributes:
    frames: uint8 [T, H, W, 3] RGB.
    fps: frames per second of ``frames``.
    audio: float32 [N] mono in [-1, 1], or None when not decoded / absent.
    sample_rate: Hz of ``audio``, or None with it.
  """

  frames: np.ndarray
  fps: float
  audio: np.ndarray | None
  sample_rate: int | None

  @property
  def duration(self) -> float:
    """Seconds covered by ``frames``."""
    return len(self.frames) / self.fps


def _import_av():
  try:
    import av  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
        "avjax.data.io.video needs PyAV: pip install -e " "'.[video]'"
    ) from e
  return av


def _resample_times(times: np.ndarray, end: float, fps: float) -> np.ndarray:
  """Index of the source frame shown at each output time k / fps.

  Args:
    times: float [S] presentation times of the decoded frames, increasing.
    end: seconds at which the last frame stops being shown.
    fps: output frame rate.

  Returns:
    int [T] indices into the source frames, T = floor(end * fps + 1e-6).
  """
  count = int(math.floor(end * fps + 1e-6))
  targets = np.arange(count) / fps
  # Last frame with time <= target (tolerating rounding of pts to ticks).
  index = np.searchsorted(times, targets + 1e-6, side="right") - 1
  return np.clip(index, 0, len(times) - 1)


def read_video(
    path: os.PathLike | str,
    *,
    fps: float | None = None,
    frame_size: tuple[int, int] | None = None,
    sample_rate: int | None = None,
    need_audio: bool = False,
    max_seconds: float | None = None,
) -> Video:
  """Decodes a video file's frames and (first) audio stream.

  Args:
    path: video file (any container FFmpeg reads; mp4 in this library).
    fps: output frame rate; None keeps the stream's own frames and reports
      its average rate.
    frame_size: (H, W) to resize every frame to; None keeps the size.
    sample_rate: output audio rate in Hz; None keeps the stream's rate.
    need_audio: raise when the file has no audio stream (else audio is None).
    max_seconds: decode only the first ``max_seconds`` seconds.

  Returns:
    A ``Video``; ``audio`` is decoded whenever the file has an audio stream.

  Raises:
    VideoDecodeError: naming the file when it is missing, cannot be opened or
      decoded (corrupt or truncated), has no video stream or no decodable
      frame, or (with ``need_audio``) has no audio stream or no audio.
    ValueError: invalid arguments.
  """
  if fps is not None and not fps > 0:
    raise ValueError(f"fps must be > 0, got {fps}")
  if frame_size is not None and (len(frame_size) != 2 or min(frame_size) < 1):
    raise ValueError(f"frame_size must be (H, W) >= 1, got {frame_size}")
  if sample_rate is not None and sample_rate < 1:
    raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
  if max_seconds is not None and not max_seconds > 0:
    raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise VideoDecodeError(path, "missing video file")
  if os.path.getsize(path) == 0:
    raise VideoDecodeError(path, "empty video file")
  av = _import_av()
  try:
    container = av.open(path, mode="r")
  except (av.FFmpegError, OSError, ValueError) as e:
    raise VideoDecodeError(path, f"cannot open video ({e})") from e
  with container:
    if not container.streams.video:
      raise VideoDecodeError(path, "no video stream")
    vstream = container.streams.video[0]
    astream = container.streams.audio[0] if container.streams.audio else None
    if astream is None and need_audio:
      raise VideoDecodeError(path, "no audio stream")
    resampler = None
    if astream is not None:
      resampler = av.AudioResampler(
          format="flt", layout="mono", rate=sample_rate or astream.rate
      )
    frames, times, audio = [], [], []
    audio_start = None  # seconds of the first decoded audio frame
    streams = [s for s in (vstream, astream) if s is not None]
    try:
      for packet in container.demux(*streams):
        for frame in packet.decode():
          if packet.stream.type == "video":
            t = (
                float(frame.time)
                if frame.time is not None
                else (len(times) / float(vstream.average_rate or 25))
            )
            if max_seconds is not None and t >= max_seconds - 1e-6:
              continue
            kwargs = {"format": "rgb24"}
            if frame_size is not None:
              kwargs.update(
                  height=int(frame_size[0]),
                  width=int(frame_size[1]),
                  interpolation="AREA",
              )
            frames.append(frame.to_ndarray(**kwargs))
            times.append(t)
          else:
            if audio_start is None and frame.time is not None:
              audio_start = float(frame.time)
            audio.extend(r.to_ndarray()[0] for r in resampler.resample(frame))
      if resampler is not None:
        audio.extend(r.to_ndarray()[0] for r in resampler.resample(None))
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
      raise VideoDecodeError(path, f"corrupt or truncated video ({e})") from e
    rate = vstream.average_rate or vstream.guessed_rate
    source_fps = float(rate) if rate else None
    audio_seconds = None  # the audio stream's declared length
    if astream is not None and astream.duration and astream.time_base:
      audio_seconds = float(astream.duration * astream.time_base)
  if not frames:
    raise VideoDecodeError(path, "no decodable video frame (truncated?)")
  order = np.argsort(np.asarray(times), kind="stable")
  times_arr = np.asarray(times)[order]
  frames_arr = np.stack([frames[i] for i in order])
  if source_fps is None:
    source_fps = (
        (len(times_arr) - 1) / max(times_arr[-1] - times_arr[0], 1e-9)
        if len(times_arr) > 1
        else 1.0
    )
  if fps is not None:
    end = times_arr[-1] + 1.0 / source_fps
    if max_seconds is not None:
      end = min(end, max_seconds)
    frames_arr = frames_arr[_resample_times(times_arr, end, fps)]
    if not len(frames_arr):
      raise VideoDecodeError(path, f"shorter than one frame at {fps} fps")
  out_audio, out_rate = None, None
  if astream is not None:
    out_rate = int(sample_rate or astream.rate)
    out_audio = (
        np.concatenate(audio).astype(np.float32)
        if audio
        else np.zeros((0,), np.float32)
    )
    # Place sample 0 at time 0: pad a late start, drop samples before 0.
    lead = int(round((audio_start or 0.0) * out_rate))
    if lead > 0:
      out_audio = np.concatenate([np.zeros((lead,), np.float32), out_audio])
    elif lead < 0:
      out_audio = out_audio[-lead:]
    if audio_seconds is not None:  # Drop the encoder's final-frame padding.
      out_audio = out_audio[
          : int(round(((audio_start or 0.0) + audio_seconds) * out_rate))
      ]
    if max_seconds is not None:
      out_audio = out_audio[: int(round(max_seconds * out_rate))]
    if need_audio and not out_audio.size:
      raise VideoDecodeError(path, "audio stream holds no samples")
    out_audio = np.clip(out_audio, -1.0, 1.0)
  return Video(
      frames=frames_arr,
      fps=float(fps or source_fps),
      audio=out_audio,
      sample_rate=out_rate,
  )


def write_video(
    path: os.PathLike | str,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
) -> None:
  """Writes an mp4: H.264 video (yuv420p, crf 12) and optional AAC audio.

  Args:
    path: output file (``.mp4``); its directory must exist.
    frames: uint8 [T, H, W, 3] RGB, or [T, H, W] grey; H and W even (a
      yuv420p requirement).
    fps: frame rate (e.g. 25, 29.97).
    audio: float [N] mono in [-1, 1] (clipped), or None for no audio track.
    sample_rate: Hz of ``audio``; required with it.

  Raises:
    ValueError: bad shapes, dtype or missing sample_rate, naming ``path``.
  """
  path = os.fspath(path)
  frames = np.asarray(frames)
  if frames.ndim == 3:
    frames = np.repeat(frames[..., None], 3, axis=-1)
  if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(
        f"{path}: frames must be [T, H, W, 3] with T >= 1, got "
        f"shape {frames.shape}"
    )
  if frames.dtype != np.uint8:
    raise ValueError(f"{path}: frames must be uint8, got {frames.dtype}")
  height, width = frames.shape[1:3]
  if height % 2 or width % 2:
    raise ValueError(
        f"{path}: H and W must be even for yuv420p, got " f"{height}x{width}"
    )
  if not fps > 0:
    raise ValueError(f"{path}: fps must be > 0, got {fps}")
  if audio is not None:
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
      raise ValueError(
          f"{path}: audio must be mono [N], got shape " f"{audio.shape}"
      )
    if not sample_rate:
      raise ValueError(f"{path}: sample_rate is required with audio")
  av = _import_av()
  rate = fractions.Fraction(fps).limit_denominator(1001)
  with av.open(path, mode="w", format="mp4") as container:
    vstream = container.add_stream("libx264", rate=rate)
    vstream.width, vstream.height = width, height
    vstream.pix_fmt = "yuv420p"
    vstream.options = {"crf": "12", "preset": "medium"}
    astream = None
    if audio is not None:
      astream = container.add_stream("aac", rate=int(sample_rate))
      astream.layout = "mono"
    for i, image in enumerate(frames):
      frame = av.VideoFrame.from_ndarray(
          np.ascontiguousarray(image), format="rgb24"
      )
      frame.pts = i
      container.mux(vstream.encode(frame))
    container.mux(vstream.encode(None))
    if astream is not None:
      samples = np.clip(audio, -1.0, 1.0)
      for start in range(0, samples.size, _AAC_FRAME_SIZE):
        chunk = samples[start : start + _AAC_FRAME_SIZE]
        frame = av.AudioFrame.from_ndarray(
            chunk[None, :], format="fltp", layout="mono"
        )
        frame.sample_rate = int(sample_rate)
        frame.pts = start
        container.mux(astream.encode(frame))
      container.mux(astream.encode(None))
