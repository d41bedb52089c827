"""auc: against scikit-learn's roc_auc_score (ties included), edge cases."""

import numpy as np
import pytest
from sklearn import metrics

from avjax.eval import auc as auc_lib


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_with_ties(seed):
  rng = np.random.default_rng(seed)
  positive = rng.random(300) < 0.3
  # Rounded scores: many ties, within and across the groups.
  scores = np.round(rng.normal(size=300) + positive, 1)
  assert auc_lib.auc(scores, positive) == pytest.approx(
      metrics.roc_auc_score(positive, scores), abs=1e-12
  )


def test_perfect_reversed_and_constant():
  positive = np.array([1, 1, 0, 0, 0])
  assert auc_lib.auc(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), positive) == 1.0
  assert auc_lib.auc(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), positive) == 0.0
  assert auc_lib.auc(np.ones(5), positive) == 0.5


def test_empty_group_is_nan_and_bad_shapes_are_named():
  assert np.isnan(auc_lib.auc(np.arange(3.0), np.ones(3)))
  with pytest.raises(ValueError, match=r"scores \[N\] and positive \[N\]"):
    auc_lib.auc(np.ones((3, 1)), np.ones(3))


@pytest.mark.parametrize("seed", [0, 1])
def test_pairwise_auc_in_jax_matches(seed):
  import jax

  rng = np.random.default_rng(seed)
  positive = rng.random(64) < 0.4
  scores = np.round(rng.normal(size=64) + positive, 1).astype(np.float32)
  got = jax.jit(auc_lib.pairwise_auc)(scores, positive)
  assert float(got) == pytest.approx(
      metrics.roc_auc_score(positive, scores), abs=1e-6
  )
  assert float(auc_lib.pairwise_auc(scores, np.zeros(64, bool))) == 0.5
