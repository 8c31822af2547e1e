"""Fine-tuning (``train --init-from``): a new run whose G, D and EMA start from earlier weights.

A Fashion-MNIST run is fine-tuned on a second real set (Noto emoji, composited on white and saved as
grayscale PNGs).  That the first step starts from the source's weights is checked through Adam: its
first update moves every weight by at most the learning rate (lr * m/(sqrt(v)+eps) with m = g and
v = g**2), so after one step every parameter lies within lr of where it started, which a fresh
initialisation is nowhere near.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

import ganforge
from conftest import tiny_config, write_images
from ganforge.cli import main
from ganforge.config import ConfigError
from ganforge.storage import safe_load

LR = 2e-4  # the quickstart preset's, for G and D


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, fashion_images) -> Path:
    """A short real Fashion-MNIST run (grey, 32 px) with an EMA generator: the weights to fine-tune."""
    root = tmp_path_factory.mktemp("source")
    write_images(root / "fashion", fashion_images, 64, rgb=False, formats=("png",))
    cfg = tiny_config(root / "fashion", "train.max_steps=6", "ema.enabled=true", "ema.warmup=false",
                      "ema.decay=0.9", channels=1)
    return ganforge.train(cfg, runs_dir=root / "runs", log_format="quiet")


@pytest.fixture(scope="module")
def grey_emoji(tmp_path_factory, emoji_dir) -> Path:
    """The second real set: the emoji as a grey image (composited on white) would show them."""
    folder = tmp_path_factory.mktemp("grey") / "emoji"
    folder.mkdir()
    for p in sorted(emoji_dir.glob("*.png")):
        with Image.open(p) as img:
            rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        canvas.convert("L").save(folder / p.name)
    return folder


def _params(state: dict, module_keys) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in state.items() if k in module_keys}


def _param_names(cfg) -> tuple[set[str], set[str]]:
    from ganforge import nets
    G, D = nets.build(cfg)
    return {k for k, _ in G.named_parameters()}, {k for k, _ in D.named_parameters()}


def _max_change(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _only_run(runs: Path) -> Path:
    found = [p for p in runs.iterdir() if (p / "config.yaml").is_file()]
    assert len(found) == 1, found
    return found[0]


def test_fine_tune_starts_from_the_source_weights(source_run, grey_emoji, tmp_path, capsys):
    runs = tmp_path / "runs"
    source_ckpt = source_run / "checkpoints" / "step_00000006.pt"
    src = safe_load(source_ckpt)
    # Another seed than the source's: a fresh start would then have other initial weights.
    assert main(["train", "--runs-dir", str(runs), "--init-from", str(source_run), "--data", str(grey_emoji),
                 "train.max_steps=1", "train.log_every=1", "train.seed=1"]) == 0
    out = capsys.readouterr().out
    assert "fine-tuning from" in out and "G, D and the EMA generator start from its weights" in out
    run = _only_run(runs)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    # config.yaml: the new data and the source resolved to its checkpoint; run.json: that checkpoint's step
    assert cfg["data"]["source"] == str(grey_emoji)
    assert cfg["train"]["init_from"] == str(source_ckpt.resolve())
    assert "init_from_step" not in cfg["train"]
    assert json.loads((run / "run.json").read_text())["init_from_step"] == 6
    assert any(n.startswith("init_from: fine-tuning from") for n in cfg["notes"])

    new = safe_load(run / "checkpoints" / "step_00000001.pt")
    assert new["progress"]["step"] == 1  # the step counter started at 0
    assert all(s["step"] == 1 for s in new["opt_g"]["state"].values())  # fresh Adam: one step taken
    assert all(s["step"] == 1 for s in new["opt_d"]["state"].values())
    g_keys, d_keys = _param_names(ganforge.config.from_dict(src["config"]))
    for net, keys in (("G", g_keys), ("D", d_keys)):
        before, after = _params(src[net], keys), _params(new[net], keys)
        assert set(before) == keys
        assert _max_change(before, after) <= LR * 1.001, net  # one Adam step from the source's weights
    # ... which a fresh start of this config (seed 1) is far from
    fresh = ganforge.training.trainer.Trainer(ganforge.config.from_dict(cfg), tmp_path / "fresh")
    assert _max_change(_params(src["G"], g_keys), _params(fresh.G.state_dict(), g_keys)) > 100 * LR
    # The EMA started from the source's EMA (decay 0.9, no warm-up): 0.9 * source EMA + 0.1 * new G.
    expected = {k: 0.9 * src["G_ema"][k].float() + 0.1 * new["G"][k].float() for k in g_keys}
    assert _max_change(expected, _params(new["G_ema"], g_keys)) < 1e-5
    summary = yaml.safe_load((run / "summary.json").read_text())
    assert summary["step"] == 1
    assert summary["init_from"]["step"] == 6 and summary["init_from"]["discriminator"] == "from the source"


def test_latest_and_a_run_name_find_the_source(source_run, grey_emoji, tmp_path, capsys):
    runs = source_run.parent
    before = set(runs.iterdir())
    assert main(["train", "--runs-dir", str(runs), "--init-from", "latest", "--data", str(grey_emoji),
                 "train.max_steps=1", "--quiet"]) == 0
    (new,) = set(runs.iterdir()) - before
    cfg = yaml.safe_load((new / "config.yaml").read_text())
    assert Path(cfg["train"]["init_from"]).parent.parent == source_run.resolve()  # not the new run itself
    import shutil
    shutil.rmtree(new)


def test_an_export_starts_d_fresh_and_says_so(source_run, grey_emoji, tmp_path, capsys):
    from ganforge.export import export_generator
    export = export_generator(source_run, tmp_path / "shared")
    src = safe_load(source_run / "generator.pt")  # the EMA copy the export holds
    ckpt = safe_load(source_run / "checkpoints" / "step_00000006.pt")
    runs = tmp_path / "runs"
    assert main(["train", "--runs-dir", str(runs), "--init-from", str(export), "--data", str(grey_emoji),
                 "train.max_steps=1", "train.seed=1"]) == 0
    out = capsys.readouterr().out
    assert "D starts from fresh weights: an export holds the generator only" in out
    run = _only_run(runs)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["train"]["init_from"] == str(export.resolve())
    assert any("D starts from fresh weights" in n for n in cfg["notes"])
    summary = yaml.safe_load((run / "summary.json").read_text())
    assert summary["init_from"]["kind"] == "export"
    assert summary["init_from"]["discriminator"].startswith("fresh")
    new = safe_load(run / "checkpoints" / "step_00000001.pt")
    g_keys, d_keys = _param_names(ganforge.config.from_dict(src["config"]))
    assert _max_change(_params(src["G"], g_keys), _params(new["G"], g_keys)) <= LR * 1.001
    assert _max_change(_params(ckpt["D"], d_keys), _params(new["D"], d_keys)) > 100 * LR  # not the source's D


def test_an_architecture_mismatch_names_both_sides(source_run, grey_emoji, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--runs-dir", str(runs), "--init-from", str(source_run), "--data", str(grey_emoji),
                 "data.image_size=64", "model.ngf=16", "--quiet"]) == 2
    msg = capsys.readouterr().err
    assert "data.image_size: the source has 32, this run 64" in msg
    assert "model.ngf: the source has 8, this run 16" in msg
    assert "set data.image_size=32 model.ngf=8" in msg
    assert not runs.exists()  # refused before any run folder was made
    # A preset of another architecture is refused the same way (the Python API too).
    cfg = tiny_config(grey_emoji, f"train.init_from={source_run}", "model.name=dcgan-upsample", channels=1)
    with pytest.raises(ConfigError, match="model.name: the source has 'dcgan', this run 'dcgan-upsample'"):
        ganforge.train(cfg, runs_dir=runs, log_format="quiet")


def test_resume_and_init_from_are_different_things(source_run, tmp_path, capsys):
    assert main(["train", "--resume", str(source_run), "--init-from", str(source_run)]) == 2
    assert "exactly; --init-from starts a new run from earlier weights: give one of them" in capsys.readouterr().err
    assert main(["train", "--init-from", str(tmp_path), "--quiet"]) == 2
    assert "is neither a ganforge run (no config.yaml) nor an export" in capsys.readouterr().err
