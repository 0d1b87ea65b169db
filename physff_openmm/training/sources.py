"""Readers of public quantum-chemistry data, returning :class:`MoleculeRecord` lists.

Every reader converts to the dataset units (positions in Angstrom, energies in
Hartree, charges in e), takes a ``limit``, and skips what it cannot use (an
element outside H C N O F S Cl Br P, a geometry whose connectivity is not the
molecule's, a structure whose bonds cannot be perceived) with a logged warning.

* :func:`read_conformer_benchmark`: drug-like molecules with ~10 conformers each
  (Folmsbee & Hutchison 2020), energies at several levels.
* :func:`read_torsion_drives`: 24-point torsion scans (Behara et al.).
* :func:`read_ncia`: NCIAtlas dimers with CCSD(T)/CBS interaction energies.
* :func:`read_qm9`: QM9 from the ``qm9pack`` package (B3LYP/6-31G(2df,p)).
* :func:`read_xtb_frames`: GFN2-xTB energies and forces of off-equilibrium
  frames of drug-like molecules.
* :func:`read_structures`: user structures (.smi, .sdf/.mol, .xyz) to label.

Charged states to label (the public sets hold few): :func:`charged_variants`
makes protonated amines, carboxylates and zwitterions of neutral molecules
(e.g. those of :func:`xtb_frames_smiles`), and :data:`SMALL_CHARGED` lists
small ions and zwitterions.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physff_openmm.errors import ConfigError, DependencyError, MoleculeFileError, PhysFFError
from physff_openmm.molecule import element_graph
from physff_openmm.units import HARTREE_TO_KCAL

from .dataset import MoleculeRecord
from .keys import XTB_LEVEL

__all__ = [
    "read_conformer_benchmark",
    "read_torsion_drives",
    "read_ncia",
    "read_qm9",
    "read_xtb_frames",
    "read_structures",
    "connectivity_matches",
    "CHARGED_KINDS",
    "charged_variants",
    "ChargedVariant",
    "SMALL_CHARGED",
    "xtb_frames_smiles",
    "CONFORMER_BENCHMARK_LEVELS",
    "QM9_LEVEL",
]

logger = logging.getLogger(__name__)

#: Energy columns of the conformer benchmark's energies.csv (Hartree).
CONFORMER_BENCHMARK_LEVELS: tuple[str, ...] = (
    "b3lyp_d3bj_def2svp",
    "b3lyp_def2svp_nodisp",
    "wb97x_d3_def2tzvp",
    "dlpno_ccsdt_ccpvtz",
    "mp2_ccpvtz",
    "b3lyp_d3bj_def2tzvp",
)
#: Level of theory of QM9 geometries, energies and Mulliken charges.
QM9_LEVEL = "b3lyp/6-31g(2df,p)"
_NCIA_LEVEL = "ccsd(t)/cbs"


def _supported_numbers() -> set[int]:
    from rdkit import Chem

    from physff_openmm.molecule import SUPPORTED_ELEMENTS

    table = Chem.GetPeriodicTable()
    return {table.GetAtomicNumber(s) for s in SUPPORTED_ELEMENTS}


def _quiet_rdkit():
    from rdkit import RDLogger

    class _Ctx:
        def __enter__(self):
            RDLogger.DisableLog("rdApp.*")

        def __exit__(self, *exc):
            RDLogger.EnableLog("rdApp.*")

    return _Ctx()


def _check_limit(limit) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
        raise ConfigError(f"limit must be a non-negative integer or None, got {limit!r}")
    return int(limit)


# ============================================================================ graphs
def _bond_set(mol) -> set[tuple[int, int]]:
    return {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}


def _perceived_bonds(numbers, positions, cov_factor: float = 1.3) -> set[tuple[int, int]]:
    """Connectivity from coordinates: bonded when closer than ``cov_factor`` times the covalent radii sum.

    Radii are RDKit's covalent radii (Angstrom); positions in Angstrom.
    """
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    radii = np.array([table.GetRcovalent(int(z)) for z in numbers], dtype=np.float64)
    xyz = np.asarray(positions, dtype=np.float64)
    dist = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
    cutoff = float(cov_factor) * (radii[:, None] + radii[None, :])
    i, j = np.nonzero(np.triu(dist < cutoff, k=1))
    return {(int(a), int(b)) for a, b in zip(i, j)}


#: Covalent-radius factors tried in turn when matching a SMILES onto coordinates: the
#: default, then a tighter one (strained cages put non-bonded atoms within 1.3 x the
#: radii sum), then a looser one (stretched bonds).
_COV_FACTORS = (1.3, 1.2, 1.4)


def _perceived_candidates(numbers, positions):
    """Lazily perceived connectivities for :data:`_COV_FACTORS`."""
    for factor in _COV_FACTORS:
        yield _perceived_bonds(numbers, positions, factor)


def connectivity_matches(mol, positions) -> bool:
    """Whether the bonds perceived from coordinates are exactly the molecule's bonds.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        Molecule with explicit hydrogens.
    positions : array_like (n_atoms, 3)
        Angstrom, in the molecule's atom order.

    Returns
    -------
    bool
        False when a proton moved, a ring formed or broke, or atoms overlap.
    """
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    return _perceived_bonds(numbers, np.asarray(positions, dtype=np.float64)) == _bond_set(mol)


def _match_template(template, numbers, bonds) -> tuple[int, ...] | None:
    """Map template atoms onto a graph: ``match[i]`` = graph atom of template atom ``i``, or None."""
    bonds = list(bonds)
    if template.GetNumAtoms() != len(numbers) or template.GetNumBonds() != len(bonds):
        return None
    query = element_graph([a.GetAtomicNum() for a in template.GetAtoms()], _bond_set(template))
    target = element_graph(numbers, bonds)
    match = target.GetSubstructMatch(query)
    return tuple(match) if len(match) == template.GetNumAtoms() else None


def _template_positions(template, numbers, positions, bond_candidates) -> np.ndarray | None:
    """Positions in the template's atom order, trying each candidate connectivity in turn."""
    for bonds in bond_candidates:
        if bonds is None:
            continue
        match = _match_template(template, numbers, bonds)
        if match is not None:
            return np.asarray(positions, dtype=np.float64)[list(match)]
    return None


def _template_from_smiles(smiles: str, what: str):
    """Sanitized molecule with explicit hydrogens from SMILES, or None (logged)."""
    from rdkit import Chem

    with _quiet_rdkit():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        logger.warning("%s: cannot parse SMILES %r; skipped", what, smiles)
        return None
    mol = Chem.AddHs(mol)
    supported = _supported_numbers()
    bad = sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() not in supported})
    if bad:
        logger.warning("%s: unsupported element(s) %s; skipped", what, ", ".join(bad))
        return None
    return mol


def _float(cell: str | None) -> float:
    if cell is None or not str(cell).strip():
        return math.nan
    try:
        return float(cell)
    except ValueError:
        return math.nan


