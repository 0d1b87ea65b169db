"""ParameterSet contract, invariances, fragment independence, cache and errors."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
import torch
from openmm import unit
from rdkit import Chem
from scipy.spatial.transform import Rotation

import physff_openmm as pf
from physff_openmm.molecule import combine_molecules, ensure_conformer, load_molecule, positions_angstrom
from physff_openmm.units import ANGSTROM_TO_NM

from reference_energy import reference_energy


def openmm_energy(params, pos, backend="native"):
    system = pf.create_system(params, backend=backend)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos * ANGSTROM_TO_NM)
    e = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)
    return e + params.energy_offset


@pytest.mark.parametrize("model_fixture", ["test_model_path", "path_model_path"])
def test_contract_shapes_and_symmetry(model_fixture, request):
    test_model_path = request.getfixturevalue(model_fixture)
    smi = "OC(=O)c1ccc(Cl)cc1SC[NH3+]"
    mol = load_molecule(smi)
    p = pf.parameterize(smi, model=test_model_path)
    n = mol.GetNumAtoms()
    assert p.charges.shape == (n,)
    assert p.covalent_pairs.shape == (mol.GetNumBonds(), 2)
    assert np.all(p.covalent_pairs[:, 0] < p.covalent_pairs[:, 1])
    c = p.pair_parameters()
    assert c.shape == (n, n, 14)
    np.testing.assert_array_equal(c, c.transpose(1, 0, 2))
    assert isinstance(p.energy_offset, float)
    assert len(p.switch) == 2 and 0 < p.switch[0] < p.switch[1]
    assert p.charges.sum() == pytest.approx(1.0, abs=1e-12)
    # covalent entries differ from the non-covalent table entries of the same classes
    i, j = p.covalent_pairs[0]
    cls = p.atom_classes
    assert not np.allclose(c[i, j], p.class_parameters[cls[i], cls[j]])


def test_symmetry_equivalent_atoms_share_classes(test_model_path):
    p = pf.parameterize("CC(C)(C)O", model=test_model_path)  # tert-butanol: 3 equivalent methyls
    mol = load_molecule("CC(C)(C)O")
    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    for a in range(mol.GetNumAtoms()):
        for b in range(mol.GetNumAtoms()):
            if ranks[a] == ranks[b]:
                assert p.atom_classes[a] == p.atom_classes[b]
                assert p.charges[a] == p.charges[b]
    assert p.n_classes < mol.GetNumAtoms()


@pytest.mark.parametrize("smiles,total", [("CC(=O)[O-]", -1), ("C[NH3+]", 1), ("OC(=O)CCS(=O)(=O)[O-].[Na+]".replace(".[Na+]", ""), -1)])
def test_charges_sum_to_formal_charge(test_model_path, smiles, total):
    p = pf.parameterize(smiles, model=test_model_path)
    assert p.charges.sum() == pytest.approx(total, abs=1e-12)


def test_rotation_translation_invariance(test_model_path):
    mol = ensure_conformer(load_molecule("COP(=O)(OC)Oc1ccc(Br)cc1"))
    p = pf.parameterize(mol, model=test_model_path)
    pos = positions_angstrom(mol)
    e0 = openmm_energy(p, pos)
    rot = Rotation.from_euler("zyx", [37.0, -71.0, 123.0], degrees=True)
    moved = rot.apply(pos - pos.mean(0)) + np.array([12.0, -7.5, 3.3])
    for backend in ("native", "torch"):
        assert openmm_energy(p, moved, backend) == pytest.approx(e0, rel=1e-9)


@pytest.mark.parametrize("model_fixture", ["test_model_path", "path_model_path"])
def test_permutation_invariance(model_fixture, request):
    test_model_path = request.getfixturevalue(model_fixture)
    mol = ensure_conformer(load_molecule("OC(=O)c1ccc(Cl)cc1SC[NH3+]"))
    p = pf.parameterize(mol, model=test_model_path, cache=False)
    perm = np.random.default_rng(7).permutation(mol.GetNumAtoms()).tolist()
    mol_p = Chem.RenumberAtoms(mol, perm)
    p_p = pf.parameterize(mol_p, model=test_model_path, cache=False)
    # float64 inference: atom order changes only the last bits
    np.testing.assert_allclose(p_p.charges, p.charges[perm], atol=1e-10)
    np.testing.assert_allclose(p_p.pair_parameters(), p.pair_parameters()[np.ix_(perm, perm)], rtol=1e-10, atol=1e-10)
    e = openmm_energy(p, positions_angstrom(mol))
    e_p = openmm_energy(p_p, positions_angstrom(mol_p))
    assert e_p == pytest.approx(e, rel=1e-6)


@pytest.mark.parametrize("model_fixture", ["test_model_path", "path_model_path"])
def test_far_apart_fragments_are_additive(model_fixture, request):
    test_model_path = request.getfixturevalue(model_fixture)
    """Two neutral molecules 80 A apart: E(AB) = E(A) + E(B); parameters independent of the partner."""
    a = ensure_conformer(load_molecule("CC(=O)NC"))
    b = ensure_conformer(load_molecule("c1ccc(Cl)cc1O"))
    pos_a, pos_b = positions_angstrom(a), positions_angstrom(b)
    pos_b = pos_b - pos_b.mean(0) + pos_a.mean(0) + np.array([80.0, 0.0, 0.0])
    ab = combine_molecules([load_molecule("CC(=O)NC"), load_molecule("c1ccc(Cl)cc1O")])  # topology only
    p_ab = pf.parameterize(ab, model=test_model_path)
    p_a = pf.parameterize(a, model=test_model_path)
    p_b = pf.parameterize(b, model=test_model_path)
    na = a.GetNumAtoms()
    np.testing.assert_allclose(p_ab.charges[:na], p_a.charges, atol=1e-10)
    np.testing.assert_allclose(p_ab.charges[na:], p_b.charges, atol=1e-10)
    c_ab = p_ab.pair_parameters()
    np.testing.assert_allclose(c_ab[:na, :na], p_a.pair_parameters(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(c_ab[na:, na:], p_b.pair_parameters(), rtol=1e-10, atol=1e-10)
    e_ab = openmm_energy(p_ab, np.vstack([pos_a, pos_b]))
    e_a = openmm_energy(p_a, pos_a)
    e_b = openmm_energy(p_b, pos_b)
    # dipole-dipole coupling at 80 A is below 1e-3 kcal/mol
    assert e_ab == pytest.approx(e_a + e_b, abs=1e-3)
    assert p_ab.energy_offset == pytest.approx(p_a.energy_offset + p_b.energy_offset, abs=1e-9)


def test_path_atoms_are_the_middle_atom_and_the_central_bond():
    from physff_openmm.graph import intramolecular_pairs, path_atoms

    def entries(mol, i, j):
        pairs = intramolecular_pairs(mol)
        rows, atoms, weights = path_atoms(mol, pairs)
        both = []
        for a, b in ((i, j), (j, i)):  # either order of the pair gives the same entries
            row, atom, weight = path_atoms(mol, np.array([[a, b]]))
            both.append(dict(zip(atom.tolist(), weight.tolist())))
        p = int(np.flatnonzero((pairs[:, 0] == min(i, j)) & (pairs[:, 1] == max(i, j)))[0])
        assert dict(zip(atoms[rows == p].tolist(), weights[rows == p].tolist())) == both[0] == both[1]
        return both[0]

    butane = Chem.AddHs(Chem.MolFromSmiles("CCCC"))
    assert entries(butane, 0, 1) == {}  # covalent
    assert entries(butane, 0, 2) == {1: 1.0}  # 1-3: the middle atom
    assert entries(butane, 0, 3) == {1: 1.0, 2: 1.0}  # 1-4: the central bond
    h = [a.GetIdx() for a in butane.GetAtomWithIdx(0).GetNeighbors() if a.GetSymbol() == "H"][0]
    assert entries(butane, h, 3) == {}
    assert entries(butane, h, 2) == {0: 1.0, 1: 1.0}
    benzene = Chem.AddHs(Chem.MolFromSmiles("c1ccccc1"))
    assert entries(benzene, 0, 3) == {1: 0.5, 2: 0.5, 4: 0.5, 5: 0.5}  # para: two shortest paths
    cyclobutane = Chem.AddHs(Chem.MolFromSmiles("C1CCC1"))
    assert entries(cyclobutane, 0, 2) == {1: 0.5, 3: 0.5}  # across the ring: two middle atoms


def test_path_embeddings_start_at_zero_and_training_graphs_give_the_parameters_parameterize_gives(
    test_model_path, path_model_path, monkeypatch
):
    """A model widened for path embeddings keeps its parameters until trained; with trained (random)
    path weights, the training graph's pair terms equal parameterize's, one molecule or a batch."""
    from torch_geometric.data import Batch

    from physff_openmm.graph import mol_to_graph
    from physff_openmm.model import load_model_file

    smi = "OC(=O)C1CCN(C)CC1"  # 1-4 pairs across the ring have two shortest paths
    base = load_model_file(test_model_path)
    grown = load_model_file(test_model_path)
    grown.add_path_embeddings()
    grown.file_hash = None
    assert grown.config.path_embeddings and grown.feats_net[0].in_features == base.feats_net[0].in_features + 32
    p0 = pf.parameterize(smi, model=base, cache=False)
    p1 = pf.parameterize(smi, model=grown, cache=False)
    np.testing.assert_allclose(p1.pair_parameters(), p0.pair_parameters(), rtol=1e-12, atol=1e-9)

    model = load_model_file(path_model_path)
    assert model.config.path_embeddings
    p = pf.parameterize(smi, model=model, cache=False)
    assert not np.allclose(p.pair_parameters(), p0.pair_parameters(), rtol=1e-3)
    mol = load_molecule(smi)
    # the random model tells apart every pair of atoms that symmetry does not make equal, so that
    # parameterize's class embeddings are the training graph's own
    assert p.n_classes == len(set(Chem.CanonicalRankAtoms(mol, breakTies=False)))
    twin = model.double()
    graphs = [mol_to_graph(load_molecule(s), with_pairs=True) for s in ("CCO", smi)]
    for g in graphs:
        g.x, g.edge_attr, g.pair_attr = g.x.double(), g.edge_attr.double(), g.pair_attr.double()
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        _, single = twin.pair_terms(graphs[1])
        _, batched = twin.pair_terms(batch)
    n_first = graphs[0].pair_index.shape[0]
    np.testing.assert_allclose(batched[n_first:].numpy(), single.numpy(), rtol=1e-12, atol=1e-12)
    i, j = graphs[1].pair_index[:, 0].numpy(), graphs[1].pair_index[:, 1].numpy()
    np.testing.assert_allclose(single.numpy(), p.pair_parameters()[i, j], rtol=1e-9, atol=1e-9)
    # in blocks of a few pairs (as a large molecule is parameterized), each block with its own path rows
    monkeypatch.setattr("physff_openmm.parameters.PAIR_BLOCK", 7)
    blocked = pf.parameterize(smi, model=model, cache=False)
    np.testing.assert_allclose(blocked.pair_parameters(), p.pair_parameters(), rtol=1e-12, atol=1e-12)


def test_pair_features_carry_topology():
    """Distance class (1..5, >= 6 bonds, different molecules), shared ring and the reference bond length."""
    from physff_openmm.graph import (
        BOND_FEATURES, PAIR_COVALENT, PAIR_DIFFERENT_MOLECULES, PAIR_REFERENCE_LENGTH, pair_features,
    )

    mol = load_molecule("CCCCCCCC1CC1.O")  # octyl chain on cyclopropane, then water
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() != "H"]
    c = heavy[:10]  # C0..C6 chain, C7 ring, C8, C9 ring; heavy[10] water O
    pairs = np.array([[c[0], c[1]], [c[0], c[2]], [c[0], c[3]], [c[0], c[4]], [c[0], c[5]], [c[0], c[6]],
                      [c[0], c[9]], [c[7], c[9]], [c[8], c[9]], [c[0], heavy[10]]])
    f = pair_features(mol, pairs)
    distance_class = np.argmax(f[:, BOND_FEATURES:BOND_FEATURES + 7], axis=1) + 1
    assert distance_class.tolist() == [1, 2, 3, 4, 5, 6, 6, 1, 1, 7]
    assert f[-1, PAIR_DIFFERENT_MOLECULES] == 1.0 and f[0, PAIR_COVALENT] == 1.0
    shares_ring = f[:, BOND_FEATURES + 7]
    assert shares_ring.tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 0]
    assert f[0, PAIR_REFERENCE_LENGTH] == pytest.approx(1.50)  # C-C single: 0.75 + 0.75
    assert np.all(f[1:7, PAIR_REFERENCE_LENGTH] == 0.0)


def test_pairs_within_a_molecule_are_listed_with_their_place_in_the_graph(test_model_path):
    """1-3 and 1-4 pairs of the same atom classes get different parameters; pairs between molecules the class table."""
    p = pf.parameterize("CCCC.O", model=test_model_path, cache=False)  # butane, water
    n_butane = 14
    assert len(p.intra_pairs) == n_butane * (n_butane - 1) // 2 + 3
    c = p.pair_parameters()
    mol = load_molecule("CCCC.O")
    from rdkit import Chem

    dist = Chem.GetDistanceMatrix(mol)
    cls = p.atom_classes
    # H...H of one methyl (1-3) and of the two methyls (5 bonds apart): same classes, different parameters
    h_methyl = [a.GetIdx() for a in mol.GetAtomWithIdx(0).GetNeighbors() if a.GetSymbol() == "H"]
    h_other = [a.GetIdx() for a in mol.GetAtomWithIdx(3).GetNeighbors() if a.GetSymbol() == "H"]
    assert cls[h_methyl[0]] == cls[h_other[0]]
    assert dist[h_methyl[0], h_methyl[1]] == 2 and dist[h_methyl[0], h_other[0]] == 5
    assert not np.allclose(c[h_methyl[0], h_methyl[1]], c[h_methyl[0], h_other[0]])
    # butane-water pairs come from the class table
    water = set(p.fragments[1])
    for a in set(range(p.n_atoms)) - water:
        for o in water:
            np.testing.assert_array_equal(c[a, o], p.class_parameters[cls[a], cls[o]])


def test_repeated_molecules_share_classes(test_model_path):
    p = pf.parameterize("O.O.O", model=test_model_path)
    assert p.n_classes == 2  # O and H
    assert p.charges.sum() == pytest.approx(0.0, abs=1e-12)


def test_cache_hit_returns_same_parameters_in_any_atom_order(test_model_path, tmp_path):
    mol = load_molecule("COP(=O)(OC)Oc1ccc(Br)cc1")
    first = pf.parameterize(mol, model=test_model_path, cache=tmp_path)
    assert first.metadata["cache_hit"] is False
    again = pf.parameterize(mol, model=test_model_path, cache=tmp_path)
    assert again.metadata["cache_hit"] is True
    np.testing.assert_array_equal(again.charges, first.charges)
    np.testing.assert_array_equal(again.pair_parameters(), first.pair_parameters())
    perm = np.random.default_rng(3).permutation(mol.GetNumAtoms()).tolist()
    shuffled = pf.parameterize(Chem.RenumberAtoms(mol, perm), model=test_model_path, cache=tmp_path)
    assert shuffled.metadata["cache_hit"] is True
    np.testing.assert_allclose(shuffled.charges, first.charges[perm], atol=1e-12)
    np.testing.assert_allclose(shuffled.pair_parameters(), first.pair_parameters()[np.ix_(perm, perm)], atol=1e-12)
    assert any(tmp_path.rglob("*.npz"))


def test_parameter_set_save_load_roundtrip(test_model_path, tmp_path):
    p = pf.parameterize("CC(=O)[O-]", model=test_model_path)
    p.save(tmp_path / "p.npz")
    q = pf.ParameterSet.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(q.pair_parameters(), p.pair_parameters())
    assert q.switch == p.switch and q.energy_offset == p.energy_offset and q.symbols == p.symbols
    assert not list(tmp_path.glob("*partial*"))


def test_lj_net_factors_survive_the_cache_files_and_the_model_file(head_model_path, floor_model_path, test_model_path,
                                                                  tmp_path):
    """A model's lj_net factors (one row per class) and sigma floor go through the cache, .npz, .json and a model
    file unchanged."""
    from physff_openmm.model import load_model_file, save_model_file

    mol = load_molecule("CC(=O)Nc1ccc(O)cc1")
    floored = pf.parameterize(mol, model=floor_model_path, cache=tmp_path / "cache")
    assert floored.lj_sigma_floor == 0.9
    hit = pf.parameterize(mol, model=floor_model_path, cache=tmp_path / "cache")
    assert hit.metadata["cache_hit"] is True and hit.lj_sigma_floor == 0.9
    for name in ("f.npz", "f.json"):
        floored.save(tmp_path / name)
        assert pf.ParameterSet.load(tmp_path / name).lj_sigma_floor == 0.9
    assert load_model_file(floor_model_path).config.lj_sigma_floor == 0.9
    first = pf.parameterize(mol, model=head_model_path, cache=tmp_path / "cache")
    assert first.class_lj.shape == (first.n_classes, 2) and np.any(first.class_lj != 0)
    perm = np.random.default_rng(5).permutation(mol.GetNumAtoms()).tolist()
    hit = pf.parameterize(Chem.RenumberAtoms(mol, perm), model=head_model_path, cache=tmp_path / "cache")
    assert hit.metadata["cache_hit"] is True
    np.testing.assert_array_equal(hit.class_lj[hit.atom_classes], first.class_lj[first.atom_classes][perm])
    for name in ("p.npz", "p.json"):
        first.save(tmp_path / name)
        np.testing.assert_array_equal(pf.ParameterSet.load(tmp_path / name).class_lj, first.class_lj)
    assert first.lj_sigma_floor == 0.0  # no floor unless the model has one
    assert pf.parameterize(mol, model=test_model_path).class_lj is None  # no lj_net: none, and none on disk
    plain = pf.parameterize(mol, model=test_model_path)
    plain.save(tmp_path / "plain.npz")
    plain.save(tmp_path / "plain.json")
    assert pf.ParameterSet.load(tmp_path / "plain.npz").class_lj is None
    assert pf.ParameterSet.load(tmp_path / "plain.json").class_lj is None
    model = load_model_file(head_model_path)
    save_model_file(model, tmp_path / "again.pt")
    again = pf.parameterize(mol, model=tmp_path / "again.pt", cache=False)
    np.testing.assert_array_equal(again.class_lj, pf.parameterize(mol, model=head_model_path, cache=False).class_lj)


def test_reference_energy_uses_energy_offset(test_model_path):
    mol = ensure_conformer(load_molecule("CCO"))
    p = pf.parameterize(mol, model=test_model_path)
    pos = positions_angstrom(mol)
    assert openmm_energy(p, pos) == pytest.approx(reference_energy(p, pos)["total"], rel=1e-6)


# --- errors ---------------------------------------------------------------------------

def test_unknown_model_lists_valid_names():
    with pytest.raises(pf.ModelError, match="unknown model 'no-such-model'.*available models"):
        pf.parameterize("CCO", model="no-such-model")


def test_unknown_backend(test_model_path):
    p = pf.parameterize("CCO", model=test_model_path)
    with pytest.raises(pf.BackendError, match="unknown backend 'gromacs'"):
        pf.create_system(p, backend="gromacs")
    with pytest.raises(pf.BackendError, match="platform 'Metal' is not available"):
        pf.get_platform("Metal")


@pytest.mark.parametrize(
    "molecule,error,match",
    [
        ("CC[I]", pf.UnsupportedElementError, "I"),
        ("[CH3]", pf.RadicalError, "atom 0"),
        ("C1CC", pf.MoleculeParseError, "C1CC"),
        ("CC(=O)[O-]", pf.ChargeError, "-1"),
    ],
)
def test_bad_molecules_raise_clear_errors(test_model_path, molecule, error, match):
    kwargs = {"charge": 0} if error is pf.ChargeError else {}
    with pytest.raises(error, match=match):
        pf.parameterize(molecule, model=test_model_path, **kwargs)


def test_missing_hydrogens_in_rdkit_mol(test_model_path):
    with pytest.raises(pf.MissingHydrogenError, match="atom 0 \\(C\\)"):
        pf.parameterize(Chem.MolFromSmiles("CCO"), model=test_model_path)


def test_model_config_rejects_unknown_keys():
    with pytest.raises(pf.ConfigError, match="unknown model config keys \\['hiden'\\]"):
        pf.ModelConfig.from_dict({"hiden": 3})


def test_message_passing_sums_messages_and_leaves_no_temporary_files(tmp_path, test_model_path):
    """MessageStep: m_i = sum over bonds j-i of message_net([h_i, h_j, e_ij]) (checked by hand), and a new
    process that builds and runs the model writes nothing to its temporary folder."""
    import os
    import subprocess
    import sys

    import torch

    from physff_openmm.model import MessageStep

    torch.manual_seed(0)
    step = MessageStep(hidden=4, edge_dim=2).double()
    h = torch.randn(3, 4, dtype=torch.float64)
    edges = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # 0-1 and 1-2, both directions
    e = torch.randn(4, 2, dtype=torch.float64)
    m = torch.zeros(3, 4, dtype=torch.float64)
    for k in range(4):
        j, i = int(edges[0, k]), int(edges[1, k])
        m[i] += step.message_net(torch.cat([h[i], h[j], e[k]]))
    expect = step.norm(h + step.update_net(torch.cat([h, m], dim=-1)))
    assert torch.allclose(step(h, edges, e), expect, atol=1e-12)

    code = f"import physff_openmm as pf; print(pf.parameterize('CCO', model={str(test_model_path)!r}, cache=False).charges.sum())"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=300)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- files that are damaged -------------------------------------------------------------

def test_a_corrupt_cache_entry_is_computed_again_with_a_warning(test_model_path, tmp_path):
    first = pf.parameterize("CCO", model=test_model_path, cache=tmp_path)
    (entry,) = tmp_path.rglob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated, as by a full disk or a killed process
    with pytest.warns(RuntimeWarning, match=rf"parameter cache entry '{entry}' is unreadable \(BadZipFile\)"):
        again = pf.parameterize("CCO", model=test_model_path, cache=tmp_path)
    assert again.metadata["cache_hit"] is False
    np.testing.assert_array_equal(again.pair_parameters(), first.pair_parameters())
    third = pf.parameterize("CCO", model=test_model_path, cache=tmp_path)  # the entry was replaced
    assert third.metadata["cache_hit"] is True


def test_the_cache_key_holds_the_model_hash_and_a_read_only_cache_is_skipped(test_model_path, tmp_path):
    from physff_openmm.model import ModelConfig, PhysFFModel, save_model_file

    torch.manual_seed(7)
    other = tmp_path / "other.pt"
    save_model_file(PhysFFModel(ModelConfig(hidden=32, pair_hidden=32, n_steps=3)), other, {"name": "other"})
    cache = tmp_path / "cache"
    a = pf.parameterize("CCO", model=test_model_path, cache=cache)
    b = pf.parameterize("CCO", model=other, cache=cache)  # same molecule, another model: not a hit
    assert b.metadata["cache_hit"] is False and not np.allclose(a.charges, b.charges)
    assert len(list(cache.rglob("*.npz"))) == 2
    unwritable = tmp_path / "a-file"  # no cache entry can be made below a file (as in a read-only folder)
    unwritable.write_text("")
    c = pf.parameterize("CCO", model=test_model_path, cache=unwritable)
    np.testing.assert_array_equal(c.charges, a.charges)
    assert c.metadata["cache_hit"] is False


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"not a model, some text\n", "is corrupt or not a physff-openmm model file"),
    ("truncated", "is corrupt or not a physff-openmm model file"),
])
def test_damaged_model_files_are_named_as_such(test_model_path, tmp_path, content, message):
    path = tmp_path / "damaged.pt"
    path.write_bytes(test_model_path.read_bytes()[:2000] if content == "truncated" else content)
    with pytest.raises(pf.ModelError, match=message) as err:
        pf.parameterize("O", model=path)
    assert str(path) in str(err.value) and "weights_only" not in str(err.value) and "Errno" not in str(err.value)


def test_a_damaged_shipped_model_names_its_expected_hash(tmp_path, monkeypatch):
    from physff_openmm import registry

    models = tmp_path / "models"
    models.mkdir()
    (models / "damaged.pt").write_bytes(b"\x00" * 64)
    monkeypatch.setattr(registry, "MODELS_DIR", models)
    monkeypatch.setattr(registry, "_shipped", lambda: {"damaged": {"file": "damaged.pt", "sha256": "ab" * 32}})
    monkeypatch.setattr(registry, "resolve_model", lambda name: (name, models / "damaged.pt"))
    with pytest.raises(pf.ModelError, match=r"shipped model 'damaged' .* records abab.*: the file is damaged"):
        registry.load_model("damaged")


def test_parameters_json_written_by_the_command_reads_back(test_model_path, tmp_path):
    from physff_openmm.cli import main

    assert main(["parameterize", "CC(=O)[O-]", "-o", str(tmp_path / "s.xml"), "--model", str(test_model_path)]) == 0
    p = pf.parameterize("CC(=O)[O-]", model=test_model_path)
    q = pf.ParameterSet.load(tmp_path / "s.json")
    for name in ("charges", "covalent_pairs", "intra_pairs", "intra_parameters", "atom_classes", "class_parameters"):
        np.testing.assert_array_equal(getattr(q, name), getattr(p, name))
    assert (q.symbols, q.switch, q.energy_offset, q.fragments, q.model_hash) == (
        p.symbols, p.switch, p.energy_offset, p.fragments, p.model_hash)
    q.save(tmp_path / "again.json")
    np.testing.assert_array_equal(pf.ParameterSet.load(tmp_path / "again.json").pair_parameters(), p.pair_parameters())
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(pf.PhysFFError, match="cannot read parameter file .*bad.json"):
        pf.ParameterSet.load(tmp_path / "bad.json")


def test_a_large_molecule_is_parameterized_in_blocks_with_a_progress_bar(test_model_path, capsys, monkeypatch):
    from physff_openmm import parameters

    smiles = "C" * 70  # 212 atoms: 22,366 pairs, two blocks
    shown = pf.parameterize(smiles, model=test_model_path, cache=False, progress=True)
    assert len(shown.intra_pairs) > parameters.PAIR_BLOCK and "parameterizing" in capsys.readouterr().err
    quiet = pf.parameterize(smiles, model=test_model_path, cache=False)  # not a terminal: no bar
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(parameters, "PAIR_BLOCK", 10**9)  # every pair in one evaluation
    whole = pf.parameterize(smiles, model=test_model_path, cache=False)
    np.testing.assert_allclose(quiet.intra_parameters, whole.intra_parameters, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(shown.intra_parameters, quiet.intra_parameters)
    pf.parameterize("CCO", model=test_model_path, cache=False, progress=True)
    assert capsys.readouterr().err == ""  # a small molecule: no bar even when asked


def test_resonance_structures_move_formal_charges_only_between_atoms_of_one_element(capfd):
    """Acetate's two O, nitrate's three: averaged charges, bond types and reference lengths; a phenolate's
    carbanion forms and molecules without formal charges leave the features as they were."""
    from physff_openmm.graph import (
        ELEMENTS, PAIR_REFERENCE_LENGTH, atom_features, pair_features, resonance_structures,
    )

    charge_cols = slice(len(ELEMENTS), len(ELEMENTS) + 5)  # formal charge -2..+2
    acetate = load_molecule("CC(=O)[O-]")  # C0 C1 O2 O3
    forms = resonance_structures(acetate)
    assert len(forms) == 2
    x = atom_features(acetate, forms)
    np.testing.assert_array_equal(x[2], x[3])
    assert x[2, charge_cols].tolist() == [0.0, 0.5, 0.5, 0.0, 0.0]
    np.testing.assert_array_equal(atom_features(acetate)[[0, 1]], x[[0, 1]])  # the rest as before
    f = pair_features(acetate, np.array([[1, 2], [1, 3]]), forms)
    np.testing.assert_array_equal(f[0], f[1])
    assert f[0, :2].tolist() == [0.5, 0.5]  # half single, half double
    assert f[0, PAIR_REFERENCE_LENGTH] == pytest.approx((1.38 + 1.38 * 0.87) / 2)  # C-O single 0.75 + 0.63
    plain = pair_features(acetate, np.array([[1, 2], [1, 3]]))
    assert plain[:, :2].tolist() == [[0.0, 1.0], [1.0, 0.0]]  # without structures: double, single

    nitrate = load_molecule("O=[N+]([O-])[O-]")
    x = atom_features(nitrate, resonance_structures(nitrate))
    np.testing.assert_allclose(x[[0, 2, 3], charge_cols], [[0.0, 2 / 3, 1 / 3, 0.0, 0.0]] * 3)
    phenolate = load_molecule("[O-]c1ccccc1")
    assert resonance_structures(phenolate) == [phenolate]
    paracetamol = load_molecule("CC(=O)Nc1ccc(O)cc1")
    assert resonance_structures(paracetamol) == [paracetamol]
    # RDKit leaves S=O and P=O alone: the charge of an S or P oxyanion moves among its terminal O (or S)
    for smiles, n_forms, centre, terminal in [
        ("CS(=O)(=O)[O-]", 3, 1, [2, 3, 4]), ("[O-]S(=O)(=O)C", 3, 1, [0, 2, 3]),
        ("[O-]S(=O)(=O)[O-]", 6, 1, [0, 2, 3, 4]), ("[O-]P(=O)([O-])[O-]", 4, 1, [0, 2, 3, 4]),
        ("CCOP(=S)([S-])OCC", 2, 3, [4, 5]),
    ]:
        oxyanion = load_molecule(smiles)
        forms = resonance_structures(oxyanion)
        assert len(forms) == n_forms, smiles
        x = atom_features(oxyanion, forms)
        np.testing.assert_array_equal(x[terminal], np.repeat(x[terminal[:1]], len(terminal), axis=0))
        f = pair_features(oxyanion, np.array([sorted((centre, k)) for k in terminal]), forms)
        np.testing.assert_array_equal(f, np.repeat(f[:1], len(terminal), axis=0))
        assert (x[:, charge_cols] @ np.arange(-2, 3)).sum() == pytest.approx(Chem.GetFormalCharge(oxyanion))
    ester = load_molecule("COS(=O)(=O)C")  # no charge to move
    assert resonance_structures(ester) == [ester]
    zwitterion = load_molecule("[O-]C1=CC=[S+]C1")  # RDKit rejects some of its structures, quietly
    capfd.readouterr()
    assert len(resonance_structures(zwitterion)) == 1
    assert "valence" not in capfd.readouterr().err


@pytest.mark.parametrize("smiles,equivalent", [
    ("CC(=O)[O-]", [(2, 3)]),
    ("O=[N+]([O-])c1ccccc1", [(0, 2)]),
    ("NC(=[NH2+])c1ccccc1", [(0, 2)]),
    ("c1c[nH+]c[nH]1", [(2, 4)]),
    ("CS(=O)(=O)[O-]", [(2, 4), (3, 4)]),
    ("COP(=O)([O-])[O-]", [(3, 4), (3, 5)]),
])
def test_a_resonance_model_parameterizes_resonance_equivalent_atoms_alike(test_model_path, smiles, equivalent):
    """With resonance_features the two O of a carboxylate (or nitro group, the two N of an amidinium or an
    imidazolium) share class, charge and covalent core; without, they do not; training graphs give the same
    pair parameters as parameterize."""
    from physff_openmm.graph import mol_to_graph, resonance_structures
    from physff_openmm.model import load_model_file

    base = load_model_file(test_model_path)
    model = load_model_file(test_model_path)
    model.config.resonance_features = True
    model.file_hash = None
    mol = load_molecule(smiles)
    p0 = pf.parameterize(mol, model=base, cache=False)
    p = pf.parameterize(mol, model=model, cache=False)
    c = p.pair_parameters()
    for a, b in equivalent:
        assert p0.charges[a] != pytest.approx(p0.charges[b], abs=1e-6)
        assert p.atom_classes[a] == p.atom_classes[b]
        assert p.charges[a] == pytest.approx(p.charges[b], abs=1e-12)
        (k,) = {n.GetIdx() for n in mol.GetAtomWithIdx(a).GetNeighbors() if n.GetSymbol() != "H"} & {
            n.GetIdx() for n in mol.GetAtomWithIdx(b).GetNeighbors() if n.GetSymbol() != "H"}
        np.testing.assert_allclose(c[k, a], c[k, b], rtol=1e-9, atol=1e-12)  # the two bonds to their shared neighbour
    g = mol_to_graph(mol, with_pairs=True, structures=resonance_structures(mol))
    twin = model.double()
    g.x, g.edge_attr, g.pair_attr = g.x.double(), g.edge_attr.double(), g.pair_attr.double()
    with torch.no_grad():
        _, terms = twin.pair_terms(g)
    i, j = g.pair_index[:, 0].numpy(), g.pair_index[:, 1].numpy()
    # parameterize merges atoms whose embeddings differ by less than CLASS_TOLERANCE (class means)
    np.testing.assert_allclose(terms.numpy(), c[i, j], rtol=1e-4, atol=1e-6)
