"""The Python workflows end to end: energies, minimization, scans, MD, interaction energies, plots, files.

All tests use a small random model (seed fixed) whose covalent pairs are held by a
deep Gaussian well, so that molecules stay bonded in MD (see :func:`write_bound_model`),
the Reference platform and the native backend.
"""

from __future__ import annotations

import math

import re
import warnings

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit
from rdkit import Chem

import physff_openmm as pf
from physff_openmm import workflows as wf
from physff_openmm.errors import ConfigError, FileAccessError, MoleculeError
from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
from physff_openmm.units import KCAL_TO_KJ

PLATFORM = "Reference"

# NVE energy conservation (ethanol, this test model, Reference platform, 0.5 fs, 400 steps = 0.2 ps
# from 300 K after minimization): measured max |E(t) - E(0)| = 0.41 kJ/mol with a mean kinetic
# energy of 21 kJ/mol (0.094 kJ/mol at 0.25 fs: the Verlet dt^2 scaling). The bound leaves room for
# platform arithmetic; a broken integrator, or forces that are not the energy's gradient, drift by
# tens of kJ/mol.
NVE_MAX_DRIFT_KJ_MOL = 1.0
NVE_STEPS = 400
NVE_TIMESTEP_FS = 0.5
# Covalent pairs of the test model sit within 15 % of their reference lengths; a broken bond would leave this range.
BONDED_MAX_ANGSTROM = 1.8
# Components (float64 torch) against the OpenMM total on the Reference platform (double).
COMPONENT_SUM_TOL_KCAL_MOL = 1e-6


def write_bound_model(path) -> None:
    """A small random model (seed 0) with non-trivial charges and E_lin.

    Its bonds are bound by the covalent core, whatever the weights. The bias of C_1
    is lowered to -2.79 (C_1 about 1e4 kcal/mol A^12 instead of 1e5) so that the
    C12 repulsion between atoms two bonds apart does not tear small ions such as
    NH4+ apart. E_lin weights are non-zero so that the offset matters in absolute energies.
    """
    from physff_openmm.model import ModelConfig, PhysFFModel, save_model_file

    torch.manual_seed(0)
    model = PhysFFModel(ModelConfig(hidden=32, pair_hidden=32, n_steps=3))
    with torch.no_grad():
        model.charge_net[-1].weight.normal_(0.0, 0.3)
        model.feats_net[-1].bias[1] = -2.79
        model.elin_weights.copy_(torch.linspace(-300.0, -100.0, len(model.config.elements), dtype=torch.float64))
        model.elin_bias.fill_(-5.0)
    save_model_file(model, path, {"name": "test-bound"})


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("workflow-model") / "test-bound.pt"
    write_bound_model(path)
    return path


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PHYSFF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "physff-cache"))


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- topology and simulation ------------------------------------------------------------

def test_topology_has_one_residue_per_fragment_and_all_bonds():
    ethanol, water = load_molecule("CCO"), load_molecule("O")
    mol = pf.molecule.combine_molecules([ethanol, water])  # contiguous fragments
    top = wf.topology_from_mol(mol)
    assert top.getNumAtoms() == mol.GetNumAtoms()
    assert [r.name for r in top.residues()] == ["M1", "M2"]
    assert [len(list(r.atoms())) for r in top.residues()] == [9, 3]
    assert top.getNumBonds() == mol.GetNumBonds()
    assert [a.element.symbol for a in top.atoms()] == [a.GetSymbol() for a in mol.GetAtoms()]
    # SMILES "CCO.O" interleaves the fragments (hydrogens last): atom order is kept,
    # each fragment's contiguous runs become residues of the same name
    mixed = load_molecule("CCO.O")
    top = wf.topology_from_mol(mixed)
    assert [a.element.symbol for a in top.atoms()] == [a.GetSymbol() for a in mixed.GetAtoms()]
    assert [r.name for r in top.residues()] == ["M1", "M2", "M1", "M2"]
    assert {(b[0].index, b[1].index) for b in top.bonds()} == {
        (b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mixed.GetBonds()
    }
    orders = sorted(b.order for b in wf.topology_from_mol(load_molecule("C=O")).bonds())
    assert orders == [1, 1, 2]


@pytest.mark.parametrize("ensemble, kind", [("nvt", openmm.LangevinMiddleIntegrator), ("nve", openmm.VerletIntegrator)])
def test_build_simulation(model_path, ensemble, kind):
    sim = wf.build_simulation("CCO", model=model_path, platform=PLATFORM, ensemble=ensemble, timestep_fs=0.5, seed=1)
    assert isinstance(sim, app.Simulation)
    assert isinstance(sim.integrator, kind)
    assert sim.integrator.getStepSize().value_in_unit(unit.femtoseconds) == pytest.approx(0.5)
    assert sim.system.getNumParticles() == sim.topology.getNumAtoms() == 9
    pos = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    np.testing.assert_allclose(pos, positions_angstrom(sim.physff_molecule), atol=1e-9)
    sim.step(5)


def _hydrogen_bonds(mol) -> set[tuple[int, int]]:
    """Every covalent bond of an RDKit molecule with a hydrogen atom, as sorted index pairs (an independent list)."""
    return {
        tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx())))
        for b in mol.GetBonds()
        if "H" in (b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol())
    }


