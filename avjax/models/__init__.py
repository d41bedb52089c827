"""Flax modules: encoders, heads, transformer, denoiser, sync, meta-weights.

Submodules: ``encoders`` (conv / time-conv / MLP encoders, two-tower),
``heads`` (AVC correspondence head, linear classifier), ``transformer``,
``speech_image`` (CMD's speech and image encoders), ``denoiser`` (CMD's
cross-attention head), ``corruption`` (feature corruptions), ``sync``
(Synchformer's segment extractors and sync transformer), ``video_text``
(MAMA's video and caption encoders), ``meta_weight`` (the meta-weight MLP,
per-sample loss → weight).
"""

from avjax.models.encoders import ConvEncoder
from avjax.models.encoders import l2_normalize
from avjax.models.encoders import make_encoder
from avjax.models.encoders import MLPEncoder
from avjax.models.encoders import TimeConvEncoder
from avjax.models.encoders import TwoTower

__all__ = [
    "ConvEncoder",
    "MLPEncoder",
    "TimeConvEncoder",
    "TwoTower",
    "l2_normalize",
    "make_encoder",
]
