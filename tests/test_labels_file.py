"""Labels files (classifier predictions) for the AVC samplers."""

import json

import numpy as np
import pytest

from avjax.data.io import labels_file


def _csv(path, rows, header="clip_id,label"):
  path.write_text("\n".join([header] + [f"{c},{l}" for c, l in rows]) + "\n")
  return str(path)


def test_csv_and_json_read_and_align(tmp_path):
  ids = np.array([30, 10, 20])
  csv_path = _csv(tmp_path / "p.csv", [(10, 1), (20, 2), (30, 0)])
  np.testing.assert_array_equal(
      labels_file.labels_for_clips(csv_path, ids, 3), [0, 1, 2]
  )
  json_path = tmp_path / "p.json"
  json_path.write_text(json.dumps({"10": 1, "20": 2, "30": 0}))
  out = labels_file.labels_for_clips(str(json_path), ids, 3)
  assert out.dtype == np.int32
  np.testing.assert_array_equal(out, [0, 1, 2])


def test_extra_csv_columns_are_ignored(tmp_path):
  path = tmp_path / "p.csv"
  path.write_text("clip_id,label,score\n1,0,0.9\n2,1,0.4\n")
  assert labels_file.read_labels_file(str(path)) == {1: 0, 2: 1}


def test_unknown_clip_ids_are_named(tmp_path):
  path = _csv(tmp_path / "p.csv", [(1, 0), (2, 1), (99, 0), (98, 1)])
  with pytest.raises(ValueError, match=r"unknown clip id.*\[98, 99\]"):
    labels_file.labels_for_clips(path, np.array([1, 2]), 2)


def test_data_clips_missing_from_file_are_named(tmp_path):
  path = _csv(tmp_path / "p.csv", [(1, 0)])
  with pytest.raises(ValueError, match=r"no label for clip id.*\[2, 3\]"):
    labels_file.labels_for_clips(path, np.array([1, 2, 3]), 2)


def test_classes_not_in_data_are_named(tmp_path):
  path = _csv(tmp_path / "p.csv", [(1, 0), (2, 12), (3, -1)])
  with pytest.raises(ValueError, match=r"class\(es\) \[-1, 12\].*0\.\.9"):
    labels_file.labels_for_clips(path, np.array([1, 2, 3]), 10)


def test_bad_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.csv"):
    labels_file.read_labels_file(str(tmp_path / "nope.csv"))
  bad_header = _csv(tmp_path / "h.csv", [(1, 0)], header="id,label")
  with pytest.raises(ValueError, match=r"lacks column\(s\) \['clip_id'\]"):
    labels_file.read_labels_file(bad_header)
  dup = _csv(tmp_path / "d.csv", [(1, 0), (1, 1)])
  with pytest.raises(ValueError, match=r"more than once: \[1\]"):
    labels_file.read_labels_file(dup)
  frac = _csv(tmp_path / "f.csv", [(1, 0.5)])
  with pytest.raises(ValueError, match="label '0.5' is not an integer"):
    labels_file.read_labels_file(frac)
  txt = tmp_path / "p.txt"
  txt.write_text("1 0\n")
  with pytest.raises(ValueError, match="extension '.txt'"):
    labels_file.read_labels_file(str(txt))
  lst = tmp_path / "l.json"
  lst.write_text("[1, 2]")
  with pytest.raises(ValueError, match="must be an object"):
    labels_file.read_labels_file(str(lst))


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("p.json", b'{"1": 0, "2": ', r"p\.json.*not valid JSON.*line 1"),
        (
            "p.json",
            '{"1": 0, "\u00e9": 1}'.encode("latin-1"),
            r"p\.json:1.*UTF-8",
        ),
        (
            "p.csv",
            "clip_id,label\n1,0\n2,1\u00e9\n".encode("latin-1"),
            r"p\.csv:3.*UTF-8",
        ),
    ],
)
def test_undecodable_files_are_named(tmp_path, name, content, match):
  path = tmp_path / name
  path.write_bytes(content)
  with pytest.raises(ValueError, match=match):
    labels_file.read_labels_file(str(path))
