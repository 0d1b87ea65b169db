"""Molecule input and validation.

Every molecule that enters physff-openmm goes through :func:`load_molecule`,
which accepts an RDKit molecule, a SMILES string or a structure file
(SDF/MOL, PDB, XYZ) and returns a sanitized :class:`rdkit.Chem.Mol` that

* has every hydrogen as an explicit atom,
* contains only the elements in :data:`SUPPORTED_ELEMENTS`,
* is closed-shell (no radicals),
* keeps the atom order of the input (never canonicalized), and
* carries the file's coordinates, in Angstrom, as its conformer.

A molecule made of several disconnected fragments (``"A.B"`` SMILES, a
multi-record SDF, a multi-fragment XYZ or PDB) is one *complex*;
:func:`fragment_atom_indices` and :func:`fragment_charges` describe its parts.

Units: coordinates are Angstrom everywhere in this module; charges are integer
multiples of the elementary charge.
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDetermineBonds, rdDistGeom

from .errors import (
    ChargeError,
    MissingHydrogenError,
    MoleculeError,
    MoleculeFileError,
    MoleculeParseError,
    RadicalError,
    UnsupportedElementError,
)

__all__ = [
    "SUPPORTED_ELEMENTS",
    "load_molecule",
    "read_records",
    "validate_molecule",
    "fragment_atom_indices",
    "fragment_charges",
    "positions_angstrom",
    "ensure_conformer",
    "closest_pair",
    "combine_molecules",
    "element_graph",
    "random_rotation",
]

#: Elements the model has parameters for.
SUPPORTED_ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "F", "S", "Cl", "Br", "P")

#: File suffixes :func:`load_molecule` understands (compared case-insensitively).
_SUFFIXES: tuple[str, ...] = (".sdf", ".mol", ".pdb", ".xyz")

#: Smallest distance, in Angstrom, between atoms of different fragments placed
#: by :func:`ensure_conformer` (the brief asks for at least 3 A).
_FRAGMENT_GAP_ANGSTROM: float = 4.0

#: Two atoms closer than this (Angstrom) are not a physical geometry (the shortest bond, H-H, is 0.74 A).
MIN_ATOM_DISTANCE_ANGSTROM = 0.5
#: Records of one SDF file that are the same molecule and put atoms closer than this (Angstrom) to
#: each other's are conformers written one after another, not a complex (contacts between
#: molecules are longer than 1.5 A).
CONFORMER_OVERLAP_ANGSTROM = 1.0

#: ``charge=N`` (or ``charge: N``, ``charge=-1.0``) in an XYZ comment line.
_CHARGE_TOKEN = re.compile(r"(?<![A-Za-z0-9_])charge\s*[=:]\s*([+-]?\d+)(?:\.0*)?(?![\d.])", re.IGNORECASE)
#: Any ``charge=`` or ``charge:`` key, to refuse one whose value is not a whole number.
_CHARGE_KEY = re.compile(r"(?<![A-Za-z0-9_])charge\s*[=:]\s*(\S*)", re.IGNORECASE)
_TIMESTAMP = re.compile(r"^\[\d{2}:\d{2}:\d{2}\]\s?")


# ---------------------------------------------------------------------------
# RDKit logging
# ---------------------------------------------------------------------------


class _Log:
    """Text RDKit wrote to its error log inside :func:`_quiet_rdkit`."""

    def __init__(self) -> None:
        self.raw = ""

    @property
    def lines(self) -> list[str]:
        """Cleaned message lines: no time stamps, stack traces or filler."""
        out: list[str] = []
        for line in self.raw.splitlines():
            line = _TIMESTAMP.sub("", line).rstrip()
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("Stacktrace:"):
                break
            if stripped in ("****", "----------") or "moving to the beginning of the next molecule" in stripped:
                continue
            if stripped.startswith("ERROR: "):
                line = stripped[len("ERROR: ") :]
            out.append(line)
        return out

    @property
    def text(self) -> str:
        """The cleaned messages on one line, ``"; "``-separated."""
        return "; ".join(line.strip() for line in self.lines)


@contextlib.contextmanager
def _quiet_rdkit() -> Iterator[_Log]:
    """Keep RDKit from writing to stderr and capture its error messages.

    Yields a :class:`_Log` whose ``raw`` text is filled in when the block ends
    (also when it raises). Older RDKit without ``rdBase.CaptureErrorLog``
    only silences the log, leaving the text empty.
    """
    log = _Log()
    capture_cls = getattr(rdBase, "CaptureErrorLog", None)
    with rdBase.BlockLogs():
        if capture_cls is None:
            yield log
        else:
            with capture_cls() as capture:
                try:
                    yield log
                finally:
                    log.raw = str(capture.messages or "")


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _atom_label(atom: Chem.Atom) -> str:
    """``atom <index> (<symbol>)`` with a 0-based index."""
    symbol = atom.GetSymbol() if atom.GetAtomicNum() > 0 else "*"
    return f"atom {atom.GetIdx()} ({symbol})"


def _check_charge_arg(charge: object) -> int | None:
    """Return ``charge`` as ``int`` (or ``None``); ``TypeError`` if it is not an integer."""
    if charge is None:
        return None
    if isinstance(charge, bool) or not isinstance(charge, numbers.Integral):
        raise TypeError(f"charge must be an integer number of elementary charges or None, got {charge!r}")
    return int(charge)


def _reraise_with_context(exc: MoleculeError, context: str) -> MoleculeError:
    """A copy of ``exc`` (same class) whose message starts with ``context``."""
    return type(exc)(f"{context}: {exc}")


def _check_elements(mol: Chem.Mol) -> None:
    """Raise :class:`UnsupportedElementError` for the first unsupported or dummy atom."""
    supported = ", ".join(SUPPORTED_ELEMENTS)
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() == 0:
            raise UnsupportedElementError(
                f"{_atom_label(atom)} is a dummy atom (atomic number 0); only real atoms of the "
                f"supported elements are allowed: {supported}"
            )
        if atom.GetSymbol() not in SUPPORTED_ELEMENTS:
            raise UnsupportedElementError(
                f"{_atom_label(atom)}: element {atom.GetSymbol()} is not supported; "
                f"supported elements are {supported}"
            )


def _sanitize(mol: Chem.Mol) -> Chem.Mol:
    """Sanitized copy of ``mol``; :class:`MoleculeParseError` with RDKit's reason on failure."""
    out = Chem.Mol(mol)
    with _quiet_rdkit() as log:
        try:
            Chem.SanitizeMol(out)
            failure = None
        except (ValueError, RuntimeError) as exc:  # MolSanitizeException is a ValueError
            failure = exc
    if failure is None:
        return out
    reason = str(failure.args[0] if failure.args else failure).strip() or log.text or type(failure).__name__
    where = ""
    cause = getattr(failure, "cause", None)
    get_idx = getattr(cause, "GetAtomIdx", None)
    if callable(get_idx):
        try:
            idx = int(get_idx())
            where = f"{_atom_label(out.GetAtomWithIdx(idx))}: "
        except Exception:  # noqa: BLE001 - best effort only
            where = ""
    raise MoleculeParseError(f"{where}RDKit could not sanitize the molecule: {reason}")