# ============================================================================ conformer benchmark
def read_conformer_benchmark(
    folder: str | Path,
    *,
    level: str = "b3lyp_d3bj_def2svp",
    names: Collection[str] | None = None,
    limit: int | None = None,
) -> list[MoleculeRecord]:
    """Read the drug-like conformer benchmark (Folmsbee & Hutchison 2020).

    Each molecule is built from the SMILES in ``molecules.csv`` (hydrogens
    added) and carries the CSV's total charge; each conformer's molfile gives
    only coordinates and connectivity. Atoms are put in the SMILES molecule's
    order by matching the element graphs (bond orders ignored): first with the
    molfile's bonds, then with bonds perceived from the coordinates (a few
    molfiles miss a bond). A conformer whose connectivity matches neither (a
    proton moved, a ring formed) is skipped, as are molecules with elements
    outside H C N O F S Cl Br P.

    Parameters
    ----------
    folder : str or Path
        Holds ``molecules.csv``, ``energies.csv`` and ``geometries/<name>/<conformer>.mol``.
    level : str
        Column of ``energies.csv`` stored as ``energy`` (Hartree); the other
        columns go to ``extra_energies``. Blank cells become NaN (a level blank
        for every conformer of a molecule is left out of its ``extra_energies``).
    names : collection of str, optional
        Only these molecules.
    limit : int, optional
        At most this many molecules (after skipping).

    Returns
    -------
    list of MoleculeRecord
        One per molecule, positions in Angstrom, energies in Hartree,
        ``conformer_ids`` = the molfile names without suffix.

    Raises
    ------
    MoleculeFileError
        If the folder or a CSV file is missing.
    ConfigError
        If ``level`` is not a column of ``energies.csv``.
    """
    from rdkit import Chem

    folder = Path(folder)
    limit = _check_limit(limit)
    mol_csv, en_csv = folder / "molecules.csv", folder / "energies.csv"
    for p in (mol_csv, en_csv):
        if not p.is_file():
            raise MoleculeFileError(f"conformer benchmark file {p} does not exist")
    with open(mol_csv, newline="") as fh:
        molecules = list(csv.DictReader(fh))
    with open(en_csv, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c for c in (reader.fieldnames or []) if c not in ("name", "conformer")]
        energies: dict[str, list[dict[str, str]]] = {}
        for row in reader:
            energies.setdefault(row["name"], []).append(row)
    if level not in columns:
        raise ConfigError(f"level {level!r} is not a column of {en_csv}; available: {', '.join(columns)}")
    wanted = None if names is None else set(names)
    if wanted is not None:
        unknown = wanted - {m["name"] for m in molecules}
        if unknown:
            logger.warning("%s: no molecules named %s", mol_csv, ", ".join(sorted(unknown)))
    source = f"conformer-benchmark (Folmsbee & Hutchison 2020, ORCA): {folder}"

    records: list[MoleculeRecord] = []
    for row in molecules:
        if limit is not None and len(records) >= limit:
            break
        name = row["name"]
        if wanted is not None and name not in wanted:
            continue
        template = _template_from_smiles(row["smiles"], f"{mol_csv}: {name}")
        if template is None:
            continue
        charge = int(float(row["charge"]))
        if Chem.GetFormalCharge(template) != charge:
            logger.warning(
                "%s: %s: SMILES charge %+d differs from the CSV charge %+d; skipped",
                mol_csv, name, Chem.GetFormalCharge(template), charge,
            )
            continue
        numbers_t = [a.GetAtomicNum() for a in template.GetAtoms()]
        positions, ids, energy, extra = [], [], [], {c: [] for c in columns if c != level}
        for erow in energies.get(name, []):
            conf = erow["conformer"]
            path = folder / "geometries" / name / f"{conf}.mol"
            if not path.is_file():
                logger.warning("%s: missing geometry file; conformer skipped", path)
                continue
            with _quiet_rdkit():
                raw = Chem.MolFromMolFile(str(path), sanitize=False, removeHs=False, strictParsing=False)
            if raw is None or raw.GetNumConformers() == 0:
                logger.warning("%s: unreadable molfile; conformer skipped", path)
                continue
            numbers = [a.GetAtomicNum() for a in raw.GetAtoms()]
            xyz = raw.GetConformer().GetPositions()
            if sorted(numbers) != sorted(numbers_t):
                logger.warning("%s: atoms differ from the SMILES %s; conformer skipped", path, row["smiles"])
                continue
            pos = _template_positions(
                template, numbers, xyz, itertools.chain([_bond_set(raw)], _perceived_candidates(numbers, xyz))
            )
            if pos is None:
                logger.warning(
                    "%s: connectivity differs from the SMILES %s (proton moved or ring formed?); conformer skipped",
                    path, row["smiles"],
                )
                continue
            positions.append(pos)
            ids.append(conf)
            energy.append(_float(erow.get(level)))
            for c in extra:
                extra[c].append(_float(erow.get(c)))
        if not positions:
            logger.warning("%s: %s has no usable conformer; skipped", folder, name)
            continue
        records.append(
            MoleculeRecord.from_rdkit(
                template,
                name,
                positions=np.stack(positions),
                energy=energy,
                extra_energies=extra,
                conformer_ids=ids,
                level=level,
                source=source,
            )
        )
    return records


# ============================================================================ torsion drives
def _mol_from_mapped_smiles(mapped: str, what: str):
    """Molecule with explicit H in map-number order (map k -> index k-1), maps cleared; or None."""
    from rdkit import Chem

    params = Chem.SmilesParserParams()
    params.removeHs = False
    with _quiet_rdkit():
        mol = Chem.MolFromSmiles(mapped, params)
    if mol is None:
        logger.warning("%s: cannot parse mapped SMILES %r; skipped", what, mapped)
        return None
    maps = [a.GetAtomMapNum() for a in mol.GetAtoms()]
    n = mol.GetNumAtoms()
    if sorted(maps) != list(range(1, n + 1)):
        logger.warning("%s: map numbers of %r are not 1..%d; skipped", what, mapped, n)
        return None
    order = [0] * n
    for idx, m in enumerate(maps):
        order[m - 1] = idx
    mol = Chem.RenumberAtoms(mol, order)
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    if any(a.GetNumImplicitHs() for a in mol.GetAtoms()):
        logger.warning("%s: mapped SMILES %r lacks explicit hydrogens; skipped", what, mapped)
        return None
    return mol


