"""benchmarks/md_seeds.py: the README's MD command over seeds, its table against run_md, its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture()
def md_seeds(load_benchmark):
    return load_benchmark("md_seeds")


def test_runs_are_the_workflows_runs(md_seeds, tmp_path, bound_model_path):
    import warnings

    from physff_openmm import workflows as wf

    stem = str(tmp_path / "seeds")
    assert md_seeds.main(["--smiles", "CCO", "--models", str(bound_model_path), "--seeds", "2", "--steps", "200",
                          "--out", stem]) == 0
    runs = json.loads(Path(stem + ".json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = wf.run_md("CCO", 200, model=bound_model_path, timestep_fs=0.5, temperature_k=300.0, seed=2, progress=False,
                          constraints=None)  # md_seeds' default: every bond free
    assert runs[1]["max_bond_change"] == pytest.approx(again["max_bond_change"], abs=1e-6)
    assert "| runs broken |" in Path(stem + ".md").read_text()


def test_bad_input_writes_nothing(md_seeds, tmp_path):
    stem = str(tmp_path / "seeds")
    assert md_seeds.main(["--models", "no-such-model", "--out", stem]) == 2
    with pytest.raises(SystemExit):
        md_seeds.main(["--seeds", "0", "--out", stem])
    assert list(tmp_path.iterdir()) == []
