"""AVC correspondence head and linear classifier: shapes, fusion, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.models import heads


@pytest.mark.parametrize(
    "fusion,in_dim", [("concat", 16), ("concat_product", 24), ("distance", 1)]
)
def test_correspondence_head_shapes_and_fusion(fusion, in_dim):
  head = heads.CorrespondenceHead(hidden_dims=(12,), fusion=fusion)
  a = jax.random.normal(jax.random.PRNGKey(0), (5, 8))
  v = jax.random.normal(jax.random.PRNGKey(1), (5, 8))
  params = head.init(jax.random.PRNGKey(2), a, v)
  assert params["params"]["Dense_0"]["kernel"].shape == (in_dim, 12)
  logits = jax.jit(head.apply)(params, a, v)
  assert logits.shape == (5,) and logits.dtype == jnp.float32
  # Pairs are scored independently: the logit of row i depends on row i only.
  swapped = head.apply(params, a[::-1], v[::-1])
  np.testing.assert_allclose(swapped, logits[::-1], rtol=1e-5, atol=1e-6)
  # Works on any leading shape, e.g. [B, B] all-pairs grids.
  grid = head.apply(
      params,
      jnp.broadcast_to(a[:, None], (5, 5, 8)),
      jnp.broadcast_to(v[None], (5, 5, 8)),
  )
  np.testing.assert_allclose(jnp.diagonal(grid), logits, rtol=1e-5, atol=1e-6)


def test_correspondence_head_is_order_sensitive_in_modalities():
  head = heads.CorrespondenceHead(hidden_dims=(4,))
  a = jnp.ones((2, 3))
  v = jnp.zeros((2, 3))
  params = head.init(jax.random.PRNGKey(0), a, v)
  assert not np.allclose(head.apply(params, a, v), head.apply(params, v, a))


def test_distance_fusion_depends_only_on_normalised_distance():
  head = heads.CorrespondenceHead(hidden_dims=(), fusion="distance")
  a = jnp.array([[3.0, 0.0], [0.0, 1.0]])
  v = jnp.array([[1.0, 0.0], [0.0, 2.0]])  # Same directions as a.
  params = head.init(jax.random.PRNGKey(0), a, v)
  p = params["params"]["Dense_0"]
  np.testing.assert_allclose(
      head.apply(params, a, v),
      p["kernel"][0, 0] * 1e-6 + p["bias"][0],
      atol=1e-5,
  )
  far = head.apply(params, a, -v)  # Opposite directions: distance 2.
  np.testing.assert_allclose(
      far, 2 * p["kernel"][0, 0] + p["bias"][0], rtol=1e-5
  )
  grads = jax.grad(lambda x: head.apply(params, x, x).sum())(a)
  assert np.isfinite(np.asarray(grads)).all()


def test_correspondence_head_errors():
  head = heads.CorrespondenceHead(fusion="sum")
  with pytest.raises(ValueError, match="fusion='sum'"):
    head.init(jax.random.PRNGKey(0), jnp.ones((2, 3)), jnp.ones((2, 3)))
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
    heads.CorrespondenceHead().init(
        jax.random.PRNGKey(0), jnp.ones((2, 3)), jnp.ones((2, 4))
    )


def test_linear_classifier_is_affine():
  clf = heads.LinearClassifier(num_classes=7)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 6))
  params = clf.init(jax.random.PRNGKey(1), x)
  out = clf.apply(params, x)
  assert out.shape == (4, 7)
  p = params["params"]["Dense_0"]
  np.testing.assert_allclose(
      out, x @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-6
  )
