"""The built-in protocols.

- ``clean``: every method with its own paper's settings, fitted on the ID training split, tuned
  (``--tune``) on a held-out slice of it against ``--tune-ood``. Tables: the MIM paper's AUROC and
  AUPR-OUT per OOD set.
- ``mim-notebook``: the settings the MIM paper's notebooks actually ran (fitted on the ID test
  split, pytorch-ood 0.1.6's defaults): reproduces that paper's tables, never a clean number.
- ``openood-v1.5``: OpenOOD v1.5's settings per postprocessor (its ``configs/postprocessors/*.yml``),
  its automatic search (``--tune``) on the ID validation split against the benchmark's validation OOD
  set, its metric conventions and its table: ID accuracy, AUROC and FPR@95 per OOD set, near- and
  far-OOD averages. ``--id cifar10`` (``cifar100``, ``imagenet200``, ``imagenet``) means OpenOOD's
  benchmark of that name, read from its own image lists.
"""

from oodbench.api import Protocol

MIM_CONVENTIONS = ("AUROC; AUPR = average precision with OOD as the positive class (scikit-learn's "
                   "average_precision_score, the MIM paper's AUPR); outlier scores, higher = more OOD")

CLEAN = Protocol(
    "clean", "each method's own paper settings, fitted on the ID training split",
    conventions=MIM_CONVENTIONS,
)
MIM_NOTEBOOK = Protocol(
    "mim-notebook", "the MIM paper's notebooks as they ran: detectors fitted on the ID test split, pytorch-ood 0.1.6 defaults",
    citation="MIM paper (arXiv:2312.15514), its released notebooks",
    conventions=MIM_CONVENTIONS,
)
OPENOOD_V15 = Protocol(
    "openood-v1.5", "OpenOOD v1.5: its benchmarks' lists, postprocessor settings and search, near/far tables",
    citation=("Zhang, Yang, Wang, Wang, Li, Hendrycks, Li & Liu, OpenOOD v1.5: Enhanced Benchmark for "
              "Out-of-Distribution Detection, arXiv:2306.09301 (2023)"),
    id_datasets={name: f"openood-{name}" for name in ("cifar10", "cifar100", "imagenet200", "imagenet")},
    metrics=(("auroc", "AUROC"), ("fpr95_ood_pos", "FPR@95TPR(OOD+)")),
    accuracy_column=True,
    layout="OpenOOD v1.5 layout",
    conventions=("as OpenOOD v1.5's evaluator (openood/evaluators/metrics.py): AUROC over ID and OOD test images; FPR@95 "
                 "takes OOD as the positive class: the share of ID test images flagged as OOD at the first threshold that "
                 "flags 95% of the OOD images; near- and far-OOD values are unweighted means over the sets of the group; "
                 "ID accuracy is top-1 on the ID test split. OpenOOD's AUPR is the trapezoidal area under the "
                 "precision-recall curve, oodbench's the step-wise average precision (they differ slightly; its "
                 "tables do not show AUPR)"),
)
