"""The default model's recipe: public-set split, molecule batches, the relative-energy loss, displacements."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("h5py")

from physff_openmm.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _records(smiles: list[str], n_conf: int = 3, seed: int = 0, forces: bool = False):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from physff_openmm.training.dataset import MoleculeRecord

    rng = np.random.default_rng(seed)
    out = []
    for k, s in enumerate(smiles):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        x = mol.GetConformer().GetPositions()
        pos = x[None] + 0.01 * rng.standard_normal((n_conf, *x.shape))
        n = mol.GetNumAtoms()
        f = 0.01 * rng.standard_normal((n_conf, n, 3)) if forces else None
        out.append(MoleculeRecord.from_rdkit(mol, f"r{k}", positions=pos, energy=-40.0 - rng.random(n_conf), forces=f, level="test"))
    return out


def test_default_recipe_config_loads():
    from physff_openmm.training.config import DefaultModelConfig, load_config

    cfg = load_config(ROOT / "training" / "default_model.yaml", DefaultModelConfig)
    assert cfg.stage2.loss.relative_weight > 0 and cfg.stage2.data.group_by_molecule
    assert load_config({}, DefaultModelConfig).compressions.fractions == []
    assert load_config({}, DefaultModelConfig).fragment_scans.rigid  # far out along the dissociation path
    assert load_config({}, DefaultModelConfig).md_samples.model == ""  # no MD samples unless a model is named
    with pytest.raises(ConfigError, match="md_samples"):
        load_config({"md_samples": {"model": "default", "n_frames": 0}}, DefaultModelConfig)
    # what a recipe can add: compressions, rigid-fragment scans, relative scan energies, E_lin refitted, later phases
    extra = load_config(
        {
            "compressions": {"fractions": [-0.35, -0.3, -0.25], "max_energy_kcal_mol": 400.0},
            "fragment_scans": {"fractions": [0.5, 1.0, 1.5], "rigid": True},
            "finetune": {"refit_linear": True, "loss": {"kind": "rmse", "relative_forces_weight": 1.0}},
            "dissociation": {"refit_linear": True, "loss": {"relative_forces_weight": 1.0}},
            "md_samples": {"model": "default", "earlier": ["/tmp/round1/md_samples.h5"]},
        },
        DefaultModelConfig,
    )
    assert extra.finetune.loss.relative_forces_weight > 0 and extra.finetune.refit_linear
    assert extra.dissociation is not None and extra.fragment_scans.rigid
    assert min(extra.compressions.fractions) < min(extra.bond_scans.fractions)
    assert extra.md_samples.earlier == ["/tmp/round1/md_samples.h5"]
    assert set(cfg.public.fractions) == {"conformers", "torsions", "ncia"}
    with pytest.raises(ConfigError, match="public.fractionz"):
        load_config({"public": {"fractionz": {}}}, DefaultModelConfig)
    # version 1's covalent-well loss is retired: the covalent core of the formula binds every bond
    with pytest.raises(ConfigError, match="covalent_well_weight"):
        load_config({"stage2": {"loss": {"covalent_well_weight": 1.0}}}, DefaultModelConfig)


def test_recipe_phases_read_only_the_shards_their_config_labels(monkeypatch, tmp_path):
    """training/train_default_model.py: a shard counts only where the config labels it."""
    import importlib.util

    from physff_openmm.training.config import DefaultModelConfig, load_config

    spec = importlib.util.spec_from_file_location("train_default_model", ROOT / "training" / "train_default_model.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_default_model", script)
    spec.loader.exec_module(script)
    shipped = load_config(ROOT / "training" / "default_model.yaml", DefaultModelConfig)
    md = load_config({"work_dir": str(tmp_path / "md"), "md_samples": {"model": "default"}}, DefaultModelConfig)
    walls = load_config({"work_dir": str(tmp_path / "walls"), "displacements": {"n_samples": 0},
                         "compressions": {"fractions": [-0.3]}, "fragment_scans": {"fractions": [1.5]}}, DefaultModelConfig)
    keys = ("displaced", "bond_scans", "compressions", "fragment_scans", "md_samples")
    assert [k for k in keys if script._labelled(shipped, k)] == []  # the shipped recipe reads the xTB frames only
    assert [k for k in keys if script._labelled(md, k)] == ["displaced", "bond_scans", "md_samples"]
    assert [k for k in keys if script._labelled(walls, k)] == ["bond_scans", "compressions", "fragment_scans"]
    assert all("md_samples" in shards for _, shards in script.LATER_PHASES.values())
    # a second round of MD frames reads the first round's shard too, and a missing one is an error
    md2 = load_config({"work_dir": str(tmp_path / "md2"), "md_samples": {"model": "default"}}, DefaultModelConfig)
    first = tmp_path / "round1.h5"
    first.write_bytes(b"")
    md2.md_samples.earlier = [str(first)]
    shards = script._phase_shards(md2, keys)
    assert shards[-1] == first and shards[:-1] == [Path(md2.work_dir) / f"{k}.h5" for k in ("displaced", "bond_scans", "md_samples")]
    assert script._phase_shards(shipped, keys) == []
    assert script._phase_shards(walls, keys) == [Path(walls.work_dir) / f"{k}.h5" for k in ("bond_scans", "compressions", "fragment_scans")]
    # a continued model keeps the phases of the file it started from, wherever that file keeps them
    one = {"mae": 1.0}
    assert script._phase_history({"metrics": {"test": 2.0}}, "finetune", one) == {"stage2": {"test": 2.0}, "finetune": one}
    mid = script._phase_history({"phases": {"stage2": {}, "finetune": {}}}, "dissociation", one)
    assert list(mid) == ["stage2", "finetune", "dissociation"]
    finished = {"metrics": {"phases": mid, "test": 3.0}}
    assert list(script._phase_history(finished, "dissociation", one)) == ["stage2", "finetune", "dissociation", "dissociation_4"]
    md2.md_samples.earlier = [str(tmp_path / "gone.h5")]
    with pytest.raises(script.PhysFFError, match="gone.h5"):
        script._phase_shards(md2, keys)


def test_public_splits_disjoint_deterministic_and_per_set():
    from physff_openmm.training.recipe import public_splits

    recs = _records(["C" * (k % 5 + 1) + "O" * (k // 5 + 1) for k in range(20)], n_conf=1)
    sets = {"conformers": recs[:10], "torsions": recs[10:]}
    a = public_splits(sets, {"torsions": (0.0, 0.0, 1.0)})
    b = public_splits(sets, {"torsions": (0.0, 0.0, 1.0)})
    assert [r.name for r in a.part("test")] == [r.name for r in b.part("test")]
    assert {r.name for r in a.test["torsions"]} == {r.name for r in recs[10:]}  # per-set fractions
    seen = [r.name for part in ("train", "val", "test") for r in a.part(part)]
    assert sorted(seen) == sorted(r.name for r in recs)  # every record exactly once
    counts = a.counts()
    assert counts["torsions"]["test_molecules"] == 10 and counts["torsions"]["train_molecules"] == 0
    with pytest.raises(ConfigError, match="no split fractions"):
        public_splits({"other": recs})
    with pytest.raises(ConfigError, match="unknown split part"):
        a.part("testing")


def test_molecule_batch_sampler_keeps_molecules_whole():
    from physff_openmm.training.data import MoleculeBatchSampler

    mol_ids = [0] * 5 + [1] * 3 + [2] * 7 + [3] * 1 + [4] * 4
    s = MoleculeBatchSampler(mol_ids, batch_size=6, seed=1)
    epochs = [list(s) for _ in range(3)]
    for batches in epochs:
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(mol_ids)))  # each graph once per epoch
        for b in batches:
            for m in {mol_ids[i] for i in b}:  # a molecule present in a batch is there whole
                assert sum(mol_ids[i] == m for i in b) == mol_ids.count(m)
    assert len({tuple(map(tuple, e)) for e in epochs}) > 1  # reshuffled between epochs
    assert len(s) == len(epochs[0])


def test_relative_loss_term_centres_each_molecule():
    from types import SimpleNamespace

    from physff_openmm.training.stage2 import EnergyModule

    e = torch.tensor([1.0, 3.0, 10.0, 5.0, 7.0], dtype=torch.float64)
    ref = torch.tensor([0.0, 4.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    batch = SimpleNamespace(mol_id=torch.tensor([0, 0, 1, 2, 2]), energy=ref)
    pred_c, ref_c = EnergyModule._relative(e, batch, torch.ones(5, dtype=torch.bool))
    # molecule 1 has a single conformer: left out; molecules 0 and 2 centred on their means
    assert torch.allclose(pred_c, torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(ref_c, torch.tensor([-2.0, 2.0, 0.0, 0.0], dtype=torch.float64))
    assert EnergyModule._relative(e, batch, torch.tensor([True, False, True, True, False])) is None


@pytest.mark.parametrize("kind", ["mae", "mse", "rmse"])
def test_relative_forces_term_covers_only_conformers_with_forces(kind):
    """relative_forces_weight: energy differences within each molecule's labelled geometries that have forces."""
    from physff_openmm.model import PhysFFModel
    from physff_openmm.training.config import Stage2Config, load_config
    from physff_openmm.training.data import make_loader, records_to_graphs
    from physff_openmm.training.stage2 import EnergyModule

    with_f = _records(["CCO", "CN"], n_conf=3, forces=True)
    without_f = _records(["CCC"], n_conf=3, seed=1)
    graphs = records_to_graphs(with_f + without_f)
    batch = next(iter(make_loader(graphs, len(graphs))))
    weights = {"energy_weight": 0.0, "force_weight": 0.0, "interaction_weight": 0.0, "relative_weight": 0.0}
    cfg = load_config({"model": {"hidden": 16, "n_steps": 2, "pair_hidden": 16},
                       "loss": {**weights, "relative_forces_weight": 1.0, "kind": kind, "noise_sigma": 0.0}}, Stage2Config)
    module = EnergyModule(PhysFFModel(cfg.model), cfg)
    out = module.compute(batch, train=False)
    with torch.no_grad():
        e = module.model.energy(batch, batch.pos.double())
    d = []
    for m in (0, 1):  # the records with forces; each centred on its own mean
        sel = batch.mol_id == m
        d.append((e[sel] - e[sel].mean()) - (batch.energy[sel] - batch.energy[sel].mean()))
    d = torch.cat(d)
    expect = {"mae": d.abs().mean(), "mse": (d * d).mean(), "rmse": (d * d).mean().sqrt()}[kind]
    assert float(out["loss"]) == pytest.approx(float(expect), rel=1e-9)
    assert float(out["relative_forces_mae"]) == pytest.approx(float(d.abs().mean()), rel=1e-9)
    assert "relative_mae" not in out
    # the conformer-only relative term leaves these records out
    cfg.loss.relative_forces_weight, cfg.loss.relative_weight = 0.0, 1.0
    out = module.compute(batch, train=False)
    assert "relative_forces_mae" not in out and float(out["relative_mae"]) > 0
    with pytest.raises(ConfigError, match="loss.kind"):
        load_config({"loss": {"kind": "huber"}}, Stage2Config)


