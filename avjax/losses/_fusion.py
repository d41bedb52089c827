"""Keeping XLA on CPU from fusing a producer into its consumers.

XLA fuses cheap producers into each consumer that reads them. On CPU that
can cost several times the work: a small table's entries (cumulative sums
and all) were recomputed for each of the N·M candidates that gather from
it; a row search's [N, M] result (broadcast compares and gathers) once per
consumer, up to five times in the semi-hard bucket path; and a transpose
fused with an addition (``g + gᵀ``) ran as a strided loop, 4 ms against
0.8 ms for the addition of a transposed copy, at 1024 × 1024.
``optimization_barrier`` does not stop it on CPU. A conditional does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def materialised(tables, nonnegative: jax.Array):
  """``tables`` (a pytree), computed once in memory before their consumers.

  The conditional's predicate (``nonnegative`` holds no negative number, so
  its sum is ≥ 0) is always true but data-dependent, so it is not folded
  away. Linear in ``tables``, so it may sit in a tangent computation (the
  predicate must then come from primal values).
  """
  return jax.lax.cond(
      jnp.sum(nonnegative) >= 0,
      lambda t: t,
      lambda t: jax.tree_util.tree_map(jnp.zeros_like, t),
      tables,
  )


def nonnegative_probe(x: jax.Array) -> jax.Array:
  """A [1] integer array ≥ 0 that depends on ``x``'s data (its first
  element's bits without the sign; never NaN): ``materialised``'s
  ``nonnegative`` for a float array."""
  first = jnp.ravel(x)[:1]
  bits = jax.lax.bitcast_convert_type(
      first, jnp.dtype(f"int{8 * first.dtype.itemsize}")
  )
  return bits & jnp.iinfo(bits.dtype).max
