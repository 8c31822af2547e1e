"""Starting a run: one preflight checks the config and the environment before the run directory exists,
so a run that cannot work leaves nothing on disk (training/session.py, training/preflight.py)."""
from __future__ import annotations

import pytest

import ganforge
from ganforge.config import ConfigError
from ganforge.training.preflight import preflight


@pytest.mark.parametrize("overrides, said", [
    # the builders' checks (losses.py, build.py, nets): they used to run after config.yaml was written
    (["loss.name=hinge", "loss.real_label=0.9"], "loss.name=hinge has no real/fake targets"),
    (["augment.name=diffaugment", "augment.policy="], "augment.name=diffaugment with an empty augment.policy"),
    (["model.name=resnet", "model.hierarchical_z=true", "model.nz=2"], "model.hierarchical_z splits z"),
    # the eval config and what eval.every will need at its first evaluation
    (["eval.every=2", "eval.metrics=fid", "eval.best=is"], "eval.best=is picks the best checkpoint"),
    (["eval.every=2", "eval.features=inception", "eval.inception_weights=/no/such/weights.pth"],
     "--inception-weights /no/such/weights.pth: no such file"),
])
def test_a_run_that_cannot_work_leaves_nothing_on_disk(tmp_path, image_folder, tiny, overrides, said):
    runs = tmp_path / "runs"
    cfg = tiny(image_folder, *overrides)
    with pytest.raises(ConfigError) as e:
        ganforge.train(cfg, runs_dir=runs, log_format="quiet")
    assert said in str(e.value)
    assert not runs.exists()


def test_the_preflight_passes_a_good_config_and_reads_no_data(tmp_path, tiny):
    preflight(tiny(tmp_path / "no-such-images", "eval.every=2", "eval.features=effnet-lite0"))
