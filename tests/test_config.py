"""Configs are strict: unknown keys and wrong types are errors that name the key and a fix."""
from __future__ import annotations

import pytest
import yaml

from ganforge import config as C


def test_presets_load_and_validate():
    for name in C.preset_names():
        cfg = C.load(preset=name)
        assert cfg.preset == name


def test_unknown_key_names_closest():
    with pytest.raises(C.ConfigError, match=r"unknown config key 'train.epoch'.*train.epochs"):
        C.load(preset="quickstart", overrides=["train.epoch=3"])


def test_unknown_key_in_yaml_names_closest(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text(yaml.safe_dump({"model": {"ngff": 32}}))
    with pytest.raises(C.ConfigError, match=r"model.ngff.*did you mean 'ngf'"):
        C.load(file=f)


def test_wrong_type_is_named():
    with pytest.raises(C.ConfigError, match=r"data.batch_size: expected an integer, got 'big'"):
        C.load(preset="quickstart", overrides=["data.batch_size=big"])


def test_ranges_checked():
    with pytest.raises(C.ConfigError, match=r"data.batch_size must be > 0"):
        C.load(preset="quickstart", overrides=["data.batch_size=0"])
    with pytest.raises(C.ConfigError, match=r"optim.d.lr must be > 0"):
        C.load(preset="quickstart", overrides=["optim.d.lr=-1e-4"])


def test_overrides_parse_values_and_file_then_overrides(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text(yaml.safe_dump({"preset": "dcgan-celeba64", "train": {"epochs": 2}}))
    cfg = C.load(file=f, overrides=["train.epochs=10", "model.nz=128", "optim.g.betas=[0.0, 0.9]"])
    assert cfg.train.epochs == 10 and cfg.model.nz == 128 and cfg.optim.g.betas == [0.0, 0.9]
    assert cfg.data.image_size == 64  # from the preset named in the file


def test_saved_config_round_trips():
    cfg = C.load(preset="dcgan-celeba64", overrides=["train.epochs=7"])
    again = C.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_unknown_preset():
    with pytest.raises(C.ConfigError, match="unknown preset 'dcgan-celeb64'.*dcgan-celeba64"):
        C.load(preset="dcgan-celeb64")


def test_a_run_saved_with_a_removed_option_off_still_loads_and_on_is_refused_by_name():
    # Runs saved before loss.imle and the other rejected options were removed hold them at their off values.
    from ganforge.config import RETIRED
    saved = C.Config().to_dict()
    for key, off in RETIRED.items():
        section, name = key.split(".")
        saved[section][name] = off
    assert C.from_dict(saved).to_dict() == C.Config().to_dict()
    saved["loss"]["imle"] = 1.0
    with pytest.raises(C.ConfigError, match=r"loss.imle was measured, not taken and removed.*docs/quality.md"):
        C.from_dict(saved)
    with pytest.raises(C.ConfigError, match="unknown config key 'loss.imle'"):
        C.load(overrides=["loss.imle=1"])


@pytest.mark.parametrize("key, value", [("data.class_names", "[a, b]"), ("train.world_size", "2"),
                                        ("train.effective_batch_size", "64"), ("train.init_from_step", "0")])
def test_a_key_ganforge_writes_is_refused_in_a_config_and_an_override(key, value, tmp_path):
    # These are the run's facts (run.json), not settings: saying them in a config would be saying nothing.
    message = rf"{key} is not a setting: ganforge writes it into the run's facts \(run.json\).*leave it out"
    with pytest.raises(C.ConfigError, match=message):
        C.load(overrides=[f"{key}={value}"])
    section, name = key.split(".")
    (tmp_path / "mine.yaml").write_text(f"{section}:\n  {name}: {value}\n")
    with pytest.raises(C.ConfigError, match=message):
        C.load(file=tmp_path / "mine.yaml")
    assert key not in C._all_keys(C.Config)
