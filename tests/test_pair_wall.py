"""The inner wall of non-covalent pairs within a molecule (ModelConfig.wall_factor) and the Gaussian width floor:
below its wall radius every such pair's own energy rises as the atoms approach, whatever the weights."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

import physff_openmm as pf
from physff_openmm.errors import ConfigError
from physff_openmm.model import VDW_RADII, ModelConfig, load_model_file, save_model_file

from random_model import random_model_file
from reference_energy import KE, gaussians, switch

WALL, FLOOR = 0.55, 0.15
MOLECULES = [
    "OC(=O)c1ccc(Cl)cc1SC[NH3+]",
    "[NH3+]CC(=O)[O-]",
    "COP(=O)(OC)Oc1ccc(Br)cc1",
    "FC(F)(F)C(=O)NC#N",
    "CC(C)(C)O",
    "C1CC1",
    "CS(=O)(=O)[N-]c1ccccc1",
]


def own_energy(c: np.ndarray, qq: float, r: float, r_on: float, r_off: float) -> float:
    """A non-covalent pair's own energy (Coulomb, C6/C12, switched Gaussians), NumPy, kcal/mol."""
    return KE * qq / r - abs(c[0]) / r**6 + abs(c[1]) / r**12 + switch(r, r_on, r_off) * gaussians(r, c)


def _model(tmp_path, scale: float, seed: int, wall: float = WALL, floor: float = FLOOR):
    # large charges of both signs too: the wall must hold against Coulomb attraction
    path = tmp_path / f"model-{scale}-{seed}-{wall}-{floor}.pt"
    return random_model_file(path, scale, seed, 0.1 * scale, wall_factor=wall, width_floor=floor)


@pytest.mark.parametrize("scale,seed", [(0.3, 0), (3.0, 1), (30.0, 2)])
def test_pairs_within_a_molecule_rise_monotonically_inside_their_wall(tmp_path, scale, seed):
    path = _model(tmp_path, scale, seed)
    n_checked = 0
    for smiles in MOLECULES:
        p = pf.parameterize(smiles, model=path, cache=False)
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        topo = Chem.GetDistanceMatrix(mol)
        c, q = p.pair_parameters(), p.charges
        r_on, r_off = p.switch
        for i in range(p.n_atoms):
            for j in range(i + 1, p.n_atoms):
                if topo[i, j] < 2:
                    continue
                r_w = WALL * (VDW_RADII[p.symbols[i]] + VDW_RADII[p.symbols[j]])
                grid = np.linspace(0.5 * r_w, r_w, 300)
                e = np.array([own_energy(c[i, j], q[i] * q[j], r, r_on, r_off) for r in grid])
                assert np.all(np.diff(e) < 0), (smiles, i, j)
                assert np.all(c[i, j, 3::2] >= FLOOR - 1e-12)
                n_checked += 1
    assert n_checked > 500


def test_no_wall_leaves_the_parameters_as_they_were(tmp_path):
    """wall_factor = width_floor = 0 (models trained before the wall) changes nothing; a wall adds to C_1 of
    non-covalent pairs within a molecule only, and the floor widens only the Gaussians."""
    plain = pf.parameterize("CC(=O)[O-].[NH4+]", model=_model(tmp_path, 3.0, 3, 0.0, 0.0), cache=False)
    walled = pf.parameterize("CC(=O)[O-].[NH4+]", model=_model(tmp_path, 3.0, 3, WALL, 0.0), cache=False)
    np.testing.assert_array_equal(plain.charges, walled.charges)
    a, b = plain.pair_parameters(), walled.pair_parameters()
    topo = Chem.GetDistanceMatrix(Chem.AddHs(Chem.MolFromSmiles("CC(=O)[O-].[NH4+]")))
    inside = (topo >= 2) & (topo < 100)
    np.testing.assert_array_equal(np.delete(a, 1, axis=2), np.delete(b, 1, axis=2))
    np.testing.assert_array_equal(a[~inside, 1], b[~inside, 1])
    assert np.all(b[inside, 1] > a[inside, 1])


def test_walls_are_set_on_a_trained_model_and_stored(tmp_path):
    model = load_model_file(_model(tmp_path, 0.3, 0, 0.0, 0.0))
    model.set_walls(WALL, None)
    assert (model.config.wall_factor, model.config.width_floor) == (WALL, 0.0)
    save_model_file(model, tmp_path / "walled.pt", {"name": "walled"})
    assert load_model_file(tmp_path / "walled.pt").config.wall_factor == WALL
    with pytest.raises(ConfigError, match="wall_factor, width_floor and curvature_max"):
        model.set_walls(-0.1, None)
    with pytest.raises(ConfigError, match="must not be negative"):
        model.set_walls(None, None, -1.0)
    with pytest.raises(ConfigError, match="beyond r_on"):
        ModelConfig(wall_factor=2.0)


@pytest.mark.parametrize("scale,seed", [(0.3, 0), (3.0, 1), (30.0, 2)])
def test_curvature_bound_holds_for_every_gaussian(tmp_path, scale, seed):
    """curvature_max: every Gaussian of a non-covalent pair has curvature 2 |C_2k| / (C_2k+1^2 + 1e-5) at most the
    bound, whatever the weights; amplitudes are those of the same model without the bound, widths no smaller, and
    covalent pairs' Gaussians unchanged."""
    bound = 20.0
    path = random_model_file(tmp_path / "bounded.pt", scale, seed, 0.1 * scale, curvature_max=bound)
    free = random_model_file(tmp_path / "free.pt", scale, seed, 0.1 * scale)
    assert load_model_file(path).config.curvature_max == bound
    stiffest_free = 0.0
    for smiles in MOLECULES:
        c = pf.parameterize(smiles, model=path, cache=False).pair_parameters()
        c_free = pf.parameterize(smiles, model=free, cache=False).pair_parameters()
        topo = Chem.GetDistanceMatrix(Chem.AddHs(Chem.MolFromSmiles(smiles)))
        iu = np.triu_indices(c.shape[0], 1)
        cov = topo[iu] == 1
        amp, width = c[iu][:, 2::2], c[iu][:, 3::2]
        assert np.all(2.0 * np.abs(amp[~cov]) / (width[~cov] ** 2 + 1e-5) <= bound * (1 + 1e-9))
        np.testing.assert_allclose(amp, c_free[iu][:, 2::2], rtol=1e-12, atol=1e-12)
        assert np.all(width >= c_free[iu][:, 3::2] - 1e-12)
        np.testing.assert_array_equal(width[cov], c_free[iu][:, 3::2][cov])
        free_amp, free_width = c_free[iu][:, 2::2][~cov], c_free[iu][:, 3::2][~cov]
        stiffest_free = max(stiffest_free, float(np.max(2.0 * np.abs(free_amp) / (free_width**2 + 1e-5))))
    assert stiffest_free > bound  # the bound did something
