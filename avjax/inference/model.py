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
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import tqdm
from absl import logging

import avjax
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

  def __init__(
      self,
      workdir: str,
      step: int,
      config,
      method,
      params,
      fingerprint: str = "",
  ):
    self.workdir = workdir
    self.step = step
    self.config = config
    self.method = method
    self.params = params
    self.fingerprint = fingerprint
    self._dims: dict[str, int] = {}

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

  @property
  def identity(self) -> dict[str, Any]:
    """What a saved gallery records of the model that embedded it: method,
    config fingerprint (``workdir.config_fingerprint``), checkpoint step,
    avjax version, and the workdir (for messages only)."""
    return {
        "method": self.config.method,
        "fingerprint": self.fingerprint,
        "step": int(self.step),
        "avjax_version": avjax.__version__,
        "workdir": self.workdir,
    }

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
    uint8 frames [T, H, W(, 3)]. Text: a string, or a UTF-8 text file
    (a ``pathlib.Path``, or a string ending in ".txt" without spaces).

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
    if _is_text_file(item):
      return readers.read_text(item)
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
      inputs: file paths or arrays (see ``record``), in any mix; a single
        path or string is one input.
      batch_size: inputs read, transformed and embedded at once (bounds
        memory; one compilation per modality and size). Default: the
        evaluation's (``config.eval_batch_size``), with which the
        embeddings equal the evaluation's bit for bit (XLA's CPU kernels
        may differ in the last bits, ~1e-6, between batch sizes).
      skip_bad_files: skip inputs that cannot be read instead of raising.
      progress: show a tqdm bar (default: more than one batch).

    Returns:
      float32 [N, E] numpy array; with ``skip_bad_files``, the pair
      (embeddings of the readable inputs, [R, E] with R >= 0, list of
      (name, reason) of the skipped ones).

    Raises:
      UnreadableFileError: an input cannot be read (naming it), unless
        ``skip_bad_files``.
    """
    out, skipped = self._embed(
        modality, inputs, batch_size, skip_bad_files, progress
    )
    if not skip_bad_files:
      return out
    return out, [(name, reason) for _, name, reason in skipped]

  def _embed(self, modality, inputs, batch_size, skip_bad_files, progress):
    """``embed``, with each skipped input as (index, name, reason)."""
    self._check_modality(modality)
    if isinstance(inputs, (str, bytes, os.PathLike)):
      inputs = [inputs]
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
            skipped.append((i, e.path, e.reason))
            logging.warning("Skipping %s: %s", e.path, e.reason)
        if recs:
          parts.append(
              embedders_lib.embed_records(
                  self.method, self.params, modality, recs, size
              )
          )
        bar.update(len(inputs[start : start + batch_size]))
    if parts:
      return np.concatenate(parts), skipped
    return np.zeros((0, self._dim(modality, size)), np.float32), skipped

  def _dim(self, modality: str, size: int) -> int:
    """E of ``modality``'s embeddings (of a placeholder input, once)."""
    if modality not in self._dims:
      kind = self._check_modality(modality)
      spec = self.spec
      if kind == base.FEATURES:  # The input width is not recorded.
        return 0
      if kind == base.AUDIO:
        item = np.zeros((spec.audio_samples or spec.sample_rate,), np.int16)
      elif kind == base.TEXT:
        item = "a"
      elif kind == base.IMAGE:
        item = np.zeros(tuple(spec.image_size), np.uint8)
      else:
        shape = (spec.video_frames or 1,) + tuple(spec.video_size)
        item = np.zeros(shape, np.uint8)
      rec = self.record(modality, item)
      emb = embedders_lib.embed_records(
          self.method, self.params, modality, [rec], size
      )
      self._dims[modality] = int(emb.shape[1])
    return self._dims[modality]

  def gallery(
      self,
      modality: str,
      inputs: Sequence[Any] | str,
      names: Sequence[str] | None = None,
      **embed_kwargs,
  ) -> search_lib.Gallery:
    """Embeds a gallery (files, arrays, or a directory of files).

    Skipped files (``skip_bad_files=True``) are left out of the gallery
    and listed in its ``skipped``. The gallery records this model's
    ``identity``; save it with ``.save(path)``, reload with
    ``Gallery.load``. A directory of ``.txt`` files is a text gallery of
    their contents.

    Raises:
      ValueError: ``names`` is not one name per input, or no input is
        readable (naming the skipped ones).
    """
    kind = self._check_modality(modality)
    if isinstance(inputs, (str, os.PathLike)) and os.path.isdir(inputs):
      inputs = search_lib.gallery_files(inputs, EXTENSIONS[kind])
      if kind == base.TEXT:  # Files, not captions.
        inputs = [pathlib.Path(p) for p in inputs]
    elif isinstance(inputs, (str, bytes, os.PathLike)):
      inputs = [inputs]
    inputs = list(inputs)
    if names is None:
      names = [records_lib.input_name(x, i) for i, x in enumerate(inputs)]
    names = list(names)
    if len(names) != len(inputs):
      raise ValueError(
          f"gallery got {len(names)} names for {len(inputs)} inputs"
      )
    kwargs = dict(embed_kwargs)
    emb, skipped = self._embed(
        modality,
        inputs,
        kwargs.pop("batch_size", None),
        kwargs.pop("skip_bad_files", False),
        kwargs.pop("progress", None),
    )
    if kwargs:
      raise TypeError(f"unexpected arguments {sorted(kwargs)}")
    if skipped and not len(emb):
      raise ValueError(
          f"no readable {modality} input among the {len(inputs)} given; "
          "skipped: "
          + "; ".join(f"{name}: {reason}" for _, name, reason in skipped)
      )
    bad = {i for i, _, _ in skipped}
    return search_lib.Gallery(
        emb,
        [n for i, n in enumerate(names) if i not in bad],
        modality=modality,
        metric=self.metric,
        model=self.identity,
        skipped=[(name, reason) for _, name, reason in skipped],
    )

  # Search -------------------------------------------------------------------
  def search(
      self,
      queries: Any,
      gallery: Any,
      k: int = 5,
      query_modality: str | None = None,
      gallery_modality: str | None = None,
      allow_other_model: bool = False,
      allow_other_modality: bool = False,
  ) -> search_lib.SearchResult:
    """Top-``k`` gallery items per query with the method's similarity.

    Args:
      queries: [Q, E] embeddings, or inputs of ``query_modality``.
      gallery: a ``Gallery``, [N, E] embeddings, a .npz saved gallery, a
        directory, or inputs of ``gallery_modality`` (default: the modality
        paired with ``query_modality``).
      k: results per query.
      query_modality: the queries' modality (needed to embed inputs; with
        embeddings, given so that a ``Gallery``'s modality is checked).
      gallery_modality: the modality the gallery holds (default: the one
        paired with ``query_modality``).
      allow_other_model: search a ``Gallery`` that another model (method,
        config, step or avjax version; see ``identity``) embedded.
      allow_other_modality: search a ``Gallery`` of another modality than
        ``gallery_modality`` (e.g. image queries in an image gallery).

    Returns:
      ``SearchResult``: indices and scores [Q, k] (and gallery names).

    Raises:
      GalleryMismatchError: a ``Gallery`` from another model or of another
        modality, unless allowed.
    """
    if not (isinstance(queries, np.ndarray) and queries.ndim == 2):
      if query_modality is None:
        raise ValueError("query_modality is needed to embed query inputs")
      queries = self.embed(query_modality, queries)
    if isinstance(gallery, (str, os.PathLike)) and os.fspath(gallery).endswith(
        ".npz"
    ):
      gallery = search_lib.Gallery.load(gallery)
    modality = gallery_modality or (
        self.other_modality(query_modality) if query_modality else None
    )
    if isinstance(gallery, search_lib.Gallery):
      search_lib.check_gallery(
          gallery,
          self.identity,
          modality,
          allow_other_model=allow_other_model,
          allow_other_modality=allow_other_modality,
      )
    elif not (isinstance(gallery, np.ndarray) and gallery.ndim == 2):
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
      checkpoints, a damaged checkpoint, one of another avjax version, or
      a tokenizer.json that is damaged or not the model's.
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
  try:
    method.load_artifacts(workdir)
  except (OSError, ValueError) as e:
    raise workdir_lib.WorkdirError(f"Workdir {workdir}: {e}") from e
  workdir_lib.check_tokenizer(workdir, method, params)
  logging.info(
      "Loaded %s from %s (step %d) on %s.",
      config.method,
      workdir,
      step,
      jax.default_backend(),
  )
  return Model(
      workdir,
      step,
      config,
      method,
      params,
      fingerprint=workdir_lib.config_fingerprint(meta, config),
  )


def _is_text_file(item: Any) -> bool:
  """A text input naming a file: a path object, or a one-word string
  ending in ".txt" (a caption would hold spaces)."""
  if isinstance(item, os.PathLike):
    return True
  return (
      isinstance(item, str)
      and item.lower().endswith(".txt")
      and not any(c.isspace() for c in item)
  )
