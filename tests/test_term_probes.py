"""benchmarks/term_probes.py: its torsion and induction terms against independent evaluations, its fit
against a term it can represent, and both probes end to end on a few records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolTransforms

from shared_data import shared_data


@pytest.fixture()
def probes(load_benchmark):
    return load_benchmark("term_probes")


def _mol(smiles: str, seed: int = 7):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    return mol


def test_proper_dihedrals_and_their_cosines_match_rdkit(probes):
    mol = _mol("CCCO")
    dih = probes.proper_dihedrals(mol)
    # each bond j-k: (degree j - 1) (degree k - 1) dihedrals; bonds to H have none
    expected = sum((b.GetBeginAtom().GetDegree() - 1) * (b.GetEndAtom().GetDegree() - 1) for b in mol.GetBonds())
    assert len(dih) == expected == 9 + 9 + 3
    assert len({tuple(d) for d in dih} | {tuple(d[::-1]) for d in dih}) == 2 * len(dih)  # each once
    ring = probes.proper_dihedrals(_mol("C1CC1"))
    assert len(ring) and all(d[0] != d[3] for d in ring)  # no i-j-k-i in a three-membered ring
    x = mol.GetConformer().GetPositions()
    cos = probes.dihedral_cosines(x[None], dih)[0]
    phi = np.array([rdMolTransforms.GetDihedralRad(mol.GetConformer(), *map(int, d)) for d in dih])
    assert np.allclose(cos, np.stack([np.cos(n * phi) for n in probes.ORDERS], axis=1), atol=1e-10)


def test_pair_form_basis_is_the_formulas_gaussians_of_the_1_4_pairs(probes):
    """Amplitude corrections through the pair form's basis change the energy as the formula, evaluated
    independently, does when the same corrections are added to the 1-4 pairs' C_2, C_4, ..., C_12."""
    import physff_openmm as pf
    from reference_energy import gaussians, switch

    mol = _mol("CCOC(C)=O")
    params = pf.parameterize(mol)
    x = mol.GetConformer().GetPositions()
    pairs = probes.onefour_pairs(mol)
    dist = Chem.GetDistanceMatrix(mol)
    assert len(pairs) and all(dist[i, l] == 3 and i < l for i, l in pairs)
    assert len(pairs) == int((np.triu(dist) == 3).sum())
    table = params.pair_parameters()[pairs[:, 0], pairs[:, 1]]
    basis = probes.pair_gaussians(x[None], pairs, table, params.switch)[0]
    delta = np.random.default_rng(3).normal(size=(len(pairs), 6))
    expected = 0.0
    for (i, l), c, d in zip(pairs, table, delta):
        r = float(np.linalg.norm(x[i] - x[l]))
        moved = c.copy()
        moved[2::2] += d
        expected += switch(r, *params.switch) * (gaussians(r, moved) - gaussians(r, c))
    assert float((basis * delta).sum()) == pytest.approx(expected, rel=1e-9, abs=1e-9)


class _Constant(torch.nn.Module):
    """A stand-in network: the same output for every row."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values, dtype=torch.float32)

    def forward(self, x):
        return self.values.expand(x.shape[0], -1)


def test_torsion_energy_is_the_cosine_series(probes):
    mol = _mol("CCCC")
    dih = probes.proper_dihedrals(mol)
    x = np.stack([mol.GetConformer().GetPositions(), _mol("CCCC", seed=3).GetConformer().GetPositions()])
    data = {"inputs": torch.zeros(len(dih), 4), "basis": torch.from_numpy(probes.dihedral_cosines(x, dih)).float()}
    v = [1.5, -0.7, 0.3]
    e = probes.torsion_energy(_Constant(v), data).numpy()
    for f in range(2):
        conf = Chem.Conformer(mol.GetNumAtoms())
        for a, p in enumerate(x[f]):
            conf.SetAtomPosition(a, p.tolist())
        phi = np.array([rdMolTransforms.GetDihedralRad(conf, *map(int, d)) for d in dih])
        assert e[f] == pytest.approx(sum(vn * np.cos(n * phi).sum() for vn, n in zip(v, probes.ORDERS)), abs=1e-3)


class _FirstColumn(torch.nn.Module):
    """A stand-in network whose output is its input's first column: each row its own value."""

    def forward(self, x):
        return x[:, :1]


