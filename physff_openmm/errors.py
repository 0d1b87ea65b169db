"""One exception hierarchy for physff-openmm.

Every error the package raises on purpose is a :class:`PhysFFError`. Subclasses
also inherit the matching built-in exception (``ValueError``, ``OSError``, ...)
so that callers who catch those keep working.
"""

from __future__ import annotations

__all__ = [
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
    "ModelFailureError",
    "RunInterrupted",
]


class PhysFFError(Exception):
    """Base class of every error raised on purpose by physff-openmm."""


class MoleculeError(PhysFFError, ValueError):
    """A molecule cannot be used: bad structure, chemistry or charge."""


class MoleculeParseError(MoleculeError):
    """A SMILES string or file content could not be parsed."""


class MoleculeFileError(MoleculeError, OSError):
    """A molecule file is missing, unreadable, empty or of an unknown format."""


class UnsupportedElementError(MoleculeError):
    """An atom's element is outside the supported set (H C N O F S Cl Br P)."""


class RadicalError(MoleculeError):
    """An atom carries unpaired electrons."""


class ChargeError(MoleculeError):
    """Formal charges are missing, inconsistent or do not add up to the given total."""


class MissingHydrogenError(MoleculeError):
    """Hydrogens are implicit or missing; the model needs every atom explicit."""


class ModelError(PhysFFError, ValueError):
    """Unknown model name, unreadable or corrupt model file."""


class BackendError(PhysFFError, ValueError):
    """Unknown backend or OpenMM platform, or one that is not available here."""


class ConfigError(PhysFFError, ValueError):
    """A configuration value or option is invalid."""


class QMError(PhysFFError, RuntimeError):
    """A quantum-chemistry calculation failed or was asked for at an unknown level."""


class DependencyError(PhysFFError, ImportError):
    """An optional dependency is needed for this feature but is not installed."""


class FileAccessError(PhysFFError, OSError):
    """A file other than a molecule file (an output, a checkpoint) cannot be written or read."""


class SimulationError(PhysFFError, RuntimeError):
    """A simulation became unstable (NaN energies or coordinates) or could not run."""


class ModelFailureError(SimulationError):
    """The model failed on this molecule: a covalent bond moved too far from the input geometry
    (in a minimization or in MD).

    ``bond`` names the bond (``"O0-H1"``) and ``change`` is its relative change from the
    input geometry (> 0 stretched; not finite for a non-finite length), where known.
    """

    def __init__(self, message: str, *, bond: str | None = None, change: float | None = None):
        super().__init__(message)
        self.bond = bond
        self.change = change


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C at a clean point; the message says what was kept, ``checkpoint``
    the checkpoint file that continues it (None when none was written at the stop)."""

    def __init__(self, message: str = "", checkpoint: str | None = None):
        super().__init__(message)
        self.checkpoint = checkpoint
