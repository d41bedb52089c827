"""Heads on top of the encoders' embeddings.

* ``CorrespondenceHead``: the classic audio-visual correspondence (AVC)
  classifier of L3-Net (Arandjelović & Zisserman, 2017): the audio and visual
  embeddings of a candidate pair are fused and a small MLP outputs one logit,
  "do these belong together?".
* ``LinearClassifier``: one dense layer from an embedding to class logits
  (the supervised baseline's head; the linear probe fits its own).

Fusion (a choice the AVC papers leave to the architecture): ``concat`` is
L3-Net's [a, v]; ``concat_product`` appends the element-wise product a ⊙ v,
which lets a one-hidden-layer head express agreement between the two
embeddings directly; ``distance`` is AVE-Net's (Arandjelović & Zisserman,
"Objects that Sound", 2018): the Euclidean distance between the
L2-normalised embeddings is the only input of the head, so the task can only
be solved by aligning the two embedding spaces (useful for retrieval and for
mining negatives across modalities).

Heads compute in their ``dtype`` with float32 parameters and return float32
logits (``avjax.models.precision``).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.models import encoders

FUSIONS = ("concat", "concat_product", "distance")


class CorrespondenceHead(nn.Module):
  """Binary correspondence logit for (audio, visual) embedding pairs.

  Attributes:
    hidden_dims: widths of the hidden layers (GELU) after fusion; AVE-Net
      uses none with ``distance``.
    fusion: ``concat`` ([a, v]), ``concat_product`` ([a, v, a ⊙ v]) or
      ``distance`` ([‖â − v̂‖₂], â, v̂ L2-normalised; the distance is
      computed in float32).
    dtype: compute dtype of the dense layers.
  """

  hidden_dims: Sequence[int] = (128,)
  fusion: str = "concat"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, audio: jax.Array, visual: jax.Array) -> jax.Array:
    """Logits of correspondence.

    Args:
      audio: float [..., E] audio embeddings.
      visual: float [..., E] visual embeddings, same shape as ``audio``.

    Returns:
      float32 [...] logits; sigmoid(logit) = P(pair corresponds).
    """
    if audio.shape != visual.shape:
      raise ValueError(
          f"CorrespondenceHead: audio {audio.shape} and visual "
          f"{visual.shape} embeddings must have the same shape"
      )
    if self.fusion == "concat":
      x = jnp.concatenate([audio, visual], axis=-1)
    elif self.fusion == "concat_product":
      x = jnp.concatenate([audio, visual, audio * visual], axis=-1)
    elif self.fusion == "distance":
      diff = encoders.l2_normalize(audio) - encoders.l2_normalize(visual)
      # sqrt(x + eps): finite gradient for identical embeddings.
      x = jnp.sqrt(jnp.sum(diff * diff, axis=-1, keepdims=True) + 1e-12)
    else:
      raise ValueError(
          f"CorrespondenceHead.fusion={self.fusion!r} is not one "
          f"of {list(FUSIONS)}"
      )
    for width in self.hidden_dims:
      x = nn.gelu(nn.Dense(width, dtype=self.dtype)(x))
    return nn.Dense(1, dtype=self.dtype)(x)[..., 0].astype(jnp.float32)


class LinearClassifier(nn.Module):
  """Class logits from embeddings: [..., E] → [..., num_classes]."""

  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """float32 logits; computed in ``dtype``."""
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
