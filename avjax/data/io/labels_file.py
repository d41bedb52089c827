"""Class labels for clips read from a file (e.g. a classifier's predictions).

The soft-positive paper obtains class labels for unlabelled clips from a
publicly available classifier; this reader lets any such predictions drive
the AVC samplers in place of the dataset's annotation.

Formats (chosen by the file extension):
  * ``.csv``: a header row ``clip_id,label`` then one row per clip; extra
    columns are ignored (e.g. a ``score`` column).
  * ``.json``: an object ``{"<clip_id>": label, ...}``.
Clip ids are the dataset's integer ``id`` feature; labels are integer class
indices in ``[0, num_classes)``.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Sequence

import numpy as np

from avjax.data.io import text as text_io

_SHOW = 10  # How many offending ids/classes an error message lists.


def _show(values: Sequence) -> str:
  values = sorted(values)
  head = ", ".join(str(v) for v in values[:_SHOW])
  more = f" … ({len(values)} in all)" if len(values) > _SHOW else ""
  return f"[{head}{more}]"


def _as_int(value, what: str, path: str) -> int:
  try:
    f = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{path}: {what} {value!r} is not an integer") from None
  if not f.is_integer():
    raise ValueError(f"{path}: {what} {value!r} is not an integer")
  return int(f)


def read_labels_file(path: str) -> dict[int, int]:
  """Reads ``{clip_id: label}`` from a CSV or JSON labels file.

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: on an unknown extension, a file that is not UTF-8 or not
      valid JSON (naming the line), a missing ``clip_id``/``label`` column,
      a non-integer value or a clip id listed twice.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"labels file {path!r} does not exist")
  ext = os.path.splitext(path)[1].lower()
  pairs: list[tuple[int, int]] = []
  if ext == ".csv":
    with io.StringIO(text_io.read_text(path), newline="") as f:
      reader = csv.DictReader(f)
      missing = {"clip_id", "label"} - set(reader.fieldnames or ())
      if missing:
        raise ValueError(
            f"{path}: CSV header {reader.fieldnames} lacks "
            f"column(s) {sorted(missing)}; expected "
            "'clip_id,label'"
        )
      for row in reader:
        pairs.append(
            (
                _as_int(row["clip_id"], "clip_id", path),
                _as_int(row["label"], "label", path),
            )
        )
  elif ext == ".json":
    obj = text_io.read_json(path)
    if not isinstance(obj, dict):
      raise ValueError(
          f"{path}: JSON must be an object {{clip_id: label}}, "
          f"got {type(obj).__name__}"
      )
    pairs = [
        (_as_int(k, "clip_id", path), _as_int(v, "label", path))
        for k, v in obj.items()
    ]
  else:
    raise ValueError(
        f"labels file {path!r}: extension {ext!r} is not one of "
        "['.csv', '.json']"
    )
  result: dict[int, int] = {}
  dupes = set()
  for clip, label in pairs:
    if clip in result:
      dupes.add(clip)
    result[clip] = label
  if dupes:
    raise ValueError(
        f"{path}: clip id(s) listed more than once: " f"{_show(dupes)}"
    )
  return result


def labels_for_clips(
    path: str, clip_ids: np.ndarray, num_classes: int
) -> np.ndarray:
  """Labels from ``path`` aligned with a dataset's clips.

  Args:
    path: CSV or JSON labels file (see module docstring).
    clip_ids: int [N] the dataset's clip ids, in dataset order.
    num_classes: the dataset's number of classes; labels must lie in
      ``[0, num_classes)``.

  Returns:
    int32 [N], the file's label of each clip.

  Raises:
    ValueError: naming clip ids of the file that the data does not have,
      clip ids of the data that the file lacks, and labels that are not
      classes of the data.
  """
  table = read_labels_file(path)
  data_ids = {int(c) for c in np.asarray(clip_ids).ravel()}
  unknown = set(table) - data_ids
  if unknown:
    raise ValueError(
        f"{path}: unknown clip id(s) not in the data: " f"{_show(unknown)}"
    )
  missing = data_ids - set(table)
  if missing:
    raise ValueError(
        f"{path}: no label for clip id(s) of the data: " f"{_show(missing)}"
    )
  bad = {lab for lab in table.values() if not 0 <= lab < num_classes}
  if bad:
    raise ValueError(
        f"{path}: class(es) {_show(bad)} are not classes of the "
        f"data (which has classes 0..{num_classes - 1})"
    )
  return np.asarray(
      [table[int(c)] for c in np.asarray(clip_ids).ravel()], np.int32
  )