def _constraints(system) -> dict[tuple[int, int], float]:
    out = {}
    for k in range(system.getNumConstraints()):
        i, j, d = system.getConstraintParameters(k)
        out[tuple(sorted((i, j)))] = d.value_in_unit(unit.angstrom)
    return out


def test_default_simulation_is_2fs_with_every_bond_to_hydrogen_constrained(model_path):
    """openmm.app.HBonds semantics: every X-H bond (and only those), at its length in the starting geometry."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default set-up does not warn
        sim = wf.build_simulation("CC(=O)Nc1ccc(O)cc1.[NH4+]", model=model_path, platform=PLATFORM, seed=1)
    assert sim.integrator.getStepSize().value_in_unit(unit.femtoseconds) == pytest.approx(2.0)
    mol = sim.physff_molecule
    expected = _hydrogen_bonds(mol)
    assert len(expected) == 9 + 4  # paracetamol's C-H, N-H, O-H; the four N-H of ammonium
    constraints = _constraints(sim.system)
    assert set(constraints) == expected
    xyz = positions_angstrom(mol)
    for (i, j), d in constraints.items():
        assert d == pytest.approx(np.linalg.norm(xyz[i] - xyz[j]), abs=1e-9)
    assert {tuple(sorted(p)) for p in sim.physff_constraints.tolist()} == expected
    assert wf.simulation.degrees_of_freedom(sim.system) == 3 * sim.system.getNumParticles() - len(expected)
    # OpenMM holds them: after a few steps every constrained bond keeps its length
    sim.minimizeEnergy()
    sim.context.setVelocitiesToTemperature(300.0 * unit.kelvin, 1)
    sim.step(20)
    pos = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    for (i, j), d in constraints.items():
        assert np.linalg.norm(pos[i] - pos[j]) == pytest.approx(d, rel=1e-4)


def test_constraints_off(model_path):
    sim = wf.build_simulation("CCO", model=model_path, platform=PLATFORM, constraints=None, timestep_fs=1.0)
    assert sim.system.getNumConstraints() == 0 and sim.physff_constraints.shape == (0, 2)
    assert sim.integrator.getStepSize().value_in_unit(unit.femtoseconds) == pytest.approx(1.0)
    hb = wf.build_simulation("CCO", model=model_path, platform=PLATFORM, constraints=app.HBonds)
    assert set(_constraints(hb.system)) == _hydrogen_bonds(hb.physff_molecule)
    with pytest.warns(RuntimeWarning, match="2 fs time step without constraints is too long"):
        sim = wf.build_simulation("CCO", model=model_path, platform=PLATFORM, constraints=None)
    assert sim.integrator.getStepSize().value_in_unit(unit.femtoseconds) == pytest.approx(2.0)  # the step stays
    with pytest.raises(ConfigError, match="unknown constraints 'allbonds'"):
        wf.build_simulation("CCO", model=model_path, platform=PLATFORM, constraints="allbonds")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ensemble": "npe"}, "unknown ensemble 'npe'"),
        ({"ensemble": "npt"}, "NPT needs a periodic box"),
        ({"timestep_fs": 0.0}, "timestep_fs must be positive"),
        ({"temperature_k": -5.0}, "temperature_k must be positive"),
        ({"backend": "cuda"}, "unknown backend"),
    ],
)
def test_build_simulation_rejects_bad_settings(model_path, kwargs, match):
    with pytest.raises((ConfigError, pf.BackendError), match=match):
        wf.build_simulation("CCO", model=model_path, platform=PLATFORM, **kwargs)


# --- energy -----------------------------------------------------------------------------

def test_energy_components_sum_to_total_and_match_independent_reference(model_path):
    from reference_energy import reference_energy

    mol = ensure_conformer(load_molecule("CC(=O)[O-].[NH4+]"))
    res = wf.energy(mol, model=model_path, platform=PLATFORM)
    params = pf.parameterize(mol, model=model_path)
    parts = res["coulomb_kcal_mol"] + res["c6_c12_kcal_mol"] + res["short_range_kcal_mol"]
    assert res["energy_kcal_mol"] == pytest.approx(parts + res["energy_offset_kcal_mol"], abs=COMPONENT_SUM_TOL_KCAL_MOL)
    assert res["energy_offset_kcal_mol"] == params.energy_offset != 0.0
    assert res["energy_kj_mol"] == pytest.approx(res["energy_kcal_mol"] * KCAL_TO_KJ, rel=1e-12)
    ref = reference_energy(params, positions_angstrom(mol))
    assert res["energy_kcal_mol"] == pytest.approx(ref["total"], abs=1e-6)
    assert res["coulomb_kcal_mol"] == pytest.approx(ref["coulomb"], abs=1e-6)
    assert res["c6_c12_kcal_mol"] == pytest.approx(ref["c6_c12"], abs=1e-6)
    assert res["short_range_kcal_mol"] == pytest.approx(ref["short_range"], abs=1e-6)
    assert res["n_atoms"] == mol.GetNumAtoms() and res["n_fragments"] == 2 and res["platform"] == PLATFORM


def test_energy_same_for_both_backends(model_path):
    mol = ensure_conformer(load_molecule("CCO.O"))
    native = wf.energy(mol, model=model_path, platform=PLATFORM, backend="native")
    torch_ = wf.energy(mol, model=model_path, platform=PLATFORM, backend="torch")
    assert torch_["backend"] == "torch"
    assert torch_["energy_kcal_mol"] == pytest.approx(native["energy_kcal_mol"], abs=1e-6)


# --- minimization -----------------------------------------------------------------------

@pytest.mark.parametrize("smiles", ["CC(=O)Nc1ccc(O)cc1", "O.O"])
def test_minimize_lowers_energy_and_keeps_topology(model_path, smiles):
    mol, res = wf.minimize(smiles, model=model_path, platform=PLATFORM)
    assert res["final_energy_kcal_mol"] < res["initial_energy_kcal_mol"]
    assert res["energy_change_kcal_mol"] == pytest.approx(res["final_energy_kcal_mol"] - res["initial_energy_kcal_mol"])
    assert mol.GetNumConformers() == 1
    assert Chem.MolToSmiles(mol) == Chem.MolToSmiles(load_molecule(smiles))
    # the largest bond change it reports, against the input geometry by hand
    start = ensure_conformer(load_molecule(smiles))
    x0, x1 = start.GetConformer().GetPositions(), mol.GetConformer().GetPositions()
    rel = {f"{b.GetBeginAtom().GetSymbol()}{b.GetBeginAtomIdx()}-{b.GetEndAtom().GetSymbol()}{b.GetEndAtomIdx()}":
           np.linalg.norm(x1[b.GetBeginAtomIdx()] - x1[b.GetEndAtomIdx()]) / np.linalg.norm(x0[b.GetBeginAtomIdx()] - x0[b.GetEndAtomIdx()]) - 1.0
           for b in start.GetBonds()}
    worst = max(rel, key=lambda k: abs(rel[k]))
    assert res["worst_bond"] == worst and res["max_bond_change"] == pytest.approx(rel[worst], abs=1e-9)
    # the returned coordinates are the minimum: evaluating them again gives the final energy
    again = wf.energy(mol, model=model_path, platform=PLATFORM)
    assert again["energy_kcal_mol"] == pytest.approx(res["final_energy_kcal_mol"], abs=1e-6)
    again_min, res2 = wf.minimize(mol, model=model_path, platform=PLATFORM)
    assert res2["final_energy_kcal_mol"] == pytest.approx(res["final_energy_kcal_mol"], abs=0.05)


def test_minimizer_that_raises_the_energy_is_undone(model_path, monkeypatch):
    def squeeze(context, tolerance, max_iterations):  # a minimizer gone wrong: atoms pushed together
        pos = context.getState(getPositions=True).getPositions(asNumpy=True)
        context.setPositions(pos * 0.5)

    monkeypatch.setattr(openmm.LocalEnergyMinimizer, "minimize", staticmethod(squeeze))
    start = ensure_conformer(load_molecule("CCO"))
    with pytest.warns(RuntimeWarning, match="did not lower the energy"):
        mol, res = wf.minimize(start, model=model_path, platform=PLATFORM)
    assert res["final_energy_kcal_mol"] == res["initial_energy_kcal_mol"]
    np.testing.assert_allclose(positions_angstrom(mol), positions_angstrom(start), atol=1e-9)


# --- torsion and conformer scans --------------------------------------------------------

def _angle_difference(a: float, b: float) -> float:
    """a - b wrapped into [-180, 180) degrees."""
    return (a - b + 180.0) % 360.0 - 180.0


def _scan_structures(sdf, dihedral):
    """(target angle, reached angle, molecule) of each record of a scan's structure file."""
    out = []
    for rec in Chem.SDMolSupplier(str(sdf), removeHs=False):
        reached = wf.dihedral_deg(positions_angstrom(rec), dihedral)
        assert abs(_angle_difference(float(rec.GetProp("dihedral_deg")), reached)) < 0.01  # SDF rounding
        out.append((float(rec.GetProp("angle_deg")), reached, rec))
    return out


