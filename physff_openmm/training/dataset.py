"""HDF5 dataset shards: one group per molecule, conformers appended one at a time.

Units: positions in Angstrom, energies in Hartree, forces in Hartree/Angstrom,
charges in e (the conversion to the model's kcal/mol happens when a batch is
built). Field names come from :mod:`physff_openmm.training.keys`.

Schema (``schema_version`` 1)
-----------------------------
File attributes:

``schema_version`` (int)
    Version of this layout; a reader refuses any other version.

One group per molecule. The group name is :func:`safe_name` of the record's
name (characters other than letters, digits and ``_ . - + = , @ ( ) [ ]``
become ``_``). Group attributes:

``smiles`` (str)
    Canonical isomeric SMILES (hydrogens implicit), the split key.
``total_charge`` (int, e)
    Total formal charge.
``level`` (str)
    Level of theory of ``energy``, ``forces``, ``qm_charges`` and ``kd_*``.
``source`` (str)
    Provenance (data set, file, program and version).
``complete`` (bool)
    All requested conformers are labelled (the resume marker of labelling).
``subset``, ``nci_group`` (str, optional)
    Named subset of the source and non-covalent interaction class.

Per-molecule datasets (written once, when the group is created):

``species`` (n_atoms,) int8
    Atomic numbers.
``formal_charges`` (n_atoms,) int8, e
    Formal charge per atom.
``bonds`` (n_bonds, 2) int32
    Zero-based atom indices, i < j.
``bond_orders`` (n_bonds,) float32
    1, 1.5 (aromatic), 2, 3.
``dihedral`` (4,) int32, optional
    Zero-based atom indices of a driven torsion.
``fragments`` (n_atoms,) int8, optional
    Fragment (monomer) index of each atom, for ``interaction_energy``.

Per-conformer datasets (first axis n_conf, resizable with maxshape None, one
row appended per conformer):

``positions`` (n_conf, n_atoms, 3) float64, Angstrom
``energy`` (n_conf,) float64, Hartree
    Total energy at ``level``; NaN where absent.
``interaction_energy`` (n_conf,) float64, Hartree
    E(AB) - sum E(fragment); NaN where absent.
``forces`` (n_conf, n_atoms, 3) float64, Hartree/Angstrom, optional
``qm_charges`` (n_conf, n_atoms) float64, e, optional (Mulliken)
``kd_atom`` (n_conf, n_atoms) float64, Hartree, optional
``kd_pair`` (n_conf, n_atoms, n_atoms) float64, Hartree, optional
``angles_deg`` (n_conf,) float64, degree, optional (torsion drives)
``scaling`` (n_conf,) float64, dimensionless, optional (dimer distance scans)
``extra_energies`` (group)
    One (n_conf,) float64 dataset per other level of theory, Hartree; the
    dataset's ``level`` attribute holds the level's name (the dataset name is
    :func:`safe_name` of it).
``conformer_ids`` (n_conf,) variable-length UTF-8 strings
    Source conformer names, unique within the group. Written last: its length
    is the number of committed conformers.

Optional per-conformer datasets exist only when some conformer has that label;
rows of conformers without it hold NaN (rows before the dataset was created are
back-filled with NaN). A record read from a file has ``None`` for an optional
label that no conformer has.

Crash safety: each conformer's arrays are written first, then its entry in
``conformer_ids``, then the file is flushed. Rows beyond ``len(conformer_ids)``
(left by an interrupted write) are ignored by the reader and overwritten by the
next append. A group without ``conformer_ids`` (interrupted while being
created) is skipped by the reader and recreated by the writer.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from physff_openmm.errors import (
    ConfigError,
    DependencyError,
    MissingHydrogenError,
    MoleculeError,
    MoleculeFileError,
)
from physff_openmm.training import keys as K

__all__ = [
    "MoleculeRecord",
    "ShardWriter",
    "read_dataset",
    "write_dataset",
    "pack_shard",
    "split_by_molecule",
    "safe_name",
    "canonical_smiles",
]

logger = logging.getLogger(__name__)

_BOND_TYPES = {1.0: "SINGLE", 1.5: "AROMATIC", 2.0: "DOUBLE", 3.0: "TRIPLE"}
_SAFE_RE = re.compile(r"[^A-Za-z0-9_.\-+=,@()\[\]]")


def _require_h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            "HDF5 dataset shards need h5py: pip install h5py "
            "(or pip install 'physff-openmm[train]')"
        ) from exc
    return h5py


def safe_name(name: str) -> str:
    """Return the HDF5 group name used for a molecule name.

    Parameters
    ----------
    name : str
        Any molecule name (may contain ``/``, spaces, ...).

    Returns
    -------
    str
        ``name`` with every character other than letters, digits and
        ``_ . - + = , @ ( ) [ ]`` replaced by ``_``.

    Raises
    ------
    ConfigError
        If the name is empty or consists of dots only.
    """
    out = _SAFE_RE.sub("_", str(name))
    if not out or set(out) == {"."}:
        raise ConfigError(f"invalid molecule name {name!r}: cannot be used as an HDF5 group name")
    return out


def canonical_smiles(mol) -> str:
    """Canonical isomeric SMILES of an RDKit molecule, hydrogens implicit.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        A sanitized molecule (explicit hydrogens allowed).

    Returns
    -------
    str
        The split key stored in the ``smiles`` attribute.
    """
    from rdkit import Chem

    try:
        heavy = Chem.RemoveHs(mol)
    except Exception:  # noqa: BLE001 - RDKit raises several types; fall back to the mol as is
        heavy = mol
    return Chem.MolToSmiles(heavy, isomericSmiles=True)


def _nan(shape) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float64)


def _as_float_array(value, shape, what: str, *, allow_none: bool) -> np.ndarray | None:
    """Convert to float64 with an exact shape check; all-NaN optional arrays become None."""
    if value is None:
        return None if allow_none else _nan(shape)
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise MoleculeError(f"{what} has shape {arr.shape}, expected {tuple(shape)}")
    if allow_none and arr.size and np.all(np.isnan(arr)):
        return None
    return arr


@dataclass(eq=False)
class MoleculeRecord:
    """One molecule with all its conformers and labels, as stored in a shard.

    Attributes
    ----------
    name : str
        Unique name (the HDF5 group name is :func:`safe_name` of it).
    smiles : str
        Canonical isomeric SMILES, the split key.
    total_charge : int
        Total charge, e.
    species : ndarray, (n_atoms,) int8
        Atomic numbers.
    formal_charges : ndarray, (n_atoms,) int8
        Formal charge per atom, e.
    bonds : ndarray, (n_bonds, 2) int32
        Zero-based atom indices, i < j.
    bond_orders : ndarray, (n_bonds,) float32
        1, 1.5 (aromatic), 2 or 3.
    positions : ndarray, (n_conf, n_atoms, 3) float64
        Angstrom.
    energy : ndarray, (n_conf,) float64
        Total energy at ``level``, Hartree; NaN where absent.
    forces : ndarray (n_conf, n_atoms, 3) float64 or None
        Hartree/Angstrom; None when no conformer has forces, NaN rows where some lack them.
    qm_charges : ndarray (n_conf, n_atoms) float64 or None
        Mulliken charges, e.
    kd_atom : ndarray (n_conf, n_atoms) float64 or None
        Atom contributions to the kinetic energy, sum_{mu,nu on i} K D, Hartree.
    kd_pair : ndarray (n_conf, n_atoms, n_atoms) float64 or None
        Pair contributions, Hartree, symmetric with zero diagonal.
    interaction_energy : ndarray, (n_conf,) float64
        E(AB) - sum E(fragment), Hartree; NaN where absent.
    extra_energies : dict of str to ndarray (n_conf,) float64
        Total energies at other levels of theory, Hartree; NaN where absent
        (a level absent for every conformer is dropped).
    conformer_ids : list of str
        Source conformer names, unique.
    level : str
        Level of theory of ``energy``, ``forces``, ``qm_charges`` and ``kd_*``.
    source : str
        Provenance.
    complete : bool
        All requested conformers are labelled.
    dihedral : ndarray (4,) int32 or None
        Driven torsion (zero-based atom indices).
    angles_deg : ndarray (n_conf,) float64 or None
        Torsion angle per conformer, degree.
    scaling : ndarray (n_conf,) float64 or None
        Intermolecular distance relative to equilibrium, per conformer.
    fragments : ndarray (n_atoms,) int8 or None
        Fragment (monomer) index per atom.
    subset : str
        Named subset of the source ("" if none).
    nci_group : str
        Non-covalent interaction class ("" if none).
    charge_target : ndarray (n_atoms,) float64 or None
        Target partial charges of the charge loss, e (NaN for atoms without one): set in
        training by :func:`.xtb.attach_charge_targets`, not stored in shards.
    """

    name: str
    smiles: str
    total_charge: int
    species: np.ndarray
    formal_charges: np.ndarray
    bonds: np.ndarray
    bond_orders: np.ndarray
    positions: np.ndarray
    energy: np.ndarray | None = None
    forces: np.ndarray | None = None
    qm_charges: np.ndarray | None = None
    kd_atom: np.ndarray | None = None
    kd_pair: np.ndarray | None = None
    interaction_energy: np.ndarray | None = None
    extra_energies: dict[str, np.ndarray] = field(default_factory=dict)
    conformer_ids: list[str] | None = None
    level: str = ""
    source: str = ""
    complete: bool = True
    dihedral: np.ndarray | None = None
    angles_deg: np.ndarray | None = None
    scaling: np.ndarray | None = None
    fragments: np.ndarray | None = None
    subset: str = ""
    nci_group: str = ""
    charge_target: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.name = str(self.name)
        self.smiles = str(self.smiles)
        self.total_charge = int(self.total_charge)
        self.species = np.asarray(self.species, dtype=np.int8).reshape(-1)
        n = self.species.shape[0]
        self.formal_charges = np.asarray(self.formal_charges, dtype=np.int8).reshape(-1)
        if self.formal_charges.shape != (n,):
            raise MoleculeError(f"{self.name}: formal_charges has shape {self.formal_charges.shape}, expected ({n},)")
        self.bonds = np.asarray(self.bonds, dtype=np.int32).reshape(-1, 2)
        self.bond_orders = np.asarray(self.bond_orders, dtype=np.float32).reshape(-1)
        if self.bond_orders.shape[0] != self.bonds.shape[0]:
            raise MoleculeError(f"{self.name}: {self.bonds.shape[0]} bonds but {self.bond_orders.shape[0]} bond orders")
        if self.bonds.size and (self.bonds.min() < 0 or self.bonds.max() >= n):
            raise MoleculeError(f"{self.name}: bond atom index out of range 0..{n - 1}")
        self.positions = np.asarray(self.positions, dtype=np.float64)
        if self.positions.ndim == 2:
            self.positions = self.positions[None]
        if self.positions.ndim != 3 or self.positions.shape[1:] != (n, 3):
            raise MoleculeError(f"{self.name}: positions has shape {self.positions.shape}, expected (n_conf, {n}, 3)")
        c = self.positions.shape[0]
        self.energy = _as_float_array(self.energy, (c,), f"{self.name}: energy", allow_none=False)
        self.interaction_energy = _as_float_array(
            self.interaction_energy, (c,), f"{self.name}: interaction_energy", allow_none=False
        )
        self.forces = _as_float_array(self.forces, (c, n, 3), f"{self.name}: forces", allow_none=True)
        self.qm_charges = _as_float_array(self.qm_charges, (c, n), f"{self.name}: qm_charges", allow_none=True)
        self.kd_atom = _as_float_array(self.kd_atom, (c, n), f"{self.name}: kd_atom", allow_none=True)
        self.kd_pair = _as_float_array(self.kd_pair, (c, n, n), f"{self.name}: kd_pair", allow_none=True)
        self.angles_deg = _as_float_array(self.angles_deg, (c,), f"{self.name}: angles_deg", allow_none=True)
        self.scaling = _as_float_array(self.scaling, (c,), f"{self.name}: scaling", allow_none=True)
        extra = {}
        for lvl, vals in dict(self.extra_energies or {}).items():
            arr = _as_float_array(vals, (c,), f"{self.name}: extra_energies[{lvl!r}]", allow_none=True)
            if arr is not None:
                extra[str(lvl)] = arr
        self.extra_energies = extra
        if self.conformer_ids is None:
            self.conformer_ids = [str(i) for i in range(c)]
        self.conformer_ids = [str(x) for x in self.conformer_ids]
        if len(self.conformer_ids) != c:
            raise MoleculeError(f"{self.name}: {len(self.conformer_ids)} conformer ids for {c} conformers")
        if len(set(self.conformer_ids)) != c:
            raise MoleculeError(f"{self.name}: conformer ids are not unique")
        if self.dihedral is not None:
            self.dihedral = np.asarray(self.dihedral, dtype=np.int32).reshape(-1)
            if self.dihedral.shape != (4,):
                raise MoleculeError(f"{self.name}: dihedral must hold 4 atom indices")
        if self.fragments is not None:
            self.fragments = np.asarray(self.fragments, dtype=np.int8).reshape(-1)
            if self.fragments.shape != (n,):
                raise MoleculeError(f"{self.name}: fragments has shape {self.fragments.shape}, expected ({n},)")
        self.level = str(self.level)
        self.source = str(self.source)
        self.subset = str(self.subset)
        self.nci_group = str(self.nci_group)
        self.complete = bool(self.complete)
        self.charge_target = _as_float_array(self.charge_target, (n,), f"{self.name}: charge_target", allow_none=True)

    # ------------------------------------------------------------------ properties
    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.species.shape[0])

    @property
    def n_conformers(self) -> int:
        """Number of conformers."""
        return int(self.positions.shape[0])

    # ------------------------------------------------------------------ RDKit
    def to_rdkit(self):
        """Build an RDKit molecule with explicit hydrogens and every conformer.

        Returns
        -------
        rdkit.Chem.Mol
            Sanitized; atoms in record order; formal charges and bond orders from
            the record; one conformer per row of ``positions`` (Angstrom, conformer
            id = row index, string property ``conformer_id``); stereochemistry
            assigned from the first conformer; ``_Name`` = ``name``.

        Raises
        ------
        MoleculeError
            If the stored topology does not sanitize.
        """
        from rdkit import Chem
        from rdkit.Geometry import Point3D

        rw = Chem.RWMol()
        for z, q in zip(self.species.tolist(), self.formal_charges.tolist()):
            atom = Chem.Atom(int(z))
            atom.SetFormalCharge(int(q))
            atom.SetNoImplicit(True)
            rw.AddAtom(atom)
        for (i, j), order in zip(self.bonds.tolist(), self.bond_orders.tolist()):
            key = _BOND_TYPES.get(round(float(order) * 2) / 2)
            if key is None:
                raise MoleculeError(f"{self.name}: unsupported bond order {order}")
            rw.AddBond(int(i), int(j), getattr(Chem.BondType, key))
            if key == "AROMATIC":
                bond = rw.GetBondBetweenAtoms(int(i), int(j))
                bond.SetIsAromatic(True)
                rw.GetAtomWithIdx(int(i)).SetIsAromatic(True)
                rw.GetAtomWithIdx(int(j)).SetIsAromatic(True)
        mol = rw.GetMol()
        try:
            Chem.SanitizeMol(mol)
        except Exception as exc:  # noqa: BLE001 - RDKit sanitization errors have several types
            raise MoleculeError(f"{self.name}: stored topology does not sanitize: {exc}") from exc
        for k in range(self.n_conformers):
            conf = Chem.Conformer(self.n_atoms)
            for a, (x, y, z) in enumerate(self.positions[k].tolist()):
                conf.SetAtomPosition(a, Point3D(x, y, z))
            conf.SetId(k)
            conf.Set3D(True)
            conf.SetProp("conformer_id", self.conformer_ids[k])
            mol.AddConformer(conf, assignId=False)
        if self.n_conformers:
            Chem.AssignStereochemistryFrom3D(mol, confId=0)
        mol.SetProp("_Name", self.name)
        return mol

    def with_conformers(self, positions, *, energy=None, forces=None, conformer_ids=None, level: str = "", source: str = "") -> MoleculeRecord:
        """A new record of the same molecule (topology, name, charge) with other conformers and labels.

        Other per-conformer labels (interaction energies, charges, kinetic terms,
        extra levels, angles, scalings) are not carried over.
        """
        return MoleculeRecord(
            name=self.name, smiles=self.smiles, total_charge=self.total_charge, species=self.species,
            formal_charges=self.formal_charges, bonds=self.bonds, bond_orders=self.bond_orders,
            positions=positions, energy=energy, forces=forces, conformer_ids=conformer_ids,
            level=level or self.level, source=source or self.source, fragments=self.fragments,
        )

    @classmethod
    def from_rdkit(
        cls,
        mol,
        name: str,
        *,
        positions=None,
        energy=None,
        forces=None,
        qm_charges=None,
        kd_atom=None,
        kd_pair=None,
        interaction_energy=None,
        extra_energies: Mapping[str, Any] | None = None,
        conformer_ids: Sequence[str] | None = None,
        level: str = "",
        source: str = "",
        smiles: str | None = None,
        complete: bool = True,
        **optional: Any,
    ) -> MoleculeRecord:
        """Make a record from an RDKit molecule with explicit hydrogens.

        Parameters
        ----------
        mol : rdkit.Chem.Mol
            Sanitized molecule, every hydrogen explicit. Its conformers give the
            positions unless ``positions`` is passed.
        name : str
            Record name.
        positions : array_like (n_conf, n_atoms, 3), optional
            Angstrom; default: all conformers of ``mol``.
        energy, interaction_energy : array_like (n_conf,), optional
            Hartree; NaN / None where absent.
        forces : array_like (n_conf, n_atoms, 3), optional
            Hartree/Angstrom.
        qm_charges, kd_atom : array_like (n_conf, n_atoms), optional
            e and Hartree.
        kd_pair : array_like (n_conf, n_atoms, n_atoms), optional
            Hartree.
        extra_energies : mapping of str to array_like (n_conf,), optional
            Hartree, other levels of theory.
        conformer_ids : sequence of str, optional
            Default: the conformers' ``conformer_id`` property, else ``"0", "1", ...``.
        level, source : str
            Level of theory of the labels and provenance.
        smiles : str, optional
            Split key; default :func:`canonical_smiles` of ``mol``.
        complete : bool
            Value of the ``complete`` marker.
        **optional
            ``dihedral``, ``angles_deg``, ``scaling``, ``fragments``, ``subset``,
            ``nci_group`` (see the class attributes).

        Returns
        -------
        MoleculeRecord

        Raises
        ------
        MissingHydrogenError
            If an atom carries implicit hydrogens.
        MoleculeError
            If there are no positions or shapes disagree.
        """
        allowed = {"dihedral", "angles_deg", "scaling", "fragments", "subset", "nci_group"}
        unknown = set(optional) - allowed
        if unknown:
            raise ConfigError(f"unknown record fields {sorted(unknown)}; allowed: {sorted(allowed)}")
        topo = _topology(mol, name)
        if positions is None:
            confs = list(mol.GetConformers())
            if not confs:
                raise MoleculeError(f"{name}: molecule has no conformers and no positions were given")
            positions = np.stack([np.asarray(c.GetPositions(), dtype=np.float64) for c in confs])
            if conformer_ids is None and all(c.HasProp("conformer_id") for c in confs):
                conformer_ids = [c.GetProp("conformer_id") for c in confs]
        return cls(
            name=name,
            smiles=smiles if smiles is not None else topo["smiles"],
            total_charge=topo["total_charge"],
            species=topo["species"],
            formal_charges=topo["formal_charges"],
            bonds=topo["bonds"],
            bond_orders=topo["bond_orders"],
            positions=positions,
            energy=energy,
            forces=forces,
            qm_charges=qm_charges,
            kd_atom=kd_atom,
            kd_pair=kd_pair,
            interaction_energy=interaction_energy,
            extra_energies=dict(extra_energies or {}),
            conformer_ids=None if conformer_ids is None else list(conformer_ids),
            level=level,
            source=source,
            complete=complete,
            **optional,
        )


def _topology(mol, name: str) -> dict[str, Any]:
    """Species, formal charges, bonds, bond orders, SMILES and charge of an RDKit Mol."""
    n = mol.GetNumAtoms()
    if n == 0:
        raise MoleculeError(f"{name}: molecule has no atoms")
    for atom in mol.GetAtoms():
        if atom.GetNumImplicitHs() > 0:
            raise MissingHydrogenError(
                f"{name}: atom {atom.GetIdx()} ({atom.GetSymbol()}) has implicit hydrogens; "
                "add them explicitly (Chem.AddHs with coordinates)"
            )
    bonds, orders = [], []
    for bond in mol.GetBonds():
        i, j = sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
        order = float(bond.GetBondTypeAsDouble())
        if order not in _BOND_TYPES:
            raise MoleculeError(f"{name}: unsupported bond type {bond.GetBondType()} between atoms {i} and {j}")
        bonds.append((i, j))
        orders.append(order)
    return {
        "species": np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int8),
        "formal_charges": np.array([a.GetFormalCharge() for a in mol.GetAtoms()], dtype=np.int8),
        "bonds": np.array(bonds, dtype=np.int32).reshape(-1, 2),
        "bond_orders": np.array(orders, dtype=np.float32),
        "smiles": canonical_smiles(mol),
        "total_charge": int(sum(a.GetFormalCharge() for a in mol.GetAtoms())),
    }


# ============================================================================ writer
class ShardWriter:
    """Append conformers to an HDF5 shard, one at a time, flushing after each.

    Open as a context manager; the file is opened in append mode (created if
    missing), so an interrupted run can be resumed on the same path.

    Parameters
    ----------
    path : str or Path
        Shard file (``.h5``). Its folder must exist.

    Raises
    ------
    MoleculeFileError
        If the file exists but is not a readable HDF5 file, or its folder is missing.
    ConfigError
        If the file was written with another schema version.

    Examples
    --------
    >>> with ShardWriter("water.h5") as w:  # doctest: +SKIP
    ...     w.append_conformer("water", mol, positions, energy=-76.0, conformer_id="c0")
    ...     w.mark_complete("water")
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = None

    # -------------------------------------------------------------- file handling
    def open(self) -> ShardWriter:
        """Open the file (called by ``__enter__``)."""
        if self._file is not None:
            return self
        h5py = _require_h5py()
        if not self.path.parent.is_dir():
            raise MoleculeFileError(f"cannot write dataset shard {self.path}: folder {self.path.parent} does not exist")
        if self.path.exists() and not h5py.is_hdf5(self.path):
            raise MoleculeFileError(f"{self.path} is not an HDF5 file; refusing to overwrite it")
        try:
            f = h5py.File(self.path, "a", track_order=True)
        except OSError as exc:
            raise MoleculeFileError(f"cannot open dataset shard {self.path} for writing: {exc}") from exc
        try:
            if K.SCHEMA_VERSION not in f.attrs:
                if len(f.keys()):
                    raise ConfigError(
                        f"{self.path} has no {K.SCHEMA_VERSION!r} attribute: not a physff-openmm dataset shard"
                    )
                f.attrs[K.SCHEMA_VERSION] = K.CURRENT_SCHEMA_VERSION
            else:
                _check_schema(f, self.path)
        except BaseException:
            f.close()
            raise
        self._file = f
        return self

    def close(self) -> None:
        """Flush and close the file."""
        if self._file is not None:
            try:
                self._file.flush()
            finally:
                self._file.close()
                self._file = None

    def __enter__(self) -> ShardWriter:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def file(self):
        """The open :class:`h5py.File`."""
        if self._file is None:
            raise ConfigError(f"ShardWriter for {self.path} is not open; use it as a context manager")
        return self._file

    # -------------------------------------------------------------- queries
    def _existing(self, name: str):
        gname = safe_name(name)
        g = self.file.get(gname)
        if g is None or K.CONFORMER_IDS not in g:
            return None
        return g

    def names(self) -> list[str]:
        """Group names of the molecules in the file (with at least a header)."""
        return [k for k, g in self.file.items() if K.CONFORMER_IDS in g]

    def completed_names(self) -> set[str]:
        """Group names (see :func:`safe_name`) of the molecules marked complete."""
        return {k for k, g in self.file.items() if K.CONFORMER_IDS in g and bool(g.attrs.get(K.COMPLETE, False))}

    def is_complete(self, name: str) -> bool:
        """Whether molecule ``name`` is marked complete."""
        g = self._existing(name)
        return g is not None and bool(g.attrs.get(K.COMPLETE, False))

    def conformer_ids(self, name: str) -> list[str]:
        """Committed conformer ids of molecule ``name`` (empty if absent)."""
        g = self._existing(name)
        if g is None:
            return []
        return [_to_str(x) for x in g[K.CONFORMER_IDS][...]]

    def has_conformer(self, name: str, conformer_id: str) -> bool:
        """Whether conformer ``conformer_id`` of molecule ``name`` is already stored."""
        return str(conformer_id) in self.conformer_ids(name)

    def group_attrs(self, name: str) -> dict[str, Any] | None:
        """Attributes (``smiles``, ``level``, ...) of molecule ``name``, or None if absent."""
        g = self._existing(name)
        if g is None:
            return None
        return {k: _to_str(v) if isinstance(v, (bytes, str)) else v for k, v in g.attrs.items()}

    # -------------------------------------------------------------- writing
    def mark_complete(self, name: str, complete: bool = True) -> None:
        """Set the ``complete`` marker of molecule ``name`` and flush.

        Raises
        ------
        ConfigError
            If the molecule is not in the file.
        """
        g = self._existing(name)
        if g is None:
            raise ConfigError(f"cannot mark {name!r} complete: no such molecule in {self.path}")
        g.attrs[K.COMPLETE] = bool(complete)
        self.file.flush()

    def _group(self, name: str, meta, level: str | None, source: str | None):
        """Get or create the group of a molecule, checking that its topology agrees."""
        if isinstance(meta, MoleculeRecord):
            topo = {
                "species": meta.species,
                "formal_charges": meta.formal_charges,
                "bonds": meta.bonds,
                "bond_orders": meta.bond_orders,
                "smiles": meta.smiles,
                "total_charge": meta.total_charge,
            }
            level = meta.level if level is None else level
            source = meta.source if source is None else source
            extras = {
                "dihedral": meta.dihedral,
                "fragments": meta.fragments,
                "subset": meta.subset,
                "nci_group": meta.nci_group,
            }
        else:
            topo = _topology(meta, name)
            extras = {}
        level = "" if level is None else str(level)
        source = "" if source is None else str(source)
        gname = safe_name(name)
        f = self.file
        g = f.get(gname)
        if g is not None and K.CONFORMER_IDS not in g:
            logger.warning("%s: group %s was left half-created by an interrupted run; recreating it", self.path, gname)
            del f[gname]
            g = None
        if g is not None:
            species = g[K.SPECIES][...]
            if (
                _to_str(g.attrs.get(K.SMILES, "")) != topo["smiles"]
                or species.shape != topo["species"].shape
                or not np.array_equal(species, topo["species"])
            ):
                raise ConfigError(
                    f"{self.path}: molecule name {name!r} (group {gname!r}) already holds "
                    f"{_to_str(g.attrs.get(K.SMILES, ''))!r}, not {topo['smiles']!r}"
                )
            stored_level = _to_str(g.attrs.get(K.LEVEL, ""))
            if stored_level != level:
                raise ConfigError(
                    f"{self.path}: molecule {name!r} is stored at level {stored_level!r}; cannot append level {level!r}"
                )
            return g
        g = f.create_group(gname)
        n = int(topo["species"].shape[0])
        g.create_dataset(K.SPECIES, data=np.asarray(topo["species"], dtype=np.int8))
        g.create_dataset(K.FORMAL_CHARGES, data=np.asarray(topo["formal_charges"], dtype=np.int8))
        g.create_dataset(K.BONDS, data=np.asarray(topo["bonds"], dtype=np.int32).reshape(-1, 2))
        g.create_dataset(K.BOND_ORDERS, data=np.asarray(topo["bond_orders"], dtype=np.float32))
        if extras.get("dihedral") is not None:
            g.create_dataset(K.DIHEDRAL, data=np.asarray(extras["dihedral"], dtype=np.int32))
        if extras.get("fragments") is not None:
            g.create_dataset(K.FRAGMENTS, data=np.asarray(extras["fragments"], dtype=np.int8))
        for key, tail in ((K.POSITIONS, (n, 3)), (K.ENERGY, ()), (K.INTERACTION_ENERGY, ())):
            _create_series(g, key, tail, 0)
        g.attrs[K.SMILES] = topo["smiles"]
        g.attrs[K.TOTAL_CHARGE] = int(topo["total_charge"])
        g.attrs[K.LEVEL] = level
        g.attrs[K.SOURCE] = source
        g.attrs[K.COMPLETE] = False
        if extras.get("subset"):
            g.attrs[K.SUBSET] = extras["subset"]
        if extras.get("nci_group"):
            g.attrs[K.NCI_GROUP] = extras["nci_group"]
        h5py = _require_h5py()
        # Created last: a group with conformer_ids has a complete header.
        g.create_dataset(K.CONFORMER_IDS, shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"), chunks=(64,))
        return g

    def append_conformer(
        self,
        name: str,
        molecule,
        positions,
        energy: float | None = None,
        *,
        conformer_id: str,
        forces=None,
        qm_charges=None,
        kd_atom=None,
        kd_pair=None,
        interaction_energy: float | None = None,
        extra_energies: Mapping[str, float] | None = None,
        angle_deg: float | None = None,
        scaling: float | None = None,
        level: str | None = None,
        source: str | None = None,
    ) -> int:
        """Append one conformer with its labels, then flush.

        Parameters
        ----------
        name : str
            Molecule name; the group is created on first use.
        molecule : rdkit.Chem.Mol or MoleculeRecord
            Topology and metadata (species, formal charges, bonds, SMILES,
            and for a record also level, source, dihedral, fragments, subset).
            Must agree with the group if it exists.
        positions : array_like (n_atoms, 3)
            Angstrom.
        conformer_id : str
            Unique within the molecule.
        energy, interaction_energy : float, optional
            Hartree (NaN when None).
        forces : array_like (n_atoms, 3), optional
            Hartree/Angstrom.
        qm_charges, kd_atom : array_like (n_atoms,), optional
            e and Hartree.
        kd_pair : array_like (n_atoms, n_atoms), optional
            Hartree.
        extra_energies : mapping of str to float, optional
            Hartree at other levels of theory.
        angle_deg : float, optional
            Torsion-drive angle, degree.
        scaling : float, optional
            Intermolecular distance relative to equilibrium.
        level, source : str, optional
            Level of theory and provenance (default: the record's, or "").

        Returns
        -------
        int
            Index of the new conformer in the group.

        Raises
        ------
        ConfigError
            If the conformer id is already stored, or the topology or level
            disagree with the stored molecule.
        MoleculeError
            If an array has the wrong shape.
        """
        g = self._group(name, molecule, level, source)
        n = int(g[K.SPECIES].shape[0])
        cid = str(conformer_id)
        ids = [_to_str(x) for x in g[K.CONFORMER_IDS][...]]
        if cid in ids:
            raise ConfigError(f"{self.path}: conformer {cid!r} of {name!r} is already stored")
        c = len(ids)
        # Validate everything before writing anything.
        rows: dict[str, tuple[np.ndarray | None, tuple[int, ...]]] = {
            K.POSITIONS: (_row(positions, (n, 3), f"{name}: positions", missing_ok=False), (n, 3)),
            K.ENERGY: (_row(energy, (), f"{name}: energy"), ()),
            K.INTERACTION_ENERGY: (_row(interaction_energy, (), f"{name}: interaction_energy"), ()),
            K.FORCES: (_row(forces, (n, 3), f"{name}: forces"), (n, 3)),
            K.QM_CHARGES: (_row(qm_charges, (n,), f"{name}: qm_charges"), (n,)),
            K.KD_ATOM: (_row(kd_atom, (n,), f"{name}: kd_atom"), (n,)),
            K.KD_PAIR: (_row(kd_pair, (n, n), f"{name}: kd_pair"), (n, n)),
            K.ANGLES_DEG: (_row(angle_deg, (), f"{name}: angle_deg"), ()),
            K.SCALING: (_row(scaling, (), f"{name}: scaling"), ()),
        }
        if not np.all(np.isfinite(rows[K.POSITIONS][0])):
            raise MoleculeError(f"{name}: positions of conformer {cid!r} are not finite")
        extra_rows = {
            str(k): _row(v, (), f"{name}: extra_energies[{k!r}]") for k, v in dict(extra_energies or {}).items()
        }

        for key, (value, tail) in rows.items():
            _write_row(g, key, tail, c, value)
        if extra_rows or K.EXTRA_ENERGIES in g:
            eg = g.require_group(K.EXTRA_ENERGIES)
            by_level = {_to_str(ds.attrs.get(K.LEVEL, dname)): dname for dname, ds in eg.items()}
            for lvl, value in extra_rows.items():
                dname = by_level.get(lvl)
                if dname is None and value is not None:
                    dname = safe_name(lvl)
                    if dname in eg:
                        raise ConfigError(f"{name}: extra energy levels collide on dataset name {dname!r}")
                    _create_series(eg, dname, (), c).attrs[K.LEVEL] = lvl
                    by_level[lvl] = dname
            for lvl, dname in by_level.items():
                _write_row(eg, dname, (), c, extra_rows.get(lvl))
        # Commit: the conformer exists once its id is written.
        ds = g[K.CONFORMER_IDS]
        ds.resize((c + 1,))
        ds[c] = cid
        self.file.flush()
        return c

    def write_record(self, record: MoleculeRecord, *, complete: bool | None = None) -> int:
        """Append every conformer of a record that is not stored yet.

        Parameters
        ----------
        record : MoleculeRecord
        complete : bool, optional
            Marker to set afterwards (default: ``record.complete``).

        Returns
        -------
        int
            Number of conformers appended.
        """
        existing = set(self.conformer_ids(record.name))
        added = 0
        for k, cid in enumerate(record.conformer_ids):
            if cid in existing:
                continue
            self.append_conformer(
                record.name,
                record,
                record.positions[k],
                conformer_id=cid,
                energy=record.energy[k],
                forces=None if record.forces is None else record.forces[k],
                qm_charges=None if record.qm_charges is None else record.qm_charges[k],
                kd_atom=None if record.kd_atom is None else record.kd_atom[k],
                kd_pair=None if record.kd_pair is None else record.kd_pair[k],
                interaction_energy=record.interaction_energy[k],
                extra_energies={lvl: v[k] for lvl, v in record.extra_energies.items()},
                angle_deg=None if record.angles_deg is None else record.angles_deg[k],
                scaling=None if record.scaling is None else record.scaling[k],
            )
            added += 1
        if record.n_conformers:
            self.mark_complete(record.name, record.complete if complete is None else complete)
        return added


def _row(value, shape, what: str, *, missing_ok: bool = True) -> np.ndarray | None:
    """One conformer's value as float64 of an exact shape; None (or all NaN) means missing."""
    if value is None:
        if not missing_ok:
            raise MoleculeError(f"{what} is required")
        return None
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise MoleculeError(f"{what} has shape {arr.shape}, expected {tuple(shape)}")
    if missing_ok and np.all(np.isnan(arr)):
        return None
    return arr


def _create_series(g, key: str, tail: tuple[int, ...], length: int):
    """Create a resizable per-conformer float64 dataset, NaN-filled to ``length`` rows."""
    chunk = (1, *tail) if tail else (256,)
    ds = g.create_dataset(
        key, shape=(length, *tail), maxshape=(None, *tail), dtype=np.float64, chunks=chunk, fillvalue=np.nan
    )
    return ds


def _write_row(g, key: str, tail: tuple[int, ...], c: int, value: np.ndarray | None) -> None:
    """Write row ``c`` of a per-conformer dataset (NaN if value is None), creating it lazily."""
    ds = g.get(key)
    if ds is None:
        if value is None:
            return
        ds = _create_series(g, key, tail, c)
    ds.resize((c + 1, *tail))
    ds[c] = _nan(tail) if value is None else value


def _to_str(x) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.ndarray) and x.shape == ():
        return _to_str(x.item())
    return str(x)


