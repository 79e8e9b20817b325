"""The protocol contract: :class:`Protocol`, a named way of producing and reading numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol (``--protocol``): what its numbers mean, so every record can say so.

    Methods own their settings under a protocol (:attr:`Method.protocol_defaults`,
    :attr:`Method.fit_split_under`, :attr:`Method.search_space_under`); ID datasets own their
    validation data (:attr:`DatasetSpec.validation_ood`). A protocol declares the rest:

    - ``id_datasets``: ``--id`` names that mean another dataset under it (a benchmark's short name,
      e.g. ``cifar10``, for the dataset that reads that benchmark's own lists);
    - ``metrics``: the (metric, column label) pairs its tables show per OOD set and per group average;
    - ``accuracy_column``: whether its tables lead with the ID accuracy of the scoring network;
    - ``layout``: whose tables its main table follows, for headings;
    - ``conventions``: its metric conventions in words (the positive class of every metric), stored
      with each record and printed under its tables.
    """

    name: str
    description: str
    citation: str = ""
    id_datasets: Mapping[str, str] = field(default_factory=dict)
    metrics: tuple[tuple[str, str], ...] = (("auroc", "AUROC"), ("aupr_out", "AUPR"))
    accuracy_column: bool = False
    layout: str = "MIM-paper layout"
    conventions: str = ""
    origin: str = "built-in"

    def id_dataset(self, name: str) -> str:
        """The dataset ``--id name`` means under this protocol."""
        return self.id_datasets.get(name, name)

    def record(self) -> dict:
        """What every result record of the protocol stores about it, besides its name."""
        return {"conventions": self.conventions, "metrics": [list(pair) for pair in self.metrics],
                "accuracy_column": self.accuracy_column, "layout": self.layout}