def test_induction_energy_against_a_direct_sum(probes):
    from physff_openmm.units import COULOMB_KCAL_ANGSTROM

    rng = np.random.default_rng(0)
    pos = rng.normal(scale=2.0, size=(3, 5, 3))
    frag = np.array([0, 0, 1, 1, 1])
    q = np.array([0.6, 0.4, -0.5, 0.2, -0.7])
    raw = np.array([0.3, -0.8, 1.1, 0.0, -0.2])  # alpha_i = softplus(raw_i + ln(e - 1)), each atom its own
    alpha = np.log1p(np.exp(raw + probes.SOFTPLUS_ONE))
    h = torch.tensor(np.stack([raw, np.zeros(5)], axis=1), dtype=torch.float32)
    data = {"h": h, "q": torch.tensor(q, dtype=torch.float32),
            "inter": torch.from_numpy(frag[:, None] != frag[None, :]).float(), "pos": torch.tensor(pos, dtype=torch.float32)}
    e = probes.induction_energy(_FirstColumn(), data).numpy()
    for f in range(3):
        total = 0.0
        for i in range(5):
            field = np.zeros(3)
            for j in range(5):
                if frag[i] == frag[j]:
                    continue
                d = pos[f, i] - pos[f, j]
                r = np.linalg.norm(d)
                u = r / (alpha[i] * alpha[j]) ** (1 / 6)
                field += q[j] * (1 - np.exp(-probes.THOLE * u**3)) * d / r**3
            total += -0.5 * COULOMB_KCAL_ANGSTROM * alpha[i] * field @ field
        assert e[f] == pytest.approx(total, rel=1e-4)
    # one molecule alone: nothing; far apart: the undamped -1/2 k_e alpha q^2 / R^4 of a charge and a polarizable atom
    alone = dict(data, inter=torch.zeros(5, 5))
    assert np.all(probes.induction_energy(_FirstColumn(), alone).numpy() == 0.0)
    two = {"h": torch.tensor([[2.0, 0.0], [-0.5, 0.0]]), "q": torch.tensor([1.0, 0.0]),
           "inter": torch.tensor([[0.0, 1.0], [1.0, 0.0]]), "pos": torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 20.0]]])}
    far = probes.induction_energy(_FirstColumn(), two).numpy()[0]
    alpha_neutral = np.log1p(np.exp(-0.5 + probes.SOFTPLUS_ONE))  # only the uncharged atom's alpha counts
    assert far == pytest.approx(-0.5 * COULOMB_KCAL_ANGSTROM * alpha_neutral / 20.0**4, rel=1e-4)


def test_gaussians_between_molecules_against_a_direct_sum(probes):
    """Each pair's own amplitudes (from its atoms) and widths: the energy of the formula's Gaussians, switched."""
    from reference_energy import gaussians, switch

    rng = np.random.default_rng(2)
    pos = rng.normal(scale=2.5, size=(2, 4, 3))
    frag = np.array([0, 1, 1, 0])
    pairs = np.argwhere(np.triu(frag[:, None] != frag[None, :]))
    table = np.zeros((len(pairs), 14))
    table[:, 3::2] = rng.uniform(0.2, 0.9, size=(len(pairs), 6))
    h = torch.tensor(rng.normal(size=(4, 3)), dtype=torch.float32)
    data = {"h": h, "pairs": torch.from_numpy(pairs),
            "basis": torch.from_numpy(probes.pair_gaussians(pos, pairs, table, (2.0, 3.0))).float()}
    term = probes.InterTerm(3, 4, 0, induction=False, pairs=True)
    e = term(data).detach().numpy()
    with torch.no_grad():
        amp = term.pair_net(torch.cat([h[pairs[:, 0]] + h[pairs[:, 1]], h[pairs[:, 0]] * h[pairs[:, 1]]], dim=1)).numpy()
    assert np.ptp(amp, axis=0).min() > 0  # the pairs' amplitudes differ
    for f in range(2):
        total = 0.0
        for (i, j), c, a in zip(pairs, table, amp):
            r = float(np.linalg.norm(pos[f, i] - pos[f, j]))
            moved = c.copy()
            moved[2::2] = a
            total += switch(r, 2.0, 3.0) * gaussians(r, moved)
        assert e[f] == pytest.approx(total, rel=1e-4, abs=1e-6)


