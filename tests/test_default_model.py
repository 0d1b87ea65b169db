"""The shipped B3LYP-trained models: provenance, size, and physical sanity through the runtime path."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import physff_openmm as pf
from physff_openmm.registry import MODELS_DIR, resolve_model

from pathlib import Path

INDEX = json.loads((MODELS_DIR / "index.json").read_text())
ROOT = Path(__file__).resolve().parents[1]
#: The trained models and the recipe each was written by (physff-md2 continues physff-default's chain).
TRAINED = {"physff-default": "training/default_model.yaml", "physff-md2": "training/configs/default_model_md2.yaml"}
SHIPPED = [n for n in TRAINED if n in INDEX]
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no trained model is installed in this checkout")


def test_default_is_a_trained_model():
    name, _ = resolve_model("default")
    assert name in TRAINED, f"'default' points at {name}"
    assert pf.load_model("default").metadata["level"] == "b3lyp-d3bj/def2-svp"


@pytest.mark.parametrize("NAME", SHIPPED)
def test_trained_model_ships_with_provenance_and_hash(NAME):
    name, path = resolve_model(NAME)
    assert name == NAME and path.is_file()
    assert path.stat().st_size < 5 * 2**20  # small enough for the wheel
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loads by name without a warning
        model = pf.load_model(NAME)
    assert model.file_hash == INDEX[NAME]["sha256"]
    meta = model.metadata
    assert meta["level"] == "b3lyp-d3bj/def2-svp"
    assert meta["data"]["recipe"] == TRAINED[NAME] and (ROOT / TRAINED[NAME]).is_file()
    splits = meta["data"]["public_splits"]
    assert {"conformers", "torsions", "ncia"} <= set(splits)
    assert all(splits[s]["test_molecules"] > 0 for s in ("conformers", "torsions", "ncia"))
    assert "md_stability" in meta["metrics"] and "test" in meta["metrics"]
    assert len(model.file_hash) == 64


@pytest.mark.parametrize("NAME", SHIPPED)
def test_water_charges_and_hydrogen_bond(NAME):
    """Charges have the chemically expected signs; the water dimer is bound by a few kcal/mol.

    CCSD(T)/CBS puts the water dimer's interaction energy at about -5.0 kcal/mol.
    """
    from structures import water_dimer

    from physff_openmm import workflows as wf

    params = pf.parameterize("O", model=NAME)
    q = params.charges
    assert q[0] < -0.3 and np.all(q[1:] > 0.15) and abs(q.sum()) < 1e-9
    res = wf.interaction_energy(water_dimer(), model=NAME, minimize=False, platform="Reference")
    assert -8.0 < res["interaction_energy_kcal_mol"] < -2.0, res
