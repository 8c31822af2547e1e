"""The model-zoo presets: their parameter counts, and ``ganforge describe`` with FLOPs."""
from __future__ import annotations

import pytest
import torch

from ganforge import config as C
from ganforge import nets
from ganforge.cli import main
from ganforge.cli.describe import count_parameters, forward_flops

PRESET_PARAMETERS = {  # (generator, discriminator)
    "mlp-mnist": (1_489_936, 533_505),
    "resnet-64": (7_856_388, 4_889_186),
    "resnet-128": (30_589_060, 38_424_258),
    "resnet-256": (35_673_732, 43_421_890),
}


@pytest.mark.parametrize("preset", sorted(PRESET_PARAMETERS))
def test_preset_parameter_counts(preset):
    cfg = C.load(preset=preset)
    assert cfg.model.name == ("mlp" if preset == "mlp-mnist" else "resnet")
    # Counted on the meta device (no memory, no compute).  Spectral norm adds buffers, not parameters,
    # and is switched off here only because its power iterations are slow on meta tensors.
    no_sn = C.load(preset=preset, overrides=["model.spectral_norm=false", "model.spectral_norm_g=false"])
    with torch.device("meta"):
        G, D = nets.build(no_sn)
    assert (count_parameters(G), count_parameters(D)) == PRESET_PARAMETERS[preset]


def test_spectral_norm_adds_no_parameters():
    counts = []
    for sn in ("false", "true"):
        cfg = C.load(preset="resnet-64", overrides=[f"model.spectral_norm={sn}", f"model.spectral_norm_g={sn}",
                                                    "data.image_size=32", "model.attention=16", "model.ngf=8",
                                                    "model.ndf=8"])
        counts.append(tuple(count_parameters(m) for m in nets.build(cfg)))
    assert counts[0] == counts[1]


def test_mlp_preset_is_the_classic_fully_connected_gan():
    G, D = nets.build(C.load(preset="mlp-mnist"))
    linear = lambda net: [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)]  # noqa: E731
    assert linear(G) == [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    assert linear(D) == [(784, 512), (512, 256), (256, 1)]
    # One forward pass: 2 FLOPs per weight of each matrix multiply.
    assert forward_flops(G, torch.zeros(1, 100), None) == 2 * (100 * 256 + 256 * 512 + 512 * 1024 + 1024 * 784)
    assert forward_flops(D, torch.zeros(1, 1, 28, 28), None) == 2 * (784 * 512 + 512 * 256 + 256)


def test_describe_command_prints_parameters_and_flops(capsys):
    assert main(["describe", "--preset", "mlp-mnist"]) == 0
    out = capsys.readouterr().out
    assert "model mlp, 28x28, 1 channel(s)" in out
    assert "Generator parameters: 1,489,936" in out and "Discriminator parameters: 533,505" in out
    assert "Generator forward pass, one image: 2.97 MFLOPs" in out
    assert "Discriminator forward pass, one image: 1.07 MFLOPs" in out


def test_describe_counts_conditional_and_attention_models(capsys):
    assert main(["describe", "--preset", "resnet-64", "data.image_size=32", "model.ngf=8", "model.ndf=8",
                 "model.num_classes=4", "data.labels=true", "model.attention=16"]) == 0
    out = capsys.readouterr().out
    assert "SelfAttention" in out and "ClassProjection" in out and "ConditionalBatchNorm" in out
    assert "Generator forward pass, one image:" in out and "Discriminator forward pass, one image:" in out


@pytest.mark.parametrize("preset,counts", [("fastgan-64", (726_588, 40_240)), ("fastgan-256", (27_393_270, 10_292_432))])
def test_fastgan_presets_build_and_describe_their_layers(preset, counts, capsys):
    cfg = C.load(preset=preset, overrides=["model.spectral_norm=false", "model.spectral_norm_g=false"])
    with torch.device("meta"):
        G, D = nets.build(cfg)
    assert (count_parameters(G), count_parameters(D)) == counts
    assert main(["describe", "--preset", preset]) == 0
    out = capsys.readouterr().out
    assert "model fastgan" in out and "SkipExcitation" in out and "Decoder" in out and "DownBlock" in out
    assert "Generator forward pass, one image:" in out and "activation memory" in out
