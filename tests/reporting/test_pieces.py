"""The pieces the commands are built from: spherical interpolation, truncation, smoothing, run reading."""
from __future__ import annotations

import json

import pytest
import torch

from ganforge.config import ConfigError
from ganforge.reporting.curves import panels, smooth
from ganforge.reporting.html import evenly
from ganforge.reporting.rundata import metric_group, per_epoch, read_metrics
from ganforge.sampling import slerp, truncate


def test_slerp_ends_at_its_points_and_keeps_the_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 100, generator=g), torch.randn(5, 100, generator=g)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)  # same norms: a great circle
    path = slerp(a, b, torch.linspace(0, 1, 7))
    assert path.shape == (5, 7, 100)
    assert torch.allclose(path[:, 0], a, atol=1e-5) and torch.allclose(path[:, -1], b, atol=1e-5)
    assert torch.allclose(path.norm(dim=2), a.norm(dim=1, keepdim=True).expand(5, 7), rtol=1e-4)
    # where a straight line sags towards the origin
    assert (((a + b) / 2).norm(dim=1) < path[:, 3].norm(dim=1) * 0.9).all()


def test_slerp_of_parallel_latents_is_the_straight_line():
    a = torch.ones(1, 4)
    path = slerp(a, 2 * a, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(path[0], torch.stack([a[0], 1.5 * a[0], 2 * a[0]]))


def test_truncation():
    z = torch.randn(8, 16)
    assert torch.equal(truncate(z, 1.0), z)
    assert torch.allclose(truncate(z, 0.5), z * 0.5)
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ConfigError, match="psi must be in"):
            truncate(z, bad)


def test_smoothing_is_debiased_and_follows_the_trend():
    assert smooth([5.0, 5.0, 5.0]) == pytest.approx([5.0, 5.0, 5.0])  # no pull towards 0 at the start
    s = smooth([0.0] * 10 + [1.0] * 40)
    assert s[9] == 0 and 0.99 < s[-1] <= 1 and all(x <= y for x, y in zip(s, s[1:]))


def test_metrics_are_grouped_for_curves_and_tensorboard():
    assert [metric_group(k) for k in ["loss_d", "d_g_z2", "lr_g", "grad_norm_d", "images_per_s", "fid_effnet_lite0"]] \
        == ["loss", "D", "lr", "grad", "speed", "metrics"]
    records = [{"step": 1, "epoch": 1, "loss_d": 1.0, "loss_g": 2.0, "d_x": 0.5, "flag": True, "note": "x"},
               {"step": 2, "epoch": 1, "fid_effnet_lite0": 50.0, "noise_std": 0.0},
               {"step": 3, "epoch": 1, "fid_effnet_lite0": 40.0, "noise_std": 0.0}]
    assert panels(records) == [("losses (G and D)", ["loss_d", "loss_g"]), ("D(x) and D(G(z))", ["d_x"]),
                               ("fid_effnet_lite0", ["fid_effnet_lite0"])]


def test_metrics_reading_survives_a_killed_writer(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": 2, "epoch": 1, "loss_d": 1.0}), json.dumps({"step": 4, "epoch": 1, "loss_d": 0.9}),
             json.dumps({"step": 4, "epoch": 1, "fid": 30.0}), json.dumps({"step": 6, "epoch": 2, "loss_d": 0.8}),
             '{"step": 8, "epoch": 2, "lo']
    path.write_text("\n".join(lines))
    records = read_metrics(path)
    assert [r["step"] for r in records] == [2, 4, 4, 6]
    assert per_epoch(records) == [{"step": 4, "epoch": 1, "loss_d": 0.9, "fid": 30.0},
                                  {"step": 6, "epoch": 2, "loss_d": 0.8}]


def test_long_runs_show_an_even_selection_of_grids():
    picked = evenly(list(range(500)), 100)
    assert len(picked) == 100 and picked[0] == 0 and picked[-1] == 499
    assert evenly([1, 2, 3], 100) == [1, 2, 3]
