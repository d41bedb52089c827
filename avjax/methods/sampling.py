"""In-batch partner sampling for audio-visual correspondence (AVC).

For every audio anchor ``i`` of a batch of ``B`` paired clips, a sampler
picks the index ``j`` of the clip whose *visual* stream is paired with it:

=================  =========================================================
``own``            positive: the anchor's own paired clip, ``j = i``.
``soft``           soft positive: another clip (different clip id) of the
                   anchor's class, uniformly at random.
``random``         random negative: any other clip (different clip id),
                   uniformly at random, whatever its class.
``easy``           easy negative: the different-class clip *farthest* from
                   the anchor under a given distance (embedding or label
                   distance).
``hard``           hard negative: the different-class clip *closest* to the
                   anchor under the current embedding distance.
=================  =========================================================

``sample_partners`` combines them: one positive and K distinct negatives per
anchor, each kind drawn from a strategy mix (``{"own": 0.5, "soft": 0.5}``).

All functions are pure ``jax.numpy`` on fixed shapes (no Python control flow
on values), so they run inside the jitted train step; a partner is a function
of (batch, PRNG key) only, hence deterministic for a seed and unchanged by
checkpoint/resume (the loop's step key is ``fold_in(base, step)``). Ties
(equal scores, e.g. all candidates of uniform sampling) are broken uniformly
at random with the key.

Fallback when no candidate exists (e.g. a class with a single member in the
batch has no soft positive; a single-class batch has no easy/hard negative):
the sampler returns the anchor's own index ``i`` **and** ``valid[i] = False``.
Callers must read ``valid``: ``sample_partners`` turns an invalid soft
positive into the anchor's own positive (``own``), and an invalid easy/hard
negative into a random negative, and an invalid random negative into a
masked-out pair; it reports which kind was finally used, so fallbacks are
counted and logged, never silent. A valid partner is never the anchor itself
(never the same batch index, never the same clip id).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

POSITIVE_KINDS = ("own", "soft")
NEGATIVE_KINDS = ("random", "easy", "hard")


def choose(
    key: jax.Array, candidates: jax.Array, score: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """Per row, the candidate with the highest score, ties broken at random.

  Args:
    key: PRNG key.
    candidates: bool [B, N], which columns row ``i`` may pick.
    score: float [B, N] (higher is preferred), or None for uniform sampling
      over the candidates.

  Returns:
    (index int32 [B], valid bool [B]); where a row has no candidate, index is
    the row's own index ``i`` (clipped to N − 1) and valid is False.
  """
  b, n = candidates.shape
  if score is None:
    score = jnp.zeros((b, n), jnp.float32)
  score = jax.lax.stop_gradient(score)
  masked = jnp.where(candidates, score, -jnp.inf)
  best = jnp.max(masked, axis=1, keepdims=True)
  ties = candidates & (masked == best)
  noise = jax.random.uniform(key, (b, n))
  index = jnp.argmax(jnp.where(ties, noise, -1.0), axis=1).astype(jnp.int32)
  valid = jnp.any(candidates, axis=1)
  own = jnp.minimum(jnp.arange(b, dtype=jnp.int32), n - 1)
  return jnp.where(valid, index, own), valid


def _other_clip(
    clip_ids: jax.Array, exclude: jax.Array | None = None
) -> jax.Array:
  """bool [B, B]: column j is a different batch entry with another clip id
  (and not excluded)."""
  b = clip_ids.shape[0]
  out = (clip_ids[:, None] != clip_ids[None, :]) & ~jnp.eye(b, dtype=bool)
  return out if exclude is None else out & ~exclude


def _same_class(labels: jax.Array) -> jax.Array:
  return labels[:, None] == labels[None, :]


def positive(labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The anchor's own pair: (arange(B) int32 [B], all-True [B])."""
  b = labels.shape[0]
  return jnp.arange(b, dtype=jnp.int32), jnp.ones((b,), bool)


