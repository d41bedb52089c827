"""AV-digits `video_text`: motion rendering, captions, noisy pairs, long
tail, splits and the tokenizer saved with the dataset."""

import re

import numpy as np
import pytest

from avjax.data.builders.av_digits import digits as digits_lib
from avjax.data.builders.av_digits import video_text as vt
from avjax.data.pipeline import sources
from avjax.data.pipeline import tokenizer

_SEED = 20240601
_CAPTION = re.compile(
    r"^a (\d) moves (left|right|up|down) (slowly|quickly)"
    r"((, then a \d appears at the [a-z ]+ and moves (left|right|up|down) "
    r"(slowly|quickly))*)$"
)


def _event(direction, speed=1, appear=0, start=(11.0, 11.0)):
  return vt.Event(
      label=3,
      source=0,
      direction=vt.DIRECTIONS.index(direction),
      speed=speed,
      appear=appear,
      start=start,
  )


@pytest.mark.parametrize(
    "direction,axis,sign",
    [("right", 1, 1), ("left", 1, -1), ("down", 0, 1), ("up", 0, -1)],
)
def test_digit_moves_in_its_direction_at_its_speed(direction, axis, sign):
  image = np.full((vt.DIGIT_SIZE, vt.DIGIT_SIZE), 200, np.uint8)
  start = {1: 1.0, -1: 21.0}[sign]
  start = (start, 5.0) if axis == 0 else (5.0, start)
  frames = vt.render(
      [_event(direction, speed=1, appear=2, start=start)], {0: image}
  )
  assert frames.shape == (vt.NUM_FRAMES, vt.FRAME_SIZE, vt.FRAME_SIZE)
  assert frames[:2].max() == 0  # Not there before it appears.
  positions = []
  for t in range(2, vt.NUM_FRAMES):
    ink = np.argwhere(frames[t] > 0)
    assert len(ink) == vt.DIGIT_SIZE**2
    positions.append(ink[:, axis].min())
  np.testing.assert_allclose(np.diff(positions), sign * 3.0, atol=1)
  assert abs(positions[-1] - positions[0]) == pytest.approx(15, abs=1)


def test_caption_describes_the_events_in_order():
  generator = vt.Generator(_SEED, vt.VideoTextOptions())
  for i in range(40):
    events, caption, paraphrases = generator.describe("validation", i)
    match = _CAPTION.match(caption)
    assert match, caption
    labels = [int(d) for d in re.findall(r"a (\d) (?:moves|appears)", caption)]
    assert labels == [e.label for e in events]
    dirs = re.findall(r"moves (left|right|up|down)", caption)
    assert dirs == [vt.DIRECTIONS[e.direction] for e in events]
    assert [e.appear for e in events] == sorted(e.appear for e in events)
    assert len(paraphrases) == vt.NUM_PARAPHRASES
    for p in paraphrases:
      for e in events:  # Every digit named, as numeral or word.
        assert str(e.label) in p or digits_lib.DIGIT_WORDS[e.label] in p, (
            p,
            caption,
        )
    # Rendered frames: each digit's ink is within the frame at every frame.
    frames = generator.example("validation", i, i, i)["frames"]
    assert frames[0].max() > 0


def test_noisy_partners_form_a_cycle_over_the_noisy_fraction():
  partners = vt.noisy_partners(_SEED, 1000, 0.4)
  moved = partners != np.arange(1000)
  assert moved.sum() == 400
  np.testing.assert_array_equal(np.sort(partners), np.arange(1000))
  assert set(partners[moved]) == set(np.flatnonzero(moved))
  np.testing.assert_array_equal(
      vt.noisy_partners(_SEED, 1000, 0.0), np.arange(1000)
  )


def test_long_tail_only_in_train():
  probs = vt.class_probabilities(20.0, 10, 9)
  assert probs[0] / probs[9] == pytest.approx(20.0)
  generator = vt.Generator(_SEED, vt.VideoTextOptions(longtail_ratio=20.0))
  counts = {}
  for split in ("train", "meta"):
    labels = [
        e.label for i in range(600) for e in generator.describe(split, i)[0]
    ]
    counts[split] = np.bincount(labels, minlength=10)
  assert counts["train"][0] > 8 * max(counts["train"][9], 1)
  assert counts["meta"].min() > 0.5 * counts["meta"].max()


def test_bad_options_are_named():
  with pytest.raises(ValueError, match="noise_fraction"):
    vt.VideoTextOptions(noise_fraction=1.0)
  with pytest.raises(ValueError, match="longtail_ratio"):
    vt.VideoTextOptions(longtail_ratio=0.5)
  with pytest.raises(ValueError, match="split_sizes"):
    vt.VideoTextOptions(split_sizes=(("train", 5),))


def test_prepared_noisy_config(av_digits_dir):
  name = "video_text_noise40"
  train = av_digits_dir.source(name, "train")
  builder = sources.get_builder(
      f"av_digits/{name}", data_dir=av_digits_dir.data_dir
  )
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == (
      vt.SPLIT_SIZES
  )
  n = len(train)
  records = [train[i] for i in range(n)]
  noisy = np.array([r["noisy"] for r in records])
  assert noisy.sum() == round(0.4 * n)
  for r in records[:300]:
    source = records[int(r["caption_source"])]
    assert r["caption"] == source["clean_caption"]
    assert (r["caption"] != r["clean_caption"]) <= bool(r["noisy"])
    assert r["frames"].shape == (8, 32, 32) and r["frames"].dtype == np.uint8
  for split in ("meta", "validation", "test"):
    split_source = av_digits_dir.source(name, split)
    assert all(
        split_source[i]["noisy"] == 0
        and split_source[i]["caption"] == split_source[i]["clean_caption"]
        for i in range(50)
    )
  # The clean videos are those of the generator, independent of the noise.
  generator = vt.Generator(_SEED, vt.VideoTextOptions())
  for i in (0, 7):
    np.testing.assert_array_equal(
        records[i]["frames"], generator.example("train", i, i, i)["frames"]
    )
  # The tokenizer saved with the dataset knows every training word.
  tok = tokenizer.CaptionTokenizer.from_json(builder.info.metadata["tokenizer"])
  captions = [r["caption"] for r in records[:200]]
  captions += [
      p for r in records[:50] for p in r["paraphrases"].decode().split("\n")
  ]
  ids, mask = tok.encode(captions, max_length=64)
  assert not np.any(ids[mask] == tokenizer.UNK_ID)
  with pytest.raises(ValueError, match="unknown split 'meta_set'"):
    av_digits_dir.source(name, "meta_set")
