"""benchmarks/bond_cleavage.py: the bonds it pulls, its physff energies against the formula's
NumPy reference, GFN2-xTB's dissociation energy, and bad input that writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reference_energy import gaussians, reference_energy, switch

pytest.importorskip("tblite")


@pytest.fixture()
def cleavage(load_benchmark):
    return load_benchmark("bond_cleavage")


def test_pulled_bonds_follow_the_formula(cleavage, tmp_path, bound_model_path):
    import physff_openmm as pf
    from physff_openmm.molecule import load_molecule
    from physff_openmm.training.xtb import xtb_energies
    from physff_openmm.units import HARTREE_TO_KCAL

    stem = str(tmp_path / "b")
    assert cleavage.main(["--model", str(bound_model_path), "--smiles", "CCO", "--out", stem]) == 0
    out = json.loads(Path(stem + ".json").read_text())
    bonds = out["bonds"]
    # ethanol: C-C and C-O; the smaller side moves (the methyl, the hydroxyl)
    assert sorted(b["bond"][0] + b["bond"][-2] for b in bonds) == ["CC", "CO"]
    assert sorted(len(b["moved_atoms"]) for b in bonds) == [2, 4]
    params = pf.parameterize(load_molecule("CCO"), model=bound_model_path)
    x0 = np.array(out["molecules"][0]["start_positions_angstrom"])
    e0 = reference_energy(params, x0)["total"]
    for b in bonds:
        i, j = b["atoms"]
        axis = (x0[j] - x0[i]) / np.linalg.norm(x0[j] - x0[i])
        for shift, value in zip(out["shifts_angstrom"], b["physff_profile_kcal_mol"]):
            x = x0.copy()
            x[b["moved_atoms"]] += shift * axis
            assert value == pytest.approx(reference_energy(params, x)["total"] - e0, abs=1e-3)
        # GFN2-xTB's closed-shell path: its first point again, and how far physff follows it
        x = x0.copy()
        x[b["moved_atoms"]] += out["shifts_angstrom"][0] * axis
        numbers = [a.GetAtomicNum() for a in load_molecule("CCO").GetAtoms()]
        closed = b["xtb_closed_shell_profile_kcal_mol"]
        assert len(closed) == len(out["shifts_angstrom"]) - 1
        e_start, e_first = xtb_energies(numbers, [x0, x])  # one calculator walking the path, as the script's
        assert closed[0] == pytest.approx((e_first - e_start) * HARTREE_TO_KCAL, abs=1e-6)
        length = np.linalg.norm(x0[j] - x0[i])
        followed = [(length + s) / length for s, e, ref in zip(out["shifts_angstrom"], b["physff_profile_kcal_mol"], closed)
                    if abs(e - ref) <= cleavage.FOLLOW_KCAL_MOL]
        assert b["physff_follows_xtb_to"] >= 1.0 and (not followed or b["physff_follows_xtb_to"] <= max(followed) + 1e-9)
        assert b["physff_barrier_kcal_mol"] == max(b["physff_profile_kcal_mol"])
        assert b["physff_dissociated_kcal_mol"] == b["physff_profile_kcal_mol"][-1]
        # GFN2-xTB: breaking a single bond costs roughly a hundred kcal/mol
        assert 60.0 < b["xtb_dissociation_kcal_mol"] < 250.0
        # the bond's own pair term, from the formula evaluated independently
        k = [set(p) for p in params.covalent_pairs.tolist()].index({i, j})
        c = params.covalent_parameters[k]
        assert b["physff_bond_eps_kcal_mol"] == pytest.approx(c[0] ** 2 / (4 * c[1]), rel=1e-9)
        r_on, r_off = params.switch
        grid = np.linspace(0.7 * params.equilibrium_lengths()[k], r_off, 2000)
        own = np.array([-c[0] / r**6 + c[1] / r**12 + switch(r, r_on, r_off) * gaussians(r, c) for r in grid])
        assert b["physff_bond_own_depth_kcal_mol"] == pytest.approx(own[-1] - own.min(), abs=1e-6)
        assert b["physff_bond_own_depth_kcal_mol"] >= 10.0  # the covalent core's guarantee
    assert out["summary"]["n_bonds"] == 2
    assert "| GFN2-xTB dissociation |" in Path(stem + ".md").read_text()


def test_bad_input_writes_nothing(cleavage, tmp_path):
    stem = str(tmp_path / "b")
    assert cleavage.main(["--model", "no-such-model", "--out", stem]) == 2
    assert cleavage.main(["--smiles", "not a smiles", "--out", stem]) == 2
    assert cleavage.main(["--smiles", "CC(=O)[O-]", "--out", stem]) == 2  # homolytic cleavage: neutral only
    assert list(tmp_path.iterdir()) == []
