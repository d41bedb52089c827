"""Flax modules: encoders, heads, denoiser, sync module, meta-weight MLP."""

from avjax.models.encoders import ConvEncoder
from avjax.models.encoders import l2_normalize
from avjax.models.encoders import make_encoder
from avjax.models.encoders import MLPEncoder
from avjax.models.encoders import TimeConvEncoder
from avjax.models.encoders import TwoTower

__all__ = ["ConvEncoder", "MLPEncoder", "TimeConvEncoder", "TwoTower", "l2_normalize",
           "make_encoder"]