def test_refit_linear_energy_is_least_squares_on_energies_without_forces():
    from physff_openmm.model import PhysFFModel, ModelConfig
    from physff_openmm.training.data import element_counts, records_to_graphs
    from physff_openmm.training.stage2 import refit_linear_energy

    torch.manual_seed(0)
    model = PhysFFModel(ModelConfig(hidden=16, n_steps=2, pair_hidden=16))
    with torch.no_grad():
        model.feats_net[-1].weight.mul_(100.0)  # pair terms far from zero
    plain = records_to_graphs(_records(["CCO", "CN", "CCC", "OCO", "NCC"], n_conf=2))
    with_f = records_to_graphs(_records(["CO"], n_conf=2, seed=2, forces=True))
    for g in with_f:
        g.energy = g.energy + 1.0e4  # must not take part in the fit
    rmse = refit_linear_energy(model, plain + with_f, batch_size=3)
    assert model.training  # the mode it was called in
    with torch.no_grad():
        e = np.array([float(model.energy(g, g.pos)) for g in plain])
    y = np.array([float(g.energy) for g in plain])
    x = element_counts(plain)
    resid = y - e
    assert np.abs(x.T @ resid).max() < 1e-6 * np.abs(y).sum()  # normal equations: residual orthogonal to the counts
    assert rmse == pytest.approx(float(np.sqrt(np.mean(resid**2))), rel=1e-6)
    with pytest.raises(ConfigError, match="no training energies"):
        refit_linear_energy(model, with_f)


