"""``load(workdir)``: a trained model to embed, search and predict with.

A ``Model`` holds the run's config, the method object the loop trained
(``avjax.methods.get_method``) and the params of one checkpoint. Inputs go
through three steps, each owned by one module: reading a file
(``readers``), turning it into a record of the training dataset
(``records``), and the method's own batch transform and jitted embed
function (``embedders``). So a file meets exactly the features the model was
trained and evaluated on.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import tqdm
from absl import logging

from avjax import methods
from avjax.inference import embedders as embedders_lib
from avjax.methods import base
from avjax.inference import readers
from avjax.inference import records as records_lib
from avjax.inference import search as search_lib
from avjax.inference import sync as sync_lib
from avjax.inference import workdir as workdir_lib

# File extensions a gallery directory is searched for, per input kind.
EXTENSIONS = {
    base.AUDIO: (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac"),
    base.IMAGE: (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"),
    base.VIDEO: (".mp4", ".mkv", ".avi", ".mov", ".webm"),
    base.TEXT: (".txt",),
    base.FEATURES: (),
}


class Model:
  """A trained avjax model (see ``load``).

  Attributes:
    workdir: the run's directory.
    step: the checkpoint's step.
    config: the run's config (``workdir/config.json``).
    method: the method object (its ``Method`` contract: modalities,
      ``embed``, ``modality_inputs``, ``predict_fns``).
    params: the checkpoint's parameters (no optimiser state).
    spec: the training dataset's record shapes.
  """

  def __init__(self, workdir: str, step: int, config, method, params):
    self.workdir = workdir
    self.step = step
    self.config = config
    self.method = method
    self.params = params

  @functools.cached_property
  def spec(self) -> records_lib.RecordSpec:
    """The training dataset's record shapes (read when a file is first
    turned into a record)."""
    return records_lib.record_spec(self.config.data)

  def __repr__(self) -> str:
    return (
        f"Model({self.config.method!r}, workdir={self.workdir!r}, "
        f"step={self.step}, modalities={self.modalities})"
    )

  # Embedding ----------------------------------------------------------------
  @property
  def modalities(self) -> tuple[str, ...]:
    """The modalities ``embed`` takes (``Method.modalities``; empty for a
    method that predicts rather than embeds, e.g. offsets)."""
    return tuple(self.method.modalities)

  @property
  def metric(self) -> str:
    """The similarity ``search`` ranks by (``Method.similarity``)."""
    return self.method.similarity

  def other_modality(self, modality: str) -> str:
    """The modality searched with ``modality`` queries (e.g. audio→visual):
    the other one of a two-modality method."""
    self._check_modality(modality)
    others = [m for m in self.modalities if m != modality]
    if len(others) != 1:
      raise ValueError(
          f"{self.config.method} embeds {list(self.modalities)}; name the "
          "gallery modality explicitly"
      )
    return others[0]

  def _check_modality(self, modality: str) -> str:
    if not self.modalities:
      raise ValueError(
          f"{self.config.method} models do not embed (they offer "
          f"{sorted(self.method.predict_fns())}); workdir {self.workdir}"
      )
    if modality not in self.modalities:
      raise ValueError(
          f"modality {modality!r} is not one of {list(self.modalities)} "
          f"for {self.config.method}"
      )
    return self.method.modalities[modality]

  def record(self, modality: str, item: Any, index: int = 0) -> Any:
    """One input (path or array) as a training-dataset record.

    Audio: a path, an array at the dataset's rate, or (array, rate).
    Images: a path or a uint8 [H, W] / [H, W, 3] array. Video: a path or
    uint8 frames [T, H, W(, 3)]. Text: a string.

    Raises:
      UnreadableFileError: naming the input when it cannot be used.
    """
    kind = self._check_modality(modality)
    name = records_lib.input_name(item, index)
    is_path = isinstance(item, (str, os.PathLike))
    if kind == base.FEATURES:
      if is_path:
        raise ValueError(
            f"{self.config.data.name} models take pre-extracted feature "
            f"vectors; inference from files is not supported for them "
            f"({name})"
        )
      return records_lib.feature_record(item, name)
    if kind == base.AUDIO:
      if is_path:
        samples, rate = readers.read_audio(name)
      elif isinstance(item, tuple) and len(item) == 2:
        samples, rate = item
      else:
        samples, rate = item, self.spec.sample_rate
      return records_lib.audio_record(samples, int(rate), self.spec, name)
    if kind == base.IMAGE:
      image = readers.read_image(name) if is_path else item
      return records_lib.image_record(
          image, self.spec.image_size, self.spec.image_channels, name
      )
    if kind == base.VIDEO:
      frames = readers.read_video(name).frames if is_path else item
      return records_lib.frames_record(frames, self.spec, name)
    if not isinstance(item, str) or not item.strip():
      raise readers.UnreadableFileError(
          name, "text input must be a non-empty string"
      )
    return item

  def embed(
      self,
      modality: str,
      inputs: Sequence[Any],
      batch_size: int | None = None,
      skip_bad_files: bool = False,
      progress: bool | None = None,
  ):
    """Embeddings of ``inputs`` with the method's own encoder.

    Args:
      modality: one of ``self.modalities`` (e.g. "audio" / "visual",
        "speech" / "image", "video" / "text").
      inputs: file paths or arrays (see ``record``), in any mix.
      batch_size: inputs read, transformed and embedded at once (bounds
        memory; one compilation per modality and size). Default: the
        evaluation's (``config.eval_batch_size``), with which the
        embeddings equal the evaluation's bit for bit (XLA's CPU kernels
        may differ in the last bits, ~1e-6, between batch sizes).
      skip_bad_files: skip inputs that cannot be read instead of raising.
      progress: show a tqdm bar (default: more than one batch).

    Returns:
      float32 [N, E] numpy array; with ``skip_bad_files``, the pair
      (embeddings of the readable inputs, list of (name, reason) of the
      skipped ones).

    Raises:
      UnreadableFileError: an input cannot be read (naming it), unless
        ``skip_bad_files``.
    """
    self._check_modality(modality)
    inputs = list(inputs)
    if batch_size is None:
      batch_size = int(self.config.eval_batch_size)
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    show = len(inputs) > batch_size if progress is None else progress
    bar = tqdm.tqdm(
        total=len(inputs), disable=not show, desc=f"embed {modality}"
    )
    parts, skipped = [], []
    size = min(batch_size, max(1, len(inputs)))
    with bar:
      for start in range(0, len(inputs), batch_size):
        recs = []
        for i, item in enumerate(inputs[start : start + batch_size], start):
          try:
            recs.append(self.record(modality, item, i))
          except readers.UnreadableFileError as e:
            if not skip_bad_files:
              raise
            skipped.append((e.path, e.reason))
            logging.warning("Skipping %s: %s", e.path, e.reason)
        if recs:
          parts.append(
              embedders_lib.embed_records(
                  self.method, self.params, modality, recs, size
              )
          )
        bar.update(len(inputs[start : start + batch_size]))
    dim = parts[0].shape[1] if parts else 0
    out = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    return (out, skipped) if skip_bad_files else out

  def gallery(
      self,
      modality: str,
      inputs: Sequence[Any] | str,
      names: Sequence[str] | None = None,
      **embed_kwargs,
  ) -> search_lib.Gallery:
    """Embeds a gallery (files, arrays, or a directory of files).

    Skipped files (``skip_bad_files=True``) are left out of the gallery.
    Save it with ``.save(path)``, reload with ``Gallery.load``.
    """
    kind = self._check_modality(modality)
    if isinstance(inputs, (str, os.PathLike)) and os.path.isdir(inputs):
      inputs = search_lib.gallery_files(inputs, EXTENSIONS[kind])
    inputs = list(inputs)
    if names is None:
      names = [records_lib.input_name(x, i) for i, x in enumerate(inputs)]
    names = list(names)
    emb = self.embed(modality, inputs, **embed_kwargs)
    if embed_kwargs.get("skip_bad_files"):
      emb, skipped = emb
      bad = {p for p, _ in skipped}
      names = [n for n in names if n not in bad]
    return search_lib.Gallery(emb, names, modality=modality, metric=self.metric)

  # Search -------------------------------------------------------------------
  def search(
      self,
      queries: Any,
      gallery: Any,
      k: int = 5,
      query_modality: str | None = None,
      gallery_modality: str | None = None,
  ) -> search_lib.SearchResult:
    """Top-``k`` gallery items per query with the method's similarity.

    Args:
      queries: [Q, E] embeddings, or inputs of ``query_modality``.
      gallery: a ``Gallery``, [N, E] embeddings, a .npz saved gallery, a
        directory, or inputs of ``gallery_modality`` (default: the modality
        paired with ``query_modality``).
      k: results per query.

    Returns:
      ``SearchResult``: indices and scores [Q, k] (and gallery names).
    """
    if not (isinstance(queries, np.ndarray) and queries.ndim == 2):
      if query_modality is None:
        raise ValueError("query_modality is needed to embed query inputs")
      queries = self.embed(query_modality, queries)
    if isinstance(gallery, (str, os.PathLike)) and os.fspath(gallery).endswith(
        ".npz"
    ):
      gallery = search_lib.Gallery.load(gallery)
    if not isinstance(gallery, search_lib.Gallery) and not (
        isinstance(gallery, np.ndarray) and gallery.ndim == 2
    ):
      modality = gallery_modality or (
          self.other_modality(query_modality) if query_modality else None
      )
      if modality is None:
        raise ValueError("gallery_modality is needed to embed gallery inputs")
      gallery = self.gallery(modality, gallery)
    return search_lib.search(queries, gallery, k=k, metric=self.metric)

  # Synchronisation ----------------------------------------------------------
  def predict_offset(
      self,
      video: Any,
      stride_frames: int | None = None,
      plot_path: str | None = None,
  ) -> sync_lib.OffsetPrediction:
    """Synchformer: the audio-visual offset of a video (file or ``Video``).

    See ``avjax.inference.sync.predict_offset``.
    """
    if sync_lib.SYNC_OFFSETS not in self.method.predict_fns():
      raise ValueError(
          f"predict_offset needs a model that predicts offsets; "
          f"{self.workdir} holds a {self.config.method} model"
      )
    return sync_lib.predict_offset(
        self.method,
        self.params,
        self.spec,
        video,
        stride_frames=stride_frames,
        plot_path=plot_path,
    )


def load(
    workdir: str | os.PathLike,
    step: int | None = None,
    allow_other_version: bool = False,
    data_dir: str | None = None,
) -> Model:
  """Loads the newest (or ``step``'s) checkpoint of a trained workdir.

  Args:
    workdir: a directory written by ``launch/main.py``.
    step: checkpoint step (default: the newest).
    allow_other_version: use a checkpoint from another avjax version.
    data_dir: tfds data dir overriding the run's (read only for the
      dataset's record shapes, and for MAMA's tokenizer when the workdir
      has no ``tokenizer.json``, i.e. a run from before it was saved).

  Returns:
    A ``Model`` on JAX's default backend.

  Raises:
    WorkdirError: naming the workdir when it has no config, no
      checkpoints, a damaged checkpoint, or one of another avjax version.
  """
  workdir = os.path.abspath(os.fspath(workdir))
  config = workdir_lib.read_config(workdir)
  if data_dir is not None:
    config.data.data_dir = data_dir
  step = workdir_lib.pick_step(workdir, step)
  meta = workdir_lib.read_meta(workdir, step)
  workdir_lib.check_version(workdir, step, meta, allow_other_version)
  params = workdir_lib.restore_params(workdir, step)
  method = methods.get_method(config)
  method.load_artifacts(workdir)
  logging.info(
      "Loaded %s from %s (step %d) on %s.",
      config.method,
      workdir,
      step,
      jax.default_backend(),
  )
  return Model(workdir, step, config, method, params)
