"""The bilevel step: meta-gradient vs finite differences, degenerate cases,
the real step, meta-step frequency and 4 devices vs 1."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from avjax.models import meta_weight
from avjax.train import bilevel
from avjax.train.state import TrainState

_SCALE = 2.0  # The weight net sees loss / _SCALE.
_NET = meta_weight.MetaWeightNet(hidden_dims=(4,), input_scale=_SCALE)


def _regression(seed=0, b=6, b_meta=5, d=3):
  """float64 data of a tiny linear model (call inside jax.enable_x64(True))."""
  rng = np.random.default_rng(seed)
  data = {"x": rng.normal(size=(b, d)), "y": rng.normal(size=b)}
  meta = {"x": rng.normal(size=(b_meta, d)), "y": rng.normal(size=b_meta)}
  theta = rng.normal(size=d)
  return data, meta, theta


def _loss_fn(params, batch, rng):
  del rng
  r = batch["x"] @ params["theta"] - batch["y"]
  return r * r, {}


def _weight_fn(phi, losses):
  return _NET.apply(phi, losses)


def _phi(seed=4, dtype=jnp.float64):
  """Weight-net params with every entry random (float64)."""
  params = _NET.init(jax.random.PRNGKey(0), jnp.ones((3,), dtype))
  leaves, tree = jax.tree.flatten(params)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(
      tree, [jnp.asarray(rng.normal(size=x.shape)) for x in leaves]
  )


def _np_weights(phi, losses):
  p = jax.tree.map(np.asarray, phi)["params"]
  h = np.maximum(
      (losses[:, None] / _SCALE) @ p["hidden_0"]["kernel"]
      + p["hidden_0"]["bias"],
      0.0,
  )
  z = (h @ p["out"]["kernel"] + p["out"]["bias"])[:, 0]
  return 1.0 / (1.0 + np.exp(-z))


def _np_weighted_grad(phi, data, theta, normalize):
  """∇θ of Σ wᵢ rᵢ² / (B or Σ wᵢ), weights at the detached losses."""
  r = data["x"] @ theta - data["y"]
  w = _np_weights(phi, r * r)
  denom = w.sum() if normalize else len(r)
  return 2.0 * (w * r) @ data["x"] / denom


def _np_meta_mse(meta, theta_v):
  rm = meta["x"] @ theta_v - meta["y"]
  return np.mean(rm * rm)


def _np_meta_loss(
    phi, data, meta, theta, lr, normalize, trace=None, momentum=0.0
):
  """Closed form: weighted-loss gradient, one (momentum) SGD step, meta MSE."""
  grad = _np_weighted_grad(phi, data, theta, normalize)
  direction = grad if trace is None else grad + momentum * trace
  return _np_meta_mse(meta, theta - lr * direction)


def _np_adam_meta_loss(phi, data, meta, theta, lr, normalize, mu, nu, count):
  """One Adam step (Kingma & Ba, bias-corrected; ε inside and outside the
  root as optax's eps_root / eps) from moments (mu, nu) after ``count``
  steps, on the weighted-loss gradient; then the meta MSE."""
  b1, b2, eps, eps_root = 0.9, 0.999, 1e-8, 1e-16
  g = _np_weighted_grad(phi, data, theta, normalize)
  mu = b1 * mu + (1 - b1) * g
  nu = b2 * nu + (1 - b2) * g * g
  t = count + 1
  mu_hat, nu_hat = mu / (1 - b1**t), nu / (1 - b2**t)
  step = lr * mu_hat / (np.sqrt(nu_hat + eps_root) + eps)
  return _np_meta_mse(meta, theta - step)


def _central_differences(fn, phi, eps=1e-6):
  leaves, tree = jax.tree.flatten(phi)
  grads = []
  for i, leaf in enumerate(leaves):
    leaf = np.asarray(leaf)
    g = np.zeros_like(leaf)
    for idx in np.ndindex(leaf.shape):

      def at(delta):
        moved = leaf.copy()
        moved[idx] += delta
        new = list(leaves)
        new[i] = moved
        return fn(jax.tree.unflatten(tree, new))

      g[idx] = (at(eps) - at(-eps)) / (2 * eps)
    grads.append(g)
  return jax.tree.unflatten(tree, grads)


def _state(theta, tx, phi, weight_tx):
  return TrainState.create(
      {"theta": jnp.asarray(theta)},
      tx,
      jax.random.PRNGKey(0),
      aux={bilevel.META_KEY: bilevel.init_meta_state(phi, weight_tx)},
  )


def _meta_grad_from_step(state, data, meta, options, learning_rate=None):
  """The weight-net gradient the step used: φ − φ' under SGD(1)."""
  new, metrics, _ = jax.jit(
      lambda s, b, m: bilevel.bilevel_step(
          s,
          b,
          m,
          loss_fn=_loss_fn,
          weight_fn=_weight_fn,
          weight_tx=optax.sgd(1.0),
          options=options,
          learning_rate=learning_rate,
      )
  )(state, data, meta)
  old = state.aux[bilevel.META_KEY]["params"]
  return (
      jax.tree.map(
          lambda a, b: np.asarray(a) - np.asarray(b),
          old,
          new.aux[bilevel.META_KEY]["params"],
      ),
      metrics,
  )


def _assert_trees_close(a, b, **kw):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("lr_source", ["virtual_lr", "schedule"])
def test_sgd_meta_gradient_matches_finite_differences(normalize, lr_source):
  with jax.enable_x64(True):
    data, meta, theta = _regression()
    phi = _phi()
    lr = 0.3
    if lr_source == "virtual_lr":
      options = bilevel.BilevelOptions("sgd", lr, normalize=normalize)
      schedule = None
    else:  # The model's schedule at the current step (0): lr.
      options = bilevel.BilevelOptions("sgd", None, normalize=normalize)
      schedule = optax.linear_schedule(lr, 0.0, 10)
    state = _state(theta, optax.sgd(0.05), phi, optax.sgd(1.0))
    got, metrics = _meta_grad_from_step(state, data, meta, options, schedule)
    want = _central_differences(
        lambda p: _np_meta_loss(p, data, meta, theta, lr, normalize), phi
    )
    _assert_trees_close(got, want, rtol=1e-6, atol=1e-9)
    assert float(metrics["meta_loss"]) == pytest.approx(
        _np_meta_loss(phi, data, meta, theta, lr, normalize), rel=1e-6
    )


@pytest.mark.parametrize("normalize", [False, True])
def test_optimizer_virtual_step_goes_through_the_momentum_state(normalize):
  with jax.enable_x64(True):
    data, meta, theta = _regression(seed=1)
    phi = _phi(seed=5)
    lr, mom = 0.2, 0.9
    tx = optax.sgd(lr, momentum=mom)
    state = _state(theta, tx, phi, optax.sgd(1.0))
    trace = np.array([0.5, -1.0, 2.0])  # Momentum from an earlier step.
    state = state.apply_gradients({"theta": jnp.asarray(trace)})
    theta1 = np.asarray(state.params["theta"])
    got, _ = _meta_grad_from_step(
        state,
        data,
        meta,
        bilevel.BilevelOptions("optimizer", normalize=normalize),
    )
    want = _central_differences(
        lambda p: _np_meta_loss(
            p, data, meta, theta1, lr, normalize, trace, mom
        ),
        phi,
    )
    _assert_trees_close(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("normalize", [False, True])
def test_adam_virtual_step_matches_an_independent_adam(normalize):
  """Normalised weights + the optax Adam virtual step vs a numpy Adam step
  written out by hand, differentiated by central differences (float64)."""
  with jax.enable_x64(True):
    data, meta, theta = _regression(seed=2)
    phi = _phi(seed=6)
    lr = 0.1
    tx = optax.adam(lr, eps_root=1e-16)
    state = _state(theta, tx, phi, optax.sgd(1.0))
    g0 = np.array([0.3, -0.2, 0.1])  # An earlier step's gradient.
    state = state.apply_gradients({"theta": jnp.asarray(g0)})
    theta1 = np.asarray(state.params["theta"])
    mu, nu = 0.1 * g0, 0.001 * g0 * g0  # Adam's moments after that step.
    got, metrics = _meta_grad_from_step(
        state,
        data,
        meta,
        bilevel.BilevelOptions("optimizer", normalize=normalize),
    )
    fn = lambda p: _np_adam_meta_loss(
        p, data, meta, theta1, lr, normalize, mu, nu, 1
    )
    _assert_trees_close(
        got, _central_differences(fn, phi), rtol=1e-5, atol=1e-9
    )
    assert float(metrics["meta_loss"]) == pytest.approx(fn(phi), rel=1e-6)
    assert max(np.abs(x).max() for x in jax.tree.leaves(got)) > 1e-6


def test_adam_virtual_step_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    data, meta, theta = _regression(seed=2)
    phi = _phi(seed=6)
    tx = optax.adam(0.1)
    state = _state(theta, tx, phi, optax.sgd(1.0))
    state = state.apply_gradients({"theta": jnp.asarray([0.3, -0.2, 0.1])})
    options = bilevel.BilevelOptions("optimizer")
    rngs = (jax.random.PRNGKey(1), jax.random.PRNGKey(2))

    def objective(p):
      return bilevel.meta_objective(
          p,
          _weight_fn,
          _loss_fn,
          state.params,
          state.opt_state,
          tx,
          data,
          meta,
          rngs,
          options,
          state.step,
      )

    got, _ = _meta_grad_from_step(state, data, meta, options)
    want = _central_differences(lambda p: float(objective(p)), phi)
    _assert_trees_close(got, want, rtol=1e-5, atol=1e-9)
    assert max(np.abs(x).max() for x in jax.tree.leaves(got)) > 1e-6


@pytest.mark.parametrize("mode", ["sgd", "optimizer"])
def test_zero_virtual_learning_rate_gives_zero_meta_gradient(mode):
  with jax.enable_x64(True):
    data, meta, theta = _regression(seed=3)
    phi = _phi()
    if mode == "sgd":
      tx, options = optax.adam(0.1), bilevel.BilevelOptions("sgd", 0.0)
    else:
      tx, options = optax.sgd(0.0), bilevel.BilevelOptions("optimizer")
    state = _state(theta, tx, phi, optax.sgd(1.0))
    got, metrics = _meta_grad_from_step(state, data, meta, options)
    for leaf in jax.tree.leaves(got):
      np.testing.assert_array_equal(leaf, 0.0)
    assert float(metrics["meta_grad_norm"]) == 0.0
    # A non-zero virtual lr does move the weight net (the test can fail).
    state = _state(theta, tx, phi, optax.sgd(1.0))
    moved, _ = _meta_grad_from_step(
        state, data, meta, bilevel.BilevelOptions("sgd", 0.1)
    )
    assert max(np.abs(x).max() for x in jax.tree.leaves(moved)) > 1e-6


@pytest.mark.parametrize("normalize", [False, True])
def test_unit_weights_make_the_real_step_the_plain_step(normalize):
  data, meta, theta = _regression(seed=4)
  data = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), data)
  meta = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), meta)
  tx = optax.adamw(0.05)
  params = {"theta": jnp.asarray(theta, jnp.float32)}
  phi = _NET.init(jax.random.PRNGKey(0), jnp.ones((3,)))
  weight_tx = bilevel.make_weight_optimizer(
      {"name": "adam", "learning_rate": 1e-3, "weight_decay": 1e-4}
  )
  state = TrainState.create(
      params,
      tx,
      jax.random.PRNGKey(0),
      aux={bilevel.META_KEY: bilevel.init_meta_state(phi, weight_tx)},
  )
  ones = lambda p, losses: jnp.ones_like(losses)
  plain = state
  for _ in range(3):
    state, metrics, per_sample = bilevel.bilevel_step(
        state,
        data,
        meta,
        loss_fn=_loss_fn,
        weight_fn=ones,
        weight_tx=weight_tx,
        options=bilevel.BilevelOptions("sgd", 0.1, normalize=normalize),
    )
    grads = jax.grad(lambda p: jnp.mean(_loss_fn(p, data, None)[0]))(
        plain.params
    )
    plain = plain.apply_gradients(grads)
  np.testing.assert_allclose(
      state.params["theta"], plain.params["theta"], rtol=1e-6
  )
  _assert_trees_close(state.opt_state, plain.opt_state, rtol=1e-6)
  assert int(state.step) == 3
  np.testing.assert_array_equal(per_sample["weights"], 1.0)
  assert float(metrics["loss"]) == pytest.approx(float(metrics["loss_mean"]))