def test_data_module_keeps_interaction_only_and_force_only_conformers():
    from physff_openmm.training.data import PhysFFDataModule

    energy_only, forces_only, inter_only = _records(["CCO", "CCN", "CO"], n_conf=2)
    forces_only.energy[:] = np.nan
    forces_only.forces = 0.01 * np.ones((2, forces_only.n_atoms, 3))
    inter_only.energy[:] = np.nan
    inter_only.interaction_energy = np.array([-0.001, np.nan])
    dm = PhysFFDataModule(splits=([energy_only, forces_only, inter_only], [energy_only], []), group_by_molecule=True, batch_size=2)
    dm.setup()
    # 2 + 2 + 1 (the second interaction-only conformer has no label at all)
    assert len(dm.train_graphs) == 5
    batches = list(dm.train_dataloader())
    assert sum(int(b.num_graphs) for b in batches) == 5
    with pytest.raises(ConfigError, match="splits must be"):
        PhysFFDataModule(splits=([energy_only], []))


def test_xtb_displacements_are_dft_anchored_and_resume(tmp_path):
    pytest.importorskip("tblite")
    from physff_openmm.training.dataset import read_dataset
    from physff_openmm.training.recipe import xtb_displacements
    from physff_openmm.training.xtb import xtb_energy_forces

    (rec,) = _records(["CO"], n_conf=2, seed=3)
    out = tmp_path / "disp.h5"
    info = xtb_displacements([rec], out, n_samples=2, sigmas=(0.05,), max_conformers=1, seed=0)
    assert info["geometries_written"] == 2
    (d,) = read_dataset(out)
    assert d.name == rec.name and d.forces is not None and d.level.endswith("+delta(gfn2-xtb)")
    z = rec.species.astype(int)
    for x, e, f, cid in zip(d.positions, d.energy, d.forces, d.conformer_ids):
        base = rec.conformer_ids.index(cid.rsplit("-d", 1)[0])
        e_x, f_x = xtb_energy_forces(z, x, rec.total_charge)
        e_0, _ = xtb_energy_forces(z, rec.positions[base], rec.total_charge)
        assert e == pytest.approx(rec.energy[base] + e_x - e_0, abs=1e-9)
        np.testing.assert_allclose(f, f_x, atol=1e-9)
        assert 0.01 < np.abs(x - rec.positions[base]).max() < 0.5
    assert xtb_displacements([rec], out, n_samples=2, sigmas=(0.05,), max_conformers=1)["molecules"] == 0  # resumed: done
    with pytest.raises(ConfigError, match="positive sigmas"):
        xtb_displacements([rec], tmp_path / "x.h5", sigmas=(0.0,))


