"""Use what you trained: load a workdir, embed, search, predict offsets.

  model = avjax.inference.load("runs/q")          # newest checkpoint
  audio = model.embed("audio", ["a.wav", "b.flac"])  # float32 [2, E]
  hits = model.search(audio, model.gallery("visual", "photos/"), k=5)
  sync = avjax.inference.load("runs/sync").predict_offset("clip.mp4")

Modules, one job each: ``workdir`` (config + params of a checkpoint),
``readers`` (files in), ``records`` (a file as a training-dataset record),
``embedders`` (records through the ``Method`` contract's transform and embed),
``search`` (top-k and saved galleries), ``sync`` (Synchformer offsets),
``model`` (the ``Model`` tying them together).
"""

from avjax.inference.model import Model
from avjax.inference.model import load
from avjax.inference.readers import UnreadableFileError
from avjax.inference.search import Gallery
from avjax.inference.search import GalleryMismatchError
from avjax.inference.search import SearchResult
from avjax.inference.search import search
from avjax.inference.sync import OffsetPrediction
from avjax.inference.workdir import WorkdirError

__all__ = [
    "Gallery",
    "GalleryMismatchError",
    "Model",
    "OffsetPrediction",
    "SearchResult",
    "UnreadableFileError",
    "WorkdirError",
    "load",
    "search",
]