def test_learned_weights_enter_the_real_step():
  data, meta, theta = _regression(seed=5)
  data = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), data)
  params = {"theta": jnp.asarray(theta, jnp.float32)}
  state = TrainState.create(
      params,
      optax.sgd(0.1),
      jax.random.PRNGKey(0),
      aux={bilevel.META_KEY: bilevel.init_meta_state({}, optax.sgd(0.0))},
  )
  w = jnp.asarray([1.0, 0.0, 2.0, 0.5, 0.0, 1.0])
  new, _, _ = bilevel.bilevel_step(
      state,
      data,
      data,
      loss_fn=_loss_fn,
      weight_fn=lambda p, l: w,
      weight_tx=optax.sgd(0.0),
      options=bilevel.BilevelOptions("sgd", 0.1),
  )
  x, y = np.asarray(data["x"]), np.asarray(data["y"])
  r = x @ theta - y
  want = theta - 0.1 * 2.0 * (np.asarray(w) * r) @ x / len(r)
  np.testing.assert_allclose(new.params["theta"], want, rtol=1e-5)


@pytest.mark.parametrize(
    "meta_start,want",
    [
        (0, [True, False, True, False, True, False]),
        (3, [False, False, False, False, True, False]),
    ],
)
def test_meta_every_and_start_update_the_weight_net_on_those_steps(
    meta_start, want
):
  data, meta, theta = _regression(seed=6)
  cast = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t)
  data, meta = cast(data), cast(meta)
  phi = _NET.init(jax.random.PRNGKey(0), jnp.ones((3,)))
  state = TrainState.create(
      {"theta": jnp.asarray(theta, jnp.float32)},
      optax.sgd(0.1),
      jax.random.PRNGKey(0),
      aux={bilevel.META_KEY: bilevel.init_meta_state(phi, optax.adam(0.01))},
  )
  step = jax.jit(
      lambda s: bilevel.bilevel_step(
          s,
          data,
          meta,
          loss_fn=_loss_fn,
          weight_fn=_weight_fn,
          weight_tx=optax.adam(0.01),
          options=bilevel.BilevelOptions(
              "sgd", 0.3, meta_every=2, meta_start=meta_start
          ),
      )
  )
  changed, flags = [], []
  for _ in range(6):
    before = state.aux[bilevel.META_KEY]["params"]
    state, metrics, _ = step(state)
    after = state.aux[bilevel.META_KEY]["params"]
    changed.append(
        any(
            not np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after))
        )
    )
    flags.append(float(metrics["meta_step"]))
  assert changed == want
  assert flags == [float(c) for c in want]


