"""Writers of tiny real-format files for the manual-download builder tests."""

from pathlib import Path

import numpy as np
import soundfile
import tensorflow_datasets as tfds
from PIL import Image


def sine(n: int, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """float64 [n] sine in [-amp, amp]."""
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def write_wav(path: Path, n: int, rate: int = 16000, *, subtype: str = "PCM_16",
              channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """Writes a sine wav (``channels`` copies scaled 1, 0.5, ...); returns [n, C]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = sine(n, rate, freq)
    data = np.stack([base / (c + 1) for c in range(channels)], axis=1)
    soundfile.write(str(path), data, rate, subtype=subtype)
    return data


def write_image(path: Path, width: int, height: int, color: tuple[int, int, int]) -> None:
    """Writes a solid-color JPEG (or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), color).save(path)


def write_garbage(path: Path) -> None:
    """Writes bytes no decoder accepts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a media file\x00\x01" * 8)


def build(cls, manual_dir, data_dir, config=None, **kwargs):
    """Prepares ``cls`` as array_record from ``manual_dir``; returns the builder."""
    builder = cls(data_dir=str(data_dir), config=config, **kwargs)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def read_all(builder, split):
    """Every example of ``split`` through ``as_data_source``."""
    source = builder.as_data_source(split)
    return [source[i] for i in range(len(source))]
