"""Latent groups (``model.latent_groups``): z's angle picks the group, the training sampler draws latents
in the groups it is asked for, and every conditional family's G conditions on the group without being
given a label."""
from __future__ import annotations

import math

import pytest
import torch

from ganforge import nets
from ganforge.config import ConfigError
from ganforge.modules.latent_groups import GroupedLatents, latent_group


def test_the_groups_of_normal_latents_are_equally_likely_and_survive_truncation():
    z = torch.randn(64_000, 8, generator=torch.Generator().manual_seed(0))
    groups = latent_group(z, 16)
    counts = torch.bincount(groups, minlength=16).float()
    assert groups.min() == 0 and groups.max() == 15
    assert (counts - 4000).abs().max() < 4 * math.sqrt(4000)  # 4 standard deviations of a multinomial share
    # Scaling z (what truncation does) keeps every latent in its group; another component does not matter.
    assert torch.equal(latent_group(0.3 * z, 16), groups)
    moved = z.clone()
    moved[:, 2:] = torch.randn_like(moved[:, 2:])
    assert torch.equal(latent_group(moved, 16), groups)


def test_the_training_sampler_draws_a_few_groups_in_blocks_each_in_its_own_sector():
    torch.manual_seed(0)
    sampler = GroupedLatents(nz=10, groups=16, per_batch=4)
    for _ in range(50):
        wanted = sampler.groups_for(30)
        assert len(wanted.unique()) == 4
        assert [len(b.unique()) for b in wanted.split([8, 8, 7, 7])] == [1, 1, 1, 1]  # blocks as even as can be
        z = sampler.sample(wanted)
        assert z.shape == (30, 10)
        assert torch.equal(latent_group(z, 16), wanted)
    # Over many batches the latents are standard normal: the first pair keeps a normal pair's radius.
    z = torch.cat([sampler(32) for _ in range(600)])
    radius = z[:, :2].norm(dim=1)
    assert radius.mean().item() == pytest.approx(math.sqrt(math.pi / 2), abs=0.03)  # Rayleigh(1)
    assert z.mean(0).abs().max().item() < 0.05 and z.std(0).sub(1).abs().max().item() < 0.05
    # Fewer groups than per_batch: every group, still in blocks.
    assert sorted(GroupedLatents(nz=4, groups=2, per_batch=4).groups_for(8).unique().tolist()) == [0, 1]


@pytest.mark.parametrize("family", ["dcgan", "dcgan-upsample", "resnet", "fastgan"])
def test_every_conditional_family_conditions_on_its_latents_group(image_folder, tiny, family):
    cfg = tiny(image_folder, f"model.name={family}", "model.latent_groups=4", "loss.feature_match=1",
                      "model.nz=16")
    G, _ = nets.build(cfg)
    G.eval()  # BatchNorm's running statistics: one image does not depend on the others in its batch
    torch.manual_seed(0)
    z = GroupedLatents(16, 4)(8)
    with torch.no_grad():
        own = G(z)
        assert torch.equal(own, G(z, latent_group(z, 4)))  # G(z) is G given z's group
        other = G(z, (latent_group(z, 4) + 1) % 4)
    assert (own - other).abs().amax(dim=(1, 2, 3)).min() > 1e-4  # another group's embedding, another image
    assert nets.architecture_id(cfg)["latent_groups"] == 4


def test_latent_groups_are_refused_where_they_mean_nothing(image_folder, tiny):
    for overrides, message in [
        (["model.latent_groups=4"], "gets its meaning from feature matching.*loss.feature_match"),
        (["model.latent_groups=4", "loss.feature_match=1", "model.name=mlp"], "model.name=mlp"),
        (["model.latent_groups=1", "loss.feature_match=1"], "one group, the same as none"),
        (["model.latent_groups=4", "loss.feature_match=1", "data.batch_size=6"], "data.batch_size=6 is too small"),
        (["model.latent_groups=-2"], "model.latent_groups must be"),
    ]:
        with pytest.raises(ConfigError, match=message):
            tiny(image_folder, *overrides)
