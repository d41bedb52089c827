"""Multiple-choice evaluator: pick a video's caption among N candidates.

MSR-VTT-MC style: for each video, its own caption and ``num_choices - 1``
distractor captions of other videos (with different text), drawn with a
fixed ``seed`` so every method answers the same questions; the answer is
the candidate most similar to the video (``avjax.eval.video_text``).

Config (``configs/common.py:multiple_choice_eval``): ``video`` and
``text`` modalities, ``captions`` (metadata key of the caption strings),
``num_choices``, ``seed``, ``prefix``. Key: ``<prefix>mc_accuracy``.
"""

from __future__ import annotations

from avjax.eval import video_text


def run(context, cfg) -> dict[str, float]:
  """Multiple-choice accuracy of ``context``'s split."""
  out = context.embeddings((cfg.video, cfg.text))
  choices, answers = video_text.make_choices(
      out[cfg.captions], int(cfg.num_choices), seed=int(cfg.seed)
  )
  accuracy = video_text.multiple_choice_accuracy(
      out[cfg.video], out[cfg.text], choices, answers
  )
  return {f"{cfg.prefix}mc_accuracy": accuracy}
