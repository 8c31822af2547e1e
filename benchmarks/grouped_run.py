"""A finished latent-group run opened for inspection, as ``benchmarks/latent_groups_grid.py`` and
``benchmarks/feature_match_floor.py`` both need it: its generator, its config, its feature-matching
term started on the run's data (the network, the real statistics and the clusters, seeded, as
training made them), and the real images that were clustered, in the clusters' order."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn

from ganforge.config import Config
from ganforge.data import open_source
from ganforge.sampling import load_generator
from ganforge.training.build import build_g_terms
from ganforge.training.clusters import latent_clusters, real_batches
from ganforge.training.feature_match import FeatureMatchTerm


class GroupedRun(NamedTuple):
    G: nn.Module
    cfg: Config
    term: FeatureMatchTerm
    good: torch.Tensor  # the clustered real images in [-1, 1], (N, C, H, W)
    clusters: torch.Tensor  # (N,): each one's cluster, which is its latent group's


@torch.no_grad()
def open_grouped_run(run: Path) -> GroupedRun:
    """``run`` opened on the CPU; exits with a message when it was trained without latent groups."""
    G, cfg, _ = load_generator(run)
    if not cfg.model.latent_groups:
        sys.exit(f"{run} was trained without model.latent_groups")
    cfg.data.num_workers = 0
    (term,) = [t for t in build_g_terms(cfg) if t.name == "feature_match"]
    dataset = open_source(cfg)
    cpu = torch.device("cpu")
    term.start(dataset, cpu, latent_clusters(cfg, dataset, cpu))
    good = torch.cat([x for x, _, _ in real_batches(dataset, cpu)])
    return GroupedRun(G, cfg, term, good, term.clusters)
