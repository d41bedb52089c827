"""Evaluation shared by every method.

`evaluators` is the room of configured evaluators (`config.evals`:
retrieval, linear probe, multiple choice, sync offset) that run on a
method's prediction functions; `sharded.map_split` embeds or predicts a
whole split across processes for all of them. The metric functions they
use are plain modules: `retrieval` (similarity, MAP, Recall@K,
precision-recall), `linear_probe` (its function of the same name is reached
as `linear_probe.linear_probe`, so the submodule is never shadowed),
`video_text` (multiple choice, weight summaries), `sync` (offset accuracy,
ROC AUC, evidence hits) and `plots` (PNG figures). The retrieval functions
are also re-exported here.
"""

from avjax.eval import linear_probe
from avjax.eval import plots
from avjax.eval import retrieval
from avjax.eval.retrieval import average_precision_per_query
from avjax.eval.retrieval import cross_modal_retrieval_metrics
from avjax.eval.retrieval import first_relevant_rank
from avjax.eval.retrieval import interpolated_precision_recall
from avjax.eval.retrieval import mean_average_precision
from avjax.eval.retrieval import recall_at_k
from avjax.eval.retrieval import similarity_matrix

__all__ = [
    "average_precision_per_query",
    "cross_modal_retrieval_metrics",
    "first_relevant_rank",
    "interpolated_precision_recall",
    "linear_probe",
    "mean_average_precision",
    "plots",
    "recall_at_k",
    "retrieval",
    "similarity_matrix",
]
