"""The CMD head: a small cross-attention decoder that denoises one modality's
token features using the other modality's tokens.

Queries are the corrupted tokens (speech frames, or image patches in the
symmetric direction); keys/values are the clean tokens of the other
modality. Each layer is a pre-LN cross-attention block
(``transformer.CrossAttentionBlock``); the output is mapped back to the
query feature width.

Decisions (the paper gives no depth or layout; all are attributes):
  * No self-attention among queries by default: a corrupted frame can then
    only be rebuilt from itself, its position and the other modality, so the
    reconstruction pressure is cross-modal (``self_attention=True`` lets
    frames also read each other).
  * Sinusoidal positions are added to the queries, so a masked frame still
    tells the decoder *when* it was (e.g. which digit of the caption), which
    it can only fill in from the image.
  * ``residual_output``: the reconstruction is ``noisy + delta`` with the
    last projection zero-initialised, so at initialisation the head is the
    identity and an uncorrupted input is reconstructed exactly; the head
    learns the correction.

The head computes in its ``dtype`` with float32 parameters; the
reconstruction and attention maps it returns are float32
(``avjax.models.precision``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.models import transformer


class CrossModalDenoiser(nn.Module):
  """Reconstructs clean query-modality features from noisy ones + context.

  Attributes:
    width: decoder width.
    num_layers: number of cross-attention blocks.
    num_heads: attention heads.
    mlp_ratio: MLP hidden width / decoder width.
    self_attention: queries also attend to each other in every block.
    query_positions: add sinusoidal positions to the queries.
    residual_output: predict a zero-initialised correction of the input.
    dropout: dropout rate.
    dtype: compute dtype.
  """

  width: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: float = 2.0
  self_attention: bool = False
  query_positions: bool = True
  residual_output: bool = True
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      noisy: jax.Array,
      context: jax.Array,
      query_mask: jax.Array | None = None,
      context_mask: jax.Array | None = None,
      *,
      train: bool = False,
  ) -> tuple[jax.Array, jax.Array]:
    """Denoises ``noisy`` from ``context``.

    Args:
      noisy: [B, Q, Dq] corrupted token features.
      context: [B, K, Dc] clean token features of the other modality.
      query_mask: bool [B, Q], True for real query tokens (None: all).
      context_mask: bool [B, K], True for real context tokens (None: all).
      train: enables dropout.

    Returns:
      (reconstruction [B, Q, Dq] with padded positions zeroed,
       cross-attention weights [num_layers, B, H, Q, K], exactly 0 on
       padded context tokens and on padded queries' rows).
    """
    if noisy.ndim != 3 or context.ndim != 3:
      raise ValueError(
          "CrossModalDenoiser expects noisy [B, Q, D] and "
          f"context [B, K, D], got {noisy.shape} and "
          f"{context.shape}"
      )
    if noisy.shape[0] != context.shape[0]:
      raise ValueError(
          f"noisy batch {noisy.shape[0]} != context batch "
          f"{context.shape[0]}"
      )
    if query_mask is None:
      query_mask = jnp.ones(noisy.shape[:2], bool)
    x = nn.Dense(self.width, dtype=self.dtype, name="query_proj")(noisy)
    if self.query_positions:
      x = x + transformer.sinusoidal_positions(x.shape[1], self.width)[None]
    maps = []
    for i in range(self.num_layers):
      x, w = transformer.CrossAttentionBlock(
          self.num_heads,
          self.mlp_ratio,
          self.self_attention,
          self.dropout,
          self.dtype,
          name=f"block_{i}",
      )(x, context, query_mask, context_mask, train=train)
      maps.append(w)
    x = nn.LayerNorm(dtype=self.dtype, name="final_norm")(x)
    if self.residual_output:
      out = noisy + nn.Dense(
          noisy.shape[-1],
          kernel_init=nn.initializers.zeros,
          dtype=self.dtype,
          name="out_proj",
      )(x).astype(jnp.float32)
    else:
      out = nn.Dense(noisy.shape[-1], dtype=self.dtype, name="out_proj")(x)
    out = out.astype(jnp.float32)
    out = jnp.where(query_mask[..., None], out, 0.0)
    maps = jnp.stack(maps) * query_mask[None, :, None, :, None]
    return out, maps
