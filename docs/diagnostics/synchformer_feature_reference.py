r"""How much of the offset a trained Synchformer's extractors carry.

The non-learned reference (``avjax.eval.sync_reference``) correlates
hand-made per-frame envelopes. This script applies the same correlation to
the *learned* per-frame features of a workdir's frozen extractors (the
outputs of each segment's aggregation transformer at its frame tokens,
non-overlapping 0.64 s segments as in stage 1), on the test draws the
evaluation scores: if it reads the offsets, the extractors carry them and
the stage-2 transformer is what falls short. ``--random`` does the same with
freshly initialised extractors (what the architecture gives unlearned).

  python docs/diagnostics/synchformer_feature_reference.py \
      --workdir runs/tables/synchformer_default/default/seed1

Prints offset top-1 / ±1 class of the feature correlation, of the
hand-made reference and of the model's stage-2 transformer on the same
draws, and each one's top-1 by the size of the offset.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from avjax import inference
from avjax.eval import sync_reference

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained Synchformer run.")
_RANDOM = flags.DEFINE_bool(
    "random", False, "Freshly initialised extractors instead of the run's."
)
_SPLIT = flags.DEFINE_string("split", "test", "Evaluation split.")
flags.mark_flag_as_required("workdir")


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
  pred = scores.argmax(axis=1)
  return float(np.mean(pred == labels)), float(
      np.mean(np.abs(pred - labels) <= 1)
  )


def main(argv):
  del argv
  model = inference.load(_WORKDIR.value)
  method, params = model.method, model.params
  if _RANDOM.value:
    fresh = method.init_params(
        jax.random.PRNGKey(12345),
        {k: np.asarray(v[:2]) for k, v in method.eval_data("test").items()},
    )
    params = dict(params, visual=fresh["visual"], audio=fresh["audio"])
  data = method.eval_data(_SPLIT.value)
  length = method.segment_length

  @jax.jit
  def frame_features(batch):
    video, mel = method._inputs(batch, "shifted")  # pylint: disable=protected-access
    fv, fa = method.features(
        params, video, mel, length, time_tokens=length
    )  # [B, S, length, D]: one token per frame
    flat = lambda x: x.reshape((x.shape[0], -1, x.shape[-1]))
    return flat(fv), flat(fa)

  keys = ("video", "audio_shifted")
  vis, aud = [], []
  n = len(data["offset_label"])
  for lo in range(0, n, 100):
    batch = {k: jnp.asarray(data[k][lo : lo + 100]) for k in keys}
    v, a = frame_features(batch)
    vis.append(np.asarray(v, np.float64))
    aud.append(np.asarray(a, np.float64))
  visual, audio = np.concatenate(vis), np.concatenate(aud)
  spec = method.spec
  offsets = np.asarray(spec.offsets())
  shifts = np.round(offsets * spec.fps).astype(int)
  labels = np.asarray(data["offset_label"])
  learned = sync_reference.correlate(visual, audio, shifts)
  reference = method.reference_scores(_SPLIT.value)["offset"]
  inputs, _ = method.eval_inputs(data)
  predict = jax.jit(method.predict)
  logits = np.concatenate(
      [
          np.asarray(
              predict(
                  params,
                  {k: jnp.asarray(v[lo : lo + 100]) for k, v in inputs.items()},
              )["offset"]
          )
          for lo in range(0, n, 100)
      ]
  )
  what = "random extractors" if _RANDOM.value else "trained extractors"
  print(f"{n} {_SPLIT.value} draws of {_WORKDIR.value}")
  magnitude = np.round(np.abs(offsets[labels]), 1)
  bins = np.unique(magnitude)
  print(
      f"  {'':45s} {'':24s} top-1 by |offset| (s): "
      + " ".join(f"{b:4.1f}" for b in bins)
  )
  for name, scores in (
      (f"feature correlation, {what}", learned),
      ("hand-made reference (sync_reference)", reference),
      ("stage-2 transformer", logits),
  ):
    top1, tol1 = _accuracy(scores, labels)
    hit = scores.argmax(axis=1) == labels
    by_bin = " ".join(f"{hit[magnitude == b].mean():4.2f}" for b in bins)
    print(
        f"  {name:45s} top-1 {top1:.3f}  ±1 class {tol1:.3f}"
        f"                        {by_bin}"
    )


if __name__ == "__main__":
  app.run(main)
