"""physff-openmm: a graph-network-parameterized physics force field for OpenMM.

A graph neural network reads a molecule's structural formula and predicts
partial charges and per-pair parameters C_0..C_13 of a pair potential (Coulomb,
C6/C12 and six switched Gaussians). They are computed once per topology and
turned into an OpenMM System.

>>> import physff_openmm as pf
>>> params = pf.parameterize("CCO")            # doctest: +SKIP
>>> system = pf.create_system(params, backend="native")  # doctest: +SKIP
"""

from __future__ import annotations

import warnings as _warnings

with _warnings.catch_warnings():  # openmmtorch still imports simtk.openmm
    _warnings.simplefilter("ignore", DeprecationWarning)
    import openmm as _openmm  # noqa: F401

from .errors import (
    BackendError,
    ChargeError,
    ConfigError,
    DependencyError,
    MissingHydrogenError,
    ModelError,
    MoleculeError,
    MoleculeFileError,
    MoleculeParseError,
    PhysFFError,
    QMError,
    RadicalError,
    UnsupportedElementError,
)
from .model import ModelConfig, PhysFFModel
from .parameters import ParameterSet, parameterize
from .registry import available_models, load_model, register_model
from .system import create_system, get_platform

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "parameterize",
    "create_system",
    "ParameterSet",
    "load_model",
    "available_models",
    "register_model",
    "get_platform",
    "ModelConfig",
    "PhysFFModel",
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
]
