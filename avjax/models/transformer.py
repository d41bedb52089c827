"""Pre-LayerNorm transformer pieces with key padding masks.

Every attention here takes a boolean key mask (True = a real token, False =
padding) and guarantees that padding is never read: masked logits are set to
a large negative number before the softmax *and* the resulting weights are
multiplied by the mask, so a padded key gets weight exactly 0 and a query
whose keys are all padding gets an all-zero output (never NaN). Blocks also
zero the padded positions of their output, so whatever the padding held on
input (zeros, 1e4, ...) cannot reach the valid positions of any later layer.

Attention weights are returned (not sown) so callers can plot them.

Every module computes in its ``dtype`` with float32 parameters
(``avjax.models.precision``): the residual stream, projections and MLPs run
in ``dtype``; LayerNorm statistics, attention logits, the softmax and the
returned weights, and ``masked_mean`` are float32.

Shapes: B batch, Q queries, K keys, D width, H heads.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Finite, so an all-masked row still gives a finite softmax (then zeroed).
_MASK_VALUE = -1e30


def _check_mask(
    mask: jax.Array | None, batch: int, length: int, name: str
) -> jax.Array:
  if mask is None:
    return jnp.ones((batch, length), bool)
  if mask.shape != (batch, length):
    raise ValueError(
        f"{name} has shape {mask.shape}, expected "
        f"({batch}, {length}) to match the tokens"
    )
  return mask.astype(bool)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of x [B, T, D] over the True positions of mask [B, T] → [B, D].

  Summed in float32 whatever x's dtype; returns float32. Rows with no valid
  position give zeros.
  """
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  w = mask.astype(x.dtype)[..., None]
  total = jnp.sum(jnp.where(w > 0, x, 0.0), axis=1)
  return total / jnp.maximum(jnp.sum(w, axis=1), 1.0)


def sinusoidal_positions(
    length: int, dim: int, max_timescale: float = 10000.0
) -> jax.Array:
  """Fixed sin/cos position code [length, dim] (Vaswani et al.), float32."""
  if dim % 2:
    raise ValueError(f"sinusoidal_positions needs an even dim, got {dim}")
  pos = jnp.arange(length, dtype=jnp.float32)[:, None]
  inv = jnp.exp(
      -math.log(max_timescale) * jnp.arange(0, dim, 2, dtype=jnp.float32) / dim
  )
  angles = pos * inv[None, :]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class MultiHeadAttention(nn.Module):
  """Multi-head dot-product attention with a key padding mask.

  Attributes:
    num_heads: H; ``width`` must be divisible by it.
    width: D of the q/k/v projections and the output (defaults to the
      query width).
    dropout: dropout rate on the attention weights (training only).
    dtype: compute dtype of the projections (logits and softmax: float32).
  """

  num_heads: int = 4
  width: int | None = None
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      queries: jax.Array,
      keys: jax.Array,
      key_mask: jax.Array | None = None,
      *,
      train: bool = False,
  ) -> tuple[jax.Array, jax.Array]:
    """Attends from queries [B, Q, Dq] to keys/values [B, K, Dk].

    Args:
      queries: [B, Q, Dq] float.
      keys: [B, K, Dk] float; also the values.
      key_mask: bool [B, K], True where the key is real (None: all real).
      train: enables attention dropout.

    Returns:
      (out [B, Q, width], weights [B, H, Q, K]); weights are exactly 0 on
      masked keys and rows sum to 1 (0 when every key is masked).
    """
    batch, num_keys = keys.shape[0], keys.shape[1]
    key_mask = _check_mask(key_mask, batch, num_keys, "key_mask")
    width = self.width or queries.shape[-1]
    if width % self.num_heads:
      raise ValueError(
          f"attention width {width} is not divisible by "
          f"num_heads={self.num_heads}"
      )
    head_dim = width // self.num_heads
    dense = lambda name: nn.DenseGeneral(
        (self.num_heads, head_dim), dtype=self.dtype, name=name
    )
    q = dense("query")(queries)  # [B, Q, H, d]
    k = dense("key")(keys)
    v = dense("value")(keys)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
    logits = logits / math.sqrt(head_dim)
    valid = key_mask[:, None, None, :]
    logits = jnp.where(valid, logits, _MASK_VALUE)
    weights = jax.nn.softmax(logits, axis=-1) * valid.astype(logits.dtype)
    dropped = nn.Dropout(self.dropout, deterministic=not train)(weights)
    out = jnp.einsum("bhqk,bkhd->bqhd", dropped.astype(v.dtype), v)
    out = nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, name="out")(
        out
    )
    return out, weights