def has_3d_conformer(mol: Chem.Mol) -> bool:
    """Whether ``mol`` has a 3D conformer (a SMILES has none; an SDF with all z = 0 is 2D)."""
    return any(conf.Is3D() for conf in mol.GetConformers())


def _element_numbers() -> dict[str, int]:
    """Map of lower-case element symbol -> atomic number, from RDKit's periodic table."""
    table = Chem.GetPeriodicTable()
    out: dict[str, int] = {}
    for z in range(1, 119):
        try:
            symbol = table.GetElementSymbol(z)
        except Exception:  # noqa: BLE001 - table shorter than expected
            break
        out[symbol.lower()] = z
    out["d"] = 1  # deuterium / tritium written as D / T in some XYZ files
    out["t"] = 1
    return out


_ELEMENT_NUMBERS: dict[str, int] = _element_numbers()


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def validate_molecule(mol: Chem.Mol, *, charge: int | None = None) -> Chem.Mol:
    """Check that a molecule can be given to the model and return a sanitized copy.

    Checks run in this order; the first failing one raises, naming the first
    offending atom as ``atom <index> (<symbol>)`` with a 0-based index.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        The molecule. It is not modified. Coordinates (conformers, Angstrom)
        and properties are kept in the copy.
    charge : int, optional
        Expected total charge in elementary charges. When given it must equal
        the sum of the atoms' formal charges.

    Returns
    -------
    rdkit.Chem.Mol
        A sanitized copy of ``mol`` with the same atom order.

    Raises
    ------
    MoleculeParseError
        The molecule has no atoms, or RDKit cannot sanitize it (for example a
        pentavalent carbon); the message gives RDKit's reason.
    UnsupportedElementError
        An element outside :data:`SUPPORTED_ELEMENTS`, or a dummy atom.
    RadicalError
        An atom has unpaired electrons.
    MissingHydrogenError
        An atom carries hydrogens that are not explicit atoms (implicit
        hydrogens, or an explicit hydrogen count such as ``[NH4+]`` before
        ``Chem.AddHs``).
    ChargeError
        ``charge`` differs from the sum of the formal charges.
    TypeError
        ``mol`` is not an RDKit molecule or ``charge`` is not an integer.
    """
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"expected an rdkit.Chem.Mol, got {type(mol).__name__}")
    charge = _check_charge_arg(charge)
    if mol.GetNumAtoms() == 0:
        raise MoleculeParseError("the molecule has no atoms")
    _check_elements(mol)
    out = _sanitize(mol)
    for atom in out.GetAtoms():
        n_rad = atom.GetNumRadicalElectrons()
        if n_rad > 0:
            raise RadicalError(
                f"{_atom_label(atom)} has {n_rad} unpaired electron(s); only closed-shell molecules "
                "are supported (check the formal charges and hydrogens; for a file, the total charge "
                "may be wrong)"
            )
    for atom in out.GetAtoms():
        n_h = atom.GetTotalNumHs()  # implicit + explicit-count hydrogens; H atoms bonded are not counted
        if n_h > 0:
            raise MissingHydrogenError(
                f"{_atom_label(atom)} has {n_h} implicit hydrogen(s); every hydrogen must be an "
                "explicit atom. For an RDKit molecule call Chem.AddHs(mol) (addCoords=True if it has "
                "coordinates); for a structure file, add the hydrogens to the file"
            )
    if charge is not None:
        total = sum(atom.GetFormalCharge() for atom in out.GetAtoms())
        if total != charge:
            raise ChargeError(
                f"the formal charges add up to {total:+d} but a total charge of {charge:+d} was given"
            )
    for conf in out.GetConformers():
        check_atom_distances(out, np.asarray(conf.GetPositions(), dtype=np.float64))
    return out


