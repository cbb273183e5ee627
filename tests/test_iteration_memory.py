"""benchmarks/iteration_memory.py on the tiny config: two whole PPO iterations, a row each, peaks in phase order."""
import re
import sys

import pytest

from benchmarks import iteration_memory


@pytest.mark.slow
def test_iteration_memory_prints_each_iterations_peaks(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["iteration_memory.py", "--config", "tiny", "--batch", "2", "--iterations", "2",
                                      "--workdir", str(tmp_path)])
    iteration_memory.main()
    out = capsys.readouterr().out
    rows = re.findall(r"^ +(\d) +(\d+) +([\d.]+) +([\d.]+) +([\d.]+) +(\d+) +([\d.]+) GB +([\d.]+) GB$", out, re.M)
    assert [int(r[0]) for r in rows] == [1, 2], out
    (_, _, _, _, _, compiles1, rollout1, update1), (_, _, _, _, _, compiles2, rollout2, update2) = rows
    assert int(compiles1) > 0 and int(compiles2) == 0  # the second iteration is the steady state
    assert 0.1 < float(rollout1) <= float(update1) <= float(rollout2) <= float(update2)
    assert "configs/tiny.py (tiny), 2 episodes per iteration" in out
    assert (tmp_path / "metrics.jsonl").exists()  # a --workdir is kept
