"""``ganforge train --dry-run``: what a run would be, checked, without training or writing anything.

It prints the resolved config (and the recipe's reasons, when the recipe chose), runs the run's preflight
(every config and environment check), measures the models (parameters and FLOPs, as ``ganforge
describe``, and the memory a training step needs on the run's device, with a warning when it would not
fit), opens the data as the trainer would (the images found, steps per epoch) and lists the
files the run would write.  A check that fails is the same error, with the same exit status, as the
real run would give, and nothing is written either way.
"""
from __future__ import annotations

from pathlib import Path

from ganforge.config import Config
from ganforge.runfiles import RunDir


def files_written(cfg: Config, epochs: int) -> list[str]:
    """The run directory's files this config makes (docs/design.md lists who writes and reads each)."""
    t, shown = cfg.train, min(epochs, 2)
    grids = ", ".join(f"epoch_{e:04d}.png" for e in range(1, shown + 1)) + (", ..." if epochs > shown else "")
    files = [f"{RunDir.CONFIG}  the resolved config",
             f"{RunDir.METRICS}  one line per {t.log_every} steps",
             f"{RunDir.SAMPLES}/  {grids}" + (f", a grid every {t.sample_every} steps" if t.sample_every else "")
             + f", {RunDir.GRIDS}",
             f"{RunDir.CHECKPOINTS}/  step_*.pt at "
             + (f"epoch ends at least {t.save_every_minutes:g} minutes apart and at the end" if t.save_every_minutes
                else "every epoch end")
             + f" (the last {t.keep_checkpoints} kept), "
             f"{RunDir.MANIFEST}" + (f", {RunDir.BEST} (eval.every={cfg.eval.every})" if cfg.eval.every else ""),
             f"{RunDir.GENERATOR}  the final generator" + (" (the EMA copy)" if cfg.ema.enabled else ""),
             f"{RunDir.SUMMARY}, {RunDir.DIAGNOSTICS} (when something goes wrong), {RunDir.DATA_ERRORS} (broken files)"]
    if t.report:
        files.append(f"{RunDir.REPORT}, real_samples.png, {RunDir.CURVES}, {RunDir.TIMELINE_GIF}")
    if t.tensorboard:
        files.append(f"{RunDir.TENSORBOARD}/  TensorBoard events")
    return files


def print_memory(cfg: Config, measured: dict) -> None:
    """The predicted memory of a training step on the run's device, and a warning when it would not fit
    (a GPU's memory; on a CPU or MPS, the machine's RAM)."""
    from ganforge.devices import pick_device
    from ganforge.gpu_plan import memory_warning, read_gpu, system_memory
    from ganforge.nets.measure import AMP_ACTIVATION_SHARE, format_bytes, training_memory
    from ganforge.training.speed import resolve

    device = pick_device(cfg.train.device)
    amp = resolve(cfg.train, device).amp
    memory = training_memory(cfg, measured)
    batch = cfg.data.batch_size
    predicted = memory.per_step(batch, amp)
    if device.type == "cuda":
        gpu = read_gpu(device)
        where, total = f"the GPU ({gpu.name})", gpu.total_memory
    else:
        where, total = "this machine's RAM", system_memory()
    share = AMP_ACTIVATION_SHARE if amp in ("bf16", "fp16") else 1.0
    print(f"\nmemory per step on {device}: about {format_bytes(predicted)} ({format_bytes(memory.fixed)} for the "
          f"weights, gradients and optimiser moments, {format_bytes(memory.per_image * share)} per image x {batch}; "
          f"amp {amp}; peak in {memory.parts})" + (f" of {format_bytes(total)} in {where}" if total else ""))
    warning = memory_warning(predicted, total, where) if total else None
    if warning:
        print(f"  warning: {warning}")


def dry_run(cfg: Config, runs_dir: str | Path = "runs", name: str | None = None, rank: int = 0,
            world_size: int = 1, **_ignored) -> Path | None:
    """Print what ``ganforge train`` would do with ``cfg`` (see the module's docstring); returns None."""
    from ganforge.cli.describe import format_flops, measure
    from ganforge.training.preflight import open_data, preflight

    if rank != 0:
        return None
    print("ganforge train --dry-run: nothing is trained or written\n")
    print("config (resolved):")
    print("  " + cfg.to_yaml().rstrip().replace("\n", "\n  "))
    if cfg.notes:
        print("\nrecipe:\n  " + "\n  ".join(cfg.notes))
    preflight(cfg)
    print("\nchecks: config, builders, speed switches" + (", evaluation's extras" if cfg.eval.every else "") + ": ok")
    m = measure(cfg)
    print(f"\nmodels: {cfg.model.name}, {cfg.data.image_size}x{cfg.data.image_size}, {cfg.data.channels} channel(s)")
    print(f"  generator:     {m['g_params']:,} parameters, {format_flops(m['g_flops'])} per image (forward)")
    print(f"  discriminator: {m['d_params']:,} parameters, {format_flops(m['d_flops'])} per image (forward)")
    print_memory(cfg, m)
    loader = open_data(cfg, rank, world_size)
    steps = loader.batches_per_epoch // cfg.train.d_steps
    total = cfg.train.max_steps or steps * cfg.train.epochs
    epochs = -(-total // max(steps, 1))
    classes = loader.classes
    print(f"\ndata: {loader.num_images:,} images in {cfg.data.source}"
          + (f", {len(classes)} classes ({', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''})" if classes else "")
          + f"; {steps} steps per epoch at batch {cfg.data.batch_size} x {world_size} process(es), "
          f"{total} steps in all" + (f" (or {cfg.train.max_minutes:g} minutes)" if cfg.train.max_minutes else ""))
    skipped = loader.drain_errors()
    if skipped:
        print(f"  {len(skipped)} file(s) found broken so far would be skipped (listed in {RunDir.DATA_ERRORS})")
    print(f"\nrun directory: {Path(runs_dir) / ('<timestamp>_' + (name or cfg.preset))}/ with")
    print("  " + "\n  ".join(files_written(cfg, epochs)))
    return None