def closest_pair(x: np.ndarray, y: np.ndarray | None = None) -> tuple[float, int, int]:
    """The shortest distance between two points of ``x`` (or from ``x`` to ``y``) and their indices (blocks of 256 rows)."""
    same = y is None
    y = x if same else y
    best = (math.inf, -1, -1)
    for start in range(0, len(x), 256):
        block = x[start:start + 256]
        d = np.linalg.norm(block[:, None, :] - y[None, :, :], axis=-1)
        if same:  # each pair once, no atom with itself
            d[np.arange(start, start + len(block))[:, None] >= np.arange(len(y))[None, :]] = np.inf
        k = np.unravel_index(int(np.argmin(d)), d.shape)
        if d[k] < best[0]:
            best = (float(d[k]), int(start + k[0]), int(k[1]))
    return best


def check_atom_distances(mol: Chem.Mol, positions: np.ndarray, *, limit: float = MIN_ATOM_DISTANCE_ANGSTROM) -> None:
    """Refuse coordinates that put two atoms closer than ``limit`` Angstrom (or that are not finite).

    Raises
    ------
    MoleculeError
        Naming the pair (0-based indices) and its distance.
    """
    x = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(x).all():
        a = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise MoleculeError(f"{_atom_label(mol.GetAtomWithIdx(a))} has non-finite coordinates")
    if len(x) < 2:
        return
    d, i, j = closest_pair(x)
    if d < limit:
        raise MoleculeError(
            f"{_atom_label(mol.GetAtomWithIdx(i))} and {_atom_label(mol.GetAtomWithIdx(j))} are {d:.2f} A apart, "
            f"closer than {limit:g} A: not a physical geometry (two atoms, molecules or conformers on top of each other?)"
        )


# ---------------------------------------------------------------------------
# Fragments, coordinates, complexes
# ---------------------------------------------------------------------------


def fragment_atom_indices(mol: Chem.Mol) -> list[tuple[int, ...]]:
    """Atom indices of each connected fragment.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        The molecule or complex.

    Returns
    -------
    list of tuple of int
        One tuple per fragment, as ``Chem.GetMolFrags(mol, asMols=False)``
        gives them: fragments ordered by their lowest atom index, indices
        ascending inside each fragment.
    """
    return [tuple(int(i) for i in frag) for frag in Chem.GetMolFrags(mol, asMols=False)]


def fragment_charges(mol: Chem.Mol) -> list[int]:
    """Total formal charge of each fragment, in elementary charges.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        The molecule or complex.

    Returns
    -------
    list of int
        Sum of formal charges per fragment, in the order of
        :func:`fragment_atom_indices`.
    """
    return [
        int(sum(mol.GetAtomWithIdx(i).GetFormalCharge() for i in frag)) for frag in fragment_atom_indices(mol)
    ]


