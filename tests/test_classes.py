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


def write_class_folder(root, per_class: int):
    """``root`` with a folder per class of ``CLASSES``, each holding ``per_class`` real images of that class."""
    if not FASHION_TRAIN.is_file():
        pytest.skip("Fashion-MNIST files missing: apt-get install dataset-fashion-mnist")
    images = _read_idx(FASHION_TRAIN)[:3000]
    labels = _read_idx(FASHION_TRAIN.with_name("train-labels-idx1-ubyte.gz"))[:3000]
    for name, label in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i, idx in enumerate(np.flatnonzero(labels == label)[:per_class]):
            Image.fromarray(images[idx]).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    return write_class_folder(tmp_path_factory.mktemp("classes") / "clothes", 16)


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


def as_saved_before_run_json(run, to):
    """A copy of ``run`` in the form ganforge wrote before the run's facts had a file of their own: the
    facts (class names, processes, effective batch, init_from step) inside ``config.yaml`` and inside the
    ``config`` of every checkpoint and ``generator.pt``, no ``run.json``, no ``facts`` in any file."""
    import hashlib
    import shutil

    from ganforge.storage import atomic_write_bytes, to_bytes

    shutil.copytree(run, to)
    facts = json.loads((to / "run.json").read_text())
    (to / "run.json").unlink()

    def old_form(config):
        config["data"]["class_names"] = facts["class_names"]
        config["train"].update({k: facts[k] for k in ("init_from_step", "world_size", "effective_batch_size")})
        return config

    (to / "config.yaml").write_text(yaml.safe_dump(old_form(yaml.safe_load((to / "config.yaml").read_text())),
                                                   sort_keys=False))
    manifest = json.loads((to / "checkpoints" / "manifest.json").read_text())
    entries = {e["file"]: e for e in manifest["checkpoints"]}
    for path in [to / "generator.pt", *sorted((to / "checkpoints").glob("*.pt"))]:
        state = safe_load(path)
        assert state.pop("facts") == facts
        state["config"] = old_form(state["config"])
        data = to_bytes(state)
        atomic_write_bytes(path, data)
        if path.name in entries:
            entries[path.name].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (to / "checkpoints" / "manifest.json").write_text(json.dumps(manifest))
    return to


def test_a_run_saved_before_run_json_samples_reports_exports_and_resumes(conditional_run, tmp_path, capsys):
    # The same run's files in the previous format: its class names only in its config.
    names = sorted(CLASSES)
    old = as_saved_before_run_json(conditional_run, tmp_path / "old_run")
    assert yaml.safe_load((old / "config.yaml").read_text())["data"]["class_names"] == names
    a, b = tmp_path / "old.png", tmp_path / "new.png"
    assert main(["sample", str(old), "--class", "sneaker", "--n", "4", "--out", str(a)]) == 0
    assert main(["sample", str(conditional_run), "--class", "sneaker", "--n", "4", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert main(["sample", str(old / "checkpoints" / "step_00000003.pt"), "--class", "trouser", "--n", "4",
                 "--out", str(a)]) == 0
    assert main(["report", str(old)]) == 0
    html = (old / "report.html").read_text()
    assert "One class per row, top to bottom: bag, sneaker, trouser, bag." in html
    assert "<th>processes x batch</th><td>1 x 16 = 16</td>" in html
    from ganforge.export import export_generator, load_export
    exported = json.loads((export_generator(old, tmp_path / "shared") / "config.json").read_text())
    assert exported["facts"]["class_names"] == names and "class_names" not in exported["config"]["data"]
    capsys.readouterr()
    # An export written before "facts" existed keeps its class names in its config: read from there.
    exported["config"]["data"]["class_names"] = exported.pop("facts")["class_names"]
    (tmp_path / "shared" / "config.json").write_text(json.dumps(exported))
    assert load_export(tmp_path / "shared")[2].class_names == names

    # Resumed: it trains on, and is written in today's form (the facts in run.json, the config without them).
    ganforge.api.resume(old, overrides=["train.epochs=2"], log_format="quiet")
    assert json.loads((old / "run.json").read_text()) == {"class_names": names, "world_size": 1,
                                                          "effective_batch_size": 16, "init_from_step": 0}
    saved = yaml.safe_load((old / "config.yaml").read_text())
    assert "class_names" not in saved["data"] and "world_size" not in saved["train"]
    assert saved["train"]["epochs"] == 2
    summary = json.loads((old / "summary.json").read_text())
    assert summary["step"] == 6 and summary["classes"] == names
    assert safe_load(old / "generator.pt")["facts"]["class_names"] == names


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
    assert cfg.model.latent_groups == 0  # 48 images: too few for the recipe's groups
    assert not any("after model.latent_groups=0" in n for n in cfg.notes)
    given = auto_config(str(class_folder), ["train.device=cpu", "data.labels=false"])
    assert not any("class folders" in n for n in given.notes)


def test_with_the_recipes_latent_groups_the_class_note_says_how_classes_fit_them(tmp_path):
    # 300 real images in three class folders: enough for the recipe's latent groups, which condition G
    # already, so the note says that a conditional model needs them off and that labels alone keep each
    # group inside one class.
    root = write_class_folder(tmp_path / "clothes", 100)
    cfg = auto_config(str(root), ["train.device=cpu"])
    if not cfg.loss.feature_match:
        pytest.skip("the recipe's feature matching (and so its latent groups) needs the extra 'projected'")
    assert cfg.model.latent_groups > 0 and cfg.data.labels is False
    (hint,) = [n for n in cfg.notes if "class folders" in n]
    assert "model.num_classes=3 would train a conditional model (not switched on), after model.latent_groups=0" in hint
    assert "data.labels=true alone keeps each group inside one class" in hint
    # What the note proposes is a config the checks accept.
    assert auto_config(str(root), ["train.device=cpu", "data.labels=true"]).data.labels is True
