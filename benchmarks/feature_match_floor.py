"""How far a latent-group run's generator is from its feature-matching term's floor: the term's value
on batches of real images drawn as training draws G's (4 clusters of 8), against its value on G's
batches, depth by depth, split into the means' and the variances' parts.

A batch of real images does not score 0: 8 images per group estimate a cluster's moments with
sampling noise.  Where G's value is near the real batches' the moments are matched as well as a batch
can tell, and the term has nothing left to teach; where it is above, that depth still has signal.

It also measures the spread within a group: each group's (unbiased) variance in the batch against its
cluster's, for activations whose variance is small, middling or large against their depth's average.
Real batches show about 1; a G below 1 draws less varied images than its cluster, which the plain
term rewards in small groups (``loss.feature_match_unbiased``).

    python benchmarks/feature_match_floor.py RUN_DIR [RUN_DIR ...] [--batches 64]

Writes ``benchmarks/results/feature-match-floor-<time>.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ganforge.modules.latent_groups import GroupedLatents, latent_group
from ganforge.sampling import generate
from ganforge.training.feature_stats import grams
from grouped_run import open_grouped_run

RESULTS = Path(__file__).resolve().parent / "results"
#: A statistic the term does not match, measured the same way: each image's channel co-occurrence
#: (Gram matrix over positions, as style losses use), its group's mean against its cluster's.
GRAM = "gram"
DEPTHS = ("pixels16", "1/4", "1/8", "1/16", "1/32")


def parts(term, maps: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """(depth, 2): each depth's means part and variances part of the grouped term, as
    ``FeatureMatchTerm.moments`` sums them (their total is its value)."""
    k = term.groups.groups
    one_hot = F.one_hot(latent_group(z, k), k).float()
    counts = one_hot.sum(0)
    weight = torch.where(counts >= 2, counts, torch.zeros_like(counts)) / one_hot.shape[0]
    out = []
    for m, real_mean, real_var, scale in zip(maps, term.real_mean, term.real_var, term.scale):
        rows = m.flatten(1)
        mean = one_hot.T @ rows / counts.clamp_min(1)[:, None]
        var = one_hot.T @ (rows - one_hot @ mean).pow(2) / counts.clamp_min(1)[:, None]
        out.append(torch.stack([(weight * (mean - real_mean).pow(2).mean(1) / scale).sum(),
                                (weight * (var - real_var).pow(2).mean(1) / scale ** 2).sum()]))
    return torch.stack(out)


#: Activations by their cluster variance relative to their depth's average (the term's scale): the
#: plain term's reward for less spread outweighs its variances' pull where this is small.
SPREAD_BUCKETS = ((0.0, 0.1), (0.1, 1.0), (1.0, float("inf")))


def spreads(term, maps: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """(depth, bucket, 2): summed over each group's activations in a bucket of ``SPREAD_BUCKETS``, the
    group's unbiased variance in the batch and its cluster's variance (groups of at least 2 samples).
    Their ratio is how much of its cluster's spread a batch shows: about 1 for real batches."""
    k = term.groups.groups
    one_hot = F.one_hot(latent_group(z, k), k).float()
    counts = one_hot.sum(0)
    present = counts >= 2
    out = torch.zeros(len(maps), len(SPREAD_BUCKETS), 2)
    for i, (m, real_var, scale) in enumerate(zip(maps, term.real_var, term.scale)):
        rows = m.flatten(1)
        mean = one_hot.T @ rows / counts.clamp_min(1)[:, None]
        var = (one_hot.T @ (rows - one_hot @ mean).pow(2) / (counts - 1).clamp_min(1)[:, None])[present]
        real = real_var[present]
        relative = real / scale
        for j, (low, high) in enumerate(SPREAD_BUCKETS):
            inside = (relative >= low) & (relative < high)
            out[i, j, 0], out[i, j, 1] = var[inside].sum(), real[inside].sum()
    return out


def cluster_grams(term, good: torch.Tensor, clusters: torch.Tensor, k: int):
    """Per depth: each cluster's mean Gram matrix, and the whole set's average variance of an entry
    (the scale, as the term scales its moments).  Mirrors have the same Gram matrices."""
    sums, squares = None, None
    for start in range(0, len(good), 128):
        x = good[start:start + 128]
        one_hot = F.one_hot(clusters[start:start + 128], k).double()
        rows = [r.double() for r in grams(term.maps(x))]
        if sums is None:
            sums, squares = [torch.zeros(k, r.shape[1], dtype=torch.float64) for r in rows], [r.new_zeros(r.shape[1]) for r in rows]
            totals = [r.new_zeros(r.shape[1]) for r in rows]
        for s, q, t, r in zip(sums, squares, totals, rows):
            s += one_hot.T @ r
            t += r.sum(0)
            q += r.pow(2).sum(0)
    n = len(good)
    counts = torch.bincount(clusters, minlength=k).double()[:, None]
    means = [(s / counts).float() for s in sums]
    scales = [(q / n - (t / n) ** 2).mean().float().clamp_min(1e-8) for q, t in zip(squares, totals)]
    return means, scales


