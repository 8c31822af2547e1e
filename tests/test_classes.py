"""Class names: a conditional run stores its class folders, ``--class NAME`` picks one, the report labels
its rows, and the recipe points out class folders without switching labels on.  Real Fashion-MNIST
images in three class folders named after their real classes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import ganforge
from conftest import FASHION_TRAIN, tiny_config
from ganforge.classes import fixed_labels, resolve_class, row_labels
from ganforge.cli import main
from ganforge.data.sources import _read_idx
from ganforge.recipe import auto_config
from ganforge.storage import safe_load

CLASSES = {"bag": 8, "sneaker": 7, "trouser": 1}  # folder name -> Fashion-MNIST label


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    if not FASHION_TRAIN.is_file():
        pytest.skip("Fashion-MNIST files missing: apt-get install dataset-fashion-mnist")
    images = _read_idx(FASHION_TRAIN)[:3000]
    labels = _read_idx(FASHION_TRAIN.with_name("train-labels-idx1-ubyte.gz"))[:3000]
    root = tmp_path_factory.mktemp("classes") / "clothes"
    for name, label in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i, idx in enumerate(np.flatnonzero(labels == label)[:16]):
            Image.fromarray(images[idx]).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def conditional_run(class_folder, tmp_path_factory):
    cfg = tiny_config(class_folder, "model.num_classes=3", "data.labels=true", "train.epochs=1",
                      "train.report=true", channels=1)
    return ganforge.train(cfg, runs_dir=tmp_path_factory.mktemp("runs"), log_format="quiet")


def test_the_run_stores_its_class_names_everywhere(conditional_run, tmp_path):
    # In the run's facts (ganforge found them), not in its config (what the user chose).
    names = sorted(CLASSES)
    assert "class_names" not in yaml.safe_load((conditional_run / "config.yaml").read_text())["data"]
    assert json.loads((conditional_run / "run.json").read_text())["class_names"] == names
    assert json.loads((conditional_run / "summary.json").read_text())["classes"] == names
    ckpt = next((conditional_run / "checkpoints").glob("step_*.pt"))
    assert safe_load(ckpt)["facts"]["class_names"] == names
    assert safe_load(conditional_run / "generator.pt")["facts"]["class_names"] == names
    from ganforge.export import export_generator, load_export
    out = export_generator(conditional_run, tmp_path / "shared")
    assert json.loads((out / "config.json").read_text())["facts"]["class_names"] == names
    assert load_export(out)[2].class_names == names


def test_class_by_name_or_index(conditional_run, tmp_path, capsys):
    a, b = tmp_path / "by_name.png", tmp_path / "by_index.png"
    assert main(["sample", str(conditional_run), "--class", "sneaker", "--n", "4", "--out", str(a)]) == 0
    assert main(["sample", str(conditional_run), "--class", "1", "--n", "4", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert main(["sample", str(conditional_run), "--class", "Sneaker", "--n", "4", "--out", str(a)]) == 0
    assert a.read_bytes() == b.read_bytes()  # case does not matter when it is unambiguous
    capsys.readouterr()
    assert main(["sample", str(conditional_run), "--class", "sneakers", "--n", "4", "--out", str(a)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'sneaker'?" in err and "0 bag, 1 sneaker, 2 trouser" in err
    assert main(["sample", str(conditional_run), "--class", "3", "--n", "4", "--out", str(a)]) == 2
    assert "out of range: the model has 3 classes (0 to 2)" in capsys.readouterr().err


def test_the_report_labels_its_rows(conditional_run):
    html = (conditional_run / "report.html").read_text()
    # 16 fixed-noise images: 4 rows of 4, one class per row
    assert "One class per row, top to bottom: bag, sneaker, trouser, bag." in html
    assert '<ol class="row-labels"' in html
    assert fixed_labels(16, 3).tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [0] * 4
    cfg = ganforge.config.from_dict(yaml.safe_load((conditional_run / "config.yaml").read_text()))
    assert row_labels(cfg, sorted(CLASSES)) == ["bag", "sneaker", "trouser", "bag"]
    assert row_labels(cfg, []) == ["class 0", "class 1", "class 2", "class 0"]  # a run that stored none


def test_unconditional_models_refuse_a_class(class_folder):
    cfg = tiny_config(class_folder, channels=1)
    with pytest.raises(ganforge.config.ConfigError, match="not conditional"):
        resolve_class("bag", cfg, [])
    assert resolve_class(None, cfg, []) is None


def test_a_resume_on_other_classes_is_refused(conditional_run, class_folder, tmp_path):
    import shutil
    moved = tmp_path / "clothes"
    shutil.copytree(class_folder, moved)
    (moved / "sneaker").rename(moved / "shoe")
    with pytest.raises(ganforge.config.ConfigError, match="not those this run was trained with"):
        ganforge.api.resume(conditional_run, overrides=[f"data.source={moved}", "train.epochs=2"], force=True,
                            log_format="quiet")


def test_the_recipe_notices_class_folders_and_leaves_labels_off(class_folder, capsys):
    cfg = auto_config(str(class_folder), ["train.device=cpu"])
    assert cfg.data.labels is False and cfg.model.num_classes == 0
    assert any("3 class folders (bag, sneaker, trouser): data.labels=true model.num_classes=3 would train a "
               "conditional model (not switched on)" in n for n in cfg.notes)
    given = auto_config(str(class_folder), ["train.device=cpu", "data.labels=false"])
    assert not any("class folders" in n for n in given.notes)