class MLP(nn.Module):
  """Two dense layers with GELU: [..., D] → [..., D]."""

  hidden_dim: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    out_dim = x.shape[-1]
    x = nn.gelu(nn.Dense(self.hidden_dim, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(out_dim, dtype=self.dtype)(x)


def _zero_padding(x: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.where(mask[..., None], x, 0.0)


class EncoderBlock(nn.Module):
  """Pre-LN self-attention block: x + MHA(LN x); x + MLP(LN x).

  Padded positions of the output are zero.
  """

  num_heads: int = 4
  mlp_ratio: float = 4.0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self, x: jax.Array, mask: jax.Array | None = None, *, train: bool = False
  ) -> tuple[jax.Array, jax.Array]:
    """x [B, T, D], mask bool [B, T] → (x [B, T, D], weights [B, H, T, T])."""
    mask = _check_mask(mask, x.shape[0], x.shape[1], "mask")
    drop = nn.Dropout(self.dropout, deterministic=not train)
    h = nn.LayerNorm(dtype=self.dtype)(x)
    h, weights = MultiHeadAttention(
        self.num_heads, dropout=self.dropout, dtype=self.dtype
    )(h, h, mask, train=train)
    x = x + drop(h)
    h = MLP(int(self.mlp_ratio * x.shape[-1]), self.dropout, self.dtype)(
        nn.LayerNorm(dtype=self.dtype)(x), train=train
    )
    x = x + drop(h)
    return _zero_padding(x, mask), weights


class TransformerEncoder(nn.Module):
  """A stack of pre-LN ``EncoderBlock`` s and a final LayerNorm.

  Attributes:
    num_layers: number of blocks.
    num_heads: attention heads per block.
    mlp_ratio: MLP hidden width / model width.
    dropout: dropout rate (residual branches and attention weights).
    dtype: compute dtype; the input is cast to it, the output is float32.
  """

  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: float = 4.0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self, x: jax.Array, mask: jax.Array | None = None, *, train: bool = False
  ) -> jax.Array:
    """x [B, T, D], mask bool [B, T] (None: no padding) → [B, T, D].

    Padded positions of the output are zero.
    """
    mask = _check_mask(mask, x.shape[0], x.shape[1], "mask")
    x = _zero_padding(x.astype(self.dtype), mask)
    for i in range(self.num_layers):
      x, _ = EncoderBlock(
          self.num_heads,
          self.mlp_ratio,
          self.dropout,
          self.dtype,
          name=f"block_{i}",
      )(x, mask, train=train)
    x = nn.LayerNorm(dtype=self.dtype, name="final_norm")(x)
    return _zero_padding(x.astype(jnp.float32), mask)


class CrossAttentionBlock(nn.Module):
  """Pre-LN decoder block: [x + SelfAttn(LN x)]; x + CrossAttn(LN x, LN c);
  x + MLP(LN x).

  Attributes:
    num_heads: attention heads.
    mlp_ratio: MLP hidden width / model width.
    self_attention: whether queries also attend to each other (off by
      default in the CMD denoiser so each frame is rebuilt from the other
      modality, not from its neighbours).
    dropout: dropout rate.
    dtype: compute dtype (the residual stream is cast to it on entry).
  """

  num_heads: int = 4
  mlp_ratio: float = 4.0
  self_attention: bool = False
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      x: jax.Array,
      context: jax.Array,
      query_mask: jax.Array | None = None,
      context_mask: jax.Array | None = None,
      *,
      train: bool = False,
  ) -> tuple[jax.Array, jax.Array]:
    """Updates queries x [B, Q, D] from context [B, K, Dc].

    Returns:
      (x [B, Q, D] with padded queries zeroed, cross-attention weights
      [B, H, Q, K]).
    """
    query_mask = _check_mask(query_mask, x.shape[0], x.shape[1], "query_mask")
    context_mask = _check_mask(
        context_mask, context.shape[0], context.shape[1], "context_mask"
    )
    drop = nn.Dropout(self.dropout, deterministic=not train)
    norm = lambda name: nn.LayerNorm(dtype=self.dtype, name=name)
    x = x.astype(self.dtype)
    if self.self_attention:
      h = norm("self_norm")(x)
      h, _ = MultiHeadAttention(
          self.num_heads,
          dropout=self.dropout,
          dtype=self.dtype,
          name="self_attention",
      )(h, h, query_mask, train=train)
      x = x + drop(h)
    h = norm("cross_norm")(x)
    c = norm("context_norm")(context)
    h, weights = MultiHeadAttention(
        self.num_heads,
        width=x.shape[-1],
        dropout=self.dropout,
        dtype=self.dtype,
        name="cross_attention",
    )(h, c, context_mask, train=train)
    x = x + drop(h)
    h = MLP(int(self.mlp_ratio * x.shape[-1]), self.dropout, self.dtype)(
        norm("mlp_norm")(x), train=train
    )
    x = x + drop(h)
    return _zero_padding(x, query_mask), weights
