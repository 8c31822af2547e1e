"""The foundation: a real training run writes every artefact, and the tutorial model is exact."""
from __future__ import annotations

import json

import ganforge
from ganforge import nets
from ganforge.cli.describe import count_parameters


def test_tutorial_parameter_counts():
    cfg = ganforge.config.load(preset="dcgan-celeba64")
    G, D = nets.build(cfg)
    assert count_parameters(G) == 3_576_704
    assert count_parameters(D) == 2_765_568


def test_short_run_writes_artefacts(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "train.epochs=2")
    run = ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")
    assert (run / "config.yaml").is_file()
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["epoch_0001.png", "epoch_0002.png"]
    assert (run / "samples" / "grids.jsonl").is_file()  # the grids with their steps (live previews)
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines and {"step", "epoch", "loss_d", "loss_g", "d_x", "d_g_z", "images_per_s"} <= set(lines[0])
    assert lines[-1]["step"] == 8  # 64 images / batch 16 = 4 steps per epoch, 2 epochs
    assert (run / "generator.pt").is_file()
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
