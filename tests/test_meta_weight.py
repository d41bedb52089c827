"""MetaWeightNet: numpy reference forward, (0, 1) range, stopped gradient,
neutral initial map, input scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.models import meta_weight


def _numpy_forward(params, losses, hidden="relu", output="sigmoid", scale=1.0):
  p = params["params"]
  x = np.asarray(losses, np.float64)[:, None] / scale
  k = 0
  while f"hidden_{k}" in p:
    layer = p[f"hidden_{k}"]
    x = x @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"])
    x = np.maximum(x, 0.0) if hidden == "relu" else np.tanh(x)
    k += 1
  z = (x @ np.asarray(p["out"]["kernel"]) + np.asarray(p["out"]["bias"]))[:, 0]
  if output == "sigmoid":
    return 1.0 / (1.0 + np.exp(-z))
  return 0.5 * (np.tanh(z) + 1.0)


def _randomized(params, seed=1):
  """Non-zero biases too, so the reference sees every parameter."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(
      tree,
      [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)],
  )


def test_default_is_meta_weight_net_and_matches_numpy():
  net = meta_weight.MetaWeightNet()
  losses = jnp.linspace(0.0, 6.0, 13)
  params = _randomized(net.init(jax.random.PRNGKey(0), losses))
  shapes = jax.tree.map(lambda x: x.shape, params["params"])
  assert shapes == {
      "hidden_0": {"kernel": (1, 100), "bias": (100,)},
      "out": {"kernel": (100, 1), "bias": (1,)},
  }
  w = net.apply(params, losses)
  assert w.shape == (13,)
  np.testing.assert_allclose(
      w, _numpy_forward(params, losses), rtol=1e-5, atol=1e-6
  )


@pytest.mark.parametrize(
    "hidden,output", [("tanh", "tanh01"), ("relu", "sigmoid")]
)
def test_configured_sizes_and_activations(hidden, output):
  net = meta_weight.MetaWeightNet(
      hidden_dims=(8, 5), activation=hidden, output_activation=output
  )
  losses = jnp.asarray([0.1, 1.0, 3.0, 10.0, 0.0])
  params = _randomized(net.init(jax.random.PRNGKey(2), losses), seed=3)
  assert params["params"]["hidden_1"]["kernel"].shape == (8, 5)
  w = np.asarray(net.apply(params, losses))
  np.testing.assert_allclose(
      w, _numpy_forward(params, losses, hidden, output), rtol=1e-5, atol=1e-6
  )
  assert np.all((w > 0) & (w < 1))


def test_gradient_does_not_flow_into_the_losses():
  net = meta_weight.MetaWeightNet()
  losses = jnp.asarray([0.5, 2.0, 4.0])
  params = _randomized(net.init(jax.random.PRNGKey(0), losses))
  g = jax.grad(lambda l: jnp.sum(net.apply(params, l) * l))(losses)
  # Only the explicit factor l reaches the losses: d/dl (w · l) = w.
  np.testing.assert_allclose(g, net.apply(params, losses), rtol=1e-6)


def test_bad_settings_and_shapes_are_named():
  losses = jnp.ones((4,))
  with pytest.raises(ValueError, match="config.meta.net.activation"):
    meta_weight.MetaWeightNet(activation="swish").init(
        jax.random.PRNGKey(0), losses
    )
  with pytest.raises(ValueError, match="output_activation"):
    meta_weight.MetaWeightNet(output_activation="relu").init(
        jax.random.PRNGKey(0), losses
    )
  with pytest.raises(ValueError, match=r"per-sample losses \[B\]"):
    meta_weight.MetaWeightNet().init(jax.random.PRNGKey(0), jnp.ones((4, 1)))


@pytest.mark.parametrize("output", ["sigmoid", "tanh01"])
def test_initial_map_is_neutral_for_every_seed(output):
  net = meta_weight.MetaWeightNet(output_activation=output, input_scale=4.0)
  losses = jnp.linspace(0.0, 20.0, 41)
  for seed in range(5):
    params = net.init(jax.random.PRNGKey(seed), losses)
    w = np.asarray(net.apply(params, losses))
    np.testing.assert_allclose(w, 0.5, atol=0.01)
    # The hidden layer is the reference's U(±1/sqrt(fan_in)), fan_in = 1.
    kernel = np.asarray(params["params"]["hidden_0"]["kernel"])
    assert np.abs(kernel).max() <= 1.0 and kernel.std() > 0.4


def test_second_hidden_layer_uses_its_fan_in():
  net = meta_weight.MetaWeightNet(hidden_dims=(16, 8))
  params = net.init(jax.random.PRNGKey(0), jnp.ones((3,)))["params"]
  bound = 1.0 / np.sqrt(16.0)
  for name in ("kernel", "bias"):
    x = np.asarray(params["hidden_1"][name])
    assert np.abs(x).max() <= bound and np.abs(x).max() > 0.5 * bound


def test_zero_output_layer_still_learns():
  net = meta_weight.MetaWeightNet()
  losses = jnp.asarray([0.2, 1.0, 3.0])
  params = net.init(jax.random.PRNGKey(0), losses)
  g = jax.grad(lambda p: jnp.sum(net.apply(p, losses) * losses))(params)
  assert np.abs(np.asarray(g["params"]["out"]["kernel"])).max() > 1e-3


def test_input_is_divided_by_the_scale():
  net = meta_weight.MetaWeightNet(input_scale=2.5)
  losses = jnp.linspace(0.0, 6.0, 13)
  params = _randomized(net.init(jax.random.PRNGKey(0), losses))
  np.testing.assert_allclose(
      net.apply(params, losses),
      _numpy_forward(params, losses, scale=2.5),
      rtol=1e-5,
      atol=1e-6,
  )
  with pytest.raises(ValueError, match="config.meta.net.input_scale"):
    meta_weight.MetaWeightNet(input_scale=0.0).init(
        jax.random.PRNGKey(0), losses
    )
