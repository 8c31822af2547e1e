"""Inception-v3 features for FID, KID, IS and precision/recall comparable with published numbers.

The network, its TensorFlow-compatible resizing to 299 x 299 and its layers come from torch-fidelity
(extra ``fid``).  The weights are the 2015-12-05 TensorFlow graph converted to PyTorch, one 91 MB file
that torch-fidelity and pytorch-fid both use (same bytes, two names).  Where they are looked for, in
order:

1. ``--inception-weights PATH`` / ``eval.inception_weights``: that file, and nothing else;
2. ``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch/hub/checkpoints/``), under either name,
   where torch-fidelity and pytorch-fid leave it after their first download;
3. a download into that folder, unless ``GANFORGE_OFFLINE=1``.

Offline, the error names the file and the folder.  Loading never unpickles code: torch-fidelity's own
``torch.load`` is made to run with ``weights_only=True``.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import torch
import torch.nn as nn

from ganforge.config import ConfigError

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's name
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's name for the same file
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
DOWNLOAD_TIMEOUT_S = 30


def weights_dir() -> Path:
    """Where the weights are looked for and downloaded to: torch hub's checkpoint folder."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _missing_message(reason: str) -> str:
    folder = weights_dir()
    return (f"the Inception-v3 FID weights are needed for --features inception and {reason}.\n"
            f"  Put {WEIGHTS_FILE} (91 MB; pytorch-fid's {PYTORCH_FID_FILE} is the same file) in\n"
            f"    {folder}/\n"
            f"  or pass --inception-weights PATH (config eval.inception_weights=PATH).\n"
            f"  It is at {WEIGHTS_URL}\n"
            "  Or use --features effnet-lite0, which works offline (its numbers are not comparable with "
            "published Inception FIDs).")


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def download_weights(url: str, target: Path, missing_message) -> Path:
    """Download ``url`` to ``target`` (a time-out, not a hang, when offline); any failure is a ConfigError
    with ``missing_message(reason)``, which says which file to put where."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(url, str(target), progress=True)
    except Exception as e:  # noqa: BLE001 - offline shows up as many kinds of errors
        raise ConfigError(missing_message(f"could not be downloaded ({type(e).__name__}: {e})")) from None
    return target


def find_weights(explicit: str | os.PathLike = "") -> Path:
    """The weights file to load, downloading it if allowed and needed; ConfigError saying what to do if not."""
    if explicit:
        path = Path(os.path.expanduser(str(explicit)))
        if not path.is_file():
            raise ConfigError(f"--inception-weights {path}: no such file. Give the path of {WEIGHTS_FILE} "
                              f"(or pytorch-fid's {PYTORCH_FID_FILE}).")
        return path
    folder = weights_dir()
    for name in (WEIGHTS_FILE, PYTORCH_FID_FILE):
        if (folder / name).is_file():
            return folder / name
    if os.environ.get("GANFORGE_OFFLINE", "") not in ("", "0"):
        raise ConfigError(_missing_message(f"are not in {folder}/ (GANFORGE_OFFLINE is set, so no download)"))
    return download_weights(WEIGHTS_URL, folder / WEIGHTS_FILE, _missing_message)


@contextlib.contextmanager
def _weights_only_loads():
    """Every torch.load inside runs with weights_only=True, even one that asks for False.

    torch-fidelity loads a local weights file with ``weights_only=False``; torch's documented switch
    TORCH_FORCE_WEIGHTS_ONLY_LOAD overrides that, so a file that tries to run code is refused.
    """
    saved = {k: os.environ.pop(k, None) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def _extractor_class():
    """torch-fidelity's Inception-v3, or a ConfigError naming the extra to install."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise ConfigError("--features inception needs the optional extra 'metrics': pip install 'ganforge[metrics]' "
                          "(torch-fidelity), or use --features effnet-lite0") from None
    return FeatureExtractorInceptionV3


def check_available(weights: str | os.PathLike = "") -> Path:
    """That :class:`InceptionFeatures` can be built here (the extra installed, the weights found or
    downloaded), without building it; the weights file."""
    _extractor_class()
    return find_weights(weights)


class InceptionFeatures(nn.Module):
    name = "inception"
    dims = 2048

    def __init__(self, weights: str | os.PathLike = ""):
        super().__init__()
        FeatureExtractorInceptionV3 = _extractor_class()
        path = find_weights(weights)
        try:
            with _weights_only_loads():
                self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                       feature_extractor_weights_path=str(path))
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0][:300]
            if "state_dict" in str(e) or "size mismatch" in str(e):
                raise ConfigError(f"{path} does not hold Inception-v3 FID weights of the expected architecture "
                                  f"({first}); it should be {WEIGHTS_FILE} or {PYTORCH_FID_FILE}") from None
            raise ConfigError(f"{path} could not be loaded as plain weights ({first}); ganforge loads only "
                              "tensors (weights_only=True), never pickled code") from None
        except Exception as e:  # noqa: BLE001 - unpickling errors of a broken or hostile file
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{path} could not be loaded as plain weights ({first}); ganforge loads only "
                              "tensors (weights_only=True), never pickled code") from None
        size = path.stat().st_size
        self.weights_id = f"{path.name}-{size}"

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(self.net.parameters()).device
        features, logits = self.net(images.to(device))
        return features.float(), logits.float()
