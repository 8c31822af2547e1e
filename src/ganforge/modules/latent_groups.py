"""Latent groups: G's latent itself says which of K groups a sample comes from (``model.latent_groups``).

A generator conditioned on a group draws each group's kind of image; here the group is not a label
that a caller has to supply but a function of z, so ``G(z)`` stays a plain unconditional generator
for sampling, seeds, interpolation and export: the same z always gives the same group and image.

The group is the angle of z's first two components, cut into K equal sectors.  For a standard normal
z that angle is uniform whatever the radius, so every group is drawn equally often; and since scaling
z does not turn it, truncation (which pulls z towards 0) keeps each sample in its group instead of
crowding all of them into the middle groups, as a quantile of one component would.  Across a sector's
edge an interpolation jumps from one group to the next.

What the groups mean comes from training: feature matching splits the real set into K clusters of equal
size and fits each group to one cluster's statistics (:mod:`ganforge.training.feature_match`).
"""
from __future__ import annotations

import math

import torch


def latent_group(z: torch.Tensor, groups: int) -> torch.Tensor:
    """The group (0 .. ``groups`` - 1) of each latent in ``z`` (shape ``(B, nz)``, nz >= 2)."""
    angle = torch.atan2(z[:, 1].float(), z[:, 0].float())  # in [-pi, pi]
    sector = torch.floor((angle + math.pi) / (2 * math.pi) * groups).long()
    return sector.clamp_(0, groups - 1)


def group_block_sizes(n: int, blocks: int) -> list[int]:
    """How a batch of ``n`` is split between ``blocks`` groups, as evenly as possible (the first
    ``n % blocks`` one larger)."""
    return [n // blocks + (i < n % blocks) for i in range(blocks)]


class GroupedLatents:
    """Latents for a training batch: ``per_batch`` groups drawn at random (without repeats when there
    are enough), the batch split between them in blocks as even as possible.  A batch of a few groups
    gives each group several samples, so each group's statistics can be measured on the batch."""

    def __init__(self, nz: int, groups: int, per_batch: int = 4):
        if nz < 2:
            raise ValueError(f"latent groups need a latent of at least 2 components, got nz={nz}")
        self.nz, self.groups, self.per_batch = nz, groups, max(1, min(per_batch, groups))

    def groups_for(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The group of each of ``n`` samples: ``per_batch`` random groups in even blocks."""
        picked = torch.randperm(self.groups, device=device)[:min(self.per_batch, n)]
        sizes = group_block_sizes(n, len(picked))
        return picked.repeat_interleave(torch.tensor(sizes, device=device))

    def sample(self, group_of_each: torch.Tensor) -> torch.Tensor:
        """Standard normal latents, one per entry of ``group_of_each``, each in its group's sector: the
        first two components keep a normal pair's radius and get an angle uniform in the sector, so the
        latents are distributed as ``randn`` given the group."""
        n = group_of_each.shape[0]
        z = torch.randn(n, self.nz, device=group_of_each.device)
        radius = z[:, :2].norm(dim=1)
        # A sliver at each edge of the sector is left out, so that rounding cannot move a latent into
        # the next group.
        u = torch.rand(n, device=group_of_each.device) * 0.998 + 0.001
        angle = (group_of_each.float() + u) / self.groups * (2 * math.pi) - math.pi
        z[:, 0], z[:, 1] = radius * torch.cos(angle), radius * torch.sin(angle)
        return z

    def __call__(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` latents, in ``per_batch`` groups."""
        return self.sample(self.groups_for(n, device))


def label_or_group(z: torch.Tensor, y: torch.Tensor | None, groups: int) -> torch.Tensor | None:
    """What a generator conditions on: the class ``y`` a caller gave, else its latents' groups when it
    has ``groups``, else nothing."""
    if y is not None or not groups:
        return y
    return latent_group(z, groups)
