"""The lj_net phase: TIP3P from OpenMM's file, the phase's energies equal OpenMM's, fitting lowers the error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import physff_openmm as pf
from physff_openmm.model import load_model_file
from physff_openmm.training.config import LJHeadConfig
from physff_openmm.training.lj_head import (
    dimer_batch,
    dimer_errors,
    interaction_energies,
    rule_sigma_epsilon,
    tip3p_water,
    train_lj_head,
)
from structures import tip3p_interaction

# TIP3P as openmm/app/data/amber14/tip3p.xml states it (Jorgensen et al. 1983)
TIP3P = {"O": (-0.834, 3.1507524065751241, 0.635968 / 4.184), "H": (0.417, 10.0, 0.0)}  # H: sigma 1 nm, epsilon 0
ENERGY_TOL = 1e-6  # relative (+1e-8 kcal/mol absolute): the phase's NumPy/torch energies vs OpenMM's Reference platform
SCALINGS = (0.8, 0.9, 1.0, 1.2, 1.5)


def test_tip3p_is_read_from_openmm():
    """TIP3P's values from OpenMM's file; its hydrogens, bare of Lennard-Jones there, with the core physff atoms meet."""
    tip = tip3p_water()
    assert tip["O"] == pytest.approx(TIP3P["O"], rel=1e-9, abs=1e-12)
    assert TIP3P["H"][2] == 0.0
    assert tip["H"] == pytest.approx((TIP3P["H"][0], 1.2, 0.01), rel=1e-9, abs=1e-12)


def _dimer(partner: str, name: str, seed: int):
    """A record of ``partner`` and a water along a distance scan (interaction energies: a smooth made-up curve)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from physff_openmm.training.dataset import MoleculeRecord

    a = Chem.AddHs(Chem.MolFromSmiles(partner))
    AllChem.EmbedMolecule(a, randomSeed=seed)
    w = Chem.AddHs(Chem.MolFromSmiles("O"))
    AllChem.EmbedMolecule(w, randomSeed=seed)
    xa, xw = a.GetConformer().GetPositions(), w.GetConformer().GetPositions()
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    gap = np.abs((xa - xa.mean(0)) @ direction).max() + 2.2  # water's O about 2.2 A past the partner's surface
    frames = [np.concatenate([xa, xw - xw[0] + xa.mean(0) + s * gap * direction]) for s in SCALINGS]
    mol = Chem.CombineMols(a, w)
    e_int = np.array([-4.0 * (1.0 / s**12 - 2.0 / s**6) / 2.0 for s in SCALINGS]) / 627.509474  # Hartree
    fragments = np.array([0] * a.GetNumAtoms() + [1] * 3, dtype=np.int8)
    return MoleculeRecord.from_rdkit(mol, name, positions=np.stack(frames), interaction_energy=e_int,
                                     scaling=np.array(SCALINGS), fragments=fragments)


@pytest.mark.parametrize("partner,floored", [("CO", False), ("CC(=O)[O-]", False), ("CC(=O)[O-]", True)])
def test_phase_energies_are_the_runtime_rule(head_model_path, floor_model_path, partner, floored):
    """What the phase fits is what OpenMM computes: the rule with the model's lj_net (and sigma floor), physff
    charges, TIP3P water."""
    rec = _dimer(partner, "d", 3)
    model_path = floor_model_path if floored else head_model_path
    model = load_model_file(model_path)
    batch = dimer_batch([rec], model)
    model.lj_net.double()  # as parameterize's float64 twin: the floor model's wide factors show float32 rounding
    with torch.no_grad():
        mine = interaction_energies(batch, *rule_sigma_epsilon(model, batch)).numpy()
    # the partner's atoms come first in the record, as in the OpenMM topology
    expected = tip3p_interaction(partner, model_path, np.asarray(rec.positions))
    np.testing.assert_allclose(mine, expected, rtol=ENERGY_TOL, atol=1e-8)
    assert batch.water.tolist() == [True] and not batch.learned[-3:].any()


def test_fitting_lowers_the_error_and_marks_the_model_changed(test_model_path):
    train = [_dimer(s, f"t{k}", k) for k, s in enumerate(["CO", "CC(=O)O", "CN", "c1ccccc1O"])]
    val = [_dimer("CCO", "v0", 7)]
    model = load_model_file(test_model_path)
    assert model.lj_net is None and model.file_hash is not None
    assert pf.parameterize("CCO", model=model).class_lj is None  # leaves a cache entry and a float64 twin behind
    cfg = LJHeadConfig(hidden=8, steps=60, lr=1e-2, sigma_range=0.3, epsilon_range=1.5, sigma_floor=0.7)
    out = train_lj_head(model, train, val, cfg)
    before, after = out["before"]["train"], out["after"]["train"]
    assert after["rmse_all_frames"] < before["rmse_all_frames"]
    assert model.lj_net is not None and model.config.lj_hidden == 8 and model.config.lj_sigma_floor == 0.7
    assert model.file_hash is None  # no longer the file's model: parameters are not taken from the cache
    params = pf.parameterize("CCO", model=model)  # neither the cache entry nor the twin of before is used
    assert params.class_lj is not None and params.class_lj.shape == (params.n_classes, 2)
    assert params.lj_sigma_floor == 0.7
    assert np.all(np.abs(params.class_lj[:, 0]) <= 0.3) and np.all(np.abs(params.class_lj[:, 1]) <= 1.5)
    assert np.any(params.class_lj != 0.0)


def test_errors_count_collapses_of_water_dimers(test_model_path):
    rec = _dimer("CO", "c", 1)
    batch = dimer_batch([rec], load_model_file(test_model_path))
    ref = batch.reference.numpy()
    deep = ref.copy()
    deep[np.argmin(batch.scaling)] = ref.min() - 1.5  # the shortest frame 1.5 below the scan's minimum
    assert dimer_errors(batch, deep)["water_collapses"] == ["c"]
    assert dimer_errors(batch, ref) == {**dimer_errors(batch, ref), "water_collapses": [], "rmse_equilibrium": 0.0}


@pytest.mark.parametrize("floor", [-0.1, 1.0])
def test_a_sigma_floor_outside_zero_to_one_is_refused(floor):
    from physff_openmm.errors import ConfigError
    from physff_openmm.model import ModelConfig

    with pytest.raises(ConfigError, match="sigma_floor must lie in"):
        LJHeadConfig(hidden=8, sigma_floor=floor)
    with pytest.raises(ConfigError, match="lj_sigma_floor must lie in"):
        ModelConfig(lj_sigma_floor=floor)