def test_fit_recovers_a_torsion_term_it_can_represent(probes):
    rng = np.random.default_rng(1)
    teacher = probes.make_network(6, 8, len(probes.ORDERS), seed=3)
    with torch.no_grad():
        teacher[-1].weight.mul_(30.0)  # coefficients of a few kcal/mol
    items = []
    for k in range(12):
        data = {"inputs": torch.tensor(rng.normal(size=(10, 6)), dtype=torch.float32),
                "basis": torch.tensor(np.cos(rng.uniform(0, 2 * np.pi, size=(8, 10, 1)) * np.array(probes.ORDERS)), dtype=torch.float32)}
        with torch.no_grad():
            target = probes.torsion_energy(teacher, data).double().numpy()
        items.append(probes.Item(f"m{k}", np.zeros(8), target + 5.0 * k, data))  # offsets: only relative energies count
    net = probes.make_network(6, 16, len(probes.ORDERS), seed=0)
    before = probes.centred_rmse(items, None)
    history = probes.fit(net, items, probes.torsion_energy, centred=True, epochs=150, batch=4, lr=3e-3, weight_decay=0.0)
    after = probes.centred_rmse(items, probes.term_values(net, items, probes.torsion_energy))
    assert history[-1] < history[0] and after < 0.1 * before


def _data_or_skip():
    data = shared_data()
    if not (data / "ncia-atlas").is_dir() or not (data / "torsion-drives").is_dir():
        pytest.skip(f"public reference data not found at {data} (set PHYSFF_SHARED_DATA)")
    return data


@pytest.mark.parametrize("term", ["torsion", "torsion-pair", "induction"])
def test_probes_end_to_end(probes, term, tmp_path):
    """A few records of each set: results written, the model's own numbers before the term finite."""
    data = _data_or_skip()
    pytest.importorskip("h5py")
    stem = str(tmp_path / term)
    form = ["--form", "pair"] if term == "torsion-pair" else []
    term = term.split("-")[0]
    assert probes.main([term, *form, "--data", str(data), "--limit", "12", "--epochs", "1", "--out", stem]) == 0
    out = json.loads(Path(stem + ".json").read_text())
    assert out["epochs"] == 1
    res = out["results"]
    if term == "torsion":
        assert res["xtb_fit"]["n_molecules"] == 12 and res["xtb_held_out"]["n_molecules"] > 0
        assert np.isfinite(res["drives_train"]["rmse_before"]) and np.isfinite(res["xtb_held_out"]["rmse_after"])
    else:
        assert set(res) == {"train", "val"} and set(out["fit_rmse_by_epoch"]) == set(probes.INDUCTION_VARIANTS)
        for group in (g for part in res.values() for g in part.values()):
            assert all(np.isfinite(group[f"rmse_{name}"]) for name in ["model", *probes.INDUCTION_VARIANTS])
    assert "on the frozen model" in Path(stem + ".md").read_text()


def test_bad_flags_and_a_bad_model_write_nothing(probes, tmp_path):
    stem = str(tmp_path / "x")
    for argv in (["torsion", "--epochs", "0"], ["dispersion"], ["torsion", "--seed", "-1"], ["induction", "--fit-dft"],
                 ["induction", "--form", "pair"]):
        with pytest.raises(SystemExit) as exc:
            probes.main([*argv, "--out", stem])
        assert exc.value.code == 2
    assert probes.main(["induction", "--model", str(tmp_path / "missing.pt"), "--out", stem]) == 2
    assert not list(tmp_path.iterdir())


def test_a_missing_extra_shard_is_one_error_and_writes_nothing(probes, tmp_path, capsys):
    data = _data_or_skip()
    pytest.importorskip("h5py")
    stem = str(tmp_path / "x")
    rc = probes.main(["torsion", "--data", str(data), "--limit", "3", "--extra-shard", str(tmp_path / "missing.h5"), "--out", stem])
    assert rc == 2 and "missing.h5" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