def test_torsion_scan_rows_and_minimum(model_path, tmp_path):
    sdf = tmp_path / "scan.sdf"
    rows = wf.torsion_scan("CCCC", (0, 1, 2, 3), 30, model=model_path, platform=PLATFORM, output_structures=sdf)
    assert len(rows) == 360 // 30
    assert [a for a, _ in rows] == [-180.0 + 30.0 * k for k in range(12)]
    energies = [e for _, e in rows]
    assert min(energies) == 0.0 and all(e >= 0.0 for e in energies)
    # butane: the eclipsed (0 deg) point is above the anti (180 deg) one
    assert dict(rows)[0.0] > dict(rows)[-180.0]
    records = _scan_structures(sdf, (0, 1, 2, 3))
    assert [a for a, _, _ in records] == [a for a, _ in rows]
    for angle, reached, _ in records:  # the stiff default restraint holds each angle
        assert abs(_angle_difference(reached, angle)) < 0.5


def test_torsion_scan_reports_energies_without_the_restraint(model_path, tmp_path):
    # a soft restraint lets the angle give way by degrees, so that its energy would show
    k = 20.0  # kcal/mol
    sdf = tmp_path / "scan.sdf"
    rows = wf.torsion_scan(
        "CCCC", (0, 1, 2, 3), 30, model=model_path, platform=PLATFORM, restraint_kcal_mol=k, output_structures=sdf
    )
    records = _scan_structures(sdf, (0, 1, 2, 3))
    restraint = [k * (1 - math.cos(math.radians(reached - angle))) for angle, reached, _ in records]
    assert max(restraint) > 0.2
    e_abs = np.array([wf.energy(rec, model=model_path, platform=PLATFORM)["energy_kcal_mol"] for _, _, rec in records])
    # the reported energies are the unrestrained energies of those geometries, up to the 1e-4 A
    # rounding of SDF coordinates times the forces that the restraint balances
    np.testing.assert_allclose(e_abs - e_abs.min(), [e for _, e in rows], atol=0.02)


