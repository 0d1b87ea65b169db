"""Charged states for training: the variants made from neutral molecules, their GFN2-xTB labels, the recipe hook."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit")

from physff_openmm.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _variants(smiles):
    from physff_openmm.training.sources import charged_variants

    return [(v.smiles, v.kind, v.charge) for v in charged_variants(smiles)]


def test_charged_variants_protonate_basic_amines_and_deprotonate_acids():
    from rdkit import Chem

    assert _variants(["CCN", "CNC", "CN(C)C"]) == [
        ("CC[NH3+]", "ammonium", 1),
        ("C[NH2+]C", "ammonium", 1),
        ("C[NH+](C)C", "ammonium", 1),
    ]
    assert _variants(["CC(=O)O", "O=CO"]) == [("CC(=O)[O-]", "carboxylate", -1), ("O=C[O-]", "carboxylate", -1)]
    # not basic amines: amide, aniline, sulfonamide, pyridine, amidine, enamine, hydrazine, carbamic acid, nitro
    assert _variants(["CC(=O)NC", "Nc1ccccc1", "CS(=O)(=O)NC", "c1ccncc1", "CC(=N)N", "CN(C)C=C", "CNN(C)C", "NC(=O)O", "C[N+](=O)[O-]"]) == []
    # one site per variant, then one zwitterion; the sites are the parent's atoms in canonical order
    from physff_openmm.training.sources import charged_variants

    gly = charged_variants(["NCC(=O)O"])
    assert [(v.smiles, v.kind, v.site) for v in gly] == [
        ("[NH3+]CC(=O)O", "ammonium", (0,)),
        ("NCC(=O)[O-]", "carboxylate", (4,)),
        ("[NH3+]CC(=O)[O-]", "zwitterion", (0, 4)),
    ]
    for v in gly:
        mol = Chem.MolFromSmiles(v.smiles)
        charges = {a.GetIdx(): a.GetFormalCharge() for a in mol.GetAtoms() if a.GetFormalCharge()}
        assert sum(charges.values()) == v.charge == Chem.GetFormalCharge(mol)
        assert {mol.GetAtomWithIdx(i).GetSymbol() for i in charges} == {"ammonium": {"N"}, "carboxylate": {"O"}, "zwitterion": {"N", "O"}}[v.kind]
    # a piperazine with an acid: each amine once, the acid once, one zwitterion
    kinds = [v.kind for v in charged_variants(["CN1CCN(CC(=O)O)CC1"])]
    assert kinds == ["ammonium", "ammonium", "carboxylate", "zwitterion"]


def test_sulfonamide_phenol_and_aromatic_n_ions_only_where_asked():
    from rdkit import Chem

    from physff_openmm.training.sources import charged_variants

    smiles = ["NS(=O)(=O)c1ccc(O)cc1", "CNS(C)(=O)=O", "CN(C)S(C)(=O)=O", "OCC", "CC(=O)O", "Cn1ccnc1", "c1ccnnc1"]
    assert [v.kind for v in charged_variants(smiles)] == ["carboxylate"]  # the default kinds are unchanged
    got = charged_variants(smiles, amines=False, acids=False, zwitterions=False, sulfonamides=True, phenols=True,
                           aromatic_n=True)
    assert [(v.smiles, v.kind, v.site, v.charge) for v in got] == [
        ("[NH-]S(=O)(=O)c1ccc(O)cc1", "sulfonamide", (0,), -1),
        ("NS(=O)(=O)c1ccc([O-])cc1", "phenolate", (8,), -1),
        ("C[N-]S(C)(=O)=O", "sulfonamide", (1,), -1),
        ("Cn1cc[nH+]c1", "aromatic_n", (4,), 1),
    ]  # a tertiary sulfonamide, an aliphatic alcohol, a pyridazine and (not asked for) an acid give none
    for v in got:
        mol = Chem.MolFromSmiles(v.smiles)
        parent = Chem.MolFromSmiles(v.parent)
        (site,) = v.site
        assert parent.GetAtomWithIdx(site).GetTotalNumHs() + v.charge == sum(
            a.GetTotalNumHs() for a in mol.GetAtoms() if a.GetFormalCharge() == v.charge
        )
        assert Chem.AddHs(mol).GetNumAtoms() == Chem.AddHs(parent).GetNumAtoms() + v.charge


def test_charged_variants_are_deduplicated_and_skip_charged_inputs():
    # symmetric sites give one variant; the same molecule written twice (or as mapped SMILES with explicit H) once
    mapped_gly = "[N:1]([C:2]([C:3](=[O:4])[O:5][H:10])([H:8])[H:9])([H:6])[H:7]"
    got = _variants(["NCCN", "NCCN", "OC(=O)CC(=O)O", mapped_gly, "NCC(=O)O"])
    assert [s for s, _, _ in got] == ["NCC[NH3+]", "O=C([O-])CC(=O)O", "[NH3+]CC(=O)O", "NCC(=O)[O-]", "[NH3+]CC(=O)[O-]"]
    assert len({s for s, _, _ in got}) == len(got)
    assert _variants(["C[NH3+]", "CC(=O)[O-]", "not a smiles"]) == []
    # stereochemistry is kept
    assert _variants(["C[C@H](N)C(=O)O"])[-1] == ("C[C@H]([NH3+])C(=O)[O-]", "zwitterion", 0)


def test_charged_molecules_start_with_small_ions_then_rare_kinds_and_extend(tmp_path):
    h5py = pytest.importorskip("h5py")
    from rdkit import Chem

    from physff_openmm.training.recipe import charged_molecules
    from physff_openmm.training.sources import SMALL_CHARGED

    frames = tmp_path / "xtb_frames_0.h5"
    with h5py.File(frames, "w") as f:
        for g, smi in (("m0", "CCN"), ("m1", "NCC(=O)O"), ("m2", "CC(=O)O"), ("m3", "CC(=O)NC"), ("m4", "NCCCCCCCCCCCCCCCCC")):
            mol = Chem.AddHs(Chem.MolFromSmiles(smi))
            for a in mol.GetAtoms():
                a.SetAtomMapNum(a.GetIdx() + 1)
            f.create_group(g).attrs["mapped_smiles"] = Chem.MolToSmiles(mol)
    small = charged_molecules(None, 100)
    assert [n for n, _ in small] == [f"charged_{n}" for n, _ in SMALL_CHARGED]
    assert ("charged_methylammonium", "C[NH3+]") in small and ("charged_glycine_zwitterion", "[NH3+]CC(=O)[O-]") in small
    everything = charged_molecules(frames, 100, max_atoms=30)
    extra = everything[len(small):]
    # the glycine variants from m1 are already among the small ones except its cation and anion; m0 gives the
    # small ethylammonium, m2 the small acetate; m3 (an amide) none; m4 is larger than max_atoms
    assert [n for n, _ in extra] == ["charged_m1_carboxylate_4", "charged_m1_ammonium_0"]
    assert [s for _, s in extra] == ["NCC(=O)[O-]", "[NH3+]CC(=O)O"]
    assert charged_molecules(frames, len(small) + 1, max_atoms=30) == everything[: len(small) + 1]  # a prefix: resumable
    assert len(charged_molecules(frames, 100, max_atoms=80)) == len(everything) + 1
    with pytest.raises(ConfigError):
        charged_molecules(frames, -1)
    # other kinds, in the order asked for, without the small ions
    with h5py.File(frames, "a") as f:
        for g, smi in (("m5", "NS(=O)(=O)c1ccc(O)cc1"), ("m6", "Oc1ccccc1")):
            mol = Chem.AddHs(Chem.MolFromSmiles(smi))
            f.create_group(g).attrs["mapped_smiles"] = Chem.MolToSmiles(mol)
    anions = charged_molecules(frames, 100, small=False, kinds=("sulfonamide", "phenolate"))
    assert anions[0] == ("charged_m5_sulfonamide_0", "[NH-]S(=O)(=O)c1ccc(O)cc1")  # one kind after the other
    assert sorted(n for n, _ in anions[1:]) == ["charged_m5_phenolate_8", "charged_m6_phenolate_0"]
    assert charged_molecules(frames, 100, max_atoms=30) == everything  # the default list is unchanged
    with pytest.raises(ConfigError, match="kinds"):
        charged_molecules(frames, 10, kinds=("sulfonate",))


def test_label_methylammonium_three_frames_with_x_h_scans(tmp_path):
    pytest.importorskip("tblite")
    pytest.importorskip("h5py")
    from physff_openmm.training.dataset import read_dataset
    from physff_openmm.training.keys import XTB_LEVEL
    from physff_openmm.training.recipe import charged_sampling, xtb_charged
    from physff_openmm.training.xtb import xtb_energy_forces

    sampling = charged_sampling(n_conformers=1, opt_steps=20, n_md=0, n_noise=0, n_bond_scans=1, seed=1)
    out = tmp_path / "charged.h5"
    info = xtb_charged(out, None, 2, sampling=sampling)  # methylammonium is second of the small ones
    assert info["molecules"] == 2 and info["skipped"] == []
    rec = {r.name: r for r in read_dataset(out)}["charged_methylammonium"]
    assert rec.level == XTB_LEVEL and rec.total_charge == 1 and rec.smiles == "C[NH3+]"
    assert "ALPB(water)" in rec.source and "gas-phase GFN2-xTB" in rec.source
    assert rec.n_conformers == 3 and rec.conformer_ids[0] == "c0"
    (i, j) = map(int, rec.conformer_ids[1].split("bond")[1].split("-")[0].split("_"))
    assert rec.species[i] == 7 and rec.species[j] == 1  # the N-H of the ammonium goes first
    r0 = np.linalg.norm(rec.positions[0, i] - rec.positions[0, j])
    ratios = [np.linalg.norm(x[i] - x[j]) / r0 for x in rec.positions[1:]]
    assert 0.75 <= ratios[0] <= 0.85 and 1.2 <= ratios[1] <= 1.5
    for x, e, f in zip(rec.positions, rec.energy, rec.forces):  # labels: gas-phase GFN2-xTB
        e_ref, f_ref = xtb_energy_forces(rec.species.astype(int), x, 1)
        assert e == pytest.approx(e_ref, abs=1e-8)
        np.testing.assert_allclose(f, f_ref, atol=1e-8)
    assert rec.energy[1] > rec.energy[0] and rec.energy[2] > rec.energy[0]
    assert xtb_charged(out, None, 2, sampling=sampling)["molecules_labelled"] == 0  # resumed: done


def test_zwitterion_keeps_its_protons_and_the_energy_cap_drops_hot_frames():
    pytest.importorskip("tblite")
    from physff_openmm.training.data import _xtb_molecule
    from physff_openmm.training.recipe import charged_sampling
    from physff_openmm.units import HARTREE_TO_KCAL

    # relaxed in the gas phase, glycine's NH3+ gives a proton to the carboxylate; in ALPB water it keeps it
    gas = charged_sampling(n_conformers=1, opt_steps=40, n_md=0, n_noise=1, n_bond_scans=0, solvent=None)
    assert _xtb_molecule(("gly", "[NH3+]CC(=O)[O-]", gas)) is None
    water = charged_sampling(n_conformers=1, opt_steps=40, n_md=1, md_stride=4, n_noise=1, n_bond_scans=1)
    rec = _xtb_molecule(("gly", "[NH3+]CC(=O)[O-]", water))
    assert rec is not None and rec.conformer_ids[:3] == ["c0", "c0-md0", "c0-n0"] and rec.total_charge == 0
    cold = charged_sampling(n_conformers=1, opt_steps=40, n_md=0, n_noise=0, n_bond_scans=1, max_energy_kcal_mol=1.0)
    rec = _xtb_molecule(("ma", "C[NH3+]", cold))
    assert rec.conformer_ids == ["c0"]  # both scanned frames are more than 1 kcal/mol up
    assert (rec.energy.max() - rec.energy.min()) * HARTREE_TO_KCAL <= 1.0
    with pytest.raises(ConfigError, match="compress"):
        charged_sampling(compress=(0.9, 0.8))


def test_recipe_reads_the_charged_shard_only_where_the_config_labels_it(monkeypatch, tmp_path):
    pytest.importorskip("lightning")
    pytest.importorskip("h5py")
    import importlib.util

    from physff_openmm.training.config import DefaultModelConfig, load_config
    from physff_openmm.training.dataset import MoleculeRecord, write_dataset

    spec = importlib.util.spec_from_file_location("train_default_model", ROOT / "training" / "train_default_model.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_default_model", script)
    spec.loader.exec_module(script)
    off = load_config({"work_dir": str(tmp_path)}, DefaultModelConfig)
    on = load_config({"work_dir": str(tmp_path), "charged": {"n_molecules": 40, "val_fraction": 0.5}}, DefaultModelConfig)
    assert not script._labelled(off, "charged") and script._labelled(on, "charged")
    assert script._charged(on, "charged") == ([], [])  # not labelled yet
    from rdkit import Chem
    from rdkit.Chem import AllChem

    records = []
    for k, smi in enumerate(["C[NH3+]", "CC[NH3+]", "CC(=O)[O-]", "[NH3+]CC(=O)[O-]", "C[NH2+]C", "O=C[O-]"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        x = mol.GetConformer().GetPositions()[None]
        records.append(MoleculeRecord.from_rdkit(mol, f"c{k}", positions=x, energy=[-10.0], forces=np.zeros_like(x), level="gfn2-xtb"))
    write_dataset(records, tmp_path / "charged.h5")
    train, val = script._charged(on, "charged")
    assert sorted(r.name for r in train + val) == [f"c{k}" for k in range(6)] and train and val
    assert script._charged(off, "charged") == ([], [])
    assert script._charged(on, "ions") == ([], [])  # its own shard and section
    with pytest.raises(ConfigError, match="val_fraction"):
        load_config({"charged": {"val_fraction": 1.0}}, DefaultModelConfig)
    with pytest.raises(ConfigError, match="kinds"):
        load_config({"ions": {"kinds": ["sulfonate"]}}, DefaultModelConfig)
    assert off.ions.kinds == ["sulfonamide", "phenolate", "aromatic_n"] and not off.ions.small
    assert off.charged.kinds == ["zwitterion", "carboxylate", "ammonium"] and off.charged.small


def test_charge_targets_are_gfn2_xtb_charges_of_each_charged_fragment_alone():
    """The charge term's targets: each charged fragment by itself at the record's lowest-energy
    conformer, equivalent atoms averaged; neutral fragments unlabelled unless asked."""
    pytest.importorskip("tblite")
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from physff_openmm.training.data import record_to_graphs
    from physff_openmm.training.dataset import MoleculeRecord
    from physff_openmm.training.xtb import attach_charge_targets, charge_targets, xtb_charges

    mol = Chem.AddHs(Chem.MolFromSmiles("C[NH3+].O.[OH-]"))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    x = mol.GetConformer().GetPositions()
    frags = Chem.GetMolFrags(mol)
    for k, atoms in enumerate(frags):
        x[list(atoms)] += 4.0 * k  # apart
    pos = np.stack([x, x + 0.03 * np.random.default_rng(0).standard_normal(x.shape)])
    rec = MoleculeRecord.from_rdkit(mol, "trio", positions=pos, energy=np.array([-20.0, -20.5]), level="test")
    target = charge_targets(rec)
    ammonium, water, hydroxide = (list(a) for a in frags)
    assert np.isnan(target[water]).all()
    assert target[ammonium].sum() == pytest.approx(1.0, abs=1e-6)
    assert target[hydroxide].sum() == pytest.approx(-1.0, abs=1e-6)
    ref = xtb_charges(rec.species[hydroxide], pos[1][hydroxide], -1)  # row 1: the lowest energy
    np.testing.assert_allclose(target[hydroxide], ref, atol=1e-10)
    assert target[hydroxide][0] < -0.9  # GFN2-xTB keeps hydroxide's charge on O
    ammonium_h = [a for a in ammonium if rec.species[a] == 1 and mol.GetAtomWithIdx(a).GetNeighbors()[0].GetSymbol() == "N"]
    assert len(ammonium_h) == 3 and np.ptp(target[ammonium_h]) < 1e-12  # equivalent atoms: one value
    assert charge_targets(rec, charged_only=False)[water].sum() == pytest.approx(0.0, abs=1e-6)
    m2 = Chem.AddHs(Chem.MolFromSmiles("CO"))
    AllChem.EmbedMolecule(m2, randomSeed=0)
    neutral = MoleculeRecord.from_rdkit(m2, "methanol", level="test")
    assert attach_charge_targets([rec, neutral]) == {"records": 1, "atoms": len(ammonium) + 2, "failed": 0}
    assert neutral.charge_target is None
    graphs = record_to_graphs(rec) + record_to_graphs(neutral)
    np.testing.assert_allclose(graphs[1].ref_charges.numpy(), target, equal_nan=True)
    assert np.isnan(graphs[-1].ref_charges.numpy()).all()
