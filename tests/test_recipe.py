"""The default recipe looks at the data and says what it chose and why."""
from __future__ import annotations

import pytest
import yaml

from ganforge.cli import main
from ganforge.recipe import auto_config, inspect, resolution_for

from conftest import write_images


def test_recipe_reads_colour_folder(image_folder):
    facts = inspect(str(image_folder))
    assert (facts.count, facts.shorter_side, facts.channels) == (64, 40, 3)
    cfg = auto_config(str(image_folder), ["train.device=cpu"])
    assert cfg.preset == "auto" and cfg.notes[0].startswith("auto recipe (auto-v7) for 64 images")
    assert (cfg.data.image_size, cfg.data.channels) == (32, 3)
    assert any(n.startswith("augment.name=diffaugment: 64 images is few") for n in cfg.notes)


def test_current_recipe_picks_the_few_shot_family_for_a_small_set_and_says_why(image_folder):
    cfg = auto_config(str(image_folder), ["train.device=cpu"])
    assert (cfg.data.image_size, cfg.model.name, cfg.augment.name, cfg.augment.fill) == (32, "fastgan", "diffaugment",
                                                                                        "background")
    assert cfg.ema.enabled and cfg.ema.half_life_images > 0
    # 64 images are too few for latent groups, and feature matching comes with them or not at all (alone it
    # was the step only the ImageNet metrics liked): the recipe says so and leaves out both, and what comes
    # with them (the Gram part, unbiased estimates, G's faster rate).
    assert cfg.loss.feature_match == 0 and any(n.startswith("loss.feature_match=0: ") and "latent groups" in n
                                               and "too few" in n for n in cfg.notes), cfg.notes
    assert cfg.model.latent_groups == 0 and cfg.loss.feature_match_gram == 0 and not cfg.loss.feature_match_unbiased
    assert cfg.optim.g.lr == cfg.optim.d.lr
    # Every choice is recorded with its reason; a key the user gives wins and is marked so.
    assert all(": " in n or n.endswith("(given)") for n in cfg.notes[1:])
    given = auto_config(str(image_folder), ["train.device=cpu", "model.name=dcgan", "model.ngf=16"])
    assert given.model.name == "dcgan" and given.model.ngf == 16 and "model.name=dcgan (given)" in given.notes
    # No reason quotes a measurement: those are in docs/recipe.md.
    assert not any("FID" in n or "KID" in n for n in cfg.notes)


def test_the_rules_are_a_flat_table_and_the_recipe_is_named_auto_or_by_its_version():
    from ganforge import recipe as R
    from ganforge.config import ConfigError
    assert set(R.RECIPES) == {"auto", "auto-v7"}
    assert all(rule.group in R.GROUPS_SHOWN for rule in R.RULES)
    with pytest.raises(ConfigError, match="unknown recipe 'auto-v1'.*benchmarks/recipes"):
        auto_config("fashion-mnist", recipe="auto-v1")


def test_earlier_recipes_are_frozen_configs_that_load():
    from pathlib import Path

    from ganforge import config as C
    folder = Path(__file__).resolve().parent.parent / "benchmarks" / "recipes"
    files = sorted(folder.glob("auto-v*.yaml"))
    expected = [f"auto-v{v}-{ds}" for v in range(1, 7) for ds in ("emoji", "fashion")] + ["auto-v1-fluent"]
    assert sorted(f.stem for f in files) == sorted(expected)  # fluent (128 px) needs only auto-v1, its baseline
    for f in files:
        cfg = C.load(file=f, overrides=["train.device=cpu"])
        assert cfg.notes[0].startswith(f"frozen recipe ({f.stem.rsplit('-', 1)[0]})")
    v6 = C.load(file=folder / "auto-v6-emoji.yaml")
    assert v6.model.latent_groups == 16 and v6.loss.feature_match_gram == 3 and not v6.loss.feature_match_unbiased


def test_large_sets_get_a_spectral_norm_dcgan():
    cfg = auto_config("fashion-mnist", ["train.device=cpu"])
    assert cfg.model.name == "dcgan" and cfg.model.ngf == 32 and cfg.loss.name == "hinge"
    assert cfg.data.batch_size == 32 and cfg.optim.g.lr == 4e-4  # on a CPU: smaller batches, faster Adam
    from ganforge.recipe import DataFacts, choose
    on_gpu, _ = choose(DataFacts(60_000, 28, 1), "cuda", {})
    assert "data.batch_size=64" in on_gpu and "optim.g.lr=0.0002" in on_gpu