@pytest.mark.parametrize(
    "dihedral, match",
    [
        ((0, 1, 2, 14), r"atom index 14 is out of range; the molecule has 14 atoms"),
        ((0, 2, 1, 3), r"atoms 0 \(C\) and 2 \(C\) are not bonded"),
        ((0, 1, 2, 1), "must be distinct"),
        ((0, 1, 2), "four integer atom indices"),
        ((0, 1, 2, 3.0), "four integer atom indices"),
    ],
)
def test_torsion_scan_rejects_bad_dihedrals(model_path, dihedral, match):
    with pytest.raises(ConfigError, match=match):
        wf.torsion_scan("CCCC", dihedral, 30, model=model_path, platform=PLATFORM)


@pytest.mark.parametrize("smiles, linear", [("CC#CC", 1), ("CC=C=CC", 2)])
def test_torsion_scan_rejects_a_dihedral_about_a_linear_atom(model_path, smiles, linear):
    """About an sp atom the angle is 180 degrees and the dihedral undefined (the scan used to run, flat)."""
    with pytest.raises(ConfigError, match=rf"atom {linear} \(C\) is linear \(sp\).*dihedral is undefined"):
        wf.torsion_scan(smiles, (0, 1, 2, 3), 60, model=model_path, platform=PLATFORM)


@pytest.mark.parametrize("step", [0, -15, 7, 360])
def test_torsion_scan_rejects_bad_steps(model_path, step):
    with pytest.raises(ConfigError, match="step_deg"):
        wf.torsion_scan("CCCC", (0, 1, 2, 3), step, model=model_path, platform=PLATFORM)


def test_conformer_scan_ranks_minimized_conformers(model_path):
    mol, rows = wf.conformer_scan("CCCCO", 4, model=model_path, platform=PLATFORM, prune_rms_angstrom=0.0)
    assert len(rows) == 4 == mol.GetNumConformers()
    energies = [e for _, e in rows]
    assert energies[0] == 0.0 and energies == sorted(energies)
    assert [c.GetId() for c in mol.GetConformers()] == [cid for cid, _ in rows]
    best = Chem.Mol(mol, confId=rows[0][0])
    worst = Chem.Mol(mol, confId=rows[-1][0])
    e_best = wf.energy(best, model=model_path, platform=PLATFORM)["energy_kcal_mol"]
    e_worst = wf.energy(worst, model=model_path, platform=PLATFORM)["energy_kcal_mol"]
    assert e_worst - e_best == pytest.approx(rows[-1][1], abs=1e-6)
    with pytest.raises(MoleculeError, match="single molecule"):
        wf.conformer_scan("CCO.O", 2, model=model_path, platform=PLATFORM)


# --- molecular dynamics -----------------------------------------------------------------

def test_nve_conserves_energy_and_keeps_bonds(model_path, tmp_path):
    traj, csv = tmp_path / "nve.pdb", tmp_path / "nve.csv"
    res = wf.run_md(
        "CCO",
        NVE_STEPS,
        model=model_path,
        platform=PLATFORM,
        ensemble="nve",
        timestep_fs=NVE_TIMESTEP_FS,
        constraints=None,  # the drift above was measured with every bond free
        temperature_k=300.0,
        trajectory=traj,
        report_csv=csv,
        report_interval=10,
        seed=1,
    )
    assert res["last_step"] == NVE_STEPS and res["ensemble"] == "nve"
    assert res["constraints"] is None and res["n_constraints"] == 0 and res["timestep_fs"] == NVE_TIMESTEP_FS
    report = wf.read_report_csv(csv)
    assert list(report["Step"]) == list(range(0, NVE_STEPS + 1, 10))
    total = report["Total Energy (kJ/mole)"]
    assert np.all(np.isfinite(total))
    drift = float(np.abs(total - total[0]).max())
    print(f"NVE drift: max |E(t) - E(0)| = {drift:.4f} kJ/mol over {NVE_STEPS} steps of {NVE_TIMESTEP_FS} fs")
    assert drift < NVE_MAX_DRIFT_KJ_MOL
    assert report["Kinetic Energy (kJ/mole)"].mean() > 10 * drift  # the bound is not trivially loose
    pdb = app.PDBFile(str(traj))
    assert pdb.getNumFrames() == NVE_STEPS // 10 + 1
    bonds = [(b[0].index, b[1].index) for b in pdb.topology.bonds()]
    assert len(bonds) == 8
    for frame in range(pdb.getNumFrames()):
        xyz = pdb.getPositions(asNumpy=True, frame=frame).value_in_unit(unit.angstrom)
        lengths = [np.linalg.norm(xyz[i] - xyz[j]) for i, j in bonds]
        assert max(lengths) < BONDED_MAX_ANGSTROM, f"a bond broke in frame {frame}: {max(lengths):.2f} A"
    # the run's bond watch saw the same frames and measured from the input geometry (before the
    # minimization): its largest change is the trajectory's against that geometry, recomputed here
    from physff_openmm.workflows.simulation import prepare

    x_input = prepare("CCO", model=model_path).positions_angstrom
    d_input = np.array([np.linalg.norm(x_input[i] - x_input[j]) for i, j in bonds])
    xyz = [pdb.getPositions(asNumpy=True, frame=f).value_in_unit(unit.angstrom) for f in range(pdb.getNumFrames())]
    d = np.array([[np.linalg.norm(x[i] - x[j]) for i, j in bonds] for x in xyz])
    assert abs(res["max_bond_change"]) == pytest.approx(np.abs(d / d_input - 1.0).max(), abs=2e-3)
    assert res["worst_bond"][0] in "CHO"


