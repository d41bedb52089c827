"""Example generation shared by the spoken-caption builders."""

import logging

import numpy as np
import pytest

from avjax.data import manual, spoken_captions
from manual_fixtures import write_garbage, write_image, write_wav


def _groups(tmp_path):
    write_image(tmp_path / "a.png", 12, 10, (200, 10, 10))
    write_image(tmp_path / "b.png", 10, 10, (10, 200, 10))
    write_wav(tmp_path / "a0.wav", 160)
    write_wav(tmp_path / "a1.wav", 22050 // 10, rate=22050)
    write_wav(tmp_path / "b0.wav", 320)
    cap = spoken_captions.Caption
    return [
        spoken_captions.ImageGroup(7, tmp_path / "a.png", "a.png", (
            cap(3, tmp_path / "a0.wav", "a0.wav"), cap(4, tmp_path / "a1.wav", "a1.wav"))),
        spoken_captions.ImageGroup(9, tmp_path / "b.png", "b.png", (
            cap(5, tmp_path / "b0.wav", "b0.wav"),)),
    ]


def test_features_spec():
    spec = spoken_captions.features(32)
    assert spec["image"].shape == (32, 32, 3) and spec["image"].np_dtype == np.uint8
    assert spec["audio"].shape == (None,) and spec["audio"].np_dtype == np.int16
    for key in ("audio_length", "image_id", "clip_id"):
        assert spec[key].np_dtype == np.int32


def test_generate_examples(tmp_path):
    out = list(spoken_captions.generate_examples(
        _groups(tmp_path), 8, manual.BadFileLog("toy/train", skip=False)))
    assert [k for k, _ in out] == [3, 4, 5]
    ex = {k: e for k, e in out}
    assert ex[3]["image_id"] == ex[4]["image_id"] == 7 and ex[5]["image_id"] == 9
    assert ex[3]["audio_length"] == 160 == ex[3]["audio"].shape[0]
    assert ex[4]["audio_length"] == 1600  # 2205 samples at 22.05 kHz → 16 kHz
    assert ex[4]["image"].shape == (8, 8, 3)
    np.testing.assert_array_equal(ex[5]["image"][4, 4], [10, 200, 10])
    assert ex[4]["wav_file"] == "a1.wav" and ex[4]["image_file"] == "a.png"


def test_bad_image_skips_all_its_captions(tmp_path, caplog):
    groups = _groups(tmp_path)
    write_garbage(tmp_path / "a.png")
    with pytest.raises(manual.BadFileError, match="unreadable image file"):
        list(spoken_captions.generate_examples(
            groups, 8, manual.BadFileLog("toy/train", skip=False)))
    log = manual.BadFileLog("toy/train", skip=True)
    with caplog.at_level(logging.WARNING):
        out = list(spoken_captions.generate_examples(groups, 8, log))
    assert [k for k, _ in out] == [5]
    assert log.skipped_examples == 2
    assert "skipped 2 example(s) because of 1 bad file(s)" in caplog.text
