"""BAL's L1 nearest-neighbour term: :func:`bal.nearest_l1` against autograd through the whole search.

The generator's loss holds ``min_{f in pool(c)} ||f - G(z; c)||_1``. Differentiating the ``cdist``
that finds the minimum runs ``cdist``'s backward over every pool feature; ``nearest_l1`` searches
without autograd and differentiates only the distance to the nearest feature. Both give the same
gradient (``tests/test_training_methods.py`` checks it; this script checks it again on its data).
It times forward + backward of each for one generator batch of BAL's default sizes (256 generated
features, 256 pool features per class) on random standardised features, and prints the ratio.

    python benchmarks/bal_nearest.py [--device auto] [--classes 10] [--dim 128] [--repeats 50]
"""

from __future__ import annotations

import argparse

import source_checkout  # noqa: F401  (before oodbench: this checkout, installed or not)
import torch
from timing import rate
from torch import Tensor

from oodbench.engine.device import select_compute
from oodbench.methods import bal


def through_cdist(generated: Tensor, labels: Tensor, pools: dict[int, Tensor]) -> Tensor:
    """The reference: the minimum of a differentiable ``cdist``, class by class."""
    distances = torch.empty(generated.shape[0], device=generated.device)
    for label in labels.unique().tolist():
        mine = labels == label
        distances[mine] = torch.cdist(generated[mine], pools[label], p=1).min(dim=1).values
    return distances


def seconds_per_call(nearest, generated: Tensor, labels: Tensor, pools: dict[int, Tensor], repeats: int) -> float:
    """Forward + backward of one call of ``nearest``."""
    return 1 / rate(lambda: torch.autograd.grad(nearest(generated, labels, pools).mean(), generated), 1, generated.device,
                    repeats, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    params = bal.BalParams()
    device = select_compute(args.device).device
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(args.classes * params.l1_pool * 4, args.dim, generator=generator).to(device)
    feature_labels = torch.randint(args.classes, (features.shape[0],), generator=generator).to(device)
    pools = bal.class_pools(features, feature_labels, params.l1_pool, generator)
    generated = torch.randn(params.batch_size, args.dim, generator=generator).to(device).requires_grad_(True)
    labels = torch.randint(args.classes, (params.batch_size,), generator=generator).to(device)

    gradients = [torch.autograd.grad(f(generated, labels, pools).mean(), generated)[0] for f in (through_cdist, bal.nearest_l1)]
    if not torch.equal(*gradients):
        raise SystemExit("nearest_l1's gradient differs from the reference's: the timing below would compare different things")
    reference = seconds_per_call(through_cdist, generated, labels, pools, args.repeats)
    ours = seconds_per_call(bal.nearest_l1, generated, labels, pools, args.repeats)
    print(f"L1 nearest-neighbour term, forward + backward, {params.batch_size} generated x {params.l1_pool} pool features "
          f"per class x {args.classes} classes, {args.dim}-d, on {device}:")
    print(f"autograd through cdist {1e3 * reference:.2f} ms, nearest_l1 {1e3 * ours:.2f} ms -> {reference / ours:.2f}x "
          "(same gradient)")


if __name__ == "__main__":
    main()
