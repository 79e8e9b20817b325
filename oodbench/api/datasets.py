"""The dataset contract: :class:`DatasetSpec`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its role, splits (each an :class:`oodbench.data.source.Source`), and for ID sets its classes.

    ``default_ood`` (ID sets only) is the OOD list a run uses when ``--ood`` is not given.
    ``near_ood`` / ``far_ood`` (ID sets only) group OOD sets in tables, as OpenOOD v1.5 does per ID
    set: each entry names an OOD dataset, the dataset it stands for, or its ``source``.
    ``validation_ood`` (ID sets only) names the OOD set its benchmark tunes on: ``--tune`` then
    chooses hyperparameters on the ID ``val`` split against it, never on test data or a held-out
    slice of the training split.
    ``covariate_shift`` (ID sets only) names its covariate-shifted ID sets (role ``csid``: its classes,
    other images, e.g. ImageNet-V2, -C, -R): under ``--full-spectrum`` they count as ID in every metric,
    as in OpenOOD v1.5's full-spectrum evaluation, and their accuracy is reported.
    ``label_space`` (ID sets only) names the label space of its classes when it is a shared one
    (``"imagenet-1k"``: labels are ImageNet-1K class indices): published weights for that label space
    then apply (:class:`KnownCheckpoint`).
    ``source`` names the collection the images were drawn from (sets of one source may overlap);
    ``same_as`` names the dataset a re-encoded copy stands for: the copy gets that dataset's
    method defaults and published numbers (never its pre-trained weights).
    """

    name: str
    role: str
    splits: Mapping[str, Any]
    num_classes: int | None = None
    classes: tuple[str, ...] | None = None
    description: str = ""
    citation: str = ""
    default_ood: tuple[str, ...] = ()
    near_ood: tuple[str, ...] = ()
    far_ood: tuple[str, ...] = ()
    validation_ood: str | None = None
    label_space: str | None = None
    covariate_shift: tuple[str, ...] = ()
    source: str | None = None
    same_as: str | None = None
    origin: str = "built-in"

    def __post_init__(self) -> None:
        if self.role not in {"id", "ood", "aux", "csid"}:
            raise ValueError(f"dataset '{self.name}' has role {self.role!r}; use 'id', 'ood', 'aux' or 'csid'")
        if self.role == "id" and not self.num_classes:
            raise ValueError(f"ID dataset '{self.name}' must declare num_classes")
        if self.validation_ood and "val" not in self.splits:
            raise ValueError(f"dataset '{self.name}' declares the validation OOD set '{self.validation_ood}' but no 'val' split "
                             "to tune against it")

    @property
    def stands_for(self) -> str:
        """The dataset whose settings and published numbers apply: ``same_as``, else the dataset itself."""
        return self.same_as or self.name

    def ood_group(self, ood: "DatasetSpec") -> str:
        """'near' or 'far' when this ID set declares where ``ood`` belongs, else ''."""
        names = {ood.name, ood.stands_for, ood.source} - {None}
        for group, members in (("near", self.near_ood), ("far", self.far_ood)):
            if names & set(members):
                return group
        return ""
