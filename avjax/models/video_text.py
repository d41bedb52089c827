"""MAMA's encoders: a video encoder and a caption (text) encoder.

* ``VideoEncoder``: a frame encoder applied to every frame independently
  (non-overlapping p×p patches → Dense + GELU, optional 3×3 convs of stride
  2 + LayerNorm + GELU, then the flattened map → Dense, so the frame
  feature keeps *where* things are, which motion needs; patches first
  because XLA's CPU convolutions cost far more than a matmul of the same
  work)
  followed by a temporal transformer over the frame
  features with learned frame-position embeddings, masked mean pooling and
  a linear projection to the joint space.
* ``TextEncoder``: token embeddings + sinusoidal positions, a small
  transformer (``avjax.models.transformer``), masked mean pooling and a
  linear projection.

The paper's encoders are pretrained video/language transformers; these are
small ones trained from scratch, sized by ``config.model``. Embeddings are
not normalised here (the losses normalise).

Both encoders compute in their ``dtype`` with float32 parameters and return
float32 embeddings (``avjax.models.precision``).

Shapes: B batch, T frames, H×W pixels, C channels, L tokens, E joint width.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.models import transformer
from avjax.models.encoders import frame_patches


def frames_to_float(frames: jax.Array) -> jax.Array:
  """uint8 frames → float32 in [0, 1]; float frames are kept as they are."""
  if jnp.issubdtype(frames.dtype, jnp.integer):
    return frames.astype(jnp.float32) / 255.0
  return frames.astype(jnp.float32)


class VideoEncoder(nn.Module):
  """Frames [B, T, H, W(, C)] (+ frame mask [B, T]) → embedding [B, E].

  Attributes:
    patch_size: p of the per-frame patch embedding (must divide H and W).
    patch_features: width of the patch embedding.
    conv_features: channels of the per-frame 3×3 stride-2 convs after it.
    frame_dim: width of the frame features (and of the transformer).
    num_layers / num_heads / mlp_ratio / dropout: temporal transformer.
    max_frames: size of the learned frame-position table (≥ T).
    embed_dim: E.
    dtype: compute dtype.
  """

  patch_size: int = 4
  patch_features: int = 32
  conv_features: Sequence[int] = ()
  frame_dim: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: float = 2.0
  dropout: float = 0.0
  max_frames: int = 32
  embed_dim: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      frames: jax.Array,
      frame_mask: jax.Array | None = None,
      *,
      train: bool = False,
  ) -> jax.Array:
    """Embeds videos.

    Args:
      frames: [B, T, H, W] grey or [B, T, H, W, C] frames, uint8 (0..255)
        or float.
      frame_mask: bool [B, T], True for real frames (None: all real).
      train: enables dropout.

    Returns:
      float32 [B, E].
    """
    if frames.ndim == 4:
      frames = frames[..., None]
    if frames.ndim != 5:
      raise ValueError(
          "VideoEncoder expects frames [B, T, H, W] or "
          f"[B, T, H, W, C], got shape {frames.shape}"
      )
    batch, num_frames = frames.shape[:2]
    if num_frames == 0:
      raise ValueError(
          f"VideoEncoder got videos with zero frames (shape " f"{frames.shape})"
      )
    if num_frames > self.max_frames:
      raise ValueError(
          f"videos have {num_frames} frames, more than "
          f"config.model.video.max_frames={self.max_frames}"
      )
    x = frame_patches(
        frames_to_float(frames).reshape(
            (batch * num_frames,) + frames.shape[2:]
        ),
        self.patch_size,
        "config.model.video.patch_size",
    )
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, name=name)
    x = nn.gelu(dense(self.patch_features, "patch_embed")(x))
    for i, f in enumerate(self.conv_features):
      x = nn.Conv(
          f,
          (3, 3),
          strides=(2, 2),
          padding=((1, 1), (1, 1)),
          dtype=self.dtype,
          name=f"conv_{i}",
      )(x)
      x = nn.gelu(nn.LayerNorm(dtype=self.dtype, name=f"conv_norm_{i}")(x))
    x = dense(self.frame_dim, "frame_proj")(x.reshape(batch, num_frames, -1))
    pos = self.param(
        "frame_position",
        nn.initializers.normal(0.02),
        (self.max_frames, self.frame_dim),
    )
    x = x + pos[None, :num_frames]
    if frame_mask is None:
      frame_mask = jnp.ones((batch, num_frames), bool)
    x = transformer.TransformerEncoder(
        self.num_layers,
        self.num_heads,
        self.mlp_ratio,
        self.dropout,
        self.dtype,
        name="temporal",
    )(x, frame_mask, train=train)
    return dense(self.embed_dim, "projection")(
        transformer.masked_mean(x, frame_mask)
    ).astype(jnp.float32)


class TextEncoder(nn.Module):
  """Token ids [B, L] + mask [B, L] → embedding [B, E].

  Attributes:
    vocab_size: size of the token table (the tokenizer's).
    width: token width D.
    num_layers / num_heads / mlp_ratio / dropout: transformer settings.
    embed_dim: E.
    dtype: compute dtype.
  """

  vocab_size: int
  width: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: float = 2.0
  dropout: float = 0.0
  embed_dim: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self, tokens: jax.Array, mask: jax.Array, *, train: bool = False
  ) -> jax.Array:
    """Embeds captions; padding (mask False) is never read. → [B, E]."""
    if tokens.ndim != 2 or mask.shape != tokens.shape:
      raise ValueError(
          f"TextEncoder expects tokens and mask [B, L]; got "
          f"{tokens.shape} and {mask.shape}"
      )
    x = nn.Embed(
        self.vocab_size, self.width, dtype=self.dtype, name="token_embed"
    )(tokens)
    x = x + transformer.sinusoidal_positions(tokens.shape[1], self.width)[None]
    x = transformer.TransformerEncoder(
        self.num_layers,
        self.num_heads,
        self.mlp_ratio,
        self.dropout,
        self.dtype,
        name="transformer",
    )(x, mask, train=train)
    return nn.Dense(self.embed_dim, dtype=self.dtype, name="projection")(
        transformer.masked_mean(x, mask)
    ).astype(jnp.float32)


class VideoTextEncoders(nn.Module):
  """Both encoders under one parameter tree {'video', 'text'}.

  ``__call__(frames, frame_mask, tokens, token_mask)`` → (video [B, E] or
  None, text [B, E] or None); pass None to skip a modality (galleries).
  ``init`` needs both.
  """

  video: VideoEncoder
  text: TextEncoder

  def __call__(
      self,
      frames: jax.Array | None,
      frame_mask: jax.Array | None,
      tokens: jax.Array | None,
      token_mask: jax.Array | None,
      *,
      train: bool = False,
  ) -> tuple[jax.Array | None, jax.Array | None]:
    v = None if frames is None else self.video(frames, frame_mask, train=train)
    t = None if tokens is None else self.text(tokens, token_mask, train=train)
    return v, t
