"""The ``physff-openmm`` command end to end: outputs checked, bad input gives one line and no file.

Commands run in-process through :func:`physff_openmm.cli.main` (fast); two tests run
the real ``python -m physff_openmm.cli`` in a subprocess to see the actual streams.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import openmm
import pytest
from rdkit import Chem

from physff_openmm import workflows as wf
from physff_openmm.cli import main
from physff_openmm.molecule import load_molecule
from test_workflows import write_bound_model

REPO = Path(__file__).resolve().parents[1]
PLATFORM = "Reference"


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-model") / "test-bound.pt"
    write_bound_model(path)
    return path


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PHYSFF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "physff-cache"))


@pytest.fixture
def run(capsys, model_path):
    """Run the command in-process with the test model and the Reference platform: (rc, stdout, stderr)."""

    def _run(*argv, model=True):
        args = [str(a) for a in argv]
        if model:
            args += ["--model", str(model_path), "--platform", PLATFORM]
        rc = main(args)
        out, err = capsys.readouterr()
        return rc, out, err

    return _run


def _files(folder) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir())


# --- each command -----------------------------------------------------------------------

def test_version_and_help(run):
    rc, out, err = run("--version", model=False)
    assert rc == 0 and out.startswith("physff-openmm ")
    rc, out, _ = run("--help", model=False)
    assert rc == 0
    for command in ("parameterize", "energy", "minimize", "scan", "md", "interaction", "models", "label", "train"):
        assert command in out


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_parameterize_writes_system_xml_and_json(run, tmp_path, backend):
    out = tmp_path / "system.xml"
    rc, _, err = run("parameterize", "CC(=O)[O-]", "-o", out, "--backend", backend)
    assert rc == 0, err
    xml = out.read_text()
    if backend == "native":
        system = openmm.XmlSerializer.deserialize(xml)
        assert system.getNumParticles() == 7
    else:
        # XmlSerializer.deserialize of any TorchForce segfaults with openmmtorch 1.5 + torch 2.9.1
        # here (even a one-line module), so the torch XML is checked as XML
        root = ElementTree.fromstring(xml)
        assert len(root.find("Particles")) == 7
        assert [f.get("type") for f in root.find("Forces")].count("TorchForce") == 1
    data = json.loads((tmp_path / "system.json").read_text())
    assert math.fsum(data["charges_e"]) == pytest.approx(-1.0, abs=1e-9)
    assert data["symbols"] == ["C", "C", "O", "O", "H", "H", "H"]
    assert _files(tmp_path) == ["system.json", "system.xml"]


def test_energy_json_components_sum_to_total(run):
    rc, out, err = run("energy", "CC(=O)Nc1ccc(O)cc1", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert set(data) >= {
        "energy_kcal_mol",
        "energy_kj_mol",
        "coulomb_kcal_mol",
        "c6_c12_kcal_mol",
        "short_range_kcal_mol",
        "energy_offset_kcal_mol",
    }
    parts = data["coulomb_kcal_mol"] + data["c6_c12_kcal_mol"] + data["short_range_kcal_mol"]
    assert data["energy_kcal_mol"] == pytest.approx(parts + data["energy_offset_kcal_mol"], abs=1e-6)


def test_energy_json_equals_api_result(run, model_path):
    rc, out, _ = run("energy", "CCO", "--json")
    assert rc == 0
    api = wf.energy("CCO", model=model_path, platform=PLATFORM)
    assert json.loads(out) == api
    rc, text, _ = run("energy", "CCO")
    assert rc == 0 and f"{api['energy_kcal_mol']:.4f}" in text


# energy change from reading back rounded coordinates (SDF: 1e-4 A, PDB: 1e-3 A) with the stiff test model
@pytest.mark.parametrize("name, tol_kcal_mol", [("min.sdf", 0.05), ("min.pdb", 0.5)])
def test_minimize_writes_structure_and_lowers_energy(run, tmp_path, model_path, name, tol_kcal_mol):
    out = tmp_path / name
    rc, stdout, err = run("minimize", "CC(=O)Nc1ccc(O)cc1.O", "-o", out, "--json")
    assert rc == 0, err
    data = json.loads(stdout)
    assert data["final_energy_kcal_mol"] < data["initial_energy_kcal_mol"]
    mol = load_molecule(out)
    assert mol.GetNumAtoms() == 23 and len(Chem.GetMolFrags(mol)) == 2
    again = wf.energy(mol, model=model_path, platform=PLATFORM)["energy_kcal_mol"]
    assert again == pytest.approx(data["final_energy_kcal_mol"], abs=tol_kcal_mol)
    assert _files(tmp_path) == [name]


def test_scan_dihedral_csv_and_plot(run, tmp_path):
    pytest.importorskip("matplotlib")
    csv, png = tmp_path / "scan.csv", tmp_path / "scan.png"
    rc, _, err = run("scan", "CCCC", "--dihedral", 0, 1, 2, 3, "--step", 30, "-o", csv, "--plot", png)
    assert rc == 0, err
    lines = csv.read_text().splitlines()
    assert lines[0] == "angle_deg,energy_kcal_mol"
    rows = [tuple(map(float, ln.split(","))) for ln in lines[1:]]
    assert len(rows) == 360 // 30
    assert [a for a, _ in rows] == [-180.0 + 30.0 * k for k in range(12)]
    assert min(e for _, e in rows) == 0.0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert _files(tmp_path) == ["scan.csv", "scan.png"]


def test_scan_conformers_csv_and_structures(run, tmp_path):
    csv, sdf = tmp_path / "conf.csv", tmp_path / "conf.sdf"
    rc, _, err = run("scan", "CCCCO", "--conformers", 3, "-o", csv, "-O", sdf)
    assert rc == 0, err
    lines = csv.read_text().splitlines()
    assert lines[0] == "conformer,energy_kcal_mol"
    rows = [(int(a), float(b)) for a, b in (ln.split(",") for ln in lines[1:])]
    assert 1 <= len(rows) <= 3
    assert rows[0][1] == 0.0 and [e for _, e in rows] == sorted(e for _, e in rows)
    records = list(Chem.SDMolSupplier(str(sdf), removeHs=False))
    assert [int(r.GetProp("conformer")) for r in records] == [c for c, _ in rows]


def test_md_nvt_with_report_plot_checkpoint_and_restart(run, tmp_path):
    pytest.importorskip("matplotlib")
    traj, csv, ck, png = tmp_path / "md.dcd", tmp_path / "md.csv", tmp_path / "state.xml", tmp_path / "md.png"
    rc, out, err = run(
        "md", "CCO", "--steps", 100, "--temperature", 300, "--timestep", 0.5, "-o", traj, "--report-csv", csv,
        "--report-interval", 20, "--checkpoint", ck, "--plot", png, "--seed", 7, "--json",
    )
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["last_step"] == 100 and summary["ensemble"] == "nvt"
    report = wf.read_report_csv(csv)
    assert list(report["Step"]) == [0, 20, 40, 60, 80, 100]
    assert np.all(np.isfinite(report["Total Energy (kJ/mole)"]))
    assert traj.stat().st_size > 0 and png.read_bytes()[:4] == b"\x89PNG"
    traj2, csv2 = tmp_path / "more.pdb", tmp_path / "more.csv"
    rc, out, err = run("md", "CCO", "--steps", 40, "--timestep", 0.5, "-o", traj2, "--report-csv", csv2,
                       "--report-interval", 20, "--restart", ck, "--quiet")
    assert rc == 0, err
    assert list(wf.read_report_csv(csv2)["Step"]) == [100, 120, 140]
    assert traj2.read_text().count("MODEL") == 3
    assert _files(tmp_path) == ["md.csv", "md.dcd", "md.png", "more.csv", "more.pdb", "state.xml"]


def test_md_nve(run, tmp_path):
    csv = tmp_path / "nve.csv"
    rc, _, err = run("md", "CCO", "--steps", 200, "--timestep", 0.5, "--ensemble", "nve", "--no-constraints",
                     "-o", tmp_path / "t.dcd", "--report-csv", csv, "--report-interval", 10, "--seed", 1, "-q")
    assert rc == 0, err
    total = wf.read_report_csv(csv)["Total Energy (kJ/mole)"]
    assert np.abs(total - total[0]).max() < 1.0  # kJ/mol; see test_workflows for the measured drift


def test_md_defaults_to_2fs_with_bonds_to_hydrogen_constrained(run, tmp_path):
    rc, out, err = run("md", "CCO", "--steps", 20, "--report-interval", 10, "-o", tmp_path / "t.dcd", "--seed", 1, "--json")
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["timestep_fs"] == 2.0 and summary["constraints"] == "hbonds"
    assert summary["n_constraints"] == 6  # every C-H and the O-H of ethanol
    assert summary["time_ps"] == pytest.approx(0.040)
    assert "warning" not in err
    rc, out, err = run("md", "CCO", "--steps", 20, "-o", tmp_path / "t.dcd", "--seed", 1)
    assert rc == 0, err
    assert "20 steps of 2 fs (NVT, bonds to H constrained, Reference)" in out


def test_md_no_constraints_flag(run, tmp_path):
    rc, out, err = run("md", "CCO", "--steps", 20, "--timestep", 1, "--no-constraints", "-o", tmp_path / "t.dcd",
                       "--seed", 1, "--json")
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["constraints"] is None and summary["n_constraints"] == 0 and summary["timestep_fs"] == 1.0
    assert "warning" not in err
    # without --timestep the step stays 2 fs, with a one-line warning
    rc, out, err = run("md", "CCO", "--steps", 4, "--no-constraints", "-o", tmp_path / "t.dcd", "--seed", 1)
    assert rc == 0, err
    assert "4 steps of 2 fs (NVT, no constraints, Reference)" in out
    warning = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warning) == 1 and "2 fs time step without constraints is too long" in warning[0]
    assert "--timestep 1" in warning[0]


def test_interaction_json_sign_convention(run, model_path):
    rc, out, err = run("interaction", "O.O", "--json")
    assert rc == 0, err
    data = json.loads(out)
    e_int = data["interaction_energy_kcal_mol"]
    assert e_int == pytest.approx(data["complex_energy_kcal_mol"] - sum(data["fragment_energies_kcal_mol"]), abs=1e-9)
    assert "warning: the input has no 3D coordinates" in err  # a SMILES gives the complex no pose
    with pytest.warns(UserWarning, match="no 3D coordinates"):
        same = wf.interaction_energy("O.O", model=model_path, platform=PLATFORM)
    assert e_int == pytest.approx(same["interaction_energy_kcal_mol"])
    rc, out, _ = run("interaction", "O.O", "--minimize")
    assert rc == 0 and "minimized complex" in out


def test_models_lists_or_says_none(run):
    rc, out, err = run("models", model=False)
    assert rc == 0 and out.strip() and not err
    rc, out, _ = run("models", "--json", model=False)
    assert rc == 0 and isinstance(json.loads(out), dict)
    from physff_openmm.registry import resolve_model

    listed = json.loads(out)
    if "default" in listed:  # the alias says what it points at
        assert listed["default"] == f"alias of {resolve_model('default')[0]}"


def test_training_commands_without_extras_print_a_hint(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "physff_openmm.training.cli", None)  # as if not installed
    for command in ("label", "train"):
        rc, out, err = run(command, "anything", model=False)
        assert rc != 0 and out == ""
        assert err.count("\n") == 1 and "pip install physff-openmm[train]" in err


# --- bad input: one line on stderr, non-zero exit, no output file ------------------------

BAD_INPUTS = {
    "missing file": (["energy", "{tmp}/missing.sdf"], "no such file"),
    "empty file": (["energy", "{tmp}/empty.sdf"], "file is empty"),
    "garbled file": (["energy", "{tmp}/garbled.sdf"], "not a valid MDL molfile"),
    "garbled xyz": (["energy", "{tmp}/short.xyz"], "atom count may be wrong"),
    "unsupported element": (["energy", "C[Si](C)(C)C"], "element Si is not supported"),
    "radical": (["energy", "[CH3]"], "unpaired electron"),
    "bad smiles": (["energy", "C1CC"], "could not parse SMILES"),
    "dihedral out of range": (
        ["scan", "CCCC", "--dihedral", "0", "1", "2", "14", "-o", "{tmp}/s.csv"], "atom index 14 is out of range"),
    "dihedral not bonded": (
        ["scan", "CCCC", "--dihedral", "0", "2", "1", "3", "-o", "{tmp}/s.csv"], r"atoms 0 \(C\) and 2 \(C\) are not bonded"),
    "dihedral negative": (["scan", "CCCC", "--dihedral", "0", "1", "2", "-1", "-o", "{tmp}/s.csv"], "--dihedral"),
    "scan step": (["scan", "CCCC", "--dihedral", "0", "1", "2", "3", "--step", "7", "-o", "{tmp}/s.csv"], "--step must divide 360"),
    "zero steps": (["md", "CCO", "--steps", "0", "-o", "{tmp}/t.dcd"], "--steps: must be a positive integer"),
    "negative timestep": (["md", "CCO", "--steps", "10", "--timestep", "-1", "-o", "{tmp}/t.dcd"], "--timestep"),
    "zero timestep": (["md", "CCO", "--steps", "10", "--timestep", "0", "-o", "{tmp}/t.dcd"], "--timestep"),
    "zero temperature": (["md", "CCO", "--steps", "10", "--temperature", "0", "-o", "{tmp}/t.dcd"], "--temperature"),
    "nan temperature": (["md", "CCO", "--steps", "10", "--temperature", "nan", "-o", "{tmp}/t.dcd"], "--temperature"),
    "unknown flag": (["energy", "CCO", "--bogus"], "unrecognized arguments: --bogus"),
    "unknown command": (["simulate", "CCO"], "invalid choice"),
    "unwritable folder": (["minimize", "CCO", "-o", "{tmp}/no/such/folder/m.sdf"], "does not exist"),
    "output is a folder": (["minimize", "CCO", "-o", "{tmp}"], "is a folder"),
    "output under a file": (["md", "CCO", "--steps", "10", "-o", "{tmp}/empty.sdf/t.dcd"], "is not a folder"),
    "trajectory format": (["md", "CCO", "--steps", "10", "-o", "{tmp}/t.xtc"], "unsupported format"),
    "report folder": (["md", "CCO", "--steps", "10", "-o", "{tmp}/t.dcd", "--report-csv", "{tmp}/no/s.csv"], "does not exist"),
    "plot without report": (["md", "CCO", "--steps", "10", "-o", "{tmp}/t.dcd", "--plot", "{tmp}/p.png"], "--plot needs --report-csv"),
    "missing restart": (["md", "CCO", "--steps", "10", "-o", "{tmp}/t.dcd", "--restart", "{tmp}/none.xml"], "does not exist"),
    "garbled restart": (["md", "CCO", "--steps", "10", "-o", "{tmp}/t.dcd", "--restart", "{tmp}/garbled.sdf"], "not an OpenMM State"),
    "one fragment": (["interaction", "CCO"], "at least two molecules"),
    "unknown model": (["energy", "CCO", "--model", "no-such-model"], "unknown model 'no-such-model'"),
    "unknown platform": (["energy", "CCO", "--platform", "Quantum"], "platform 'Quantum' is not available"),
    "bad charge": (["energy", "CCO", "--charge", "1"], "formal charges add up to"),
    "conformers with plot": (["scan", "CCCC", "--conformers", "2", "-o", "{tmp}/s.csv", "--plot", "{tmp}/p.png"], "--plot"),
    "structures as pdb": (["scan", "CCCC", "--conformers", "2", "-o", "{tmp}/s.csv", "-O", "{tmp}/c.pdb"], "unsupported format"),
    "no command": ([], "COMMAND"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_no_file(case, tmp_path, capsys, model_path):
    argv, pattern = BAD_INPUTS[case]
    (tmp_path / "empty.sdf").write_text("")
    (tmp_path / "garbled.sdf").write_text("this is\nnot a molfile\n")
    (tmp_path / "short.xyz").write_text("3\nwater\nO 0 0 0\nH 0 0 0.96\n")
    before = _files(tmp_path)
    args = [a.format(tmp=tmp_path) for a in argv]
    if args and "--model" not in args:
        args += ["--model", str(model_path)]
    if args and "--platform" not in args:
        args += ["--platform", PLATFORM]
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("physff-openmm: error: ")
    assert "Traceback" not in err
    assert re.search(pattern, err), err
    assert _files(tmp_path) == before


def test_unexpected_error_is_one_line_with_debug_hint(run, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(wf, "energy", broken)
    rc, out, err = run("energy", "CCO")
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "unexpected RuntimeError: something broke" in err and "--debug" in err
    rc, out, err = run("energy", "CCO", "--debug")
    assert rc == 1 and "Traceback" in err


def _dcd_frames(path) -> int:
    """Frame count in a DCD file's header (NSET, the int after the first record marker and 'CORD')."""
    return struct.unpack("<i", Path(path).read_bytes()[8:12])[0]


