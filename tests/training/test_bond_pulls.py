"""Bonds pulled apart for training (bonds to H; acyclic bonds between heavy atoms): which bonds, the
geometries, GFN2-xTB labels, the recipe sections."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rdkit")

from physff_openmm.errors import ConfigError  # noqa: E402

HARTREE_KCAL = 627.5094740631


def test_pull_bonds_take_heteroatom_and_carbon_hydrogens_in_turn():
    from physff_openmm.molecule import load_molecule
    from physff_openmm.training.data import _pull_bonds

    mol = load_molecule("OCC(N)C")  # O-H, two N-H, six C-H
    bonds = _pull_bonds(mol, 20, np.random.default_rng(0))
    assert len(bonds) == 9 and len(set(bonds)) == 9
    heavy = [mol.GetAtomWithIdx(i).GetSymbol() for i, _ in bonds]
    assert heavy[0] in "ON" and heavy[1] == "C" and heavy[2] in "ON" and heavy[3] == "C" and heavy[4] in "ON"
    assert heavy[5:] == ["C"] * 4  # the heteroatom bonds ran out
    for i, j in bonds:
        assert mol.GetBondBetweenAtoms(i, j) is not None and mol.GetAtomWithIdx(j).GetAtomicNum() == 1
    assert _pull_bonds(mol, 3, np.random.default_rng(0)) == bonds[:3]
    assert _pull_bonds(load_molecule("C(Cl)(Cl)(Cl)Cl"), 4, np.random.default_rng(0)) == []


def test_bent_angles_turn_the_hydrogen_about_its_atom_both_ways():
    from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
    from physff_openmm.training.data import MAX_BENT_ANGLE_DEG, bend_angles, bend_angle_geometries

    mol = ensure_conformer(load_molecule("OCC#C"))
    angles = bend_angles(mol, 20, np.random.default_rng(0))
    assert len(angles) == 4 and len({a[0] for a in angles}) == 4  # every H once
    assert (7, 3, 2) in angles  # the linear H-C#C angle
    assert any(mol.GetAtomWithIdx(y).GetAtomicNum() == 1 for _, _, y in angles)  # a CH2 H bends against its twin H
    x0 = positions_angstrom(mol)

    def angle(g, h, x, y):
        u, v = g[h] - g[x], g[y] - g[x]
        return np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))

    changes = (-40.0, -20.0, 20.0, 40.0)
    for h, x, y in angles:
        assert mol.GetBondBetweenAtoms(h, x) is not None and mol.GetBondBetweenAtoms(x, y) is not None
        theta0 = angle(x0, h, x, y)
        for d, g in zip(changes, bend_angle_geometries(x0, (h, x, y), changes)):
            assert np.linalg.norm(g[h] - g[x]) == pytest.approx(np.linalg.norm(x0[h] - x0[x]), abs=1e-9)
            assert angle(g, h, x, y) == pytest.approx(min(theta0 + d, MAX_BENT_ANGLE_DEG), abs=1e-6)
            assert np.flatnonzero(np.abs(g - x0).max(axis=1) > 0).tolist() == [h]
            if theta0 + d < MAX_BENT_ANGLE_DEG:  # the H stays in the plane of the angle
                n = np.cross(x0[h] - x0[x], x0[y] - x0[x])
                assert abs((g[h] - g[x]) @ n) < 1e-6 * np.linalg.norm(n)


def test_pulled_methanol_rises_along_each_bond_in_gfn2_xtb():
    pytest.importorskip("tblite")
    from physff_openmm.training.data import XTBSampling, _xtb_molecule
    from physff_openmm.training.keys import XTB_LEVEL
    from physff_openmm.training.recipe import pull_sampling
    from physff_openmm.training.xtb import xtb_energy_forces

    pull = (1.4, 1.8, 2.2, 2.7)
    rec = _xtb_molecule(("methanol", "CO", pull_sampling(n_bonds=2, pull=pull, n_angles=2, opt_steps=20, seed=0)))
    assert rec.level == XTB_LEVEL and rec.conformer_ids[0] == "c0"
    assert "2 bonds to H pulled to 1.4, 1.8, 2.2, 2.7 times their length" in rec.source
    assert "2 angles H-X-Y bent by -40, -20, +20, +40 degrees" in rec.source
    assert len(rec.conformer_ids) == 1 + 2 * len(pull) + 2 * 4
    bent = ((rec.energy[-8:] - rec.energy[0]) * HARTREE_KCAL).reshape(2, 4)  # -40, -20, +20, +40 of each angle
    assert bent.min() > 1.0  # bending either way costs
    assert np.all(bent[:, 0] > bent[:, 1]) and np.all(bent[:, 3] > bent[:, 2])  # more the further
    e = (rec.energy - rec.energy[0]) * HARTREE_KCAL
    x0 = rec.positions[0]
    on = set()
    for b in range(2):
        ids = rec.conformer_ids[1 + b * len(pull): 1 + (b + 1) * len(pull)]
        i, j = (int(a) for a in ids[0].split("-pull")[1].split("-")[0].split("_"))
        on.add(int(rec.species[i]))
        r0 = np.linalg.norm(x0[j] - x0[i])
        for k, f in zip(range(1 + b * len(pull), 1 + (b + 1) * len(pull)), pull):
            x = rec.positions[k]
            assert np.linalg.norm(x[j] - x[i]) == pytest.approx(f * r0, rel=1e-5)  # float32 positions
            moved = np.flatnonzero(np.abs(x - x0).max(axis=1) > 1e-5)
            assert moved.tolist() == [j]  # only the H moves
        profile = e[1 + b * len(pull): 1 + (b + 1) * len(pull)]
        assert profile[0] > 10.0 and np.all(np.diff(profile) > 0.0)  # dissociation is uphill all the way
    assert on == {6, 8}  # one O-H, one C-H
    k = 1 + 2 * len(pull) - 1
    e_ref, f_ref = xtb_energy_forces(rec.species.astype(int), rec.positions[k], 0)
    assert rec.energy[k] == pytest.approx(e_ref, abs=1e-8)
    np.testing.assert_allclose(rec.forces[k], f_ref, atol=1e-8)
    with pytest.raises(ConfigError, match="pull lengths must be multiples > 1"):
        XTBSampling(n_bond_pulls=1, pull=(0.9, 1.5))
    with pytest.raises(ConfigError, match="angle bends must be non-zero changes below 90"):
        XTBSampling(n_angle_bends=1, bend=(-20.0, 0.0))


def test_bond_pull_section_of_the_recipe():
    from physff_openmm.training.config import DefaultModelConfig, load_config
    from physff_openmm.training.recipe import pull_sampling

    cfg = load_config({"bond_pulls": {"n_molecules": 3, "pull": [1.5, 2.5]}}, DefaultModelConfig)
    assert cfg.bond_pulls.n_bonds == 4 and cfg.bond_pulls.pull == [1.5, 2.5] and cfg.bond_pulls.max_energy_kcal_mol == 200.0
    assert cfg.bond_pulls.n_angles == 6 and cfg.bond_pulls.bend == [-40.0, -20.0, 20.0, 40.0]
    assert load_config({}, DefaultModelConfig).bond_pulls.n_molecules == 0  # none unless asked for
    for bad in ({"pull": [1.0]}, {"n_bonds": 0}, {"n_molecules": -1}, {"charged_fraction": 2.0}, {"bend": [-20.0, 0.0]}, {"bend": [95.0]},
                {"n_angles": -1}):
        with pytest.raises(ConfigError, match="bond_pulls: need"):
            load_config({"bond_pulls": bad}, DefaultModelConfig)
    s = pull_sampling(n_bonds=3, pull=[1.5, 2.0], n_angles=2, bend=[-30], seed=4)
    assert (s.n_bond_pulls, s.pull, s.n_angle_bends, s.bend) == (3, (1.5, 2.0), 2, (-30.0,))
    assert (s.n_md, s.n_normal_modes, s.n_conformers, s.seed) == (0, 0, 1, 4)


def test_xtb_drug_like_labels_pulls_of_xtb_frames_molecules_and_resumes(tmp_path):
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("tblite")
    from rdkit import Chem

    from physff_openmm.training.dataset import read_dataset
    from physff_openmm.training.recipe import pull_sampling, xtb_drug_like

    frames = tmp_path / "xtb_frames_0.h5"
    with h5py.File(frames, "w") as f:
        for g, smi in enumerate(["CO", "CCO"]):
            mol = Chem.AddHs(Chem.MolFromSmiles(smi))
            for a in mol.GetAtoms():
                a.SetAtomMapNum(a.GetIdx() + 1)
            f.create_group(f"m{g:03d}").attrs["mapped_smiles"] = Chem.MolToSmiles(mol)
    out = tmp_path / "bond_pulls.h5"
    sampling = pull_sampling(n_bonds=1, pull=[1.5], n_angles=0, opt_steps=3)
    info = xtb_drug_like(out, frames, 2, sampling, charged_fraction=0.0)
    assert info["molecules"] == 2 and info["molecules_labelled"] == 2 and info["geometries_written"] == 4
    recs = read_dataset(out)
    assert sorted(r.name for r in recs) == ["xtb_m000", "xtb_m001"]  # named like their frames: the split follows
    assert all(r.conformer_ids[1].endswith("-1.5") and r.energy[1] > r.energy[0] for r in recs)
    assert xtb_drug_like(out, frames, 2, sampling, charged_fraction=0.0)["molecules_labelled"] == 0  # resumed


def test_heavy_pulls_take_bonds_at_charged_groups_first_and_move_one_side_whole():
    from physff_openmm.errors import PhysFFError
    from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
    from physff_openmm.training.data import fragment_pull_geometries, heavy_pull_bonds

    mol = ensure_conformer(load_molecule("CCOC(=O)c1ccccc1CC[NH3+]"))
    bonds = heavy_pull_bonds(mol, 50, np.random.default_rng(0))
    heavy_acyclic = [b for b in mol.GetBonds() if not b.IsInRing() and b.GetBeginAtom().GetAtomicNum() > 1
                     and b.GetEndAtom().GetAtomicNum() > 1]
    assert len(bonds) == len(heavy_acyclic) == 8 and len({frozenset(b) for b in bonds}) == 8
    assert {frozenset(b) for b in bonds[:2]} == {frozenset((11, 12)), frozenset((12, 13))}  # at the ammonium first
    assert heavy_pull_bonds(mol, 3, np.random.default_rng(0)) == bonds[:3]
    assert heavy_pull_bonds(load_molecule("c1ccccc1"), 3, np.random.default_rng(0)) == []  # ring bonds stay
    x0 = positions_angstrom(mol)
    pairs = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()])
    r0 = np.linalg.norm(x0[pairs[:, 0]] - x0[pairs[:, 1]], axis=1)
    for i, j in bonds:
        geoms = fragment_pull_geometries(mol, x0, (i, j), [1.2, 1.8])
        assert geoms.shape == (2, *x0.shape)
        for f, g in zip((1.2, 1.8), geoms):
            r = np.linalg.norm(g[pairs[:, 0]] - g[pairs[:, 1]], axis=1)
            this = [k for k, (a, b) in enumerate(pairs) if {a, b} == {i, j}]
            assert r[this[0]] == pytest.approx(f * r0[this[0]], rel=1e-9)
            np.testing.assert_allclose(np.delete(r, this), np.delete(r0, this), atol=1e-9)  # no other bond changes
            moved = np.flatnonzero(np.abs(g - x0).max(axis=1) > 1e-9)
            assert j in moved and i not in moved and len(moved) <= mol.GetNumAtoms() / 2  # the smaller side moves
    with pytest.raises(PhysFFError, match="in a ring"):
        fragment_pull_geometries(mol, x0, (5, 6), [1.2])


def test_pulled_glycine_zwitterion_rises_along_each_heavy_bond_in_gfn2_xtb():
    """The bond a model once let go in minimization (the zwitterion's C-C): GFN2-xTB, relaxed in
    ALPB water so that the zwitterion keeps its protons, rises along it."""
    pytest.importorskip("tblite")
    from physff_openmm.training.data import XTBSampling, _xtb_molecule
    from physff_openmm.training.recipe import pull_sampling
    from physff_openmm.training.xtb import xtb_energy_forces

    pull = (1.15, 1.3, 1.5)
    sampling = pull_sampling(n_bonds=0, n_angles=0, n_heavy=3, heavy_pull=pull, solvent="water", seed=0)
    rec = _xtb_molecule(("glycine", "[NH3+]CC(=O)[O-]", sampling))
    assert "3 acyclic bonds between heavy atoms pulled to 1.15, 1.3, 1.5 times their length" in rec.source
    assert "labels: gas-phase GFN2-xTB" in rec.source
    assert len(rec.conformer_ids) == 1 + 3 * len(pull)
    e = (rec.energy - rec.energy[0]) * HARTREE_KCAL
    pulled = set()
    for b in range(3):
        i, j = (int(a) for a in rec.conformer_ids[1 + b * len(pull)].split("-hpull")[1].split("-")[0].split("_"))
        pulled.add(frozenset((int(rec.species[i]), int(rec.species[j]))))
        profile = e[1 + b * len(pull): 1 + (b + 1) * len(pull)]
        assert profile[0] > 3.0 and np.all(np.diff(profile) > 5.0)  # uphill all the way
    assert frozenset((6,)) in pulled  # the C-C
    k = len(rec.conformer_ids) - 1
    e_ref, f_ref = xtb_energy_forces(rec.species.astype(int), rec.positions[k], 0)
    assert rec.energy[k] == pytest.approx(e_ref, abs=1e-8)
    np.testing.assert_allclose(rec.forces[k], f_ref, atol=1e-8)
    with pytest.raises(ConfigError, match="pull lengths must be multiples > 1"):
        XTBSampling(n_heavy_pulls=1, heavy_pull=(1.0,))


def test_heavy_pull_section_of_the_recipe():
    from physff_openmm.training.config import DefaultModelConfig, load_config

    cfg = load_config({"heavy_pulls": {"n_molecules": 3}}, DefaultModelConfig)
    h = cfg.heavy_pulls
    assert (h.n_bonds, h.pull, h.charged_fraction, h.solvent, h.max_energy_kcal_mol) == (3, [1.15, 1.3, 1.5, 1.8], 0.5, "water", 200.0)
    assert load_config({}, DefaultModelConfig).heavy_pulls.n_molecules == 0  # none unless asked for
    for bad in ({"pull": [0.9]}, {"n_bonds": 0}, {"n_molecules": -1}, {"charged_fraction": -0.1}):
        with pytest.raises(ConfigError, match="heavy_pulls: need"):
            load_config({"heavy_pulls": bad}, DefaultModelConfig)


def test_cleaved_bonds_are_labelled_with_the_lower_of_the_closed_shell_and_the_high_spin_state():
    """Cleavages take a bond out to its two sides apart; each frame carries the lower GFN2-xTB state, so
    that the labels climb from the bound molecule to a plateau (the dissociation energy) and stay there."""
    pytest.importorskip("tblite")
    from physff_openmm.errors import QMError
    from physff_openmm.molecule import load_molecule
    from physff_openmm.training.data import XTBSampling, _xtb_molecule, cleavage_spin
    from physff_openmm.training.recipe import pull_sampling
    from physff_openmm.training.xtb import xtb_energy_forces

    mol = load_molecule("CC(=O)NC")
    assert cleavage_spin(mol, (1, 2)) == 4 and cleavage_spin(mol, (1, 3)) == 2  # C=O, C-N
    cleave = (2.2, 3.0, 7.0)
    sampling = pull_sampling(n_bonds=0, n_angles=0, n_cleave=2, cleave=cleave, max_energy_kcal_mol=350.0, seed=0)
    rec = _xtb_molecule(("ethanol", "CCO", sampling))
    assert "2 acyclic bonds between heavy atoms cleaved to 2.2, 3, 7 times their length" in rec.source
    assert len(rec.conformer_ids) == 1 + 2 * len(cleave)
    e = (rec.energy - rec.energy[0]) * HARTREE_KCAL
    for b in range(2):
        profile = e[1 + b * len(cleave): 1 + (b + 1) * len(cleave)]
        assert 80.0 < profile.min() and profile.max() < 200.0  # a plateau near the C-C / C-O dissociation energy
        assert np.ptp(profile) < 20.0
    species = rec.species.astype(int)

    def states(x) -> list:
        """The converged ones of the closed-shell and the triplet state at ``x``."""
        out = []
        for uhf in (None, 2):
            try:
                out.append(xtb_energy_forces(species, x, 0, uhf=uhf))
            except QMError:  # an SCF that does not converge: the other state labels the frame
                pass
        return out

    for k in range(1, len(rec.conformer_ids)):
        lower = min(states(rec.positions[k]), key=lambda s: s[0])
        assert rec.energy[k] == pytest.approx(lower[0], abs=1e-6)
        np.testing.assert_allclose(rec.forces[k], lower[1], atol=1e-5)
    with pytest.raises(ConfigError, match="pull lengths must be multiples > 1"):
        XTBSampling(n_cleavages=1, cleave=(0.8,))


def test_cleavage_section_of_the_recipe():
    from physff_openmm.training.config import DefaultModelConfig, load_config

    cfg = load_config({"cleavages": {"n_molecules": 3}}, DefaultModelConfig)
    c = cfg.cleavages
    assert (c.n_bonds, c.pull, c.charged_fraction, c.solvent, c.max_energy_kcal_mol) == (3, [2.2, 2.6, 3.0, 4.0, 7.0], 0.25, "water", 350.0)
    assert load_config({}, DefaultModelConfig).cleavages.n_molecules == 0  # none unless asked for
    for bad in ({"pull": [1.0]}, {"n_bonds": 0}, {"n_molecules": -1}, {"charged_fraction": 2.0}):
        with pytest.raises(ConfigError, match="cleavages: need"):
            load_config({"cleavages": bad}, DefaultModelConfig)