def read_torsion_drives(
    path: str | Path,
    *,
    level: str = "b3lyp_d3bj_def2svp",
    limit: int | None = None,
) -> list[MoleculeRecord]:
    """Read torsion drives (``torsion_drives.json``, MobleyLab qm-theory-benchmark).

    Parameters
    ----------
    path : str or Path
        The JSON file, or the folder holding ``torsion_drives.json``.
    level : str
        Key of ``total_energies_hartree`` stored as ``energy`` (Hartree); the
        other levels go to ``extra_energies``.
    limit : int, optional
        At most this many drives.

    Returns
    -------
    list of MoleculeRecord
        One per drive, named ``torsiondrive_<index>``; atoms in map-number
        order; ``dihedral`` (zero-based indices) and ``angles_deg`` per
        conformer; conformer ids ``"angle_<deg>"``. Geometries whose perceived
        connectivity differs from the molecule are skipped.

    Raises
    ------
    MoleculeFileError
        Missing or unreadable file.
    """
    from rdkit import Chem

    path = Path(path)
    if path.is_dir():
        path = path / "torsion_drives.json"
    limit = _check_limit(limit)
    if not path.is_file():
        raise MoleculeFileError(f"torsion drive file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MoleculeFileError(f"cannot read torsion drives from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise MoleculeFileError(f"{path}: expected a JSON object of torsion drives")
    supported = _supported_numbers()
    source = f"torsion-drives (MobleyLab qm-theory-benchmark, MP2/heavy-aug-cc-pVTZ geometries): {path}"
    records: list[MoleculeRecord] = []
    for key, drive in data.items():
        if limit is not None and len(records) >= limit:
            break
        what = f"{path}: drive {key}"
        try:
            mol = _mol_from_mapped_smiles(drive["mapped_smiles"], what)
            if mol is None:
                continue
            bad = sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() not in supported})
            if bad:
                logger.warning("%s: unsupported element(s) %s; skipped", what, ", ".join(bad))
                continue
            charge = int(round(float(drive.get("charge", 0))))
            if Chem.GetFormalCharge(mol) != charge:
                logger.warning("%s: formal charges sum to %+d, not %+d; skipped", what, Chem.GetFormalCharge(mol), charge)
                continue
            geoms = np.asarray(drive["geometries_angstrom"], dtype=np.float64)
            angles = np.asarray(drive["angles_deg"], dtype=np.float64)
            levels: dict[str, Any] = dict(drive.get("total_energies_hartree", {}))
            dihedral = [int(i) for i in drive["dihedral"]]
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("%s: malformed entry (%s); skipped", what, exc)
            continue
        n_conf = geoms.shape[0]
        if geoms.ndim != 3 or geoms.shape[1:] != (mol.GetNumAtoms(), 3) or angles.shape != (n_conf,):
            logger.warning("%s: geometry or angle arrays have the wrong shape; skipped", what)
            continue
        if level not in levels:
            logger.warning("%s: no energies at level %r (has %s); skipped", what, level, ", ".join(levels))
            continue
        energies = {}
        for lvl, vals in levels.items():
            arr = np.array([_float(v) if isinstance(v, str) or v is None else float(v) for v in vals])
            if arr.shape != (n_conf,):
                logger.warning("%s: %d energies at %s for %d geometries; level ignored", what, arr.size, lvl, n_conf)
                arr = np.full(n_conf, np.nan)
            energies[lvl] = arr
        keep = [k for k in range(n_conf) if connectivity_matches(mol, geoms[k])]
        if len(keep) < n_conf:
            logger.warning(
                "%s: %d of %d geometries have a connectivity different from the molecule; skipped",
                what, n_conf - len(keep), n_conf,
            )
        if not keep:
            continue
        ids = [f"angle_{angles[k]:g}" for k in keep]
        if len(set(ids)) != len(ids):
            ids = [f"{k}_angle_{angles[k]:g}" for k in keep]
        records.append(
            MoleculeRecord.from_rdkit(
                mol,
                f"torsiondrive_{key}",
                positions=geoms[keep],
                energy=energies[level][keep],
                extra_energies={lvl: v[keep] for lvl, v in energies.items() if lvl != level},
                conformer_ids=ids,
                level=level,
                source=source,
                dihedral=dihedral,
                angles_deg=angles[keep],
            )
        )
    return records


# ============================================================================ NCIAtlas
_RANGE_RE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def _parse_selection(text: str, n_atoms: int) -> list[int]:
    """1-based ranges ``"1-8"`` or ``"1-3,7,9-10"`` to sorted zero-based indices."""
    out: list[int] = []
    for part in text.split(","):
        m = _RANGE_RE.match(part)
        if not m:
            raise ValueError(f"bad atom selection {text!r}")
        a = int(m.group(1))
        b = int(m.group(2) or a)
        out.extend(range(a - 1, b))
    if not out or min(out) < 0 or max(out) >= n_atoms or len(set(out)) != len(out):
        raise ValueError(f"atom selection {text!r} out of range 1..{n_atoms}")
    return out


def _parse_comment(comment: str) -> dict[str, str]:
    fields = {}
    for token in comment.split():
        if "=" in token:
            k, v = token.split("=", 1)
            fields[k.strip()] = v.strip()
    return fields


def _read_xyz_frames(path: Path) -> list[tuple[str, list[str], np.ndarray]]:
    """(comment, symbols, positions) for each frame of a multi-frame xyz file."""
    lines = path.read_text().splitlines()
    frames = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError as exc:
            raise MoleculeFileError(f"{path}, line {i + 1}: expected an atom count, found {lines[i]!r}") from exc
        if i + 2 + n > len(lines):
            raise MoleculeFileError(f"{path}, line {i + 1}: file ends inside a frame of {n} atoms")
        comment = lines[i + 1]
        symbols, xyz = [], []
        for k in range(i + 2, i + 2 + n):
            parts = lines[k].split()
            try:
                symbols.append(parts[0])
                xyz.append([float(v) for v in parts[1:4]])
            except (IndexError, ValueError) as exc:
                raise MoleculeFileError(f"{path}, line {k + 1}: expected 'element x y z', found {lines[k]!r}") from exc
        frames.append((comment, symbols, np.asarray(xyz, dtype=np.float64)))
        i += 2 + n
    return frames