def _check_schema(f, path: Path) -> None:
    version = f.attrs.get(K.SCHEMA_VERSION)
    if version is None:
        raise ConfigError(f"{path} has no {K.SCHEMA_VERSION!r} attribute: not a physff-openmm dataset shard")
    if int(version) != K.CURRENT_SCHEMA_VERSION:
        raise ConfigError(
            f"{path} uses dataset schema version {int(version)}; this physff-openmm reads version "
            f"{K.CURRENT_SCHEMA_VERSION}"
        )


# ============================================================================ reading
def _shard_paths(paths) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(p.glob("*.h5"))
            if not found:
                raise MoleculeFileError(f"no dataset shards (*.h5) in folder {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise MoleculeFileError(f"dataset shard {p} does not exist")
    return out


def _read_group(g, gname: str) -> MoleculeRecord | None:
    c = int(g[K.CONFORMER_IDS].shape[0])
    if c == 0:
        return None

    def series(key, container=g):
        return container[key][:c] if key in container else None

    extra = {}
    if K.EXTRA_ENERGIES in g:
        for dname, ds in g[K.EXTRA_ENERGIES].items():
            extra[_to_str(ds.attrs.get(K.LEVEL, dname))] = ds[:c]
    return MoleculeRecord(
        name=gname,
        smiles=_to_str(g.attrs.get(K.SMILES, "")),
        total_charge=int(g.attrs.get(K.TOTAL_CHARGE, 0)),
        species=g[K.SPECIES][...],
        formal_charges=g[K.FORMAL_CHARGES][...],
        bonds=g[K.BONDS][...],
        bond_orders=g[K.BOND_ORDERS][...],
        positions=g[K.POSITIONS][:c],
        energy=series(K.ENERGY),
        forces=series(K.FORCES),
        qm_charges=series(K.QM_CHARGES),
        kd_atom=series(K.KD_ATOM),
        kd_pair=series(K.KD_PAIR),
        interaction_energy=series(K.INTERACTION_ENERGY),
        extra_energies=extra,
        conformer_ids=[_to_str(x) for x in g[K.CONFORMER_IDS][:c]],
        level=_to_str(g.attrs.get(K.LEVEL, "")),
        source=_to_str(g.attrs.get(K.SOURCE, "")),
        complete=bool(g.attrs.get(K.COMPLETE, False)),
        dihedral=g[K.DIHEDRAL][...] if K.DIHEDRAL in g else None,
        angles_deg=series(K.ANGLES_DEG),
        scaling=series(K.SCALING),
        fragments=g[K.FRAGMENTS][...] if K.FRAGMENTS in g else None,
        subset=_to_str(g.attrs.get(K.SUBSET, "")),
        nci_group=_to_str(g.attrs.get(K.NCI_GROUP, "")),
    )


def read_dataset(paths: str | Path | Iterable[str | Path]) -> list[MoleculeRecord]:
    """Read every molecule of one or more shards.

    Parameters
    ----------
    paths : str, Path or iterable of them
        A shard file, a folder (every ``*.h5`` in it, sorted by name) or a list
        of files and folders.

    Returns
    -------
    list of MoleculeRecord
        In file order, then group order. Molecules without any committed
        conformer are left out (with a logged warning if half-created).

    Raises
    ------
    MoleculeFileError
        If a path is missing, a folder has no shards, or a file is not HDF5.
    ConfigError
        If a file has another schema version or is not a dataset shard.
    """
    h5py = _require_h5py()
    records: list[MoleculeRecord] = []
    for path in _shard_paths(paths):
        _check_readable(path)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise MoleculeFileError(f"cannot read dataset shard {path}: {exc}") from exc
        with f:
            _check_schema(f, path)
            for gname, g in f.items():
                if not isinstance(g, h5py.Group):
                    continue
                if K.CONFORMER_IDS not in g:
                    logger.warning("%s: skipping half-created molecule group %s", path, gname)
                    continue
                try:
                    rec = _read_group(g, gname)
                except (KeyError, MoleculeError) as exc:
                    raise ConfigError(f"{path}: molecule group {gname!r} is malformed: {exc}") from exc
                if rec is not None:
                    records.append(rec)
    return records


def write_dataset(records: Iterable[MoleculeRecord], path: str | Path) -> Path:
    """Write records to a shard (appending conformers not stored yet).

    Parameters
    ----------
    records : iterable of MoleculeRecord
    path : str or Path
        Shard file; created if missing.

    Returns
    -------
    Path
    """
    with ShardWriter(path) as writer:
        for rec in records:
            writer.write_record(rec)
    return Path(path)


#: Per-conformer arrays that a packed shard stores as float32 (coordinates, forces and
#: per-atom labels; energies stay float64, where float32 would round a drug-like
#: molecule's total energy by about 0.004 kcal/mol).
PACKED_FLOAT32 = (K.POSITIONS, K.FORCES, K.QM_CHARGES, K.KD_ATOM, K.KD_PAIR)
#: A molecule's datasets that do not grow with its conformers (stored contiguous when packed).
_TOPOLOGY_KEYS = (K.SPECIES, K.FORMAL_CHARGES, K.BONDS, K.BOND_ORDERS, K.DIHEDRAL, K.FRAGMENTS)


def pack_shard(src: str | Path, dst: str | Path, attrs: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Write a compact copy of shard ``src`` to ``dst``: its complete molecules only, coordinates
    and forces as float32, every dataset gzip-compressed.

    The copy is an ordinary shard (:func:`read_dataset` reads it, :class:`ShardWriter` can
    append to it), small enough to commit: the recipe keeps its label shards so
    (``DefaultModelConfig.shard_dir``). It is written to a temporary file and renamed, so a
    ``dst`` that exists is always whole.

    Parameters
    ----------
    src, dst : str or Path
        Shard to read, file to write (replaced if it exists).
    attrs : mapping, optional
        File attributes to add (e.g. the labelling config the shard was made with).

    Returns
    -------
    dict
        ``molecules`` and ``conformers`` written, ``left_out`` (incomplete molecules).

    Raises
    ------
    MoleculeFileError, ConfigError
        As :func:`read_dataset` for ``src``; a ``dst`` folder that does not exist.
    """
    h5py = _require_h5py()
    src, dst = Path(src), Path(dst)
    _check_readable(src)
    if not dst.parent.is_dir():
        raise MoleculeFileError(f"cannot write packed shard {dst}: folder {dst.parent} does not exist")
    tmp = dst.with_name(dst.name + ".tmp")
    counts = {"molecules": 0, "conformers": 0, "left_out": 0}

    def copy(group_in, group_out) -> None:
        for key, value in group_in.attrs.items():
            group_out.attrs[key] = value
        for name, obj in group_in.items():
            if isinstance(obj, h5py.Group):
                copy(obj, group_out.create_group(name))
                continue
            data = obj[...]
            if name in PACKED_FLOAT32 and data.dtype == np.float64:
                data = data.astype(np.float32)
            kw = {}
            if data.ndim and data.size and name not in _TOPOLOGY_KEYS:  # per-conformer series: appendable
                kw = dict(compression="gzip", compression_opts=9, shuffle=True, chunks=True, maxshape=(None, *data.shape[1:]))
            ds = group_out.create_dataset(name, data=data, **kw)
            for key, value in obj.attrs.items():
                ds.attrs[key] = value

    try:
        # libver "latest": compact object headers and chunk indexes, 40 % smaller for shards of many small molecules
        with h5py.File(src, "r") as f_in, h5py.File(tmp, "w", track_order=True, libver="latest") as f_out:
            _check_schema(f_in, src)
            for key, value in f_in.attrs.items():
                f_out.attrs[key] = value
            for key, value in (attrs or {}).items():
                f_out.attrs[key] = value
            for gname, g in f_in.items():
                if not isinstance(g, h5py.Group) or K.CONFORMER_IDS not in g:
                    continue
                if not bool(g.attrs.get(K.COMPLETE, False)):
                    counts["left_out"] += 1
                    continue
                copy(g, f_out.create_group(gname))
                counts["molecules"] += 1
                counts["conformers"] += int(g[K.CONFORMER_IDS].shape[0])
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)  # an interrupted pack leaves nothing beside the shards
    return counts


def _check_readable(path: Path) -> None:
    h5py = _require_h5py()
    if not path.is_file():
        raise MoleculeFileError(f"dataset shard {path} does not exist")
    if not h5py.is_hdf5(path):
        raise MoleculeFileError(f"{path} is not an HDF5 file")


# ============================================================================ splitting
def _unit_hash(smiles: str, seed: int) -> float:
    """Deterministic number in [0, 1) from a SMILES and a seed (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(f"{int(seed)}\x00{smiles}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_by_molecule(
    records: Sequence[MoleculeRecord],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[list[MoleculeRecord], list[MoleculeRecord], list[MoleculeRecord]]:
    """Split records into train, validation and test sets by molecule.

    Every record goes to the split chosen by a hash of its SMILES and the seed,
    so all records (and conformers) of a molecule land in the same split, and a
    molecule keeps its split as the data grows. Split sizes follow ``fractions``
    in expectation, not exactly.

    Parameters
    ----------
    records : sequence of MoleculeRecord
    fractions : (float, float, float)
        Train, validation and test fractions, non-negative, summing to 1.
    seed : int
        Changes the assignment.

    Returns
    -------
    (list, list, list) of MoleculeRecord
        Train, validation, test; input order kept within each.

    Raises
    ------
    ConfigError
        If ``fractions`` is not three non-negative numbers summing to 1.
    """
    fr = [float(x) for x in fractions]
    if len(fr) != 3 or any(not math.isfinite(x) or x < 0 for x in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ConfigError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    bounds = (fr[0], fr[0] + fr[1])
    out: tuple[list, list, list] = ([], [], [])
    for rec in records:
        u = _unit_hash(rec.smiles, seed)
        out[0 if u < bounds[0] else 1 if u < bounds[1] else 2].append(rec)
    return out
