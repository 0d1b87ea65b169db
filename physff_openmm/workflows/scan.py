"""Relaxed torsion scans and conformer ranking.

Energies are relative to the lowest point of the scan, kcal/mol; angles in degrees.
"""

from __future__ import annotations

import math
import numbers
import os
from collections import deque

import numpy as np
import openmm
from openmm import unit
from rdkit import Chem, rdBase
from rdkit.Chem import rdDistGeom

from ..errors import ConfigError, MoleculeError
from ..molecule import fragment_atom_indices
from ..units import ANGSTROM_TO_NM, KCAL_TO_KJ, in_units
from ._files import check_output_path, write_structures
from .simulation import (
    _FORCE_UNIT,
    DEFAULT_TOLERANCE_KCAL_MOL_A,
    check_bonds_kept,
    check_positive,
    make_conformer,
    context_positions_angstrom,
    make_context,
    minimize_context,
    potential_kcal_mol,
    prepare,
    progress_bar,
)

__all__ = ["torsion_scan", "conformer_scan", "dihedral_deg", "validate_dihedral"]

#: Force group of the torsion restraint (the physff forces use groups 1 and 2).
RESTRAINT_GROUP = 31
#: Every force group except the restraint's.
_ENERGY_GROUPS = (1 << RESTRAINT_GROUP) - 1
#: A rigid rotation to the next grid angle that raises the energy more than this (kcal/mol)
#: is replaced by substeps.
CLASH_KCAL_MOL: float = 10.0
#: Largest substep (degrees) when the dihedral is driven gradually.
MAX_SUBSTEP_DEG: float = 5.0


def dihedral_deg(positions: np.ndarray, dihedral: tuple[int, int, int, int]) -> float:
    """Dihedral angle i-j-k-l in degrees, in (-180, 180], from positions (n, 3) (any length unit)."""
    p0, p1, p2, p3 = (np.asarray(positions[a], dtype=np.float64) for a in dihedral)
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / np.linalg.norm(b1)
    v = b0 - np.dot(b0, b1n) * b1n
    w = b2 - np.dot(b2, b1n) * b1n
    x = np.dot(v, w)
    y = np.dot(np.cross(b1n, v), w)
    return math.degrees(math.atan2(y, x))


def validate_dihedral(mol: Chem.Mol, dihedral) -> tuple[int, int, int, int]:
    """Check four zero-based atom indices i, j, k, l bonded in sequence i-j, j-k, k-l.

    Raises
    ------
    ConfigError
        Not four integers, an index out of range, repeated indices, a missing bond (named), or a
        linear (sp) central atom, about which a dihedral is undefined.
    """
    try:
        atoms = tuple(dihedral)
    except TypeError:
        raise ConfigError(f"a dihedral is four atom indices i j k l, got {dihedral!r}") from None
    if len(atoms) != 4 or not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in atoms):
        raise ConfigError(f"a dihedral is four integer atom indices i j k l, got {dihedral!r}")
    atoms = tuple(int(a) for a in atoms)
    n = mol.GetNumAtoms()
    bad = [a for a in atoms if not 0 <= a < n]
    if bad:
        raise ConfigError(
            f"dihedral {' '.join(map(str, atoms))}: atom index {bad[0]} is out of range; "
            f"the molecule has {n} atoms (zero-based indices 0..{n - 1})"
        )
    if len(set(atoms)) != 4:
        raise ConfigError(f"dihedral {' '.join(map(str, atoms))}: the four atom indices must be distinct")
    for a, b in zip(atoms, atoms[1:]):
        if mol.GetBondBetweenAtoms(a, b) is None:
            sa, sb = mol.GetAtomWithIdx(a).GetSymbol(), mol.GetAtomWithIdx(b).GetSymbol()
            raise ConfigError(
                f"dihedral {' '.join(map(str, atoms))}: atoms {a} ({sa}) and {b} ({sb}) are not bonded; "
                "a dihedral i j k l needs bonds i-j, j-k and k-l (zero-based indices)"
            )
    for a in atoms[1:3]:
        atom = mol.GetAtomWithIdx(a)
        if atom.GetHybridization() == Chem.HybridizationType.SP:
            raise ConfigError(
                f"dihedral {' '.join(map(str, atoms))}: atom {a} ({atom.GetSymbol()}) is linear (sp), so the angle "
                "at it is 180 degrees and the dihedral is undefined; choose a central bond between non-linear atoms"
            )
    return atoms


