"""The shipped trained model: provenance, size, and physical sanity through the runtime path."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import physff_openmm as pf
from physff_openmm.registry import MODELS_DIR, resolve_model

from pathlib import Path

INDEX = json.loads((MODELS_DIR / "index.json").read_text())
ROOT = Path(__file__).resolve().parents[1]
#: The trained models and the recipe each was written by.
TRAINED = {
    "physff-v2.9": "training/default_model.yaml",
    "physff-v2.10": "training/default_model.yaml",
    "physff-v2.11": "training/default_model.yaml",
}
SHIPPED = [n for n in TRAINED if n in INDEX]
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no trained model is installed in this checkout")


def test_default_is_a_trained_model():
    name, _ = resolve_model("default")
    assert name in TRAINED, f"'default' points at {name}"
    assert pf.load_model("default").metadata["level"] == "b3lyp-d3bj/def2-svp"


@pytest.mark.parametrize("NAME", SHIPPED)
def test_trained_model_ships_with_provenance_and_hash(NAME):
    name, path = resolve_model(NAME)
    assert name == NAME and path.is_file()
    assert path.stat().st_size < 5 * 2**20  # small enough for the wheel
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loads by name without a warning
        model = pf.load_model(NAME)
    assert model.file_hash == INDEX[NAME]["sha256"]
    meta = model.metadata
    assert meta["level"] == "b3lyp-d3bj/def2-svp"
    assert meta["data"]["recipe"] == TRAINED[NAME] and (ROOT / TRAINED[NAME]).is_file()
    splits = meta["data"]["public_splits"]
    assert {"conformers", "torsions", "ncia"} <= set(splits)
    assert all(splits[s]["test_molecules"] > 0 for s in ("conformers", "torsions", "ncia"))
    assert "md_stability" in meta["metrics"] and "test" in meta["metrics"]
    assert meta["metrics"]["md_stability"]["all_stable"]
    assert meta["metrics"].get("minimization", {"all_kept": True})["all_kept"]  # recorded since physff-v2.8
    assert len(model.file_hash) == 64


@pytest.mark.parametrize("NAME", SHIPPED)
@pytest.mark.parametrize(
    "smiles", ["O", "N", "NC=O", "CO", "C[NH3+]", "[NH3+]CC(=O)[O-]", "O.O", "CC(=O)Nc1ccc(O)cc1", "OC(=O)c1ccccc1Cl"]
)
def test_minimization_keeps_every_bond(NAME, smiles):
    """Minimization from an RDKit geometry moves no bond more than 20 % (issue 13's line; v1 tore water apart)."""
    from physff_openmm import workflows as wf
    from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom

    start = ensure_conformer(load_molecule(smiles))
    mol, _ = wf.minimize(start, model=NAME, platform="Reference")
    x0, x = positions_angstrom(start), positions_angstrom(mol)
    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in start.GetBonds()])
    r0 = np.linalg.norm(x0[bonds[:, 0]] - x0[bonds[:, 1]], axis=1)
    r = np.linalg.norm(x[bonds[:, 0]] - x[bonds[:, 1]], axis=1)
    assert np.abs(r / r0 - 1.0).max() <= 0.20


@pytest.mark.parametrize("NAME", SHIPPED)
def test_every_bond_of_the_shipped_model_is_bound_at_its_curve_minimum(NAME):
    """Each bond's own energy, at its numerical minimum r*: >= 10 kcal/mol higher at 0.75 r* and at r_off."""
    from reference_energy import gaussians, switch

    for smiles in ["CC(=O)Nc1ccc(O)cc1", "C[NH3+]", "[NH3+]CC(=O)[O-]", "COP(=O)(OC)Oc1ccc(Br)cc1", "FC(F)(F)S(=O)(=O)N", "C#N"]:
        p = pf.parameterize(smiles, model=NAME)
        r_on, r_off = p.switch
        for c, re in zip(p.covalent_parameters, p.equilibrium_lengths()):
            def e(r):
                return -c[0] / r**6 + c[1] / r**12 + switch(r, r_on, r_off) * gaussians(r, c)

            grid = np.linspace(0.6 * re, r_off, 1500)
            values = np.array([e(r) for r in grid])
            r_min = grid[np.argmin(values)]
            assert e(0.75 * r_min) - values.min() >= 10.0 and e(r_off) - values.min() >= 10.0