def test_ctrl_c_keeps_frames_and_rows_and_restart_appends(run, tmp_path, monkeypatch):
    from openmm import app

    original = app.Simulation.step
    calls = []

    def ctrl_c_during_third_chunk(self, steps):
        calls.append(steps)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as the terminal sends it
        return original(self, steps)

    monkeypatch.setattr(app.Simulation, "step", ctrl_c_during_third_chunk)
    traj, csv, ck = tmp_path / "t.dcd", tmp_path / "s.csv", tmp_path / "ck.xml"
    common = ("--report-interval", "10", "-o", traj, "--report-csv", csv, "--checkpoint", ck, "--seed", 2)
    rc, _, err = run("md", "CCO", "--steps", "1000", *common)
    assert rc == 130 and err.count("\n") == 1, err
    assert "interrupted at step 30" in err and "frames and rows up to step 30 are kept" in err
    assert f"continue with --restart" in err and str(ck) in err
    assert _files(tmp_path) == ["ck.xml", "s.csv", "t.dcd"]
    assert list(wf.read_report_csv(csv)["Step"]) == [0, 10, 20, 30] and _dcd_frames(traj) == 4
    # the checkpoint holds the step the files end at: a restart appends, with no repeated or missing step
    monkeypatch.setattr(app.Simulation, "step", original)
    rc, out, err = run("md", "CCO", "--steps", "50", "--restart", ck, *common)
    assert rc == 0, err
    assert "appended to" in err and str(traj) in err
    assert list(wf.read_report_csv(csv)["Step"]) == list(range(0, 90, 10)) and _dcd_frames(traj) == 9