def test_bond_watch_measures_from_the_input_geometry_and_keeps_the_first_failure():
    from physff_openmm.errors import ModelFailureError
    from physff_openmm.workflows.md import BROKEN_BOND_FRACTION, _BondWatch

    class State:
        def __init__(self, x, t, step):
            self.x, self.t, self.step = x, t, step

        def getPositions(self, asNumpy=True):  # noqa: N802 - OpenMM State API
            return unit.Quantity(np.asarray(self.x), unit.nanometer)

        def getTime(self):  # noqa: N802
            return self.t * unit.picosecond

        def getStepCount(self):  # noqa: N802
            return self.step

    start = [[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.15, 0.0]]
    start_angstrom = np.asarray(start) * 10.0  # the input geometry in Angstrom; states report nm
    watch = _BondWatch([(0, 1), (0, 2)], ["O", "H", "C"], start_angstrom, 10)
    watch.report(None, State([[0, 0, 0], [0.11, 0, 0], [0, 0.15, 0]], 0.1, 100))
    assert watch.max_change == pytest.approx(0.1) and watch.worst_bond == "O0-H1" and watch.failure is None
    watch.report(None, State([[0, 0, 0], [0.06, 0, 0], [0, 0.15, 0]], 0.2, 200))
    assert isinstance(watch.failure, ModelFailureError)
    assert re.search(r"MD \(t = 0.200 ps, step 200\) moved bond O0-H1 by -40% from the input geometry", str(watch.failure))
    assert "model failed on this molecule" in str(watch.failure)
    assert watch.failure.bond == "O0-H1" and watch.failure.change == pytest.approx(-0.4)
    first = watch.failure
    watch.report(None, State([[0, 0, 0], [0.1, 0, 0], [0, 0.15 * (2 + BROKEN_BOND_FRACTION), 0]], 0.3, 300))
    assert watch.failure is first  # the first failure is the one reported
    # NaN coordinates are a failure too, not a silent comparison
    watch = _BondWatch([(0, 1)], ["O", "H", "C"], start_angstrom, 10)
    watch.report(None, State([[0, 0, 0], [np.nan, 0, 0], [0, 0.15, 0]], 0.1, 100))
    assert "non-finite" in str(watch.failure)


def test_run_md_default_constrains_bonds_to_hydrogen(model_path, tmp_path):
    """The default run: 2 fs, X-H bonds constrained (they keep their length), temperature from 3N - constraints."""
    traj, csv = tmp_path / "md.pdb", tmp_path / "md.csv"
    res = wf.run_md("CCO", 100, model=model_path, platform=PLATFORM, report_interval=20, trajectory=traj,
                    report_csv=csv, seed=3)
    assert res["timestep_fs"] == 2.0 and res["constraints"] == "hbonds" and res["n_constraints"] == 6
    assert res["time_ps"] == pytest.approx(0.2)
    # the summary's temperature counts degrees of freedom as OpenMM's state report does: 3 * 9 - 6
    report = wf.read_report_csv(csv)
    assert res["temperature_k"] == pytest.approx(report["Temperature (K)"][-1], rel=1e-6)
    gas_constant = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    e_kin = report["Kinetic Energy (kJ/mole)"][-1]
    assert res["temperature_k"] == pytest.approx(2 * e_kin / ((27 - 6) * gas_constant), rel=1e-6)
    # constrained bonds do not move (PDB precision 1e-3 A); the bond watch's worst bond is a free one
    pdb = app.PDBFile(str(traj))
    h_bonds = [(b[0].index, b[1].index) for b in pdb.topology.bonds() if "H" in (b[0].element.symbol, b[1].element.symbol)]
    assert len(h_bonds) == 6
    first = pdb.getPositions(asNumpy=True, frame=0).value_in_unit(unit.angstrom)
    for frame in range(1, pdb.getNumFrames()):
        xyz = pdb.getPositions(asNumpy=True, frame=frame).value_in_unit(unit.angstrom)
        for i, j in h_bonds:
            assert np.linalg.norm(xyz[i] - xyz[j]) == pytest.approx(np.linalg.norm(first[i] - first[j]), abs=3e-3)
    assert "H" not in res["worst_bond"] and abs(res["max_bond_change"]) > 1e-3


