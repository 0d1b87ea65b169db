"""benchmarks/accuracy_report.py: its metric helpers, and a quick end-to-end run on the public sets."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "accuracy_report.py"


def _shared_data() -> Path:
    env = os.environ.get("PHYSFF_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def report():
    """The script, imported as a module."""
    spec = importlib.util.spec_from_file_location("accuracy_report", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["accuracy_report"] = mod
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------- pure helpers
def test_relative_to_reference_minimum(report):
    ref = [3.0, 1.0, 2.0, np.nan]
    val = [10.0, 12.0, 15.0, 0.0]
    v_rel, r_rel, k0 = report.relative_to_reference_minimum(val, ref)
    assert k0 == 1  # the reference minimum, not the method's (index 3 lacks a reference)
    np.testing.assert_allclose(r_rel[:3], [2.0, 0.0, 1.0])
    np.testing.assert_allclose(v_rel[:3], [-2.0, 0.0, 3.0])
    assert np.isnan(v_rel[3]) and np.isnan(r_rel[3])
    # errors leave out the zero point: (-2 - 2), (3 - 1)
    np.testing.assert_allclose(report.relative_errors(val, ref), [-4.0, 2.0])
    # no valid point
    v_rel, r_rel, k0 = report.relative_to_reference_minimum([np.nan], [1.0])
    assert k0 == -1 and np.isnan(v_rel).all()
    assert report.relative_errors([np.nan], [1.0]).size == 0
    with pytest.raises(ValueError):
        report.relative_to_reference_minimum([1.0, 2.0], [1.0])


def test_rmse_mae_and_error_stats(report):
    e = [3.0, -4.0]
    assert report.rmse(e) == pytest.approx(math.sqrt(12.5))
    assert report.mae(e) == pytest.approx(3.5)
    assert math.isnan(report.rmse([])) and math.isnan(report.mae([]))
    st = report.error_stats([1.0, -1.0, np.nan, 2.0])
    assert st["n"] == 3
    assert st["rmse"] == pytest.approx(math.sqrt(2.0))
    assert st["mae"] == pytest.approx(4.0 / 3.0)
    assert st["max_abs"] == 2.0 and st["mean_signed"] == pytest.approx(2.0 / 3.0)


def test_spearman_known_values(report):
    assert report.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7.5]) == pytest.approx(0.9)  # 1 - 6*2/(5*24)
    assert report.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert report.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)  # monotone, not linear
    # ties share the average rank: x ranks 1, 2.5, 2.5, 4
    np.testing.assert_allclose(report.average_ranks([1.0, 2.0, 2.0, 3.0]), [1.0, 2.5, 2.5, 4.0])
    rx = np.array([1.0, 2.5, 2.5, 4.0]) - 2.5
    ry = np.array([1.0, 2.0, 3.0, 4.0]) - 2.5
    assert report.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(rx @ ry / math.sqrt((rx @ rx) * (ry @ ry)))
    # NaN pairs are dropped; constant or too short series give NaN
    assert report.spearman([1, np.nan, 3, 2], [1, 5, 3, 2]) == pytest.approx(1.0)
    assert math.isnan(report.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(report.spearman([1], [1]))


def test_lj_from_c0_c1(report):
    # sigma^6 = C1/C0, epsilon = C0^2/(4 C1): C0 = 4 eps sigma^6, C1 = 4 eps sigma^12
    eps, sig = 0.1, 3.4
    s, e = report.lj_from_c0_c1(4 * eps * sig**6, 4 * eps * sig**12)
    assert float(s) == pytest.approx(sig) and float(e) == pytest.approx(eps)
    s, e = report.lj_from_c0_c1(-4 * eps * sig**6, 4 * eps * sig**12)  # the energy uses |C0|
    assert float(s) == pytest.approx(sig)
    s, e = report.lj_from_c0_c1(0.0, 1.0)
    assert np.isnan(s) and np.isnan(e)


def test_markdown_keeps_hand_written_notes(report, tmp_path):
    path = tmp_path / "accuracy.md"
    path.write_text("# old\n\nold numbers\n" + report.MARKER + "\n\n## What would close the gaps\n\nHand-written.\n")
    report.write_markdown("# new\n\nnew numbers\n\n" + report.MARKER + "\n", path)
    text = path.read_text()
    assert "old numbers" not in text and "new numbers" in text
    assert text.count(report.MARKER) == 1
    assert text.index(report.MARKER) < text.index("Hand-written.")
    assert "## What would close the gaps" in text


def test_json_and_number_helpers(report):
    out = report.jsonable({"a": np.float64("nan"), "b": np.arange(2), "c": [np.inf, 1.5], "d": np.int64(3)})
    assert out == {"a": None, "b": [0, 1], "c": [None, 1.5], "d": 3}
    assert report.f2(float("nan")) == "-" and report.f2(None) == "-" and report.f2(1.234) == "1.23"


# ---------------------------------------------------------------------------- command line
def test_missing_data_folder_is_one_line_error(report, tmp_path, capsys):
    rc = report.main(["--data", str(tmp_path / "nope"), "--json", str(tmp_path / "a.json"),
                      "--out-md", str(tmp_path / "a.md"), "--figures", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "does not exist" in err
    assert not (tmp_path / "a.json").exists()


@pytest.mark.parametrize("flag", [["--limit", "0"], ["--md-ps", "-1"], ["--md-molecules", "x"], ["--bogus"]])
def test_bad_flags(report, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(flag)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


# ---------------------------------------------------------------------------- end to end
def _model_argument(request) -> str:
    from physff_openmm.errors import ModelError
    from physff_openmm.registry import resolve_model

    try:
        _, path = resolve_model("dev")
        if Path(path).is_file():
            return "dev"
    except ModelError:
        pass
    return str(request.getfixturevalue("test_model_path"))


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def test_quick_report(report, tmp_path, request):
    data = _shared_data()
    if not (data / "conformer-benchmark").is_dir():
        pytest.skip(f"public reference data not found at {data} (set PHYSFF_SHARED_DATA)")
    pytest.importorskip("tblite")
    pytest.importorskip("matplotlib")
    model = _model_argument(request)
    out_json, out_md, figs = tmp_path / "acc.json", tmp_path / "docs" / "accuracy.md", tmp_path / "docs" / "fig"
    rc = report.main([
        "--model", model, "--data", str(data), "--limit", "2", "--md-ps", "0.2", "--md-molecules", "1",
        "--threads", "1", "--json", str(out_json), "--out-md", str(out_md), "--figures", str(figs),
    ])
    assert rc == 0
    rep = json.loads(out_json.read_text())

    # provenance
    from physff_openmm.registry import load_model

    assert rep["model"]["sha256"] == load_model(model).file_hash
    assert "--limit 2" in rep["command"] and rep["date_utc"] and rep["versions"]["openmm"]
    assert rep["data"]["limit"] == 2

    # 1. conformers: every method has finite numbers; Spearman in [-1, 1]
    conf = rep["conformers"]
    assert conf["n_molecules"] == 2
    for m in ("model", "gfn2_xtb", "mmff94"):
        st = conf["stats"][f"{m}_vs_dft"]
        assert st["n"] > 0 and _finite(st["rmse"]) and _finite(st["mae"]), m
        assert st["rmse"] >= st["mae"] >= 0
        for key in ("spearman_median", "spearman_mean"):
            assert -1.0 <= st[key] <= 1.0
    assert _finite(conf["stats"]["b3lyp_d3bj_def2svp_vs_dlpno"]["rmse"])
    for row in conf["per_molecule"]:
        for v in row["metrics"].values():
            assert v["spearman"] is None or -1.0 <= v["spearman"] <= 1.0
        k0 = row["conformer_ids"].index(row["reference_conformer_dft"])
        assert row["relative_kcal_mol"]["b3lyp_d3bj_def2svp"][k0] == 0.0
        assert row["relative_kcal_mol"]["model"][k0] == 0.0

    # 2. torsions, with the peers; our GFN2-xTB single points reproduce the file's GFN2-xTB profile
    tors = rep["torsions"]
    assert tors["n_drives"] == 2
    for m in ("model", "gfn2_xtb", "mmff94", "peer_espaloma_0_3_2", "peer_gfn2_xtb", "peer_mace", "peer_aimnet2"):
        assert _finite(tors["stats"][m]["rmse"]), m
    assert tors["stats"]["gfn2_xtb"]["rmse"] == pytest.approx(tors["stats"]["peer_gfn2_xtb"]["rmse"], abs=0.05)

    # 3. NCIA: every subset scored, HB and dispersion groups finite
    ncia = rep["ncia"]
    for s in report.NCIA_SUBSETS:
        assert 1 <= ncia["subsets"][s]["n_dimers"] <= 2
    for g in ("hydrogen_bonded", "dispersion"):
        for m in ("model", "gfn2_xtb", "mmff94"):
            assert _finite(ncia["groups"][g][m]["rmse"]), (g, m)

    # 4-6
    assert _finite(rep["total_energy"]["mean_kcal_mol"]) and rep["total_energy"]["n_molecules"] == 2
    md = rep["md"]
    assert md["n_molecules"] == 1
    assert 0 < md["per_molecule"][0]["simulated_ps"] <= 0.2 + 1e-9
    assert _finite(md["max_relative_bond_deviation"])
    row = md["per_molecule"][0]
    assert (row["worst_bond"] is None) == (row["worst_bond_direction"] is None)
    assert row["worst_bond_direction"] in (None, "stretched", "compressed")
    lj = rep["sanity"]["lj"]["all_pairs"]
    assert lj["n_class_pairs"] > 0 and _finite(lj["sigma_angstrom"]["median"]) and _finite(lj["epsilon_kcal_mol"]["median"])
    assert "H" in rep["sanity"]["charges_e"] and "C" in rep["sanity"]["charges_e"]
    assert [t["key"] for t in rep["targets"]] == ["conformers", "torsions", "hydrogen_bonded", "dispersion"]
    assert all(_finite(t["model_rmse"]) and _finite(t["gfn2_xtb_rmse"]) for t in rep["targets"])

    # markdown and figures
    text = out_md.read_text()
    assert "| metric | physff | GFN2-xTB | MMFF94 | B3LYP-D3BJ/def2-SVP |" in text
    assert "MACE (peer)" in text and "## 3. NCIAtlas" in text and "| **hydrogen_bonded** |" in text
    assert "## 5. MD stability" in text and "## 6. Physical sanity" in text and "## Targets" in text
    assert text.rstrip().endswith(report.MARKER)
    assert "Quick run" in text
    for name in ("conformer_parity", "torsion_profiles", "ncia_rmse_by_subset", "md_bond_deviation",
                 "lj_sigma_epsilon", "charges_by_element"):
        png = figs / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 1000, name
        assert f"(fig/{name}.png)" in text, name


def test_inner_wall_check_adds_a_flat_bottom_wall_only(report, load_benchmark):
    """benchmarks/inner_wall_check.py: zero energy above f r0, k (f r0 - r)^2 below, on every bond."""
    import types

    import openmm
    from openmm import unit

    mod = load_benchmark("inner_wall_check")
    x0 = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.5, 0.0]])  # bonds 0-1 (1.0 A) and 1-2 (1.5 A)
    rec = types.SimpleNamespace(bonds=np.array([[0, 1], [1, 2]]))
    force = mod.inner_wall(0.8, 1000.0)(rec, x0)
    system = openmm.System()
    for _ in range(3):
        system.addParticle(1.0)
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))

    def energy(x):
        ctx.setPositions(x * 0.1)
        return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)

    assert energy(x0) == pytest.approx(0.0, abs=1e-9)
    x = x0.copy()
    x[0, 0] = 1.0 - 0.7  # bond 0-1 at 0.7 A: 0.1 A inside its wall at 0.8 A
    assert energy(x) == pytest.approx(1000.0 * 0.1**2, rel=1e-6)
    x = x0.copy()
    x[2, 1] = 1.1  # bond 1-2 at 1.1 A: 0.1 A inside its wall at 1.2 A
    assert energy(x) == pytest.approx(1000.0 * 0.1**2, rel=1e-6)
