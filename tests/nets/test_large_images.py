"""512 and 1024 px: the ResNet presets train, and ``ganforge describe`` says what a batch costs.

One real training step of each preset at batch 2 on emoji (64 px, upscaled by the loader), with the
widths overridden small so the step takes seconds on a CPU; every other setting is the preset's.
"""
from __future__ import annotations

import pytest
import torch

from ganforge import config as C
from ganforge import nets
from ganforge.cli import main
from ganforge.cli.describe import activation_bytes_per_image, measure, saved_activation_bytes
from ganforge.data import build_loader
from ganforge.training.trainer import Trainer


@pytest.mark.parametrize("preset,size", [("resnet-512", 512), ("resnet-1024", 1024)])
def test_one_training_step_at_batch_2(preset, size, emoji_dir, tmp_path):
    """The trainer's own step on a real batch from the loader (a whole run would spend most of its time
    on the fixed-noise grid, which BatchNorm generators sample 64 at a time)."""
    cfg = C.load(preset=preset, overrides=[
        f"data.source={emoji_dir}", "data.batch_size=2", "data.limit=4", "data.num_workers=0", "model.ngf=2",
        "model.ndf=2", "train.device=cpu", "train.compile=off"])
    assert cfg.data.image_size == size and cfg.model.name == "resnet" and cfg.model.attention == 64
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.loader = build_loader(cfg, trainer.device)
    images, labels = next(iter(trainer.loader.epoch(0)))
    assert images.shape == (2, 3, size, size)  # 64 px emoji, upscaled by the loader
    before = {k: v.detach().clone() for k, v in trainer.G.named_parameters()}
    out = trainer.step_fn([(images, labels)], 0)
    assert torch.isfinite(out["loss_d"]) and torch.isfinite(out["loss_g"])
    assert any(not torch.equal(before[k], v) for k, v in trainer.G.named_parameters())
    with torch.no_grad():
        assert trainer.G(torch.randn(2, cfg.model.nz)).shape == (2, 3, size, size)


def test_large_sizes_are_resnet_only():
    with pytest.raises(C.ConfigError, match="at 512 px use model.name=resnet"):
        C.load(overrides=["model.name=dcgan", "data.image_size=512"])


@pytest.mark.parametrize("preset,g,d", [("resnet-512", 35_756_868, 43_499_906), ("resnet-1024", 9_110_532, 10_897_698)])
def test_preset_parameter_counts(preset, g, d):
    no_sn = C.load(preset=preset, overrides=["model.spectral_norm=false", "model.spectral_norm_g=false"])
    with torch.device("meta"):
        G, D = nets.build(no_sn)
    assert (sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())) == (g, d)


def test_activation_memory_on_meta_equals_a_real_forward():
    """What describe measures on the meta device is what a real CPU forward saves for backward."""
    cfg = C.load(preset="resnet-64", overrides=["data.image_size=32", "model.ngf=4", "model.ndf=4",
                                                "model.attention=16"])
    G, D = nets.build(cfg)
    real_g = saved_activation_bytes(G, torch.randn(3, cfg.model.nz)) - saved_activation_bytes(G, torch.randn(2, cfg.model.nz))
    m = measure(cfg)
    assert m["g_act"] == real_g > 0
    x = lambda b: (torch.randn(b, 3, 32, 32), None)  # noqa: E731
    assert m["d_act"] == activation_bytes_per_image(D, x) > 0


def test_activation_memory_of_a_known_network():
    """Linear(8, 16) -> ReLU -> Linear(16, 4): autograd keeps the input (for the first weight's
    gradient), the ReLU's output (for ReLU and the second weight's gradient): 8 + 16 floats per image."""
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    assert activation_bytes_per_image(net, lambda b: (torch.randn(b, 8),)) == (8 + 16) * 4


def test_describe_prints_memory_per_image_and_a_batch_estimate(capsys):
    assert main(["describe", "--preset", "resnet-1024"]) == 0
    out = capsys.readouterr().out
    assert "model resnet, 1024x1024, 3 channel(s)" in out
    assert "Generator parameters: 9,110,532" in out and "Discriminator parameters: 10,897,698" in out
    assert "Generator forward pass, one image: 69.49 GFLOPs" in out
    assert "Generator activation memory, one image (training forward): 1.3 GiB" in out
    assert "Discriminator activation memory, one image (training forward): 520.6 MiB" in out
    # With the EMA copy of G (ema.enabled): 14.9 GiB at float32, about half the activations with bf16.
    assert "per image of the batch at the peak (G's step: G and D; data.batch_size=8: 14.9 GiB at float32, 7.6 GiB " \
           "with mixed precision)" in out