def test_bad_options_and_state_are_named():
  with pytest.raises(ValueError, match="config.meta.virtual_step"):
    bilevel.BilevelOptions("adam")
  with pytest.raises(ValueError, match="only used with virtual_step='sgd'"):
    bilevel.BilevelOptions("optimizer", 0.1)
  with pytest.raises(ValueError, match="config.meta.meta_every"):
    bilevel.BilevelOptions("sgd", 0.1, meta_every=0)
  with pytest.raises(ValueError, match="config.meta.meta_start"):
    bilevel.BilevelOptions("sgd", 0.1, meta_start=-1)
  with pytest.raises(ValueError, match="config.meta.virtual_lr"):
    bilevel.BilevelOptions("sgd", -1.0)
  with pytest.raises(ValueError, match="config.meta.optimizer.name"):
    bilevel.make_weight_optimizer({"name": "lamb"})
  with pytest.raises(ValueError, match="config.meta.optimizer lacks the field"):
    bilevel.make_weight_optimizer({"name": "adam", "learning_rate": 1e-3})
  with pytest.raises(
      ValueError, match="config.meta lacks the field 'normalize'"
  ):
    bilevel.BilevelOptions.from_config(
        {"virtual_step": "sgd", "virtual_lr": None, "meta_every": 1}
    )
  state = TrainState.create(
      {"theta": jnp.zeros(3)}, optax.sgd(0.1), jax.random.PRNGKey(0)
  )
  data = {"x": jnp.ones((2, 3)), "y": jnp.ones(2)}
  with pytest.raises(ValueError, match="state.aux\\['meta_weight'\\]"):
    bilevel.bilevel_step(
        state,
        data,
        data,
        loss_fn=_loss_fn,
        weight_fn=_weight_fn,
        weight_tx=optax.sgd(1.0),
        options=bilevel.BilevelOptions("sgd", 0.1),
    )
  state = state.replace(
      aux={
          bilevel.META_KEY: bilevel.init_meta_state(
              _phi(dtype=jnp.float32), optax.sgd(1.0)
          )
      }
  )
  with pytest.raises(ValueError, match="learning_rate=None"):
    bilevel.bilevel_step(
        state,
        data,
        data,
        loss_fn=_loss_fn,
        weight_fn=_weight_fn,
        weight_tx=optax.sgd(1.0),
        options=bilevel.BilevelOptions("sgd"),
    )


