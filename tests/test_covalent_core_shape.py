"""benchmarks/covalent_core_shape.py: its fits recover known wells, its curve is GFN2-xTB's lowest
state along the bond, and bad input writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture()
def shape(load_benchmark):
    return load_benchmark("covalent_core_shape")


def test_fits_recover_a_morse_and_a_twelve_six_well(shape):
    r = np.asarray(shape.FACTORS) * 1.5
    fit = shape.fit_shapes(r, shape.morse(r, 140.0, 1.7, 1.5))
    m = fit["morse"]
    assert m["rmse_kcal_mol"] < 1e-3 and m["depth_kcal_mol"] == pytest.approx(140.0, rel=1e-4)
    assert m["force_constant"] == pytest.approx(2 * 140.0 * 1.7**2, rel=1e-3)
    assert fit["twelve_six"]["rmse_kcal_mol"] > 10.0  # a 12-6 well cannot follow it
    assert fit["xtb_force_constant"] == pytest.approx(2 * 140.0 * 1.7**2, rel=0.03)  # the parabola at the minimum
    lj = shape.fit_shapes(r, shape.twelve_six(r, 30.0, 1.5))["twelve_six"]
    assert lj["rmse_kcal_mol"] < 1e-3 and lj["force_constant"] == pytest.approx(72 * 30.0 / 1.5**2, rel=1e-3)


def test_curve_is_the_lowest_gfn2_xtb_state_along_the_bond(shape, tmp_path):
    pytest.importorskip("tblite")
    from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
    from physff_openmm.training.data import fragment_pull_geometries
    from physff_openmm.training.xtb import xtb_lowest_state
    from physff_openmm.units import HARTREE_TO_KCAL

    stem = str(tmp_path / "s")
    assert shape.main(["--smiles", "CC", "--out", stem]) == 0
    out = json.loads(Path(stem + ".json").read_text())
    (rec,) = out["bonds"]
    assert rec["bond"] == "C0-C1" and len(rec["r_angstrom"]) == len(shape.FACTORS)
    mol = ensure_conformer(load_molecule("CC"))
    x = fragment_pull_geometries(mol, positions_angstrom(mol), (0, 1), [shape.FACTORS[-1]])[0]
    e_far = xtb_lowest_state([6, 6, 1, 1, 1, 1, 1, 1], x, 0, (None, 2))[0] * HARTREE_TO_KCAL
    e = np.array(rec["xtb_kcal_mol"])
    assert e.min() == 0.0 and 100.0 < e[-1] < 200.0  # a C-C bond costs about a hundred kcal/mol to break
    x0 = fragment_pull_geometries(mol, positions_angstrom(mol), (0, 1), [rec["r_angstrom"][int(np.argmin(e))] / rec["r_angstrom"][0] * shape.FACTORS[0]])[0]
    e_min = xtb_lowest_state([6, 6, 1, 1, 1, 1, 1, 1], x0, 0, (None, 2))[0] * HARTREE_TO_KCAL
    assert e[-1] == pytest.approx(e_far - e_min, abs=1e-4)
    # the finding: a 12-6 well along the whole curve is several times stiffer than the bond; a Morse well is not
    assert rec["twelve_six"]["force_constant"] > 3 * rec["xtb_force_constant"]
    assert rec["morse"]["rmse_kcal_mol"] < rec["twelve_six"]["rmse_kcal_mol"] / 5
    assert "| CC | C0-C1 |" in Path(stem + ".md").read_text()


def test_bad_input_writes_nothing(shape, tmp_path):
    stem = str(tmp_path / "s")
    assert shape.main(["--smiles", "not a smiles", "--out", stem]) == 2
    assert shape.main(["--smiles", "CC(=O)[O-]", "--out", stem]) == 2  # neutral only
    assert shape.main(["--smiles", "C", "--out", stem]) == 2  # no bond between heavy atoms
    assert list(tmp_path.iterdir()) == []
