"""The covalent core (DESIGN.md version 2): every bond is bound by its own pair terms, whatever the weights."""

from __future__ import annotations

import numpy as np
import pytest

import physff_openmm as pf
from physff_openmm.graph import reference_bond_length

from random_model import random_model_file
from reference_energy import gaussians, switch

BOUND = 10.0  # kcal/mol: the line; the model builds in ModelConfig.covalent_bound (11)
MOLECULES = [
    "OC(=O)c1ccc(Cl)cc1SC[NH3+]",
    "COP(=O)(OC)Oc1ccc(Br)cc1",
    "CC(=O)[O-]",
    "FC(F)(F)C(=O)NC#N",
    "C=CC=O",
    "O",
    "N",
    "CO",
    "[NH3+]CC(=O)[O-]",
    "CS(=O)(=O)N",
]


def own_energy(c: np.ndarray, r: float, r_on: float, r_off: float) -> float:
    """A covalent pair's own energy (no Coulomb), NumPy, kcal/mol."""
    return -abs(c[0]) / r**6 + abs(c[1]) / r**12 + switch(r, r_on, r_off) * gaussians(r, c)


def _model(tmp_path, scale: float, seed: int):
    return random_model_file(tmp_path / f"model-{scale}-{seed}.pt", scale, seed)


@pytest.mark.parametrize("scale,seed", [(0.3, 0), (3.0, 1), (30.0, 2)])
def test_every_bond_is_bound_by_its_own_terms(tmp_path, scale, seed):
    """At 0.75 r_e at least 10 kcal/mol above r_e, and r_e at least 10 below r_off, for random weights of any size."""
    path = _model(tmp_path, scale, seed)
    n_checked = 0
    for smiles in MOLECULES:
        p = pf.parameterize(smiles, model=path, cache=False)
        r_on, r_off = p.switch
        r_e = p.equilibrium_lengths()
        for (i, j), c, re in zip(p.covalent_pairs, p.covalent_parameters, r_e):
            e_eq = own_energy(c, re, r_on, r_off)
            assert own_energy(c, 0.75 * re, r_on, r_off) - e_eq >= BOUND
            assert own_energy(c, r_off, r_on, r_off) - e_eq >= BOUND
            n_checked += 1
    assert n_checked > 80


def test_minimum_lies_near_the_reference_length(test_model_path):
    """r_e within +-15 % of the bond type's reference length; the pair curve's own minimum near r_e."""
    from rdkit import Chem

    for smiles in MOLECULES:
        p = pf.parameterize(smiles, model=test_model_path, cache=False)
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        r_on, r_off = p.switch
        for (i, j), c, re in zip(p.covalent_pairs, p.covalent_parameters, p.equilibrium_lengths()):
            bond = mol.GetBondBetweenAtoms(int(i), int(j))
            ref = reference_bond_length(p.symbols[i], p.symbols[j], bond.GetBondType())
            assert 0.85 * ref - 1e-9 <= re <= 1.15 * ref + 1e-9
            grid = np.linspace(0.6 * re, r_off, 2000)
            e = np.array([own_energy(c, r, r_on, r_off) for r in grid])
            r_min = grid[np.argmin(e)]
            assert abs(r_min - re) < 0.15 * re
            e_min = e.min()
            assert own_energy(c, 0.75 * r_min, r_on, r_off) - e_min >= BOUND
            assert own_energy(c, r_off, r_on, r_off) - e_min >= BOUND


def test_no_coulomb_on_bonds_but_c6_c12_on_every_pair(test_model_path):
    """The System's energy of a bond alone is its C6/C12 + Gaussians, with no charge term."""
    import openmm

    p = pf.parameterize("[H][H]", model=test_model_path, cache=False)
    assert p.covalent_pairs.tolist() == [[0, 1]]
    c = p.covalent_parameters[0]
    assert c[0] > 0 and c[1] > 0
    system = pf.create_system(p, backend="native")
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    for r in (0.6, 0.74, 1.2):
        ctx.setPositions(np.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]]) * 0.1)
        e = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilocalorie_per_mole)
        assert e == pytest.approx(own_energy(c, r, *p.switch), rel=1e-9)
