"""Shared fixtures: a deterministic test model, a private parameter cache, tolerances."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def load_benchmark(monkeypatch):
    """Import a script of benchmarks/ by name, with benchmarks/ on sys.path as when it runs from there."""

    def load(name: str):
        monkeypatch.syspath_prepend(str(BENCHMARKS))
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, mod)
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never write into the user's ~/.cache during tests."""
    monkeypatch.setenv("PHYSFF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "physff-cache"))


@pytest.fixture(scope="session")
def test_model_path(tmp_path_factory):
    """A randomly initialised model with non-trivial parameters, saved to a file.

    Its feats_net output layer is scaled up so that every term of the formula
    (Gaussians, C6/C12, Coulomb) contributes to energies and forces.
    """
    from physff_openmm.model import ModelConfig, PhysFFModel, save_model_file

    torch.manual_seed(1234)
    model = PhysFFModel(ModelConfig(hidden=32, pair_hidden=32, n_steps=3))
    with torch.no_grad():
        model.feats_net[-1].weight.normal_(0.0, 0.3)
        model.feats_net[-1].bias.normal_(0.0, 0.3)
        model.charge_net[-1].weight.normal_(0.0, 0.3)
        model.elin_weights.copy_(torch.linspace(-300.0, -100.0, len(model.config.elements), dtype=torch.float64))
        model.elin_bias.fill_(-5.0)
    path = tmp_path_factory.mktemp("models") / "test-model.pt"
    save_model_file(model, path, {"name": "test-random"})
    return path


@pytest.fixture(scope="session")
def head_model_path(tmp_path_factory, test_model_path):
    """The random test model with a random lj_net (per-atom Lennard-Jones factors far from zero), in a file."""
    from physff_openmm.model import ModelConfig, PhysFFModel, load_model_file, save_model_file

    base = load_model_file(test_model_path)
    model = PhysFFModel(ModelConfig.from_dict({**base.config.to_dict(), "lj_hidden": 16}))
    model.load_state_dict(base.state_dict(), strict=False)
    torch.manual_seed(99)
    with torch.no_grad():
        model.lj_net[-1].weight.normal_(0.0, 1.0)
        model.lj_net[-1].bias.normal_(0.0, 0.5)
    path = tmp_path_factory.mktemp("head-model") / "test-head.pt"
    save_model_file(model, path, {"name": "test-random-lj"})
    return path


@pytest.fixture(scope="session")
def floor_model_path(tmp_path_factory, head_model_path):
    """The random lj_net model with its sigma factors in exp(+-1), mostly shrinking, and a floor at 0.9 of each heavy atom's van der
    Waals diameter (so that the floor lifts some of its atoms and leaves others), in a file."""
    from physff_openmm.model import load_model_file, save_model_file

    model = load_model_file(head_model_path)
    model.config.lj_sigma_range, model.config.lj_sigma_floor = 1.0, 0.9
    with torch.no_grad():
        model.lj_net[-1].bias[0] -= 1.0  # sigma factors mostly below 1
    path = tmp_path_factory.mktemp("floor-model") / "test-floor.pt"
    save_model_file(model, path, {"name": "test-random-lj-floor"})
    return path


@pytest.fixture(scope="session")
def path_model_path(tmp_path_factory, test_model_path):
    """The random test model with path embeddings (feats_net sees the middle atom of 1-3 pairs and
    the central bond of 1-4 pairs), their input weights random, in a file."""
    from physff_openmm.model import load_model_file, save_model_file

    model = load_model_file(test_model_path)
    model.add_path_embeddings()
    torch.manual_seed(7)
    with torch.no_grad():
        model.feats_net[0].weight[:, -model.config.hidden :].normal_(0.0, 0.3)
    path = tmp_path_factory.mktemp("path-model") / "test-path.pt"
    save_model_file(model, path, {"name": "test-random-path"})
    return path


@pytest.fixture(scope="session")
def bound_model_path(tmp_path_factory):
    """The workflow tests' small random model whose bonds hold in MD (``test_workflows.write_bound_model``), in a file."""
    from test_workflows import write_bound_model

    path = tmp_path_factory.mktemp("bound-model") / "test-bound.pt"
    write_bound_model(path)
    return path
