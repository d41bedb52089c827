"""Small per-modality encoders mapping inputs into a shared embedding space.

All are Flax Linen modules used through ``init``/``apply``; inputs are
channel-last. Normalisation is LayerNorm/GroupNorm (no batch statistics), so
``apply`` is a pure function of (params, inputs) and identical under any data
sharding. Each encoder computes in its ``dtype`` with float32 parameters
and returns float32 (``avjax.models.precision``).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.losses.distances import safe_l2_normalize as l2_normalize


class ConvEncoder(nn.Module):
  """2-D conv net: [B, H, W, C] → [B, embed_dim].

  For images ([B, H, W, 1]). Each block: 3×3 conv with stride 2 (halving H
  and W while they exceed 1), GroupNorm, GELU; then global average pooling, a
  hidden dense layer and the output projection. Strided convolutions instead
  of conv + pooling keep the cost low on CPUs.

  Attributes:
    features: channels of the conv blocks.
    hidden_dim: width of the dense layer after pooling.
    embed_dim: output width.
    dropout: dropout rate before the projection.
    dtype: compute dtype (parameters and the output are float32).
  """

  features: Sequence[int] = (32, 64, 128)
  hidden_dim: int = 256
  embed_dim: int = 128
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if x.ndim == 3:
      x = x[..., None]
    if x.ndim != 4:
      raise ValueError(
          f"ConvEncoder expects [B, H, W, C] or [B, H, W], got "
          f"shape {x.shape}"
      )
    for f in self.features:
      strides = tuple(2 if n > 1 else 1 for n in x.shape[1:3])
      x = nn.Conv(f, (3, 3), strides=strides, dtype=self.dtype)(x)
      x = nn.gelu(nn.GroupNorm(num_groups=min(8, f), dtype=self.dtype)(x))
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    x = nn.gelu(nn.Dense(self.hidden_dim, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.embed_dim, dtype=self.dtype)(x).astype(jnp.float32)


class TimeConvEncoder(nn.Module):
  """1-D conv net over time on log-mels: [B, T, n_mels] → [B, embed_dim].

  Mel bins are the input channels. Each block: a width-``kernel_size``
  convolution with stride 2 over time, GroupNorm, GELU; then a masked mean
  over time (``mask`` [B, T] marks valid frames; padding never counts), a
  hidden dense layer and the output projection.
  """

  features: Sequence[int] = (64, 128)
  kernel_size: int = 5
  hidden_dim: int = 256
  embed_dim: int = 128
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self, x: jax.Array, mask: jax.Array | None = None, *, train: bool = False
  ) -> jax.Array:
    if x.ndim != 3:
      raise ValueError(
          f"TimeConvEncoder expects [B, T, n_mels], got shape " f"{x.shape}"
      )
    if mask is None:
      mask = jnp.ones(x.shape[:2], bool)
    for f in self.features:
      x = nn.Conv(f, (self.kernel_size,), strides=(2,), dtype=self.dtype)(x)
      x = nn.gelu(nn.GroupNorm(num_groups=min(8, f), dtype=self.dtype)(x))
      mask = mask[:, ::2][:, : x.shape[1]]
    x = x.astype(jnp.float32)
    w = mask.astype(x.dtype)[..., None]
    x = jnp.sum(x * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
    x = nn.gelu(nn.Dense(self.hidden_dim, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.embed_dim, dtype=self.dtype)(x).astype(jnp.float32)


class MLPEncoder(nn.Module):
  """MLP on feature vectors: [B, D_in] → [B, embed_dim].

  For pre-extracted clip features (VGGish audio, Inception visual vectors).
  """

  hidden_dims: Sequence[int] = (512,)
  embed_dim: int = 128
  dropout: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if x.ndim != 2:
      raise ValueError(f"MLPEncoder expects [B, D], got shape {x.shape}")
    x = nn.LayerNorm(dtype=self.dtype)(x)
    for h in self.hidden_dims:
      x = nn.gelu(nn.Dense(h, dtype=self.dtype)(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.embed_dim, dtype=self.dtype)(x).astype(jnp.float32)


def frame_patches(frames: jax.Array, patch: int, setting: str) -> jax.Array:
  """Cuts frames into non-overlapping square patches, flattened in place.

  Args:
    frames: [N, H, W, C].
    patch: p, the patch side in pixels (must divide H and W).
    setting: the config key of ``patch``, named in the error.

  Returns:
    [N, H/p, W/p, p·p·C]: each patch's pixels, row-major then channel.

  Raises:
    ValueError: naming the frame size and ``setting`` when p does not
      divide it.
  """
  n, h, w, c = frames.shape
  if h % patch or w % patch:
    raise ValueError(
        f"frames of {h}x{w} are not divisible by {setting}={patch}"
    )
  x = frames.reshape(n, h // patch, patch, w // patch, patch, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(
      n, h // patch, w // patch, patch * patch * c
  )


def make_encoder(
    kind: str, embed_dim: int, dtype: Any = jnp.float32, **kwargs
) -> nn.Module:
  """Builds an encoder by name: ``conv``, ``time_conv`` or ``mlp``.

  ``dtype`` is its compute dtype (``avjax.models.precision``).
  """
  if kind == "conv":
    return ConvEncoder(embed_dim=embed_dim, dtype=dtype, **kwargs)
  if kind == "time_conv":
    return TimeConvEncoder(embed_dim=embed_dim, dtype=dtype, **kwargs)
  if kind == "mlp":
    return MLPEncoder(embed_dim=embed_dim, dtype=dtype, **kwargs)
  raise ValueError(
      f"encoder kind {kind!r} is not one of ['conv', 'time_conv', 'mlp']"
  )


class TwoTower(nn.Module):
  """Audio and visual encoders into one shared space.

  ``__call__(audio, visual)`` returns ``(audio_emb [B, E], visual_emb [B,
  E])``, L2-normalised when ``normalize``. Either input may be None to embed
  one modality only (retrieval galleries).
  """

  audio_encoder: nn.Module
  visual_encoder: nn.Module
  normalize: bool = True

  def _out(self, e: jax.Array) -> jax.Array:
    return l2_normalize(e) if self.normalize else e

  @nn.compact
  def __call__(
      self,
      audio: jax.Array | None,
      visual: jax.Array | None,
      *,
      train: bool = False,
  ):
    a = (
        None
        if audio is None
        else self._out(self.audio_encoder(audio, train=train))
    )
    v = (
        None
        if visual is None
        else self._out(self.visual_encoder(visual, train=train))
    )
    return a, v
