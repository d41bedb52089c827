"""Per-method glue: stored-format records -> the method's own embed function.

Each embedder stacks records (``avjax.inference.records``) into a raw batch
shaped like the dataset's, runs the method's batch transform on it (the one
its evaluation uses) and then the method's jitted ``_embed_jit`` (its
``embed``) for one modality. A batch transform reads every key of a raw
batch, so the other modality gets zero placeholders; the model never sees
them (``embed`` with None for that modality).

Batches are padded to a fixed size by repeating their last row, as the
evaluations do, so each modality compiles once.
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np

from avjax.inference.records import RecordSpec

PyTree = Any

# Modality -> the kind of input it reads.
AUDIO, IMAGE, VIDEO, TEXT = "audio", "image", "video", "text"


def pad_rows(x: np.ndarray, size: int) -> np.ndarray:
  """[n, ...] -> [size, ...] by repeating the last row (n <= size)."""
  n = len(x)
  if n >= size:
    return x
  return np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)])


class Embedder(abc.ABC):
  """Base: which modalities a method embeds and with which similarity.

  Attributes:
    modalities: {modality name: input kind (audio/image/video/text)}.
    metric: similarity for search ("euclidean" or "cosine").
    pairs: {modality: the other modality} (default search direction).
  """

  modalities: dict[str, str] = {}
  metric: str = "cosine"

  def __init__(self, method: Any, spec: RecordSpec):
    self.method = method
    self.spec = spec

  @property
  def pairs(self) -> dict[str, str]:
    a, b = list(self.modalities)
    return {a: b, b: a}

  @abc.abstractmethod
  def embed_records(
      self, params: PyTree, modality: str, records: Sequence[Any], size: int
  ) -> np.ndarray:
    """float32 [len(records), E] embeddings of one padded batch."""


class PairsEmbedder(Embedder):
  """TSTL-CA and AVC: ``audio`` (1 s waveform) and ``image`` (digit).

  TSTL-CA ranks by Euclidean distance of L2-normalised embeddings (its
  ``config.loss.metric``), AVC by its sampling metric (cosine).
  """

  modalities = {"audio": AUDIO, "image": IMAGE}

  def __init__(self, method, spec, metric: str):
    super().__init__(method, spec)
    self.metric = metric

  def embed_records(self, params, modality, records, size):
    n = len(records)
    spec = self.spec
    if modality == "audio":  # Records are (waveform, valid length).
      records = [wave for wave, _ in records]
    stacked = pad_rows(np.stack(records), size)
    audio = (
        stacked
        if modality == "audio"
        else np.zeros((size, spec.audio_samples), np.int16)
    )
    image_shape = tuple(spec.image_size) + (
        () if spec.image_channels == 1 else (3,)
    )
    image = (
        stacked
        if modality == "image"
        else np.zeros((size,) + image_shape, np.uint8)
    )
    ids = np.zeros((size,), np.int32)
    raw = {
        "audio": audio,
        "audio_length": np.full((size,), audio.shape[-1], np.int32),
        "image": image,
        "label": ids,
        "clip_id": ids,
    }
    out = self.method.transform(raw)
    if modality == "audio":
      emb, _ = self.method._embed_jit(params, out["audio"], None)
    else:
      _, emb = self.method._embed_jit(params, None, out["visual"])
    return np.asarray(emb, np.float32)[:n]


class CaptionsEmbedder(Embedder):
  """CMD: ``speech`` (spoken caption, masked after its length) and
  ``image``; cosine similarity as its evaluation."""

  modalities = {"speech": AUDIO, "image": IMAGE}
  metric = "cosine"

  def embed_records(self, params, modality, records, size):
    n = len(records)
    spec = self.spec
    image_shape = tuple(spec.image_size) + (
        () if spec.image_channels == 1 else (3,)
    )
    if modality == "speech":
      waves = [w for w, _ in records]
      length = max(len(w) for w in waves)
      audio = pad_rows(
          np.stack([np.pad(w, (0, length - len(w))) for w in waves]), size
      )
      lengths = pad_rows(np.asarray([l for _, l in records], np.int32), size)
      image = np.zeros((size,) + image_shape, np.uint8)
    else:
      image = pad_rows(np.stack(records), size)
      samples = spec.audio_samples or spec.sample_rate
      audio = np.zeros((size, samples), np.int16)
      lengths = np.full((size,), samples, np.int32)
    raw = {
        "audio": audio,
        "audio_length": lengths,
        "image": image,
        "image_id": np.zeros((size,), np.int32),
    }
    out = self.method._eval_transform(raw)
    enc = params["encoders"]
    if modality == "speech":
      s, _ = self.method._embed_jit(enc, out["audio"], out["audio_mask"], None)
      emb = s.embedding
    else:
      _, i = self.method._embed_jit(enc, None, None, out["image"])
      emb = i.embedding
    return np.asarray(emb, np.float32)[:n]


class VideoTextEmbedder(Embedder):
  """MAMA: ``video`` (frames) and ``text`` (captions, the dataset's
  tokenizer); cosine similarity as its evaluation."""

  modalities = {"video": VIDEO, "text": TEXT}
  metric = "cosine"

  def embed_records(self, params, modality, records, size):
    n = len(records)
    m = self.method
    if modality == "video":
      frames = pad_rows(np.stack(records), size)
      batch = {
          "frames": frames,
          "frame_mask": np.ones(frames.shape[:2], bool),
      }
    else:
      texts = list(records) + [records[-1]] * (size - n)
      tokens, token_mask = m.tokenizer.encode(
          texts, int(m.config.data.max_tokens), where="text input"
      )
      batch = {"tokens": tokens, "token_mask": token_mask}
    v, t = m._embed_jit(params["encoders"], batch)
    return np.asarray(v if modality == "video" else t, np.float32)[:n]


def make_embedder(method: Any, spec: RecordSpec) -> Embedder | None:
  """The embedder of ``method`` (None for Synchformer, which predicts
  offsets instead of embedding)."""
  name = method.config.method
  if name == "tstl_ca":
    metric = "cosine" if method.config.loss.metric == "cosine" else "euclidean"
    return PairsEmbedder(method, spec, metric)
  if name == "avc":
    metric = method.config.sampling.get("metric", "cosine")
    return PairsEmbedder(
        method, spec, "cosine" if metric == "cosine" else "euclidean"
    )
  if name == "cmd":
    return CaptionsEmbedder(method, spec)
  if name == "mama":
    return VideoTextEmbedder(method, spec)
  return None