def positions_angstrom(mol: Chem.Mol, conf_id: int = -1) -> np.ndarray:
    """Atom coordinates of one conformer.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        A molecule with at least one conformer.
    conf_id : int, default -1
        RDKit conformer id; ``-1`` is the first (default) conformer.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_atoms, 3)``, dtype ``float64``, in Angstrom, in atom order.

    Raises
    ------
    MoleculeError
        The molecule has no conformer, or none with id ``conf_id``.
    """
    if mol.GetNumConformers() == 0:
        raise MoleculeError(
            "the molecule has no conformer (no coordinates); call ensure_conformer(mol) or load it "
            "from a structure file"
        )
    try:
        conf = mol.GetConformer(int(conf_id))
    except (ValueError, RuntimeError) as exc:
        ids = [c.GetId() for c in mol.GetConformers()]
        raise MoleculeError(f"the molecule has no conformer with id {conf_id} (ids: {ids})") from exc
    pos = np.array(conf.GetPositions(), dtype=np.float64)
    return pos.reshape(mol.GetNumAtoms(), 3)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (from a random unit quaternion), for placing molecules."""
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def element_graph(numbers: Iterable[int], bonds: Iterable[tuple[int, int]]) -> Chem.Mol:
    """An RDKit Mol with the atoms' elements and every bond single (no charges, no aromaticity).

    Two such graphs are isomorphic exactly when their canonical SMILES agree; used to match
    molecules to residues and templates to coordinates by connectivity alone.
    """
    rw = Chem.RWMol()
    for z in numbers:
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    for i, j in bonds:
        rw.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    mol = rw.GetMol()
    mol.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(mol)
    return mol


def combine_molecules(mols: Iterable[Chem.Mol]) -> Chem.Mol:
    """Join molecules into one multi-fragment molecule (a complex).

    Parameters
    ----------
    mols : iterable of rdkit.Chem.Mol
        The parts, in order. Each must pass :func:`validate_molecule`.

    Returns
    -------
    rdkit.Chem.Mol
        A validated molecule whose atoms are the concatenation of the inputs'
        atoms, in order. When every input has a conformer, the result has one
        conformer (id 0) made of each input's default conformer, in Angstrom;
        it is 3D when all of them are. Otherwise it has no conformer.

    Raises
    ------
    MoleculeParseError
        ``mols`` is empty.
    MoleculeError
        A part, or the result, fails :func:`validate_molecule`.
    TypeError
        An item is not an RDKit molecule.
    """
    parts = list(mols)
    if not parts:
        raise MoleculeParseError("combine_molecules needs at least one molecule")
    for k, part in enumerate(parts):
        if not isinstance(part, Chem.Mol):
            raise TypeError(f"item {k} is a {type(part).__name__}, not an rdkit.Chem.Mol")
    combined = Chem.Mol(parts[0])
    for part in parts[1:]:
        combined = Chem.CombineMols(combined, part)
    combined = Chem.Mol(combined)
    combined.RemoveAllConformers()
    if all(part.GetNumConformers() > 0 for part in parts):
        conf = Chem.Conformer(combined.GetNumAtoms())
        offset = 0
        for part in parts:
            src = part.GetConformer()
            for i in range(part.GetNumAtoms()):
                conf.SetAtomPosition(offset + i, src.GetAtomPosition(i))
            offset += part.GetNumAtoms()
        conf.Set3D(all(part.GetConformer().Is3D() for part in parts))
        conf.SetId(0)
        combined.AddConformer(conf, assignId=False)
    return validate_molecule(combined)


def ensure_conformer(mol: Chem.Mol, *, seed: int = 0xF00D) -> Chem.Mol:
    """Make sure a molecule has 3D coordinates.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        The molecule, with explicit hydrogens.
    seed : int, default 0xF00D
        Random seed of the ETKDG embedding; the same seed gives the same
        coordinates.

    Returns
    -------
    rdkit.Chem.Mol
        ``mol`` itself when it already has a 3D conformer. Otherwise a copy with
        one new 3D conformer (id 0, Angstrom): each fragment is embedded with
        ETKDGv3, relaxed with MMFF94 when MMFF has parameters for it, and the
        fragments are laid out side by side along x so that atoms of different
        fragments are at least 4 Angstrom apart. Other (2D) conformers are
        dropped from the copy, with a warning: a drawing's coordinates are not
        a geometry, and what follows is computed on the generated one.

    Raises
    ------
    MoleculeError
        RDKit could not embed a fragment.
    """
    if has_3d_conformer(mol):
        return mol
    if mol.GetNumConformers():
        warnings.warn(
            "the input has 2D coordinates only (a drawing: every z is 0); a 3D geometry was generated from its "
            "structure (RDKit ETKDG, then MMFF94), and energies and runs are of that geometry",
            UserWarning,
            stacklevel=2,
        )
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    n_atoms = out.GetNumAtoms()
    if n_atoms == 0:
        raise MoleculeParseError("the molecule has no atoms")
    mapping: list[tuple[int, ...]] = []
    with _quiet_rdkit():
        frags = Chem.GetMolFrags(out, asMols=True, sanitizeFrags=False, fragsMolAtomMapping=mapping)
    positions = np.zeros((n_atoms, 3), dtype=np.float64)
    cursor = 0.0
    for k, (frag, atom_ids) in enumerate(zip(frags, mapping)):
        xyz = _embed_fragment(frag, seed, k, atom_ids)
        xyz = xyz - xyz.mean(axis=0)
        if k > 0:
            xyz[:, 0] += cursor - xyz[:, 0].min()
        cursor = float(xyz[:, 0].max()) + _FRAGMENT_GAP_ANGSTROM
        positions[list(atom_ids)] = xyz
    conf = Chem.Conformer(n_atoms)
    for i, (x, y, z) in enumerate(positions):
        conf.SetAtomPosition(i, (float(x), float(y), float(z)))
    conf.Set3D(True)
    conf.SetId(0)
    out.AddConformer(conf, assignId=False)
    return out


def _embed_fragment(frag: Chem.Mol, seed: int, index: int, atom_ids: tuple[int, ...]) -> np.ndarray:
    """ETKDGv3 (+ MMFF94) coordinates of one connected fragment, shape (n, 3), Angstrom."""
    frag = Chem.Mol(frag)
    if frag.GetNumAtoms() == 1:
        return np.zeros((1, 3), dtype=np.float64)
    with _quiet_rdkit() as log:
        try:
            frag.UpdatePropertyCache(strict=False)
            Chem.GetSymmSSSR(frag)
            params = rdDistGeom.ETKDGv3()
            params.randomSeed = int(seed) & 0x7FFFFFFF
            conf_id = rdDistGeom.EmbedMolecule(frag, params)
            if conf_id < 0:
                params.useRandomCoords = True
                conf_id = rdDistGeom.EmbedMolecule(frag, params)
            error = None
        except (ValueError, RuntimeError) as exc:
            conf_id, error = -1, exc
    if conf_id < 0:
        reason = f": {error}" if error is not None else (f": {log.text}" if log.text else "")
        raise MoleculeError(
            f"RDKit could not embed fragment {index} (atoms {atom_ids[0]}..{atom_ids[-1]}) in 3D{reason}"
        )
    try:
        from rdkit.Chem import rdForceFieldHelpers

        with _quiet_rdkit():
            if rdForceFieldHelpers.MMFFHasAllMoleculeParams(frag):
                rdForceFieldHelpers.MMFFOptimizeMolecule(frag, confId=conf_id, maxIters=2000)
    except (ImportError, ValueError, RuntimeError):
        pass  # MMFF relaxation is optional; ETKDG geometry is good enough
    return np.array(frag.GetConformer(conf_id).GetPositions(), dtype=np.float64)


# ---------------------------------------------------------------------------
# SMILES
# ---------------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    if text.lower().endswith(_SUFFIXES):
        return True
    try:
        return os.path.exists(text)
    except (OSError, ValueError):
        return False


def _from_smiles(smiles: str, charge: int | None) -> Chem.Mol:
    text = smiles.strip()
    params = Chem.SmilesParserParams()
    params.removeHs = False  # keep written [H] atoms where they are: input atom order
    params.sanitize = False  # sanitize ourselves to report RDKit's reason
    with _quiet_rdkit() as log:
        try:
            mol = Chem.MolFromSmiles(text, params)
        except (ValueError, RuntimeError):
            mol = None
    if mol is None:
        lines = log.lines
        detail = ("\n  " + "\n  ".join(lines)) if lines else " RDKit reported a syntax error"
        hint = ""
        if os.sep in text or re.search(r"\.[A-Za-z]{2,4}$", text):
            hint = "\n(it was read as SMILES because no file of that name exists)"
        raise MoleculeParseError(f"could not parse SMILES {smiles!r}:{detail}{hint}")
    if mol.GetNumAtoms() == 0:
        raise MoleculeParseError(f"SMILES {smiles!r} contains no atoms")
    try:
        _check_elements(mol)
        mol = _sanitize(mol)
        with _quiet_rdkit():
            mol = Chem.AddHs(mol)
        return validate_molecule(mol, charge=charge)
    except MoleculeError as exc:
        raise _reraise_with_context(exc, f"SMILES {smiles!r}") from None


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """Whole file as text; :class:`MoleculeFileError` if missing, a directory, unreadable or empty."""
    if not path.exists():
        raise MoleculeFileError(f"{path}: no such file")
    if path.is_dir():
        raise MoleculeFileError(f"{path}: is a directory, not a molecule file")
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise MoleculeFileError(
            f"{path}: unknown file suffix {path.suffix!r}; supported: {', '.join(_SUFFIXES)}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MoleculeFileError(f"{path}: cannot read file: {exc.strerror or exc}") from exc
    text = data.decode("utf-8", errors="replace")
    if not text.strip():
        raise MoleculeFileError(f"{path}: file is empty")
    return text


def _as_path(path: object) -> Path:
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise TypeError(f"expected a file path (str or os.PathLike), got {type(path).__name__}")


def _sdf_records(path: Path, text: str) -> list[tuple[Chem.Mol, int]]:
    """Unsanitized records of an SDF/MOL file with the line each starts on (1-based)."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    starts = [1]
    for i, line in enumerate(lines):
        if line.strip() == "$$$$" and i + 1 < len(lines):
            starts.append(i + 2)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    supplier = Chem.ForwardSDMolSupplier(io.BytesIO(data), sanitize=False, removeHs=False, strictParsing=True)
    records: list[tuple[Chem.Mol, int]] = []
    iterator = iter(supplier)
    k = 0
    while True:
        error: Exception | None = None
        with _quiet_rdkit() as log:
            try:
                mol = next(iterator)
            except StopIteration:
                break
            except (ValueError, RuntimeError) as exc:
                mol, error = None, exc
        start = starts[k] if k < len(starts) else starts[-1]
        if mol is None:
            reason = log.text or (str(error) if error else "") or "RDKit could not parse it"
            raise MoleculeParseError(
                f"{path}: record {k + 1} (starting at line {start}) is not a valid MDL molfile: {reason}"
            )
        records.append((mol, start))
        k += 1
    if not records:
        raise MoleculeParseError(f"{path}: no molecule records found")
    return records


