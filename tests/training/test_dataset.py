"""Dataset shards, splits, public-data readers and resumable QM labelling.

QM is kept to water-sized molecules at hf/sto-3g. Tests that read the shared
reference data skip when ../shared/data (or $PHYSFF_SHARED_DATA) is missing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from shared_data import shared_data

h5py = pytest.importorskip("h5py")
Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import rdDistGeom  # noqa: E402

from physff_openmm.errors import (  # noqa: E402
    ConfigError,
    MoleculeError,
    MoleculeFileError,
    MoleculeParseError,
    QMError,
)
from physff_openmm.training import keys as K  # noqa: E402
from physff_openmm.training.dataset import (  # noqa: E402
    MoleculeRecord,
    ShardWriter,
    pack_shard,
    read_dataset,
    split_by_molecule,
    write_dataset,
)
from physff_openmm.units import HARTREE_TO_KCAL  # noqa: E402

SHARED = shared_data()
REPO = Path(__file__).resolve().parents[2]

# Tolerances, with units.
POS_TOL_ANGSTROM = 1e-12  # stored float64, read back bit-exact
ENERGY_TOL_HARTREE = 1e-9  # hf/sto-3g energies compared across runs of the same geometry
# Hartree-Fock/STO-3G total energies of water, methane and ammonia near equilibrium, Hartree
# (Szabo & Ostlund; PySCF gives the same to ~1e-3 for ETKDG geometries).
HF_STO3G_HARTREE = {"water": -74.96, "methane": -39.72, "ammonia": -55.45}
HF_STO3G_TOL_HARTREE = 0.02


# ----------------------------------------------------------------------------- helpers
def _mol_with_conformers(smiles: str, n: int, seed: int = 7):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    params.pruneRmsThresh = 0.0
    ids = rdDistGeom.EmbedMultipleConfs(mol, n, params)
    assert len(ids) == n
    return mol


def _assert_records_equal(a: MoleculeRecord, b: MoleculeRecord) -> None:
    assert a.smiles == b.smiles
    assert a.total_charge == b.total_charge
    assert a.level == b.level and a.source == b.source
    assert a.conformer_ids == b.conformer_ids
    for key in ("species", "formal_charges", "bonds", "bond_orders"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=POS_TOL_ANGSTROM)
    for key in ("energy", "interaction_energy", "forces", "qm_charges", "kd_atom", "kd_pair", "angles_deg", "scaling"):
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None), key
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=key)  # NaN == NaN here
    assert set(a.extra_energies) == set(b.extra_energies)
    for lvl in a.extra_energies:
        np.testing.assert_array_equal(a.extra_energies[lvl], b.extra_energies[lvl])
    for key in ("dihedral", "fragments"):
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None), key
        if x is not None:
            np.testing.assert_array_equal(x, y)
    assert (a.subset, a.nci_group) == (b.subset, b.nci_group)


def _ethanol_record() -> MoleculeRecord:
    mol = _mol_with_conformers("CCO", 3)
    n = mol.GetNumAtoms()
    rng = np.random.default_rng(0)
    forces = rng.normal(size=(3, n, 3))
    forces[1] = np.nan  # conformer 1 has no forces
    return MoleculeRecord.from_rdkit(
        mol,
        "ethanol",
        energy=[-154.1, np.nan, -154.0],
        forces=forces,
        qm_charges=rng.normal(size=(3, n)),
        kd_atom=rng.normal(size=(3, n)),
        extra_energies={"dlpno_ccsdt_ccpvtz": [-154.5, -154.4, np.nan], "b3lyp-d3bj/def2-svp": [-154.2, -154.3, -154.1]},
        conformer_ids=["a", "b", "c"],
        level="b3lyp_d3bj_def2svp",
        source="unit test",
        angles_deg=[0.0, 120.0, 240.0],
        dihedral=[0, 1, 2, 8],
    )


def _benzoate_record() -> MoleculeRecord:
    mol = _mol_with_conformers("[O-]C(=O)c1ccccc1", 2)
    n = mol.GetNumAtoms()
    sym = np.arange(n * n, dtype=float).reshape(n, n)
    sym = sym + sym.T
    np.fill_diagonal(sym, 0.0)
    return MoleculeRecord.from_rdkit(
        mol,
        "benzoate/anion 1",  # not a valid group name as is
        energy=[-418.0, -418.01],
        kd_pair=np.stack([sym, 2 * sym]),
        interaction_energy=[np.nan, -0.01],
        scaling=[1.0, 1.1],
        fragments=np.zeros(n, dtype=np.int8),
        subset="unit",
        nci_group="none",
        level="hf/sto-3g",
    )


# ----------------------------------------------------------------------------- round trip
def test_round_trip_records(tmp_path):
    records = [_ethanol_record(), _benzoate_record()]
    path = write_dataset(records, tmp_path / "shard.h5")
    back = read_dataset(path)
    assert [r.name for r in back] == ["ethanol", "benzoate_anion_1"]
    for a, b in zip(records, back):
        _assert_records_equal(a, b)
        assert b.complete
    eth, benz = back
    assert eth.forces is not None and np.isnan(eth.forces[1]).all() and np.isfinite(eth.forces[0]).all()
    assert eth.kd_pair is None and eth.scaling is None  # never present -> None
    assert benz.total_charge == -1 and 1.5 in set(benz.bond_orders.tolist())
    with h5py.File(path, "r") as f:
        assert f.attrs[K.SCHEMA_VERSION] == K.CURRENT_SCHEMA_VERSION
        g = f["ethanol"]
        assert g[K.POSITIONS].maxshape[0] is None
        assert g.attrs[K.SMILES] == "CCO"
    # to_rdkit rebuilds the same molecule, conformers included
    for rec in back:
        mol = rec.to_rdkit()
        assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == rec.smiles
        assert mol.GetNumConformers() == rec.n_conformers
        np.testing.assert_allclose(mol.GetConformer(1).GetPositions(), rec.positions[1], atol=POS_TOL_ANGSTROM)
        again = MoleculeRecord.from_rdkit(mol, rec.name)
        np.testing.assert_array_equal(again.bonds, rec.bonds)
        np.testing.assert_array_equal(again.bond_orders, rec.bond_orders)
        assert again.conformer_ids == rec.conformer_ids


def test_packed_shard_keeps_complete_molecules_compact(tmp_path):
    records = [_ethanol_record(), _benzoate_record()]
    src = write_dataset(records, tmp_path / "shard.h5")
    with ShardWriter(src) as w:
        w.mark_complete("benzoate_anion_1", False)  # an interrupted molecule is not packed
    counts = pack_shard(src, tmp_path / "packed.h5", {"recipe_section": '{"n": 1}'})
    assert counts == {"molecules": 1, "conformers": 3, "left_out": 1}
    (back,) = read_dataset(tmp_path / "packed.h5")
    eth = records[0]
    assert back.name == "ethanol" and back.complete and back.conformer_ids == eth.conformer_ids
    # float32 coordinates and forces: about 1e-7 relative; energies stay float64, exact
    np.testing.assert_allclose(back.positions, eth.positions, rtol=0, atol=1e-5)
    np.testing.assert_allclose(back.forces, eth.forces, rtol=1e-6, atol=0)  # NaN rows stay NaN
    np.testing.assert_array_equal(back.energy, eth.energy)
    np.testing.assert_array_equal(back.extra_energies["dlpno_ccsdt_ccpvtz"], eth.extra_energies["dlpno_ccsdt_ccpvtz"])
    np.testing.assert_array_equal(back.angles_deg, eth.angles_deg)
    np.testing.assert_array_equal(back.dihedral, eth.dihedral)
    with h5py.File(tmp_path / "packed.h5", "r") as f:
        assert f.attrs["recipe_section"] == '{"n": 1}' and f.attrs[K.SCHEMA_VERSION] == K.CURRENT_SCHEMA_VERSION
        g = f["ethanol"]
        assert g[K.POSITIONS].dtype == np.float32 and g[K.FORCES].dtype == np.float32
        assert g[K.ENERGY].dtype == np.float64 and g[K.POSITIONS].compression == "gzip"
    # still an ordinary shard: a writer appends to it
    more = MoleculeRecord.from_rdkit(_mol_with_conformers("CCO", 1, seed=3), "ethanol", energy=[-154.2],
                                     conformer_ids=["d"], level=eth.level, source=eth.source)
    with ShardWriter(tmp_path / "packed.h5") as w:
        w.write_record(more)
    (back,) = read_dataset(tmp_path / "packed.h5")
    assert back.conformer_ids == ["a", "b", "c", "d"]
    with pytest.raises(MoleculeFileError, match="does not exist"):
        pack_shard(tmp_path / "missing.h5", tmp_path / "x.h5")
    with pytest.raises(MoleculeFileError, match="folder"):
        pack_shard(src, tmp_path / "no" / "x.h5")


def test_writer_appends_across_sessions(tmp_path):
    rec = _ethanol_record()
    path = tmp_path / "s.h5"
    mol = rec.to_rdkit()
    with ShardWriter(path) as w:
        w.append_conformer("ethanol", mol, rec.positions[0], conformer_id="a", energy=-1.0, level="x")
    with ShardWriter(path) as w:
        assert w.has_conformer("ethanol", "a") and not w.has_conformer("ethanol", "b")
        assert w.completed_names() == set()
        w.append_conformer("ethanol", mol, rec.positions[1], conformer_id="b", forces=np.ones((9, 3)), level="x")
        with pytest.raises(ConfigError, match="already stored"):
            w.append_conformer("ethanol", mol, rec.positions[1], conformer_id="b", level="x")
        with pytest.raises(ConfigError, match="stored at level 'x'"):
            w.append_conformer("ethanol", mol, rec.positions[2], conformer_id="c", level="y")
        with pytest.raises(MoleculeError, match=r"forces has shape \(2, 3\)"):
            w.append_conformer("ethanol", mol, rec.positions[2], conformer_id="c", forces=np.ones((2, 3)), level="x")
        water = Chem.AddHs(Chem.MolFromSmiles("O"))
        with pytest.raises(ConfigError, match="already holds 'CCO'"):
            w.append_conformer("ethanol", water, np.zeros((3, 3)), conformer_id="w", level="x")
        w.mark_complete("ethanol")
        assert w.completed_names() == {"ethanol"}
    (back,) = read_dataset(path)
    assert back.conformer_ids == ["a", "b"]
    np.testing.assert_array_equal(back.energy, [-1.0, np.nan])
    assert np.isnan(back.forces[0]).all() and (back.forces[1] == 1.0).all()  # back-filled with NaN


def test_interrupted_write_keeps_committed_conformers(tmp_path):
    """A process killed in the middle of a conformer loses only that conformer."""
    path = tmp_path / "crash.h5"
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from rdkit import Chem
        from rdkit.Chem import AllChem
        from physff_openmm.training.dataset import ShardWriter
        mol = Chem.AddHs(Chem.MolFromSmiles("O"))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        pos = mol.GetConformer().GetPositions()
        w = ShardWriter({str(path)!r}).open()
        w.append_conformer("water", mol, pos, conformer_id="c0", energy=-76.0)
        w.append_conformer("water", mol, pos + 0.01, conformer_id="c1", energy=-76.1, forces=np.ones((3, 3)))
        g = w.file["water"]                      # start a third conformer by hand ...
        g["positions"].resize((3, 3, 3)); g["positions"][2] = 99.0
        g["energy"].resize((3,)); g["energy"][2] = 99.0
        w.file.create_group("half")              # ... and a group without a header
        w.file.flush()
        os._exit(1)                              # killed before the commit
        """
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    (rec,) = read_dataset(path)
    assert rec.conformer_ids == ["c0", "c1"] and rec.positions.shape == (2, 3, 3)
    np.testing.assert_array_equal(rec.energy, [-76.0, -76.1])
    assert not rec.complete
    with ShardWriter(path) as w:  # the next append overwrites the uncommitted rows
        w.append_conformer("water", rec.to_rdkit(), rec.positions[0] + 0.02, conformer_id="c2", energy=-76.2)
    (rec,) = read_dataset(path)
    assert rec.conformer_ids == ["c0", "c1", "c2"]
    np.testing.assert_array_equal(rec.energy, [-76.0, -76.1, -76.2])
    assert np.isnan(rec.forces[2]).all()
    np.testing.assert_allclose(rec.positions[2], rec.positions[0] + 0.02, atol=POS_TOL_ANGSTROM)


