"""A protocol's version: a digest of everything that defines its numbers, stored with every record.

A protocol's numbers depend on its own declaration (metrics and their conventions, table layout, the ``--id`` names it
maps), on every method's settings under it (:attr:`Method.protocol_defaults`, :attr:`Method.fit_split_under`,
:attr:`Method.search_space_under`) and on its benchmarks (an ID set's OOD lists and near/far groups). Changing any of
them changes the version; the data of each cell (its ID test and OOD splits' content keys) is digested apart, per
record, so a table can say when its rows or a column's cells come from different versions or different data.
"""

from __future__ import annotations

from typing import Any, Mapping

from oodbench.api import DatasetSpec, Protocol
from oodbench.hashing import stable_hash

#: characters of a version digest shown and stored
VERSION_LENGTH = 12


def protocol_definition(protocol: Protocol, methods: Mapping[str, type]) -> dict[str, Any]:
    """The protocol's declaration and every method's settings under it (methods without any are left out)."""
    name = protocol.name
    settings = {}
    for method, cls in sorted(methods.items()):
        own = {key: value for key, value in cls.protocol_defaults.items() if key == name or key.startswith(f"{name}:")}
        fit_split, space = cls.fit_split_under.get(name), cls.search_space_under.get(name)
        if own or fit_split or space:
            settings[method] = {"defaults": own, "fit_split": fit_split, "search_space": space}
    return {"name": name, "record": protocol.record(), "id_datasets": dict(protocol.id_datasets), "methods": settings}


def protocol_version(protocol: Protocol, methods: Mapping[str, type], benchmark: DatasetSpec) -> str:
    """The version of ``protocol`` on the benchmark of ID set ``benchmark`` (whose OOD lists and groups apply)."""
    lists = {"default_ood": benchmark.default_ood, "near_ood": benchmark.near_ood, "far_ood": benchmark.far_ood,
             "covariate_shift": benchmark.covariate_shift, "validation_ood": benchmark.validation_ood}
    return stable_hash({"definition": protocol_definition(protocol, methods), "benchmark": lists}, VERSION_LENGTH)


def data_version(*split_keys: str | None) -> str:
    """The digest of the content keys of a cell's splits (ID test, OOD)."""
    return stable_hash(list(split_keys), VERSION_LENGTH)
