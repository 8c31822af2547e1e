"""The few-shot pieces: the rpgan loss, R2, LeCam, FastGAN's reconstruction loss, augmentation fills,
and the EMA half-life counted in images; each on real images, and each through a real training run."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganforge import config as C
from ganforge.config import ConfigError, EMAConfig
from ganforge.nets.dcgan import DCGANDiscriminator
from ganforge.nets.fastgan import FastGANDiscriminator
from ganforge.training.augment import Fill, cutout, translation
from ganforge.training.ema import GeneratorEMA
from ganforge.training.losses import RelativisticPairingLoss
from ganforge.training.penalties import LeCamPenalty, R1Penalty, R2Penalty, ReconstructionLoss
from ganforge.training.strategies import DLabels
from ganforge.training.build import augment_fill, build_penalties


def test_rpgan_is_a_pairwise_softplus_of_differences():
    loss = RelativisticPairingLoss()
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    assert torch.allclose(loss.d_loss(real, fake), F.softplus(-(real - fake)).mean())
    assert torch.allclose(loss.g_loss(fake, real), F.softplus(-(fake - real)).mean())
    # Only differences count: shifting every logit by the same amount changes nothing.
    assert torch.allclose(loss.d_loss(real + 7, fake + 7), loss.d_loss(real, fake))
    with pytest.raises(ValueError, match="real images"):
        loss.g_loss(fake)


def test_r2_is_r1_on_the_fake_batch_and_lazy_scaling_keeps_its_average(real_batches):
    torch.manual_seed(0)
    D = DCGANDiscriminator(ndf=4, nc=1, image_size=32, batchnorm=False).double()
    real = real_batches(1, channels=1)[0][0][:4].double()
    fake = torch.rand_like(real) * 2 - 1
    r2 = R2Penalty(gamma=2.0, every=4)
    expected = 4 * R1Penalty(gamma=2.0).penalty(D, fake)
    assert torch.allclose(r2(D, real, fake, DLabels(), 0), expected)
    assert r2(D, real, fake, DLabels(), 1) is None  # lazy: only every 4th D step
    assert not torch.allclose(expected, 4 * R1Penalty(gamma=2.0).penalty(D, real))  # not the reals'


def test_lecam_ties_outputs_to_the_other_sides_moving_average_and_saves_it():
    lecam = LeCamPenalty(weight=0.5)
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, -3.0])
    first = lecam(None, None, None, None, 0, real, fake)
    # First call: the averages start at the batch means (3 and -2).
    assert torch.allclose(first, 0.5 * (((real + 2) ** 2).mean() + ((fake - 3) ** 2).mean()))
    lecam(None, None, None, None, 1, real + 1, fake)
    assert torch.allclose(lecam.real_avg, torch.tensor(0.99 * 3 + 0.01 * 4))
    restored = LeCamPenalty(weight=0.5)
    restored.load_state_dict(lecam.state_dict())
    assert torch.equal(restored.real_avg, lecam.real_avg) and torch.equal(restored.fake_avg, lecam.fake_avg)


def test_reconstruction_reuses_the_forward_features_and_trains_the_decoders(real_batches):
    torch.manual_seed(0)
    D = FastGANDiscriminator(ndf=4, nc=3, image_size=32, decoder_size=16)
    real = real_batches(1)[0][0]
    logits = D(real)
    calls = []
    D.stem.register_forward_hook(lambda *a: calls.append(1))
    loss = ReconstructionLoss("mse", 1.0)(D, real, None, DLabels(), 0, logits, None)
    assert calls == []  # the features of the forward pass on this batch were reused, not recomputed
    loss.backward()
    assert D.decoder_whole.to_image[0].weight.grad.abs().sum() > 0
    assert D.decoder_part.to_image[0].weight.grad.abs().sum() > 0
    # A batch D has not seen is encoded afresh, and its targets are the image at the decoder's size.
    other = real_batches(1, offset=16)[0][0]
    whole, whole_target, part, part_target = D.reconstruct(other, quarter=3)
    assert calls and whole.shape == whole_target.shape == part.shape == part_target.shape == (16, 3, 16, 16)
    assert torch.allclose(part_target, F.interpolate(other[:, :, 16:, 16:], size=(16, 16), mode="area"))


def test_fills_put_the_background_or_the_mirrored_image_in_the_gaps(real_batches):
    x = real_batches(1)[0][0][:8]
    white = Fill(colour=[1.0, 1.0, 1.0])
    torch.manual_seed(1)
    zero_shift = translation(x)
    torch.manual_seed(1)
    white_shift = translation(x, fill=white)
    gap = zero_shift == 0
    assert gap.any() and not (x == 0).any()
    assert torch.allclose(white_shift[gap], torch.tensor(1.0)) and torch.allclose(white_shift[~gap], zero_shift[~gap], atol=1e-6)
    torch.manual_seed(1)
    mirrored = translation(x, fill=Fill(reflect=True))
    assert not (mirrored == 0).any() and not (mirrored == 1).all()
    torch.manual_seed(2)
    holes = cutout(x, fill=white)
    torch.manual_seed(2)
    zero_holes = cutout(x)
    assert (holes[zero_holes == 0] == 1.0).all()


def test_augment_fill_follows_data_background_and_channels(tmp_path):
    cfg = C.load(overrides=["augment.fill=background", "data.background=[255, 0, 0]", "data.channels=3"])
    assert augment_fill(cfg).colour == [1.0, -1.0, -1.0]
    grey = C.load(overrides=["augment.fill=background", "data.background=[255, 255, 255]", "data.channels=1"])
    assert augment_fill(grey).colour == [1.0]
    assert augment_fill(C.load(overrides=["augment.fill=reflect", "data.channels=3"])).reflect


def test_ema_half_life_counts_images_and_ramps_up():
    ema = GeneratorEMA(torch.nn.Linear(2, 2), EMAConfig(enabled=True, half_life_images=10_000, rampup=0.05), 64)
    # After the ramp: a step's weight halves every 10,000 images, whatever the batch.
    late = ema.decay_at(100_000)
    assert abs(late ** (10_000 / 64) - 0.5) < 1e-9
    # Early: the half-life is 5% of the images seen, so the average forgets its random start quickly.
    assert ema.decay_at(10) == pytest.approx(0.5 ** (64 / (10 * 64 * 0.05)))
    assert ema.decay_at(10) < ema.decay_at(1000) < late
    no_ramp = GeneratorEMA(torch.nn.Linear(2, 2), EMAConfig(enabled=True, half_life_images=6_400), 32)
    assert no_ramp.decay_at(1) == pytest.approx(0.5 ** (32 / 6_400))


def test_penalties_are_built_from_the_config():
    kinds = lambda *o: [type(p).__name__ for p in build_penalties(C.load(overrides=list(o)))]  # noqa: E731
    assert kinds("model.name=fastgan", "data.channels=3", "loss.name=rpgan", "loss.r1_gamma=1", "loss.r2_gamma=1",
                 "loss.lecam=0.1") == ["ReconstructionLoss", "R1Penalty", "R2Penalty", "LeCamPenalty"]
    assert kinds("model.name=fastgan", "data.channels=3", "model.fastgan_decoder=0", "loss.recon=none") == []
    assert kinds("model.name=dcgan") == []  # only FastGAN's D has decoders
    with pytest.raises(ConfigError, match="loss.recon=none never trains them"):
        C.load(overrides=["model.name=fastgan", "loss.recon=none"])
    with pytest.raises(ConfigError, match="model.fastgan_decoder=12"):
        C.load(overrides=["model.name=fastgan", "model.fastgan_decoder=12"])
    with pytest.raises(ConfigError, match="no self-attention"):
        C.load(overrides=["model.name=fastgan", "model.attention=16"])