# ----------------------------------------------------------------------------- bad inputs
def test_bad_shards(tmp_path):
    missing = tmp_path / "missing.h5"
    with pytest.raises(MoleculeFileError, match="missing.h5 does not exist"):
        read_dataset(missing)
    garbled = tmp_path / "garbled.h5"
    garbled.write_text("this is not an HDF5 file\n")
    with pytest.raises(MoleculeFileError, match="garbled.h5 is not an HDF5 file"):
        read_dataset(garbled)
    with pytest.raises(MoleculeFileError, match="garbled.h5 is not an HDF5 file"):
        ShardWriter(garbled).open()
    old = tmp_path / "old.h5"
    with h5py.File(old, "w") as f:
        f.attrs[K.SCHEMA_VERSION] = 99
    with pytest.raises(ConfigError, match=r"old.h5 uses dataset schema version 99"):
        read_dataset([old])
    with pytest.raises(ConfigError, match="schema version 99"):
        ShardWriter(old).open()
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_group("something")
    with pytest.raises(ConfigError, match="foreign.h5 has no 'schema_version'"):
        read_dataset(foreign)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(MoleculeFileError, match=r"no dataset shards \(\*.h5\) in folder .*empty"):
        read_dataset(empty_dir)
    with pytest.raises(MoleculeFileError, match="does not exist"):
        ShardWriter(tmp_path / "no" / "such" / "dir.h5").open()