def _moving_side(mol: Chem.Mol, j: int, k: int) -> list[int] | None:
    """Atoms on k's side of the j-k bond, or None when j-k is in a ring (no rotation possible)."""
    seen = {k}
    queue = deque([k])
    while queue:
        a = queue.popleft()
        for nb in mol.GetAtomWithIdx(a).GetNeighbors():
            b = nb.GetIdx()
            if a == k and b == j:
                continue
            if b == j:
                return None
            if b not in seen:
                seen.add(b)
                queue.append(b)
    return sorted(seen)


def _rotate(positions: np.ndarray, moving: list[int], j: int, k: int, angle_deg: float) -> np.ndarray:
    """Rotate ``moving`` atoms about the j->k axis by ``angle_deg`` (right-handed), returning a copy."""
    out = positions.copy()
    axis = positions[k] - positions[j]
    axis /= np.linalg.norm(axis)
    t = math.radians(angle_deg)
    v = positions[moving] - positions[k]
    rot = (
        v * math.cos(t)
        + np.cross(axis, v) * math.sin(t)
        + np.outer(v @ axis, axis) * (1.0 - math.cos(t))
    )
    out[moving] = rot + positions[k]
    return out


def _wrap(angle_deg: float) -> float:
    """An angle wrapped into [-180, 180)."""
    return (angle_deg + 180.0) % 360.0 - 180.0


def _set_restrained(context: openmm.Context, positions_a: np.ndarray, theta0_deg: float) -> None:
    context.setParameter("physff_theta0", math.radians(theta0_deg))
    context.setPositions(positions_a * ANGSTROM_TO_NM * unit.nanometer)


def _drive(
    context: openmm.Context,
    pos: np.ndarray,
    dihedral: tuple[int, int, int, int],
    moving: list[int],
    target: float,
    tolerance_kcal_mol_a: float,
) -> np.ndarray:
    """Move the dihedral from ``pos`` to ``target`` degrees and minimize with it restrained; new positions.

    The moving side is rotated rigidly to the target when the rotation costs less
    than :data:`CLASH_KCAL_MOL`; otherwise (a clash) the dihedral is driven in
    substeps of at most :data:`MAX_SUBSTEP_DEG`, minimizing after each, so that no
    single move is violent enough to break a bond.
    """
    _, j, k, _ = dihedral
    current = dihedral_deg(pos, dihedral)
    delta = _wrap(target - current)
    n_sub = max(1, math.ceil(abs(delta) / MAX_SUBSTEP_DEG))
    context.setPositions(pos * ANGSTROM_TO_NM * unit.nanometer)
    e_before = potential_kcal_mol(context, _ENERGY_GROUPS)
    trial = _rotate(pos, moving, j, k, delta)
    _set_restrained(context, trial, target)
    if potential_kcal_mol(context, _ENERGY_GROUPS) - e_before < CLASH_KCAL_MOL:
        n_sub = 1
    for step in range(1, n_sub + 1):
        angle = current + delta * step / n_sub
        pos = _rotate(pos, moving, j, k, _wrap(angle - dihedral_deg(pos, dihedral)))
        _set_restrained(context, pos, angle)
        minimize_context(context, tolerance_kcal_mol_a)
        pos = context_positions_angstrom(context)
    return pos