def _read_sdf(path: Path, text: str, charge: int | None) -> list[Chem.Mol]:
    out: list[Chem.Mol] = []
    records = _sdf_records(path, text)
    for k, (mol, start) in enumerate(records):
        context = f"{path}" if len(records) == 1 else f"{path}: record {k + 1} (starting at line {start})"
        try:
            out.append(validate_molecule(mol, charge=charge))
        except MoleculeError as exc:
            raise _reraise_with_context(exc, context) from None
    return out


#: Bond orders are perceived (from coordinates, or for CONECT records without them) only up to this
#: many atoms: RDKit's search for them can run for many minutes on a protein.
PERCEIVE_MAX_ATOMS = 200
_CHARGE_HINT = "give the total charge (--charge N on the command line, charge=N in Python) or write 'charge=N' in the XYZ comment line"


def _charged_carbons(mol: Chem.Mol) -> list[str]:
    """Carbon atoms with a formal charge outside a triple bond (an isocyanide's C keeps one), as labels."""
    return [
        f"{_atom_label(a)} {a.GetFormalCharge():+d}"
        for a in mol.GetAtoms()
        if a.GetAtomicNum() == 6 and a.GetFormalCharge()
        and not any(b.GetBondType() == Chem.BondType.TRIPLE for b in a.GetBonds())
    ]


