"""Symmetric InfoNCE losses, optionally over negatives from every device.

Decisions:
  * Losses are per sample ``[B]`` (the caller reduces or re-weights them, as
    MAMA's meta-weight net does): loss_i = ½ (CE of row i of the logit matrix
    with target i + CE of column i with target i).
  * Inputs are L2-normalised inside with ``x / max(‖x‖, eps)``, so zero
    vectors give finite values and gradients.
  * With ``axis_name`` the other devices' rows are gathered with
    ``jax.lax.all_gather(..., tiled=True)``, the local rows are placed at
    their global index ``axis_index · B_local + i``, and each device returns
    its own rows' losses: under ``shard_map`` / ``pmap`` the result equals the
    single-device loss on the concatenated batch.
  * The positive cosine is computed once per row and written onto the
    diagonal of both the row and the column logits, so both cross-entropies
    see the same positive logit.
  * Logit matmuls run at ``Precision.HIGHEST`` so that results do not depend
    on the accelerator's default reduced matmul precision.
  * The angular margin uses the exact identity
    cos(θ − μ) = cos θ cos μ + sin θ sin μ (with sin θ = √(1 − cos²θ) ≥ 0)
    instead of ``cos(arccos(·))``: no arccos is evaluated, margin 0 gives
    InfoNCE exactly, and cos θ is clipped to [−1 + eps, 1 − eps] only inside
    the square root, which keeps gradients finite at cos θ = ±1.
"""

from __future__ import annotations

import math
from typing import Callable, Hashable, Sequence

import jax
import jax.numpy as jnp

from avjax.losses.distances import safe_l2_normalize

AxisName = Hashable | Sequence[Hashable] | None

_ACOS_EPS = 1e-6


def _check_positive(name: str, value) -> None:
  if isinstance(value, (int, float)) and not value > 0:
    raise ValueError(f"{name}={value} must be > 0")


def _check_pair(a: jax.Array, b: jax.Array) -> None:
  if a.ndim != 2 or a.shape != b.shape:
    raise ValueError(
        "a and b must both be [B, D] with the same shape; got "
        f"a.shape={a.shape}, b.shape={b.shape}"
    )


def _symmetric_ce(
    a: jax.Array,
    b: jax.Array,
    temperature,
    axis_name: AxisName,
    positive: Callable[[jax.Array], jax.Array],
) -> jax.Array:
  """Per-row ½(row CE + column CE) with positive logits ``positive(cos)``."""
  _check_pair(a, b)
  dtype = jnp.result_type(a, b, jnp.float32)
  a = safe_l2_normalize(a.astype(dtype))
  b = safe_l2_normalize(b.astype(dtype))
  n = a.shape[0]
  if axis_name is None:
    a_all, b_all, offset = a, b, 0
  else:
    a_all = jax.lax.all_gather(a, axis_name, tiled=True)
    b_all = jax.lax.all_gather(b, axis_name, tiled=True)
    offset = jax.lax.axis_index(axis_name) * n
  hi = jax.lax.Precision.HIGHEST
  rows = jnp.matmul(a, b_all.T, precision=hi)  # [n, N]: a_i · b_j
  cols = jnp.matmul(b, a_all.T, precision=hi)  # [n, N]: a_j · b_i
  target = offset + jnp.arange(n)
  diag = jnp.arange(a_all.shape[0])[None, :] == target[:, None]
  pos = positive(jnp.sum(a * b, axis=-1))[:, None]
  rows = jnp.where(diag, pos, rows) / temperature
  cols = jnp.where(diag, pos, cols) / temperature
  pos = pos[:, 0] / temperature
  row_ce = jax.nn.logsumexp(rows, axis=-1) - pos
  col_ce = jax.nn.logsumexp(cols, axis=-1) - pos
  return 0.5 * (row_ce + col_ce)


