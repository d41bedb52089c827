"""Pure, jittable losses for metric and contrastive learning.

Every function takes ``jax.Array`` inputs (shapes in its docstring), has no
Python control flow on values, and is safe under ``jax.jit``, ``jax.grad``
and ``jax.vmap``, with finite values and gradients for duplicate or zero
embeddings. The package depends on nothing but JAX.
"""

from avjax.losses.contrastive import angular_margin_info_nce
from avjax.losses.contrastive import info_nce
from avjax.losses.distances import METRICS
from avjax.losses.distances import pairwise_distances
from avjax.losses.interpolation import augment_with_interpolated_negatives
from avjax.losses.interpolation import interpolate_negatives
from avjax.losses.interpolation import interpolated_hard_triplet
from avjax.losses.triplet import MINING
from avjax.losses.triplet import cross_modal_triplet
from avjax.losses.triplet import triplet_batch_hard
from avjax.losses.triplet import triplet_semihard

__all__ = [
    "METRICS",
    "MINING",
    "angular_margin_info_nce",
    "augment_with_interpolated_negatives",
    "cross_modal_triplet",
    "info_nce",
    "interpolate_negatives",
    "interpolated_hard_triplet",
    "pairwise_distances",
    "triplet_batch_hard",
    "triplet_semihard",
]