def _perceive_bonds(mol: Chem.Mol, charge: int, context: str, charge_source: str, *, connectivity: bool = True) -> None:
    """Bonds (unless ``connectivity`` is False: the bonds present are kept) and bond orders from coordinates,
    in place; raises with a charge hint on failure, or where the only bond orders found charge a carbon."""
    _check_elements_in(mol, context)
    if mol.GetNumAtoms() > PERCEIVE_MAX_ATOMS:
        raise MoleculeParseError(
            f"{context}: {mol.GetNumAtoms()} atoms; bond orders are perceived from coordinates only up to "
            f"{PERCEIVE_MAX_ATOMS} atoms. Give a file with its bond orders (an SDF, or a PDB with CONECT records "
            "that repeat double bonds); for a protein beside a ligand use 'md COMPLEX.pdb --ligand LIGAND.sdf'"
        )
    n_electrons = sum(atom.GetAtomicNum() for atom in mol.GetAtoms()) - charge
    if n_electrons % 2:
        raise RadicalError(
            f"{context}: {n_electrons} electrons for a total charge of {charge:+d} ({charge_source}) is an "
            f"odd number, i.e. a radical; the charge may be wrong ({_CHARGE_HINT})"
        )
    with _quiet_rdkit() as log:
        try:
            if connectivity:
                rdDetermineBonds.DetermineConnectivity(mol, useHueckel=False, charge=charge)
            rdDetermineBonds.DetermineBondOrders(mol, charge=charge, allowChargedFragments=True)
            failure = None
        except (ValueError, RuntimeError) as exc:
            failure = exc
    if failure is None:
        carbons = _charged_carbons(mol)
        if carbons:
            raise ChargeError(
                f"{context}: for a total charge of {charge:+d} ({charge_source}) the only bond orders found put "
                f"formal charges on carbon ({', '.join(carbons[:4])}{', ...' if len(carbons) > 4 else ''}); the "
                f"charge is probably wrong: {_CHARGE_HINT}"
            )
        return
    reason = str(failure).strip().splitlines()[0] if str(failure).strip() else log.text
    has_h = any(atom.GetAtomicNum() == 1 for atom in mol.GetAtoms())
    has_c = any(atom.GetAtomicNum() == 6 for atom in mol.GetAtoms())
    if has_c and not has_h:
        raise MissingHydrogenError(
            f"{context}: the structure has no hydrogen atoms and its bonds could not be perceived "
            f"({reason}); add all hydrogens to the file"
        )
    raise ChargeError(
        f"{context}: could not assign bond orders for a total charge of {charge:+d} ({charge_source}): "
        f"{reason}. The charge may be wrong: {_CHARGE_HINT}; also check the geometry for distorted or "
        "overlapping atoms"
    )


def _check_elements_in(mol: Chem.Mol, context: str) -> None:
    try:
        _check_elements(mol)
    except UnsupportedElementError as exc:
        raise _reraise_with_context(exc, context) from None


def _read_pdb(path: Path, text: str, charge: int | None) -> Chem.Mol:
    has_conect = False
    n_atoms = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        record = line[:6].strip().upper()
        if record in ("ATOM", "HETATM"):
            n_atoms += 1
            try:
                for a, b in ((30, 38), (38, 46), (46, 54)):
                    value = float(line[a:b])
                    if not math.isfinite(value):
                        raise ValueError(value)
            except ValueError:
                raise MoleculeParseError(
                    f"{path}, line {line_no}: cannot read the x, y, z coordinates (columns 31-54) "
                    f"of {line.rstrip()!r}"
                ) from None
        elif record == "CONECT":
            has_conect = True
    if n_atoms == 0:
        raise MoleculeParseError(f"{path}: no ATOM or HETATM records found; is this a PDB file?")
    with _quiet_rdkit() as log:
        try:
            mol = Chem.MolFromPDBBlock(text, removeHs=False, sanitize=False, proximityBonding=False)
        except (ValueError, RuntimeError):
            mol = None
    if mol is None or mol.GetNumAtoms() == 0:
        reason = f": {log.text}" if log.text else " (check element symbols in columns 77-78)"
        raise MoleculeParseError(f"{path}: RDKit could not read the PDB file{reason}")
    q = 0 if charge is None else charge
    source = "the charge argument" if charge is not None else "default; no charge argument given"
    if not has_conect and mol.GetNumAtoms() > 1:
        _perceive_bonds(mol, q, f"{path} (no CONECT records, bonds perceived from coordinates)", source)
    try:
        return validate_molecule(mol, charge=charge)
    except MissingHydrogenError as exc:
        # CONECT records without bond orders (OpenMM's PDBFile and PDBFixer write them so) read as hydrogens
        # missing; where every bond is single, the orders are perceived, and if that fails the error stands.
        if not has_conect or any(b.GetBondType() != Chem.BondType.SINGLE for b in mol.GetBonds()):
            raise _reraise_with_context(exc, str(path)) from None
        if charge is None:
            q, source = sum(a.GetFormalCharge() for a in mol.GetAtoms()), "the formal charges in the file"
        probe = Chem.Mol(mol)
        try:
            _perceive_bonds(probe, q, f"{path} (CONECT records without bond orders)", source, connectivity=False)
            return validate_molecule(probe, charge=charge)
        except MoleculeError:
            raise _reraise_with_context(exc, str(path)) from None
    except MoleculeError as exc:
        raise _reraise_with_context(exc, str(path)) from None


