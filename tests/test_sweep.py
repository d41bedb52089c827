"""launch/sweep.py: the README tables' aggregation and overrides."""

import ml_collections
import pytest

from launch_modules import load

sweep = load("sweep")


def test_format_table_mean_std():
  rows = {"a": [{"m": 0.5}, {"m": 0.7}], "b": [{"m": 1.0}]}
  table = sweep.format_table(rows, ["m"], {"a": [60.0, 120.0], "b": []})
  lines = table.splitlines()
  assert lines[0] == "| variant | m | seeds | min/run |"
  assert lines[2] == "| a | 0.600 ± 0.100 | 2 | 1.5 |"
  assert lines[3] == "| b | 1.000 ± 0.000 | 1 | nan |"


def test_format_table_metric_a_variant_lacks():
  rows = {"sparse": [{"m": 0.5, "e": 0.9}], "dense": [{"m": 0.4}]}
  lines = sweep.format_table(rows, ["m", "e"], {"sparse": [], "dense": []})
  assert lines.splitlines()[3] == "| dense | 0.400 ± 0.000 | — | 1 | nan |"
  with pytest.raises(KeyError, match="'e' is reported by 1 of its 2 runs"):
    sweep.format_table(
        {"a": [{"m": 1.0, "e": 1.0}, {"m": 1.0}]}, ["m", "e"], {"a": []}
    )
  with pytest.raises(KeyError, match="no run reports metric 'x'"):
    sweep.format_table(rows, ["m", "x"], {"sparse": [], "dense": []})


def test_apply_overrides():
  config = ml_collections.ConfigDict({"a": {"b": 1}, "c": "x"})
  sweep.apply_overrides(config, ["a.b=3", "c=hello"])
  assert config.a.b == 3 and config.c == "hello"
  with pytest.raises(KeyError, match="a.z"):
    sweep.apply_overrides(config, ["a.z=1"])
