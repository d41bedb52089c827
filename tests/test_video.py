"""avjax.data.io.video: mp4 fixtures written with PyAV and decoded back."""

import numpy as np
import pytest

from avjax.data.io import video

SR = 16000
FPS = 25.0


def _frames(count, height=32, width=48):
  """Red level 5·t everywhere and a green square whose column moves with t."""
  frames = np.zeros((count, height, width, 3), np.uint8)
  for t in range(count):
    frames[t, :, :, 0] = 5 * t
    col = 4 * (t % 8)
    frames[t, 8:24, col : col + 16, 1] = 200
  return frames


def _clicks(seconds, at, rate=SR):
  """Silence with 10 ms 1 kHz bursts starting at the sample indices `at`."""
  audio = np.zeros(int(seconds * rate), np.float32)
  burst = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(rate // 100) / rate)
  for a in at:
    audio[a : a + burst.size] = burst
  return audio


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  path = tmp_path_factory.mktemp("video") / "clip.mp4"
  frames = _frames(50)
  audio = _clicks(2.0, [4000, 12000, 20000])
  video.write_video(path, frames, FPS, audio, SR)
  return path, frames, audio


def test_round_trip_frames_fps_audio(clip):
  path, frames, audio = clip
  v = video.read_video(path, need_audio=True)
  assert v.frames.shape == frames.shape and v.frames.dtype == np.uint8
  assert v.fps == pytest.approx(FPS)
  assert v.sample_rate == SR
  assert v.audio.shape == audio.shape and v.audio.dtype == np.float32
  # Known pixel pattern: the red ramp exactly within codec error, and the
  # moving green square at its place in every frame.
  err = np.abs(v.frames.astype(int) - frames.astype(int))
  assert np.median(err) <= 2
  np.testing.assert_allclose(v.frames[:, 2, 40, 0], 5 * np.arange(50), atol=6)
  for t in range(50):
    col = 4 * (t % 8)
    assert v.frames[t, 16, col + 8, 1] > 150
    assert v.frames[t, 16, (col + 24) % 48, 1] < 60


def test_round_trip_tone_timing(clip):
  path, _, audio = clip
  v = video.read_video(path, need_audio=True)
  loud = np.flatnonzero(np.abs(v.audio) > 0.3)
  starts = loud[np.concatenate([[True], np.diff(loud) > 100])]
  np.testing.assert_allclose(starts, [4000, 12000, 20000], atol=8)
  spectrum = np.abs(np.fft.rfft(v.audio))
  assert np.argmax(spectrum) * SR / v.audio.size == pytest.approx(1000, abs=5)
  assert np.max(np.abs(v.audio - audio)) < 0.25


def test_resample_fps_size_rate_and_max_seconds(clip):
  path, frames, _ = clip
  v = video.read_video(
      path, fps=10, frame_size=(16, 24), sample_rate=8000, max_seconds=1.0
  )
  assert v.frames.shape == (10, 16, 24, 3)
  assert v.fps == 10.0 and v.sample_rate == 8000
  assert v.audio.shape == (8000,)
  # Output frame k shows the source frame at time k/10 s: index 2.5 k,
  # rounded down (the frame being shown at that instant).
  shown = np.floor(np.arange(10) * 2.5).astype(int)
  np.testing.assert_allclose(
      v.frames[:, 2, 20, 0], frames[shown, 2, 20, 0], atol=6
  )
  loud = np.flatnonzero(np.abs(v.audio) > 0.3)
  assert abs(loud[0] - 2000) <= 8 and loud[-1] < 8000


def test_upsampled_fps_repeats_frames(clip):
  path, frames, _ = clip
  v = video.read_video(path, fps=50)
  assert len(v.frames) == 100
  np.testing.assert_allclose(
      v.frames[:, 2, 20, 0].astype(int),
      frames[np.arange(100) // 2, 2, 20, 0],
      atol=6,
  )


def test_resample_times_matches_loop():
  times = np.array([0.0, 0.04, 0.08, 0.2, 0.24])
  got = video._resample_times(times, 0.28, fps=30)
  expected = []
  for k in range(int(0.28 * 30)):
    expected.append(max(i for i, t in enumerate(times) if t <= k / 30 + 1e-9))
  np.testing.assert_array_equal(got, expected)


def test_no_audio_stream(tmp_path):
  path = tmp_path / "silent.mp4"
  video.write_video(path, _frames(5, 16, 16), FPS)
  v = video.read_video(path)
  assert v.audio is None and v.sample_rate is None and len(v.frames) == 5
  with pytest.raises(video.VideoDecodeError, match="no audio stream.*silent"):
    video.read_video(path, need_audio=True)


@pytest.mark.parametrize(
    "damage", ["truncate", "garbage", "empty", "missing", "cut_mdat"]
)
def test_bad_files_name_the_path(tmp_path, clip, damage):
  good = clip[0].read_bytes()
  path = tmp_path / f"bad_{damage}.mp4"
  if damage == "truncate":
    path.write_bytes(good[: len(good) // 2])
  elif damage == "garbage":
    path.write_bytes(b"not a video" * 50)
  elif damage == "empty":
    path.write_bytes(b"")
  elif damage == "cut_mdat":  # Keep the header, zero the media data.
    data = bytearray(good)
    start = data.find(b"mdat") + 4
    data[start : len(data) - 2000] = bytes(len(data) - 2000 - start)
    path.write_bytes(bytes(data))
  with pytest.raises(video.VideoDecodeError) as info:
    video.read_video(path, need_audio=True)
  assert str(path) in str(info.value)
  assert info.value.path == str(path)


def test_write_rejects_bad_input(tmp_path):
  with pytest.raises(ValueError, match="even"):
    video.write_video(
        tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8), FPS
    )
  with pytest.raises(ValueError, match="uint8"):
    video.write_video(tmp_path / "f.mp4", np.zeros((2, 16, 16, 3)), FPS)
  with pytest.raises(ValueError, match="sample_rate"):
    video.write_video(
        tmp_path / "a.mp4",
        np.zeros((2, 16, 16, 3), np.uint8),
        FPS,
        audio=np.zeros(100),
    )