def torsion_scan(
    molecule,
    dihedral,
    step_deg: float = 15.0,
    *,
    model="default",
    backend: str = "native",
    platform=None,
    charge: int | None = None,
    restraint_kcal_mol: float = 10000.0,
    tolerance_kcal_mol_a: float = DEFAULT_TOLERANCE_KCAL_MOL_A,
    bidirectional: bool = True,
    output_structures: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> list[tuple[float, float]]:
    """Relaxed torsion scan: the dihedral is held at each grid angle, everything else minimized.

    The dihedral is restrained with ``k (1 - cos(theta - theta0))``, periodic-safe and
    stiff; the reported energies leave the restraint out (force groups). The grid
    is ``-180, -180 + step, ..., 180 - step`` degrees, walked from the grid point
    nearest the input's angle. Each point starts from the previous optimized
    geometry, with the moving side rotated rigidly to the new angle; where that
    would clash, the dihedral is driven there in substeps of at most 5 degrees. With ``bidirectional`` the grid is also walked
    backward from the input geometry, keeping the lower energy at each angle, which
    removes most hysteresis.

    Parameters
    ----------
    molecule : rdkit.Chem.Mol, str or path
        Anything :func:`physff_openmm.molecule.load_molecule` accepts.
    dihedral : tuple of four int
        Zero-based atom indices i, j, k, l, bonded i-j, j-k, k-l.
    step_deg : float
        Grid spacing, degrees; 360 / step_deg must be a whole number.
    model, backend, platform, charge
        As in :func:`physff_openmm.workflows.build_simulation`.
    restraint_kcal_mol : float
        Restraint force constant k, kcal/mol.
    tolerance_kcal_mol_a : float
        Minimizer tolerance (RMS force), kcal/mol/Angstrom.
    bidirectional : bool
        Walk the grid in both directions.
    output_structures : path, optional
        ``.sdf`` file for the optimized geometry of each grid point, in
        angle order (SDF fields ``angle_deg``, ``dihedral_deg`` (as reached) and
        ``energy_kcal_mol`` (relative)).
    progress : bool, optional
        Show a progress bar over the grid points (default: when stderr is a terminal).

    Returns
    -------
    list of (float, float)
        ``360 / step_deg`` rows ``(angle_deg, energy_kcal_mol)`` in increasing angle,
        energies relative to the scan minimum (which is exactly 0).

    Raises
    ------
    ConfigError
        A bad dihedral (:func:`validate_dihedral`), or a central bond j-k in a ring
        (turning it through 360 degrees would tear the ring open).
    ModelFailureError
        A minimization moved a covalent bond more than 30 % from the input geometry.
    """
    step_deg = in_units(step_deg, unit.degree, "step_deg")
    restraint_kcal_mol = in_units(restraint_kcal_mol, unit.kilocalorie_per_mole, "restraint_kcal_mol")
    tolerance_kcal_mol_a = in_units(tolerance_kcal_mol_a, _FORCE_UNIT, "tolerance_kcal_mol_a")
    check_positive("step_deg", step_deg)
    n_points = 360.0 / float(step_deg)
    if abs(n_points - round(n_points)) > 1e-9 or round(n_points) < 2:
        raise ConfigError(f"step_deg must divide 360 into at least two points, got {step_deg!r}")
    n_points = int(round(n_points))
    check_positive("restraint_kcal_mol", restraint_kcal_mol)
    if output_structures is not None:
        check_output_path(output_structures, what="scan structures", suffixes=(".sdf",))
    prep = prepare(molecule, model=model, backend=backend, charge=charge)
    i, j, k, l = validate_dihedral(prep.mol, dihedral)
    moving = _moving_side(prep.mol, j, k)
    if moving is None:
        sj, sk = prep.mol.GetAtomWithIdx(j).GetSymbol(), prep.mol.GetAtomWithIdx(k).GetSymbol()
        raise ConfigError(
            f"dihedral {i} {j} {k} {l}: the central bond {j}-{k} ({sj}-{sk}) is in a ring, and turning it through "
            "360 degrees would tear the ring open; scan a bond outside rings (ring conformers: 'physff-openmm scan "
            "--conformers')"
        )

    system = prep.system  # built for this scan alone: the restraint goes straight in
    restraint = openmm.CustomTorsionForce("physff_k*(1 - cos(theta - physff_theta0))")
    restraint.addGlobalParameter("physff_k", restraint_kcal_mol * KCAL_TO_KJ)
    restraint.addGlobalParameter("physff_theta0", 0.0)
    restraint.addTorsion(i, j, k, l, [])
    restraint.setForceGroup(RESTRAINT_GROUP)
    restraint.setName("physff torsion-scan restraint")
    system.addForce(restraint)
    context = make_context(system, platform)

    grid = [-180.0 + m * float(step_deg) for m in range(n_points)]
    start = prep.positions_angstrom
    bonds = prep.params.covalent_pairs
    m0 = int(np.argmin([abs(_wrap(g - dihedral_deg(start, (i, j, k, l)))) for g in grid]))
    passes = [[(m0 + s) % n_points for s in range(n_points)]]
    if bidirectional:  # the backward pass also starts from the input geometry
        passes.append([(m0 - s) % n_points for s in range(n_points)])
    best: dict[int, tuple[float, np.ndarray]] = {}
    with progress_bar(n_points * len(passes), "point", progress, desc="torsion scan") as bar:
        for order in passes:
            pos = start
            for m in order:
                pos = _drive(context, pos, (i, j, k, l), moving, grid[m], tolerance_kcal_mol_a)
                check_bonds_kept(bonds, prep.params.symbols, start, pos,
                                 where=f"the scan's minimization at {grid[m]:g} degrees")
                e = potential_kcal_mol(context, _ENERGY_GROUPS)
                if m not in best or e < best[m][0]:
                    best[m] = (e, pos)
                bar.update(1)
    e_min = min(e for e, _ in best.values())
    rows = [(grid[m], best[m][0] - e_min) for m in range(n_points)]
    if output_structures is not None:
        out = Chem.Mol(prep.mol)
        out.RemoveAllConformers()
        props = []
        for m, (angle, e_rel) in enumerate(rows):
            out.AddConformer(make_conformer(best[m][1], m), assignId=False)
            reached = dihedral_deg(best[m][1], (i, j, k, l))
            props.append({"angle_deg": repr(angle), "dihedral_deg": repr(reached), "energy_kcal_mol": repr(e_rel)})
        write_structures(out, output_structures, properties=props)
    return rows



def conformer_scan(
    molecule,
    n_conformers: int = 10,
    *,
    model="default",
    backend: str = "native",
    platform=None,
    charge: int | None = None,
    seed: int = 0xF00D,
    prune_rms_angstrom: float = 0.3,
    tolerance_kcal_mol_a: float = DEFAULT_TOLERANCE_KCAL_MOL_A,
    progress: bool | None = None,
) -> tuple[Chem.Mol, list[tuple[int, float]]]:
    """Embed conformers with RDKit ETKDG, minimize each with physff and rank them by energy.

    Parameters
    ----------
    molecule : rdkit.Chem.Mol, str or path
        One molecule (a single fragment).
    n_conformers : int
        Conformers to embed (fewer may remain after RMS pruning).
    model, backend, platform, charge
        As in :func:`physff_openmm.workflows.build_simulation`.
    seed : int
        ETKDG random seed.
    prune_rms_angstrom : float
        ETKDG drops conformers closer than this heavy-atom RMSD, Angstrom (0: keep all).
    tolerance_kcal_mol_a : float
        Minimizer tolerance, kcal/mol/Angstrom.
    progress : bool, optional
        Show a progress bar over the conformers (default: when stderr is a terminal).

    Returns
    -------
    (rdkit.Chem.Mol, list of (int, float))
        The molecule with its minimized conformers in rank order (conformer ids are
        the ETKDG embedding indices), and rows ``(conformer, energy_kcal_mol)``
        sorted by energy, relative to the lowest (exactly 0).
    """
    prune_rms_angstrom = in_units(prune_rms_angstrom, unit.angstrom, "prune_rms_angstrom")
    tolerance_kcal_mol_a = in_units(tolerance_kcal_mol_a, _FORCE_UNIT, "tolerance_kcal_mol_a")
    check_positive("n_conformers", n_conformers, integer=True)
    prep = prepare(molecule, model=model, backend=backend, charge=charge)
    if len(fragment_atom_indices(prep.mol)) != 1:
        raise MoleculeError("a conformer scan needs a single molecule; this input has several fragments")
    emb = Chem.Mol(prep.mol)
    emb.RemoveAllConformers()
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed) & 0x7FFFFFFF
    params.pruneRmsThresh = float(prune_rms_angstrom)
    with rdBase.BlockLogs():
        ids = list(rdDistGeom.EmbedMultipleConfs(emb, int(n_conformers), params))
    if not ids:
        raise MoleculeError("RDKit could not embed any conformer of this molecule")
    context = make_context(prep.system, platform)
    offset = prep.params.energy_offset
    results = []
    with progress_bar(len(ids), "conformer", progress, desc="conformers") as bar:
        for cid in ids:
            xyz = np.asarray(emb.GetConformer(cid).GetPositions(), dtype=np.float64)
            context.setPositions(xyz * ANGSTROM_TO_NM * unit.nanometer)
            minimize_context(context, tolerance_kcal_mol_a)
            final = context_positions_angstrom(context)
            check_bonds_kept(prep.params.covalent_pairs, prep.params.symbols, xyz, final,
                             where=f"the minimization of conformer {cid}")
            results.append((potential_kcal_mol(context) + offset, int(cid), final))
            bar.update(1)
    results.sort(key=lambda r: r[0])
    out = Chem.Mol(prep.mol)
    out.RemoveAllConformers()
    for _, cid, xyz in results:
        out.AddConformer(make_conformer(xyz, cid), assignId=False)
    e_min = results[0][0]
    return out, [(cid, e - e_min) for e, cid, _ in results]
