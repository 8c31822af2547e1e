"""What a latent-group run's groups are: for each group, real images of its cluster beside the generator's
samples of that group (``model.latent_groups``; docs/strategies.md).

The clusters are worked out again from the run's data as training worked them out (the same balanced
k-means, seeded), so row g shows cluster g's first real images (left) and samples whose latents lie in
group g's sector (right).  Writes one PNG:

    python benchmarks/latent_groups_grid.py RUN_DIR --out docs/images/latent_groups_emoji.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ganforge.modules.latent_groups import GroupedLatents
from ganforge.sampling import generate, save_grid
from grouped_run import open_grouped_run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished run's directory, trained with model.latent_groups")
    ap.add_argument("--per-group", type=int, default=6, help="real images and samples per group (default 6)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    G, cfg, _, good, clusters = open_grouped_run(args.run)
    k = cfg.model.latent_groups
    torch.manual_seed(0)
    sampler = GroupedLatents(cfg.model.nz, k)
    rows = []
    for g in range(k):
        reals = good[(clusters == g).nonzero().squeeze(1)[:args.per_group]]
        z = sampler.sample(torch.full((args.per_group,), g))
        fakes = generate(G, z)
        rows.append(torch.cat([reals, fakes]))
    grid = save_grid(torch.cat(rows), args.out, nrow=2 * args.per_group)
    print(f"wrote {grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
