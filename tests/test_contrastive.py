"""Tests for avjax.losses.contrastive (info_nce, angular_margin_info_nce)."""

import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import losses

_info_nce = jax.jit(
    jax.value_and_grad(
        lambda a, b, t: jnp.sum(losses.info_nce(a, b, t)), argnums=(0, 1, 2)
    )
)
_angular = jax.jit(
    jax.value_and_grad(
        lambda a, b, m, t: jnp.sum(losses.angular_margin_info_nce(a, b, m, t)),
        argnums=(0, 1, 2, 3),
    )
)
_info_nce_rows = jax.jit(losses.info_nce)
_angular_rows = jax.jit(losses.angular_margin_info_nce)


def _ref(a, b, temperature, margin=None):
  """Per-sample symmetric InfoNCE with explicit loops, float64."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  n = len(a)

  def unit(v):
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v

  cos = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      cos[i, j] = unit(a[i]) @ unit(b[j])
  logits = cos.copy()
  if margin is not None:
    for i in range(n):
      theta = math.acos(min(1.0, max(-1.0, cos[i, i])))
      logits[i, i] = math.cos(max(theta - margin, 0.0))
  logits /= temperature
  out = np.zeros(n)
  for i in range(n):
    row = math.log(sum(math.exp(logits[i, j]) for j in range(n)))
    col = math.log(sum(math.exp(logits[j, i]) for j in range(n)))
    out[i] = 0.5 * ((row - logits[i, i]) + (col - logits[i, i]))
  return out


def _inputs(seed=0, n=8, dim=5):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, dim)).astype(np.float32)
  b = (a + rng.normal(size=(n, dim))).astype(np.float32)
  return a, b


def _degenerate():
  """Zero rows, duplicate rows, a = b and a = −b rows."""
  a, b = _inputs(seed=1)
  a[0] = 0.0
  b[1] = 0.0
  a[3] = a[2]
  b[3] = b[2]
  b[4] = a[4]  # cos = 1
  b[5] = -a[5]  # cos = −1
  return a, b


@pytest.mark.parametrize("temperature", [0.07, 1.0])
def test_info_nce_matches_loop_reference(temperature):
  a, b = _inputs()
  got = _info_nce_rows(a, b, temperature)
  assert got.shape == (8,)
  np.testing.assert_allclose(got, _ref(a, b, temperature), rtol=1e-5, atol=1e-5)


def test_info_nce_degenerate_inputs_are_finite():
  a, b = _degenerate()
  np.testing.assert_allclose(
      _info_nce_rows(a, b, 0.1), _ref(a, b, 0.1), rtol=1e-5, atol=1e-5
  )
  value, grads = _info_nce(a, b, 0.1)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_info_nce_temperature_gradient_matches_finite_difference():
  a, b = _inputs(seed=2)
  t, eps = 0.2, 1e-3
  _, (_, _, grad_t) = _info_nce(a, b, t)
  up = np.sum(_ref(a, b, t + eps))
  down = np.sum(_ref(a, b, t - eps))
  np.testing.assert_allclose(grad_t, (up - down) / (2 * eps), rtol=1e-3)


@pytest.mark.parametrize("margin", [0.1, 0.5])
def test_angular_margin_matches_loop_reference(margin):
  a, b = _inputs(seed=3)
  got = _angular_rows(a, b, margin, 0.1)
  np.testing.assert_allclose(got, _ref(a, b, 0.1, margin), rtol=1e-5, atol=1e-5)


def test_angular_margin_zero_is_info_nce():
  a, b = _inputs(seed=4)
  np.testing.assert_allclose(
      _angular_rows(a, b, 0.0, 0.1),
      _info_nce_rows(a, b, 0.1),
      rtol=1e-6,
      atol=1e-6,
  )


def test_angular_margin_saturates_within_margin():
  # b_0 at angle θ from a_0, orthogonal to every other row, so only the
  # positive logit depends on θ: for θ ≤ μ = 0.5 it is cos(0) / τ.
  def batch(theta):
    a = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    b = np.array(
        [[math.cos(theta), math.sin(theta), 0.0], [0.0, 0.0, 1.0]], np.float32
    )
    return a, b

  inside = [_angular_rows(*batch(t), 0.5, 1.0) for t in (0.0, 0.2, 0.4)]
  for got in inside[1:]:
    np.testing.assert_allclose(got, inside[0], rtol=1e-6)
  outside = _angular_rows(*batch(0.8), 0.5, 1.0)
  np.testing.assert_allclose(outside, _ref(*batch(0.8), 1.0, 0.5), rtol=1e-5)
  assert outside[0] > inside[0][0]
  assert outside[0] < _info_nce_rows(*batch(0.8), 1.0)[0]


def test_angular_margin_degenerate_inputs_are_finite():
  a, b = _degenerate()
  # At cos θ = −1 (row 5) sin θ is clipped to √(1 − (1 − 1e-6)²) ≈ 1.4e-3,
  # which moves that positive logit by ≈ 1.4e-3 · sin μ / τ.
  np.testing.assert_allclose(
      _angular_rows(a, b, 0.2, 0.1), _ref(a, b, 0.1, 0.2), rtol=1e-5, atol=5e-3
  )
  value, grads = _angular(a, b, 0.2, 0.1)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("which", ["info_nce", "angular"])
def test_vmap_matches_per_batch_jit(which):
  pairs = [_inputs(seed=s) for s in range(3)]
  a = np.stack([p[0] for p in pairs])
  b = np.stack([p[1] for p in pairs])
  if which == "info_nce":
    rows = _info_nce_rows
    args = (0.1,)
  else:
    rows = _angular_rows
    args = (0.2, 0.1)
  mapped = jax.jit(jax.vmap(lambda x, y: rows(x, y, *args)))(a, b)
  for k in range(3):
    np.testing.assert_allclose(
        mapped[k], rows(a[k], b[k], *args), rtol=1e-6, atol=1e-6
    )


def test_bad_inputs_raise():
  a = jnp.zeros((4, 3))
  with pytest.raises(ValueError, match="temperature"):
    losses.info_nce(a, a, temperature=0.0)
  with pytest.raises(ValueError, match="margin"):
    losses.angular_margin_info_nce(a, a, margin=-0.1, temperature=0.1)
  with pytest.raises(ValueError, match="same shape"):
    losses.info_nce(a, jnp.zeros((3, 3)))


_SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, PartitionSpec as P
    from avjax import losses

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 6)).astype(np.float32)
    b = (a + rng.normal(size=(16, 6))).astype(np.float32)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    out = {}
    for name, fn in [
        ("info_nce", lambda x, y, axis: losses.info_nce(x, y, 0.1, axis)),
        ("angular", lambda x, y, axis: losses.angular_margin_info_nce(
            x, y, 0.3, 0.1, axis))]:
      single = lambda x, y: fn(x, y, None)
      sharded = jax.shard_map(
          lambda x, y: fn(x, y, "data"), mesh=mesh,
          in_specs=(P("data"), P("data")), out_specs=P("data"))
      # Per-sample losses (aux) and the gradient of their sum, one compile.
      both = lambda f: jax.jit(jax.value_and_grad(
          lambda x, y: (jnp.sum(f(x, y)), f(x, y)), argnums=(0, 1),
          has_aux=True))
      out[name] = {}
      for key, f in (("single", single), ("sharded", sharded)):
        (_, per_sample), grads = both(f)(a, b)
        out[name][key] = np.asarray(per_sample).tolist()
        out[name][key + "_grad"] = np.asarray(grads).tolist()
    json.dump(out, sys.stdout)
""")


def test_axis_name_on_four_devices_equals_single_device():
  env = dict(os.environ)
  env["XLA_FLAGS"] = (
      env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
  ).strip()
  env["JAX_PLATFORMS"] = "cpu"
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run(
      [sys.executable, "-c", _SHARDED_SCRIPT],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(proc.stdout)
  for name, r in results.items():
    assert len(r["sharded"]) == 16, name
    np.testing.assert_allclose(
        r["sharded"], r["single"], rtol=1e-5, atol=1e-6, err_msg=name
    )
    np.testing.assert_allclose(
        r["sharded_grad"], r["single_grad"], rtol=1e-4, atol=1e-6, err_msg=name
    )
