"""Records of one modality → embeddings, through the ``Method`` contract.

``embed_records`` stacks records (``avjax.inference.records``: a user's
file as a record of the training dataset) into the method's model inputs
with ``Method.modality_inputs`` — the transforms its evaluation uses — pads
the batch to a fixed size by repeating its last row, as the evaluators do
(one compilation per modality and size), and runs the method's jitted
``embed`` (``predict_fns()["embed_<modality>"]``). No method is named here.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from avjax.eval.sharded import pad_rows
from avjax.methods import base

PyTree = Any


def embed_records(
    method: base.Method,
    params: PyTree,
    modality: str,
    records: Sequence[Any],
    size: int,
) -> np.ndarray:
  """float32 [len(records), E] embeddings of one batch of records.

  Args:
    method: the trained method.
    params: its parameters.
    modality: one of ``method.modalities``.
    records: at most ``size`` records of that modality.
    size: the fixed batch size the embed function is compiled for.
  """
  if not 0 < len(records) <= size:
    raise ValueError(f"need 1..{size} records, got {len(records)}")
  inputs = method.modality_inputs(modality, list(records))
  inputs = {k: pad_rows(np.asarray(v), size) for k, v in inputs.items()}
  name = f"embed_{modality}"
  out = base.jitted_predictions(method, (name,))(params, inputs)[name]
  return np.asarray(out, np.float32)[: len(records)]
