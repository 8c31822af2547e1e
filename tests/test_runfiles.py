"""The run-directory layer (ganforge/runfiles.py): names, creation, and the one resolver every command uses."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ganforge.cli import main
from ganforge.config import ConfigError
from ganforge.runfiles import (RunDir, RunFacts, RunNotFoundError, check_name, new_run_dir, read_facts, resolve_run,
                               resolve_source, split_saved_config)


def make_run(runs, name, checkpoint=False, age=0.0):
    """A run directory as training leaves it on disk: config.yaml, and a checkpoint file when asked."""
    path = new_run_dir(runs, name)
    (path / RunDir.CONFIG).write_text("preset: quickstart\n")
    if checkpoint:
        (path / RunDir.CHECKPOINTS).mkdir()
        (path / RunDir.CHECKPOINTS / "step_00000002.pt").write_bytes(b"x")
    stamp = time.time() - 1000 + age
    os.utime(path, (stamp, stamp))
    return path


def test_new_run_dirs_are_named_timestamp_underscore_name_and_never_reused(tmp_path):
    a = new_run_dir(tmp_path / "runs", "exp1")
    b = new_run_dir(tmp_path / "runs", "exp1")
    assert a != b and a.parent == b.parent == tmp_path / "runs"
    assert a.name.endswith("_exp1") and b.name.endswith("_exp1-1") and len(a.name) == len("2026-01-01_00-00-00_exp1")
    # A preset name from someone's YAML cannot lead outside the runs folder.
    odd = new_run_dir(tmp_path / "runs", "../../escape/me")
    assert odd.parent == tmp_path / "runs" and "/" not in odd.name[20:] and not (tmp_path / "escape").exists()


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "-dash", "", "x" * 81, "sp ace"])
def test_run_names_that_cannot_be_folders_are_refused(bad):
    with pytest.raises(ConfigError, match="cannot be used"):
        check_name(bad)
    assert check_name("celeba-64_v2.1") == "celeba-64_v2.1"


def test_resolver_accepts_a_path_a_folder_name_a_run_name_and_latest(tmp_path):
    runs = tmp_path / "runs"
    old = make_run(runs, "exp1", checkpoint=True, age=1)
    new = make_run(runs, "exp2", age=2)
    assert resolve_run(old, runs) == old  # a path
    assert resolve_run(old.name, runs) == old  # its folder name under the runs folder
    assert resolve_run("exp1", runs) == old  # its --name
    assert resolve_run("latest", runs) == new
    assert resolve_run("latest", runs, need_checkpoint=True) == old  # passes over a run that never saved
    again = make_run(runs, "exp1", age=3)
    assert resolve_run("exp1", runs) == again  # a name used twice: the newest run of that name
    assert resolve_run("exp1", runs, need_checkpoint=True) == old
    with pytest.raises(RunNotFoundError, match="has no checkpoint yet"):
        resolve_run(new, runs, need_checkpoint=True)
    # Something that exists but is no run (a checkpoint file, an export folder) is for the loader to judge.
    (tmp_path / "g.pt").write_bytes(b"x")
    assert resolve_source(tmp_path / "g.pt", runs) == tmp_path / "g.pt"
    assert resolve_source("exp2", runs) == new and resolve_source("latest", runs) == again
    assert RunDir.containing(old / RunDir.CHECKPOINTS / "step_00000002.pt").path == old
    assert RunDir.containing(tmp_path) is None


def test_latest_with_no_runs_says_so(tmp_path):
    with pytest.raises(RunNotFoundError, match=r"latest: no run directories under .*; train one"):
        resolve_run("latest", tmp_path / "nothing-here")
    make_run(tmp_path / "runs", "exp1")
    with pytest.raises(RunNotFoundError, match="no run directories with a checkpoint"):
        resolve_run("latest", tmp_path / "runs", need_checkpoint=True)


COMMANDS = {  # every command that takes a run, as a user types it with a run that does not exist
    "sample": ["sample", "nope"],
    "interpolate": ["interpolate", "nope"],
    "eval": ["eval", "nope", "--device", "cpu"],
    "export": ["export", "nope", "OUT"],
    "report": ["report", "nope"],
    "runs --compare": ["runs", "RUNS", "--compare", "nope", "latest"],
    "train --resume": ["train", "--resume", "nope", "--quiet"],
}


def test_every_command_gives_the_same_error_for_a_run_that_is_not_there(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "exp1")
    messages = {}
    for what, argv in COMMANDS.items():
        argv = [str(runs) if a == "RUNS" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
        if what != "runs --compare":
            argv += ["--runs-dir", str(runs)]
        assert main(argv) == 2, what
        err = capsys.readouterr().err
        assert "Traceback" not in err
        messages[what] = err.split(": error: ", 1)[1]
    first = messages["report"]
    assert f"nope is not a ganforge run directory (no config.yaml there) nor the name of a run under {runs}/" in first
    assert "'latest'" in first and "ganforge runs" in first
    for what, message in messages.items():
        assert message.split(": give")[0] == first.split(": give")[0], what  # one resolver, one sentence
    assert not (tmp_path / "out").exists()


def test_the_ganforge_entry_point_finds_runs_by_name(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "exp1")
    out = subprocess.run([sys.executable, "-m", "ganforge", "runs", str(runs), "--compare", "exp1", "latest"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(none: the configs are the same)" in out.stdout


def test_a_config_saved_with_the_facts_in_it_gives_them_up_to_the_facts(tmp_path):
    # config.yaml of a run saved before run.json: the keys ganforge wrote sit among the user's.
    old = {"model": {"num_classes": 2}, "data": {"source": "clothes", "class_names": ["bag", "shoe"]},
           "train": {"epochs": 3, "world_size": 2, "effective_batch_size": 32, "init_from_step": 6}}
    config, facts = split_saved_config(old)
    assert config == {"model": {"num_classes": 2}, "data": {"source": "clothes"}, "train": {"epochs": 3}}
    assert facts == RunFacts(class_names=["bag", "shoe"], world_size=2, effective_batch_size=32, init_from_step=6)
    assert old["data"]["class_names"] == ["bag", "shoe"]  # the caller's mapping is left alone
    # Facts recorded on their own (run.json, a checkpoint's "facts") win over anything in the config.
    assert split_saved_config(old, {"world_size": 4})[1] == RunFacts(world_size=4)
    run = RunDir(new_run_dir(tmp_path, "old"))
    import yaml
    run.config.write_text(yaml.safe_dump(old))
    assert read_facts(run.path).class_names == ["bag", "shoe"]
    run.facts.write_text(RunFacts(class_names=["a", "b"]).to_json())
    assert read_facts(run.path) == RunFacts(class_names=["a", "b"])
    run.facts.write_text("{not json")
    with pytest.raises(ConfigError, match="run.json is not valid JSON"):
        read_facts(run.path)
