"""Nearest-neighbour search over embeddings, and galleries saved as .npz.

Scores are ``avjax.eval.retrieval.similarity_matrix`` — the scores the
methods' evaluations rank by: "euclidean" (negative L2 distance; TSTL-CA,
whose embeddings are L2-normalised) or "cosine" (CMD, MAMA, AVC). Higher is
better; ties keep gallery order. Queries are scored in blocks, so memory
stays bounded by ``block`` x gallery size.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from avjax.eval import retrieval


@dataclasses.dataclass
class SearchResult:
  """Top-k gallery items per query.

  Attributes:
    indices: int64 [Q, k] gallery rows, best first.
    scores: float32 [Q, k] their similarity (higher is better).
    names: [Q][k] gallery names of those rows (when the gallery has names).
  """

  indices: np.ndarray
  scores: np.ndarray
  names: list[list[str]] | None = None


# What a gallery records of the model that embedded it (``Model.identity``).
IDENTITY_KEYS = ("method", "fingerprint", "step", "avjax_version")


class GalleryMismatchError(ValueError):
  """A gallery searched with another model or modality than its own."""


@dataclasses.dataclass
class Gallery:
  """Embeddings of a gallery with one name (e.g. file path) per row.

  Attributes:
    embeddings: float32 [N, E].
    names: N names.
    modality: the modality that was embedded (e.g. "image").
    metric: the similarity search uses ("euclidean" or "cosine").
    model: the identity of the model that embedded it (``Model.identity``:
      method, config fingerprint, checkpoint step, avjax version, workdir);
      empty for galleries made from bare arrays.
    skipped: (name, reason) of inputs left out as unreadable.
    path: the .npz it was loaded from (for messages), if any.
  """

  embeddings: np.ndarray
  names: list[str]
  modality: str = ""
  metric: str = "cosine"
  model: dict[str, Any] = dataclasses.field(default_factory=dict)
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  path: str | None = None

  def __post_init__(self):
    self.embeddings = np.asarray(self.embeddings, np.float32)
    self.names = [str(n) for n in self.names]
    if self.embeddings.ndim != 2 or len(self.names) != len(self.embeddings):
      raise ValueError(
          f"a gallery needs embeddings [N, E] and N names, got "
          f"{self.embeddings.shape} and {len(self.names)} names"
      )

  def save(self, path: str | os.PathLike) -> str:
    """Writes ``path`` (.npz: embeddings, names, modality, metric, the
    model's identity as JSON and the skipped inputs)."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
      path += ".npz"
    np.savez(
        path,
        embeddings=self.embeddings,
        names=np.asarray(self.names, dtype=np.str_),
        modality=np.asarray(self.modality),
        metric=np.asarray(self.metric),
        model=np.asarray(json.dumps(self.model, sort_keys=True)),
        skipped=np.asarray(json.dumps([list(x) for x in self.skipped])),
    )
    return path

  @classmethod
  def load(cls, path: str | os.PathLike) -> "Gallery":
    """Reads a gallery written by ``save``; errors name the file.

    Galleries saved before the model's identity was recorded load with an
    empty ``model`` (searching them with a model then needs
    ``allow_other_model``).
    """
    path = os.fspath(path)
    try:
      with np.load(path, allow_pickle=False) as data:
        model = json.loads(str(data["model"])) if "model" in data else {}
        skipped = json.loads(str(data["skipped"])) if "skipped" in data else []
        return cls(
            embeddings=data["embeddings"],
            names=list(data["names"]),
            modality=str(data["modality"]),
            metric=str(data["metric"]),
            model=dict(model),
            skipped=[(str(n), str(r)) for n, r in skipped],
            path=path,
        )
    except (OSError, KeyError, ValueError, TypeError) as e:
      raise ValueError(f"{path} is not a saved gallery ({e})") from e

  def describe(self) -> str:
    """The gallery for messages: its file, or its size and modality."""
    if self.path:
      return f"the gallery {self.path}"
    return f"the {self.modality or ''} gallery of {len(self.names)} items"


def check_gallery(
    gallery: Gallery,
    model: dict[str, Any],
    modality: str | None,
    allow_other_model: bool = False,
    allow_other_modality: bool = False,
) -> None:
  """Refuses to search ``gallery`` with another model or modality.

  Args:
    gallery: the gallery to search.
    model: the searching model's identity (``Model.identity``).
    modality: the modality the gallery should hold (the one paired with
      the queries'), or None when not known.
    allow_other_model: search a gallery embedded by another model (another
      method, config, step or avjax version) or by an unknown one.
    allow_other_modality: search a gallery of another modality.

  Raises:
    GalleryMismatchError: naming the gallery and every differing field.
  """
  if not allow_other_model:
    if not gallery.model:
      raise GalleryMismatchError(
          f"{gallery.describe()} does not record the model that embedded it "
          f"(saved by an older avjax, or made from arrays); searching it "
          f"with {model.get('method')} from {model.get('workdir')} needs "
          "allow_other_model=True (--allow_other_model)."
      )
    diffs = [
        f"{k}: gallery {gallery.model.get(k)!r}, model {model.get(k)!r}"
        for k in IDENTITY_KEYS
        if gallery.model.get(k) != model.get(k)
    ]
    if diffs:
      raise GalleryMismatchError(
          f"{gallery.describe()} was embedded by another model (from "
          f"workdir {gallery.model.get('workdir')}) than the one of workdir "
          f"{model.get('workdir')}: "
          + "; ".join(diffs)
          + ". Embed the gallery again with this model, or pass "
          "allow_other_model=True (--allow_other_model) to search anyway."
      )
  if (
      not allow_other_modality
      and modality
      and gallery.modality
      and gallery.modality != modality
  ):
    raise GalleryMismatchError(
        f"{gallery.describe()} holds {gallery.modality} embeddings, but "
        f"these queries search {modality} ones; pass "
        "allow_other_modality=True (--allow_other_modality) to search "
        f"{gallery.modality} anyway."
    )


def search(
    queries: np.ndarray,
    gallery: np.ndarray | Gallery,
    k: int = 5,
    metric: str | None = None,
    block: int = 1024,
) -> SearchResult:
  """The ``k`` most similar gallery rows of every query.

  Args:
    queries: float [Q, E] embeddings.
    gallery: float [N, E] embeddings or a ``Gallery`` (its names are
      returned and its metric is the default).
    k: results per query (at most N).
    metric: "euclidean" or "cosine"; default the gallery's, else cosine.
    block: queries scored at once.

  Returns:
    A ``SearchResult`` with [Q, min(k, N)] indices and scores.
  """
  names = None
  if isinstance(gallery, Gallery):
    names, metric = gallery.names, metric or gallery.metric
    gallery = gallery.embeddings
  metric = metric or "cosine"
  queries = np.asarray(queries, np.float32)
  gallery = np.asarray(gallery, np.float32)
  if queries.ndim != 2 or gallery.ndim != 2:
    raise ValueError(
        f"queries and gallery must be [Q, E] and [N, E], got "
        f"{queries.shape} and {gallery.shape}"
    )
  if not len(gallery):
    raise ValueError("the gallery is empty: nothing to search")
  if k < 1:
    raise ValueError(f"need k >= 1, got k={k}")
  if queries.shape[1] != gallery.shape[1]:
    raise ValueError(
        f"queries have {queries.shape[1]} dimensions, the gallery "
        f"{gallery.shape[1]}: embedded by different models?"
    )
  k = min(int(k), len(gallery))
  indices, scores = [], []
  for start in range(0, len(queries), block):
    s = retrieval.similarity_matrix(
        queries[start : start + block], gallery, metric
    )
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    indices.append(top.astype(np.int64))
    scores.append(np.take_along_axis(s, top, axis=1).astype(np.float32))
  indices = np.concatenate(indices) if indices else np.zeros((0, k), np.int64)
  scores = np.concatenate(scores) if scores else np.zeros((0, k), np.float32)
  return SearchResult(
      indices=indices,
      scores=scores,
      names=None if names is None else [[names[j] for j in r] for r in indices],
  )


def gallery_files(
    directory: str | os.PathLike, extensions: Sequence[str]
) -> list[str]:
  """Files under ``directory`` (recursive) with one of ``extensions``, sorted.

  Raises:
    ValueError: naming the directory when it is missing or holds none.
  """
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    raise ValueError(f"gallery directory does not exist: {directory}")
  exts = tuple(e.lower() for e in extensions)
  found = sorted(
      os.path.join(root, f)
      for root, _, files in os.walk(directory)
      for f in files
      if f.lower().endswith(exts)
  )
  if not found:
    raise ValueError(
        f"gallery directory {directory} holds no files ending in "
        f"{list(exts)}"
    )
  return found