def info_nce(
    a: jax.Array, b: jax.Array, temperature=0.07, axis_name: AxisName = None
) -> jax.Array:
  r"""Symmetric InfoNCE (CLIP-style) loss, one value per pair.

  With :math:`\hat a, \hat b` the L2-normalised rows and
  :math:`s_{ij} = \hat a_i \cdot \hat b_j / \tau`:

  .. math::
    \ell_i = \tfrac12 \Bigl(
      -\log \frac{e^{s_{ii}}}{\sum_j e^{s_{ij}}}
      -\log \frac{e^{s_{ii}}}{\sum_j e^{s_{ji}}} \Bigr)

  Args:
    a: ``[B, D]`` embeddings of one modality (local shard under
      ``axis_name``).
    b: ``[B, D]`` embeddings of the other modality; row i is a's positive.
    temperature: τ > 0, python float or traced scalar (learnable).
    axis_name: mapped axis name (or tuple of names) of ``shard_map`` /
      ``pmap`` / ``vmap``; negatives then come from all devices' rows.

  Returns:
    ``[B]`` per-sample losses for the local rows.

  Example:
    >>> import jax.numpy as jnp
    >>> from avjax import losses
    >>> x = jnp.eye(3)
    >>> losses.info_nce(x, x, temperature=1.0).round(4)
    Array([0.5514, 0.5514, 0.5514], dtype=float32)

  References:
    van den Oord, Li & Vinyals, "Representation Learning with Contrastive
    Predictive Coding", arXiv 1807.03748; Radford et al., "CLIP", ICML 2021.
  """
  _check_positive("temperature", temperature)
  a, b = jnp.asarray(a), jnp.asarray(b)
  return _symmetric_ce(a, b, temperature, axis_name, lambda c: c)


def angular_margin_info_nce(
    a: jax.Array, b: jax.Array, margin, temperature, axis_name: AxisName = None
) -> jax.Array:
  r"""InfoNCE with a subtractive angular margin on the positive pairs (MAMA).

  As :func:`info_nce`, but with :math:`\theta_{ii} = \arccos(\hat a_i \cdot
  \hat b_i)` the positive logit becomes

  .. math::
    s_{ii} = \cos\bigl(\max(\theta_{ii} - \mu, 0)\bigr) / \tau ,

  so a positive pair already within μ of perfect alignment stops being
  pulled together; negative logits are unchanged.

  Args:
    a: ``[B, D]`` embeddings of one modality.
    b: ``[B, D]`` embeddings of the other; row i is a's positive.
    margin: μ in radians, ``0 ≤ μ < π`` (0 gives :func:`info_nce`); python
      float or traced scalar.
    temperature: τ > 0 (python float or traced scalar).
    axis_name: as in :func:`info_nce`.

  Returns:
    ``[B]`` per-sample losses for the local rows.

  Example:
    >>> import jax.numpy as jnp
    >>> from avjax import losses
    >>> x = jnp.eye(3)
    >>> losses.angular_margin_info_nce(x, x, 0.2, 1.0).round(4)
    Array([0.5514, 0.5514, 0.5514], dtype=float32)

  References:
    Nguyen et al., "Meta-optimized Angular Margin Contrastive Framework for
    Video-Language Representation Learning" (MAMA), ECCV 2024,
    arXiv 2407.03788; contrast with the additive margin of Deng et al.,
    "ArcFace", CVPR 2019.
  """
  _check_positive("temperature", temperature)
  if isinstance(margin, (int, float)) and not 0 <= margin < math.pi:
    raise ValueError(f"margin={margin} must be in [0, pi) radians")
  a, b = jnp.asarray(a), jnp.asarray(b)

  def positive(cos):
    cos = jnp.clip(cos, -1.0, 1.0)
    mu = jnp.asarray(margin, cos.dtype)
    cos_mu, sin_mu = jnp.cos(mu), jnp.sin(mu)
    clipped = jnp.clip(cos, -1.0 + _ACOS_EPS, 1.0 - _ACOS_EPS)
    sin_theta = jnp.sqrt(1.0 - clipped * clipped)
    shifted = cos * cos_mu + sin_theta * sin_mu  # cos(θ − μ)
    return jnp.where(cos >= cos_mu, jnp.ones_like(cos), shifted)  # θ ≤ μ

  return _symmetric_ce(a, b, temperature, axis_name, positive)
