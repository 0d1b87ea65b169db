"""physff molecules in water and beside a protein: building the box, MD through the one driver, the CLI.

Small boxes (a few hundred TIP3P waters) and short runs on the CPU platform; the 20 ps
NPT stability check is marked slow. The receptor is a tripeptide cut from OpenMM's own
test.pdb (villin) and capped with a C-terminal oxygen, so that no file is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import app, unit
from rdkit import Chem

from physff_openmm import workflows as wf
from physff_openmm.cli import main
from physff_openmm.errors import ConfigError, MoleculeError
from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
from physff_openmm.workflows.simulation import minimize_context, topology_from_mol, with_positions
from physff_openmm.workflows.solvation import MIN_BOX_PER_CUTOFF, build_solvated_system, parse_ions

from test_workflows import write_bound_model

PLATFORM = "CPU"
LIGAND = "CC(=O)Nc1ccc(O)cc1"  # paracetamol
PADDING_NM = 0.6
WATER_DENSITY_G_ML = 0.997  # 25 C; TIP3P's own is ~0.98-1.00 at 300 K
DENSITY_TOL = 0.05  # relative (issue 15)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("solvation-model") / "test-bound.pt"
    write_bound_model(path)
    return path


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PHYSFF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "physff-cache"))


def tripeptide() -> tuple[app.Topology, np.ndarray]:
    """LEU-SER-ASP of villin (openmm/app/data/test.pdb) with an OXT at the C terminus; positions in nm."""
    pdb = app.PDBFile(str(Path(app.__file__).parent / "data" / "test.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.delete(list(modeller.topology.residues())[3:])
    top = modeller.topology
    x = np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    last = list(top.residues())[-1]
    atoms = {a.name: a for a in last.atoms()}
    c, o, ca = (x[atoms[n].index] for n in ("C", "O", "CA"))
    u, v = (o - c) / np.linalg.norm(o - c), (ca - c) / np.linalg.norm(ca - c)
    d = -(u + v) / np.linalg.norm(u + v)  # the third sp2 direction at C
    top.addBond(atoms["C"], top.addAtom("OXT", app.element.oxygen, last))
    return top, np.vstack([x, c + 0.125 * d])


def complex_files(folder: Path, extra_residue: bool = False) -> tuple[Path, Path]:
    """receptor.pdb (tripeptide + the ligand's heavy atoms as residue LIG, as a PDB entry has it)
    and ligand.sdf (the ligand with hydrogens, in the receptor's frame, 4.5 A beside the peptide)."""
    top, x = tripeptide()
    center = 0.5 * (x.min(axis=0) + x.max(axis=0))
    radius = np.linalg.norm(x - center, axis=1).max()
    mol = ensure_conformer(load_molecule(LIGAND))
    lig = positions_angstrom(mol)
    lig = lig - lig.mean(axis=0) + (center + np.array([radius + 0.45, 0.0, 0.0])) * 10.0
    mol = with_positions(mol, lig)
    sdf = folder / "ligand.sdf"
    with Chem.SDWriter(str(sdf)) as w:
        w.write(mol)
    heavy = Chem.RemoveHs(mol)
    modeller = app.Modeller(top, x * unit.nanometer)
    lig_top = topology_from_mol(heavy)
    next(lig_top.residues()).name = "LIG"
    modeller.add(lig_top, positions_angstrom(heavy) * 0.1 * unit.nanometer)
    if extra_residue:  # a HETATM residue MEI (C-I, as in iodomethane without its hydrogens)
        extra = app.Topology()
        res = extra.addResidue("MEI", extra.addChain())
        extra.addBond(extra.addAtom("C1", app.element.carbon, res), extra.addAtom("I1", app.element.iodine, res))
        where = center - np.array([radius + 0.4, 0.0, 0.0])
        modeller.add(extra, np.array([where, where + [0.214, 0.0, 0.0]]) * unit.nanometer)
    receptor = folder / "receptor.pdb"
    with open(receptor, "w") as fh:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, fh)
    return receptor, sdf


# --- building the box --------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("NaCl:0.15", ("Na+", "Cl-", 0.15)),
    ("KCl", ("K+", "Cl-", 0.0)),
    (" NaBr : 0.1 ", ("Na+", "Br-", 0.1)),
])
def test_parse_ions(text, expected):
    assert parse_ions(text) == expected


@pytest.mark.parametrize("text", ["Salt", "ClNa:0.1", "NaCl:-1", "NaCl:x", "MgCl2:0.1"])
def test_parse_ions_rejects(text):
    with pytest.raises(ConfigError, match="ions"):
        parse_ions(text)


