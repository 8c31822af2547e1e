"""Each knob of the training step really acts: k D-steps, label targets, instance noise, L1 and L2."""
from __future__ import annotations

import json
import math

import pytest
import torch

from ganforge.config import ConfigError
from ganforge.training.losses import BCELoss
from ganforge.training.strategies import InstanceNoise, Targets
from ganforge.training.trainer import Trainer


def test_d_steps_three_gives_three_discriminator_updates_per_generator_update(tmp_path, image_folder, tiny):
    # 64 images, batch 16: 4 batches per epoch, one group of 3 per epoch; 2 generator steps in 2 epochs.
    cfg = tiny(image_folder, "train.d_steps=3", "train.max_steps=2")
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    counts = {"d": 0, "g": 0}
    trainer.opt_d.register_step_post_hook(lambda *a: counts.__setitem__("d", counts["d"] + 1))
    trainer.opt_g.register_step_post_hook(lambda *a: counts.__setitem__("g", counts["g"] + 1))
    calls = []  # D's inputs, in call order
    trainer.D.register_forward_pre_hook(lambda m, args: calls.append(args[0].detach().clone()))
    trainer.fit()
    assert counts == {"d": 6, "g": 2}
    # Per generator step: (real, fake) for each of the 3 D steps, then the fakes again for G's step.
    assert len(calls) == 2 * 7
    for g in range(2):
        reals = [calls[7 * g + 2 * i] for i in range(3)]
        assert not torch.equal(reals[0], reals[1]) and not torch.equal(reals[1], reals[2]), \
            "each D step must see a fresh real batch"


class RecordingBCE(BCELoss):
    """The tutorial's loss, keeping the targets it was given."""

    def __init__(self):
        self.seen = []

    def d_loss(self, real_logits, fake_logits, real_target, fake_target):
        self.seen.append((real_target.clone(), fake_target.clone()))
        return super().d_loss(real_logits, fake_logits, real_target, fake_target)


@pytest.mark.parametrize("overrides, real, fake", [
    ([], 1.0, 0.0),
    (["loss.real_label=0.9"], 0.9, 0.0),  # one-sided smoothing: only the real target moves
    (["loss.real_label=0.9", "loss.label_flip=1.0"], 0.0, 0.9),  # every label swapped
])
def test_label_smoothing_and_flipping_change_the_targets_the_loss_sees(tmp_path, image_folder, tiny, real_batches,
                                                                       overrides, real, fake):
    trainer = Trainer(tiny(image_folder, *overrides), tmp_path, log_format="quiet")
    trainer.step_fn.loss = recorder = RecordingBCE()
    out = trainer.step_fn(real_batches(1), step=0)
    (real_target, fake_target), = recorder.seen
    assert torch.allclose(real_target, torch.full((16,), real)) and torch.allclose(fake_target, torch.full((16,), fake))
    # and the loss D minimised is the BCE against those targets (finite, so it did act)
    assert torch.isfinite(out["loss_d"])


def test_label_flip_probability_is_respected(tiny, image_folder):
    targets = Targets(tiny(image_folder, "loss.label_flip=0.1"))
    torch.manual_seed(0)
    real, fake = targets(20000, torch.device("cpu"))
    flipped = (real == 0.0).float().mean().item()
    assert 0.09 < flipped < 0.11
    assert torch.equal(real + fake, torch.ones(20000))  # a flip swaps, never duplicates


def test_label_smoothing_is_refused_for_losses_without_targets(image_folder, tiny, tmp_path):
    with pytest.raises(ConfigError, match="hinge has no real/fake targets"):
        Trainer(tiny(image_folder, "loss.name=hinge", "loss.real_label=0.9"), tmp_path)


def test_noise_schedule_reaches_zero_on_time():
    noise = InstanceNoise(std=0.2, anneal_steps=10)
    assert [round(noise.std_at(s), 6) for s in (0, 5, 9, 10, 11, 1000)] == [0.2, 0.1, 0.02, 0.0, 0.0, 0.0]
    assert InstanceNoise(0.2, 0).std_at(10**6) == 0.2  # anneal_steps=0: constant
    # The noise D sees has that standard deviation.
    torch.manual_seed(0)
    x = torch.zeros(16, 3, 32, 32)
    assert abs((noise(x, 0) - x).std().item() - 0.2) < 0.004
    assert abs((noise(x, 5) - x).std().item() - 0.1) < 0.002
    assert torch.equal(noise(x, 10), x)


