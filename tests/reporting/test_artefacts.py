"""A short real run produces every artefact of issue 7: report, curves, timeline, real grid, TensorBoard."""
from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from ganforge.reporting.timeline import ffmpeg_available

EPOCHS = 3  # of the session's reported_run (tests/reporting/conftest.py)


def test_run_writes_every_artefact(reported_run):
    for name in ["report.html", "curves.png", "timeline.gif", "real_samples.png", "summary.json"]:
        assert (reported_run / name).is_file(), name
    assert json.loads((reported_run / "summary.json").read_text())["status"] == "finished"


def test_timeline_gif_has_one_frame_per_epoch(reported_run):
    with Image.open(reported_run / "timeline.gif") as gif:
        assert gif.n_frames == EPOCHS
        with Image.open(reported_run / "samples" / "epoch_0001.png") as grid:
            assert gif.size[0] == grid.size[0]  # the grid, with a caption strip above it
            assert gif.size[1] > grid.size[1]


def test_timeline_mp4_when_ffmpeg_is_installed(reported_run):
    if not ffmpeg_available():
        assert not (reported_run / "timeline.mp4").exists()
        pytest.skip("imageio-ffmpeg not installed: the MP4 is skipped (pip install ganforge[video])")
    import imageio_ffmpeg
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(reported_run / "timeline.mp4"))
    assert frames == EPOCHS


def test_real_samples_are_real_images(reported_run):
    with Image.open(reported_run / "real_samples.png") as img:
        arr = img.convert("L")
        lo, hi = arr.getextrema()
    # 16 real clothes on black, not noise or a blank: dark background and bright garments.
    assert img.size == (4 * 34 + 2, 4 * 34 + 2)
    assert lo < 20 and hi > 150


def test_curves_png_is_a_real_plot(reported_run):
    with Image.open(reported_run / "curves.png") as img:
        assert img.width > 400 and img.height > 200
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 20  # lines, text and axes, not an empty canvas


def test_report_is_self_contained(reported_run):
    html = (reported_run / "report.html").read_text()
    sources = re.findall(r'\bsrc="([^"]*)"', html)
    # samples per epoch + real grid + curves, all inlined
    assert len(sources) == EPOCHS + 2
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(https?:)?//', html)
    assert "<link rel=\"stylesheet\"" not in html and "@import" not in html


def test_report_shows_the_run(reported_run):
    html = (reported_run / "report.html").read_text()
    summary = json.loads((reported_run / "summary.json").read_text())
    assert str(reported_run.parent.parent / "images") in html  # dataset
    assert summary["hardware"] in html
    assert "lr: 0.0002" in html  # the configuration, verbatim
    assert 'id="epoch-slider"' in html and "epoch 3" in html
    # the metrics table: one row per epoch
    table = html.split('<table class="metrics">')[1].split("</table>")[0]
    assert table.count("<tr>") == EPOCHS + 1


def test_report_is_refreshed_at_every_epoch_end(tmp_path, image_folder, tiny):
    """The page is rewritten at each epoch end, showing the run as it is then (status running)."""
    from ganforge.training.callbacks import default_callbacks
    from ganforge.training.session import save_config
    from ganforge.training.trainer import Trainer

    cfg = tiny(image_folder, "train.epochs=2", "train.report=true", "data.limit=32")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(cfg, run_dir)
    trainer = Trainer(cfg, run_dir, log_format="quiet")
    pages = []

    class ReadPage:  # runs after the report callback: reads what a browser reloading the page would see
        def on_epoch_end(self, trainer, epoch):
            pages.append((epoch, (run_dir / "report.html").read_text()))

    trainer.callbacks = default_callbacks(cfg, trainer) + [ReadPage()]
    trainer.fit()
    assert [e for e, _ in pages] == [1, 2]
    first, second = pages[0][1], pages[1][1]
    assert ">running<" in first and "epoch 1" in first and "epoch 2" not in first
    assert ">running<" in second and "epoch 2" in second
    assert ">finished<" in (run_dir / "report.html").read_text()


def test_tensorboard_logs_scalars_and_grids(reported_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(reported_run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss/loss_d", "loss/loss_g", "D/d_x", "D/d_g_z", "lr/lr_g", "lr/lr_d", "speed/images_per_s"} <= scalars
    records = [json.loads(l) for l in (reported_run / "metrics.jsonl").read_text().splitlines()]
    logged = [e.value for e in events.Scalars("loss/loss_g")]
    assert logged == pytest.approx([r["loss_g"] for r in records], rel=1e-5)
    grads = {k for k in records[0] if "grad" in k}
    assert {f"grad/{k}" for k in grads} <= scalars  # gradient norms, when the step logs them
    grids = events.Images("samples/fixed_noise")
    assert len(grids) == EPOCHS
    assert len(events.Images("samples/real")) == 1