def test_run_md_without_constraints(model_path):
    res = wf.run_md("CCO", 20, model=model_path, platform=PLATFORM, constraints=None, timestep_fs=1.0, seed=3)
    assert res["constraints"] is None and res["n_constraints"] == 0 and res["timestep_fs"] == 1.0
    assert res["time_ps"] == pytest.approx(0.02)
    with pytest.warns(RuntimeWarning, match="without constraints"):  # 2 fs unless given, with a warning
        res = wf.run_md("CCO", 4, model=model_path, platform=PLATFORM, constraints=None, seed=3)
    assert res["timestep_fs"] == 2.0 and res["n_constraints"] == 0


def test_nvt_checkpoint_and_restart(model_path, tmp_path):
    common = dict(model=model_path, platform=PLATFORM, report_interval=20, seed=5, temperature_k=300.0)
    ck = tmp_path / "state.xml"
    first = wf.run_md("CCO", 100, trajectory=tmp_path / "a.dcd", report_csv=tmp_path / "a.csv", checkpoint=ck, **common)
    assert first["first_step"] == 0 and first["last_step"] == 100 and ck.is_file()
    second = wf.run_md(
        "CCO", 60, trajectory=tmp_path / "b.dcd", report_csv=tmp_path / "b.csv", restart=ck, checkpoint=ck, **common
    )
    assert second["first_step"] == 100 and second["last_step"] == 160
    assert second["time_ps"] == pytest.approx(0.320)  # 160 steps of the default 2 fs
    steps = wf.read_report_csv(tmp_path / "b.csv")["Step"]
    assert list(steps) == [100, 120, 140, 160]
    assert (tmp_path / "b.dcd").stat().st_size > (tmp_path / "a.dcd").stat().st_size / 3
    assert _files(tmp_path) == ["a.csv", "a.dcd", "b.csv", "b.dcd", "state.xml"]


def test_restart_from_another_molecule_is_refused(model_path, tmp_path):
    ck = tmp_path / "state.xml"
    wf.run_md("CCO", 10, model=model_path, platform=PLATFORM, checkpoint=ck, report_interval=10)
    with pytest.raises(ConfigError, match="holds 9 atoms but the molecule has 14"):
        wf.run_md("CCCC", 10, model=model_path, platform=PLATFORM, restart=ck)
    # the same number of atoms (9), another molecule: its bonds do not fit the checkpoint's positions
    with pytest.raises(ConfigError, match=r"does not fit this molecule: its bond .* probably a checkpoint of another"):
        wf.run_md("COC", 10, model=model_path, platform=PLATFORM, restart=ck)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"steps": 0}, ConfigError, "steps must be positive"),
        ({"timestep_fs": -1.0}, ConfigError, "timestep_fs must be positive"),
        ({"temperature_k": 0.0}, ConfigError, "temperature_k must be positive"),
        ({"constraints": "all"}, ConfigError, "unknown constraints 'all'"),
        ({"report_interval": 0}, ConfigError, "report_interval must be positive"),
        ({"trajectory": "missing-folder/t.dcd"}, FileAccessError, "does not exist"),
        ({"trajectory": "t.xtc"}, ConfigError, "unsupported format"),
        ({"restart": "nothing.xml"}, FileAccessError, "does not exist"),
    ],
)
def test_run_md_rejects_bad_input_without_output(model_path, tmp_path, monkeypatch, kwargs, error, match):
    monkeypatch.chdir(tmp_path)
    args = {"steps": 10, "trajectory": "t.dcd", "report_csv": "s.csv", **kwargs}
    steps = args.pop("steps")
    with pytest.raises(error, match=match):
        wf.run_md("CCO", steps, model=model_path, platform=PLATFORM, **args)
    assert _files(tmp_path) == []


def test_md_stopped_at_once_by_ctrl_c_keeps_what_it_wrote(model_path, tmp_path, monkeypatch):
    """A KeyboardInterrupt inside a step (a second Ctrl-C) stops the run there; the files keep their frames."""
    from physff_openmm.errors import RunInterrupted

    calls = []

    def interrupted_step(self, steps):
        calls.append(steps)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return original(self, steps)

    original = app.Simulation.step
    monkeypatch.setattr(app.Simulation, "step", interrupted_step)
    with pytest.raises(RunInterrupted, match=r"interrupted at step 30; frames and rows up to step 30 are kept in .*t.dcd"):
        wf.run_md("CCO", 1000, model=model_path, platform=PLATFORM, report_interval=10,
                  trajectory=tmp_path / "t.dcd", report_csv=tmp_path / "s.csv")
    assert _files(tmp_path) == ["s.csv", "t.dcd"]
    assert list(wf.read_report_csv(tmp_path / "s.csv")["Step"]) == [0, 10, 20, 30]