def _perceive_monomer(numbers: list[int], positions: np.ndarray, charge: int):
    """Bonds, bond orders and formal charges from coordinates (RDKit DetermineBonds)."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds
    from rdkit.Geometry import Point3D

    rw = Chem.RWMol()
    conf = Chem.Conformer(len(numbers))
    for k, z in enumerate(numbers):
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
        conf.SetAtomPosition(k, Point3D(*(float(v) for v in positions[k])))
    if len(numbers) == 1:
        rw.GetAtomWithIdx(0).SetFormalCharge(int(charge))
    mol = rw.GetMol()
    mol.AddConformer(conf, assignId=True)
    if len(numbers) > 1:
        with _quiet_rdkit():
            rdDetermineBonds.DetermineBonds(mol, charge=int(charge))
    Chem.SanitizeMol(mol)
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        raise ValueError("radical after bond perception")
    if Chem.GetFormalCharge(mol) != int(charge):
        raise ValueError(f"formal charges sum to {Chem.GetFormalCharge(mol)}, not {charge}")
    return mol


def _ncia_files(path_or_folder: Path) -> list[Path]:
    if path_or_folder.is_dir():
        files = sorted(path_or_folder.glob("*.xyz"))
        if not files:
            raise MoleculeFileError(f"no NCIAtlas *.xyz files in folder {path_or_folder}")
        return files
    if path_or_folder.is_file():
        return [path_or_folder]
    raise MoleculeFileError(f"NCIAtlas file or folder {path_or_folder} does not exist")


def _subset_matches(subset: str, wanted: set[str] | None) -> bool:
    if wanted is None:
        return True
    short = subset[5:] if subset.startswith("NCIA_") else subset
    return subset in wanted or short in wanted


def read_ncia(
    path_or_folder: str | Path,
    *,
    subsets: Collection[str] | None = None,
    scaling: float | Collection[float] | None = None,
    limit: int | None = None,
) -> list[MoleculeRecord]:
    """Read NCIAtlas dimers with their CCSD(T)/CBS interaction energies.

    Bonds are perceived per monomer (RDKit ``DetermineBonds`` with the
    monomer's charge) and the two monomers form one two-fragment molecule in
    the file's atom order. All frames of one dimer (its distance scan) become
    the conformers of one record.

    Parameters
    ----------
    path_or_folder : str or Path
        One multi-frame ``.xyz`` file or a folder of them.
    subsets : collection of str, optional
        Only these subsets, e.g. ``{"HB375x10"}`` or ``{"NCIA_HB375x10"}``.
    scaling : float or collection of float, optional
        Only frames at these intermolecular distance scalings (e.g. 1.0).
    limit : int, optional
        At most this many dimers (records).

    Returns
    -------
    list of MoleculeRecord
        ``interaction_energy`` in Hartree (benchmark_Eint converted from
        kcal/mol), ``energy`` NaN, ``scaling`` per conformer, ``fragments``
        (0 for monomer A, 1 for B), ``subset`` (e.g. ``NCIA_HB375x10``) and
        ``nci_group`` (e.g. ``OH-O``); conformer ids are the scan suffixes
        (``"100"`` for scaling 1.00).

    Raises
    ------
    MoleculeFileError
        Missing path or a garbled xyz file.
    """
    from rdkit import Chem

    path_or_folder = Path(path_or_folder)
    limit = _check_limit(limit)
    wanted = None if subsets is None else {str(s) for s in subsets}
    if scaling is None:
        scalings = None
    elif isinstance(scaling, (int, float)):
        scalings = [float(scaling)]
    else:
        scalings = [float(s) for s in scaling]
    supported = _supported_numbers()
    table = Chem.GetPeriodicTable()
    records: list[MoleculeRecord] = []
    for path in _ncia_files(path_or_folder):
        if limit is not None and len(records) >= limit:
            break
        dimers: dict[str, list[tuple[str, dict[str, str], list[int], np.ndarray]]] = {}
        for k, (comment, symbols, xyz) in enumerate(_read_xyz_frames(path)):
            fields = _parse_comment(comment)
            name = fields.get("name", f"{path.stem}/{k}")
            subset = name.split("/", 1)[0] if "/" in name else path.stem
            if not _subset_matches(subset, wanted):
                continue
            try:
                s = float(fields["scaling"])
            except (KeyError, ValueError):
                logger.warning("%s: frame %s has no valid scaling; skipped", path, name)
                continue
            if scalings is not None and not any(abs(s - t) < 1e-6 for t in scalings):
                continue
            dimer, _, cid = name.rpartition("_")
            if not dimer:
                dimer, cid = name, f"{s:.2f}"
            try:
                numbers = [table.GetAtomicNumber(sym.capitalize()) for sym in symbols]
            except RuntimeError:
                logger.warning("%s: frame %s has an unknown element; skipped", path, name)
                continue
            dimers.setdefault(dimer, []).append((cid, fields, numbers, xyz))
        for dimer, frames in dimers.items():
            if limit is not None and len(records) >= limit:
                break
            rec = _ncia_record(path, dimer, frames, supported)
            if rec is not None:
                records.append(rec)
    return records


def _ncia_record(path: Path, dimer: str, frames, supported: set[int]) -> MoleculeRecord | None:
    from rdkit import Chem

    what = f"{path}: {dimer}"
    cid0, f0, numbers, _ = frames[0]
    if any(z not in supported for z in numbers):
        logger.warning("%s: unsupported element; skipped", what)
        return None
    try:
        sel_a = _parse_selection(f0["selection_a"], len(numbers))
        sel_b = _parse_selection(f0["selection_b"], len(numbers))
        charge_a, charge_b = int(f0["charge_a"]), int(f0["charge_b"])
        total = int(f0.get("charge", charge_a + charge_b))
    except (KeyError, ValueError) as exc:
        logger.warning("%s: bad comment fields (%s); skipped", what, exc)
        return None
    if sorted(sel_a + sel_b) != list(range(len(numbers))) or total != charge_a + charge_b:
        logger.warning("%s: selections do not cover the atoms once or charges disagree; skipped", what)
        return None
    # Perceive on the frame closest to equilibrium (monomers are rigid across the scan).
    ref = min(frames, key=lambda fr: abs(float(fr[1]["scaling"]) - 1.0))
    try:
        mol_a = _perceive_monomer([numbers[i] for i in sel_a], ref[3][sel_a], charge_a)
        mol_b = _perceive_monomer([numbers[i] for i in sel_b], ref[3][sel_b], charge_b)
    except Exception as exc:  # noqa: BLE001 - RDKit perception raises several types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.warning("%s: bond perception failed (%s); skipped", what, reason)
        return None
    combined = Chem.CombineMols(mol_a, mol_b)
    # combined order is sel_a + sel_b; put atoms back in file order
    file_order = sel_a + sel_b
    new_order = [0] * len(numbers)
    for combined_idx, file_idx in enumerate(file_order):
        new_order[file_idx] = combined_idx
    mol = Chem.RenumberAtoms(combined, new_order)
    Chem.SanitizeMol(mol)
    Chem.AssignStereochemistryFrom3D(mol)
    fragments = np.zeros(len(numbers), dtype=np.int8)
    fragments[sel_b] = 1
    positions, ids, eint, scal = [], [], [], []
    for cid, fields, nums, xyz in frames:
        same_atoms = nums == numbers and all(fields.get(s) == f0[s] for s in ("selection_a", "selection_b"))
        if not same_atoms:
            logger.warning("%s: frame %s has different atoms; skipped", what, cid)
            continue
        unit = fields.get("benchmark_unit", "kcal/mol")
        if unit != "kcal/mol":
            logger.warning("%s: frame %s has benchmark unit %r (expected kcal/mol); skipped", what, cid, unit)
            continue
        if cid in ids:
            logger.warning("%s: duplicate frame %s; skipped", what, cid)
            continue
        positions.append(xyz)
        ids.append(cid)
        eint.append(_float(fields.get("benchmark_Eint")) / HARTREE_TO_KCAL)
        scal.append(float(fields["scaling"]))
    if not positions:
        return None
    subset = dimer.split("/", 1)[0] if "/" in dimer else path.stem
    return MoleculeRecord.from_rdkit(
        mol,
        dimer,
        positions=np.stack(positions),
        interaction_energy=eint,
        conformer_ids=ids,
        level=_NCIA_LEVEL,
        source=f"NCIAtlas (Rezac et al.), CCSD(T)/CBS interaction energies: {path}",
        scaling=scal,
        fragments=fragments,
        subset=subset,
        nci_group=f0.get("group", ""),
    )


# ============================================================================ QM9
def read_qm9(limit: int | None = None, seed: int = 0) -> list[MoleculeRecord]:
    """Read QM9 molecules from the ``qm9pack`` package (shipped offline).

    Each molecule is built from its SMILES and mapped onto the B3LYP geometry
    by its connectivity perceived from the coordinates; molecules whose
    geometry is not their SMILES (about 3 % of QM9) are skipped.

    Parameters
    ----------
    limit : int, optional
        Number of molecules, drawn at random (without replacement) with
        ``seed``; all molecules in file order when None.
    seed : int
        Random seed of the draw.

    Returns
    -------
    list of MoleculeRecord
        One conformer each, named ``qm9_<index>``; ``energy`` is the electronic
        energy U0 - ZPVE (Hartree), ``qm_charges`` the Mulliken charges (e),
        level ``b3lyp/6-31g(2df,p)`` (Gaussian's B3LYP, VWN-RPA correlation).

    Raises
    ------
    DependencyError
        If qm9pack (or pandas) is not installed.
    """
    import warnings

    limit = _check_limit(limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # qm9pack imports pkg_resources
            import qm9pack
    except ImportError as exc:
        raise DependencyError("read_qm9 needs the qm9pack package: pip install qm9pack") from exc
    df = qm9pack.get_data("qm9")
    n = len(df)
    order = np.arange(n) if limit is None else np.random.default_rng(seed).permutation(n)
    table = None
    records: list[MoleculeRecord] = []
    source = f"QM9 via qm9pack {getattr(qm9pack, '__version__', '')}".strip()
    for idx in order:
        if limit is not None and len(records) >= limit:
            break
        row = df.iloc[int(idx)]
        name = f"qm9_{int(row['Index'])}"
        try:
            symbols = [s.strip().strip("'\"") for s in str(row["Elements"]).strip("[]").split(",")]
            xyz = np.asarray(json.loads(str(row["XYZ_Ang"])), dtype=np.float64)
            mulliken = np.asarray(json.loads(str(row["Mulliken_pop"])), dtype=np.float64)
            energy = float(row["InternalEnergy_0K_au"]) - float(row["ZPVE_au"])
            smiles = str(row["SMILES"])
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("qm9pack: %s: malformed row (%s); skipped", name, exc)
            continue
        if table is None:
            from rdkit import Chem

            table = Chem.GetPeriodicTable()
        try:
            numbers = [table.GetAtomicNumber(s) for s in symbols]
        except RuntimeError:
            logger.warning("qm9pack: %s: unknown element in %s; skipped", name, symbols)
            continue
        if xyz.shape != (len(numbers), 3) or mulliken.shape != (len(numbers),):
            logger.warning("qm9pack: %s: array shapes disagree; skipped", name)
            continue
        template = _template_from_smiles(smiles, f"qm9pack: {name}")
        if template is None:
            continue
        match = None
        for bonds in _perceived_candidates(numbers, xyz):
            match = _match_template(template, numbers, bonds)
            if match is not None:
                break
        if match is None:
            logger.warning("qm9pack: %s: geometry connectivity differs from SMILES %s; skipped", name, smiles)
            continue
        perm = list(match)
        records.append(
            MoleculeRecord.from_rdkit(
                template,
                name,
                positions=xyz[perm][None],
                energy=[energy],
                qm_charges=mulliken[perm][None],
                conformer_ids=["0"],
                level=QM9_LEVEL,
                source=source,
            )
        )
    return records


# ============================================================================ GFN2-xTB frames
#: Level of theory of the xtb-frames energies and forces (tblite, no solvent).
#: Frame kinds of the xtb-frames data set.
_XTB_KINDS = {
    0: "near a minimum (GFN2-xTB relaxed)",
    1: "MMFF94 conformer",
    2: "noisy conformer",
    3: "compressed X-H bond",
    4: "stretched heavy-atom bond",
}


def _xtb_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.h5"))
        if not files:
            raise MoleculeFileError(f"no xtb-frames *.h5 files in folder {path}")
        return files
    if path.is_file():
        return [path]
    raise MoleculeFileError(f"xtb-frames file or folder {path} does not exist")


def _check_kinds(kinds) -> set[int] | None:
    if kinds is None:
        return None
    if isinstance(kinds, (str, bytes)) or not isinstance(kinds, Iterable):
        raise ConfigError(f"kinds must be a collection of frame kinds (0-4) or None, got {kinds!r}")
    out = set()
    for k in kinds:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) not in _XTB_KINDS:
            valid = "; ".join(f"{key}: {text}" for key, text in _XTB_KINDS.items())
            raise ConfigError(f"unknown xtb-frames kind {k!r}; valid kinds: {valid}")
        out.add(int(k))
    if not out:
        raise ConfigError("kinds is empty: no frame would be kept (use None for all kinds)")
    return out


def read_xtb_frames(
    path: str | Path,
    *,
    limit: int | None = None,
    kinds: Collection[int] | None = None,
    max_energy_kcal_mol: float | None = None,
    seed: int = 0,
) -> list[MoleculeRecord]:
    """Read the GFN2-xTB frames of drug-like molecules (energies and forces).

    Each HDF5 group is one molecule, built from its ``mapped_smiles`` attribute
    (atom ``k`` is map number ``k + 1``, hydrogens explicit) and checked
    against the group's ``numbers`` and ``charge``. Frame geometries are taken
    as they are: kinds 3 and 4 compress or stretch a bond on purpose, so their
    connectivity is not checked. A molecule with an element outside H C N O F
    S Cl Br P, whose SMILES does not parse or disagrees with its ``numbers``
    or ``charge``, or whose arrays are malformed is skipped; one warning counts
    the skipped molecules by reason.

    Parameters
    ----------
    path : str or Path
        A folder of ``*.h5`` files (e.g. ``xtb_frames_0.h5``, ``xtb_frames_1.h5``)
        or one such file.
    limit : int, optional
        At most this many molecules: the first ``limit`` usable ones after a
        shuffle of the names with ``seed``. All molecules when None.
    kinds : collection of int, optional
        Keep only frames of these kinds: 0 near a minimum (GFN2-xTB relaxed),
        1 MMFF94 conformers, 2 conformers with Cartesian noise, 3 a compressed
        bond to hydrogen, 4 a stretched heavy-atom bond. All kinds when None.
    max_energy_kcal_mol : float, optional
        Drop frames more than this many kcal/mol above the molecule's lowest
        frame energy (over all its frames, whatever ``kinds``).
    seed : int
        Seed of the shuffle that ``limit`` draws from.

    Returns
    -------
    list of MoleculeRecord
        Sorted by name; one per molecule that keeps at least one frame, named
        ``xtb_<group>`` (e.g. ``xtb_m000000``); positions in Angstrom
        (float64), ``energy`` in Hartree, ``forces`` in Hartree/Angstrom
        (float64), level ``"gfn2-xtb"``, source ``"xtb-frames:<source>"``
        (``moses`` or ``chembl``); ``conformer_ids`` are ``"k<kind>_<frame>"``
        (e.g. ``"k2_3"``: frame 3 of the group, of kind 2), the only place
        that keeps the frame kind.

    Raises
    ------
    MoleculeFileError
        If the path does not exist, a folder holds no ``*.h5`` file, or a file
        is not readable HDF5.
    ConfigError
        If ``limit``, ``kinds`` or ``max_energy_kcal_mol`` is invalid.
    DependencyError
        If h5py is not installed.
    """
    from rdkit import Chem

    from .dataset import _require_h5py

    path = Path(path)
    limit = _check_limit(limit)
    wanted = _check_kinds(kinds)
    if max_energy_kcal_mol is not None:
        try:
            max_energy_kcal_mol = float(max_energy_kcal_mol)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"max_energy_kcal_mol must be a number or None, got {max_energy_kcal_mol!r}") from exc
        if not max_energy_kcal_mol >= 0.0:
            raise ConfigError(f"max_energy_kcal_mol must be >= 0 kcal/mol, got {max_energy_kcal_mol}")
    max_energy_hartree = None if max_energy_kcal_mol is None else max_energy_kcal_mol / HARTREE_TO_KCAL
    files = _xtb_files(path)
    h5py = _require_h5py()
    supported = _supported_numbers()
    table = Chem.GetPeriodicTable()

    handles = []
    try:
        groups: dict[str, int] = {}
        for fi, file in enumerate(files):
            try:
                handles.append(h5py.File(file, "r"))
            except OSError as exc:
                raise MoleculeFileError(f"cannot read xtb-frames file {file}: {exc}") from exc
            for gname in handles[-1]:
                if gname in groups:
                    logger.warning(
                        "%s: molecule %s is also in %s; this copy skipped", file, gname, files[groups[gname]]
                    )
                    continue
                groups[gname] = fi
        names = sorted(groups)
        order = names if limit is None else [names[i] for i in np.random.default_rng(seed).permutation(len(names))]

        skipped: dict[str, int] = {}
        unsupported: set[str] = set()
        examined = 0
        records: list[MoleculeRecord] = []

        def skip(reason: str, what: str, detail: str = "") -> None:
            skipped[reason] = skipped.get(reason, 0) + 1
            logger.debug("%s: %s%s; skipped", what, reason, f" ({detail})" if detail else "")

        for gname in order:
            if limit is not None and len(records) >= limit:
                break
            examined += 1
            file = files[groups[gname]]
            what = f"{file}: {gname}"
            g = handles[groups[gname]][gname]
            try:
                numbers = np.asarray(g["numbers"][()], dtype=np.int64).reshape(-1)
                mapped = g.attrs["mapped_smiles"]
                mapped = mapped.decode() if isinstance(mapped, bytes) else str(mapped)
                charge = int(g.attrs.get("charge", 0))
                origin = g.attrs.get("source", "")
                origin = origin.decode() if isinstance(origin, bytes) else str(origin)
                positions = np.asarray(g["positions"][()], dtype=np.float64)
                energy = np.asarray(g["energy"][()], dtype=np.float64).reshape(-1)
                forces = np.asarray(g["forces"][()], dtype=np.float64)
                frame_kinds = np.asarray(g["kind"][()], dtype=np.int64).reshape(-1)
            except (KeyError, TypeError, ValueError, OSError) as exc:
                skip("malformed group", what, str(exc))
                continue
            n, f = numbers.shape[0], energy.shape[0]
            if positions.shape != (f, n, 3) or forces.shape != (f, n, 3) or frame_kinds.shape != (f,) or f == 0:
                skip("array shapes disagree", what)
                continue
            bad = sorted({int(z) for z in numbers.tolist()} - supported)
            if bad:
                unsupported.update(table.GetElementSymbol(z) if 0 < z < 119 else str(z) for z in bad)
                skip("unsupported element", what)
                continue
            mol = _mol_from_mapped_smiles(mapped, what)
            if mol is None:
                skip("unusable mapped SMILES", what)
                continue
            if [a.GetAtomicNum() for a in mol.GetAtoms()] != numbers.tolist():
                skip("numbers differ from the mapped SMILES", what, mapped)
                continue
            if Chem.GetFormalCharge(mol) != charge:
                skip("formal charges differ from the charge", what, f"{Chem.GetFormalCharge(mol):+d} vs {charge:+d}")
                continue
            keep = np.ones(f, dtype=bool)
            if wanted is not None:
                keep &= np.isin(frame_kinds, list(wanted))
            if max_energy_hartree is not None:
                finite = np.isfinite(energy)
                if finite.any():
                    keep &= finite & (energy - energy[finite].min() <= max_energy_hartree)
            rows = np.flatnonzero(keep)
            if rows.size == 0:
                continue  # every frame filtered out: not an error
            try:
                rec = MoleculeRecord.from_rdkit(
                    mol,
                    f"xtb_{gname}",
                    positions=positions[rows],
                    energy=energy[rows],
                    forces=forces[rows],
                    conformer_ids=[f"k{int(frame_kinds[r])}_{int(r)}" for r in rows],
                    level=XTB_LEVEL,
                    source=f"xtb-frames:{origin}",
                )
            except PhysFFError as exc:
                skip("record does not build", what, str(exc))
                continue
            records.append(rec)
    finally:
        for h in handles:
            h.close()
    if skipped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
        if unsupported:
            reasons += f"; unsupported elements: {', '.join(sorted(unsupported))}"
        logger.warning(
            "%s: skipped %d of %d xtb-frames molecules (%s)", path, sum(skipped.values()), examined, reasons
        )
    records.sort(key=lambda r: r.name)
    return records


# ============================================================================ charged states
#: Reaction SMARTS of the protonation and deprotonation sites of :func:`charged_variants`.
#: Amine: a neutral, three-connected aliphatic N (primary, secondary or tertiary) that is
#: not bonded to an aromatic atom (anilines), to a C, S or P double-bonded to O, S or N
#: (amides, thioamides, amidines, sulfonamides), to a C=C (enamines), a nitrile C, or a
#: heteroatom (hydrazines, hydroxylamines, sulfenamides); aromatic N never matches.
AMINE_PROTONATION = (
    "[NX3;+0;!$(N-a);!$(N-[#6,#15,#16]=[#7,#8,#16]);!$(N-[#16,#15]);!$(N-C=C);!$(N-C#[#6,#7]);"
    "!$(N-[#7,#8,#9,#17,#35]):1]>>[N+:1]"
)
#: Carboxylic acid (formic acid included; carbamic and carbonic acids not) to carboxylate.
ACID_DEPROTONATION = "[CX3;!$(C(=O)(O)[!#6]):1](=[OX1:2])[OX2;H1;+0:3]>>[C:1](=[O:2])[O-:3]"
#: Primary or secondary sulfonamide N-H to its N anion.
SULFONAMIDE_DEPROTONATION = "[NX3;!H0;+0:1]-[SX4:2](=[OX1:3])=[OX1:4]>>[N-:1]-[S:2](=[O:3])=[O:4]"
#: Phenol (an OH on an aromatic carbon) to phenolate.
PHENOL_DEPROTONATION = "[c:1]-[OX2;H1;+0:2]>>[c:1]-[O-:2]"
#: A pyridine-type aromatic N (pyridines, pyrimidines, quinolines, imidazoles, oxazoles, thiazoles; not one
#: bonded to another aromatic N, as in pyrazoles, triazoles and pyridazines) to its cation.
AROMATIC_N_PROTONATION = "[nX2;+0;H0;!$(n:n):1]>>[nH+:1]"

#: Small charged molecules that the acceptance checks and the physics need:
#: (name, SMILES). Ammonium ions, carboxylates, amino-acid zwitterions,
#: guanidinium and amidinium ions, an imidazolium, phenolate and dimethyl phosphate.
SMALL_CHARGED: tuple[tuple[str, str], ...] = (
    ("ammonium", "[NH4+]"),
    ("methylammonium", "C[NH3+]"),
    ("ethylammonium", "CC[NH3+]"),
    ("dimethylammonium", "C[NH2+]C"),
    ("trimethylammonium", "C[NH+](C)C"),
    ("piperidinium", "C1CC[NH2+]CC1"),
    ("formate", "O=C[O-]"),
    ("acetate", "CC(=O)[O-]"),
    ("propanoate", "CCC(=O)[O-]"),
    ("benzoate", "O=C([O-])c1ccccc1"),
    ("glycine_zwitterion", "[NH3+]CC(=O)[O-]"),
    ("alanine_zwitterion", "C[C@H]([NH3+])C(=O)[O-]"),
    ("beta_alanine_zwitterion", "[NH3+]CCC(=O)[O-]"),
    ("guanidinium", "NC(N)=[NH2+]"),
    ("methylguanidinium", "CNC(N)=[NH2+]"),
    ("acetamidinium", "CC(N)=[NH2+]"),
    ("benzamidinium", "NC(=[NH2+])c1ccccc1"),
    ("methylimidazolium", "Cc1c[nH]c[nH+]1"),
    ("phenolate", "[O-]c1ccccc1"),
    ("dimethyl_phosphate", "COP(=O)([O-])OC"),
)


#: Total charge of each kind of :class:`ChargedVariant`.
_KIND_CHARGE = {"zwitterion": 0, "carboxylate": -1, "ammonium": 1, "sulfonamide": -1, "phenolate": -1, "aromatic_n": 1}
#: Every kind of :class:`ChargedVariant`.
CHARGED_KINDS = tuple(_KIND_CHARGE)


@dataclass(frozen=True)
class ChargedVariant:
    """One charged state of a neutral molecule (:func:`charged_variants`).

    Attributes
    ----------
    smiles : str
        Canonical isomeric SMILES of the charged state, hydrogens implicit.
    parent : str
        Canonical isomeric SMILES of the neutral molecule it was made from.
    kind : {"ammonium", "carboxylate", "zwitterion", "sulfonamide", "phenolate", "aromatic_n"}
        Which change: one amine or pyridine-type aromatic N protonated (charge
        +1), one carboxylic acid, sulfonamide N-H or phenol deprotonated (-1), or
        an amine protonated and an acid deprotonated (0, charge-separated).
    site : tuple of int
        Heavy-atom indices, in the parent's canonical SMILES order, of the changed
        N (ammonium, sulfonamide, aromatic_n), O (carboxylate, phenolate), or both
        (zwitterion: N first).
    """

    smiles: str
    parent: str
    kind: str
    site: tuple[int, ...]

    @property
    def charge(self) -> int:
        """Total charge, e."""
        return _KIND_CHARGE[self.kind]


def _reaction(smarts: str):
    from rdkit.Chem import AllChem

    rxn = AllChem.ReactionFromSmarts(smarts)
    rxn.Initialize()
    return rxn


def _react_once(rxn, mol) -> list[tuple[int, Any]]:
    """Every single-site product of a one-reactant reaction: (changed heavy atom of ``mol``, product).

    The changed atom is the one whose formal charge differs from the reactant's
    (product atoms are reordered; each keeps its reactant index in ``react_atom_idx``).
    """
    from rdkit import Chem

    out = []
    for (product,) in rxn.RunReactants((mol,)):
        changed = None
        for atom in product.GetAtoms():
            r = atom.GetIntProp("react_atom_idx")
            if atom.GetFormalCharge() != mol.GetAtomWithIdx(r).GetFormalCharge():
                changed = r
        try:
            Chem.SanitizeMol(product)
        except Exception:  # noqa: BLE001 - RDKit raises several types; such a product is not used
            continue
        if changed is not None:
            out.append((changed, product))
    return out


def _neutral_parent(smiles: str):
    """Heavy-atom molecule of ``smiles`` (mapped, explicit hydrogens allowed), atoms in canonical order; None if unusable."""
    from rdkit import Chem

    with _quiet_rdkit():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    mol = Chem.RemoveHs(mol)
    canonical = Chem.MolToSmiles(mol, isomericSmiles=True)
    return Chem.MolFromSmiles(canonical)  # hydrogens implicit again, so that a charge change sets them


def charged_variants(
    smiles_list: Iterable[str],
    *,
    amines: bool = True,
    acids: bool = True,
    zwitterions: bool = True,
    sulfonamides: bool = False,
    phenols: bool = False,
    aromatic_n: bool = False,
) -> list[ChargedVariant]:
    """Charged states of neutral molecules: protonated amines, carboxylates, zwitterions, other anions.

    Each variant changes one site of a neutral molecule, by the reaction SMARTS
    :data:`AMINE_PROTONATION` (an aliphatic primary, secondary or tertiary amine
    to its ammonium ion, +1; never amides, anilines, sulfonamides, amidines,
    enamines or aromatic N), :data:`ACID_DEPROTONATION` (a carboxylic acid to
    its carboxylate, -1), :data:`SULFONAMIDE_DEPROTONATION` (a sulfonamide N-H
    to its N anion, -1), :data:`PHENOL_DEPROTONATION` (a phenol to its
    phenolate, -1) or :data:`AROMATIC_N_PROTONATION` (a pyridine-type aromatic
    N to its cation, +1). A molecule with an amine and an acid also gets one zwitterion:
    its first amine protonated and its first acid deprotonated (canonical atom
    order). Variants are deduplicated by canonical isomeric SMILES across the
    whole list (symmetric sites give one variant), first occurrence kept.
    Molecules that do not parse, or carry a net charge, give none.

    Parameters
    ----------
    smiles_list : iterable of str
        Neutral molecules; mapped SMILES with explicit hydrogens (as in the
        xtb-frames ``mapped_smiles``) are accepted.
    amines, acids, zwitterions, sulfonamides, phenols, aromatic_n : bool
        Which kinds of variant to make.

    Returns
    -------
    list of ChargedVariant
        In input order; per molecule ammonium ions, carboxylates, the
        zwitterion, sulfonamide anions, phenolates, aromatic cations, each kind in site order.
    """
    from rdkit import Chem

    protonate = _reaction(AMINE_PROTONATION)
    deprotonate = _reaction(ACID_DEPROTONATION)
    sulfonamide = _reaction(SULFONAMIDE_DEPROTONATION)
    phenol = _reaction(PHENOL_DEPROTONATION)
    azine = _reaction(AROMATIC_N_PROTONATION)
    seen: set[str] = set()
    out: list[ChargedVariant] = []

    def add(product, parent: str, kind: str, site: tuple[int, ...]) -> None:
        smi = Chem.MolToSmiles(product, isomericSmiles=True)
        if smi not in seen:
            seen.add(smi)
            out.append(ChargedVariant(smi, parent, kind, site))

    for smiles in smiles_list:
        mol = _neutral_parent(smiles)
        if mol is None or Chem.GetFormalCharge(mol) != 0:
            continue
        parent = Chem.MolToSmiles(mol, isomericSmiles=True)
        cations = sorted(_react_once(protonate, mol), key=lambda t: t[0]) if amines or zwitterions else []
        anions = sorted(_react_once(deprotonate, mol), key=lambda t: t[0]) if acids or zwitterions else []
        if amines:
            for n, product in cations:
                add(product, parent, "ammonium", (n,))
        if acids:
            for o, product in anions:
                add(product, parent, "carboxylate", (o,))
        if zwitterions and cations and anions:
            n, cation = cations[0]
            o = anions[0][0]
            # the product's atoms are reordered; each keeps its parent index in react_atom_idx
            o_in_cation = next(a.GetIdx() for a in cation.GetAtoms() if a.GetIntProp("react_atom_idx") == o)
            for o2, both in _react_once(deprotonate, cation):
                if o2 == o_in_cation:
                    add(both, parent, "zwitterion", (n, o))
                    break
        for wanted, rxn, kind in ((sulfonamides, sulfonamide, "sulfonamide"), (phenols, phenol, "phenolate"),
                                  (aromatic_n, azine, "aromatic_n")):
            if wanted:
                for site, product in sorted(_react_once(rxn, mol), key=lambda t: t[0]):
                    add(product, parent, kind, (site,))
    return out


def xtb_frames_smiles(path: str | Path) -> list[tuple[str, str]]:
    """(group name, mapped SMILES) of every molecule of the xtb-frames set, without its frames.

    Reads only the ``mapped_smiles`` attributes (seconds for the whole set).

    Parameters
    ----------
    path : str or Path
        A folder of ``*.h5`` files or one such file (as :func:`read_xtb_frames`).

    Returns
    -------
    list of (str, str)
        Sorted by group name; a group name in several files is kept once (first file).
    """
    from .dataset import _require_h5py

    h5py = _require_h5py()
    out: dict[str, str] = {}
    for file in _xtb_files(Path(path)):
        try:
            with h5py.File(file, "r") as f:
                for gname, g in f.items():
                    mapped = g.attrs.get("mapped_smiles")
                    if gname in out or mapped is None:
                        continue
                    out[gname] = mapped.decode() if isinstance(mapped, bytes) else str(mapped)
        except OSError as exc:
            raise MoleculeFileError(f"cannot read xtb-frames file {file}: {exc}") from exc
    return sorted(out.items())


# ============================================================================ user structures
def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            candidate = f"{name}_{seen[name]}"
            while candidate in seen:
                seen[name] += 1
                candidate = f"{name}_{seen[name]}"
            seen[candidate] = 1
            out.append(candidate)
        else:
            seen[name] = 1
            out.append(name)
    return out


def read_structures(path: str | Path, *, charge: int | None = None) -> list[tuple[str, Any]]:
    """Read molecules to label from a file.

    Parameters
    ----------
    path : str or Path
        ``.smi`` (one ``SMILES [name]`` per line; blank lines and ``#``
        comments ignored), ``.sdf``/``.mol`` (one molecule per record) or
        ``.xyz`` (one molecule per frame, bonds perceived from the coordinates
        and the charge).
    charge : int, optional
        Total charge of each molecule (checked against formal charges; used for
        bond perception of xyz frames, else a ``charge=N`` comment token, else 0).

    Returns
    -------
    list of (str, rdkit.Chem.Mol)
        Unique names (the SMILES line's name, the SDF title, else
        ``<stem>_<k>``) and validated molecules with explicit hydrogens; file
        inputs keep their coordinates as a conformer (Angstrom).

    Raises
    ------
    MoleculeFileError, MoleculeParseError, MoleculeError
        From :mod:`physff_openmm.molecule`; for ``.smi`` files the message
        names the file and line.
    """
    from physff_openmm.molecule import load_molecule, read_records

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".smi":
        if not path.is_file():
            raise MoleculeFileError(f"structure file {path} does not exist")
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise MoleculeFileError(f"cannot read structure file {path}: {exc}") from exc
        names, mols = [], []
        for lineno, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
            if not text:
                continue
            parts = text.split(None, 1)
            try:
                mol = load_molecule(parts[0], charge=charge)
            except PhysFFError as exc:
                raise type(exc)(f"{path}, line {lineno}: {exc}") from exc
            names.append(parts[1].strip() if len(parts) > 1 else f"{path.stem}_{len(mols) + 1}")
            mols.append(mol)
        if not mols:
            raise MoleculeFileError(f"structure file {path} holds no SMILES")
        return list(zip(_unique(names), mols))
    mols = read_records(path, charge=charge)
    names = []
    for k, mol in enumerate(mols, start=1):
        title = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
        names.append(title or (path.stem if len(mols) == 1 else f"{path.stem}_{k}"))
    return list(zip(_unique(names), mols))
