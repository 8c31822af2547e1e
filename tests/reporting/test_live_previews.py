"""Live previews: a ``train.sample_every`` grid is in report.html and TensorBoard as soon as it is written.

A real run (Fashion-MNIST images, 4 steps per epoch, a grid every 2 steps) with a callback that looks
at both, from inside the run, right after each step grid is written.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from conftest import tiny_config, write_images
from ganforge.reporting.grids import sample_grids
from ganforge.training.callbacks import default_callbacks
from ganforge.training.session import save_config
from ganforge.training.trainer import Trainer


class Watcher:
    """Reads the report and the TensorBoard events at the moment a grid has been handed on."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.seen = run_dir, []

    def on_samples(self, trainer, path):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        html = (self.run_dir / "report.html").read_text() if (self.run_dir / "report.html").is_file() else ""
        events = EventAccumulator(str(self.run_dir / "tensorboard"), size_guidance={"images": 0})
        events.Reload()
        images = events.Images("samples/fixed_noise") if "samples/fixed_noise" in events.Tags()["images"] else []
        self.seen.append((Path(path).name, trainer.progress.step, html, [e.step for e in images]))


def test_step_grids_show_up_while_the_epoch_runs(tmp_path, fashion_images):
    write_images(tmp_path / "images", fashion_images, 64)  # 4 batches of 16: 4 steps per epoch
    cfg = tiny_config(tmp_path / "images", "train.epochs=2", "train.sample_every=3", "train.report=true",
                      "train.tensorboard=true", "train.log_every=1")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(cfg, run_dir)
    trainer = Trainer(cfg, run_dir, log_format="quiet")
    watcher = Watcher(run_dir)
    trainer.callbacks = default_callbacks(cfg, trainer) + [watcher]
    trainer.fit()

    step_grids = [s for s in watcher.seen if s[0].startswith("step_")]
    assert [(name, step) for name, step, _, _ in step_grids] == [("step_00000003.png", 3), ("step_00000006.png", 6)]
    for name, step, html, tb_steps in step_grids:
        assert f'data-label="step {step}"' in html  # already in the page, mid-epoch
        assert tb_steps[-1] == step  # already in TensorBoard
    index = [json.loads(line) for line in (run_dir / "samples" / "grids.jsonl").read_text().splitlines()]
    assert [(e["file"], e["step"]) for e in index] == [
        ("step_00000003.png", 3), ("epoch_0001.png", 4), ("step_00000006.png", 6), ("epoch_0002.png", 8)]
    # The finished report's slider and the timeline: every grid, in the order written.
    assert [g.label for g in sample_grids(run_dir / "samples")] == ["step 3", "epoch 1", "step 6", "epoch 2"]
    html = (run_dir / "report.html").read_text()
    assert html.index('data-label="step 3"') < html.index('data-label="epoch 1"') < html.index('data-label="step 6"')
    with Image.open(run_dir / "timeline.gif") as gif:
        assert gif.n_frames == 4
