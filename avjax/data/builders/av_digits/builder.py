"""tfds builder `av_digits`: real handwritten digits paired with speech.

Configs:
- `pairs` (TSTL-CA, AVC): one example per source digit; a 32x32 image and a
  1 s recording of its digit word. 1,258 / 269 / 270 examples.
- `pairs_heldout` (TSTL-CA, AVC, harder): `pairs` whose test split is
  spoken only by three voices that train and validation never hear (see
  `HELDOUT_PAIRS`), with 5-20 dB instead of 20-40 dB SNR noise.
- `captions` (CMD): a 64x64 canvas of 2-4 digits and the spoken sequence of
  its digits in reading order (see `canvas` for the precise order).
  20,000 / 500 / 500 examples (`AvDigitsConfig.caption_split_sizes`).
- `sync`, `sync_dense` (Synchformer): 6.4 s videos at 25 fps with a
  soundtrack 4.8 s longer on each side, sparse flashes + spoken digits or a
  moving digit + a tone following it; 1,000 / 200 / 200 and 800 / 100 / 100
  examples (see `sync`). These two configs carry their own version
  (`SYNC_VERSION`), so changing them rebuilds no other config.
- `video_text`, `video_text_noise20`, `video_text_noise40`,
  `video_text_longtail` (MAMA): 8-frame 32x32 videos of 1-3 moving digits
  with generated captions and paraphrases, 0 / 20 / 40 % noisy train pairs
  or long-tailed train classes; splits train / meta / validation / test,
  3,000 / 500 / 500 / 500 (see `video_text`).

Both configs use the same disjoint split of scikit-learn's 1,797 digits
(70/15/15 %, stratified, `digits.split_indices`); a canvas only uses digits
of its own split, and recordings never repeat across splits (`mixing`).

Determinism. Everything random in example `i` of split `s` comes from
`np.random.default_rng([seed, config_id, split_id, i])`, and speech synthesis
is a pure function of its arguments (`avjax.data.builders.av_digits.speech`), so an example does
not depend on generation order. Examples are stored in generation order
(`disable_shuffling=True`): record `i` of a split is example `i`.

Ids. `image_id` of `pairs` is the index of the source digit in
`sklearn.datasets.load_digits()`. `clip_id` numbers the recordings across the
whole config (train first, then validation, then test). In `captions` each
canvas has exactly one recording, so `image_id == clip_id` there, numbered
the same way.

Storage. Audio is raw int16 bytes. `captions` stores only each clip's
`audio_length` samples (on average 20,400 of the 56,000 its feature
holds); `AvDigits.wrap_data_source`, which `sources.load_source` applies,
zero-pads it back to `CAPTION_AUDIO_SAMPLES`, so readers see fixed-length
clips (version 1.1.0 stored the padded clips zlib-compressed: the same
values and about the same size, 720 MB, but tfds compressed each clip in
the main thread, ~6 ms, about half of the build). On disk `pairs` takes
about 46 MB. Generation synthesises with a few threads (see
`_ordered_map`): `pairs` takes well under a minute on 2 idle cores.

The builder never imports TensorFlow: prepare it with
`file_format="array_record"` and read it with `as_data_source`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any, Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from avjax.data.builders.av_digits import canvas
from avjax.data.builders.av_digits import digits as digits_lib
from avjax.data.builders.av_digits import mixing
from avjax.data.builders.av_digits import speech
from avjax.data.builders.av_digits import sync
from avjax.data.builders.av_digits import video_text

DEFAULT_SEED = 20240601
PAIRS_IMAGE_SIZE = 32
PAIRS_AUDIO_SAMPLES = speech.SAMPLE_RATE  # 1.0 s
CAPTION_MAX_SECONDS = 3.5
CAPTION_AUDIO_SAMPLES = int(CAPTION_MAX_SECONDS * speech.SAMPLE_RATE)
CAPTION_MAX_MARGIN = int(0.15 * speech.SAMPLE_RATE)  # noise before/after
# 20,000 training canvases: with 3,000 (version 1.0.0) the CMD encoders,
# trained from scratch, memorised the pairs (train R@1 0.45, test 0.015).
CAPTION_SPLIT_SIZES = {"train": 20000, "validation": 500, "test": 500}

_CONFIG_IDS = {
    "pairs": 0,
    "captions": 1,
    **sync.KIND_IDS,
    **video_text.KIND_IDS,
}


@dataclasses.dataclass(frozen=True)
class PairsOptions:
  """Recording conditions of a `pairs` config.

  Attributes:
    test_voices: indices of `speech.VOICE_SETTINGS` spoken **only** in the
      test split (train and validation use the others); empty: every split
      uses all voices.
    snr_db_range: signal-to-noise ratio range of the added noise, in dB.
  """

  test_voices: tuple[int, ...] = ()
  snr_db_range: tuple[float, float] = mixing.SNR_DB_RANGE

  def voices(self, split: str) -> tuple[int, ...] | None:
    """The voice indices `split` draws from (None: all)."""
    if not self.test_voices:
      return None
    if split == "test":
      return self.test_voices
    held_out = set(self.test_voices)
    return tuple(
        v for v in range(len(speech.VOICE_SETTINGS)) if v not in held_out
    )


# `pairs_heldout`: three voices unlike the rest (a female variant, the
# Caribbean accent and espeak-ng's Klatt synthesiser) only in test, and
# noise 5-20 dB SNR instead of 20-40 dB.
HELDOUT_PAIRS = PairsOptions(test_voices=(4, 6, 11), snr_db_range=(5.0, 20.0))


@dataclasses.dataclass(eq=False)
class AvDigitsConfig(tfds.core.BuilderConfig):
  """Config of `av_digits`.

  Attributes:
    kind: "pairs" or "captions"; defaults to the config's name, so custom
      configs (e.g. fewer canvases) can carry any name.
    seed: root seed of the split, layouts, speakers and noise.
    caption_split_sizes: canvases per split (`captions` only).
  """

  kind: str | None = None
  seed: int = DEFAULT_SEED
  caption_split_sizes: dict[str, int] = dataclasses.field(
      default_factory=lambda: dict(CAPTION_SPLIT_SIZES)
  )
  # `pairs` only: held-out test voices, noise level.
  pairs_options: PairsOptions = dataclasses.field(default_factory=PairsOptions)
  # `video_text` only: noisy pairs, long tail, split sizes.
  video_text_options: video_text.VideoTextOptions = dataclasses.field(
      default_factory=video_text.VideoTextOptions
  )

  @property
  def example_kind(self) -> str:
    """The kind of examples this config generates (validated)."""
    kind = self.kind or self.name
    if kind not in _CONFIG_IDS:
      raise ValueError(
          f"av_digits config {self.name!r} has kind {kind!r}; set kind "
          f"to one of {sorted(_CONFIG_IDS)}"
      )
    return kind


def example_rng(
    seed: int, config: str, split: str, index: int
) -> np.random.Generator:
  """The random generator of one example, keyed on (config, split, index)."""
  return np.random.default_rng(
      [seed, _CONFIG_IDS[config], digits_lib.SPLITS.index(split), index]
  )


def make_pair(
    source_index: int,
    split: str,
    index: int,
    clip_id: int,
    seed: int,
    image: np.ndarray,
    label: int,
    options: PairsOptions = PairsOptions(),
) -> dict[str, np.ndarray | int]:
  """One `pairs` example (see `AvDigits._info` for the keys)."""
  rng = example_rng(seed, "pairs", split, index)
  speaker = mixing.draw_speaker(
      rng, digits_lib.SPLITS.index(split), options.voices(split)
  )
  utterance = mixing.speak(digits_lib.DIGIT_WORDS[label], speaker)
  utterance = utterance[:PAIRS_AUDIO_SAMPLES]
  offset = int(rng.integers(0, PAIRS_AUDIO_SAMPLES - utterance.size + 1))
  audio = mixing.render_clip(
      utterance,
      offset,
      PAIRS_AUDIO_SAMPLES,
      PAIRS_AUDIO_SAMPLES,
      rng,
      snr_db_range=options.snr_db_range,
  )
  return {
      "image": image,
      "audio": audio,
      "audio_length": np.int32(PAIRS_AUDIO_SAMPLES),
      "label": int(label),
      "image_id": np.int32(source_index),
      "clip_id": np.int32(clip_id),
      "voice": np.int32(speaker.voice_index),
  }


def make_caption(
    split: str,
    index: int,
    canvas_id: int,
    seed: int,
    split_sources: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
) -> dict[str, np.ndarray | str]:
  """One `captions` example (see `AvDigits._info` for the keys)."""
  rng = example_rng(seed, "captions", split, index)
  num_digits = int(rng.integers(canvas.MIN_DIGITS, canvas.MAX_DIGITS + 1))
  boxes = canvas.draw_boxes(rng, num_digits)
  chosen = rng.choice(split_sources, size=num_digits, replace=False)
  digit_labels = labels[chosen]
  text = canvas.caption_text(digit_labels, canvas.draw_prefix(rng))
  speaker = mixing.draw_speaker(rng, digits_lib.SPLITS.index(split))
  utterance = mixing.speak(text, speaker)
  lead = int(rng.integers(0, CAPTION_MAX_MARGIN + 1))
  tail = int(rng.integers(0, CAPTION_MAX_MARGIN + 1))
  valid_length = lead + utterance.size + tail
  if valid_length > CAPTION_AUDIO_SAMPLES:
    raise ValueError(
        f"caption {text!r} spoken by {speaker} lasts "
        f"{valid_length / speech.SAMPLE_RATE:.2f} s with margins, more "
        f"than the {CAPTION_MAX_SECONDS} s the `captions` audio feature "
        f"holds"
    )
  # Stored without the zero padding (see the module docstring).
  audio = mixing.render_clip(utterance, lead, valid_length, valid_length, rng)

  def pad(values: np.ndarray) -> np.ndarray:
    out = np.full((canvas.MAX_DIGITS,) + values.shape[1:], -1, np.int32)
    out[: len(values)] = values
    return out

  return {
      "image": canvas.render_canvas(images[chosen], boxes),
      "audio": audio,
      "audio_length": np.int32(valid_length),
      "caption": text,
      "digits": pad(digit_labels),
      "num_digits": np.int32(num_digits),
      "source_ids": pad(chosen),
      "boxes": pad(boxes),
      "image_id": np.int32(canvas_id),
      "clip_id": np.int32(canvas_id),
      "voice": np.int32(speaker.voice_index),
  }


class PaddedCaptionAudio:
  """Random-access view of a `captions` source with fixed-length audio.

  The records store each clip's `audio_length` samples; this view returns
  every record with "audio" zero-padded to int16 [CAPTION_AUDIO_SAMPLES]
  and all other keys unchanged.
  """

  def __init__(self, source: Any):
    self.source = source

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = dict(self.source[index])
    audio = np.asarray(record["audio"])
    if audio.ndim != 1 or audio.shape[0] > CAPTION_AUDIO_SAMPLES:
      raise ValueError(
          f"av_digits/captions record {index}: 'audio' has shape "
          f"{audio.shape}, expected 1-D with at most "
          f"{CAPTION_AUDIO_SAMPLES} samples"
      )
    padded = np.zeros((CAPTION_AUDIO_SAMPLES,), np.int16)
    padded[: audio.shape[0]] = audio
    record["audio"] = padded
    return record

  def __repr__(self) -> str:
    return f"PaddedCaptionAudio({self.source!r})"


def _ordered_map(
    fn: Callable[[int], Any], count: int, chunk: int = 64
) -> Iterator[Any]:
  """fn(0), fn(1), ... fn(count - 1), computed by a few threads, in order.

  Examples are independent (see the module docstring), so computing them
  concurrently changes nothing in the output; synthesis, resampling and
  noise all run mostly outside the GIL. Chunks bound the memory held.
  """
  with concurrent.futures.ThreadPoolExecutor(speech.NUM_ENGINES) as pool:
    for start in range(0, count, chunk):
      yield from pool.map(fn, range(start, min(start + chunk, count)))


def _scalar(doc: str) -> tfds.features.Scalar:
  return tfds.features.Scalar(dtype=np.int32, doc=doc)


def _pairs_features() -> dict[str, tfds.features.FeatureConnector]:
  return {
      "image": tfds.features.Tensor(
          shape=(PAIRS_IMAGE_SIZE, PAIRS_IMAGE_SIZE),
          dtype=np.uint8,
          doc="Digit, bicubic-upsampled from 8x8, ink bright (0..255).",
      ),
      "audio": tfds.features.Tensor(
          shape=(PAIRS_AUDIO_SAMPLES,),
          dtype=np.int16,
          encoding=tfds.features.Encoding.BYTES,
          doc="16 kHz waveform: the digit word at a random offset.",
      ),
      "audio_length": _scalar("Valid samples of `audio` (all of them)."),
      "label": tfds.features.ClassLabel(names=digits_lib.DIGIT_WORDS),
      "image_id": _scalar("Index in sklearn.datasets.load_digits()."),
      "clip_id": _scalar("Recording id, unique in the config."),
      "voice": _scalar(
          "Index into avjax.data.builders.av_digits.speech.VOICE_SETTINGS."
      ),
  }


def _captions_features() -> dict[str, tfds.features.FeatureConnector]:
  n = canvas.MAX_DIGITS
  return {
      "image": tfds.features.Tensor(
          shape=(canvas.CANVAS_SIZE, canvas.CANVAS_SIZE),
          dtype=np.uint8,
          doc="Canvas of 2-4 digits, ink bright (0..255).",
      ),
      "audio": tfds.features.Tensor(
          shape=(None,),
          dtype=np.int16,
          encoding=tfds.features.Encoding.BYTES,
          doc=(
              "16 kHz spoken caption with its noise margins, "
              "audio_length samples; `AvDigits.wrap_data_source` "
              f"zero-pads it to {CAPTION_AUDIO_SAMPLES}."
          ),
      ),
      "audio_length": _scalar("Valid samples of `audio` (all stored)."),
      "caption": tfds.features.Text(doc="The spoken text."),
      "digits": tfds.features.Tensor(
          shape=(n,),
          dtype=np.int32,
          doc="Digit classes in reading order, padded with -1.",
      ),
      "num_digits": _scalar("Number of digits on the canvas (2-4)."),
      "source_ids": tfds.features.Tensor(
          shape=(n,),
          dtype=np.int32,
          doc="sklearn digit index of each digit, padded with -1.",
      ),
      "boxes": tfds.features.Tensor(
          shape=(n, 4),
          dtype=np.int32,
          doc="(top, left, bottom, right) per digit, padded with -1.",
      ),
      "image_id": _scalar("Canvas id, unique in the config."),
      "clip_id": _scalar("Recording id (== image_id)."),
      "voice": _scalar(
          "Index into avjax.data.builders.av_digits.speech.VOICE_SETTINGS."
      ),
  }


# `sync` and `sync_dense` are versioned on their own (a BuilderConfig's
# version overrides the builder's): their changes rebuild only them.
SYNC_VERSION = "2.0.0"
SYNC_RELEASE_NOTES = {
    "1.3.0": "As `AvDigits.VERSION` 1.3.0 (3.2 s videos, 2.6 s margins).",
    "2.0.0": (
        "The paper's geometry: 6.4 s videos and 4.8 s audio margins, so a "
        "4.8 s crop holds every offset of ±2 s (overlap >= 2.8 s) and a "
        "whole-crop unsynchronisable shift in real signal; up to 32 events "
        "per clip; eval_starts in [0, 40]; `sync` has 1,000 training clips "
        "(1,600 shorter ones before)."
    ),
}


class AvDigits(tfds.core.GeneratorBasedBuilder):
  """AV-digits: scikit-learn handwritten digits with espeak-ng speech."""

  VERSION = tfds.core.Version("1.3.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release: configs pairs and captions.",
      "1.1.0": (
          "captions: 20,000 training canvases instead of 3,000; "
          "examples 0-2,999 and the validation and test examples "
          "are unchanged apart from their ids."
      ),
      "1.2.0": (
          "captions: audio stored without its zero padding and without "
          "zlib (about half the build time); read through "
          "`sources.load_source` every record is unchanged. The other "
          "configs are unchanged."
      ),
      "1.3.0": (
          "sync, sync_dense: video and audio stored as raw bytes instead "
          "of zlib (array_record compresses each record itself): 25 % "
          "smaller, built in half the CPU time, read 1.7x faster; every "
          "record is unchanged. The other configs are unchanged."
      ),
  }
  BUILDER_CONFIGS = [
      AvDigitsConfig(
          name="pairs",
          description=(
              "One 32x32 handwritten digit and a 1 s noisy "
              "recording of its spoken word per example."
          ),
      ),
      AvDigitsConfig(
          name="pairs_heldout",
          kind="pairs",
          pairs_options=HELDOUT_PAIRS,
          description=(
              "`pairs` with three voices heard only in test (female "
              "variant, Caribbean accent, Klatt synthesiser) and "
              "5-20 dB SNR noise."
          ),
      ),
      AvDigitsConfig(
          name="captions",
          description=(
              "A 64x64 canvas of 2-4 digits and the spoken "
              "sequence of its digits in reading order."
          ),
      ),
      AvDigitsConfig(
          name="sync",
          version=SYNC_VERSION,
          release_notes=SYNC_RELEASE_NOTES,
          description=(
              "6.4 s videos in which digits flash at sparse "
              "moments, the spoken digit at exactly those "
              "moments, in a soundtrack 4.8 s longer on each "
              "side (Synchformer; see av_digits/sync.py)."
          ),
      ),
      AvDigitsConfig(
          name="sync_dense",
          version=SYNC_VERSION,
          release_notes=SYNC_RELEASE_NOTES,
          description=(
              "6.4 s videos of a moving digit with a tone whose "
              "pitch follows its height, in a soundtrack 4.8 s "
              "longer on each side (Synchformer)."
          ),
      ),
      *[
          AvDigitsConfig(
              name=name,
              kind="video_text",
              video_text_options=video_text.VideoTextOptions(**options),
              description=(
                  "8-frame videos of 1-3 moving digits with "
                  f"generated captions (MAMA); {doc}."
              ),
          )
          for name, options, doc in (
              ("video_text", {}, "clean pairs"),
              (
                  "video_text_noise20",
                  {"noise_fraction": 0.2},
                  "20 % noisy train pairs",
              ),
              (
                  "video_text_noise40",
                  {"noise_fraction": 0.4},
                  "40 % noisy train pairs",
              ),
              (
                  "video_text_longtail",
                  {"longtail_ratio": 20.0},
                  "long-tailed train classes and motions",
              ),
          )
      ],
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    if self.builder_config.example_kind in video_text.KINDS:
      return self.dataset_info_from_configs(
          features=video_text.features(),
          metadata=tfds.core.MetadataDict(),
          homepage=(
              "https://scikit-learn.org/stable/datasets/" "toy_dataset.html"
          ),
          disable_shuffling=True,
      )
    if self.builder_config.example_kind in sync.KINDS:
      features = sync.features(self.builder_config.example_kind)
    elif self.builder_config.example_kind == "pairs":
      features = _pairs_features()
    else:
      features = _captions_features()
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        homepage=("https://scikit-learn.org/stable/datasets/toy_dataset.html"),
        disable_shuffling=True,
    )

  def wrap_data_source(self, source: Any, split: str) -> Any:
    """``source`` as readers see it: `captions` audio zero-padded to
    `CAPTION_AUDIO_SAMPLES` (`sources.load_source` applies this)."""
    del split
    if self.builder_config.example_kind == "captions":
      return PaddedCaptionAudio(source)
    return source

  def wrapped_feature_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (`sources.feature_spec`) with the shapes readers see after
    `wrap_data_source`: `captions` audio is [CAPTION_AUDIO_SAMPLES]."""
    if self.builder_config.example_kind != "captions":
      return spec
    _, dtype = spec["audio"]
    return {**spec, "audio": ((CAPTION_AUDIO_SAMPLES,), dtype)}

  def _split_sizes(self) -> dict[str, int]:
    """Number of examples per split, in split order."""
    config = self.builder_config
    if config.example_kind in sync.KINDS:
      return sync.split_sizes(config.example_kind)
    if config.example_kind == "pairs":
      _, labels = digits_lib.load_digits()
      return {
          s: len(ix)
          for s, ix in digits_lib.split_indices(labels, config.seed).items()
      }
    sizes = dict(config.caption_split_sizes)
    if set(sizes) != set(digits_lib.SPLITS) or min(sizes.values()) < 1:
      raise ValueError(
          f"caption_split_sizes needs a positive size for each of "
          f"{digits_lib.SPLITS}, got {sizes}"
      )
    return {s: int(sizes[s]) for s in digits_lib.SPLITS}

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything ships in pip packages.
    config = self.builder_config
    if config.example_kind in video_text.KINDS:
      return video_text.split_generators(
          config.seed, config.video_text_options, self.info.metadata
      )
    sizes = self._split_sizes()
    first_ids = np.concatenate([[0], np.cumsum(list(sizes.values()))])
    return {
        split: self._generate_examples(split, int(first_id))
        for split, first_id in zip(digits_lib.SPLITS, first_ids)
    }

  def _generate_examples(self, split: str, first_id: int):
    config = self.builder_config
    if config.example_kind in sync.KINDS:
      kind = config.example_kind
      material = sync.split_material(kind, split, config.seed)
      yield from enumerate(
          _ordered_map(
              lambda i: sync.make_example(
                  kind, split, i, first_id + i, config.seed, material
              ),
              sync.split_sizes(kind)[split],
          )
      )
      return
    images, labels = digits_lib.load_digits()
    sources = digits_lib.split_indices(labels, config.seed)[split]
    if config.example_kind == "pairs":
      upsampled = digits_lib.resize_digits(images[sources], PAIRS_IMAGE_SIZE)

      def make(i: int):
        source = int(sources[i])
        return make_pair(
            source,
            split,
            i,
            first_id + i,
            config.seed,
            upsampled[i],
            int(labels[source]),
            config.pairs_options,
        )

      count = len(sources)
    else:

      def make(i: int):
        return make_caption(
            split, i, first_id + i, config.seed, sources, images, labels
        )

      count = self._split_sizes()[split]
    yield from enumerate(_ordered_map(make, count))
