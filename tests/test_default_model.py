"""The shipped default model: provenance, size, and physical sanity through the runtime path."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import physff_openmm as pf
from physff_openmm.registry import MODELS_DIR, resolve_model

INDEX = json.loads((MODELS_DIR / "index.json").read_text())
TRAINED = INDEX.get("default", {}).get("alias_of") == "physff-default"
pytestmark = pytest.mark.skipif(not TRAINED, reason="the trained default model is not installed in this checkout")


def test_default_is_the_trained_model_with_provenance():
    name, path = resolve_model("default")
    assert name == "physff-default" and path.is_file()
    assert path.stat().st_size < 5 * 2**20  # small enough for the wheel
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the trained default loads without the development-model warning
        model = pf.load_model("default")
    meta = model.metadata
    assert meta["level"] == "b3lyp-d3bj/def2-svp"
    assert meta["data"]["recipe"] == "training/default_model.yaml"
    splits = meta["data"]["public_splits"]
    assert {"conformers", "torsions", "ncia"} <= set(splits)
    assert all(splits[s]["test_molecules"] > 0 for s in ("conformers", "torsions", "ncia"))
    assert "md_stability" in meta["metrics"] and "test" in meta["metrics"]
    assert len(model.file_hash) == 64


def test_water_charges_and_hydrogen_bond():
    """Charges have the chemically expected signs; the water dimer is bound by a few kcal/mol.

    CCSD(T)/CBS puts the water dimer's interaction energy at about -5.0 kcal/mol.
    """
    from structures import water_dimer

    from physff_openmm import workflows as wf

    params = pf.parameterize("O", model="default")
    q = params.charges
    assert q[0] < -0.3 and np.all(q[1:] > 0.15) and abs(q.sum()) < 1e-9
    res = wf.interaction_energy(water_dimer(), minimize=False, platform="Reference")
    assert -8.0 < res["interaction_energy_kcal_mol"] < -2.0, res


def test_md_at_1_fs_keeps_bonds():
    pytest.importorskip("lightning")
    from physff_openmm.training.evaluate import md_stability

    result = md_stability("default", {"smiles": ["CC(=O)Nc1ccc(O)cc1"], "time_ps": 2.0, "timestep_fs": 1.0})
    r = result["molecules"]["CC(=O)Nc1ccc(O)cc1"]
    assert result["all_stable"] and r["finite"] and r["max_bond_change"] < 0.2, result
    assert 200.0 < r["mean_temperature_k"] < 400.0
