"""A classical force field of the same topology, the yardstick of the MD benchmarks.

HarmonicBondForce over the bonds, HarmonicAngleForce over the angles,
PeriodicTorsionForce over every proper torsion, NonbondedForce (NoCutoff) with
1-2/1-3 exclusions and scaled 1-4 exceptions (Coulomb 0.75, Lennard-Jones 1.0, as MMFF94).
Parameters come from RDKit's MMFF94 typing (bond and angle force constants and
reference values, V1..V3 torsion barriers as up to three periodic terms, MMFF
partial charges, per-atom van der Waals radius and well depth turned into
Lennard-Jones sigma and epsilon); atoms MMFF cannot type get generic values.
Only the cost matters here, so the MMFF functional forms are simplified to
OpenMM's standard ones.
"""

from __future__ import annotations

import math

import numpy as np
import openmm
from openmm.app import element as _element
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

from physff_openmm.units import ANGSTROM_TO_NM, KCAL_TO_KJ

#: MMFF94 unit factors: bond stretch (md/A -> kcal/mol/A^2) and angle bend (md A/rad^2 -> kcal/mol/deg^2)
_MMFF_BOND = 143.9325
_MMFF_ANGLE = 0.043844

#: force groups of the classical terms (for per-term timings)
GROUPS = {"bonds": 0, "angles": 1, "torsions": 2, "nonbonded": 3}


def _angles(mol: Chem.Mol) -> list[tuple[int, int, int]]:
    out = []
    for atom in mol.GetAtoms():
        j = atom.GetIdx()
        nbrs = sorted(n.GetIdx() for n in atom.GetNeighbors())
        for a in range(len(nbrs)):
            for b in range(a + 1, len(nbrs)):
                out.append((nbrs[a], j, nbrs[b]))
    return out


def _torsions(mol: Chem.Mol) -> list[tuple[int, int, int, int]]:
    out = []
    for bond in mol.GetBonds():
        j, k = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        for ni in mol.GetAtomWithIdx(j).GetNeighbors():
            i = ni.GetIdx()
            if i == k:
                continue
            for nl in mol.GetAtomWithIdx(k).GetNeighbors():
                l = nl.GetIdx()
                if l in (j, i):
                    continue
                out.append((i, j, k, l))
    return out


def classical_system(mol: Chem.Mol, positions_angstrom: np.ndarray) -> tuple[openmm.System, dict]:
    """The classical System of ``mol`` (explicit H) and counts of its terms.

    ``positions_angstrom`` gives reference bond lengths and angles where MMFF has no parameters.
    """
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    xyz = np.asarray(positions_angstrom, dtype=float)
    system = openmm.System()
    for atom in mol.GetAtoms():
        system.addParticle(_element.Element.getBySymbol(atom.GetSymbol()).mass)
    generic = 0

    bonds = openmm.HarmonicBondForce()
    bond_pairs = []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        p = props.GetMMFFBondStretchParams(mol, i, j) if props else None
        if p:
            _, kb, r0 = p
            k = _MMFF_BOND * kb * KCAL_TO_KJ / ANGSTROM_TO_NM**2
        else:
            generic += 1
            r0, k = float(np.linalg.norm(xyz[i] - xyz[j])), 3.0e5
        bonds.addBond(i, j, r0 * ANGSTROM_TO_NM, k)
        bond_pairs.append((i, j))

    angles = openmm.HarmonicAngleForce()
    for i, j, k in _angles(mol):
        p = props.GetMMFFAngleBendParams(mol, i, j, k) if props else None
        if p:
            _, ka, theta0 = p
            kk = _MMFF_ANGLE * ka * (180.0 / math.pi) ** 2 * KCAL_TO_KJ
            theta = math.radians(theta0)
        else:
            generic += 1
            u, v = xyz[i] - xyz[j], xyz[k] - xyz[j]
            theta = math.acos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))
            kk = 400.0
        angles.addAngle(i, j, k, theta, kk)

    torsions = openmm.PeriodicTorsionForce()
    n_torsions = 0
    for i, j, k, l in _torsions(mol):
        n_torsions += 1
        p = props.GetMMFFTorsionParams(mol, i, j, k, l) if props else None
        if p:
            _, v1, v2, v3 = p
            # 0.5 [V1 (1 + cos phi) + V2 (1 - cos 2phi) + V3 (1 + cos 3phi)]
            for n, v, phase in ((1, v1, 0.0), (2, v2, math.pi), (3, v3, 0.0)):
                if v != 0.0:
                    torsions.addTorsion(i, j, k, l, n, phase, 0.5 * v * KCAL_TO_KJ)
        else:
            generic += 1
            torsions.addTorsion(i, j, k, l, 3, 0.0, 0.6)

    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    for a in range(mol.GetNumAtoms()):
        if props:
            q = props.GetMMFFPartialCharge(a)
            _, _, r_star, eps = props.GetMMFFVdWParams(a, a)
            sigma = r_star / 2 ** (1.0 / 6.0) * ANGSTROM_TO_NM
            epsilon = eps * KCAL_TO_KJ
        else:
            q, sigma, epsilon = 0.0, 0.3, 0.4
        nb.addParticle(q, sigma, epsilon)
    nb.createExceptionsFromBonds(bond_pairs, 0.75, 1.0)

    for name, force in (("bonds", bonds), ("angles", angles), ("torsions", torsions), ("nonbonded", nb)):
        force.setForceGroup(GROUPS[name])
        force.setName(f"classical {name}")
        system.addForce(force)
    counts = {
        "bonds": bonds.getNumBonds(),
        "angles": angles.getNumAngles(),
        "proper_torsions": n_torsions,
        "torsion_terms": torsions.getNumTorsions(),
        "nonbonded_exceptions": nb.getNumExceptions(),
        "terms_with_generic_parameters": generic,
        "source": "RDKit MMFF94" if props else "generic",
    }
    return system, counts
