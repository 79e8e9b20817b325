"""``oodbench list``: what is registered, with capabilities, citations and where it comes from."""

from __future__ import annotations

import pandas as pd

from oodbench.api import Capabilities, Reads
from oodbench.data.source import ImageFormat
from oodbench.registry import Registry

#: the groups of ``oodbench list methods``, from the least a method needs to the most
NEEDS = ("logits only", "features", "layers", "images (re-runs the network)", "training", "training, auxiliary data")


def needs(caps: Capabilities) -> str:
    """The group of a method by the most it needs: training with auxiliary outliers, training, the images (input
    gradients), intermediate layers, penultimate features or the head, else logits only."""
    if caps.trains:
        return NEEDS[5] if caps.aux else NEEDS[4]
    if Reads.IMAGES in caps.reads:
        return NEEDS[3]
    if Reads.LAYERS in caps.reads:
        return NEEDS[2]
    return NEEDS[1] if caps.reads & {Reads.FEATURES, Reads.HEAD} else NEEDS[0]


def _methods(registry: Registry) -> pd.DataFrame:
    rows = []
    for name, cls in registry.methods.items():
        caps = cls(cls.Params()).capabilities()
        rows.append({"needs": needs(caps), "method": name, "reads": caps.describe(cls.fit_split), "summary": cls.summary,
                     "citation": cls.citation, "source": registry.origins[("methods", name)], "order": cls.table_order})
    frame = pd.DataFrame(rows)
    frame["group"] = frame["needs"].map(NEEDS.index)
    return frame.sort_values(["group", "order", "method"]).drop(columns=["group", "order"]).reset_index(drop=True)


def _datasets(registry: Registry) -> pd.DataFrame:
    rows = []
    for name in sorted(registry.datasets):
        spec = registry.dataset(name)
        rows.append({"dataset": name, "role": spec.role, "classes": spec.num_classes or "",
                     "splits": ", ".join(spec.splits), "stands for": spec.same_as or "",
                     "source": "; ".join(f"{split}: {src.describe()}" for split, src in spec.splits.items()),
                     "origin": spec.origin})
    return pd.DataFrame(rows)


def _backbones(registry: Registry) -> pd.DataFrame:
    rows = []
    for name in sorted(registry.backbones):
        spec = registry.backbone(name)
        weights = ", ".join(f"{c.dataset}/s{c.seed}" for c in spec.checkpoints) or "trained by oodbench"
        rows.append({"backbone": name, "input": ImageFormat.of(spec).describe(),
                     "features": spec.feature_dim, "layers": ", ".join(spec.layers) or "-", "weights": weights,
                     "description": spec.description})
    rows += [{"backbone": f"{prefix}<model>", "input": "the model's own", "features": "", "layers": "-", "weights": "the model's own",
              "description": family.description} for prefix, family in sorted(registry.families.items())]
    return pd.DataFrame(rows)


def _presets(registry: Registry) -> pd.DataFrame:
    return pd.DataFrame([{"preset": p.name, "backbone": p.backbone, "limit": p.limit or "all",
                          "default for": ", ".join(sorted(p.default_for)), "description": p.description}
                         for p in registry.presets.values()])


def _protocols(registry: Registry) -> pd.DataFrame:
    return pd.DataFrame([{"protocol": p.name, "--id names": ", ".join(f"{k} = {v}" for k, v in p.id_datasets.items()),
                          "description": p.description, "source": registry.origins[("protocols", p.name)]}
                         for p in registry.protocols.values()])


def left_aligned(frame: pd.DataFrame) -> str:
    """A plain left-aligned text table (pandas right-aligns text columns)."""
    cells = [list(map(str, frame.columns))] + [[str(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(frame.columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def list_table(what: str, registry: Registry) -> str:
    frame = {"methods": _methods, "datasets": _datasets, "backbones": _backbones, "presets": _presets,
             "protocols": _protocols}[what](registry)
    return left_aligned(frame)
