"""The default model's recipe: its config, public-set split, molecule batches, the relative-energy losses."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("h5py")

from physff_openmm.errors import ConfigError, PhysFFError  # noqa: E402

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


def _loss_module(records, kind: str, **loss):
    """A small EnergyModule with every loss term off but ``loss``, and one batch of ``records``."""
    from physff_openmm.model import PhysFFModel
    from physff_openmm.training.config import Stage2Config, load_config
    from physff_openmm.training.data import make_loader, records_to_graphs
    from physff_openmm.training.stage2 import EnergyModule

    graphs = records_to_graphs(records)
    batch = next(iter(make_loader(graphs, len(graphs))))
    off = {"energy_weight": 0.0, "force_weight": 0.0, "relative_weight": 0.0, "interaction_weight": 0.0}
    cfg = load_config({"model": {"hidden": 16, "n_steps": 2, "pair_hidden": 16},
                       "loss": {**off, "kind": kind, "noise_sigma": 0.0, **loss}}, Stage2Config)
    return EnergyModule(PhysFFModel(cfg.model), cfg), batch


def test_default_recipe_config_loads():
    from physff_openmm.training.config import DefaultModelConfig, load_config

    cfg = load_config(ROOT / "training" / "default_model.yaml", DefaultModelConfig)
    assert cfg.stage2.loss.relative_weight > 0 and cfg.stage2.data.group_by_molecule
    assert cfg.torsion_scans.n_molecules > 0 and cfg.charged.n_molecules > 0 and cfg.finetune is not None
    empty = load_config({}, DefaultModelConfig)
    assert empty.torsion_scans.n_molecules == 0 and empty.charged.n_molecules == 0  # labels only where asked
    extra = load_config({"finetune": {"refit_linear": True, "loss": {"kind": "rmse", "relative_forces_weight": 1.0}}},
                        DefaultModelConfig)
    assert extra.finetune.loss.relative_forces_weight > 0 and extra.finetune.refit_linear
    assert set(cfg.public.fractions) == {"conformers", "torsions", "ncia"}
    assert cfg.lj_head.hidden > 0 and empty.lj_head.hidden == 0  # the lj_net phase: where the recipe asks for it
    with pytest.raises(ConfigError, match="lj_head: need"):
        load_config({"lj_head": {"hidden": 8, "lr": 0.0}}, DefaultModelConfig)
    with pytest.raises(ConfigError, match="public.fractionz"):
        load_config({"public": {"fractionz": {}}}, DefaultModelConfig)
    with pytest.raises(ConfigError, match="torsion_scans: need"):
        load_config({"torsion_scans": {"n_molecules": 10, "charged_fraction": 2.0}}, DefaultModelConfig)
    # version 1's labels and phases are retired: one pipeline, the keys are refused
    for key, value in (("bond_scans", {"fractions": [0.5]}), ("md_samples", {"model": "default"}),
                       ("dissociation", {}), ("displacements", {"n_samples": 2})):
        with pytest.raises(ConfigError, match=key):
            load_config({key: value}, DefaultModelConfig)
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
    bare = load_config({"work_dir": str(tmp_path / "bare")}, DefaultModelConfig)
    keys = ("charged", "ions", "torsion_scans", "bond_pulls", "heavy_pulls")
    assert [k for k in keys if script._labelled(shipped, k)] == list(keys)
    ions = load_config({"ions": {"n_molecules": 10}}, DefaultModelConfig)
    assert [k for k in keys if script._labelled(ions, k)] == ["ions"] and ions.ions.kinds == ["sulfonamide", "phenolate", "aromatic_n"]
    assert [k for k in keys if script._labelled(bare, k)] == []  # a shard left in work_dir by another recipe: unread
    pulls = load_config({"bond_pulls": {"n_molecules": 10}}, DefaultModelConfig)
    assert [k for k in keys if script._labelled(pulls, k)] == ["bond_pulls"]
    heavy = load_config({"heavy_pulls": {"n_molecules": 10}}, DefaultModelConfig)
    assert [k for k in keys if script._labelled(heavy, k)] == ["heavy_pulls"]
    cleavages = load_config({"cleavages": {"n_molecules": 10}}, DefaultModelConfig)
    assert [k for k in (*keys, "cleavages") if script._labelled(cleavages, k)] == ["cleavages"]
    # the bonds pulled apart train the refining phase only; the DFT frames of the drives both fine-tuning phases
    assert script.PHASE_SHARDS == {"finetune": ("torsion_scans", "dft_torsions"),
                                   "refine": ("torsion_scans", "bond_pulls", "heavy_pulls", "cleavages", "dft_torsions")}
    assert not script._labelled(shipped, "dft_torsions")
    with pytest.raises(ConfigError, match="torsion_scans.n_molecules > 0"):  # it labels the drives' frames
        load_config({"dft_torsions": {"n_molecules": 5}}, DefaultModelConfig)
    dft = load_config({"work_dir": str(tmp_path / "dft"), "kd": {"n_qm9": 0, "max_atoms": 0},
                       "torsion_scans": {"n_molecules": 5}, "dft_torsions": {"n_molecules": 5}}, DefaultModelConfig)
    assert [k for k in keys + ("dft_torsions",) if script._labelled(dft, k)] == ["torsion_scans", "dft_torsions"]
    # the extra ions train the refining phase only
    assert script.PHASE_CHARGED == {"finetune": ("charged",), "refine": ("charged", "ions")}
    # each phase starts from the one before; the lj_net phase from the last stage-2 phase the config has
    assert script.PHASE_START == {"finetune": "energy/stage2.pt", "refine": "finetune/finetune.pt"}
    two = load_config({"finetune": {}}, DefaultModelConfig)
    three = load_config({"finetune": {}, "refine": {"path_embeddings": True}}, DefaultModelConfig)
    assert [script._last_stage2_phase(c) for c in (bare, two, three)] == ["stage2", "finetune", "refine"]
    assert script.LJ_START["finetune"] == "finetune/finetune.pt" and script.LJ_START["refine"] == "refine/refine.pt"
    assert three.refine.path_embeddings and not three.finetune.path_embeddings
    # a continued model keeps the phases of the file it started from, wherever that file keeps them
    one = {"mae": 1.0}
    assert script._phase_history({"metrics": {"test": 2.0}}, "finetune", one) == {"stage2": {"test": 2.0}, "finetune": one}
    mid = {"phases": {"stage2": {}, "finetune": {}}}
    assert list(script._phase_history(mid, "finetune", one)) == ["stage2", "finetune", "finetune_3"]
    finished = {"metrics": {"phases": mid["phases"], "test": 3.0}}
    assert list(script._phase_history(finished, "finetune", one)) == ["stage2", "finetune", "finetune_3"]


def test_packed_shards_are_used_only_with_the_section_they_were_labelled_with(monkeypatch, tmp_path):
    """A shard packed into shard_dir replaces labelling; a changed section is one clear error."""
    import importlib.util

    from physff_openmm.training.config import DefaultModelConfig, load_config
    from physff_openmm.training.dataset import write_dataset
    from physff_openmm.training.recipe import pack_recipe_shard, shard_path

    spec = importlib.util.spec_from_file_location("train_default_model", ROOT / "training" / "train_default_model.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_default_model", script)
    spec.loader.exec_module(script)

    def recipe(**ions):
        return load_config({"work_dir": str(tmp_path / "work"), "shard_dir": str(tmp_path / "shards"),
                            "kd": {"n_qm9": 0, "max_atoms": 0}, "ions": {"n_molecules": 2, **ions}}, DefaultModelConfig)

    cfg = recipe()
    assert shard_path(cfg, "ions") == tmp_path / "work" / "ions.h5"  # nothing packed yet: labelled in work_dir
    (tmp_path / "work").mkdir()
    write_dataset(_records(["CCO", "CC(=O)[O-]"], forces=True), tmp_path / "work" / "ions.h5")
    packed = pack_recipe_shard(cfg, "ions")  # makes shard_dir
    assert packed["file"] == str(tmp_path / "shards" / "ions.h5") and packed["molecules"] == 2
    assert shard_path(cfg, "ions") == tmp_path / "shards" / "ions.h5"
    assert shard_path(recipe(workers=2), "ions") == tmp_path / "shards" / "ions.h5"  # how it runs does not count
    assert shard_path(recipe(noise_sigmas=[0.02, 0.035]), "ions") == tmp_path / "shards" / "ions.h5"
    ints = recipe(compress=[1, 1], stretch=[2, 2])  # YAML integers in a list of floats are floats in the config
    assert ints.ions.compress == [1.0, 1.0] and all(isinstance(x, float) for x in ints.ions.stretch)
    assert script.label(cfg, None) == {"ions": {"packed": str(tmp_path / "shards" / "ions.h5")}}  # nothing labelled
    assert len(script._charged(cfg, "ions")[0]) + len(script._charged(cfg, "ions")[1]) == 2
    with pytest.raises(ConfigError, match="ions.h5 was labelled with ions: .*delete it"):
        shard_path(recipe(n_molecules=3), "ions")
    with pytest.raises(ConfigError, match="delete it"):
        script.label(recipe(seed=5), None)
    # a shard labelled from another (the DFT frames of the torsion drives) is refused when that one changes too
    def dft(**scans):
        return load_config({"work_dir": str(tmp_path / "work"), "shard_dir": str(tmp_path / "shards"),
                            "torsion_scans": {"n_molecules": 2, **scans}, "dft_torsions": {"n_molecules": 1}},
                           DefaultModelConfig)

    write_dataset(_records(["CCO"], forces=True), tmp_path / "work" / "dft_torsions.h5")
    pack_recipe_shard(dft(), "dft_torsions")
    assert shard_path(dft(workers=2), "dft_torsions") == tmp_path / "shards" / "dft_torsions.h5"
    with pytest.raises(ConfigError, match="dft_torsions.h5 was labelled with .*torsion_scans.*delete it"):
        shard_path(dft(seed=3), "dft_torsions")
    # a recipe without stage 1 runs past it; asking for it alone is one clear error
    assert not script._has_stage1(cfg)
    with pytest.raises(PhysFFError, match="kinetic-energy labels"):
        script.embed(cfg)


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


@pytest.mark.parametrize("kind", ["mae", "rmse"])
def test_charged_dimer_weight_weighs_dimers_with_an_ion_in_the_interaction_term(kind):
    """loss.charged_dimer_weight: the interaction term's weighted mean, the weight on dimers with a charged monomer."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from physff_openmm.training.config import Stage2Config, load_config
    from physff_openmm.training.data import records_to_graphs
    from physff_openmm.training.dataset import MoleculeRecord
    from physff_openmm.training.stage2 import interaction_energy

    records = []
    for k, (smiles, e_int) in enumerate([("O.O", -0.008), ("C[NH3+].O", -0.03), ("CC(=O)[O-].C[NH3+]", -0.15)]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        pos = mol.GetConformer().GetPositions()[None]
        pos[0, list(Chem.GetMolFrags(mol)[1])] += 3.0  # the monomers apart
        fragments = np.zeros(mol.GetNumAtoms(), dtype=np.int8)
        fragments[list(Chem.GetMolFrags(mol)[1])] = 1
        records.append(MoleculeRecord.from_rdkit(mol, f"d{k}", positions=pos, energy=np.full(1, np.nan),
                                                 interaction_energy=np.array([e_int]), level="test", fragments=fragments))
    assert [bool(records_to_graphs([r])[0].charged_monomer) for r in records] == [False, True, True]
    module, batch = _loss_module(records, kind, interaction_weight=1.0, charged_dimer_weight=3.0)
    cfg = module.config
    out = module.compute(batch, train=False)
    with torch.no_grad():
        d = interaction_energy(module.model, batch, batch.pos.double()) - batch.interaction
    w = torch.tensor([1.0, 3.0, 3.0], dtype=torch.float64)
    expect = (w * d.abs()).sum() / w.sum() if kind == "mae" else ((w * d * d).sum() / w.sum()).sqrt()
    assert float(out["loss"].detach()) == pytest.approx(float(expect), rel=1e-9)
    cfg.loss.charged_dimer_weight = 1.0  # the plain mean
    plain = d.abs().mean() if kind == "mae" else (d * d).mean().sqrt()
    assert float(module.compute(batch, train=False)["loss"].detach()) == pytest.approx(float(plain), rel=1e-9)
    with pytest.raises(ConfigError, match="charged_dimer_weight"):
        load_config({"loss": {"charged_dimer_weight": 0.0}}, Stage2Config)


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


@pytest.mark.parametrize("kind", ["mae", "mse"])
def test_charge_term_compares_the_model_charges_with_the_targets_where_given(kind):
    """loss.charge_weight: the error of the model's charges over the atoms with a target (ref_charges)."""
    from physff_openmm.training.config import Stage2Config, load_config

    records = _records(["C[NH3+]", "CC(=O)[O-]", "CO"], n_conf=2)
    records[0].charge_target = np.linspace(-0.4, 0.4, records[0].n_atoms)
    records[1].charge_target = np.full(records[1].n_atoms, np.nan)
    records[1].charge_target[:4] = [-0.2, 0.3, -0.6, -0.7]
    module, batch = _loss_module(records, kind, charge_weight=5.0)
    cfg = module.config
    out = module.compute(batch, train=False)
    with torch.no_grad():
        h = module.model.embed(batch.x, batch.edge_index, batch.edge_attr)
        q = module.model.charges(h, batch.fragment_index, batch.fragment_charge).numpy()
    ref = batch.ref_charges.numpy()
    has = np.isfinite(ref)
    assert has.sum() == 2 * (records[0].n_atoms + 4)  # two conformers each; methanol has no targets
    d = q[has] - ref[has]
    expect = np.abs(d).mean() if kind == "mae" else (d * d).mean()
    assert float(out["loss"].detach()) == pytest.approx(5.0 * expect, rel=1e-9)
    assert float(out["charge_mae"]) == pytest.approx(np.abs(d).mean(), rel=1e-9)
    cfg.loss.charge_weight = 0.0
    assert "charge_mae" not in module.compute(batch, train=False)
    with pytest.raises(ConfigError, match="charge_weight"):
        load_config({"loss": {"charge_weight": -1.0}}, Stage2Config)


def test_label_stage_samples_heavy_pulls_and_cleavages_as_their_sections_say(monkeypatch, tmp_path):
    """Each section of bonds between heavy atoms reaches the labeller with its own bonds, lengths and seed."""
    import importlib.util

    from physff_openmm.training.config import DefaultModelConfig, load_config

    spec = importlib.util.spec_from_file_location("train_default_model", ROOT / "training" / "train_default_model.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_default_model", script)
    spec.loader.exec_module(script)
    calls = {}

    def labeller(out_path, source, n_molecules, sampling, **kwargs):
        calls[Path(out_path).stem] = (n_molecules, sampling, kwargs)
        return {"molecules": n_molecules}

    monkeypatch.setattr(script, "xtb_drug_like", labeller)
    cfg = load_config({"work_dir": str(tmp_path), "kd": {"n_qm9": 0, "max_atoms": 0},
                       "heavy_pulls": {"n_molecules": 4, "n_bonds": 2, "pull": [1.2, 1.6], "seed": 7},
                       "cleavages": {"n_molecules": 3, "pull": [2.5, 6.0], "seed": 9}}, DefaultModelConfig)
    out = script.label(cfg, None)
    assert set(out) == set(calls) == {"heavy_pulls", "cleavages"}
    n, heavy, kw = calls["heavy_pulls"]
    assert (n, heavy.n_heavy_pulls, heavy.heavy_pull, heavy.n_cleavages, heavy.seed) == (4, 2, (1.2, 1.6), 0, 7)
    assert kw["charged_fraction"] == 0.5 and heavy.solvent == "water" and heavy.n_bond_pulls == heavy.n_angle_bends == 0
    n, cleave, kw = calls["cleavages"]
    assert (n, cleave.n_cleavages, cleave.cleave, cleave.n_heavy_pulls, cleave.seed) == (3, 3, (2.5, 6.0), 0, 9)
    assert kw["charged_fraction"] == 0.25 and cleave.max_energy_kcal_mol == 350.0