def test_feature_matching_is_left_out_where_it_cannot_work_and_the_recipe_says_why(image_folder):
    from ganforge.recipe import DataFacts, choose
    chosen, _ = choose(DataFacts(1_900, 64, 3), "cpu", {})
    assert any(c.startswith("loss.feature_match=") for c in chosen)
    for given, reason in (({"data.channels": 4}, "no alpha channel"), ({"model.num_classes": 5}, "each class")):
        chosen, why = choose(DataFacts(1_900, 64, 3), "cpu", given)
        assert not any(c.startswith("loss.feature_match") for c in chosen)
        assert any(w.startswith("loss.feature_match=0:") and reason in w for w in why)
    chosen, _ = choose(DataFacts(60_000, 28, 1), "cpu", {})  # a large set: the first recipe's model alone
    assert not any(c.startswith("loss.feature_match") for c in chosen)
    cfg = auto_config(str(image_folder), ["train.device=cpu", "loss.feature_match=0"])
    assert cfg.loss.feature_match == 0 and "loss.feature_match=0 (given)" in cfg.notes


def test_latent_groups_are_chosen_for_a_small_set_on_a_cpu_and_left_out_where_they_cannot_work():
    from ganforge.recipe import DataFacts, choose
    chosen, why = choose(DataFacts(1_900, 64, 3), "cpu", {})
    assert "model.latent_groups=16" in chosen and any(w.startswith("model.latent_groups=16: ") for w in why)
    for facts, given, reason in ((DataFacts(100, 64, 3), {}, "too few"),
                                 (DataFacts(1_900, 64, 3), {"data.batch_size": 6}, "data.batch_size=6 is too small"),
                                 (DataFacts(1_900, 64, 3), {"model.name": "mlp", "data.image_size": 32}, "mlp")):
        chosen, why = choose(facts, "cpu", given)  # and feature matching, which comes with them, is left out too
        assert not any(c.startswith(("model.latent_groups", "loss.feature_match")) for c in chosen)
        assert any(w.startswith("loss.feature_match=0: ") and reason in w for w in why), why
    # A user who turns the groups off and asks for nothing else gets feature matching alone.
    chosen, _ = choose(DataFacts(100, 64, 3), "cpu", {"model.latent_groups": 0})
    assert "loss.feature_match=1.0" in chosen
    # Without feature matching (RGBA) there is nothing for the groups to match.
    chosen, _ = choose(DataFacts(1_900, 64, 3), "cpu", {"data.channels": 4})
    assert not any(c.startswith("model.latent_groups") for c in chosen)


@pytest.mark.parametrize("key, value, given", [("loss.feature_match_gram", 3.0, 1),
                                              ("loss.feature_match_unbiased", "true", False)])
def test_the_gram_part_and_unbiased_estimates_come_with_the_latent_groups_and_a_given_value_wins(key, value, given):
    from ganforge import config as C
    from ganforge.recipe import DataFacts, choose
    chosen, why = choose(DataFacts(1_900, 64, 3), "cpu", {})
    assert f"{key}={value}" in chosen and any(w.startswith(f"{key}={value}: ") for w in why)
    cfg = C.from_dict(C.apply_overrides({}, chosen))  # and the config it gives is valid
    assert cfg.get(key) and cfg.model.latent_groups == 16
    # Where the groups are left out (too few images, RGBA), so is the part.
    for facts in (DataFacts(100, 64, 3), DataFacts(1_900, 64, 4)):
        chosen, _ = choose(facts, "cpu", {})
        assert not any(c.startswith(key) for c in chosen)
    # On a GPU feature matching comes with its groups too: matching alone was the one step that only the
    # ImageNet metrics liked.
    chosen, _ = choose(DataFacts(1_900, 64, 3), "cuda", {})
    assert {"loss.feature_match=1.0", "model.latent_groups=16", f"{key}={value}", "optim.g.lr=0.001"} <= set(chosen), chosen
    chosen, why = choose(DataFacts(1_900, 64, 3), "cpu", {key: given})
    assert not any(c.startswith(key) for c in chosen) and f"{key}={given} (given)" in why


def test_recipe_reads_grey_images_and_respects_given_keys(tmp_path, fashion_images):
    folder = tmp_path / "grey"
    write_images(folder, fashion_images, 40, rgb=False, size=70)
    cfg = auto_config(str(folder), ["data.image_size=32", "loss.name=bce", "train.device=cpu"])
    assert cfg.data.channels == 1 and cfg.data.image_size == 32 and cfg.loss.name == "bce"
    assert "loss.name=bce (given)" in cfg.notes


