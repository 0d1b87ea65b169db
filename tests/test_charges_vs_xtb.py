"""benchmarks/charges_vs_xtb.py: each model's charges as parameterize gives them, GFN2-xTB's summing to
the formal charge, and bad input that writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tblite")


@pytest.fixture()
def charges(load_benchmark):
    return load_benchmark("charges_vs_xtb")


def test_charges_are_the_models_and_gfn2_xtbs(charges, tmp_path, bound_model_path):
    import physff_openmm as pf
    from physff_openmm.molecule import ensure_conformer, load_molecule

    stem = str(tmp_path / "q")
    model = str(bound_model_path)
    assert charges.main(["--models", model, "--smiles", "[OH-]", "O", "--out", stem]) == 0
    records = json.loads(Path(stem + ".json").read_text())["molecules"]
    assert [r["smiles"] for r in records] == ["[OH-]", "O"]
    for rec, total in zip(records, (-1.0, 0.0)):
        mol = ensure_conformer(load_molecule(rec["smiles"]))
        np.testing.assert_allclose(rec[model], pf.parameterize(mol, model=model).charges, atol=1e-6)
        assert sum(rec["gfn2_xtb"]) == pytest.approx(total, abs=1e-6)
        np.testing.assert_allclose(rec["gfn2_xtb"], charges.xtb_charges(mol), atol=1e-6)
    assert rec["gfn2_xtb"][0] < -0.3 < 0.1 < rec["gfn2_xtb"][1]  # water: O negative, H positive
    assert "| RMS vs GFN2-xTB |" in Path(stem + ".md").read_text()


def test_bad_input_writes_nothing(charges, tmp_path):
    stem = str(tmp_path / "q")
    assert charges.main(["--models", "no-such-model", "--out", stem]) == 2
    assert charges.main(["--smiles", "not a smiles", "--out", stem]) == 2
    assert list(tmp_path.iterdir()) == []
