"""Where BAL gains or loses: its discriminator D(f; c) on every kind of feature it met or meets.

For the base network of a run (the checkpoint its plan names, from the cache when the run made it)
and BAL's fitted state, print the mean of D on:

- the ID training features with their true labels, and with a wrong label (what L_s trains down);
- the ID test features and each OOD set's, at the predicted class c^ (what scoring uses), with
  the AUROC of -D alone, of BAL's score -(MSP x D) and of MSP, ID test against the OOD set;
- generated features G(z; c), box samples (uniform in a training batch's min-max box) and generated
  features after the FGSM step toward the boundary: the three kinds of OOD features D is trained on.

If D is high on an OOD set (close to the ID test mean), BAL cannot gain there over MSP: the OOD
features lie where D learnt "ID". If D is low on the training OOD kinds but high on the real OOD
sets, the synthetic outliers do not resemble the real ones in this feature space.

Usage (on the offline catalog; the quick preset's backbone and BAL fit come from the cache of a
run with the same arguments, or are computed):

    python benchmarks/bal_diagnostics.py --catalog ../shared/data/catalog.toml --preset quick \\
        [--id cifar10-jpeg] [--ood tin-crop-32,tin-resize-32,dtd10-32,mnist-test] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import source_checkout  # noqa: F401  (before oodbench: this checkout, installed or not)
import torch

import oodbench
from oodbench.engine.stages.fit import decode_state
from oodbench.methods import bal
from oodbench.metrics import auroc

#: samples drawn of each synthetic kind
SYNTHETIC = 10_000


def discriminator_probability(d: bal.Discriminator, standardised: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(d(standardised, labels)).numpy()


def synthetic_kinds(d: bal.Discriminator, g: bal.Generator, train: torch.Tensor, classes: int, params: bal.BalParams,
                    seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The three kinds of OOD features the discriminator trains against, as (features, labels)."""
    rng = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (SYNTHETIC,), generator=rng)
    with torch.no_grad():
        generated = g(torch.randn(SYNTHETIC, params.noise_dim, generator=rng), labels)
    boxes = [bal.box_samples(train[torch.randint(len(train), (params.batch_size,), generator=rng)], classes, rng)
             for _ in range(SYNTHETIC // params.batch_size)]
    eps = bal.fgsm_step_sizes(SYNTHETIC, params.eps_mean, params.eps_std, rng)
    return {
        "generated G(z; c)": (generated, labels),
        "box samples": (torch.cat([b for b, _ in boxes]), torch.cat([c for _, c in boxes])),
        "generated + FGSM step": (bal.fgsm_toward_boundary(d, generated, labels, eps), labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--id", default="cifar10-jpeg")
    parser.add_argument("--ood", default="tin-crop-32,tin-resize-32,dtd10-32,mnist-test")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    def wanted(task) -> bool:  # BAL's fit and the base network's extractions
        return (task.kind == "fit" and task.group == "bal") or (task.kind == "extract" and task.group is None)

    plan, out = oodbench.outputs(wanted, methods=["bal"], id=args.id, ood=args.ood.split(","), preset=args.preset,
                                 catalogs=[args.catalog], cache_dir=args.cache_dir, seeds=[args.seed])
    fit = next(t for t in plan.tasks.values() if t.kind == "fit" and t.group == "bal")
    cell = next(c for c in plan.cells if c.method == "bal")
    params = bal.BalParams(**cell.static["params"])
    state = decode_state(out[fit.id].blob, torch.device("cpu"))
    extractions = {out[t.inputs["split"]].label: (out[t.id], out[t.inputs["split"]])
                   for t in plan.tasks.values() if t.kind == "extract" and t.inputs["network"] == fit.inputs["network"]}
    train_extraction, train_split = extractions.pop(f"{args.id}/train")
    classes, dim = train_extraction.logits.shape[1], train_extraction.features.shape[1]
    d = bal.Discriminator(classes, dim, params.hidden).eval()
    d.load_state_dict(state["discriminator"])
    g = bal.Generator(params.noise_dim, classes, dim, params.hidden).eval()
    g.load_state_dict(state["generator"])

    def standardised(features) -> torch.Tensor:
        return (torch.from_numpy(np.array(features, dtype=np.float32)) - state["mean"]) / state["std"]

    train = standardised(train_extraction.features)
    train_labels = torch.as_tensor(np.asarray(train_split.labels)).long()
    rows = {
        "ID train, true label": {"mean D": discriminator_probability(d, train, train_labels).mean()},
        "ID train, wrong label": {"mean D": discriminator_probability(
            d, train, bal.shuffled_labels(train_labels, classes, torch.Generator().manual_seed(args.seed))).mean()},
    }

    def scored(extraction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits = torch.from_numpy(np.array(extraction.logits, dtype=np.float32))
        probability = discriminator_probability(d, standardised(extraction.features), logits.argmax(dim=1))
        msp = logits.softmax(dim=1).max(dim=1).values.numpy()
        return probability, msp * probability, msp

    id_label = f"{args.id}/test"
    id_d, id_bal, id_msp = scored(extractions.pop(id_label)[0])
    rows[f"{id_label}, predicted class"] = {"mean D": id_d.mean()}
    for label, (extraction, _) in extractions.items():
        ood_d, ood_bal, ood_msp = scored(extraction)
        # outlier scores: the negated confidences, OOD as the positive class
        rows[f"{label}, predicted class"] = {"mean D": ood_d.mean(), "AUROC of -D": auroc(-ood_d, -id_d),
                                             "AUROC BAL": auroc(-ood_bal, -id_bal), "AUROC MSP": auroc(-ood_msp, -id_msp)}
    for kind, (features, labels) in synthetic_kinds(d, g, train, classes, params, args.seed).items():
        rows[kind] = {"mean D": discriminator_probability(d, features, labels).mean()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    print(f"BAL diagnostics: preset {args.preset}, ID {args.id}, seed {args.seed}, "
          f"BAL {params.epochs} epochs (batch {params.batch_size}); D = discriminator's ID probability")
    print(table.to_string(float_format=lambda v: f"{v:.4f}", na_rep=""))


if __name__ == "__main__":
    main()