# ----------------------------------------------------------------------------- splits
def _toy_record(smiles: str, name: str, n_conf: int = 2) -> MoleculeRecord:
    return MoleculeRecord(
        name=name, smiles=smiles, total_charge=0, species=[1, 1], formal_charges=[0, 0],
        bonds=[[0, 1]], bond_orders=[1.0], positions=np.zeros((n_conf, 2, 3)),
    )


def test_split_by_molecule():
    smiles = [f"C{'C' * k}O" for k in range(400)]
    records = [_toy_record(s, f"{s}_{r}") for s in smiles for r in range(2)]  # two records per molecule
    train, val, test = split_by_molecule(records, (0.8, 0.1, 0.1), seed=0)
    assert len(train) + len(val) + len(test) == len(records)
    keys = [{r.smiles for r in part} for part in (train, val, test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    for part in (train, val, test):  # every record (all conformers) of a molecule in one split
        assert all(sum(r.smiles == s for r in part) == 2 for s in {r.smiles for r in part})
    assert 0.7 < len(keys[0]) / 400 < 0.9 and len(keys[1]) > 10 and len(keys[2]) > 10
    again = split_by_molecule(list(reversed(records)), (0.8, 0.1, 0.1), seed=0)
    assert [{r.name for r in p} for p in again] == [{r.name for r in p} for p in (train, val, test)]
    # a molecule keeps its split as the data grows
    grown = split_by_molecule(records + [_toy_record(f"N{'C' * k}", f"new{k}") for k in range(50)], seed=0)
    for old, new in zip((train, val, test), grown):
        assert {r.name for r in old} <= {r.name for r in new}
    other_seed = split_by_molecule(records, seed=1)
    assert {r.smiles for r in other_seed[0]} != keys[0]
    with pytest.raises(ConfigError, match="summing to 1"):
        split_by_molecule(records, (0.8, 0.3, 0.1))
    with pytest.raises(ConfigError, match="non-negative"):
        split_by_molecule(records, (1.2, -0.1, -0.1))


# ----------------------------------------------------------------------------- labelling
TRIO = [("water", "O"), ("methane", "C"), ("ammonia", "N")]


class _Counter:
    """Wraps qm.single_point: counts calls and can fail on a chosen call."""

    def __init__(self, real, fail_on_call: int | None = None, exc: Exception | None = None, fake: bool = False):
        self.real, self.fail_on_call, self.exc, self.fake = real, fail_on_call, exc, fake
        self.calls = 0

    def __call__(self, symbols, positions, charge=0, level="", **kwargs):
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise self.exc
        if self.fake:
            from physff_openmm.training.qm import QMResult

            n = len(symbols)
            pos = np.asarray(positions)
            return QMResult(float(-pos.sum()), -pos, np.zeros(n), np.zeros((n, n)), np.zeros(n), level)
        return self.real(symbols, positions, charge, level, **kwargs)


@pytest.fixture()
def qm_module():
    return pytest.importorskip("physff_openmm.training.qm")


def test_label_then_resume_recomputes_nothing(tmp_path, monkeypatch, qm_module):
    from physff_openmm.training.labelling import label

    out = tmp_path / "labels.h5"
    assert label(TRIO, out, level="hf/sto-3g", n_conformers=1, optimize=None, scheduler="synchronous",
                 progress=False) == out
    records = {r.name: r for r in read_dataset(out)}
    assert set(records) == {"water", "methane", "ammonia"}
    for name, rec in records.items():
        assert rec.complete and rec.level == "hf/sto-3g" and rec.conformer_ids == ["c0"]
        assert abs(rec.energy[0] - HF_STO3G_HARTREE[name]) < HF_STO3G_TOL_HARTREE
        assert rec.forces.shape == (1, rec.n_atoms, 3) and np.isfinite(rec.forces).all()
        assert abs(rec.qm_charges[0].sum()) < 1e-6  # Mulliken charges sum to the total charge (0)
        np.testing.assert_allclose(rec.kd_pair[0], rec.kd_pair[0].T, atol=1e-12)
    counter = _Counter(qm_module.single_point)
    monkeypatch.setattr(qm_module, "single_point", counter)
    label(TRIO, out, level="hf/sto-3g", n_conformers=1, optimize=None, scheduler="synchronous", progress=False)
    assert counter.calls == 0
    label(TRIO + [("hf", "F")], out, level="hf/sto-3g", n_conformers=1, optimize=None,
          scheduler="synchronous", progress=False)
    assert counter.calls == 1  # only the new molecule
    again = {r.name: r for r in read_dataset(out)}
    assert set(again) == {"water", "methane", "ammonia", "hf"}
    for name, rec in records.items():
        np.testing.assert_allclose(again[name].energy, rec.energy, rtol=0, atol=ENERGY_TOL_HARTREE)


def test_label_crash_then_resume(tmp_path, monkeypatch, qm_module):
    from physff_openmm.training.labelling import label

    out = tmp_path / "crash.h5"
    crash = _Counter(qm_module.single_point, fail_on_call=2, exc=RuntimeError("simulated crash"))
    monkeypatch.setattr(qm_module, "single_point", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        label(TRIO, out, level="hf/sto-3g", n_conformers=1, optimize=None, scheduler="synchronous", progress=False)
    (water,) = read_dataset(out)
    assert water.name == "water" and water.complete and water.conformer_ids == ["c0"]
    resume = _Counter(crash.real)
    monkeypatch.setattr(qm_module, "single_point", resume)
    label(TRIO, out, level="hf/sto-3g", n_conformers=1, optimize=None, scheduler="synchronous", progress=False)
    assert resume.calls == 2  # methane and ammonia only
    records = {r.name: r for r in read_dataset(out)}
    assert set(records) == {"water", "methane", "ammonia"}
    assert all(r.complete and r.n_conformers == 1 for r in records.values())
    assert abs(records["water"].energy[0] - water.energy[0]) < ENERGY_TOL_HARTREE


def test_label_resumes_inside_a_molecule(tmp_path, monkeypatch, qm_module):
    """Conformers already stored are not recomputed; an SCF failure leaves the molecule incomplete."""
    from physff_openmm.training.labelling import label

    mol = _mol_with_conformers("O", 3)
    out = tmp_path / "conf.h5"
    failing = _Counter(None, fail_on_call=2, exc=QMError("SCF did not converge"), fake=True)
    monkeypatch.setattr(qm_module, "single_point", failing)
    label([("water", mol)], out, level="hf/sto-3g", n_conformers=0, optimize=None, scheduler="synchronous",
          progress=False)
    (rec,) = read_dataset(out)
    assert rec.conformer_ids == ["input0", "input2"] and not rec.complete
    fake = _Counter(None, fake=True)
    monkeypatch.setattr(qm_module, "single_point", fake)
    label([("water", mol)], out, level="hf/sto-3g", n_conformers=0, optimize=None, scheduler="synchronous",
          progress=False)
    assert fake.calls == 1
    (rec,) = read_dataset(out)
    assert rec.complete and sorted(rec.conformer_ids) == ["input0", "input1", "input2"]
    for cid, pos in zip(rec.conformer_ids, rec.positions):
        k = int(cid[-1])
        np.testing.assert_allclose(pos, mol.GetConformer(k).GetPositions(), atol=POS_TOL_ANGSTROM)


def test_label_rejects_bad_input_before_work(tmp_path, monkeypatch, qm_module):
    from physff_openmm.training import conformers
    from physff_openmm.training.labelling import label

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(conformers, "generate_conformers", no_work)
    monkeypatch.setattr(qm_module, "single_point", no_work)
    out = tmp_path / "never.h5"
    with pytest.raises(QMError, match="nosuchmethod"):
        label(TRIO, out, level="nosuchmethod/sto-3g", scheduler="synchronous", progress=False)
    with pytest.raises(MoleculeParseError):
        label([("bad", "C1CC(")], out, level="hf/sto-3g", scheduler="synchronous", progress=False)
    with pytest.raises(ConfigError, match="not unique"):
        label([("a", "O"), ("a", "C")], out, level="hf/sto-3g", scheduler="synchronous", progress=False)
    with pytest.raises(ConfigError, match="optimize"):
        label(TRIO, out, level="hf/sto-3g", optimize="mmff", scheduler="synchronous", progress=False)
    assert not out.exists()


@pytest.mark.slow
def test_label_dask_local_cluster(tmp_path, qm_module):
    pytest.importorskip("dask.distributed")
    from physff_openmm.training.labelling import label

    out = tmp_path / "dask.h5"
    label([("water", "O")], out, level="hf/sto-3g", n_conformers=1, optimize=None, scheduler="local",
          n_workers=1, progress=False)
    (rec,) = read_dataset(out)
    assert rec.complete and abs(rec.energy[0] - HF_STO3G_HARTREE["water"]) < HF_STO3G_TOL_HARTREE


# ----------------------------------------------------------------------------- readers
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared reference data not available")


@needs_shared
def test_read_conformer_benchmark(caplog):
    import csv

    from physff_openmm.training.sources import connectivity_matches, read_conformer_benchmark

    folder = SHARED / "conformer-benchmark"
    names = ["astex_1g9v", "astex_1gm8", "astex_1hnn", "omegapdb_1gjd", "astex_1jd0"]  # last two: I, proton moved
    meta = {r["name"]: r for r in csv.DictReader(open(folder / "molecules.csv"))}
    records = read_conformer_benchmark(folder, names=names)
    assert [r.name for r in records] == names[:3]
    assert "unsupported element(s) I" in caplog.text and "astex_1jd0 has no usable conformer" in caplog.text
    for rec in records:
        row = meta[rec.name]
        assert rec.n_conformers == int(row["nconformers"]) and rec.n_atoms == int(row["natoms"])
        assert rec.total_charge == int(row["charge"]) == rec.formal_charges.sum()
        assert np.all((rec.energy < -100) & (rec.energy > -1e4))  # Hartree, not kcal/mol
        rel_kcal = (rec.energy - rec.energy.min()) * HARTREE_TO_KCAL
        assert rel_kcal.max() < 30.0
        assert "dlpno_ccsdt_ccpvtz" in rec.extra_energies and rec.level == "b3lyp_d3bj_def2svp"
        mol = rec.to_rdkit()
        ref = Chem.MolFromSmiles(row["smiles"])
        assert Chem.MolToSmiles(mol, isomericSmiles=False) == Chem.MolToSmiles(Chem.AddHs(ref), isomericSmiles=False)
        for k in range(rec.n_conformers):
            assert connectivity_matches(mol, rec.positions[k])
    # blank cells become NaN; a level blank for every conformer is left out
    assert "b3lyp_def2svp_nodisp" not in records[0].extra_energies
    (partial,) = read_conformer_benchmark(folder, names=["astex_1hwi"])
    assert np.isnan(partial.extra_energies["dlpno_ccsdt_ccpvtz"]).sum() == 2
    assert len(read_conformer_benchmark(folder, limit=2)) == 2
    with pytest.raises(ConfigError, match="no_such_level"):
        read_conformer_benchmark(folder, level="no_such_level", limit=1)


@needs_shared
def test_read_torsion_drives():
    from physff_openmm.training.sources import read_torsion_drives

    records = read_torsion_drives(SHARED / "torsion-drives" / "torsion_drives.json", limit=2)
    assert len(records) == 2
    for rec in records:
        assert rec.n_conformers == 24 and rec.angles_deg.shape == (24,)
        assert np.all(np.diff(rec.angles_deg) == 15.0)
        assert rec.dihedral.shape == (4,) and rec.dihedral.max() < rec.n_atoms
        assert np.all((rec.energy < -100) & (rec.energy > -1e4))
        assert (rec.energy.max() - rec.energy.min()) * HARTREE_TO_KCAL < 30.0
        assert rec.total_charge == rec.formal_charges.sum()
        assert "mp2_heavy_aug_cc_pvtz_geometry_level" in rec.extra_energies
        i, j, k, m = rec.dihedral  # a dihedral is a bonded chain
        bonds = {tuple(b) for b in rec.bonds.tolist()}
        assert all(tuple(sorted(p)) in bonds for p in ((i, j), (j, k), (k, m)))
    assert records[0].total_charge == -1


@needs_shared
def test_read_ncia():
    from physff_openmm.training.sources import read_ncia

    path = SHARED / "ncia-atlas" / "NCIA_IHB100x10.xyz"
    records = read_ncia(path, limit=2)
    assert len(records) == 2
    first = next(line for line in open(path) if line.startswith("name="))
    fields = dict(tok.split("=", 1) for tok in first.split())
    for rec in records:
        assert rec.n_conformers == 10 and np.all(np.isnan(rec.energy))
        assert np.all(np.abs(rec.interaction_energy) < 0.1)  # Hartree
        assert rec.subset == "NCIA_IHB100x10" and rec.nci_group
        assert set(rec.fragments.tolist()) == {0, 1}
        assert rec.total_charge == rec.formal_charges.sum()
        assert "." in rec.smiles  # two fragments
    rec = records[0]
    assert rec.total_charge == int(fields["charge"])
    a0, a1 = (int(x) for x in fields["selection_a"].split("-"))
    assert rec.formal_charges[a0 - 1 : a1].sum() == int(fields["charge_a"])
    assert np.all(rec.fragments[a0 - 1 : a1] == 0)
    k = rec.conformer_ids.index(fields["name"].rsplit("_", 1)[1])
    assert rec.interaction_energy[k] == pytest.approx(float(fields["benchmark_Eint"]) / HARTREE_TO_KCAL, rel=1e-12)
    assert rec.scaling[k] == float(fields["scaling"])
    (eq,) = read_ncia(SHARED / "ncia-atlas", subsets=["IHB100x10"], scaling=1.0, limit=1)
    assert eq.n_conformers == 1 and eq.scaling[0] == 1.0 and eq.subset == "NCIA_IHB100x10"


def test_read_qm9():
    pytest.importorskip("qm9pack")
    from physff_openmm.training.sources import QM9_LEVEL, read_qm9

    records = read_qm9(limit=3, seed=0)
    assert len(records) == 3
    assert [r.name for r in records] == [r.name for r in read_qm9(limit=3, seed=0)]
    for rec in records:
        assert rec.level == QM9_LEVEL == "b3lyp/6-31g(2df,p)"
        assert rec.n_conformers == 1 and -800 < rec.energy[0] < -30
        assert abs(rec.qm_charges.sum()) < 1e-3
        assert set(rec.species.tolist()) <= {1, 6, 7, 8, 9}


def test_read_structures(tmp_path):
    from physff_openmm.training.sources import read_structures

    smi = tmp_path / "mols.smi"
    smi.write_text("# molecules to label\nO water\n\nCCO\n[NH4+] ammonium\nO water\n")
    out = read_structures(smi)
    assert [n for n, _ in out] == ["water", "mols_2", "ammonium", "water_2"]
    assert out[2][1].GetNumAtoms() == 5 and Chem.GetFormalCharge(out[2][1]) == 1
    xyz = tmp_path / "two.xyz"
    xyz.write_text(
        "3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"
        "3\nwater again\nO 0 0 0\nH 0.97 0 0\nH -0.25 0.94 0\n"
    )
    frames = read_structures(xyz)
    assert [n for n, _ in frames] == ["two_1", "two_2"]
    assert frames[1][1].GetNumConformers() == 1
    bad = tmp_path / "bad.smi"
    bad.write_text("O\nC1CC(\n")
    with pytest.raises(MoleculeParseError, match="bad.smi, line 2"):
        read_structures(bad)
    with pytest.raises(MoleculeFileError):
        read_structures(tmp_path / "nothing.smi")


XTB_FRAMES = SHARED / "xtb-frames"
needs_xtb_frames = pytest.mark.skipif(
    not XTB_FRAMES.is_dir(), reason=f"xtb-frames data not available at {XTB_FRAMES}"
)
# A water molecule in map-number order: O first, then its hydrogens.
_WATER_MAPPED = "[O:1]([H:2])[H:3]"


def _xtb_raw(name: str) -> dict:
    """The arrays and attributes of one xtb-frames group, as stored (``name`` = group name)."""
    for path in sorted(XTB_FRAMES.glob("*.h5")):
        with h5py.File(path, "r") as f:
            if name in f:
                g = f[name]
                out = {k: g[k][()] for k in ("numbers", "positions", "energy", "forces", "kind")}
                out.update({k: g.attrs[k] for k in ("mapped_smiles", "charge", "source")})
                return out
    raise KeyError(name)


@pytest.fixture(scope="module")
def xtb_five():
    from physff_openmm.training.sources import read_xtb_frames

    return read_xtb_frames(XTB_FRAMES, limit=5, seed=0)


@needs_xtb_frames
def test_read_xtb_frames_records(xtb_five):
    from physff_openmm.training.sources import read_xtb_frames

    assert len(xtb_five) == 5
    names = [r.name for r in xtb_five]
    assert names == sorted(names) and len(set(names)) == 5
    assert [r.name for r in read_xtb_frames(XTB_FRAMES, limit=5, seed=0)] == names  # seeded
    assert [r.name for r in read_xtb_frames(XTB_FRAMES, limit=5, seed=1)] != names
    for rec in xtb_five:
        raw = _xtb_raw(rec.name.removeprefix("xtb_"))
        n, f = raw["numbers"].shape[0], raw["energy"].shape[0]
        assert rec.n_atoms == n and rec.n_conformers == f == 15
        assert rec.level == "gfn2-xtb" and rec.source == f"xtb-frames:{raw['source']}"
        assert rec.total_charge == int(raw["charge"]) == rec.formal_charges.sum()
        assert rec.conformer_ids == [f"k{int(k)}_{i}" for i, k in enumerate(raw["kind"])]
        # atom order is the map-number order: element of atom k is numbers[k]
        mapped = Chem.MolFromSmiles(str(raw["mapped_smiles"]), sanitize=False)
        by_map = {a.GetAtomMapNum() - 1: a.GetAtomicNum() for a in mapped.GetAtoms()}
        assert [by_map[k] for k in range(n)] == raw["numbers"].tolist() == rec.species.tolist()
        ref_bonds = {tuple(sorted((b.GetBeginAtom().GetAtomMapNum() - 1, b.GetEndAtom().GetAtomMapNum() - 1)))
                     for b in mapped.GetBonds()}
        assert {tuple(b) for b in rec.bonds.tolist()} == ref_bonds
        # labels as stored, in float64: Angstrom, Hartree, Hartree/Angstrom
        assert rec.positions.dtype == rec.energy.dtype == rec.forces.dtype == np.float64
        assert rec.forces.shape == rec.positions.shape == (f, n, 3)
        np.testing.assert_array_equal(rec.positions, raw["positions"].astype(np.float64))
        np.testing.assert_array_equal(rec.energy, raw["energy"])
        np.testing.assert_array_equal(rec.forces, raw["forces"].astype(np.float64))
        assert np.all((rec.energy < -10) & (rec.energy > -1e4))  # Hartree, not kcal/mol
        assert np.abs(rec.forces[0]).max() < 0.05  # kind 0 is near a minimum (Hartree/Angstrom)


@needs_xtb_frames
def test_read_xtb_frames_force_units(xtb_five):
    """Forces are -dE/dx in Hartree/Angstrom: a trapezoid step from each MMFF conformer (kind 1) to its
    0.02-Angstrom noisy copy (kind 2) predicts the energy change (Hartree/Bohr would be off by 1.89)."""
    predicted, actual = [], []
    for rec in xtb_five:
        kinds = [int(c.split("_")[0][1:]) for c in rec.conformer_ids]
        for a, b in zip(range(rec.n_conformers - 1), range(1, rec.n_conformers)):
            if (kinds[a], kinds[b]) != (1, 2):
                continue
            dx = rec.positions[b] - rec.positions[a]  # Angstrom
            assert np.sqrt((dx**2).mean()) < 0.03
            predicted.append(-0.5 * np.sum((rec.forces[a] + rec.forces[b]) * dx))
            actual.append(rec.energy[b] - rec.energy[a])
    predicted, actual = np.array(predicted), np.array(actual)
    assert len(actual) == 4 * len(xtb_five)
    slope = float(predicted @ actual / (predicted @ predicted))
    assert slope == pytest.approx(1.0, abs=0.1)
    assert np.abs(predicted - actual).max() * HARTREE_TO_KCAL < 3.0  # kcal/mol, on steps of 5-30


@needs_xtb_frames
def test_read_xtb_frames_filters(xtb_five):
    from physff_openmm.training.sources import read_xtb_frames

    picked = read_xtb_frames(XTB_FRAMES, limit=5, kinds={0, 3})
    assert [r.name for r in picked] == [r.name for r in xtb_five]
    for rec in picked:
        assert [c.split("_")[0] for c in rec.conformer_ids] == ["k0", "k3"]
    cap = 20.0  # kcal/mol
    capped = read_xtb_frames(XTB_FRAMES, limit=5, max_energy_kcal_mol=cap)
    assert [r.name for r in capped] == [r.name for r in xtb_five]
    for full, rec in zip(xtb_five, capped):
        rel = (full.energy - full.energy.min()) * HARTREE_TO_KCAL
        assert rec.conformer_ids == [c for c, e in zip(full.conformer_ids, rel) if e <= cap]
        assert 0 < rec.n_conformers < full.n_conformers
    # limit counts molecules that keep a frame; the reference is the lowest frame of any kind
    both = read_xtb_frames(XTB_FRAMES, limit=5, kinds=[2], max_energy_kcal_mol=cap)
    assert len(both) == 5
    for rec in both:
        raw = _xtb_raw(rec.name.removeprefix("xtb_"))
        rel = (raw["energy"] - raw["energy"].min()) * HARTREE_TO_KCAL
        expected = [f"k2_{i}" for i, (k, e) in enumerate(zip(raw["kind"], rel)) if k == 2 and e <= cap]
        assert rec.conformer_ids == expected and len(expected) > 0
    with pytest.raises(ConfigError, match="unknown xtb-frames kind 7"):
        read_xtb_frames(XTB_FRAMES, kinds=[7])
    with pytest.raises(ConfigError, match="max_energy_kcal_mol"):
        read_xtb_frames(XTB_FRAMES, max_energy_kcal_mol=-1.0)


@needs_xtb_frames
def test_read_xtb_frames_to_graphs(xtb_five):
    pytest.importorskip("torch")
    from physff_openmm.training.data import records_to_graphs

    graphs = records_to_graphs(xtb_five, require="any")
    assert len(graphs) == sum(r.n_conformers for r in xtb_five)
    k = 0
    for m, rec in enumerate(xtb_five):
        for c in range(rec.n_conformers):
            g = graphs[k]
            k += 1
            assert int(g.mol_id) == m and int(g.conf_id) == c and bool(g.has_forces)
            assert float(g.energy) == pytest.approx(rec.energy[c] * HARTREE_TO_KCAL, rel=1e-12)  # kcal/mol
            np.testing.assert_allclose(g.forces.numpy(), rec.forces[c] * HARTREE_TO_KCAL, rtol=1e-12)
            np.testing.assert_array_equal(g.pos.numpy(), rec.positions[c])


def _write_xtb_group(f, name, mapped, numbers, *, charge=0, n_frames=2):
    g = f.create_group(name)
    g.attrs["mapped_smiles"], g.attrs["charge"], g.attrs["source"] = mapped, charge, "test"
    n = len(numbers)
    rng = np.random.default_rng(0)
    g["numbers"] = np.asarray(numbers, dtype=np.int8)
    g["positions"] = rng.normal(size=(n_frames, n, 3)).astype(np.float32)
    g["energy"] = -76.0 - 0.01 * np.arange(n_frames)
    g["forces"] = rng.normal(scale=0.01, size=(n_frames, n, 3)).astype(np.float32)
    g["kind"] = np.arange(n_frames, dtype=np.int8)


def test_read_xtb_frames_errors_and_skips(tmp_path, caplog):
    from physff_openmm.training.sources import read_xtb_frames

    missing = tmp_path / "no-such-folder"
    with pytest.raises(MoleculeFileError, match=r"xtb-frames file or folder .*no-such-folder does not exist"):
        read_xtb_frames(missing)
    with pytest.raises(MoleculeFileError, match="no xtb-frames"):
        read_xtb_frames(tmp_path)
    (tmp_path / "garbage.h5").write_text("not hdf5")
    with pytest.raises(MoleculeFileError, match="cannot read xtb-frames file"):
        read_xtb_frames(tmp_path / "garbage.h5")
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        _write_xtb_group(f, "b_water", _WATER_MAPPED, [8, 1, 1])
        _write_xtb_group(f, "a_swapped", _WATER_MAPPED, [1, 8, 1])  # numbers disagree with the SMILES
        _write_xtb_group(f, "c_iodine", "[I:1][H:2]", [53, 1])  # unsupported element
    caplog.set_level("WARNING", logger="physff_openmm.training.sources")
    (rec,) = read_xtb_frames(path)
    assert rec.name == "xtb_b_water" and rec.conformer_ids == ["k0_0", "k1_1"] and rec.source == "xtb-frames:test"
    assert "skipped 2 of 3 xtb-frames molecules" in caplog.text
    assert "1 numbers differ from the mapped SMILES" in caplog.text and "unsupported elements: I" in caplog.text
    assert read_xtb_frames(path, kinds=[3]) == []  # every frame filtered out