def _xyz_frames(path: Path, text: str) -> list[tuple[int, str, list[int], np.ndarray]]:
    """Parse XYZ frames: ``(comment line number, comment, atomic numbers, coordinates)``."""
    lines = text.splitlines()
    frames: list[tuple[int, str, list[int], np.ndarray]] = []
    i = 0
    while True:
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines):
            break
        count_line = lines[i].strip()
        try:
            n = int(count_line)
        except ValueError:
            if frames:
                start, _, numbers_, _ = frames[-1]
                raise MoleculeParseError(
                    f"{path}, line {i + 1}: unexpected line {lines[i].rstrip()!r} after the "
                    f"{len(numbers_)} atoms announced on line {start - 1}; the atom count may be wrong"
                ) from None
            raise MoleculeParseError(
                f"{path}, line {i + 1}: expected the number of atoms (an integer), found {lines[i].rstrip()!r}"
            ) from None
        if n <= 0:
            raise MoleculeParseError(f"{path}, line {i + 1}: the number of atoms must be positive, found {n}")
        if i + 1 >= len(lines):
            raise MoleculeParseError(f"{path}: file ends after line {i + 1}; expected a comment line and {n} atoms")
        comment_no = i + 2
        comment = lines[i + 1]
        numbers_list: list[int] = []
        coords = np.empty((n, 3), dtype=np.float64)
        for j in range(n):
            k = i + 2 + j
            if k >= len(lines) or not lines[k].strip():
                found = "the end of the file" if k >= len(lines) else "a blank line"
                raise MoleculeParseError(
                    f"{path}, line {k + 1}: expected atom {j + 1} of {n} (the atom count on line {i + 1}), "
                    f"found {found}; the atom count may be wrong"
                )
            fields = lines[k].split()
            if len(fields) < 4:
                raise MoleculeParseError(
                    f"{path}, line {k + 1}: expected 'element x y z', found {lines[k].rstrip()!r}"
                )
            symbol = fields[0]
            if symbol.isdigit():
                z = int(symbol)
                if not 1 <= z <= 118:
                    raise MoleculeParseError(f"{path}, line {k + 1}: invalid atomic number {symbol}")
            else:
                z = _ELEMENT_NUMBERS.get(symbol.lower(), -1)
                if z < 0:
                    raise MoleculeParseError(f"{path}, line {k + 1}: unknown element symbol {symbol!r}")
            for col, field in enumerate(fields[1:4]):
                try:
                    value = float(field)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    raise MoleculeParseError(
                        f"{path}, line {k + 1}: {'xyz'[col]} coordinate {field!r} is not a number"
                    )
                coords[j, col] = value
            numbers_list.append(z)
        frames.append((comment_no, comment, numbers_list, coords))
        i += 2 + n
    if not frames:
        raise MoleculeFileError(f"{path}: file is empty")
    return frames


def _xyz_frame_to_mol(
    path: Path, frame: tuple[int, str, list[int], np.ndarray], charge: int | None, label: str
) -> Chem.Mol:
    comment_no, comment, atomic_numbers, coords = frame
    if charge is not None:
        q, source = charge, "from the charge argument"
    else:
        match = _CHARGE_TOKEN.search(comment)
        key = _CHARGE_KEY.search(comment)
        if match:
            q, source = int(match.group(1)), f"from 'charge=' on line {comment_no}"
        elif key:
            raise ChargeError(
                f"{label}: line {comment_no} gives the charge as {key.group(0)!r}, not a whole number; "
                f"write 'charge=N' (e.g. charge=-1) or give --charge N"
            )
        else:
            q, source = 0, "default; no charge argument and no 'charge=N' in the comment line"
    rw = Chem.RWMol()
    conf = Chem.Conformer(len(atomic_numbers))
    for idx, z in enumerate(atomic_numbers):
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
        conf.SetAtomPosition(idx, tuple(float(v) for v in coords[idx]))
    conf.Set3D(True)
    rw.AddConformer(conf, assignId=True)
    mol = rw.GetMol()
    _perceive_bonds(mol, q, label, source)
    try:
        return validate_molecule(mol, charge=q)
    except MoleculeError as exc:
        if isinstance(exc, RadicalError):
            raise RadicalError(f"{label}: {exc}; the total charge {q:+d} ({source}) may be wrong") from None
        raise _reraise_with_context(exc, label) from None


def _read_xyz(path: Path, text: str, charge: int | None) -> list[Chem.Mol]:
    frames = _xyz_frames(path, text)
    out = []
    for k, frame in enumerate(frames):
        label = str(path) if len(frames) == 1 else f"{path}: frame {k + 1} (starting at line {frame[0] - 1})"
        out.append(_xyz_frame_to_mol(path, frame, charge, label))
    return out


def read_records(path: str | os.PathLike, *, charge: int | None = None) -> list[Chem.Mol]:
    """Read every record of a structure file as a separate molecule.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.sdf``/``.mol`` (V2000 or V3000), ``.pdb`` or ``.xyz`` file
        (suffix compared case-insensitively).
    charge : int, optional
        Total charge of *each* record, in elementary charges. For SDF/MOL and
        PDB files with CONECT records it is checked against the formal
        charges; for XYZ files (and PDB files without CONECT records) it is
        used to perceive bond orders. An XYZ frame without it uses a
        ``charge=N`` token in its comment line, else 0.

    Returns
    -------
    list of rdkit.Chem.Mol
        Validated molecules (see :func:`validate_molecule`) in file order with
        the file's atom order, explicit hydrogens and coordinates (Angstrom)
        as conformer: one per SDF record, one per XYZ frame, a single one for a
        MOL or PDB file (several PDB MODELs become several conformers).

    Raises
    ------
    MoleculeFileError
        Missing file, directory, unreadable, empty or unknown suffix.
    MoleculeParseError
        Garbled content; the message names the file and, where known, the line.
    MoleculeError
        A record fails validation (its subclasses, see :func:`validate_molecule`).
    """
    path = _as_path(path)
    charge = _check_charge_arg(charge)
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix in (".sdf", ".mol"):
        return _read_sdf(path, text, charge)
    if suffix == ".pdb":
        return [_read_pdb(path, text, charge)]
    return _read_xyz(path, text, charge)


