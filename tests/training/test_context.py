"""The callback contract (training/context.py): hooks found once, a narrow context, plain objects work."""
from __future__ import annotations

import json

from ganforge.training.context import HOOKS, Hooks, RunContext
from ganforge.training.trainer import Trainer


class Recorder:
    """A plain object with some of the hooks, as a user's callback (benchmarks/quality.py's) is."""

    def __init__(self):
        self.calls = []

    def on_start(self, run):
        self.calls.append(("start", run.progress.step, run.num_images))

    def on_step(self, run, step):
        if step == 2:
            run.add_to_log(probe=1.5)
            run.add_summary(probe_step=step)

    def on_epoch_end(self, run, epoch):
        self.calls.append(("epoch", epoch, run.files.metrics.is_file(), run.sampling_generator() is not None))

    def on_end(self, run):
        self.calls.append(("end", run.summary("finished")["status"]))


def test_a_plain_object_gets_the_hooks_it_has_and_only_the_context(tmp_path, image_folder, tiny):
    trainer = Trainer(tiny(image_folder, "train.epochs=1", "train.log_every=100"), tmp_path, log_format="quiet")
    recorder = Recorder()
    trainer.callbacks = [recorder]
    trainer.fit()
    assert recorder.calls == [("start", 0, 64), ("epoch", 1, True, True), ("end", "finished")]
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if "probe" in l] == [2]  # add_to_log made step 2 a log line
    assert json.loads((tmp_path / "summary.json").read_text())["probe_step"] == 2


def test_hooks_call_each_callback_in_order_with_the_context():
    seen = []

    class A:
        def on_log(self, run, record):
            seen.append(("A", run, record["step"]))

    class B:
        def on_log(self, run, record):
            seen.append(("B", run, record["step"]))

    context = object.__new__(RunContext)
    hooks = Hooks([A(), object(), B()], context)
    hooks("on_log", {"step": 7})
    hooks("on_end")  # nobody has it: nothing happens
    assert seen == [("A", context, 7), ("B", context, 7)]
    assert HOOKS == ("on_start", "on_step", "on_log", "on_samples", "on_epoch_end", "on_end")
