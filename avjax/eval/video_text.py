"""Video–text evaluation: 5-way multiple choice, weight plots.

Retrieval is the shared ``evaluators.retrieval`` (text→video with median
rank, the MSR-VTT convention).

* ``make_choices`` / ``multiple_choice_accuracy``: MSR-VTT-MC style: for
  each video, its caption and 4 distractor captions of other videos (with
  different text), the answer is the candidate most similar to the video.
  Distractors are drawn with a fixed seed, so all methods are scored on the
  same questions.
* ``weight_summary`` and ``plot_weight_vs_loss``: the meta-weight net's
  weights against the per-sample loss, noisy and clean pairs apart — the
  picture of whether the net down-weights noise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from avjax.eval import auc as auc_lib
from avjax.eval import retrieval


def make_choices(
    captions: Sequence[str], num_choices: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """Candidate captions for each video: its own and distractors.

  Args:
    captions: N captions, caption i belongs to video i.
    num_choices: candidates per question (the true one included).
    seed: draws the distractors and the answer's position.

  Returns:
    (choices int [N, num_choices] indices into ``captions``, answer int [N]
    the position of caption i in row i). Distractors have text different
    from the true caption.

  Raises:
    ValueError: fewer than ``num_choices`` distinct captions.
  """
  captions = [c.decode() if isinstance(c, bytes) else str(c) for c in captions]
  n = len(captions)
  if len(set(captions)) < num_choices:
    raise ValueError(
        f"multiple choice needs at least {num_choices} distinct "
        f"captions, got {len(set(captions))} among {n}"
    )
  rng = np.random.default_rng(seed)
  choices = np.zeros((n, num_choices), np.int64)
  answers = rng.integers(0, num_choices, size=n)
  for i in range(n):
    picked: list[int] = []
    texts = {captions[i]}
    while len(picked) < num_choices - 1:
      j = int(rng.integers(n))
      if captions[j] not in texts:
        texts.add(captions[j])
        picked.append(j)
    row = picked[: answers[i]] + [i] + picked[answers[i] :]
    choices[i] = row
  return choices, answers


def multiple_choice_accuracy(
    video_emb: np.ndarray,
    text_emb: np.ndarray,
    choices: np.ndarray,
    answers: np.ndarray,
) -> float:
  """Fraction of videos whose most cosine-similar candidate is the answer.

  Args:
    video_emb: [N, E]; text_emb: [M, E] embeddings of the captions that
      ``choices`` indexes; choices: int [N, C]; answers: int [N].
  """
  scores = retrieval.similarity_matrix(video_emb, text_emb)
  picked = np.take_along_axis(scores, np.asarray(choices), axis=1)
  return float(np.mean(np.argmax(picked, axis=1) == np.asarray(answers)))


def weight_summary(
    weights: np.ndarray, noisy: np.ndarray, losses: np.ndarray
) -> dict[str, float]:
  """Mean weight and loss of clean and (where any) noisy pairs.

  Keys: ``weight_clean``, ``loss_clean`` and, if there are noisy pairs,
  ``weight_noisy``, ``loss_noisy``, ``weight_gap`` (clean − noisy),
  ``weight_auc`` (AUC of the weights for clean vs noisy: P(w_clean >
  w_noisy), ½ = no separation) and ``loss_auc`` (P(ℓ_noisy > ℓ_clean): what
  a map decreasing in the loss could at best separate).
  """
  weights, losses = np.asarray(weights), np.asarray(losses)
  noisy = np.asarray(noisy).astype(bool)
  out = {}
  for name, sel in (("clean", ~noisy), ("noisy", noisy)):
    if sel.any():
      out[f"weight_{name}"] = float(weights[sel].mean())
      out[f"loss_{name}"] = float(losses[sel].mean())
  if "weight_noisy" in out and "weight_clean" in out:
    out["weight_gap"] = out["weight_clean"] - out["weight_noisy"]
    out["weight_auc"] = auc_lib.auc(weights, ~noisy)
    out["loss_auc"] = auc_lib.auc(losses, noisy)
  return out


def plot_weight_vs_loss(
    losses: np.ndarray,
    weights: np.ndarray,
    noisy: np.ndarray,
    path: str | os.PathLike,
    curve: tuple[np.ndarray, np.ndarray] | None = None,
    title: str = "meta-weight vs per-sample loss",
) -> str:
  """Scatter of weight against loss, noisy pairs red, clean pairs blue.

  Args:
    losses, weights, noisy: [N] per-sample losses, weights, 0/1 flags.
    path: PNG to write (directories are created).
    curve: optional (loss grid, weight) of the net, drawn as a line.
    title: figure title.

  Returns:
    ``path`` as a string.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

  losses, weights = np.asarray(losses), np.asarray(weights)
  noisy = np.asarray(noisy).astype(bool)
  if not losses.shape == weights.shape == noisy.shape:
    raise ValueError(
        f"losses {losses.shape}, weights {weights.shape} and "
        f"noisy {noisy.shape} must have one shape"
    )
  fig = Figure(figsize=(6, 4.5), dpi=100)
  ax = fig.add_subplot(1, 1, 1)
  for sel, color, label in (
      (~noisy, "tab:blue", "clean pairs"),
      (noisy, "tab:red", "noisy pairs"),
  ):
    if sel.any():
      ax.scatter(
          losses[sel],
          weights[sel],
          s=6,
          alpha=0.5,
          c=color,
          label=f"{label} (mean w {weights[sel].mean():.3f})",
      )
  if curve is not None:
    ax.plot(curve[0], curve[1], "k-", lw=1, label="weight net")
  ax.set_xlabel("per-sample loss")
  ax.set_ylabel("weight")
  ax.set_title(title)
  ax.legend(loc="best", fontsize=8)
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, bbox_inches="tight")
  return path
