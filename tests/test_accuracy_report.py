"""benchmarks/accuracy_report.py: its metric helpers, and a quick end-to-end run on the public sets."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from shared_data import shared_data

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "accuracy_report.py"




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


@pytest.mark.parametrize("flag", [["--limit", "0"], ["--md-ps", "-1"], ["--md-molecules", "x"], ["--bogus"],
                                  ["--sections", "md,bogus"], ["--sections", ""], ["--md-settings", "3fs"],
                                  ["--nve-ps", "0"], ["--minimize-molecules", "-2"]])
def test_bad_flags(report, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(flag)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


# ---------------------------------------------------------------------------- end to end
def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def test_quick_report(report, tmp_path, test_model_path):
    data = shared_data()
    if not (data / "conformer-benchmark").is_dir():
        pytest.skip(f"public reference data not found at {data} (set PHYSFF_SHARED_DATA)")
    pytest.importorskip("tblite")
    pytest.importorskip("matplotlib")
    model = str(test_model_path)
    out_json, out_md, figs = tmp_path / "acc.json", tmp_path / "docs" / "accuracy.md", tmp_path / "docs" / "fig"
    rc = report.main([
        "--model", model, "--data", str(data), "--limit", "2", "--md-ps", "0.2", "--md-molecules", "1",
        "--minimize-molecules", "1", "--nve-molecules", "1", "--nve-ps", "0.02",
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
    assert list(rep["md"]["runs"]) == ["1fs", "2fs_hbonds"]
    for md in rep["md"]["runs"].values():
        assert md["n_molecules"] == 1
        assert 0 < md["per_molecule"][0]["simulated_ps"] <= 0.2 + 1e-9
        assert _finite(md["max_relative_bond_deviation"])
        row = md["per_molecule"][0]
        assert row["status"] in report.MD_STATUSES
        assert (row["worst_bond"] is None) == (row["worst_bond_direction"] is None)
        assert row["worst_bond_direction"] in (None, "stretched", "compressed")
    assert rep["minimize"]["n_molecules"] == len(report.MIN_SMALL_MOLECULES) + 1
    assert rep["nve"]["n_molecules"] == 1
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
    assert "## 7. Minimization" in text and "## 8. NVE energy conservation" in text
    assert text.rstrip().endswith(report.MARKER)
    assert "Quick run" in text
    for name in ("conformer_parity", "torsion_profiles", "ncia_rmse_by_subset", "md_bond_deviation",
                 "lj_sigma_epsilon", "charges_by_element", "nve_energy_drift"):
        png = figs / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 1000, name
        assert f"(fig/{name}.png)" in text, name


# ---------------------------------------------------------------------------- MD, minimization, NVE (issue 13)
def _record(smiles: str, name: str):
    from physff_openmm.molecule import ensure_conformer, load_molecule
    from physff_openmm.training.dataset import MoleculeRecord

    return MoleculeRecord.from_rdkit(ensure_conformer(load_molecule(smiles)), name)


def test_frame_status_classifies_each_failure(report):
    bonds = np.array([[0, 1], [1, 2]])
    x = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.5, 0.0]])
    d0 = np.array([1.0, 1.5])
    nb_i, nb_j = report._nonbonded_pairs(3, bonds)
    assert list(zip(nb_i.tolist(), nb_j.tolist())) == [(0, 2)]  # a 1-3 pair counts as non-bonded
    status, rel, nb = report.frame_status(x, bonds, d0, nb_i, nb_j)
    assert status == "stable" and np.allclose(rel, 0.0) and nb == pytest.approx(math.hypot(1.0, 1.5))
    y = x.copy()
    y[0, 0] = -0.35  # bond 0-1 at 1.35 A: +35 %
    assert report.frame_status(y, bonds, d0, nb_i, nb_j)[0] == "bond stretched"
    y = x.copy()
    y[2, 1] = 1.0  # bond 1-2 at 1.0 A: -33 %
    status, rel, _ = report.frame_status(y, bonds, d0, nb_i, nb_j)
    assert status == "bond compressed" and rel[1] == pytest.approx(-1.0 / 3.0)
    y = x.copy()
    y[1, 2] = np.nan
    assert report.frame_status(y, bonds, d0, nb_i, nb_j)[0] == "NaN"
    assert report.frame_status(None, bonds, d0, nb_i, nb_j)[0] == "NaN"

    # two bonded pairs (0-1, 2-3) brought together side by side: bonds intact, atoms 0 and 2 at distance h
    bonds = np.array([[0, 1], [2, 3]])
    d0 = np.array([1.0, 1.0])
    nb_i, nb_j = report._nonbonded_pairs(4, bonds)

    def side_by_side(h):
        return np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, h, 0.0], [1.0, h, 0.0]])

    status, _, nb = report.frame_status(side_by_side(0.55), bonds, d0, nb_i, nb_j)
    assert status == "stable" and nb == pytest.approx(0.55)
    status, _, nb = report.frame_status(side_by_side(0.45), bonds, d0, nb_i, nb_j)
    assert status == "atoms collapsed" and nb == pytest.approx(0.45)
    y = side_by_side(0.45)
    y[1, 0] = 1.4  # a bond stretched by 40 % in the same frame is reported first
    assert report.frame_status(y, bonds, d0, nb_i, nb_j)[0] == "bond stretched"


def test_md_at_both_settings_uses_the_packages_constraints(report, bound_model_path):
    from physff_openmm import parameterize
    from physff_openmm.workflows.simulation import hydrogen_bond_pairs

    rec = _record("CCO", "ethanol")
    md = report.md_acceptance_section([rec], bound_model_path, 1, 0.2, 1, report.Timer(), platform="Reference")
    assert md["settings"] == ["1fs", "2fs_hbonds"] and list(md["runs"]) == ["1fs", "2fs_hbonds"]
    free, held = md["runs"]["1fs"], md["runs"]["2fs_hbonds"]
    n_h = len(hydrogen_bond_pairs(parameterize(rec.to_rdkit(), model=bound_model_path)))
    assert n_h == 6
    for d, dt, n_constraints in ((free, 1.0, 0), (held, 2.0, n_h)):
        row = d["per_molecule"][0]
        assert row["timestep_fs"] == dt and row["n_constraints"] == n_constraints
        assert row["status"] in report.MD_STATUSES
        assert sum(d["counts"].values()) == 1 and d["counts"][row["status"]] == 1
        assert d["passed"] == (row["status"] == "stable") and d["n_stable"] == int(d["passed"])
        if row["status"] == "stable":  # the whole run, and no failure seen
            assert row["simulated_ps"] == pytest.approx(0.2) and row["failure_time_ps"] is None
            assert row["max_relative_bond_deviation"] <= report.MD_BROKEN_RELATIVE
            assert row["min_nonbonded_distance_angstrom"] >= report.MD_COLLAPSE_ANGSTROM
        else:  # stopped at the check that failed
            assert row["failure_time_ps"] == pytest.approx(row["simulated_ps"]) and row["simulated_ps"] <= 0.2 + 1e-9
    held_row = held["per_molecule"][0]
    if held_row["status"] == "stable":  # constrained bonds do not move: the bond that moved most is a free one
        assert "H" not in held_row["worst_bond"]
    rows = report.acceptance({"settings": {"md_ps": 0.2, "md_molecules": 1}, "md": md})
    assert [r["key"] for r in rows] == ["md_1fs", "md_2fs_hbonds"]
    assert [r["met"] for r in rows] == [free["passed"], held["passed"]] and md["passed"] == all(r["met"] for r in rows)
    assert all(r["n"] == 1 and r["n_passed"] == int(r["met"]) and not r["full_protocol"] for r in rows)


def test_minimization_section_matches_the_public_minimize(report, bound_model_path):
    from physff_openmm import workflows as wf
    from physff_openmm.molecule import positions_angstrom

    mols = report.minimization_molecules([_record("CCO", "ethanol")], 1)
    assert [m[0] for m in mols] == list(report.MIN_SMALL_MOLECULES) + ["ethanol"]
    dimer = dict((m[0], m) for m in mols)["water dimer"]
    assert np.linalg.norm(dimer[3][0] - dimer[3][1]) == pytest.approx(2.91)  # O...O
    assert [a.GetSymbol() for a in dimer[2].GetAtoms()] == ["O", "O", "H", "H", "H", "H"]
    name, smiles, mol, x0 = dict((m[0], m) for m in mols)["formamide"]
    row = report.minimize_run(name, smiles, mol, x0, bound_model_path, 1, report.Timer(), platform="Reference")
    # independently: the public minimize from the same start, bond lengths from RDKit's bond list
    out, res = wf.minimize(wf.simulation.with_positions(mol, x0), model=bound_model_path, platform="Reference")
    x1 = positions_angstrom(out)
    rel = [np.linalg.norm(x1[b.GetBeginAtomIdx()] - x1[b.GetEndAtomIdx()])
           / np.linalg.norm(x0[b.GetBeginAtomIdx()] - x0[b.GetEndAtomIdx()]) - 1.0 for b in mol.GetBonds()]
    assert abs(row["max_relative_bond_change"]) == pytest.approx(max(abs(r) for r in rel), abs=1e-6)
    assert row["passed"] == (max(abs(r) for r in rel) <= report.MIN_BOND_RELATIVE)
    assert row["energy_change_kcal_mol"] == pytest.approx(res["energy_change_kcal_mol"], abs=1e-6)
    sec = report.minimize_section([], bound_model_path, 0, 1, report.Timer(), platform="Reference")
    assert sec["n_molecules"] == len(report.MIN_SMALL_MOLECULES)
    assert sec["n_passed"] == sum(r["passed"] for r in sec["per_molecule"])
    assert all(_finite(r["max_relative_bond_change"]) for r in sec["per_molecule"])


def test_nve_drift_matches_run_md_state_report(report, bound_model_path, tmp_path):
    """The section's E(t) - E(0) is what run_md's NVE state report gives from the same start and seed."""
    from physff_openmm import workflows as wf
    from physff_openmm.units import KJ_TO_KCAL

    rec = _record("CCO", "ethanol")
    row = report.nve_run(rec, bound_model_path, 0.1, 1, 7, report.Timer(), platform="Reference")
    assert row["simulated_ps"] == pytest.approx(0.1) and len(row["drift_kcal_mol"]) == 11  # every 10 fs, t = 0 included
    assert row["time_ps"][-1] == pytest.approx(0.1) and row["drift_kcal_mol"][0] == 0.0
    csv = tmp_path / "nve.csv"
    mol = wf.simulation.with_positions(rec.to_rdkit(), rec.positions[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # this small model lets a C-H bond pass 30 % at 1 fs
        wf.run_md(mol, 100, model=bound_model_path, platform="Reference", ensemble="nve", timestep_fs=1.0, constraints=None,
                  minimize_first=False, seed=7, report_interval=10, report_csv=csv)
    total = wf.read_report_csv(csv)["Total Energy (kJ/mole)"] * KJ_TO_KCAL
    np.testing.assert_allclose(row["drift_kcal_mol"], total - total[0], atol=1e-6)
    assert row["max_abs_drift_kcal_mol"] == pytest.approx(np.abs(total - total[0]).max(), abs=1e-6)
    assert row["passed"] == (row["max_abs_drift_kcal_mol"] < report.NVE_MAX_DRIFT_KCAL_MOL)
    sec = report.nve_section([rec], bound_model_path, 1, 0.02, 1, report.Timer(), platform="Reference")
    assert sec["n_molecules"] == 1 and len(sec["per_molecule"][0]["drift_kcal_mol"]) == 3


def test_md_minimize_nve_sections_from_the_command_line(report, bound_model_path, tmp_path):
    """--sections md,minimize,nve on a tiny setting: the JSON holds every number, the markdown a table per section."""
    data = shared_data()
    if not (data / "conformer-benchmark").is_dir():
        pytest.skip(f"public reference data not found at {data} (set PHYSFF_SHARED_DATA)")
    pytest.importorskip("matplotlib")
    out_json, out_md, figs = tmp_path / "acc.json", tmp_path / "docs" / "accuracy.md", tmp_path / "docs" / "fig"
    rc = report.main([
        "--model", str(bound_model_path), "--data", str(data), "--sections", "md,minimize,nve", "--md-molecules", "1",
        "--md-ps", "0.1", "--minimize-molecules", "1", "--nve-molecules", "1", "--nve-ps", "0.02",
        "--json", str(out_json), "--out-md", str(out_md), "--figures", str(figs),
    ])
    assert rc == 0
    rep = json.loads(out_json.read_text())
    assert rep["settings"]["sections"] == ["md", "minimize", "nve"]
    assert "conformers" not in rep and "sanity" not in rep
    assert [r["settings"]["timestep_fs"] for r in rep["md"]["runs"].values()] == [1.0, 2.0]
    assert [r["settings"]["constraints"] for r in rep["md"]["runs"].values()] == ["none", "hbonds"]
    assert rep["minimize"]["n_molecules"] == len(report.MIN_SMALL_MOLECULES) + 1
    nve = rep["nve"]["per_molecule"][0]
    assert len(nve["drift_kcal_mol"]) == 3 and _finite(nve["max_abs_drift_kcal_mol"])
    assert [a["key"] for a in rep["acceptance"]] == ["md_1fs", "md_2fs_hbonds", "minimize", "nve"]
    for a in rep["acceptance"]:
        assert not a["full_protocol"] and 0 <= a["n_passed"] <= a["n"]
    text = out_md.read_text()
    assert "## Acceptance: MD, minimization, NVE (issue 13)" in text and "Reduced run" in text
    assert "### 1 fs, no constraints" in text and "### 2 fs, bonds to H constrained" in text
    assert "| setting | molecules | stable | bond stretched | bond compressed | atoms collapsed | NaN |" in text
    assert "## 7. Minimization" in text and "| glycine zwitterion |" in text and "## 8. NVE energy conservation" in text
    assert "## 1. Relative conformer energies" not in text
    for name in ("md_bond_deviation", "nve_energy_drift"):
        assert (figs / f"{name}.png").is_file() and f"(fig/{name}.png)" in text


def test_compare_validation_scores_models_on_the_validation_split(load_benchmark, path_model_path, tmp_path, capsys):
    """benchmarks/compare_validation.py: one column per model, finite numbers, every number in the JSON."""
    data = shared_data()
    if not (data / "conformer-benchmark").is_dir():
        pytest.skip(f"no reference data at {data}")
    pytest.importorskip("h5py")
    pytest.importorskip("tblite")  # the angle bends are scored against GFN2-xTB
    import numpy as np
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from physff_openmm.training.dataset import MoleculeRecord, write_dataset

    cmp = load_benchmark("compare_validation")
    # a recipe whose work_dir holds a small shard of ions: its validation half is scored too
    records = []
    for k, smi in enumerate(["CC(=O)[O-]", "[O-]c1ccccc1", "C[N-]S(C)(=O)=O", "O=C[O-]"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        ids = list(AllChem.EmbedMultipleConfs(mol, 2, randomSeed=k))
        x = np.stack([mol.GetConformer(i).GetPositions() for i in ids])
        records.append(MoleculeRecord.from_rdkit(mol, f"a{k}", positions=x, energy=[-10.0, -9.0],
                                                 forces=np.ones_like(x), level="gfn2-xtb"))
    write_dataset(records, tmp_path / "ions.h5")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"work_dir: {tmp_path}\nions: {{n_molecules: 4, val_fraction: 0.5}}\n")
    val = cmp.charged_validation(recipe)
    assert list(val) == ["ions"] and 0 < len(val["ions"]) < 4
    out = tmp_path / "cmp.json"
    assert cmp.main([str(path_model_path), "--data", str(data), "--limit", "60", "--out", str(out),
                     "--recipe", str(recipe), "--md", "1", "--md-ps", "0.2", "--nve", "1"]) == 0
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == [str(path_model_path)]
    assert rows[0]["conformers"]["n_molecules"] > 0 and math.isfinite(rows[0]["conformers"]["rmse"])
    assert math.isfinite(rows[0]["torsions_train_rmse"])
    assert set(rows[0]["ncia_ionic_hb_rmse"]) == {"val", "train"}  # ions beside neutral molecules, scored apart
    shard = rows[0]["shards"]["ions"]
    n = len(val["ions"])
    assert shard["n_molecules"] == n and shard["relative_energy"]["n"] == 2 * n and math.isfinite(shard["forces"]["mae"])
    printed = capsys.readouterr().out
    assert "| NCIA IHB100x10 (ion + neutral molecule), validation |" in printed and "| NCIA IHB100x10, training |" in printed
    assert "| conformers RMSE (largest) |" in printed and f"| ions ({n} molecules): relative energies RMSE |" in printed
    escape = rows[0]["bond_escape"]
    assert escape["n_bonds"] > 0 and 0 <= escape["downhill"] <= escape["n_bonds"] and math.isfinite(escape["lowest_barrier"])
    assert "| bonds to H pulled to 3 A: downhill of" in printed
    bends = rows[0]["angle_bends"]  # against GFN2-xTB: 4 bends of up to 4 angles per validation molecule
    assert 0 < bends["n_bends"] <= 16 * rows[0]["conformers"]["n_molecules"] and bends["n_bends"] % 4 == 0
    assert math.isfinite(bends["rmse"]) and 0 <= bends["soft"] <= bends["n_bends"]
    assert "| angles of H bent -40 to +40 deg against GFN2-xTB: RMSE (soft of" in printed
    assert set(rows[0]["md"]) == {"1fs", "2fs_hbonds"}  # both settings of the acceptance test
    for md in rows[0]["md"].values():
        assert md["n_molecules"] == 1 and md["simulated_ps"] == 0.2 and md["n_stable"] + len(md["failures"]) == 1
    assert "| MD 0.2 ps, 1 fs, no constraints: stable of 1 |" in printed
    assert "| MD 0.2 ps, 2 fs, bonds to H constrained: stable of 1 |" in printed
    nve = rows[0]["nve"]  # the accuracy report's NVE check, on the first validation molecule
    assert nve["n_molecules"] == 1 and nve["simulated_ps"] == 10.0 and 0 <= nve["n_passed"] <= 1
    assert len(nve["drifts"]) == 1 and all(math.isfinite(v) for v in nve["drifts"].values())
    assert "| NVE 10 ps at 1 fs: drift below 1 kcal/mol, of 1 (largest) |" in printed
    assert logging.root.manager.disable == logging.NOTSET  # the script leaves logging as it found it
    # bad input: one clear line, non-zero exit, no output file
    bad = tmp_path / "bad.json"
    assert cmp.main([str(path_model_path), "--data", str(data), "--limit", "5", "--recipe", str(tmp_path / "none.yaml"),
                     "--out", str(bad)]) == 2
    assert "error: config file" in capsys.readouterr().err and not bad.exists()
    with pytest.raises(SystemExit):
        cmp.main([str(path_model_path), "--md", "-1"])
