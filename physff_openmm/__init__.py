"""physff-openmm: a graph-network-parameterized physics force field for OpenMM.

A graph neural network reads a molecule's structural formula and predicts
partial charges and per-pair parameters C_0..C_13 of a pair potential (Coulomb,
C6/C12 and six switched Gaussians). They are computed once per topology and
turned into an OpenMM System.

>>> import physff_openmm as pf
>>> params = pf.parameterize("CC(=O)Nc1ccc(O)cc1")          # doctest: +SKIP
>>> system = pf.create_system(params, backend="native")    # doctest: +SKIP

Heavy modules (torch, torch-geometric, OpenMM) load on first use of the names
that need them, so ``import physff_openmm`` and the command line start quickly.
"""

from __future__ import annotations

import importlib

from .errors import (
    BackendError,
    ChargeError,
    ConfigError,
    DependencyError,
    FileAccessError,
    MissingHydrogenError,
    ModelError,
    MoleculeError,
    MoleculeFileError,
    MoleculeParseError,
    PhysFFError,
    QMError,
    RadicalError,
    SimulationError,
    UnsupportedElementError,
)

__version__ = "0.1.0"

# public name -> submodule that defines it (imported on first access)
_LAZY = {
    "parameterize": "parameters",
    "ParameterSet": "parameters",
    "create_system": "system",
    "PhysFFTemplateGenerator": "forcefield",
    "get_platform": "system",
    "load_model": "registry",
    "available_models": "registry",
    "register_model": "registry",
    "ModelConfig": "model",
    "PhysFFModel": "model",
    "load_molecule": "molecule",
    "workflows": None,
}

__all__ = [
    "__version__",
    *_LAZY,
    "PhysFFError",
    "MoleculeError",
    "MoleculeParseError",
    "MoleculeFileError",
    "UnsupportedElementError",
    "RadicalError",
    "ChargeError",
    "MissingHydrogenError",
    "ModelError",
    "BackendError",
    "ConfigError",
    "QMError",
    "DependencyError",
    "FileAccessError",
    "SimulationError",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'physff_openmm' has no attribute {name!r}")
    module = _LAZY[name]
    if module is None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