def test_charged_ligand_box_is_neutral_and_large_enough(model_path):
    built = build_solvated_system("CC(=O)[O-]", model=model_path, padding_nm=PADDING_NM, ions="NaCl:0.15")
    nb = next(f for f in built.system.getForces() if isinstance(f, openmm.NonbondedForce))
    total = sum(nb.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge) for i in range(nb.getNumParticles()))
    assert total == pytest.approx(0.0, abs=1e-6)
    assert built.counts["cations"] == built.counts["anions"] + 1 >= 1
    box = built.topology.getPeriodicBoxVectors()
    assert min(box[k][k].value_in_unit(unit.nanometer) for k in range(3)) >= MIN_BOX_PER_CUTOFF * 1.0 - 1e-9
    assert built.counts["ligand_atoms"] == 7 and len(built.physff_bonds) == 6
    assert 100 < built.counts["waters"] < 600
    assert built.energy_offset == pytest.approx(built.generator.parameter_set("CC(=O)[O-]").energy_offset)
    assert nb.getNonbondedMethod() == openmm.NonbondedForce.PME
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(built.system))
    energies = []
    for system in (built.system, copy):
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(PLATFORM))
        ctx.setPeriodicBoxVectors(*box)
        ctx.setPositions(built.positions_nm)
        energies.append(ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    # the CPU platform sums PME forces in single precision, in an order that varies between
    # Contexts (seen: 1.4e-8 relative); a System that lost or changed a term differs far more
    assert energies[0] == pytest.approx(energies[1], rel=1e-6)


def test_unknown_water_model(model_path):
    with pytest.raises(ConfigError, match="unknown water model 'tip9p'"):
        build_solvated_system("CCO", model=model_path, solvent="tip9p")


# --- MD in water through run_md ----------------------------------------------------------

def test_md_in_water_with_outputs_and_restart(model_path, tmp_path):
    common = dict(model=model_path, solvent="tip3p", padding_nm=PADDING_NM, ions="NaCl:0.15", platform=PLATFORM)
    res = wf.run_md(LIGAND, 100, seed=1, report_interval=20, trajectory=tmp_path / "md.dcd",
                    report_csv=tmp_path / "md.csv", checkpoint=tmp_path / "md.xml", structure=tmp_path / "start.pdb",
                    **common)
    assert res["ensemble"] == "npt" and res["pressure_bar"] == 1.0 and res["solvent"] == "tip3p"
    assert res["timestep_fs"] == 2.0 and res["constraints"] == "hbonds"
    assert res["worst_bond"] is not None
    assert 0.85 < res["density_g_ml"] < 1.15
    report = wf.read_report_csv(tmp_path / "md.csv")
    assert list(report["Step"]) == list(range(0, 101, 20))
    assert "Density (g/mL)" in report and "Box Volume (nm^3)" in report
    start = app.PDBFile(str(tmp_path / "start.pdb"))
    assert start.topology.getNumAtoms() == res["n_atoms"] and start.topology.getPeriodicBoxVectors() is not None
    assert (tmp_path / "md.dcd").stat().st_size > 0
    again = wf.run_md(LIGAND, 50, seed=2, restart=tmp_path / "md.xml", **common)
    assert (again["first_step"], again["last_step"]) == (100, 150)
    assert again["time_ps"] == pytest.approx(0.3)


def test_md_in_water_needs_the_native_backend_and_a_solvent_for_its_options(model_path):
    with pytest.raises(ConfigError, match="backend='native'"):
        wf.run_md(LIGAND, 10, model=model_path, solvent="tip3p", backend="torch")
    with pytest.raises(ConfigError, match="padding_nm is for MD in water"):
        wf.run_md(LIGAND, 10, model=model_path, padding_nm=1.0)


@pytest.mark.slow
def test_ligand_in_water_20ps_npt_is_stable(model_path, tmp_path):
    """Minimization, then 20 ps NPT at 300 K with 2 fs steps: no bond breaks, density within 5 % of water's."""
    res = wf.run_md(LIGAND, 10_000, model=model_path, solvent="tip3p", padding_nm=PADDING_NM, platform=PLATFORM,
                    seed=3, report_interval=250, report_csv=tmp_path / "md.csv")
    assert abs(res["max_bond_change"]) < 0.3
    report = wf.read_report_csv(tmp_path / "md.csv")
    late = report["Time (ps)"] >= 10.0
    density = float(np.mean(report["Density (g/mL)"][late]))
    assert abs(density / WATER_DENSITY_G_ML - 1.0) < DENSITY_TOL
    assert 280.0 < float(np.mean(report["Temperature (K)"][late])) < 320.0


# --- beside a protein --------------------------------------------------------------------

def test_complex_replaces_the_pdb_ligand_and_runs_2ps(model_path, tmp_path):
    receptor, sdf = complex_files(tmp_path)
    res = wf.run_md(sdf, 1000, receptor=receptor, model=model_path, padding_nm=PADDING_NM, platform=PLATFORM, seed=4,
                    structure=tmp_path / "start.pdb")
    assert res["time_ps"] == pytest.approx(2.0)
    top = app.PDBFile(str(tmp_path / "start.pdb")).topology
    names = [r.name for r in top.residues() if r.name != "HOH"]
    assert names.count("LIG") == 0 and names.count("MOL") == 1  # the PDB's ligand was replaced by the SDF's
    assert names[:3] == ["LEU", "SER", "ASP"]
    mol_atoms = [a.element.symbol for r in top.residues() if r.name == "MOL" for a in r.atoms()]
    assert len(mol_atoms) == 20 and mol_atoms.count("H") == 9


def test_receptor_residue_with_an_unsupported_element(model_path, tmp_path):
    receptor, sdf = complex_files(tmp_path, extra_residue=True)
    with pytest.raises(MoleculeError, match=r"residue MEI .* contains I, which the physff model does not support"):
        build_solvated_system(sdf, receptor=receptor, model=model_path, padding_nm=PADDING_NM)


# --- the command line --------------------------------------------------------------------

def test_cli_md_in_water(model_path, tmp_path, capsys):
    rc = main(["md", LIGAND, "--solvent", "tip3p", "--padding", str(PADDING_NM), "--ions", "NaCl:0.15",
               "--steps", "20", "-o", str(tmp_path / "md.dcd"), "--structure", str(tmp_path / "start.pdb"),
               "--model", str(model_path), "--platform", PLATFORM, "--seed", "5", "--no-minimize", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "NPT" in out and "tip3p waters" in out and "density" in out
    assert (tmp_path / "md.dcd").stat().st_size > 0 and (tmp_path / "start.pdb").is_file()


def test_cli_md_complex(model_path, tmp_path, capsys):
    receptor, sdf = complex_files(tmp_path)
    rc = main(["md", str(receptor), "--ligand", str(sdf), "--padding", str(PADDING_NM), "--steps", "20",
               "-o", str(tmp_path / "md.dcd"), "--model", str(model_path), "--platform", PLATFORM, "--no-minimize",
               "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert '"solvent": "tip3p"' in out and '"ensemble": "npt"' in out


@pytest.mark.parametrize("args, message", [
    (["--solvent", "tip3p", "--ions", "NaCl:lots"], "ions 'NaCl:lots'"),
    (["--padding", "1.0"], "--padding is for MD in water"),
    (["--ensemble", "npt"], "NPT needs a periodic box"),
    (["--solvent", "tip9p"], "unknown water model 'tip9p'"),
])
def test_cli_md_in_water_bad_input(model_path, tmp_path, capsys, args, message):
    rc = main(["md", "CCO", "--steps", "10", "-o", str(tmp_path / "md.dcd"), "--model", str(model_path),
               "--platform", PLATFORM, *args])
    out, err = capsys.readouterr()
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "md.dcd").exists()


def test_ligand_far_from_or_inside_the_receptor_warns():
    from physff_openmm.workflows.solvation import _check_placement

    top, x = tripeptide()
    modeller = app.Modeller(top, x * unit.nanometer)
    with pytest.warns(RuntimeWarning, match="is far from the receptor r.pdb .* frame"):
        _check_placement(modeller, (x[:3] + 10.0) * unit.nanometer, "r.pdb")
    with pytest.warns(RuntimeWarning, match="overlaps the receptor"):
        _check_placement(modeller, x[:3] * unit.nanometer, "r.pdb")


@pytest.mark.parametrize("solvent", ["tip3pfb", "spce", "opc3", "tip4pew"])
def test_other_water_models(model_path, solvent):
    """Each water model builds a neutral box with the ligand and takes a few steps."""
    sim = wf.build_solvated_simulation("CCO", model=model_path, solvent=solvent, padding_nm=PADDING_NM,
                                       platform=PLATFORM, seed=6)
    minimize_context(sim.context, 1.0, 100)
    sim.step(10)
    e = sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert np.isfinite(e) and e < 0
    residues = {r.name for r in sim.topology.residues()}
    assert "HOH" in residues
    if solvent == "tip4pew":  # a virtual site per water
        assert sum(1 for i in range(sim.system.getNumParticles()) if sim.system.isVirtualSite(i)) == sim.physff_system.counts["waters"]
