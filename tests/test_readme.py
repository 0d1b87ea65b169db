"""The README's first command works after the README's own install line (CI also runs it in a fresh environment)."""

from __future__ import annotations

import importlib.util
import shlex
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _readme_command() -> str:
    spec = importlib.util.spec_from_file_location("readme_command", REPO / ".ci" / "readme_command.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.first_command()


def test_the_first_command_installs_what_it_uses():
    install, run = [part.strip() for part in _readme_command().split("&&")]
    words = shlex.split(install)
    assert words[:2] == ["pip", "install"] and words[2].startswith(".")
    extras = set(words[2].partition("[")[2].rstrip("]").split(",")) - {""}
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras <= set(optional)
    if "--plot" in shlex.split(run):  # plots need matplotlib, which only an extra installs
        assert any(dep.startswith("matplotlib") for extra in extras for dep in optional[extra])


def test_the_first_command_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from physff_openmm.cli import main

    run = shlex.split(_readme_command().split("&&")[1])
    assert run[:2] == ["physff-openmm", "md"] and "--steps" in run
    monkeypatch.chdir(tmp_path)
    rc = main(run[1:] + ["--platform", "Reference"])
    err = capsys.readouterr().err
    assert rc == 0, err
    outputs = [run[run.index(flag) + 1] for flag in ("-o", "--report-csv", "--plot") if flag in run]
    assert outputs and all((tmp_path / name).stat().st_size > 0 for name in outputs)


def _readme_accuracy_table() -> tuple[list[str], dict[str, list[str]]]:
    """Header and rows (by first cell) of the README's table under '## Accuracy of the shipped model'."""
    section = (REPO / "README.md").read_text().split("## Accuracy of the shipped model", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return cells[0], {row[0]: row for row in cells[2:]}


def test_the_readme_accuracy_table_is_the_committed_report_of_the_default_model():
    """Every figure of the table's model column comes from benchmarks/results/accuracy.json, measured with `default`."""
    import json

    report = json.loads((REPO / "benchmarks" / "results" / "accuracy.json").read_text())
    index = json.loads((REPO / "physff_openmm" / "models" / "index.json").read_text())
    header, rows = _readme_accuracy_table()
    name = report["model"]["name"]
    assert index["default"]["alias_of"] == name, "the report was not measured with the default model"
    assert header[1] == f"{name} (`default`)"
    assert report["model"]["sha256"] == index[name]["sha256"]

    def cell(prefix: str) -> str:
        (row,) = [r for key, r in rows.items() if key.startswith(prefix)]
        return row[1]

    conf, tors, ncia = report["conformers"]["stats"], report["torsions"]["stats"], report["ncia"]["groups"]
    above = sum(m["metrics"]["model_vs_dft"]["rmse"] > 10 for m in report["conformers"]["per_molecule"])
    expected = {
        "relative conformer energies (B3LYP": f"{conf['model_vs_dft']['rmse']:.2f}"
        + (f" ({above} molecule{'s' if above != 1 else ''} above 10)" if above else " (none above 10)"),
        "relative conformer energies (DLPNO": f"{conf['model_vs_dlpno']['rmse']:.2f}",
        "torsion profiles": f"{tors['model']['rmse']:.2f}",
        "H-bonded dimers": f"{ncia['hydrogen_bonded']['model']['rmse']:.2f}",
        "dispersion dimers": f"{ncia['dispersion']['model']['rmse']:.2f}",
        "total energy, MAE": f"{report['total_energy']['mean_kcal_mol']:.1f}",
    }
    for prefix, value in expected.items():
        assert cell(prefix) == value, prefix
    acc = {a["key"]: a for a in report["acceptance"]}
    assert cell("100 ps MD at 1 fs") == f"{acc['md_1fs']['n_passed']} stable"
    assert cell("100 ps MD at 2 fs") == f"{acc['md_2fs_hbonds']['n_passed']} stable"
    assert cell("minimization") == f"{acc['minimize']['n_passed']} of {acc['minimize']['n']}"
    assert cell("NVE") == f"{acc['nve']['n_passed']} of {acc['nve']['n']}"