def test_md_that_blows_up_stops_with_an_error_and_keeps_its_files(run, tmp_path):
    traj, csv = tmp_path / "t.dcd", tmp_path / "s.csv"
    rc, out, err = run("md", "CCO", "--steps", "500", "--timestep", "10", "--no-constraints", "--report-interval", "1",
                       "-o", traj, "--report-csv", csv, "--seed", 1)
    assert rc == 1 and out == "", out
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and ("moved bond" in lines[0] or "unstable" in lines[0])
    step = int(re.search(r"up to step (\d+) are kept", lines[0]).group(1))
    assert 0 < step < 500
    rows = wf.read_report_csv(csv)
    assert list(rows["Step"]) == list(range(0, step + 1)) and _dcd_frames(traj) == step + 1


# --- the real process -------------------------------------------------------------------

def _subprocess(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "physff_openmm.cli", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )


def test_subprocess_success_and_failure(tmp_path, model_path):
    ok = _subprocess(["energy", "CCO", "--json", "--model", model_path, "--platform", PLATFORM], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == wf.energy("CCO", model=model_path, platform=PLATFORM)
    bad = _subprocess(["md", "missing.sdf", "--steps", "10", "-o", "t.dcd", "--model", model_path], tmp_path)
    assert bad.returncode == 2
    assert bad.stderr == "physff-openmm: error: missing.sdf: no such file\n"
    assert bad.stdout == "" and _files(tmp_path) == []


# --- a model that fails: nothing unphysical passes silently ------------------------------

@pytest.fixture()
def dissociating_minimizer(monkeypatch):
    """Every minimization ends with atom 1 moved 9 A away, as version 1's model did to water's H."""
    from physff_openmm.workflows import md, simulation

    def pull_apart(context, *args, **kwargs):
        x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        x[1] += 0.9
        context.setPositions(x)

    monkeypatch.setattr(simulation, "minimize_context", pull_apart)
    monkeypatch.setattr(md, "minimize_context", pull_apart)


def test_minimization_that_breaks_a_bond_is_an_error_and_writes_nothing(run, tmp_path, dissociating_minimizer):
    rc, out, err = run("minimize", "O", "-o", tmp_path / "w.sdf")
    assert rc == 1 and out == ""
    assert re.search(r"error: the minimization moved bond O0-H1 by \+\d+% from the input geometry \(more than 30%\): "
                     r"the model failed on this molecule", err), err
    rc, out, err = run("md", "C(=O)N", "--steps", "10", "-o", tmp_path / "t.dcd", "--report-csv", tmp_path / "s.csv")
    assert rc == 1 and "the minimization before MD moved bond C0-O1" in err
    rc, out, err = run("interaction", "O.O", "--minimize")
    assert rc == 1 and "the minimization moved bond O1-H4" in err  # atom 1 is the second water's O
    assert _files(tmp_path) == []


def test_a_torsion_scan_about_a_ring_bond_is_refused(run, tmp_path):
    rc, out, err = run("scan", "C1CCCCC1", "--dihedral", 0, 1, 2, 3, "-o", tmp_path / "s.csv")
    assert rc == 2 and "the central bond 1-2 (C-C) is in a ring" in err and "tear the ring open" in err
    assert _files(tmp_path) == []


def test_json_output_never_holds_nan_or_infinity(capsys):
    from physff_openmm.cli import _print_json

    _print_json({"energy_kcal_mol": float("nan"), "terms": [float("inf"), -float("inf"), 1.5], "n": 3})
    text = capsys.readouterr().out
    assert json.loads(text) == {"energy_kcal_mol": None, "terms": [None, None, 1.5], "n": 3}
    assert "NaN" not in text and "Infinity" not in text


def test_a_missing_training_extra_prints_the_install_hint(run, monkeypatch, tmp_path):
    import physff_openmm.training.cli as training_cli

    def needs_pyscf(args):
        raise ModuleNotFoundError("No module named 'pyscf'", name="pyscf")

    monkeypatch.setattr(training_cli, "cmd_label", needs_pyscf)
    rc, out, err = run("label", "CCO", "--out", tmp_path / "x.h5", model=False)
    assert rc == 1 and err.strip() == "physff-openmm: error: module 'pyscf' is not installed: pip install physff-openmm[train]"


def test_a_write_error_names_the_users_file_not_a_temporary_one(tmp_path):
    import errno

    from physff_openmm.errors import FileAccessError
    from physff_openmm.workflows import atomic_output

    target = tmp_path / "out.csv"
    with pytest.raises(FileAccessError, match=r"cannot write '.*out.csv': No space left on device") as err:
        with atomic_output(target) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert ".partial" not in str(err.value) and _files(tmp_path) == []
