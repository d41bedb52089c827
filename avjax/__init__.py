"""avjax: audio-visual and video-language representation learning in JAX.

Subpackages: ``losses`` (pure jittable losses), ``models`` (Flax modules),
``data`` (tfds builders, grain pipelines, features), ``train`` (the shared
loop), ``methods`` (the five systems), ``eval`` (retrieval, probes, plots).
"""

__version__ = "0.1.0"
