r"""How fast Synchformer's sync transformer learns offsets from ideal tokens.

No extractors and no audio: each clip is a timeline of AV-digits-like
sparse events (gaps of 15–35 frames at 25 fps, a random digit each), and
each modality's per-frame features are what perfect extractors could give:
video [ink on, digit one-hot] during the 6-frame flash, audio [onset flag,
speech on, digit one-hot] during a 12-frame word. A 4.8 s crop (120
frames) of the video and the audio shifted by one of 21 offsets (±2 s, 0.2
s apart) is cut into 14 half-overlapping segments of 16 frames as in stage
2; a segment's token is its 16 frames' features flattened (so the timing
inside a segment is there), or with ``--time_tokens T`` T tokens of 16 / T
frames each. ``avjax.models.sync.SyncTransformer`` (the AV-digits width,
depth and heads) is trained on fresh draws with AdamW (lr 1e-3, warm-up
50 steps, cosine decay to lr / 20, clipping at 1 as the config's stage 2)
and its offset top-1 on 1,000 fixed draws printed every ``--every`` steps:
if it learns slowly here, the transformer, not the extractors, is what
holds stage 2 back. With ``--data dense`` the timeline is `sync_dense`'s
instead: per frame, video [height, across] of the moving digit and audio
[log pitch, loudness] of its tone, both in [-1, 1] (``smooth_path``, the
builder's own paths), so every frame carries the offset and nothing marks
an event.

  python docs/diagnostics/synchformer_ideal_tokens.py --positions sequence
  python docs/diagnostics/synchformer_ideal_tokens.py --positions shared_time
  python docs/diagnostics/synchformer_ideal_tokens.py --data dense
  python docs/diagnostics/synchformer_ideal_tokens.py --data dense \
      --steps 6000 --batch 64

``--lr``, ``--width``, ``--layers`` and ``--heads`` change the peak
learning rate and the transformer's size (docs/results/synchformer.md,
"Dense offsets: examples, not steps").
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax
from absl import app
from absl import flags

from avjax.data.builders.av_digits import sync as sync_data
from avjax.models import sync

_DATA = flags.DEFINE_enum(
    "data", "sparse", ["sparse", "dense"], "Timeline: `sync` or `sync_dense`."
)
_POSITIONS = flags.DEFINE_enum(
    "positions", "sequence", ["sequence", "shared_time"], "model.sync.positions"
)
_TIME_TOKENS = flags.DEFINE_integer(
    "time_tokens", 0, "Tokens per segment (0: one token per segment)."
)
_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps.")
_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_SEED = flags.DEFINE_integer("seed", 0, "Init and training-draw seed.")
_EVERY = flags.DEFINE_integer("every", 250, "Evaluate every this many steps.")
_LR = flags.DEFINE_float("lr", 1e-3, "Peak learning rate.")
_WIDTH = flags.DEFINE_integer("width", 64, "Sync transformer width.")
_LAYERS = flags.DEFINE_integer("layers", 2, "Sync transformer layers.")
_HEADS = flags.DEFINE_integer("heads", 4, "Sync transformer heads.")

CROP, SEGMENT, STRIDE = 120, 16, 8
NUM_SEGMENTS = (CROP - SEGMENT) // STRIDE + 1  # 14
NUM_OFFSETS, OFFSET_FRAMES = 21, 5  # ±2 s in 0.2 s steps at 25 fps
FLASH_FRAMES, WORD_FRAMES, MARGIN = 6, 12, 60
NOISE = 0.1


def dense_features(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Per-frame video [L, 2] and audio [L, 2] features of a dense timeline.

  Video: the digit's height and horizontal place in [-1, 1]; audio: the
  tone's log pitch and loudness mapped back to [-1, 1] (the builder maps
  height and place affinely to them), i.e. the same two curves.
  """
  times = np.arange(CROP + 2 * MARGIN) / 25.0
  video = np.stack(
      [sync_data.smooth_path(rng, times), sync_data.smooth_path(rng, times)],
      axis=1,
  ).astype(np.float32)
  return video, video.copy()


