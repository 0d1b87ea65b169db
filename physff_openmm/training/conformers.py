"""Conformers for QM labelling: RDKit ETKDGv3 embedding, then GFN2-xTB minimization.

Positions in Angstrom, energies in Hartree. The input molecule is never
modified: both functions work on a copy that keeps the atom order and the
explicit hydrogens.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, MissingHydrogenError

__all__ = ["generate_conformers", "optimize_conformers_xtb"]


def _check_explicit_hydrogens(mol) -> None:
    implicit = [a.GetIdx() for a in mol.GetAtoms() if a.GetNumImplicitHs() > 0]
    if implicit:
        raise MissingHydrogenError(
            f"atoms {implicit[:10]} carry implicit hydrogens; conformers for QM need every "
            "atom explicit (rdkit.Chem.AddHs)"
        )


def generate_conformers(
    mol, n_conformers: int, *, seed: int = 42, prune_rms_angstrom: float = 0.3
):
    """Embed up to ``n_conformers`` conformers with RDKit's ETKDGv3.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        Molecule with explicit hydrogens (existing conformers are ignored).
    n_conformers : int
        Number of embedding attempts; rigid molecules give fewer distinct conformers.
    seed : int
        Random seed (the result is deterministic for a given seed).
    prune_rms_angstrom : float
        Conformers closer than this heavy-atom RMSD, Angstrom, are dropped
        (0 keeps all).

    Returns
    -------
    rdkit.Chem.Mol
        A copy of ``mol``, same atom order, holding between 1 and ``n_conformers``
        conformers (positions in Angstrom).

    Raises
    ------
    ConfigError
        ``n_conformers < 1``, a negative RMSD threshold, or no conformer could be embedded.
    MissingHydrogenError
        Some atoms carry implicit hydrogens.
    """
    from rdkit import Chem
    from rdkit.Chem import rdDistGeom

    if int(n_conformers) != n_conformers or n_conformers < 1:
        raise ConfigError(f"n_conformers must be an integer >= 1, got {n_conformers!r}")
    if prune_rms_angstrom < 0:
        raise ConfigError(f"prune_rms_angstrom must be >= 0, got {prune_rms_angstrom!r}")
    _check_explicit_hydrogens(mol)

    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed)
    params.pruneRmsThresh = float(prune_rms_angstrom)
    params.numThreads = 1
    ids = list(rdDistGeom.EmbedMultipleConfs(out, int(n_conformers), params))
    if not ids:  # strained or unusual molecules: random starting coordinates help
        params.useRandomCoords = True
        ids = list(rdDistGeom.EmbedMultipleConfs(out, int(n_conformers), params))
    if not ids:
        raise ConfigError(
            f"RDKit could not embed any conformer of {Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))}"
        )
    return out


def optimize_conformers_xtb(mol, charge: int | None = None, *, max_steps: int = 500, solvent: str | None = None):
    """Minimize every conformer of ``mol`` with GFN2-xTB (tblite).

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        Molecule with explicit hydrogens and at least one conformer.
    charge : int or None
        Total charge, e; None takes the sum of the formal charges.
    max_steps : int
        L-BFGS iterations per conformer (:func:`~.xtb.xtb_optimize`); a few tens
        give a short relaxation that stops near, not at, the minimum.
    solvent : str, optional
        Minimize with ALPB implicit solvation (a tblite solvent name, e.g. ``"water"``).

    Returns
    -------
    mol : rdkit.Chem.Mol
        A copy with each conformer replaced by its minimized geometry (Angstrom),
        same conformer ids and atom order.
    energies : numpy.ndarray
        (n_conformers,) GFN2-xTB energies in Hartree (with ``solvent``, of the
        solvated surface), in conformer order.
    """
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    from .xtb import xtb_optimize

    if mol.GetNumConformers() == 0:
        raise ConfigError("the molecule has no conformers; call generate_conformers first")
    _check_explicit_hydrogens(mol)
    if charge is None:
        charge = Chem.GetFormalCharge(mol)
    out = Chem.Mol(mol)
    numbers = [a.GetAtomicNum() for a in out.GetAtoms()]
    energies = []
    for conf in out.GetConformers():
        positions, energy = xtb_optimize(numbers, conf.GetPositions(), charge, max_steps=max_steps, solvent=solvent)
        for i, (x, y, z) in enumerate(positions):
            conf.SetAtomPosition(i, Point3D(float(x), float(y), float(z)))
        energies.append(energy)
    return out, np.asarray(energies, dtype=float)
