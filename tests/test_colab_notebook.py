"""examples/colab.ipynb executed on the CPU (nbclient, a real Jupyter kernel): its parameters cell set to a
zip of the project's real test images and a budget of seconds, its Colab-only cells (pip install from the
repository, drive.mount, TensorBoard) skipped because google.colab is not importable here."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install 'ganforge[test]' (nbformat, nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="pip install 'ganforge[test]' (nbformat, nbclient, ipykernel)")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "colab.ipynb"


def with_parameters(nb, **values) -> None:
    """Replace the cell tagged ``parameters`` by these values (what papermill does)."""
    (cell,) = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    for name in values:
        assert f"\n{name} = " in "\n" + cell.source, f"the parameters cell has no {name}"
    cell.source = "\n".join(f"{k} = {v!r}" for k, v in values.items())


@pytest.mark.slow  # a kernel, the recipe, and a training process of a few seconds: ~30-60 s on 2 cores
def test_the_colab_notebook_trains_on_a_zip_and_shows_samples_and_the_report(tmp_path, image_folder, monkeypatch):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(image_folder.iterdir()):
            z.write(f, f"my_images/{f.name}")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for colab_only in ("drive.mount", "pip", "tensorboard"):  # each behind IN_COLAB
        assert colab_only in sources
    runs = tmp_path / "runs"
    with_parameters(nb, DATA=str(archive), RUNS=str(runs), MINUTES=0.05,
                    EXTRA=["train.device=cpu", "data.num_workers=0", "model.ngf=8", "model.ndf=8",
                           "train.n_fixed_noise=16", "train.tensorboard=false"],
                    REPOSITORY="git+https://github.com/OWNER/ganforge.git", WATCH_EVERY=1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = {i: "".join(o.get("text", "") for o in c.get("outputs", [])) for i, c in enumerate(nb.cells)}
    text = "\n".join(outputs.values())
    assert "not on Colab: using the ganforge installed here" in text and "training ended with exit status 0" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the watch cell showed no sample grid"
    assert any("<iframe srcdoc=" in o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
    (run,) = [p for p in runs.iterdir() if (p / "summary.json").is_file()]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] in ("finished", "time budget reached") and summary["step"] > 0
    assert summary["dataset"] == str(archive)  # trained on the zip in place
    assert (run / "report.html").is_file() and list((run / "samples").glob("*.png"))
