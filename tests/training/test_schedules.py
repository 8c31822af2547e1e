"""Learning-rate schedules and optimisers per network, and an exact resume with every strategy on (EMA included)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from ganforge.config import ConfigError
from ganforge.sampling import load_generator
from ganforge.training.schedules import LRSchedules
from ganforge.training.trainer import Trainer

from conftest import fit_whole_and_resumed


def _opt(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


@pytest.mark.parametrize("kind, expected", [
    ("constant", lambda f: 1.0),
    ("linear", lambda f: 1.0 - f),
    ("cosine", lambda f: 0.5 * (1 + math.cos(math.pi * f))),
])
def test_schedules_follow_their_shape_and_end_where_they_should(kind, expected):
    opt = _opt(0.1)
    schedules = LRSchedules({"g": opt}, {"g": kind})
    schedules.total_steps = 10
    lrs = []
    for _ in range(12):
        schedules.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:10] == pytest.approx([0.1 * expected(s / 10) for s in range(1, 11)])
    assert lrs[10:] == pytest.approx([lrs[9]] * 2)  # past the end the rate stays where it ended
    if kind != "constant":
        assert lrs[9] == pytest.approx(0.0, abs=1e-12)


def test_guard_scaling_survives_a_state_round_trip():
    opt = _opt(0.1)
    schedules = LRSchedules({"d": opt}, {"d": "linear"})
    schedules.total_steps = 4
    schedules.step()
    schedules.scale(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * 0.75)
    state = schedules.state_dict()
    opt2 = _opt(0.1)
    opt2.load_state_dict(opt.state_dict())
    again = LRSchedules({"d": opt2}, {"d": "linear"})
    again.total_steps = 4
    again.load_state_dict(state)
    again.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * 0.5)


def test_each_network_gets_its_own_optimiser(tmp_path, image_folder, tiny):
    trainer = Trainer(tiny(image_folder, "optim.g.name=rmsprop", "optim.g.lr=1e-3", "optim.d.name=adamw",
                           "optim.d.betas=[0.0,0.9]", "optim.d.weight_decay=0.01"), tmp_path, log_format="quiet")
    assert isinstance(trainer.opt_g, torch.optim.RMSprop) and trainer.opt_g.param_groups[0]["lr"] == 1e-3
    assert isinstance(trainer.opt_d, torch.optim.AdamW)
    assert trainer.opt_d.param_groups[0]["betas"] == (0.0, 0.9) and trainer.opt_d.param_groups[0]["weight_decay"] == 0.01


def test_unknown_schedule_is_refused(image_folder, tiny):
    with pytest.raises(ConfigError, match="optim.g.schedule"):
        tiny(image_folder, "optim.g.schedule=step")


def test_resume_is_exact_with_every_strategy_on(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "train.max_steps=4", "train.midsave_steps=2", "ema.enabled=true", "ema.decay=0.9",
               "augment.name=ada", "augment.p=0.3", "augment.ada_kimg=0.5", "augment.ada_interval=1",
               "noise.std=0.1", "noise.anneal_steps=3", "optim.g.schedule=linear", "optim.d.schedule=cosine",
               "loss.r1_gamma=0.1", "loss.r1_every=3", "loss.real_label=0.9", "loss.label_flip=0.1")
    whole, a, b = fit_whole_and_resumed(cfg, tmp_path)  # G, D and G_ema end equal
    assert a["lr_schedules"] == b["lr_schedules"] and a["opt_d"]["param_groups"] == b["opt_d"]["param_groups"]
    assert torch.equal(a["d_input"]["AdaptiveAugment"]["p"], b["d_input"]["AdaptiveAugment"]["p"])
    assert float(a["d_input"]["AdaptiveAugment"]["p"]) != 0.3  # ADA did move p
    # The generator file (what `ganforge sample` and the metrics load) holds the EMA weights.
    G, _, _ = load_generator(tmp_path / "whole" / "generator.pt")
    for loaded, averaged, current in zip(G.parameters(), whole.G_ema.parameters(), whole.G.parameters()):
        assert torch.equal(loaded, averaged)
    assert any(not torch.equal(a, c) for a, c in zip(whole.G_ema.parameters(), whole.G.parameters()))


def test_a_time_budget_sets_the_length_from_the_pace_so_far():
    opt = _opt(0.1)
    schedules = LRSchedules({"g": opt}, {"g": "linear"}, budget_seconds=100.0)
    schedules.total_steps = 10_000  # the steps of train.epochs: far longer than the budget holds
    for _ in range(10):
        schedules.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 10 / 10_000))  # no pace known yet
    schedules.pace(10, trained_seconds=20.0)  # 10 steps in 20 s: the 100 s budget holds 50
    assert schedules.length == 50
    schedules.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 11 / 50))
    schedules.pace(11, trained_seconds=100.0)  # the budget is spent after 11 steps: the rate ends here
    schedules.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    again = LRSchedules({"g": _opt(0.1)}, {"g": "linear"}, budget_seconds=100.0)
    again.load_state_dict(schedules.state_dict())  # a resumed run keeps the estimate until its next log line
    assert again.paced_steps == 11


def test_without_a_time_budget_the_pace_changes_nothing():
    schedules = LRSchedules({"g": _opt(0.1)}, {"g": "linear"})
    schedules.total_steps = 100
    schedules.pace(10, trained_seconds=1.0)
    assert schedules.length == 100


def test_a_linear_schedule_ends_with_the_time_budget(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "train.epochs=100000", "train.max_minutes=0.1", "train.log_every=1",
               "train.compile=off", "optim.g.schedule=linear", "optim.d.schedule=constant")
    Trainer(cfg, tmp_path, log_format="quiet").fit()
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "time budget reached"
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lr_g = [l["lr_g"] for l in lines if "lr_g" in l]
    # 100,000 epochs alone would keep the rate at its start; the 6-second budget brings it near zero.
    assert len(lr_g) >= 2 and lr_g[-1] < 0.3 * cfg.optim.g.lr
    assert {l["lr_d"] for l in lines if "lr_d" in l} == {cfg.optim.d.lr}  # D's constant rate is untouched