def soft_positive(
    key: jax.Array, labels: jax.Array, clip_ids: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Another clip of the anchor's class, uniformly at random.

  Args:
    key: PRNG key.
    labels: int [B] class of each clip (annotation or pseudo-labels).
    clip_ids: int [B] clip identifiers.

  Returns:
    (index int32 [B], valid bool [B]). Fallback: an anchor whose class has no
    other clip in the batch gets its own index and valid False.
  """
  return choose(key, _same_class(labels) & _other_clip(clip_ids))


def random_negative(
    key: jax.Array,
    labels: jax.Array,
    clip_ids: jax.Array,
    exclude: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Any other clip, uniformly at random (class ignored, as in plain AVC).

  ``labels`` is accepted for a uniform signature and not used; ``exclude``
  (bool [B, B]) removes candidates (e.g. negatives already drawn). Fallback:
  no candidate left gives own index and valid False.
  """
  del labels
  return choose(key, _other_clip(clip_ids, exclude))


def easy_negative(
    key: jax.Array,
    labels: jax.Array,
    clip_ids: jax.Array,
    distances: jax.Array,
    exclude: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """The different-class clip farthest from the anchor.

  Args:
    key: PRNG key (breaks ties, e.g. equal label distances).
    labels: int [B].
    clip_ids: int [B].
    distances: float [B, B], distance from anchor i to candidate clip j
      (embedding distance, or a class distance ``D[labels_i, labels_j]``).
    exclude: optional bool [B, B], candidates to leave out.

  Returns:
    (index int32 [B], valid bool [B]); fallback (no other class in the
    batch): own index, valid False.
  """
  return choose(
      key, ~_same_class(labels) & _other_clip(clip_ids, exclude), distances
  )


def hard_negative(
    key: jax.Array,
    labels: jax.Array,
    clip_ids: jax.Array,
    distances: jax.Array,
    exclude: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """The different-class clip closest to the anchor (ties at random).

  Same arguments, returns and fallback as ``easy_negative``.
  """
  return choose(
      key, ~_same_class(labels) & _other_clip(clip_ids, exclude), -distances
  )


def label_distances(
    labels: jax.Array, class_distances: jax.Array | None = None
) -> jax.Array:
  """float32 [B, B] label distance between batch clips.

  Args:
    labels: int [B] in [0, C).
    class_distances: float [C, C] distance between classes, or None for
      |y_i − y_j| (meaningful for ordinal classes such as digits).
  """
  if class_distances is None:
    return jnp.abs(labels[:, None] - labels[None, :]).astype(jnp.float32)
  return jnp.asarray(class_distances, jnp.float32)[
      labels[:, None], labels[None, :]
  ]


def _mix(
    key: jax.Array,
    weights: Mapping[str, float],
    kinds: tuple[str, ...],
    b: int,
    field: str,
) -> jax.Array:
  """int32 [B] per-anchor kind index drawn ∝ weights (static floats)."""
  unknown = sorted(set(weights) - set(kinds))
  if unknown:
    raise ValueError(
        f"{field}: unknown kind(s) {unknown}; valid: " f"{list(kinds)}"
    )
  w = [float(weights.get(k, 0.0)) for k in kinds]
  if min(w) < 0 or sum(w) <= 0:
    raise ValueError(
        f"{field}: weights {dict(weights)} must be >= 0 with a " "positive sum"
    )
  logits = jnp.log(jnp.asarray(w, jnp.float32))
  return jax.random.categorical(key, logits, shape=(b,)).astype(jnp.int32)


def sample_partners(
    key: jax.Array,
    labels: jax.Array,
    clip_ids: jax.Array,
    positives: Mapping[str, float],
    negatives: Mapping[str, float],
    distances: jax.Array | None = None,
    easy_distances: jax.Array | None = None,
    num_negatives: int = 1,
) -> dict[str, jax.Array]:
  """One positive and ``num_negatives`` negatives per anchor, by a mix.

  Each anchor draws its positive kind from ``positives`` and the kind of
  each of its negatives from ``negatives`` (weights ∝ ratios, e.g.
  ``{"own": 0.5, "soft": 0.5}``), independently; kinds with weight 0 are
  never sampled. An anchor's negatives are distinct: each is drawn among the
  candidates not taken by its earlier negatives (so K hard negatives are the
  K closest different-class clips), and never shares a clip id with its
  soft positive.

  Fallback chain (so every anchor keeps a well-defined pair): soft → own;
  easy/hard → random; random without any candidate left → masked out
  (``negative_valid`` False). The ``*_kind`` outputs give the kind actually
  used (index into POSITIVE_KINDS / NEGATIVE_KINDS), ``*_fallback`` whether
  the drawn kind had to be replaced.

  Args:
    key: PRNG key of this step.
    labels: int [B] classes used for sampling.
    clip_ids: int [B] clip ids.
    positives: {kind: weight} over POSITIVE_KINDS.
    negatives: {kind: weight} over NEGATIVE_KINDS.
    distances: float [B, B] anchor→candidate embedding distances; required
      when ``hard`` (or ``easy`` without ``easy_distances``) has weight > 0.
    easy_distances: float [B, B] distances for easy negatives (e.g.
      ``label_distances``); defaults to ``distances``.
    num_negatives: K, negatives per anchor (static).

  Returns:
    dict: positive, positive_kind int32 [B]; positive_fallback bool [B];
    negative, negative_kind int32 [B, K]; negative_valid, negative_fallback
    bool [B, K].
  """
  if num_negatives < 1:
    raise ValueError(f"num_negatives={num_negatives} must be >= 1")
  b = labels.shape[0]
  k_pos, k_soft, k_neg = jax.random.split(key, 3)
  p_kind = _mix(k_pos, positives, POSITIVE_KINDS, b, "positives")
  own, _ = positive(labels)
  if positives.get("soft", 0.0) > 0:
    soft, soft_ok = soft_positive(k_soft, labels, clip_ids)
  else:
    soft, soft_ok = own, jnp.zeros((b,), bool)
  want_soft = p_kind == POSITIVE_KINDS.index("soft")
  use_soft = want_soft & soft_ok
  out = {
      "positive": jnp.where(use_soft, soft, own),
      "positive_kind": jnp.where(
          use_soft, POSITIVE_KINDS.index("soft"), POSITIVE_KINDS.index("own")
      ).astype(jnp.int32),
      "positive_fallback": want_soft & ~soft_ok,
  }

  dist = {
      "easy": distances if easy_distances is None else easy_distances,
      "hard": distances,
  }
  for name in ("easy", "hard"):
    if negatives.get(name, 0.0) > 0 and dist[name] is None:
      raise ValueError(
          f"negatives[{name!r}] > 0 needs anchor→candidate "
          "distances; pass distances=[B, B]"
      )
  col = jnp.arange(b)
  # A soft positive's clip is never also one of the anchor's negatives (the
  # same pair labelled 1 and 0; a contrastive loss could not go below log 2).
  clip_ids = jnp.asarray(clip_ids)
  positive_clip = clip_ids[out["positive"]]
  taken = use_soft[:, None] & (clip_ids[None, :] == positive_clip[:, None])
  negs = []
  for key_k in jax.random.split(k_neg, num_negatives):
    k_mix, k_rand, k_easy, k_hard = jax.random.split(key_k, 4)
    n_kind = _mix(k_mix, negatives, NEGATIVE_KINDS, b, "negatives")
    cands = [random_negative(k_rand, labels, clip_ids, taken)]
    for name, fn, k in (
        ("easy", easy_negative, k_easy),
        ("hard", hard_negative, k_hard),
    ):
      if negatives.get(name, 0.0) > 0:
        cands.append(fn(k, labels, clip_ids, dist[name], taken))
      else:
        cands.append((own, jnp.zeros((b,), bool)))
    idx = jnp.stack([c[0] for c in cands])  # [3, B]
    ok = jnp.stack([c[1] for c in cands])  # [3, B]
    drawn_ok = ok[n_kind, col]
    kind = jnp.where(drawn_ok, n_kind, NEGATIVE_KINDS.index("random")).astype(
        jnp.int32
    )
    neg, valid = idx[kind, col], ok[kind, col]
    taken = taken | (jax.nn.one_hot(neg, b, dtype=bool) & valid[:, None])
    negs.append((neg, kind, valid, ~drawn_ok))
  for i, name in enumerate(
      ("negative", "negative_kind", "negative_valid", "negative_fallback")
  ):
    out[name] = jnp.stack([n[i] for n in negs], axis=1)
  return out
