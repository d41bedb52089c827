r"""Uses a trained workdir: search your own files, or predict video offsets.

Usage (files may follow a list flag, space- or comma-separated):
  python launch/predict.py --workdir runs/q --queries a.wav b.wav \
      --gallery photos/ --k 5 --out results.json
  python launch/predict.py --workdir runs/q --query_modality visual \
      --queries digit.png --gallery recordings/ --save_gallery g.npz
  python launch/predict.py --workdir runs/q --queries a.wav --gallery g.npz
  python launch/predict.py --workdir runs/sync_q --videos clip.mp4 \
      --plots plots/

Retrieval methods (TSTL-CA, AVC, CMD, MAMA): queries are embedded as
``--query_modality`` (default the method's first: audio, speech or video;
MAMA text queries are the strings themselves), the gallery (a directory of
files, a comma list, or a saved .npz) as the other modality, and each query's
top ``--k`` gallery items are printed with their scores (the method's own
similarity: higher is closer). Synchformer: ``--videos`` prints the offset
(seconds; > 0 means the audio is ahead of the picture), its probability and
the synchronisability probability per file, and per window with --windows.
``--out`` writes everything as JSON. A saved gallery records the model that
embedded it (method, config fingerprint, step, avjax version) and its
modality; searching it with another model or as another modality is an
error unless --allow_other_model / --allow_other_modality.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained workdir.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default newest).")
_QUERIES = flags.DEFINE_list(
    "queries", [], "Query files (comma list; more may follow as arguments)."
)
_QUERY_MODALITY = flags.DEFINE_string(
    "query_modality", None, "Modality of the queries (default the first)."
)
_GALLERY = flags.DEFINE_list(
    "gallery", [], "Gallery: a directory, a saved .npz, or a comma list."
)
_GALLERY_MODALITY = flags.DEFINE_string(
    "gallery_modality", None, "Modality of the gallery (default the other)."
)
_SAVE_GALLERY = flags.DEFINE_string(
    "save_gallery", None, "Save the embedded gallery to this .npz."
)
_K = flags.DEFINE_integer("k", 5, "Results per query.")
_VIDEOS = flags.DEFINE_list(
    "videos", [], "Synchformer: videos (comma list; more as arguments)."
)
_WINDOWS = flags.DEFINE_bool(
    "windows", False, "Synchformer: also print every window's prediction."
)
_OUT = flags.DEFINE_string("out", None, "Write the results as JSON here.")
_PLOTS = flags.DEFINE_string(
    "plots", None, "Synchformer: write evidence-attribution PNGs here."
)
_SKIP = flags.DEFINE_bool(
    "skip_bad_files",
    False,
    "Skip unreadable files (listed) instead of failing.",
)
_BATCH = flags.DEFINE_integer(
    "batch_size", None, "Inputs embedded at once (default: the evaluation's)."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "tfds data dir overriding the run's (record shapes)."
)
_OTHER_VERSION = flags.DEFINE_bool(
    "allow_other_version", False, "Use a checkpoint of another avjax version."
)
_OTHER_MODEL = flags.DEFINE_bool(
    "allow_other_model",
    False,
    "Search a saved gallery that another model (method, config, step or "
    "avjax version) embedded.",
)
_OTHER_MODALITY = flags.DEFINE_bool(
    "allow_other_modality",
    False,
    "Search a saved gallery of another modality than --gallery_modality.",
)
flags.mark_flags_as_required(["workdir"])


def _short(name: str, width: int = 40) -> str:
  return name if len(name) <= width else "…" + name[-(width - 1) :]


def _retrieval(model, queries: list[str]) -> dict:
  from avjax import inference  # pylint: disable=import-outside-toplevel

  qmod = _QUERY_MODALITY.value or model.modalities[0]
  if qmod not in model.modalities:
    raise app.UsageError(
        f"--query_modality={qmod} is not one of {list(model.modalities)}"
    )
  gmod = _GALLERY_MODALITY.value or model.other_modality(qmod)
  if not _GALLERY.value:
    raise app.UsageError("--gallery is required with --queries")
  kwargs = {"batch_size": _BATCH.value, "skip_bad_files": _SKIP.value}
  skipped = []
  if len(_GALLERY.value) == 1 and _GALLERY.value[0].endswith(".npz"):
    gallery = inference.Gallery.load(_GALLERY.value[0])
  else:
    source = (
        _GALLERY.value[0]
        if len(_GALLERY.value) == 1 and os.path.isdir(_GALLERY.value[0])
        else _GALLERY.value
    )
    gallery = model.gallery(gmod, source, **kwargs)
    skipped += gallery.skipped
    if _SAVE_GALLERY.value:
      print(f"Saved the gallery to {gallery.save(_SAVE_GALLERY.value)}")
  # Embedded as a gallery: its names stay aligned with the readable rows.
  embedded = model.gallery(qmod, queries, **kwargs)
  skipped += embedded.skipped
  names = embedded.names
  result = model.search(
      embedded.embeddings,
      gallery,
      k=_K.value,
      query_modality=qmod,
      gallery_modality=gmod,
      allow_other_model=_OTHER_MODEL.value,
      allow_other_modality=_OTHER_MODALITY.value,
  )
  rows = []
  print(
      f"{model.config.method}: {qmod} queries → {gallery.modality or gmod} "
      f"gallery of {len(gallery.names)} (score: "
      + (
          "cosine similarity"
          if model.metric == "cosine"
          else "minus the Euclidean distance"
      )
      + ", higher is closer)"
  )
  for q, idx, scores, hits in zip(
      names, result.indices, result.scores, result.names
  ):
    print(f"\n{q}")
    for rank, (j, s, h) in enumerate(zip(idx, scores, hits), 1):
      print(f"  {rank:>2}. {s:+.4f}  {_short(h, 70)}")
    rows.append(
        {
            "query": q,
            "matches": [
                {"rank": r, "name": h, "index": int(j), "score": float(s)}
                for r, (j, s, h) in enumerate(zip(idx, scores, hits), 1)
            ],
        }
    )
  return {
      "query_modality": qmod,
      "gallery_modality": gallery.modality or gmod,
      "metric": model.metric,
      "k": _K.value,
      "results": rows,
      "skipped": [{"file": p, "reason": r} for p, r in skipped],
  }


def _offsets(model, videos: list[str]) -> dict:
  from avjax import inference  # pylint: disable=import-outside-toplevel

  if _PLOTS.value:
    os.makedirs(_PLOTS.value, exist_ok=True)
  rows, skipped = [], []
  header = (
      f"{'video':<40} {'offset (s)':>10} {'confidence':>10} "
      f"{'sync prob':>9} {'windows':>7}"
  )
  print(header)
  print("-" * len(header))
  for i, path in enumerate(videos):
    plot = None
    if _PLOTS.value:
      stem = os.path.splitext(os.path.basename(path))[0]
      plot = os.path.join(_PLOTS.value, f"{i:03d}_{stem}_evidence.png")
    try:
      pred = model.predict_offset(path, plot_path=plot)
    except inference.UnreadableFileError as e:
      if not _SKIP.value:
        raise
      skipped.append({"file": e.path, "reason": e.reason})
      print(f"{_short(path):<40} skipped: {e.reason}")
      continue
    print(
        f"{_short(path):<40} {pred.offset_seconds:>+10.1f} "
        f"{pred.confidence:>10.3f} {pred.sync_probability:>9.3f} "
        f"{len(pred.windows):>7}"
    )
    if _WINDOWS.value:
      for w in pred.windows:
        print(
            f"  window at {w.start_seconds:6.2f} s {w.offset_seconds:>+10.1f} "
            f"{w.confidence:>10.3f} {w.sync_probability:>9.3f}"
        )
    rows.append(pred.to_json())
  return {"results": rows, "skipped": skipped}


def main(argv: list[str]) -> None:
  extra = list(argv[1:])
  queries, videos = list(_QUERIES.value), list(_VIDEOS.value)
  if extra:
    if queries and videos:
      raise app.UsageError(
          f"Unexpected arguments {extra}: give them after --queries or "
          "--videos, not both"
      )
    if not (queries or videos):
      raise app.UsageError(
          f"Unexpected arguments {extra}: put them after --queries or --videos"
      )
    (videos if videos else queries).extend(extra)
  if not (queries or videos):
    raise app.UsageError("Give --queries (with --gallery) or --videos.")
  from avjax import inference  # pylint: disable=import-outside-toplevel
  from avjax.train import logging_utils  # pylint: disable=import-outside-toplevel

  logging_utils.quiet_library_logs()
  try:
    model = inference.load(
        _WORKDIR.value,
        step=_STEP.value,
        allow_other_version=_OTHER_VERSION.value,
        data_dir=_DATA_DIR.value,
    )
  except inference.WorkdirError as e:
    sys.exit(f"Error: {e}")
  logging.info("%r", model)
  try:
    if videos:
      out = _offsets(model, videos)
    else:
      out = _retrieval(model, queries)
  except (inference.UnreadableFileError, ValueError) as e:
    sys.exit(f"Error: {e}")
  out = dict(
      out,
      workdir=model.workdir,
      step=model.step,
      method=model.config.method,
  )
  if out["skipped"]:
    print(f"\nSkipped {len(out['skipped'])} unreadable file(s):")
    for s in out["skipped"]:
      print(f"  {s['file']}: {s['reason']}")
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(out, f, indent=2)
    print(f"\nWrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