def test_atoms_on_top_of_each_other_never_reach_md(model_path, tmp_path):
    from physff_openmm.workflows.simulation import with_positions

    dimer = ensure_conformer(load_molecule("O.O"))
    pos = positions_angstrom(dimer)
    pos[4] = pos[2]  # a hydrogen of the second water on top of one of the first: r = 0
    with pytest.raises(MoleculeError, match=r"atom 2 \(H\) and atom 4 \(H\) are 0.00 A apart"):
        wf.run_md(with_positions(dimer, pos), 20, model=model_path, platform=PLATFORM, minimize_first=False,
                  report_interval=1, report_csv=tmp_path / "s.csv", trajectory=tmp_path / "t.dcd")
    assert _files(tmp_path) == []


# --- interaction energy -----------------------------------------------------------------

def test_interaction_energy_sign_convention(model_path):
    """E(AB) - E(A) - E(B), each evaluated on its own, equals the sum of intermolecular pair terms."""
    from reference_energy import reference_energy

    dimer = ensure_conformer(load_molecule("O.O"))
    res = wf.interaction_energy(dimer, model=model_path, platform=PLATFORM)
    pos = positions_angstrom(dimer)
    frags = [list(f) for f in Chem.GetMolFrags(dimer)]
    assert res["fragments"] == frags == [[0, 2, 3], [1, 4, 5]]
    monomers = Chem.GetMolFrags(dimer, asMols=True)
    e_a = wf.energy(monomers[0], model=model_path, platform=PLATFORM)["energy_kcal_mol"]
    e_b = wf.energy(monomers[1], model=model_path, platform=PLATFORM)["energy_kcal_mol"]
    e_ab = wf.energy(dimer, model=model_path, platform=PLATFORM)["energy_kcal_mol"]
    assert res["complex_energy_kcal_mol"] == pytest.approx(e_ab, abs=1e-8)
    assert res["fragment_energies_kcal_mol"] == pytest.approx([e_a, e_b], abs=1e-8)
    assert res["interaction_energy_kcal_mol"] == pytest.approx(e_ab - e_a - e_b, abs=1e-8)
    # independent: E_lin cancels and only pairs between the two molecules remain
    params = pf.parameterize(dimer, model=model_path)
    ref_ab = reference_energy(params, pos)["total"]
    ref_a = reference_energy(pf.parameterize(monomers[0], model=model_path), pos[frags[0]])["total"]
    ref_b = reference_energy(pf.parameterize(monomers[1], model=model_path), pos[frags[1]])["total"]
    assert res["interaction_energy_kcal_mol"] == pytest.approx(ref_ab - ref_a - ref_b, abs=1e-6)
    assert res["interaction_energy_kj_mol"] == pytest.approx(res["interaction_energy_kcal_mol"] * KCAL_TO_KJ)


def test_interaction_energy_vanishes_at_large_separation(model_path):
    dimer = ensure_conformer(load_molecule("O.O"))
    pos = positions_angstrom(dimer)
    frags = [list(f) for f in Chem.GetMolFrags(dimer)]
    pos[frags[1]] += np.array([50.0, 0.0, 0.0])
    conf = dimer.GetConformer()
    for i, xyz in enumerate(pos):
        conf.SetAtomPosition(i, xyz.tolist())
    res = wf.interaction_energy(dimer, model=model_path, platform=PLATFORM)
    assert abs(res["interaction_energy_kcal_mol"]) < 0.05  # only the dipole-dipole tail is left at 50 A


def test_interaction_energy_minimized_and_single_fragment(model_path):
    with pytest.warns(UserWarning, match=r"no 3D coordinates.*minimization does not find .*binding pose"):
        res = wf.interaction_energy("O.O", minimize=True, model=model_path, platform=PLATFORM)
    with pytest.warns(UserWarning, match=r"no 3D coordinates.*says little about the complex"):
        start = wf.interaction_energy("O.O", model=model_path, platform=PLATFORM)
    assert res["minimized"] and not start["minimized"]
    assert res["complex_energy_kcal_mol"] < start["complex_energy_kcal_mol"]
    with pytest.raises(MoleculeError, match="at least two molecules"):
        wf.interaction_energy("CCO", model=model_path, platform=PLATFORM)


def _shipped_model_available() -> bool:
    try:
        from physff_openmm.registry import resolve_model

        return resolve_model("default")[1].is_file()
    except pf.PhysFFError:
        return False


@pytest.mark.skipif(not _shipped_model_available(), reason="the shipped 'default' model is not installed yet")
def test_water_dimer_is_bound_with_shipped_model():
    from structures import water_dimer

    dimer = water_dimer()
    res = wf.interaction_energy(dimer, minimize=True, platform=PLATFORM)
    assert res["interaction_energy_kcal_mol"] < 0.0, res


# --- plots and files --------------------------------------------------------------------