# An InfoNCE loss needs every row's negatives: a step that computed it per
# shard would differ from one device.
_SHARDED_SCRIPT = """
import json
import jax, jax.numpy as jnp, numpy as np, optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from avjax import losses
from avjax.models import meta_weight
from avjax.train import bilevel
from avjax.train.state import TrainState

net = meta_weight.MetaWeightNet(hidden_dims=(16,))
rng = np.random.default_rng(0)
def data(n):
  return {"x": rng.normal(size=(n, 6)).astype(np.float32),
          "y": rng.normal(size=(n, 5)).astype(np.float32)}
batches = [(data(16), data(8)) for _ in range(3)]

def loss_fn(params, batch, key):
  noise = 0.01 * jax.random.normal(key, (batch["x"].shape[0], 4))
  a = batch["x"] @ params["a"] + noise
  return losses.info_nce(a, batch["y"] @ params["b"], 0.3), {}

def run(devices):
  mesh = Mesh(np.asarray(devices), ("data",))
  rep, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  params = {"a": jax.random.normal(jax.random.PRNGKey(1), (6, 4)),
            "b": jax.random.normal(jax.random.PRNGKey(2), (5, 4))}
  phi = net.init(jax.random.PRNGKey(3), jnp.ones((16,)))
  wtx = optax.adam(0.05)
  state = TrainState.create(params, optax.adam(0.05), jax.random.PRNGKey(4),
      aux={bilevel.META_KEY: bilevel.init_meta_state(phi, wtx)})
  state = jax.device_put(state, rep)
  step = jax.jit(lambda s, b, m: bilevel.bilevel_step(
      s, b, m, loss_fn=loss_fn, weight_fn=net.apply, weight_tx=wtx,
      options=bilevel.BilevelOptions("sgd", 0.5, meta_every=2)))
  out = []
  for b, m in batches:
    state, metrics, per = step(state, jax.device_put(b, shard),
                               jax.device_put(m, shard))
    out.append({"loss": float(metrics["loss"]),
                "meta_loss": float(metrics["meta_loss"]),
                "weights": np.asarray(per["weights"]).tolist()})
  leaves = [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(
      (state.params, state.opt_state, state.aux))]
  return {"steps": out, "leaves": leaves,
          "n_shards": len(per["weights"].sharding.device_set)}

print(json.dumps({"devices": jax.device_count(),
                  "one": run(jax.devices()[:1]), "four": run(jax.devices())}))
"""


def test_four_devices_match_one_device():
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
  env["JAX_PLATFORMS"] = "cpu"
  out = subprocess.run(
      [sys.executable, "-c", _SHARDED_SCRIPT],
      env=env,
      check=True,
      capture_output=True,
      text=True,
      timeout=300,
  )
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["devices"] == 4
  one, four = result["one"], result["four"]
  assert one["n_shards"] == 1 and four["n_shards"] == 4
  for s1, s4 in zip(one["steps"], four["steps"]):
    for key in s1:
      np.testing.assert_allclose(
          s4[key], s1[key], rtol=2e-5, atol=1e-6, err_msg=key
      )
  for a, b in zip(one["leaves"], four["leaves"]):
    np.testing.assert_allclose(b, a, rtol=2e-5, atol=1e-6)