def clip_features(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Per-frame video [L, 11] and audio [L, 12] features of one timeline."""
  if _DATA.value == "dense":
    return dense_features(rng)
  length = CROP + 2 * MARGIN
  video = np.zeros((length, 11), np.float32)
  audio = np.zeros((length, 12), np.float32)
  onset = int(rng.integers(0, 35)) - 35
  while onset < length:
    digit = int(rng.integers(10))
    flash = slice(max(onset, 0), max(onset + FLASH_FRAMES, 0))
    word = slice(max(onset, 0), max(onset + WORD_FRAMES, 0))
    video[flash, 0] = 1.0
    video[flash, 1 + digit] = 1.0
    audio[word, 1] = 1.0
    audio[word, 2 + digit] = 1.0
    if onset >= 0:
      audio[onset, 0] = 1.0
    onset += int(rng.integers(15, 36))
  return video, audio


def tokens(frames: np.ndarray, time_tokens: int) -> np.ndarray:
  """[B, CROP, F] → [B, 14, 16·F] or [B, 14, T, 16/T·F]."""
  b = frames.shape[0]
  segments = np.stack(
      [
          frames[:, i * STRIDE : i * STRIDE + SEGMENT]
          for i in range(NUM_SEGMENTS)
      ],
      axis=1,
  )
  if time_tokens:
    return segments.reshape((b, NUM_SEGMENTS, time_tokens, -1))
  return segments.reshape((b, NUM_SEGMENTS, -1))


def draw(rng: np.random.Generator, n: int, time_tokens: int):
  """n examples: visual tokens, audio tokens, offset classes [n]."""
  videos, audios, labels = [], [], []
  for _ in range(n):
    video, audio = clip_features(rng)
    label = int(rng.integers(NUM_OFFSETS))
    shift = (label - NUM_OFFSETS // 2) * OFFSET_FRAMES
    videos.append(video[MARGIN : MARGIN + CROP])
    audios.append(audio[MARGIN + shift : MARGIN + shift + CROP])
    labels.append(label)
  noisy = lambda x: x + NOISE * rng.standard_normal(x.shape).astype(np.float32)
  return (
      tokens(noisy(np.stack(videos)), time_tokens),
      tokens(noisy(np.stack(audios)), time_tokens),
      np.asarray(labels),
  )


def main(argv):
  del argv
  t = _TIME_TOKENS.value
  model = sync.SyncTransformer(
      width=_WIDTH.value,
      num_layers=_LAYERS.value,
      num_heads=_HEADS.value,
      mlp_ratio=2.0,
      dropout=0.0,
      num_offsets=NUM_OFFSETS,
      positions=_POSITIONS.value,
  )
  test_v, test_a, test_y = draw(np.random.default_rng(999), 1000, t)
  params = model.init(jax.random.key(_SEED.value), test_v[:2], test_a[:2])
  steps = _STEPS.value
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, _LR.value, 50, steps, _LR.value / 20
  )
  tx = optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.adamw(schedule, weight_decay=1e-4),
  )
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, visual, audio, labels):
    def loss_fn(p):
      logits = model.apply(p, visual, audio)["offset"]
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels
      ).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def accuracy(params):
    logits = model.apply(params, test_v, test_a)["offset"]
    return (logits.argmax(-1) == test_y).mean()

  rng = np.random.default_rng(_SEED.value)
  start = time.time()
  curve = []
  for i in range(1, steps + 1):
    params, opt_state, _ = step(params, opt_state, *draw(rng, _BATCH.value, t))
    if i % _EVERY.value == 0:
      curve.append(f"{i}: {float(accuracy(params)):.3f}")
  print(
      f"data={_DATA.value} positions={_POSITIONS.value} time_tokens={t} "
      f"lr={_LR.value} width={_WIDTH.value} layers={_LAYERS.value} "
      f"seed={_SEED.value} "
      f"({time.time() - start:.0f} s): offset top-1 by step " + ", ".join(curve)
  )


if __name__ == "__main__":
  app.run(main)