def test_a_real_run_logs_noise_learning_rates_augmentation_and_gradient_norms(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "noise.std=0.2", "noise.anneal_steps=4", "train.max_steps=6", "train.log_every=1",
               "optim.g.schedule=linear", "optim.d.schedule=cosine", "optim.d.lr=4e-4", "optim.d.betas=[0.0,0.9]",
               "augment.name=ada", "augment.p=0.5")
    run = Trainer(cfg, tmp_path, log_format="quiet").fit()
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    # The record of step s reports the noise of that step (its index is s - 1): zero from step index 4 on.
    assert [r["noise_std"] for r in records] == [0.2, 0.15, 0.1, 0.05, 0.0, 0.0]
    # Two time-scale updates with their own schedules: the rate for the next step after s of 6 steps.
    for r in records:
        s = r["step"]
        assert r["lr_g"] == pytest.approx(2e-4 * (1 - s / 6))
        assert r["lr_d"] == pytest.approx(4e-4 * 0.5 * (1 + math.cos(math.pi * s / 6)))
        assert r["grad_norm_d"] > 0 and r["grad_norm_g"] > 0
        assert 0.0 <= r["augment_p"] <= 1.0 and 0.0 <= r["d_wins"] <= 1.0


class ZeroLoss(BCELoss):
    """A loss whose gradient is exactly zero: only the weight penalties move the weights."""

    def d_loss(self, real_logits, fake_logits, real_target, fake_target):
        return 0.0 * (real_logits.sum() + fake_logits.sum())

    def g_loss(self, fake_logits, real_logits=None):
        return 0.0 * fake_logits.sum()


def _weights_after_zero_loss_steps(tmp_path, image_folder, tiny, real_batches, *overrides, steps=3):
    trainer = Trainer(tiny(image_folder, *overrides), tmp_path, log_format="quiet")
    trainer.step_fn.loss = ZeroLoss()
    before = {n: {k: v.detach().clone() for k, v in net.named_parameters()} for n, net in (("G", trainer.G), ("D", trainer.D))}
    for s in range(steps):
        trainer.step_fn(real_batches(1), step=s)
    after = {n: dict(net.named_parameters()) for n, net in (("G", trainer.G), ("D", trainer.D))}
    return before, after


def test_without_decay_a_zero_loss_gradient_leaves_weights_alone(tmp_path, image_folder, tiny, real_batches):
    before, after = _weights_after_zero_loss_steps(tmp_path, image_folder, tiny, real_batches)
    for net in ("G", "D"):
        for k, v in before[net].items():
            assert torch.equal(v, after[net][k]), f"{net}.{k} moved without any gradient"


def test_l2_weight_decay_shrinks_weights_decoupled(tmp_path, image_folder, tiny, real_batches):
    before, after = _weights_after_zero_loss_steps(tmp_path, image_folder, tiny, real_batches,
                                                   "optim.g.weight_decay=0.5", "optim.d.weight_decay=0.25")
    lr = 2e-4
    for net, wd in (("G", 0.5), ("D", 0.25)):
        for k, v in before[net].items():
            # Decoupled (AdamW): w <- w * (1 - lr * wd) each step, whatever the gradient's scale.
            assert torch.allclose(after[net][k], v * (1 - lr * wd) ** 3, rtol=1e-6, atol=1e-9), k


def test_l1_penalty_shrinks_weights_towards_zero(tmp_path, image_folder, tiny, real_batches):
    before, after = _weights_after_zero_loss_steps(tmp_path, image_folder, tiny, real_batches,
                                                   "optim.g.l1=1e-4", "optim.d.l1=1e-4")
    for net in ("G", "D"):
        total_before = sum(v.abs().sum() for v in before[net].values())
        total_after = sum(v.abs().sum() for v in after[net].values())
        assert total_after < total_before
        # L1's gradient is sign(w): with Adam every weight far from zero moves ~lr towards it each step.
        name = next(k for k, v in before[net].items() if v.dim() == 4)
        w0, w1 = before[net][name], after[net][name]
        big = w0.abs() > 1e-2
        assert torch.all((w1.abs() < w0.abs())[big])
        assert torch.allclose((w0 - w1).abs()[big], torch.full_like(w0[big], 3 * 2e-4), rtol=0.05)
