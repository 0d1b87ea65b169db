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
