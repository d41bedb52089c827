import jax
import jax.numpy as jnp
import numpy as np
import optax

from avjax.train.state import TrainState


def test_apply_gradients_and_rng():
  state = TrainState.create(
      {"w": jnp.ones(2)}, optax.sgd(0.5), jax.random.PRNGKey(0)
  )
  new = state.apply_gradients({"w": jnp.ones(2)})
  np.testing.assert_allclose(new.params["w"], [0.5, 0.5])
  assert int(new.step) == 1
  assert not np.array_equal(state.step_rng(), new.step_rng())
  # The saved tree round-trips and excludes the static optimiser.
  tree = new.checkpoint_tree()
  assert set(tree) == {"step", "params", "opt_state", "rng", "aux"}
  back = state.from_checkpoint_tree(tree)
  np.testing.assert_allclose(back.params["w"], new.params["w"])


def test_state_is_a_jittable_pytree():
  state = TrainState.create(
      {"w": jnp.ones(2)}, optax.adam(0.1), jax.random.PRNGKey(0)
  )
  step = jax.jit(
      lambda s: s.apply_gradients({"w": jnp.ones(2)}), donate_argnums=0
  )
  out = step(state)
  assert int(out.step) == 1
