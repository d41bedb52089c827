"""Evaluators shared by every method: retrieval metrics, linear probe, plots.

Submodules: `retrieval` (similarity, MAP, Recall@K, precision-recall),
`linear_probe` (its function of the same name is reached as
`linear_probe.linear_probe`, so the submodule is never shadowed) and `plots`
(PNG figures). The retrieval functions are also re-exported here.
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
