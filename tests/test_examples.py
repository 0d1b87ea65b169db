"""The scripts in examples/ run end to end (subprocess, small test model) in under a minute each."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from openmm import app
from rdkit import Chem

from physff_openmm import workflows as wf
from test_workflows import write_bound_model

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
#: A hang guard, not a speed test (the run time depends on the machine's load): each example gets this long.
TIMEOUT_SECONDS = 300.0


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("example-model") / "test-bound.pt"
    write_bound_model(path)
    return path


def _run_example(name: str, model_path, out: Path, *extra, first_on_path: Path | None = None) -> str:
    path = [str(first_on_path)] if first_on_path is not None else []
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([*path, str(REPO), os.environ.get("PYTHONPATH", "")]),
        PHYSFF_CACHE_DIR=str(out.parent / "physff-cache"),
        MPLBACKEND="Agg",
    )
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--model", str(model_path), "--out", str(out), "--platform", "CPU", *extra],
        capture_output=True, text=True, env=env, timeout=TIMEOUT_SECONDS,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_md_drug_molecule(model_path, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "md"
    stdout = _run_example("md_drug_molecule.py", model_path, out, "--steps", "300")
    assert "300 steps" in stdout
    report = wf.read_report_csv(out / "md.csv")
    assert list(report["Step"]) == list(range(0, 301, 10))
    assert np.all(np.isfinite(report["Potential Energy (kJ/mole)"]))
    assert (out / "md.dcd").stat().st_size > 0
    assert (out / "md.png").read_bytes()[:4] == b"\x89PNG"


def test_torsion_scan(model_path, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "scan"
    stdout = _run_example("torsion_scan.py", model_path, out)
    assert "24 points" in stdout
    lines = (out / "scan.csv").read_text().splitlines()
    assert lines[0] == "angle_deg,energy_kcal_mol" and len(lines) == 25
    assert min(float(ln.split(",")[1]) for ln in lines[1:]) == 0.0
    assert (out / "scan.png").read_bytes()[:4] == b"\x89PNG"


def test_adenine_thymine(model_path, tmp_path):
    out = tmp_path / "at"
    stdout = _run_example("adenine_thymine.py", model_path, out)
    start = re.search(r"starting hydrogen bonds .*: N6\(A\)-O4\(T\) ([\d.]+), N1\(A\)-N3\(T\) ([\d.]+)", stdout)
    assert start, stdout
    # the built Watson-Crick geometry: both donor-acceptor distances near 2.9 A
    assert all(abs(float(d) - 2.9) < 0.15 for d in start.groups())
    e_int = re.search(r"E\(A-T\) - E\(A\) - E\(T\) = (-?[\d.]+) kcal/mol", stdout)
    assert e_int and np.isfinite(float(e_int.group(1)))
    mol = Chem.MolFromMolFile(str(out / "adenine_thymine_minimized.sdf"), removeHs=False)
    assert mol.GetNumAtoms() == 15 + 15 and len(Chem.GetMolFrags(mol)) == 2
    assert (out / "adenine_thymine.json").is_file()


def test_ligand_in_water(model_path, tmp_path):
    out = tmp_path / "water"
    stdout = _run_example("ligand_in_water.py", model_path, out, "--steps", "100", "--padding", "1.0")
    assert re.search(r"in \d+ TIP3P waters: \d+ atoms", stdout) and "CustomBondForce" in stdout
    density = float(re.search(r"mean density \(second half\) ([\d.]+) g/mL", stdout).group(1))
    assert 0.8 < density < 1.2
    report = wf.read_report_csv(out / "md.csv")
    assert list(report["Step"]) == list(range(5, 101, 5))
    assert (out / "md.dcd").stat().st_size > 0 and (out / "start.pdb").is_file()


def test_protein_ligand(model_path, tmp_path):
    """Villin + paracetamol solvated (a thin water shell to keep it short), 20 steps of NPT."""
    out = tmp_path / "complex"
    stdout = _run_example("protein_ligand.py", model_path, out, "--steps", "20", "--padding", "0.5")
    assert "receptor: villin, 582 atoms" in stdout
    gap = float(re.search(r"closest protein atom ([\d.]+) A", stdout).group(1))
    assert 3.0 < gap < 6.0
    assert re.search(r"\d+ atoms \(\d+ waters\), 20 steps of 2 fs \(NPT\)", stdout)
    start = app.PDBFile(str(out / "start.pdb")).topology
    assert sum(1 for r in start.residues() if r.name == "MOL") == 1
    assert start.getNumAtoms() > 582 + 20


def test_examples_without_matplotlib_skip_only_the_plot(model_path, tmp_path):
    hidden = tmp_path / "no-matplotlib"
    (hidden / "matplotlib").mkdir(parents=True)
    (hidden / "matplotlib" / "__init__.py").write_text("raise ImportError('matplotlib is hidden in this test')\n")
    out = tmp_path / "scan"
    stdout = _run_example("torsion_scan.py", model_path, out, "--step", "90", first_on_path=hidden)
    assert "no plot: plots need matplotlib: pip install physff-openmm[plot]" in stdout
    assert (out / "scan.csv").is_file() and not (out / "scan.png").exists()
    assert f"wrote {out / 'scan.csv'}" in stdout
