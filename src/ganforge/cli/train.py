"""ganforge train: train from a preset, a YAML file and dotted overrides, or resume a run."""
from __future__ import annotations

import argparse


#: How long ``ganforge train`` with no arguments trains (the recipe on Fashion-MNIST; docs/quality.md).
MAIN_JOB_MINUTES = 3


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a GAN (with no arguments: the default recipe on Fashion-MNIST for 3 minutes)",
                       description="Train a GAN. Settings come from --preset, then --config, then KEY=VALUE overrides "
                                   "(for example train.epochs=10 model.nz=128).")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--preset", help="a preset shipped with ganforge (ganforge describe --list shows them); "
                                    "'auto' (the default with --data) chooses from the data with the recipe "
                                    "(docs/recipe.md)")
    p.add_argument("--config", help="a YAML config file")
    p.add_argument("--data", help="images to train on: a folder, a zip (zip:inner/dir), a prepared dataset, "
                                  "or a named dataset (same as data.source=...)")
    p.add_argument("--runs-dir", default="runs", help="where run directories go (default: ./runs)")
    p.add_argument("--resume", metavar="RUN", help="continue a run directory exactly where it stopped ('latest' works)")
    p.add_argument("--force", action="store_true", help="with --resume: allow config changes beyond how long to train")
    p.add_argument("--midsave", metavar="N[m]", help="also checkpoint every N steps, or every N minutes with 'm' (30m)")
    p.add_argument("--epochs", type=int, help="same as train.epochs=N")
    p.add_argument("--init-from", metavar="SOURCE",
                   help="fine-tune: a NEW run whose G, D and EMA start from a run ('latest', a name or a path), a "
                        "checkpoint or an export (G only: D starts fresh); optimisers, steps and schedules start "
                        "fresh. Without --preset/--config it takes the source's settings (--data NEW to change "
                        "the images)")
    p.add_argument("--name", help="the run's name: its folder becomes RUNS_DIR/<timestamp>_NAME (default: the "
                                  "preset's name); `ganforge sample NAME` and the other commands find it by it")
    p.add_argument("--seed", type=int, help="same as train.seed=N (data order, initial weights, fixed noise)")
    p.add_argument("--device", help="auto (the default: a GPU when there is one), cpu, cuda, cuda:N or mps; "
                                    "same as train.device=D")
    p.add_argument("--explain", action="store_true",
                   help="with the recipe: print every choice with its reason, not the one-screen summary")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and print the resolved config, the models' parameters and FLOPs, the "
                        "images found and what the run would write; train nothing, write nothing")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quiet", action="store_true", help="no progress bar")
    mode.add_argument("--json-log", action="store_true", help="print each metrics line as JSON on stdout")
    return p


def _midsave_overrides(text: str | None) -> list[str]:
    from ganforge.config import ConfigError
    if not text:
        return []
    try:
        if text.endswith("m"):
            return [f"train.midsave_minutes={float(text[:-1])}"]
        return [f"train.midsave_steps={int(text)}"]
    except ValueError:
        raise ConfigError(f"--midsave {text!r}: give a number of steps (500) or of minutes (30m)") from None


def run(args) -> int:
    from ganforge import config as C
    from ganforge.api import resume, train
    from ganforge.cli.dry_run import dry_run
    from ganforge.training import distributed

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.source={args.data}")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    if args.name is not None:
        from ganforge.runfiles import check_name
        if args.resume:
            raise C.ConfigError(f"--name {args.name} names a new run; --resume continues {args.resume} under its "
                                "own name: leave one of them out")
        check_name(args.name)
    overrides += _midsave_overrides(args.midsave)
    log_format = "quiet" if args.quiet else "json" if args.json_log else "bar"
    launch = distributed.launch_environment()  # rank and world size under torchrun; 0 and 1 otherwise
    if launch.rank != 0:
        log_format = "quiet"
    try:
        if args.resume and args.init_from:
            raise C.ConfigError(f"--resume continues {args.resume} exactly; --init-from starts a new run from "
                                "earlier weights: give one of them")
        if args.resume and args.dry_run:
            raise C.ConfigError("--dry-run describes a new run; --resume continues one: give one of them")
        start = dry_run if args.dry_run else train  # a new run, or what it would be
        if args.resume:
            run_dir = resume(args.resume, runs_dir=args.runs_dir, log_format=log_format, overrides=overrides,
                             force=args.force, rank=launch.rank, world_size=launch.world_size)
        elif args.init_from:
            # Fine-tuning: the source's own config (or --preset/--config) with the overrides on top; the
            # session checks that the weights fit before the new run's folder is made.
            from ganforge.training import init_from
            source = init_from.load_source(init_from.locate(args.init_from, args.runs_dir))
            extra = [f"train.init_from={source.path}"]
            cfg = (C.load(preset=args.preset, file=args.config, overrides=overrides + extra)
                   if args.preset or args.config else init_from.fine_tune_config(source, overrides + extra))
            run_dir = start(cfg, runs_dir=args.runs_dir, log_format=log_format, rank=launch.rank,
                            world_size=launch.world_size, name=args.name)
        else:
            from ganforge.recipe import RECIPES, auto_config, summary
            # The main job: nothing says what to train on (no preset, config, --data or data.source=).
            main_job = not (args.preset or args.config or args.data
                            or any(o.startswith("data.source=") for o in overrides))
            recipe = args.preset in RECIPES or (args.preset or "").startswith("auto-v")  # auto-v1: says where it went
            if recipe or (args.data and not args.preset and not args.config) or main_job:
                # Your own images and no preset: the recipe looks at the data and chooses.  With nothing
                # at all: the recipe on the bundled Fashion-MNIST for MAIN_JOB_MINUTES, the first thing a
                # new user sees.
                recipe_overrides = [o for o in overrides if not o.startswith("data.source=")]
                if main_job and not any(o.startswith("train.max_minutes=") for o in overrides):
                    recipe_overrides.append(f"train.max_minutes={MAIN_JOB_MINUTES}")
                cfg = auto_config(args.data or C.load(overrides=overrides).data.source, recipe_overrides,
                                  recipe=args.preset or "auto")
                if log_format != "quiet" and launch.rank == 0 and not args.dry_run:  # --dry-run prints every reason
                    lines = cfg.notes if args.explain else summary(cfg.notes)
                    print("ganforge: " + "\n  ".join(line.removeprefix("  ") for line in lines), flush=True)
            else:
                preset = args.preset or (None if args.config else "quickstart")
                cfg = C.load(preset=preset, file=args.config, overrides=overrides)
            run_dir = start(cfg, runs_dir=args.runs_dir, log_format=log_format, rank=launch.rank,
                            world_size=launch.world_size, name=args.name)
    finally:
        distributed.shutdown()
    if run_dir is None:  # --dry-run: it has said what the run would be
        return 0
    from ganforge.runfiles import RunDir
    if log_format != "quiet" and not _interrupted(run_dir):  # a stopped run has printed how to resume
        run = RunDir(run_dir)
        print(f"ganforge: done. Samples in {run.samples}, generator in {run.generator}")
    return 0


def _interrupted(run_dir) -> bool:
    import json

    from ganforge.runfiles import RunDir
    try:
        return json.loads(RunDir(run_dir).summary.read_text()).get("status") == "interrupted"
    except (OSError, ValueError):
        return False