def gram_parts(maps: list[torch.Tensor], z: torch.Tensor, k: int, means, scales) -> torch.Tensor:
    """(depth,): each group's mean Gram matrix against its cluster's, weighted as the term weighs groups."""
    one_hot = F.one_hot(latent_group(z, k), k).float()
    counts = one_hot.sum(0)
    weight = torch.where(counts >= 2, counts, torch.zeros_like(counts)) / one_hot.shape[0]
    return torch.stack([(weight * ((one_hot.T @ r / counts.clamp_min(1)[:, None] - mean).pow(2).mean(1) / scale)).sum()
                        for r, mean, scale in zip(grams(maps), means, scales)])


@torch.no_grad()
def floor_of(run: Path, batches: int) -> dict:
    G, cfg, term, good, clusters = open_grouped_run(run)
    k = cfg.model.latent_groups
    sampler = GroupedLatents(cfg.model.nz, k)
    b = cfg.data.batch_size
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    real_parts, fake_parts = torch.zeros(len(DEPTHS), 2), torch.zeros(len(DEPTHS), 2)
    gram_means, gram_scales = cluster_grams(term, good, clusters, k)
    real_gram, fake_gram = torch.zeros(len(DEPTHS)), torch.zeros(len(DEPTHS))
    real_spread, fake_spread = torch.zeros(len(DEPTHS), len(SPREAD_BUCKETS), 2), torch.zeros(len(DEPTHS), len(SPREAD_BUCKETS), 2)
    for _ in range(batches):
        groups = sampler.groups_for(b)
        z = sampler.sample(groups)
        picks = torch.stack([(clusters == g).nonzero().squeeze(1)[torch.randint(int((clusters == g).sum()), (1,),
                                                                             generator=gen)] for g in groups]).squeeze(1)
        reals = good[picks]
        if cfg.data.hflip:
            flip = torch.rand(b, generator=gen) < cfg.data.hflip
            reals = torch.where(flip[:, None, None, None], reals.flip(3), reals)
        real_maps, fake_maps = term.maps(reals), term.maps(generate(G, z, chunk=b))
        real_parts += parts(term, real_maps, z)
        fake_parts += parts(term, fake_maps, z)
        real_gram += gram_parts(real_maps, z, k, gram_means, gram_scales)
        fake_gram += gram_parts(fake_maps, z, k, gram_means, gram_scales)
        real_spread += spreads(term, real_maps, z)
        fake_spread += spreads(term, fake_maps, z)
    real_parts, fake_parts = real_parts / batches, fake_parts / batches
    real_gram, fake_gram = real_gram / batches, fake_gram / batches
    out = {"run": str(run), "seed": cfg.train.seed, "batches": batches,
           "real_total": round(float(real_parts.sum()), 4), "fake_total": round(float(fake_parts.sum()), 4),
           "depths": {d: {"real_means": round(float(r[0]), 4), "real_vars": round(float(r[1]), 4),
                          "fake_means": round(float(f[0]), 4), "fake_vars": round(float(f[1]), 4)}
                      for d, r, f in zip(DEPTHS, real_parts, fake_parts)},
           GRAM: {d: {"real": round(float(r), 4), "fake": round(float(f), 4)}
                  for d, r, f in zip(DEPTHS, real_gram, fake_gram)},
           "spread": {d: {f"{low:g}-{high:g}": {"real": round(float(r[j, 0] / r[j, 1]), 4),
                                                 "fake": round(float(f[j, 0] / f[j, 1]), 4)}
                          for j, (low, high) in enumerate(SPREAD_BUCKETS) if r[j, 1] > 0}
                      for d, r, f in zip(DEPTHS, real_spread, fake_spread)}}
    print(f"{run.name} seed {cfg.train.seed}: term on real batches {out['real_total']:.3f}, on G's "
          f"{out['fake_total']:.3f} ({out['fake_total'] / out['real_total']:.2f}x)")
    for d, r, f in zip(DEPTHS, real_parts, fake_parts):
        print(f"  {d:>8}: means {float(r[0]):.3f} real / {float(f[0]):.3f} G ({float(f[0] / r[0]):.2f}x), "
              f"variances {float(r[1]):.3f} / {float(f[1]):.3f} ({float(f[1] / r[1]):.2f}x)")
    for d, r, f in zip(DEPTHS, real_gram, fake_gram):
        print(f"  {d:>8}: Gram matrices (not matched by the term) {float(r):.3f} real / {float(f):.3f} G "
              f"({float(f / r):.2f}x)")
    for d, buckets in out["spread"].items():
        print(f"  {d:>8}: spread within a group, batch variance / cluster variance, by the activation's "
              "variance relative to its depth's average: " +
              ", ".join(f"{b} {v['real']:.2f} real / {v['fake']:.2f} G" for b, v in buckets.items()))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="finished runs' directories, trained with latent groups")
    ap.add_argument("--batches", type=int, default=64, help="batches of each kind to average (default 64)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {"runs": [floor_of(run, args.batches) for run in args.runs]}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"feature-match-floor-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
