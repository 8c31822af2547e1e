"""Images per second to a 64x64 training batch: torchvision's ImageFolder (the DCGAN tutorial's loader)
against ganforge reading a folder, a zip in place, and a prepared dataset; plus peak memory, the time to
scan 200,000 names, and the DCGAN-64 training rate of the same machine (which loading must outpace).

The data is CelebA-like: ``--count`` JPEGs of 178x218 (CelebA's aligned size), made from real images
(Fashion-MNIST, upscaled and tinted per image), in a folder and in a deflated zip.  Each loader runs in
its own process so that its peak memory is its own.

    python benchmarks/data_loading.py                 # 20,000 images, writes benchmarks/results/data_loading.json
    python benchmarks/data_loading.py --count 5000    # quicker, on a busy machine
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
PATHS = ["baseline", "folder", "zip", "prepared"]
LABELS = {"baseline": "torchvision ImageFolder + tutorial transforms", "folder": "ganforge folder",
          "zip": "ganforge zip (in place)", "prepared": "ganforge prepared (positioned reads)"}


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def build_celeba_like(work: Path, count: int) -> tuple[Path, Path]:
    """``work/celeba_like/img_align_celeba/NNNNNN.jpg`` (178x218 RGB) and the same files in a zip."""
    from PIL import Image

    folder = work / "celeba_like" / "img_align_celeba"
    archive = work / "img_align_celeba.zip"
    done = work / f"built-{count}"
    if done.is_file() and archive.is_file():
        return folder.parent, archive
    if not FASHION.is_file():
        sys.exit(f"{FASHION} is missing: apt-get install dataset-fashion-mnist")
    with gzip.open(FASHION) as f:
        raw = f.read()
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jpg"):
        old.unlink()
    t0 = time.perf_counter()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(count):
            a = np.asarray(Image.fromarray(images[i % len(images)], "L").resize((178, 218), Image.BICUBIC),
                           dtype=np.float32)
            tint = np.array([(i * 37) % 256, (i * 91) % 256, (i * 53) % 256], dtype=np.float32) / 255.0
            rgb = (a[..., None] * (0.4 + 0.6 * tint) + 30 * tint).clip(0, 255).astype(np.uint8)
            name = f"{i + 1:06d}.jpg"
            Image.fromarray(rgb, "RGB").save(folder / name, quality=90)
            zf.write(folder / name, f"img_align_celeba/{name}")
    done.write_text(f"{count} images in {time.perf_counter() - t0:.1f} s\n")
    return folder.parent, archive


def build_names(work: Path, n: int) -> tuple[Path, Path]:
    """A folder of ``n`` empty .jpg files and a zip with ``n`` members: for timing the name scan."""
    folder, archive = work / f"names_{n}", work / f"names_{n}.zip"
    if not archive.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for i in range(n):
                name = f"{i // 1000:03d}/{i:06d}.jpg" if i % 2 else f"{i:06d}.jpg"
                (folder / name).parent.mkdir(exist_ok=True)
                (folder / name).touch()
                zf.writestr(name, b"")
    return folder, archive


# --------------------------------------------------------------------------------------------------
# One measurement, in its own process
# --------------------------------------------------------------------------------------------------
def _memory_mib(pid: int | str) -> tuple[float, float]:
    """(PSS, anonymous PSS) of a process in MiB.  PSS is resident memory with shared pages split among
    the processes sharing them (a memory-mapped file's cached pages count too, though the kernel can drop
    them at will); anonymous PSS is the part the processes allocated themselves."""
    pss = anon = 0.0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
            elif line.startswith("Pss_Anon:"):
                anon = int(line.split()[1]) / 1024
    except OSError:
        pass
    return pss, anon


class MemorySampler:
    """Peak memory of this process and its workers together (summed PSS), sampled every 50 ms."""

    def __init__(self):
        import threading
        self.peak_total = self.peak_main = self.peak_anon = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _children(self) -> list[str]:
        kids = []
        for task in Path("/proc/self/task").iterdir():
            try:
                kids += (task / "children").read_text().split()
            except OSError:
                pass
        return kids

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            main, main_anon = _memory_mib("self")
            kids = [_memory_mib(k) for k in self._children()]
            self.peak_main = max(self.peak_main, main)
            self.peak_total = max(self.peak_total, main + sum(k[0] for k in kids))
            self.peak_anon = max(self.peak_anon, main_anon + sum(k[1] for k in kids))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measure(path: str, source: str, batch: int, workers: int, min_seconds: float, max_batches: int) -> dict:
    import torch
    memory = MemorySampler()

    torch.set_num_threads(1)  # what decodes is the workers; the main process only hands batches on
    if path == "baseline":
        import torchvision.datasets as dset
        import torchvision.transforms as T
        # The PyTorch DCGAN tutorial's loader, line for line (image_size=64).
        dataset = dset.ImageFolder(root=source, transform=T.Compose([
            T.Resize(64), T.CenterCrop(64), T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers)

        def batches(epoch):
            for x, _ in loader:
                yield x
    else:
        from ganforge import config as C
        from ganforge.data import build_loader
        cfg = C.load(preset="dcgan-celeba64", overrides=[
            f"data.source={source}", f"data.batch_size={batch}", f"data.num_workers={workers}",
            "train.device=cpu", "data.index_cache="])
        loader = build_loader(cfg, torch.device("cpu"))

        def batches(epoch):
            for x, _ in loader.epoch(epoch):
                yield x

    t_start = time.perf_counter()
    first_batch_s = None
    n_images, n_batches, epoch = 0, 0, 0
    t0 = None
    while True:
        for x in batches(epoch):
            assert x.shape[1:] == (3, 64, 64) and x.dtype == torch.float32
            if first_batch_s is None:
                first_batch_s = time.perf_counter() - t_start
            if n_batches == 2:  # workers started and warm: the clock starts
                t0, n_images = time.perf_counter(), 0
            n_images += x.shape[0]
            n_batches += 1
            if t0 is not None and (time.perf_counter() - t0 >= min_seconds or n_batches >= max_batches):
                break
        else:
            epoch += 1
            continue
        break
    seconds = time.perf_counter() - t0
    memory.stop()
    return {"path": path, "images_per_s": n_images / seconds, "images": n_images, "seconds": seconds,
            "first_batch_s": first_batch_s, "peak_pss_main_mib": memory.peak_main,
            "peak_pss_total_mib": memory.peak_total, "peak_anon_total_mib": memory.peak_anon}


def run_measure(args, path: str, source: str) -> dict:
    cmd = [sys.executable, __file__, "--measure", path, "--source", source, "--batch", str(args.batch),
           "--workers", str(args.workers), "--min-seconds", str(args.min_seconds),
           "--max-batches", str(args.max_batches)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if out.returncode != 0:
        sys.exit(f"measuring {path} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# The DCGAN-64 training rate and the name scan
# --------------------------------------------------------------------------------------------------
def training_rate(prepared: Path, batch: int, steps: int) -> dict:
    """Images/s of the tutorial's DCGAN at 64x64 training on this machine (from the trainer's own log)."""
    import ganforge
    from ganforge import config as C
    cfg = C.load(preset="dcgan-celeba64", overrides=[
        f"data.source={prepared}", f"data.batch_size={batch}", f"train.max_steps={steps}", "train.log_every=1",
        "train.tensorboard=false", "train.report=false", "train.device=cpu", "train.compile=off"])
    with tempfile.TemporaryDirectory() as tmp:
        run = ganforge.train(cfg, runs_dir=tmp, log_format="quiet")
        rates = [json.loads(l)["images_per_s"] for l in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    steady = rates[1:] or rates  # the first step pays for allocations and thread start-up
    return {"images_per_s": statistics.median(steady), "steps": steps, "batch": batch,
            "per_step": [round(r, 1) for r in rates]}


def scan_times(work: Path, n: int) -> dict:
    from ganforge.data.index import load_index
    folder, archive = build_names(work, n)
    out = {"names": n}
    with tempfile.TemporaryDirectory() as cache:
        for kind, path in (("folder", folder), ("zip", archive)):
            t0 = time.perf_counter()
            idx = load_index(kind, path, cache_dir=cache)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = load_index(kind, path, cache_dir=cache)
            warm = time.perf_counter() - t0
            assert len(idx.names) == n
            out[kind] = {"scan_s": round(cold, 3), "cached_s": round(warm, 3) if again.from_cache else None}
    return out


# --------------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=20_000, help="CelebA-like JPEGs to build (default 20,000)")
    p.add_argument("--work", type=Path, default=Path.home() / ".cache" / "ganforge" / "bench-data-loading",
                   help="where the generated data goes (kept between runs)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count())
    p.add_argument("--min-seconds", type=float, default=8.0, help="time each loader for at least this long")
    p.add_argument("--max-batches", type=int, default=400)
    p.add_argument("--rounds", type=int, default=2, help="measure every path this many times, keep the best")
    p.add_argument("--train-steps", type=int, default=5, help="DCGAN-64 steps timed (0: skip)")
    p.add_argument("--scan-names", type=int, default=200_000, help="names for the scan timing (0: skip)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "data_loading.json")
    # internal: one measurement in a child process
    p.add_argument("--measure", choices=PATHS, help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.measure:
        print(json.dumps(measure(args.measure, args.source, args.batch, args.workers, args.min_seconds,
                                 args.max_batches)))
        return

    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    root, archive = build_celeba_like(args.work, args.count)
    print(f"data: {args.count} JPEGs 178x218 in {root} and {archive} ({time.perf_counter() - t0:.0f} s)", flush=True)

    from ganforge.config import Config, DataConfig
    from ganforge.data.prepared import prepare
    prepared = args.work / f"prepared64-{args.count}"
    prepare_s = None
    if not (prepared / "manifest.json").is_file():
        import shutil
        shutil.rmtree(prepared, ignore_errors=True)
        t0 = time.perf_counter()
        prepare(Config(data=DataConfig(source=str(archive) + ":img_align_celeba", image_size=64, channels=3,
                                       index_cache="")), prepared, workers=args.workers, progress=False)
        prepare_s = time.perf_counter() - t0
        print(f"prepared in {prepare_s:.1f} s ({args.count / prepare_s:.0f} images/s)", flush=True)

    # The training rate first: it is the yardstick, and the longest single measurement.
    train = training_rate(prepared, args.batch, args.train_steps) if args.train_steps else None
    if train:
        print(f"DCGAN-64 training, batch {args.batch}: {train['images_per_s']:.1f} img/s", flush=True)

    sources = {"baseline": str(root), "folder": str(root / "img_align_celeba"),
               "zip": f"{archive}:img_align_celeba", "prepared": str(prepared)}
    results: dict[str, dict] = {}
    # Alternate the order between rounds and keep each path's best: a busy neighbour hurts every path alike.
    order = [path for k in range(args.rounds) for path in (PATHS if k % 2 == 0 else PATHS[::-1])]
    for path in order:
        r = run_measure(args, path, sources[path])
        r["rounds"] = results.get(path, {}).get("rounds", []) + [round(r["images_per_s"], 1)]
        if path in results and results[path]["images_per_s"] >= r["images_per_s"]:
            results[path]["rounds"] = r["rounds"]
        else:
            results[path] = r
        print(f"  {LABELS[path]:<48} {r['rounds'][-1]:>9.0f} img/s   peak memory {r['peak_pss_total_mib']:.0f} MiB "
              f"(main process {r['peak_pss_main_mib']:.0f} MiB, allocated {r['peak_anon_total_mib']:.0f} MiB)",
              flush=True)

    scans = scan_times(args.work, args.scan_names) if args.scan_names else None

    base = results["baseline"]["images_per_s"]
    print(f"\n{'path':<48} {'img/s':>9} {'x baseline':>10} {'x training':>10} {'peak MiB':>9} {'alloc MiB':>9}")
    for path in PATHS:
        r = results[path]
        r["ratio_to_baseline"] = r["images_per_s"] / base
        r["ratio_to_training"] = r["images_per_s"] / train["images_per_s"] if train else None
        peak = r["peak_pss_total_mib"]
        print(f"{LABELS[path]:<48} {r['images_per_s']:>9.0f} {r['ratio_to_baseline']:>10.2f} "
              f"{(r['ratio_to_training'] or float('nan')):>10.1f} {peak:>9.0f} {r['peak_anon_total_mib']:>9.0f}")
    zip_vs_folder = results["zip"]["images_per_s"] / results["folder"]["images_per_s"]
    if train:
        print(f"DCGAN-64 training, batch {args.batch}: {train['images_per_s']:.1f} img/s")
    print(f"zip / folder: {zip_vs_folder:.2f}")
    if scans:
        print(f"scan {scans['names']:,} names: folder {scans['folder']['scan_s']} s (cached "
              f"{scans['folder']['cached_s']} s), zip {scans['zip']['scan_s']} s (cached {scans['zip']['cached_s']} s)")
    targets = {
        "zip_within_15pct_of_folder": zip_vs_folder >= 0.85,
        "prepared_at_least_20x_baseline": results["prepared"]["ratio_to_baseline"] >= 20,
        "every_path_at_least_3x_training": (all(results[p]["ratio_to_training"] >= 3 for p in PATHS[1:])
                                            if train else None),
    }
    print("targets:", ", ".join(f"{k}={v}" for k, v in targets.items()))

    import torch
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "data_loading", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
                    "load_average_1m": os.getloadavg()[0], "python": platform.python_version(),
                    "torch": torch.__version__},
        "count": args.count, "image": "178x218 JPEG, quality 90", "batch": args.batch, "workers": args.workers,
        "prepare_seconds": prepare_s, "results": results, "training": train, "zip_vs_folder": zip_vs_folder,
        "scan": scans, "targets": targets}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