@pytest.mark.parametrize("NAME", SHIPPED)
def test_water_charges_and_hydrogen_bond(NAME):
    """Charges have the chemically expected signs; the water dimer is bound by a few kcal/mol.

    CCSD(T)/CBS puts the water dimer's interaction energy at about -5.0 kcal/mol.
    """
    from structures import water_dimer

    from physff_openmm import workflows as wf

    params = pf.parameterize("O", model=NAME)
    q = params.charges
    assert q[0] < -0.3 and np.all(q[1:] > 0.15) and abs(q.sum()) < 1e-9
    res = wf.interaction_energy(water_dimer(), model=NAME, minimize=False, platform="Reference")
    assert -8.0 < res["interaction_energy_kcal_mol"] < -2.0, res


def test_a_shipped_model_is_hashed_once_when_loaded(monkeypatch):
    """The registry checks a shipped file's SHA-256 before reading it and hands that hash to the loader."""
    import physff_openmm.model as model_module
    import physff_openmm.registry as registry

    calls = []

    def counting(path):
        calls.append(path)
        return original(path)

    original = model_module.file_sha256
    monkeypatch.setattr(registry, "file_sha256", counting)
    monkeypatch.setattr(model_module, "file_sha256", counting)
    monkeypatch.setattr(registry, "_cache", {})
    model = registry.load_model("default")
    assert len(calls) == 1 and model.file_hash == INDEX[resolve_model("default")[0]]["sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("NAME", SHIPPED)
def test_the_shipped_model_runs_a_ligand_in_water(NAME, tmp_path):
    """Paracetamol in TIP3P with the shipped model's own per-atom rule (lj_net): 4 ps NPT, bonds kept, water-like box."""
    from physff_openmm import workflows as wf

    res = wf.run_md("CC(=O)Nc1ccc(O)cc1", 2000, model=NAME, solvent="tip3p", padding_nm=0.8, platform="CPU",
                    seed=7, report_interval=100, report_csv=tmp_path / "md.csv")
    assert abs(res["max_bond_change"]) < 0.3
    report = wf.read_report_csv(tmp_path / "md.csv")
    late = report["Time (ps)"] >= 2.0
    assert 0.9 < float(np.mean(report["Density (g/mL)"][late])) < 1.1  # 4 ps: near water's density, not yet equilibrated
    assert np.all(np.isfinite(report["Potential Energy (kJ/mole)"]))


@pytest.mark.parametrize("NAME", [n for n in SHIPPED if pf.load_model(n).config.resonance_features])
@pytest.mark.parametrize("smiles,equivalent", [
    ("CC(=O)[O-]", (2, 3)), ("O=[N+]([O-])c1ccccc1", (0, 2)), ("NC(N)=[NH2+]", (0, 2)),
    ("CS(=O)(=O)[O-]", (2, 4)), ("[O-]S(=O)(=O)C", (0, 2)), ("COP(=O)([O-])[O-]", (3, 5)),
])
def test_resonance_equivalent_atoms_of_the_shipped_model_are_alike(NAME, smiles, equivalent):
    """A carboxylate's two O (a nitro group's, a guanidinium's N, a sulfonate's or phosphate's O) get one charge
    and bonds of one length."""
    p = pf.parameterize(smiles, model=NAME, cache=False)
    a, b = equivalent
    assert p.charges[a] == pytest.approx(p.charges[b], abs=1e-9)
    bonds = {tuple(x): r for x, r in zip(p.covalent_pairs.tolist(), p.equilibrium_lengths())}
    (center,) = [k for k in range(p.n_atoms) if (min(a, k), max(a, k)) in bonds and (min(b, k), max(b, k)) in bonds]
    assert bonds[(min(a, center), max(a, center))] == pytest.approx(bonds[(min(b, center), max(b, center))], abs=1e-9)


@pytest.mark.parametrize("NAME", [n for n in SHIPPED if pf.load_model(n).config.lj_sigma_floor > 0])
def test_hydroxide_meets_tip3p_water_with_a_wall(NAME):
    """Water (TIP3P) donating to hydroxide (physff) along the O-H...O line: at an O...O distance of 1.96 A the
    interaction is above that at 2.45 A, where the complex is bound (physff-v2.10, without the floor on sigma, bound
    more at 1.96: -23.5 against -28.7 kcal/mol)."""
    from structures import tip3p_interaction

    bend = np.deg2rad(104.52)

    def frame(d):
        water_h = np.array([-0.9572, 0.0, 0.0])
        other_h = 0.9572 * np.array([-np.cos(bend), np.sin(bend), 0.0])
        o_w = np.array([d, 0.0, 0.0])
        return np.array([[0.0, 0.0, 0.0], [-0.97, 0.0, 0.0], o_w, o_w + water_h, o_w + other_h])

    e_short, e_bound = tip3p_interaction("[OH-]", NAME, np.stack([frame(1.96), frame(2.45)]))
    assert e_bound < -20.0
    assert e_short > e_bound