def test_large_images_get_resnet():
    assert resolution_for(218) == 128 and resolution_for(28) == 32 and resolution_for(300) == 256
    cfg = auto_config("celeba", ["train.device=cpu"])  # a named set: decided without opening it
    assert cfg.data.image_size == 128 and cfg.model.name == "dcgan" and cfg.augment.name == "none"
    assert any("too slow on a CPU" in n for n in cfg.notes)
    from ganforge.recipe import DataFacts, choose
    chosen, _ = choose(DataFacts(200_000, 218, 3), "cuda", {"data.image_size": 128})
    assert "model.name=resnet" in chosen and "model.ngf=64" in chosen


def test_cli_train_with_data_uses_recipe(tmp_path, image_folder, capsys):
    rc = main(["train", "--data", str(image_folder), "--runs-dir", str(tmp_path / "runs"), "train.max_steps=2",
               "model.ngf=8", "model.ndf=8", "data.batch_size=16", "data.num_workers=0", "train.device=cpu",
               "train.report=false", "train.tensorboard=false"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "auto recipe (auto-v7) for 64 images" in out and "spectral_norm=true" in out
    run = next((tmp_path / "runs").iterdir())
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["preset"] == "auto" and saved["model"]["ngf"] == 8 and saved["notes"]


def test_epochs_follow_the_batch_size_the_recipe_chose(image_folder):
    # The few-shot recipe chooses batches of 32: its epoch count must be worked out with 32, not 64.
    cfg = auto_config(str(image_folder), ["train.device=cpu"])
    assert cfg.data.batch_size == 32
    assert cfg.train.epochs == max(5, -(-5_000 * 32 // 64))
    assert any(n.startswith(f"train.epochs={cfg.train.epochs}: about 5,000 steps of 32") for n in cfg.notes)
    given = auto_config(str(image_folder), ["train.device=cpu", "data.batch_size=16"])
    assert given.train.epochs == -(-5_000 * 16 // 64)


def _snapshot_cases():
    from recipe_cases import cases
    return cases()


@pytest.mark.parametrize("case_id, facts, device, given", _snapshot_cases(), ids=[c[0] for c in _snapshot_cases()])
def test_auto_resolves_to_the_snapshot(case_id, facts, device, given):
    """Today's ``auto`` makes exactly the config recorded in tests/recipe_snapshot.json for a spread of
    data facts (few/many images, grey/colour, 28-256 px), devices and given keys: a change to how the
    recipe is written changes no choice (regenerate with ``python tests/recipe_cases.py`` only when the
    recipe is meant to change)."""
    import json

    from ganforge.modules.pretrained import TRAINING_VARIANT, efficientnet_lite_files
    from recipe_cases import SNAPSHOT, resolved
    try:  # the recipe leaves feature matching out without these weights; the snapshot was made with them
        efficientnet_lite_files(TRAINING_VARIANT)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"the snapshot assumes the 'projected' extra's weights: {e}")
    assert resolved(facts, device, given) == json.loads(SNAPSHOT.read_text())[case_id]


def _recipe_block(out: str) -> list[str]:
    """The lines ganforge train printed for the recipe: from its first line to the line before the next
    ``ganforge:`` line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ganforge: auto recipe"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("ganforge:")), len(lines))
    return lines[start:end]


@pytest.mark.slow
def test_train_on_emoji_prints_the_recipe_on_one_screen_and_explain_gives_every_reason(tmp_path, emoji_128_dir, capsys):
    # 128 images: enough for the latent groups, and so for feature matching.
    quick = ["--runs-dir", str(tmp_path / "runs"), "train.max_steps=1", "data.num_workers=0", "train.report=false",
             "train.tensorboard=false"]
    assert main(["train", "--data", str(emoji_128_dir), *quick]) == 0
    block = _recipe_block(capsys.readouterr().out)
    assert len(block) <= 12, "\n".join(block)
    assert block[0].startswith("ganforge: auto recipe (auto-v7) for 128 images")
    groups = [line.split(":", 1)[0].strip() for line in block[1:-1]]
    assert groups[:3] == ["data", "architecture", "loss"] and {"augmentation", "feature matching", "length"} <= set(groups)
    assert "name=fastgan" in block[2] and "feature_match=1.0" in "\n".join(block)
    assert "docs/recipe.md" in block[-1] and "--explain" in block[-1]
    assert all(len(line) <= 120 for line in block) and not any("FID" in line for line in block)
    # --explain prints every choice with its reason, as the run's config.yaml records them.
    assert main(["train", "--data", str(emoji_128_dir), "--explain", *quick, "loss.feature_match=0"]) == 0
    explained = _recipe_block(capsys.readouterr().out)
    assert len(explained) > 20
    assert any(line.strip().startswith("model.name=fastgan: ") for line in explained)
    assert any(line.strip() == "loss.feature_match=0 (given)" for line in explained)