def test_xtb_md_samples_label_frames_of_the_models_own_md(tmp_path, bound_model_path):
    """Frames of the model's MD from the lowest conformer, with the anchored GFN2-xTB labels; resumable; bad input."""
    pytest.importorskip("tblite")
    from physff_openmm.errors import ModelError
    from physff_openmm.training.dataset import read_dataset
    from physff_openmm.training.recipe import xtb_md_samples
    from physff_openmm.training.xtb import xtb_energy_forces

    (rec,) = _records(["CCO"], n_conf=3, seed=4)
    out = tmp_path / "md.h5"
    info = xtb_md_samples([rec], out, bound_model_path, time_ps=0.05, n_frames=3, temperature_k=300.0, seed=1)
    assert info["molecules"] == 1
    (d,) = read_dataset(out)
    low = int(np.argmin(rec.energy))
    assert d.conformer_ids == [f"{rec.conformer_ids[low]}-md{t}" for t in range(d.n_conformers)] and d.n_conformers >= 1
    z = rec.species.astype(int)
    e_0, _ = xtb_energy_forces(z, rec.positions[low], rec.total_charge)
    for x, e, f in zip(d.positions, d.energy, d.forces):
        e_x, f_x = xtb_energy_forces(z, x, rec.total_charge)
        assert e == pytest.approx(rec.energy[low] + e_x - e_0, abs=1e-9)
        np.testing.assert_allclose(f, f_x, atol=1e-9)
        assert 0.005 < np.abs(x - rec.positions[low]).max() < 2.0  # the atoms moved, the molecule did not fly apart
    assert "Langevin MD with model" in d.source
    assert xtb_md_samples([rec], out, bound_model_path, time_ps=0.05, n_frames=3)["molecules"] == 0  # resumed: done
    with pytest.raises(ConfigError, match="n_frames"):
        xtb_md_samples([rec], tmp_path / "x.h5", bound_model_path, n_frames=0)
    with pytest.raises(ModelError):
        xtb_md_samples([rec], tmp_path / "x.h5", tmp_path / "missing.pt")


