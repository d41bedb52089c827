"""Feature corruptions: exact fractions of valid frames, padding untouched."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.models import corruption

LENGTHS = np.array([20, 13, 7, 4, 1, 9])
T, D = 20, 3


def _features():
  """Frame (b, t) holds (b, t, 0) so a swapped frame reveals its donor;
  padding holds 1e4."""
  b, t = np.meshgrid(np.arange(len(LENGTHS)), np.arange(T), indexing="ij")
  x = np.stack([b, t, np.zeros_like(b)], -1).astype(np.float32)
  mask = np.arange(T)[None] < LENGTHS[:, None]
  x[~mask] = 1e4
  return jnp.asarray(x), mask


def _expected(fraction):
  return np.floor(fraction * LENGTHS + 0.5).astype(int)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.8, 1.0])
def test_select_fraction_is_exact_and_valid_only(fraction):
  _, mask = _features()
  for seed in range(5):
    sel = np.asarray(
        corruption.select_fraction(jax.random.PRNGKey(seed), mask, fraction)
    )
    np.testing.assert_array_equal(sel.sum(1), _expected(fraction))
    assert not np.any(sel & ~mask)


@pytest.mark.parametrize(
    "mask_fraction,swap_fraction",
    [(0.3, 0.0), (0.0, 0.4), (0.25, 0.25), (0.5, 0.4)],
)
def test_corrupt_hits_exact_fractions(mask_fraction, swap_fraction):
  x, mask = _features()
  fn = jax.jit(
      lambda r, x: corruption.corrupt(
          r,
          x,
          mask,
          mask_fraction=mask_fraction,
          swap_fraction=swap_fraction,
          fill=-7.0,
      )
  )
  for seed in range(5):
    out = fn(jax.random.PRNGKey(seed), x)
    masked, swapped = np.asarray(out.masked), np.asarray(out.swapped)
    feats = np.asarray(out.features)
    np.testing.assert_array_equal(masked.sum(1), _expected(mask_fraction))
    np.testing.assert_array_equal(swapped.sum(1), _expected(swap_fraction))
    assert not np.any(masked & swapped)
    assert not np.any((masked | swapped) & ~mask)
    # What changed is exactly the selection; padding is untouched.
    changed = np.any(feats != np.asarray(x), axis=-1)
    np.testing.assert_array_equal(changed, masked | swapped)
    np.testing.assert_array_equal(feats[masked], -7.0)
    np.testing.assert_array_equal(feats[~mask], 1e4)


def test_swapped_frames_come_from_valid_frames_of_other_rows():
  x, mask = _features()
  out = corruption.corrupt(jax.random.PRNGKey(0), x, mask, swap_fraction=1.0)
  feats = np.asarray(out.features)
  rows, frames = np.nonzero(np.asarray(out.swapped))
  donors, donor_frames = feats[rows, frames, 0], feats[rows, frames, 1]
  assert len(rows) == LENGTHS.sum()
  assert np.all(donors != rows)
  assert np.all(donor_frames < LENGTHS[donors.astype(int)])
  assert len(np.unique(donors)) > 2  # donors vary, not one fixed row


def test_selection_is_uniform_over_valid_frames():
  mask = np.arange(10)[None] < np.array([[8]])
  fn = jax.jit(jax.vmap(lambda r: corruption.select_fraction(r, mask, 0.25)))
  sel = np.asarray(fn(jax.random.split(jax.random.PRNGKey(0), 4000)))[:, 0]
  freq = sel[:, :8].mean(0)
  np.testing.assert_allclose(freq, 0.25, atol=0.03)
  assert not sel[:, 8:].any()


def test_zero_settings_are_identity_and_noise_spares_padding():
  x, mask = _features()
  out = corruption.corrupt(jax.random.PRNGKey(0), x, mask)
  np.testing.assert_array_equal(out.features, x)
  noisy = corruption.add_gaussian_noise(jax.random.PRNGKey(1), x, mask, 0.5)
  diff = np.asarray(noisy - x)
  np.testing.assert_array_equal(diff[~mask], 0.0)
  assert abs(diff[mask].std() - 0.5) < 0.05


def test_gradient_flows_to_kept_and_swapped_frames_not_masked():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 2))
  mask = np.ones((4, 6), bool)

  def total(x):
    return jnp.sum(
        corruption.corrupt(
            jax.random.PRNGKey(1), x, mask, mask_fraction=0.5
        ).features
    )

  g = np.asarray(jax.grad(total)(x))
  masked = np.asarray(
      corruption.corrupt(
          jax.random.PRNGKey(1), x, mask, mask_fraction=0.5
      ).masked
  )
  np.testing.assert_array_equal(g[masked], 0.0)
  np.testing.assert_array_equal(g[~masked], 1.0)


def test_bad_settings_raise():
  x, mask = _features()
  with pytest.raises(ValueError, match="mask_fraction=1.5"):
    corruption.corrupt(jax.random.PRNGKey(0), x, mask, mask_fraction=1.5)
  with pytest.raises(ValueError, match="must be <= 1"):
    corruption.corrupt(
        jax.random.PRNGKey(0), x, mask, mask_fraction=0.6, swap_fraction=0.6
    )
  with pytest.raises(ValueError, match="batch of at least 2"):
    corruption.corrupt(
        jax.random.PRNGKey(0), x[:1], mask[:1], swap_fraction=0.5
    )
  with pytest.raises(ValueError, match="std"):
    corruption.add_gaussian_noise(jax.random.PRNGKey(0), x, mask, -1.0)
