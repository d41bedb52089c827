"""Nearest-neighbour search over embeddings, and galleries saved as .npz.

Scores are ``avjax.eval.retrieval.similarity_matrix`` — the scores the
methods' evaluations rank by: "euclidean" (negative L2 distance; TSTL-CA,
whose embeddings are L2-normalised) or "cosine" (CMD, MAMA, AVC). Higher is
better; ties keep gallery order. Queries are scored in blocks, so memory
stays bounded by ``block`` x gallery size.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

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


@dataclasses.dataclass
class Gallery:
  """Embeddings of a gallery with one name (e.g. file path) per row.

  Attributes:
    embeddings: float32 [N, E].
    names: N names.
    modality: the modality that was embedded (e.g. "image").
    metric: the similarity search uses ("euclidean" or "cosine").
  """

  embeddings: np.ndarray
  names: list[str]
  modality: str = ""
  metric: str = "cosine"

  def __post_init__(self):
    self.embeddings = np.asarray(self.embeddings, np.float32)
    self.names = [str(n) for n in self.names]
    if self.embeddings.ndim != 2 or len(self.names) != len(self.embeddings):
      raise ValueError(
          f"a gallery needs embeddings [N, E] and N names, got "
          f"{self.embeddings.shape} and {len(self.names)} names"
      )

  def save(self, path: str | os.PathLike) -> str:
    """Writes ``path`` (.npz: embeddings, names, modality, metric)."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
      path += ".npz"
    np.savez(
        path,
        embeddings=self.embeddings,
        names=np.asarray(self.names, dtype=np.str_),
        modality=np.asarray(self.modality),
        metric=np.asarray(self.metric),
    )
    return path

  @classmethod
  def load(cls, path: str | os.PathLike) -> "Gallery":
    """Reads a gallery written by ``save``; errors name the file."""
    path = os.fspath(path)
    try:
      with np.load(path, allow_pickle=False) as data:
        return cls(
            embeddings=data["embeddings"],
            names=list(data["names"]),
            modality=str(data["modality"]),
            metric=str(data["metric"]),
        )
    except (OSError, KeyError, ValueError) as e:
      raise ValueError(f"{path} is not a saved gallery ({e})") from e


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
  if queries.shape[1] != gallery.shape[1]:
    raise ValueError(
        f"queries have {queries.shape[1]} dimensions, the gallery "
        f"{gallery.shape[1]}: embedded by different models?"
    )
  if k < 1 or not len(gallery):
    raise ValueError(f"need k >= 1 and a non-empty gallery, got k={k}")
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
