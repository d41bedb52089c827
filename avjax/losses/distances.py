"""Pairwise distances between two sets of embeddings.

Decisions:
  * Distances come from the Gram matrix (``‖x‖² + ‖y‖² − 2 x·y``), so memory
    is O(N·M), not O(N·M·D). The matmul runs at ``Precision.HIGHEST``: the
    formula cancels catastrophically and accelerators' default reduced
    precision (TF32 / bf16 passes) would swamp small distances.
  * Rounding leaves a residue of a few ulps of ``‖x‖² + ‖y‖²`` where ``x = y``.
    Squared distances at or below δ² = ``4·√D·eps·(‖x‖² + ‖y‖²)`` therefore
    read as exactly 0 (measured residue: < 0.7·√D·eps for D in 2…1024), so
    identical rows are exactly 0 apart. Such values are below the formula's
    own rounding error, so no information is lost in the value.
  * The gradient is not snapped: below δ the Euclidean distance
    differentiates like the smooth ``‖x − y‖² / (2δ)``, i.e. along the exact
    direction ``x − y`` with magnitude ``‖x − y‖ / δ ≤ 1`` (and 1 at δ, where
    it meets the gradient of ``‖x − y‖``). Near-collapsed pairs (normalised
    64-d vectors closer than about 2.8e-3) are thus still pushed apart by a
    loss that wants them apart; identical rows get exactly zero gradient,
    never ``inf``/``NaN``. Squared and cosine distances keep the gradient of
    their unsnapped formula.
  * ``safe_l2_normalize`` bounds its gradient: the Jacobian of ``x / ‖x‖`` is
    ``(I − x̂x̂ᵀ) / ‖x‖``, unbounded as ``x → 0`` (1e12 at a zero vector with
    a 1e-12 floor). Its JVP divides by ``max(‖x‖, 1e-3)`` instead, so the
    gradient norm is at most 1e3 times the upstream one; values, and
    gradients of vectors longer than 1e-3, are exact.
  * Cosine distance normalises that way: a zero vector stays zero and is at
    cosine distance 1 from everything.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from avjax.losses._fusion import materialised, nonnegative_probe

METRICS = ("euclidean", "squared_euclidean", "cosine")

_NORM_EPS = 1e-12
# Norm below which the normalisation's gradient is damped (module docstring).
_GRAD_NORM_FLOOR = 1e-3


def check_metric(metric: str) -> None:
  """Raises ValueError unless ``metric`` is one of :data:`METRICS`."""
  if metric not in METRICS:
    raise ValueError(f"metric={metric!r} is not one of {list(METRICS)}")


def safe_l2_normalize(
    x: jax.Array, axis: int = -1, eps: float = _NORM_EPS
) -> jax.Array:
  """``x / max(‖x‖₂, eps)`` along ``axis``; zero vectors stay zero.

  The gradient is exact for ``‖x‖ ≥ 1e-3`` and bounded below it: the JVP is
  ``(t − x̂ (x̂·t)) / max(‖x‖, 1e-3)``, so ``‖∂/∂x‖ ≤ 1e3`` per unit of
  upstream gradient, including at ``x = 0``.
  """
  return _normalize(x, axis, eps)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _normalize(x: jax.Array, axis: int, eps: float) -> jax.Array:
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


@_normalize.defjvp
def _normalize_jvp(axis, eps, primals, tangents):
  (x,), (t,) = primals, tangents
  unit = _normalize(x, axis, eps)
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
  radial = unit * jnp.sum(unit * t, axis=axis, keepdims=True)
  return unit, (t - radial) / jnp.maximum(norm, _GRAD_NORM_FLOOR)


def safe_sqrt(x: jax.Array) -> jax.Array:
  """``sqrt(x)`` for ``x ≥ 0`` with gradient 0 (not ``inf``) at ``x = 0``."""
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _dot_t(x: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST)


@jax.custom_jvp
def _matmul_t(x: jax.Array, y: jax.Array) -> jax.Array:
  """``x @ y.T`` ([N, D], [M, D] → [N, M]) with a fast reverse mode.

  Reverse mode transposes the tangent ``tx·yᵀ + x·tyᵀ``; written as is, the
  cotangent of ``y`` is ``gᵀ·x``, a dot contracting the first axis of the
  [N, M] cotangent, which XLA's CPU backend runs several times slower than
  a dot of the same size in the usual layout (docs/benchmarks.md). The
  second term is therefore written as the transpose of
  ``ty·xᵀ`` behind an optimisation barrier, so that reverse mode
  materialises ``gᵀ`` once and multiplies it in the fast layout.
  """
  return _dot_t(x, y)


# Size N·M from which `_matmul_t` replaces the plain dot: below it the two
# take the same time on CPU, from it `_matmul_t` is faster. Below it the
# plain dot keeps gradients bit-identical to earlier versions (the methods'
# training batches).
_REVERSE_LAYOUT_FROM = 512 * 512


@_matmul_t.defjvp
def _matmul_t_jvp(primals, tangents):
  (x, y), (tx, ty) = primals, tangents
  return (
      _dot_t(x, y),
      _dot_t(tx, y) + jax.lax.optimization_barrier(_dot_t(ty, x)).T,
  )


@jax.custom_jvp
def _gram(x: jax.Array) -> jax.Array:
  """``x @ x.T`` ([N, D] → [N, N]); its tangent ``u + uᵀ`` (u = tx·xᵀ)
  transposes to a single dot, ``(g + gᵀ)·x``, instead of two. ``uᵀ`` is
  taken of a materialised copy (`_fusion`), so that reverse mode adds a
  transposed copy of ``g`` instead of a strided loop over it (4 against
  1.3 + 1.3 ms at 1024 × 1024)."""
  return _dot_t(x, x)


@_gram.defjvp
def _gram_jvp(primals, tangents):
  (x,), (tx,) = primals, tangents
  u = _dot_t(tx, x)
  copy = materialised(u, nonnegative_probe(x))
  return _dot_t(x, x), u + copy.T


def _zero_tolerance(dim: int, dtype) -> float:
  return 4.0 * float(dim) ** 0.5 * float(jnp.finfo(dtype).eps)


def pairwise_distances(
    x: jax.Array, y: jax.Array, metric: str = "euclidean"
) -> jax.Array:
  r"""All distances between the rows of ``x`` and the rows of ``y``.

  .. math::
    \text{euclidean: } d_{ij} = \lVert x_i - y_j \rVert_2, \quad
    \text{squared\_euclidean: } d_{ij}^2, \quad
    \text{cosine: } 1 - \frac{x_i \cdot y_j}{\lVert x_i\rVert \lVert y_j\rVert}

  Identical rows are exactly 0 apart (euclidean and squared), with finite
  (zero) gradients there; duplicate and all-zero rows are safe.

  Args:
    x: ``[N, D]`` float embeddings.
    y: ``[M, D]`` float embeddings (same ``D`` and dtype family as ``x``).
    metric: ``"euclidean"`` (default), ``"squared_euclidean"`` or
      ``"cosine"`` (1 − cosine similarity, in ``[0, 2]``).

  Returns:
    ``[N, M]`` non-negative distances, dtype of ``x·y``.

  Example:
    >>> import jax.numpy as jnp
    >>> from avjax import losses
    >>> x = jnp.array([[0., 0.], [3., 4.]])
    >>> losses.pairwise_distances(x, x)
    Array([[0., 5.],
           [5., 0.]], dtype=float32)

  References:
    Schroff et al., "FaceNet", CVPR 2015 (squared L2 triplets);
    TF-Addons ``metric_learning.pairwise_distance`` (Gram-matrix form).
  """
  check_metric(metric)
  same = x is y  # One set against itself: one Gram product (`_gram`).
  x = jnp.asarray(x)
  y = x if same else jnp.asarray(y)
  if x.ndim != 2 or y.ndim != 2:
    raise ValueError(
        "pairwise_distances expects x [N, D] and y [M, D]; got "
        f"x.shape={x.shape}, y.shape={y.shape}"
    )
  if x.shape[1] != y.shape[1]:
    raise ValueError(
        "pairwise_distances: feature sizes differ, "
        f"x.shape={x.shape} vs y.shape={y.shape}"
    )
  dtype = jnp.result_type(x, y)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.dtype(jnp.float32)
  x = x.astype(dtype)
  y = x if same else y.astype(dtype)
  tol = _zero_tolerance(x.shape[1], dtype)

  def dots(a, b):
    if same:
      return _gram(a)
    if a.shape[0] * b.shape[0] >= _REVERSE_LAYOUT_FROM:
      return _matmul_t(a, b)
    return _dot_t(a, b)

  if metric == "cosine":
    unit = safe_l2_normalize(x)
    cos = dots(unit, unit if same else safe_l2_normalize(y))
    dist = 1.0 - cos
    # ‖x̂‖² + ‖ŷ‖² = 2 and cosine distance = ½‖x̂ − ŷ‖², hence 2·tol / 2.
    return _zero_value_keep_gradient(dist <= tol, dist).astype(dtype)

  xx = jnp.sum(jnp.square(x), axis=1)
  yy = jnp.sum(jnp.square(y), axis=1)
  scale = xx[:, None] + yy[None, :]
  sq = scale - 2.0 * dots(x, y)
  floor = jax.lax.stop_gradient(tol * scale)
  near = sq <= floor
  if metric == "squared_euclidean":
    return _zero_value_keep_gradient(near, sq)
  # Below δ = √floor: the gradient of ‖x − y‖² / (2δ) (module docstring).
  delta = jnp.sqrt(jnp.maximum(floor, jnp.finfo(dtype).tiny))
  return jnp.where(
      near, _zero_value_keep_gradient(near, sq / (2.0 * delta)), safe_sqrt(sq)
  )


def _zero_value_keep_gradient(zero: jax.Array, x: jax.Array) -> jax.Array:
  """``x`` with its value set to 0 where ``zero``, its gradient unchanged."""
  return jnp.where(zero, x - jax.lax.stop_gradient(x), x)


def paired_distances(
    x: jax.Array, y: jax.Array, metric: str = "euclidean"
) -> jax.Array:
  """Distance between row i of ``x`` and row i of ``y``: ``[N, D] → [N]``.

  Computed from the difference ``x_i − y_i`` (exact, O(N·D)); agrees with
  the diagonal of :func:`pairwise_distances` up to its rounding, is exactly
  0 for identical rows, and has finite gradients everywhere.
  """
  check_metric(metric)
  x, y = jnp.asarray(x), jnp.asarray(y)
  if x.shape != y.shape or x.ndim != 2:
    raise ValueError(
        "paired_distances expects x and y of the same shape "
        f"[N, D]; got {x.shape} and {y.shape}"
    )
  if metric == "cosine":
    cos = jnp.sum(safe_l2_normalize(x) * safe_l2_normalize(y), axis=-1)
    return jnp.maximum(1.0 - cos, 0.0)
  sq = jnp.sum(jnp.square(x - y), axis=-1)
  return sq if metric == "squared_euclidean" else safe_sqrt(sq)
