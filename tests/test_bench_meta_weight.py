"""launch/bench_meta_weight.py: the noisy digits split, and a short run of
Meta-Weight-Net's setting that down-weights the flipped labels."""

import numpy as np
import pytest

from launch_modules import load  # pylint: disable=wrong-import-position

bench_meta_weight = load("bench_meta_weight")


def test_split_and_flipped_labels():
  d = bench_meta_weight.make_data(
      seed=3, noise=0.4, meta_per_class=10, test_fraction=0.3
  )
  n = len(d["train_y"])
  assert n + len(d["meta_y"]) + len(d["test_y"]) == 1797
  assert d["noisy"].sum() == round(0.4 * n)
  # Flipped labels always name another class; the others are untouched.
  assert np.all(d["train_y"][d["noisy"]] != d["train_true"][d["noisy"]])
  assert np.all(d["train_y"][~d["noisy"]] == d["train_true"][~d["noisy"]])
  assert np.bincount(d["meta_y"], minlength=10).tolist() == [10] * 10
  # Every wrong class is drawn: symmetric noise, not a fixed permutation.
  wrong = (d["train_y"] - d["train_true"])[d["noisy"]] % 10
  assert set(wrong.tolist()) == set(range(1, 10))
  with pytest.raises(ValueError, match="noise=1.0"):
    bench_meta_weight.make_data(0, 1.0, 10, 0.3)


def test_short_run_down_weights_noisy_labels_and_beats_plain():
  setting = bench_meta_weight.Setting(noise=0.4, steps=400)
  out = bench_meta_weight.run(setting, seed=0)
  assert out["weight_noisy"] < 0.5 * out["weight_clean"]
  assert out["weight_auc"] > 0.9
  assert out["bilevel_acc"] > out["plain_acc"] + 0.03