def test_plots_are_written(tmp_path, model_path):
    pytest.importorskip("matplotlib")
    wf.plot_scan([(-180.0, 0.0), (-60.0, 3.0), (60.0, 3.0)], tmp_path / "scan.png", title="test")
    wf.run_md("CCO", 40, model=model_path, platform=PLATFORM, report_interval=10, report_csv=tmp_path / "s.csv")
    wf.plot_md_report(tmp_path / "s.csv", tmp_path / "md.png")
    for name in ("scan.png", "md.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="unsupported format"):
        wf.plot_scan([(0.0, 0.0)], tmp_path / "scan.xyz")
    assert _files(tmp_path) == ["md.png", "s.csv", "scan.png"]


def test_atomic_output_is_all_or_nothing(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with wf.atomic_output(target) as tmp:
                tmp.write_text("half")
                raise exc
        assert target.read_text() == "old" and _files(tmp_path) == ["out.txt"]
    with wf.atomic_output(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and _files(tmp_path) == ["out.txt"]


def test_check_output_path(tmp_path):
    assert wf.check_output_path(tmp_path / "x.csv") == tmp_path / "x.csv"
    with pytest.raises(FileAccessError, match="does not exist"):
        wf.check_output_path(tmp_path / "no" / "x.csv")
    with pytest.raises(FileAccessError, match="is a folder"):
        wf.check_output_path(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(FileAccessError, match="is not a folder"):
        wf.check_output_path(tmp_path / "file" / "x.csv")
    with pytest.raises(ConfigError, match="unsupported format"):
        wf.check_output_path(tmp_path / "x.mol2", suffixes=(".sdf", ".pdb"))


def test_structures_round_trip(model_path, tmp_path):
    mol, _ = wf.minimize("CC(=O)Nc1ccc(O)cc1.O", model=model_path, platform=PLATFORM)
    for name in ("m.sdf", "m.pdb"):
        wf.write_structures(mol, tmp_path / name)
        back = load_molecule(tmp_path / name)
        assert Chem.MolToSmiles(back) == Chem.MolToSmiles(mol)
        np.testing.assert_allclose(positions_angstrom(back), positions_angstrom(mol), atol=1e-3)
    assert math.isfinite(float(mol.GetProp("physff_energy_kcal_mol")))
    two = Chem.Mol(mol)
    two.AddConformer(Chem.Conformer(mol.GetConformer()), assignId=True)
    with pytest.raises(ConfigError, match="one structure"):  # several structures go to SDF
        wf.write_structures(two, tmp_path / "two.pdb")
    wf.write_structures(two, tmp_path / "two.sdf")
    assert len(Chem.SDMolSupplier(str(tmp_path / "two.sdf"))) == 2
    assert _files(tmp_path) == ["m.pdb", "m.sdf", "two.sdf"]


def test_the_api_takes_openmm_quantities_as_well_as_numbers(model_path):
    plain = wf.run_md("CCO", 10, model=model_path, platform=PLATFORM, temperature_k=310.0, timestep_fs=1.0,
                      friction_per_ps=2.0, seed=4, minimize_first=False)
    quantities = wf.run_md("CCO", 10, model=model_path, platform=PLATFORM, temperature_k=310.0 * unit.kelvin,
                           timestep_fs=0.001 * unit.picoseconds, friction_per_ps=2.0 / unit.picosecond, seed=4,
                           minimize_first=False)
    assert quantities["timestep_fs"] == pytest.approx(1.0)
    assert quantities["potential_energy_kcal_mol"] == pytest.approx(plain["potential_energy_kcal_mol"], rel=1e-9)
    sim = wf.build_simulation("CCO", model=model_path, platform=PLATFORM, temperature_k=300 * unit.kelvin,
                              friction_per_ps=0.5 / unit.femtosecond)
    assert sim.integrator.getFriction().value_in_unit(unit.picosecond**-1) == pytest.approx(500.0)
    _, res = wf.minimize("CCO", model=model_path, platform=PLATFORM,
                         tolerance_kcal_mol_a=1.0 * unit.kilojoule_per_mole / unit.nanometer)
    assert res["final_energy_kcal_mol"] <= res["initial_energy_kcal_mol"]
    with pytest.raises(ConfigError, match=r"temperature_k: 2 ps is not a quantity in kelvin"):
        wf.run_md("CCO", 10, model=model_path, platform=PLATFORM, temperature_k=2 * unit.picosecond)


def test_long_operations_show_progress_only_when_asked_or_on_a_terminal(model_path, capsys):
    from physff_openmm.workflows.simulation import progress_enabled

    assert progress_enabled(True) and not progress_enabled(False)
    assert progress_enabled(None) is False  # pytest's stderr is not a terminal
    wf.torsion_scan("CCCC", (0, 1, 2, 3), 90.0, model=model_path, platform=PLATFORM, progress=True)
    assert "torsion scan" in capsys.readouterr().err
    wf.conformer_scan("CCCO", 3, model=model_path, platform=PLATFORM, progress=True)
    assert "conformers" in capsys.readouterr().err
    wf.minimize("CCO", model=model_path, platform=PLATFORM, progress=True)
    assert "minimizing" in capsys.readouterr().err
    wf.minimize("CCO", model=model_path, platform=PLATFORM)  # default: not on a terminal, quiet
    wf.torsion_scan("CCCC", (0, 1, 2, 3), 90.0, model=model_path, platform=PLATFORM)
    assert capsys.readouterr().err == ""
