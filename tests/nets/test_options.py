"""BigGAN-style options: spectral norm, initialisation under it, conditioning, hierarchical latent."""
from __future__ import annotations

import pytest
import torch

from ganforge import nets
from ganforge.config import ConfigError
from ganforge.modules import spectral_norm_layers, trainable_weight
from ganforge.sampling import generate
from .zoo import ALL_OPTIONS, ARCHITECTURES, first_layer, net_config, size_for


def _top_singular_value(layer: torch.nn.Module) -> float:
    w = layer.weight  # the normalised weight the layer computes with
    if isinstance(layer, torch.nn.ConvTranspose2d):
        w = w.transpose(0, 1)  # spectral norm reads a transposed conv's weight output-channels first
    return torch.linalg.matrix_norm(w.flatten(1), ord=2).item()


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("init", ["dcgan", "orthogonal"])
def test_spectral_norm_brings_top_singular_value_to_one(name, init):
    torch.manual_seed(0)
    G, D = nets.build(net_config(name, "model.spectral_norm=true", "model.spectral_norm_g=true",
                                 f"model.init={init}", size=size_for(name)))
    for net in (G, D):
        layers = spectral_norm_layers(net)
        weighted = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d,
                                                                torch.nn.Linear))]
        assert layers and len(layers) == len(weighted)  # every conv and linear layer is normalised
        with torch.no_grad():
            sigmas = [_top_singular_value(m) for m in layers]
        assert all(abs(s - 1) < 0.05 for s in sigmas), sigmas


def test_spectral_norm_only_in_d_by_default():
    G, D = nets.build(net_config("resnet", "model.spectral_norm=true"))
    assert spectral_norm_layers(D) and not spectral_norm_layers(G)


def test_initialisation_writes_the_weight_spectral_norm_trains():
    """The DCGAN init is N(0, 0.02) for the parameter the optimiser updates, with or without spectral norm."""
    torch.manual_seed(0)
    for sn in ("false", "true"):
        _, D = nets.build(net_config("dcgan", f"model.spectral_norm={sn}"))
        w = trainable_weight(first_layer(D))
        assert isinstance(w, torch.nn.Parameter) and w.requires_grad
        assert abs(w.std().item() - 0.02) < 0.004  # PyTorch's default here would be about 0.08
    _, D = nets.build(net_config("resnet", "model.spectral_norm=true", "model.init=orthogonal"))
    w = trainable_weight(first_layer(D)).flatten(1)  # 32 x 27: orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(w.shape[1]), atol=1e-4)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_conditional_generator_gives_different_images_per_class_from_the_same_z(name):
    torch.manual_seed(0)
    cfg = net_config(name, "model.num_classes=3", "data.labels=true", size=size_for(name))
    G, D = nets.build(cfg)
    z = torch.randn(8, cfg.model.nz)
    per_class = [generate(G, z, torch.full((8,), k)) for k in range(3)]
    assert torch.equal(per_class[0], generate(G, z, torch.zeros(8, dtype=torch.long)))  # same class, same image
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert (per_class[a] - per_class[b]).abs().mean() > 1e-3
    # The projection discriminator judges the same image differently under different classes.
    with torch.no_grad():
        assert not torch.allclose(D(per_class[0], torch.zeros(8, dtype=torch.long)),
                                  D(per_class[0], torch.ones(8, dtype=torch.long)))


def test_hierarchical_latent_reaches_every_block():
    torch.manual_seed(0)
    G, _ = nets.build(net_config("resnet", "model.hierarchical_z=true", "model.nz=20"))
    assert G.chunks == [5, 5, 5, 5]  # the linear layer and three blocks at 32x32
    z = torch.randn(8, 20)
    base = generate(G, z)
    for start in (0, 5, 10, 15):
        moved = z.clone()
        moved[:, start:start + 5] = torch.randn(8, 5)
        change = (generate(G, moved) - base).abs().mean() / base.abs().mean()
        assert change > 0.01, f"z[{start}:{start + 5}] does not reach the image"


def test_attention_is_placed_at_the_chosen_resolution():
    from ganforge.modules import SelfAttention

    seen = {}
    for name in ("dcgan", "resnet"):
        G, D = nets.build(net_config(name, "model.attention=16", size=64))
        for net, tag in ((G, "G"), (D, "D")):
            def record(module, inputs, output, tag=tag):
                seen[(name, tag)] = tuple(output.shape[-2:])
            hooks = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, SelfAttention)]
            assert len(hooks) == 1
        D(G(torch.randn(2, 16)))
    assert set(seen.values()) == {(16, 16)} and len(seen) == 4


def test_unsupported_option_combinations_are_clear_errors():
    with pytest.raises(ConfigError, match="hierarchical_z.*only model.name=resnet"):
        net_config("dcgan", "model.hierarchical_z=true")
    with pytest.raises(ConfigError, match="attention.*mlp"):
        net_config("mlp", "model.attention=16", size=28)
    with pytest.raises(ConfigError, match="model.nz to at least 4"):
        nets.build(net_config("resnet", "model.hierarchical_z=true", "model.nz=3"))
    with pytest.raises(ConfigError, match="power of two from 32 to 1024"):
        net_config("resnet", size=48)
    with pytest.raises(ConfigError, match="power of two from 32 to 256 .*; at 1024 px use model.name=resnet"):
        net_config("dcgan", size=1024)


def test_icnr_init_starts_transposed_convs_without_checkerboard():
    """With model.init=dcgan-icnr a flat input leaves every stride-2 transposed conv flat (all four output
    phases have the same taps); with the plain DCGAN init the phases differ."""
    def phase_spread(layer: torch.nn.ConvTranspose2d) -> float:
        y = layer(torch.ones(1, layer.in_channels, 6, 6))[..., 2:-2, 2:-2]  # away from the borders
        phases = torch.stack([y[..., a::2, b::2] for a in (0, 1) for b in (0, 1)])
        return (phases - phases.mean(0)).abs().max().item()

    torch.manual_seed(0)
    for init, flat in (("dcgan-icnr", True), ("dcgan", False)):
        G, _ = nets.build(net_config("dcgan", f"model.init={init}"))
        strided = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d) and m.stride == (2, 2)]
        assert strided
        with torch.no_grad():
            spreads = [phase_spread(m) for m in strided]
        assert all(s < 1e-6 for s in spreads) == flat, (init, spreads)
        w = trainable_weight(strided[0])
        assert 0.01 < w.std().item() < 0.03  # still DCGAN's scale
