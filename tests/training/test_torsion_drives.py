"""Torsion drives for training: rotatable bonds, MMFF94-relaxed drives, GFN2-xTB labels, the molecule list."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rdkit")

from physff_openmm.errors import ConfigError  # noqa: E402


def _dihedral(x, t):
    """Dihedral angle (degrees) of atoms t in positions x, computed here independently of RDKit."""
    b0, b1, b2 = x[t[0]] - x[t[1]], x[t[2]] - x[t[1]], x[t[3]] - x[t[2]]
    b1 = b1 / np.linalg.norm(b1)
    v, w = b0 - (b0 @ b1) * b1, b2 - (b2 @ b1) * b1
    return np.degrees(np.arctan2(np.cross(b1, v) @ w, v @ w))


def test_rotatable_torsions_skip_rings_terminal_rotors_and_triple_bonds():
    from physff_openmm.molecule import load_molecule
    from physff_openmm.training.data import rotatable_torsions

    # N-phenylacetamide: ring-N and N-C(=O) rotate; C-CH3, the ring bonds and N-H do not
    mol = load_molecule("CC(=O)Nc1ccccc1")
    found = rotatable_torsions(mol, 10, np.random.default_rng(0))
    centres = sorted(tuple(sorted(t[1:3])) for t in found)
    assert centres == [(1, 3), (3, 4)]
    for i, j, k, l in found:
        assert all(mol.GetBondBetweenAtoms(a, b) is not None for a, b in ((i, j), (j, k), (k, l)))
        assert mol.GetAtomWithIdx(i).GetAtomicNum() > 1 and mol.GetAtomWithIdx(l).GetAtomicNum() > 1
    assert len(rotatable_torsions(mol, 1, np.random.default_rng(0))) == 1
    assert rotatable_torsions(load_molecule("CC#CC(C)O"), 10, np.random.default_rng(0)) == []
    assert rotatable_torsions(load_molecule("C1CCCCC1"), 10, np.random.default_rng(0)) == []


def test_torsion_drive_turns_the_dihedral_in_steps_and_keeps_the_bonds():
    from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
    from physff_openmm.training.data import torsion_drive_geometries
    from physff_openmm.training.sources import connectivity_matches

    mol = ensure_conformer(load_molecule("CCCC"))
    x0 = positions_angstrom(mol)
    t = (0, 1, 2, 3)
    drive = torsion_drive_geometries(mol, x0, t, 30.0)
    assert len(drive) == 12
    start = _dihedral(x0, t)
    for k, (angle, x) in enumerate(drive):
        expected = (start + 30.0 * k + 180.0) % 360.0 - 180.0
        assert angle == pytest.approx(expected)
        got = _dihedral(x, t)
        assert abs((got - angle + 180.0) % 360.0 - 180.0) < 1.0  # held by the restraint
        assert connectivity_matches(mol, x)
    assert np.ptp([_dihedral(x, t) for _, x in drive]) > 300.0


def test_label_torsion_drives_with_xtb_forces(tmp_path):
    pytest.importorskip("tblite")
    from physff_openmm.training.data import XTBSampling, _xtb_molecule
    from physff_openmm.training.keys import XTB_LEVEL
    from physff_openmm.training.recipe import torsion_sampling
    from physff_openmm.training.xtb import xtb_energy_forces

    sampling = torsion_sampling(n_scans=1, step_deg=60.0, opt_steps=5, seed=0)
    rec = _xtb_molecule(("butanol", "CCCCO", sampling))
    assert rec.level == XTB_LEVEL and rec.conformer_ids[0] == "c0"
    drive = [c for c in rec.conformer_ids if "-tor" in c]
    assert len(drive) == 6 and "drives of up to 1 rotatable bonds in 60 degree steps" in rec.source
    e = (rec.energy - rec.energy.min()) * 627.5094740631
    assert e.max() > 0.5 and e.max() <= 60.0  # a barrier is seen, the cap holds
    k = rec.conformer_ids.index(drive[2])
    e_ref, f_ref = xtb_energy_forces(rec.species.astype(int), rec.positions[k], 0)
    assert rec.energy[k] == pytest.approx(e_ref, abs=1e-8)
    np.testing.assert_allclose(rec.forces[k], f_ref, atol=1e-8)
    with pytest.raises(ConfigError, match="torsion_step_deg must divide 360"):
        XTBSampling(torsion_step_deg=35.0)


def test_torsion_molecules_mix_charged_variants_and_extend(tmp_path):
    h5py = pytest.importorskip("h5py")
    from rdkit import Chem

    from physff_openmm.training.recipe import torsion_molecules

    frames = tmp_path / "xtb_frames_0.h5"
    with h5py.File(frames, "w") as f:
        for g in range(12):
            smi = "N" + "C" * (g + 2) + "C(=O)O"
            mol = Chem.AddHs(Chem.MolFromSmiles(smi))
            for a in mol.GetAtoms():
                a.SetAtomMapNum(a.GetIdx() + 1)
            f.create_group(f"m{g:03d}").attrs["mapped_smiles"] = Chem.MolToSmiles(mol)
    full = torsion_molecules(frames, 8, charged_fraction=0.25, seed=0)
    assert len(full) == 8 and sum(n.startswith("charged_") for n, _ in full) == 2
    assert all(n.startswith("xtb_m0") for n, _ in full if not n.startswith("charged_"))
    assert torsion_molecules(frames, 5, charged_fraction=0.25, seed=0) == full[:5]  # a prefix: resumable
    assert len({n for n, _ in full}) == 8
    with pytest.raises(ConfigError):
        torsion_molecules(frames, 4, charged_fraction=1.5)


def test_dft_torsions_label_the_neutral_drives_frames_at_the_target_level(tmp_path, monkeypatch):
    """dft_torsions: every frame of the neutral molecules of a drive shard, at its stored geometry, energies and
    forces at the level asked (here HF/STO-3G), names kept; a prefix for fewer molecules; resumes; one clear error each."""
    pytest.importorskip("pyscf")
    pytest.importorskip("h5py")
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from physff_openmm.errors import QMError
    from physff_openmm.training import qm
    from physff_openmm.training.config import DefaultModelConfig, DFTTorsionConfig, load_config
    from physff_openmm.training.dataset import MoleculeRecord, read_dataset, write_dataset
    from physff_openmm.training.recipe import dft_torsion_inputs, dft_torsions, section_signature

    rng = np.random.default_rng(0)
    records = []
    for k, smiles in enumerate(["CO", "O", "CC(=O)[O-]", "CCCCCC", "N"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        x = mol.GetConformer().GetPositions()
        pos = x[None] + 0.02 * rng.standard_normal((2, *x.shape))
        records.append(MoleculeRecord.from_rdkit(mol, f"xtb_m{k:06d}", positions=pos, energy=-10.0 - rng.random(2),
                                                 forces=0.01 * rng.standard_normal(pos.shape), level="gfn2-xtb"))
    source = tmp_path / "torsion_scans.h5"
    write_dataset(records, source)
    # neutral molecules of at most max_atoms atoms only (no acetate, no hexane), a seeded order that extends
    picked = [n for n, _ in dft_torsion_inputs(source, 10, max_atoms=6)]
    assert sorted(picked) == ["xtb_m000000", "xtb_m000001", "xtb_m000004"]
    assert [n for n, _ in dft_torsion_inputs(source, 2, max_atoms=6)] == picked[:2]
    assert [m.GetNumConformers() for _, m in dft_torsion_inputs(source, 3, max_atoms=6)] == [2, 2, 2]
    fewer = tmp_path / "fewer.h5"  # a molecule's place depends on no other: a smaller source keeps the order
    write_dataset([r for r in records if r.name != picked[0]], fewer)
    assert [n for n, _ in dft_torsion_inputs(fewer, 10, max_atoms=6)] == picked[1:]
    with pytest.raises(ConfigError, match="no molecule of .* is neutral with at most 2 atoms"):
        dft_torsion_inputs(source, 1, max_atoms=2)

    out = tmp_path / "dft_torsions.h5"
    info = dft_torsions(out, source, 2, max_atoms=6, level="hf/sto-3g")
    assert info == {"molecules": 2, "molecules_labelled": 2, "geometries_written": 4, "skipped": []}
    by_name = {r.name: r for r in records}
    labelled = read_dataset(out)
    assert sorted(r.name for r in labelled) == sorted(picked[:2])
    for r in labelled:
        src = by_name[r.name]
        assert r.level == "hf/sto-3g" and r.smiles == src.smiles
        np.testing.assert_allclose(r.positions, src.positions, atol=1e-12)  # the drive's own frames
        ref = qm.single_point(src.species, src.positions[1], 0, "hf/sto-3g", kinetic=False)
        assert r.energy[1] == pytest.approx(ref.energy, abs=1e-8)
        np.testing.assert_allclose(r.forces[1], ref.forces, atol=1e-6)

    def no_work(*args, **kwargs):
        raise AssertionError("a complete molecule was labelled again")

    monkeypatch.setattr(qm, "single_point", no_work)
    assert dft_torsions(out, source, 2, max_atoms=6, level="hf/sto-3g")["molecules_labelled"] == 2  # resumed
    # the config section: off by default (no PySCF needed to load it), the level in canonical form when on
    assert load_config({}, DefaultModelConfig).dft_torsions.n_molecules == 0
    on = DFTTorsionConfig(n_molecules=2, level="B3LYP-D3BJ/def2-SVP")
    assert section_signature(on) == section_signature(DFTTorsionConfig(n_molecules=2, level="b3lyp5-d3bj/def2-svp", workers=4))
    with pytest.raises(QMError):
        DFTTorsionConfig(n_molecules=2, level="b3lyp/no-such-basis")
    with pytest.raises(ConfigError, match="dft_torsions: need"):
        DFTTorsionConfig(n_molecules=-1)