def test_read_public_sets_rejects_bad_input(tmp_path):
    from physff_openmm.training.recipe import read_public_sets

    with pytest.raises(ConfigError, match="does not exist"):
        read_public_sets(tmp_path / "nope")
    with pytest.raises(ConfigError, match="unknown public sets"):
        read_public_sets(tmp_path, sets=["qm7"])


def test_kd_inputs_keep_first_conformer_of_small_molecules():
    from physff_openmm.training.recipe import kd_inputs

    small, large = _records(["CO", "CCCCCCCCCC"], n_conf=3)
    out = kd_inputs([small, large], max_atoms=10)
    assert [name for name, _ in out] == [small.name]
    mol = out[0][1]
    assert mol.GetNumConformers() == 1
    np.testing.assert_allclose(mol.GetConformer(0).GetPositions(), small.positions[0])


def test_xtb_bond_scans_stretch_one_bond_of_each_type(tmp_path):
    pytest.importorskip("tblite")
    from physff_openmm.training.dataset import read_dataset
    from physff_openmm.training.recipe import xtb_bond_scans

    (rec,) = _records(["CO"], n_conf=2, seed=5)
    fractions = (-0.1, 0.3)
    info = xtb_bond_scans([rec], tmp_path / "scan.h5", fractions=fractions, max_bonds=3, seed=0)
    (d,) = read_dataset(tmp_path / "scan.h5")
    k = int(np.argmin(rec.energy))
    x0 = rec.positions[k]
    # methanol has bond types C-O, C-H and O-H: one of each, two fractions each
    assert info["geometries_written"] == d.n_conformers == 6
    kinds = set()
    for x, cid in zip(d.positions, d.conformer_ids):
        i, j = map(int, cid.split("-bond")[1].split("-")[0].split("_"))
        f = fractions[int(cid.rsplit("-", 1)[1])]
        r0, r = np.linalg.norm(x0[i] - x0[j]), np.linalg.norm(x[i] - x[j])
        assert r == pytest.approx(r0 * (1 + f))
        moved = np.flatnonzero(np.abs(x - x0).max(axis=1) > 1e-12)
        assert moved.tolist() == [j]  # only the bond's second atom moves
        kinds.add(tuple(sorted((int(rec.species[i]), int(rec.species[j])))))
    assert kinds == {(6, 8), (1, 6), (1, 8)}
    stretched = [e for e, cid in zip(d.energy, d.conformer_ids) if cid.endswith("-1")]
    assert min(stretched) > rec.energy[k]  # a 30 % stretch costs energy: the anchor is the DFT minimum
    with pytest.raises(ConfigError, match="max_bonds"):
        xtb_bond_scans([rec], tmp_path / "x.h5", max_bonds=0)


