"""launch/colab_tpu_demo.ipynb executes top to bottom on CPU (RR1_NOTEBOOK_BUDGET=tiny), through a real kernel."""
import json
import os

import nbformat
import pytest
from nbclient import NotebookClient
from tests.xla_env import xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(REPO, "launch", "colab_tpu_demo.ipynb")


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "strip the notebook's outputs before committing"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_notebook_runs_on_cpu_with_the_tiny_budget(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    monkeypatch.setenv("RR1_NOTEBOOK_BUDGET", "tiny")
    monkeypatch.setenv("RR1_NOTEBOOK_WORKDIR", str(workdir))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    # one CPU device, whatever this pytest process was given (the mesh tests' fake devices slow the run ~2x)
    monkeypatch.setenv("XLA_FLAGS", xla_flags())
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.join(REPO, "launch")}})  # opened from launch/
    try:
        client.execute()
    finally:
        nbformat.write(nb, str(tmp_path / "executed.ipynb"))  # for a look at what ran (outputs included)

    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "backend: cpu" in text and "budget tiny" in text
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    report = json.load(open(workdir / "eval" / "report.json"))
    kinds = [m["kind"] for m in report["methods"]]
    assert kinds.count("policy") == 1 and "oracle router" in [m["name"] for m in report["methods"]]
    assert (workdir / "eval" / "pareto.png").exists() and (workdir / "hf_export" / "config.json").exists()
    assert images >= 3  # learning curve, the run's PNG plots, the Pareto plot