def _refuse_conformer_records(path: Path, records: list[Chem.Mol]) -> None:
    """Several SDF records of one molecule whose atoms overlap are conformers, not a complex: refuse them."""
    if len(records) < 2:
        return
    smiles = {Chem.MolToSmiles(Chem.RemoveHs(r, sanitize=False)) for r in records}
    if len(smiles) != 1:
        return
    x = [np.asarray(r.GetConformer().GetPositions(), dtype=np.float64) for r in records if r.GetNumConformers()]
    if len(x) < 2 or closest_pair(x[0], x[1])[0] >= CONFORMER_OVERLAP_ANGSTROM:
        return
    raise MoleculeError(
        f"{path} holds {len(records)} records of the same molecule ({smiles.pop()}) on top of each other: "
        "conformers of one molecule, not a complex. Give one conformer per file (physff-openmm scan "
        "--conformers writes them this way; each record is one conformer)"
    )


def _load_path(path: Path, charge: int | None) -> Chem.Mol:
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".pdb":
        if re.search(r"^CRYST1", text, re.MULTILINE):
            warnings.warn(
                f"{path} has a CRYST1 record (a periodic box): it is read as a molecule or complex in vacuum, "
                "without periodic boundaries (for a molecule in water give a solvent: --solvent tip3p)",
                UserWarning,
                stacklevel=3,
            )
        return _read_pdb(path, text, charge)
    if suffix == ".xyz":
        frames = _xyz_frames(path, text)
        if len(frames) > 1:
            warnings.warn(
                f"{path} holds {len(frames)} frames; the first one is used",
                UserWarning,
                stacklevel=3,
            )
        return _xyz_frame_to_mol(path, frames[0], charge, str(path))
    records = _read_sdf(path, text, None)
    _refuse_conformer_records(path, records)
    try:
        mol = records[0] if len(records) == 1 else combine_molecules(records)
        return validate_molecule(mol, charge=charge)
    except MoleculeError as exc:
        raise _reraise_with_context(exc, str(path)) from None


def load_molecule(source: Chem.Mol | str | os.PathLike, *, charge: int | None = None) -> Chem.Mol:
    """Load and validate a molecule or complex.

    Parameters
    ----------
    source : rdkit.Chem.Mol, str or os.PathLike
        One of

        * an RDKit molecule, which must already have explicit hydrogens
          (``Chem.AddHs``); a validated copy is returned;
        * a SMILES string; hydrogens are added with ``Chem.AddHs`` (after the
          heavy atoms, which keep the SMILES order); ``"A.B"`` gives a complex;
          no conformer is added (see :func:`ensure_conformer`);
        * a path to a ``.sdf``/``.mol`` file (several SDF records are combined
          into one complex, in file order), a ``.pdb`` file (bonds from CONECT
          records, or perceived from coordinates when there are none) or an
          ``.xyz`` file (first frame; bonds and bond orders perceived from the
          coordinates and the total charge).

        A ``pathlib.Path`` is always a path; a ``str`` is a path if it ends in
        ``.sdf``, ``.mol``, ``.pdb`` or ``.xyz`` (any case) or names an existing
        file or directory, otherwise it is SMILES.
    charge : int, optional
        Total charge in elementary charges. Checked against the sum of formal
        charges; for XYZ files and PDB files without CONECT records it is used
        to perceive bond orders (XYZ: else a ``charge=N`` token in the comment
        line, else 0; PDB: else 0).

    Returns
    -------
    rdkit.Chem.Mol
        A sanitized molecule with explicit hydrogens and the input atom order.
        File inputs carry their coordinates as a conformer, in Angstrom.

    Raises
    ------
    MoleculeFileError
        Missing file, directory, unreadable, empty file or unknown suffix.
    MoleculeParseError
        Broken SMILES (RDKit's error is quoted) or garbled file content (with
        the line number where known); a molecule RDKit cannot sanitize.
    UnsupportedElementError, RadicalError, MissingHydrogenError, ChargeError
        See :func:`validate_molecule`. For XYZ input an odd electron count
        for the total charge raises :class:`RadicalError` and a failed bond
        perception raises :class:`ChargeError`; both say the charge may be wrong.
    TypeError
        ``source`` is none of the above or ``charge`` is not an integer.
    """
    charge = _check_charge_arg(charge)
    if isinstance(source, Chem.Mol):
        return validate_molecule(source, charge=charge)
    if isinstance(source, os.PathLike):
        return _load_path(Path(source), charge)
    if isinstance(source, str):
        if _looks_like_path(source):
            return _load_path(Path(source), charge)
        return _from_smiles(source, charge)
    raise TypeError(
        f"load_molecule expects an rdkit.Chem.Mol, a SMILES string or a file path, got {type(source).__name__}"
    )