def test_rigid_bond_scans_pull_the_smaller_fragment_away_whole():
    from physff_openmm.training.data import bond_scan_geometries, bond_side

    (rec,) = _records(["CCO"], n_conf=1)
    x0 = rec.positions[0]
    bonds = rec.bonds
    cc = [b for b in bonds.tolist() if sorted(int(rec.species[a]) for a in b) == [6, 6]][0]
    geoms = bond_scan_geometries(x0, np.array([cc]), (0.5, 1.0), all_bonds=bonds)
    assert geoms.shape == (2, rec.n_atoms, 3)
    # the methyl side (4 atoms) is smaller than the CH2OH side (5 atoms): it moves as a whole
    methyl = next(s for s in (bond_side(rec.n_atoms, bonds, *cc), bond_side(rec.n_atoms, bonds, *cc[::-1])) if len(s) == 4)
    fixed = np.setdiff1d(np.arange(rec.n_atoms), methyl)
    for x, f in zip(geoms, (0.5, 1.0)):
        assert np.allclose(x[fixed], x0[fixed])
        shift = x[methyl] - x0[methyl]
        assert np.allclose(shift, shift[0])  # rigid translation
        i, j = cc
        assert np.linalg.norm(x[i] - x[j]) == pytest.approx(np.linalg.norm(x0[i] - x0[j]) * (1 + f))
    # ring bonds cannot be pulled apart: skipped
    (benz,) = _records(["c1ccccc1"], n_conf=1)
    ring = [b for b in benz.bonds.tolist() if sorted(int(benz.species[a]) for a in b) == [6, 6]]
    assert bond_side(benz.n_atoms, benz.bonds, *ring[0]) is None
    assert bond_scan_geometries(benz.positions[0], np.array(ring[:2]), (0.5,), all_bonds=benz.bonds).shape[0] == 0
    # without all_bonds only the second atom moves, as before
    x = bond_scan_geometries(x0, np.array([cc]), (0.5,))[0]
    assert np.flatnonzero(np.abs(x - x0).max(axis=1) > 1e-12).tolist() == [cc[1]]


def test_a_batch_is_embedded_once_for_all_loss_terms(monkeypatch):
    """Energies, forces, interaction energies and relative energies share one pass of the MPNN per batch,
    and energies from precomputed ``pair_terms`` equal those computed from scratch."""
    from physff_openmm.model import PhysFFModel
    from physff_openmm.training.config import Stage2Config, load_config
    from physff_openmm.training.data import make_loader, records_to_graphs
    from physff_openmm.training.stage2 import EnergyModule, energy_and_forces, interaction_energy

    torch.manual_seed(0)
    graphs = records_to_graphs(_records(["CCO"], n_conf=2, forces=True) + _records(["CN", "CCC"], n_conf=2, seed=1))
    batch = next(iter(make_loader(graphs, len(graphs))))
    cfg = load_config({"model": {"hidden": 16, "n_steps": 2, "pair_hidden": 16},
                       "loss": {"interaction_weight": 1.0, "relative_weight": 1.0, "relative_forces_weight": 1.0,
                                "noise_sigma": 0.0}}, Stage2Config)
    model = PhysFFModel(cfg.model)
    module = EnergyModule(model, cfg)
    pos = batch.pos.double()
    e0, f0 = energy_and_forces(model, batch, pos)
    terms = model.pair_terms(batch)
    e1, f1 = energy_and_forces(model, batch, pos, terms=terms)
    assert torch.equal(e0.detach(), e1.detach()) and torch.equal(f0, f1)
    assert torch.equal(interaction_energy(model, batch, pos), interaction_energy(model, batch, pos, terms))
    calls = []
    embed = model.embed
    monkeypatch.setattr(model, "embed", lambda *a: calls.append(1) or embed(*a))
    out = module.compute(batch, train=True)
    assert {"energy_mae", "force_mae", "relative_mae", "relative_forces_mae"} <= set(out) and torch.isfinite(out["loss"])
    assert len(calls) == 1
    out["loss"].backward()  # the shared terms carry gradients to every loss term
    assert all(p.grad is not None for p in model.feats_net.parameters())
