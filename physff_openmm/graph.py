"""Featurization: an RDKit molecule (explicit hydrogens) -> a torch-geometric graph.

Atom features: one-hot element, formal charge, hybridization, degree and
attached-hydrogen count, plus aromaticity and ring membership. Bond features
(the edges message passing runs over): one-hot bond type (single, double,
triple, aromatic, and "non-covalent"), conjugation and ring membership.

Pair features (what feats_net sees for a pair i < j, DESIGN.md version 2): the
bond features, the topological distance class (1, 2, 3, 4, 5, >= 6 bonds within
one molecule, or different molecules), whether i and j share a ring, and, for
covalent pairs, the reference length of the bond (:func:`reference_bond_length`,
Angstrom; 0 otherwise), around which the covalent core's minimum is placed.

Resonance (:func:`resonance_structures`, for a model built with ``resonance_features``):
where a molecule has other Lewis structures that only move formal charges between atoms of
the same element (a carboxylate's two O, a nitro group, an amidinium's two N, imidazolium,
the O of a sulfonate, sulfate or phosphate),
the formal-charge and bond-type one-hots and the reference bond lengths are averaged over
those structures, so that resonance-equivalent atoms get equal embeddings, charges and
parameters (aromatic bonds stay aromatic).

Path atoms (:func:`path_atoms`): for a 1-3 pair the middle atom, for a 1-4 pair the
two atoms of the central bond, averaged over the shortest paths between i and j;
a model built with ``path_embeddings`` adds their embeddings to feats_net's input.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from rdkit import Chem
from rdkit.rdBase import BlockLogs
from torch_geometric.data import Data

__all__ = [
    "ELEMENTS",
    "ATOM_FEATURES",
    "BOND_FEATURES",
    "NONCOVALENT",
    "PAIR_FEATURES",
    "PAIR_COVALENT",
    "PAIR_DIFFERENT_MOLECULES",
    "PAIR_REFERENCE_LENGTH",
    "COVALENT_RADII",
    "atom_features",
    "reference_bond_length",
    "pair_features",
    "intramolecular_pairs",
    "intermolecular_pair_features",
    "path_atoms",
    "bond_features",
    "covalent_pairs",
    "resonance_structures",
    "mol_to_graph",
    "MolGraph",
]

#: Supported elements, in the order of the one-hot encoding and of E_lin's weights.
ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "F", "S", "Cl", "Br", "P")
_ELEMENT_INDEX = {s: i for i, s in enumerate(ELEMENTS)}
_FORMAL_CHARGES = (-2, -1, 0, 1, 2)
_HYBRIDIZATIONS = (
    Chem.HybridizationType.SP,
    Chem.HybridizationType.SP2,
    Chem.HybridizationType.SP3,
    Chem.HybridizationType.SP3D,
)
_DEGREES = (1, 2, 3, 4)
_NUM_H = (0, 1, 2, 3)

#: Width of the atom feature vector.
ATOM_FEATURES: int = (
    len(ELEMENTS) + len(_FORMAL_CHARGES) + len(_HYBRIDIZATIONS) + 1 + len(_DEGREES) + 1 + len(_NUM_H) + 1 + 2
)
_BOND_TYPES = (
    Chem.BondType.SINGLE,
    Chem.BondType.DOUBLE,
    Chem.BondType.TRIPLE,
    Chem.BondType.AROMATIC,
)
#: Index of the "non-covalent" bond-type bit.
NONCOVALENT: int = len(_BOND_TYPES)
#: Width of the bond feature vector: bond types, non-covalent, conjugated, in ring.
BOND_FEATURES: int = len(_BOND_TYPES) + 1 + 2


#: Topological distance classes of a pair: 1..5 bonds, >= 6 bonds, different molecules.
DISTANCE_CLASSES: int = 7
#: Column of pair features: distance class 1 (a covalent bond).
PAIR_COVALENT: int = BOND_FEATURES
#: Column of pair features: the two atoms are in different molecules.
PAIR_DIFFERENT_MOLECULES: int = BOND_FEATURES + DISTANCE_CLASSES - 1
_PAIR_SHARES_RING: int = BOND_FEATURES + DISTANCE_CLASSES
#: Column of pair features holding the reference bond length (Angstrom; 0 for non-covalent pairs).
PAIR_REFERENCE_LENGTH: int = _PAIR_SHARES_RING + 1
#: Width of the pair feature vector.
PAIR_FEATURES: int = PAIR_REFERENCE_LENGTH + 1

#: Single-bond covalent radii, Angstrom (Pyykko & Atsumi, Chem. Eur. J. 15, 186 (2009)).
COVALENT_RADII: dict[str, float] = {
    "H": 0.32, "C": 0.75, "N": 0.71, "O": 0.63, "F": 0.64, "S": 1.03, "Cl": 0.99, "Br": 1.14, "P": 1.11,
}
# bond length relative to a single bond of the same atoms (C-C 1.50, C:C 1.38, C=C 1.31, C#C 1.17 A)
_BOND_ORDER_FACTOR = {
    Chem.BondType.SINGLE: 1.0,
    Chem.BondType.AROMATIC: 0.92,
    Chem.BondType.DOUBLE: 0.87,
    Chem.BondType.TRIPLE: 0.78,
}


def reference_bond_length(symbol_i: str, symbol_j: str, bond_type=Chem.BondType.SINGLE) -> float:
    """Reference length of a covalent bond, Angstrom: covalent radii scaled by bond order.

    Within 0.1 A of typical lengths (C-H 1.07, O-H 0.95, C-C 1.50, C=O 1.20, C-Cl 1.74);
    the covalent core's minimum lies within +-15 % of it (see :mod:`physff_openmm.model`).
    """
    return (COVALENT_RADII[symbol_i] + COVALENT_RADII[symbol_j]) * _BOND_ORDER_FACTOR.get(bond_type, 1.0)


def _one_hot(value, choices) -> list[float]:
    """One-hot of ``value`` in ``choices``, with a final "other" slot."""
    out = [0.0] * (len(choices) + 1)
    try:
        out[choices.index(value)] = 1.0
    except ValueError:
        out[-1] = 1.0
    return out


#: Most Lewis structures :func:`resonance_structures` asks RDKit for (its own default).
MAX_RESONANCE_STRUCTURES: int = 1000


def resonance_structures(mol: Chem.Mol) -> list[Chem.Mol]:
    """The Lewis structures of ``mol`` whose formal charges sit on the same elements as its own, atom and bond order kept.

    RDKit's :class:`~rdkit.Chem.rdchem.ResonanceMolSupplier` (default flags: no new charge
    separation) enumerates the structures; those that put a charge on another element (the
    carbanion forms of a phenolate) are left out, duplicates dropped. A molecule without
    formal charges, or with no other such structure, gives ``[mol]``.
    """
    def charged_elements(m: Chem.Mol) -> list[tuple[int, int]]:
        return sorted((a.GetAtomicNum(), a.GetFormalCharge()) for a in m.GetAtoms() if a.GetFormalCharge())

    charged = charged_elements(mol)
    if not charged:
        return [mol]
    out, seen = [], set()
    with BlockLogs():  # RDKit logs the structures it rejects (an over-valent C) as errors
        forms = list(Chem.ResonanceMolSupplier(mol, 0, MAX_RESONANCE_STRUCTURES))
    forms = [t for s in forms if s is not None for t in _oxyanion_structures(s)][:MAX_RESONANCE_STRUCTURES]
    for s in forms:
        if s is None:
            continue
        if charged_elements(s) != charged:
            continue
        key = (tuple(a.GetFormalCharge() for a in s.GetAtoms()), tuple(b.GetBondType() for b in s.GetBonds()))
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out if len(out) > 1 else [mol]


def _oxyanion_structures(mol: Chem.Mol) -> list[Chem.Mol]:
    """``mol`` and the structures that move the negative charge of an S or P oxyanion among its terminal O.

    RDKit's resonance enumeration leaves the S=O and P=O bonds of sulfonates, sulfates and
    phosphates alone, so that their O (and those of a thiophosphate's S) would differ by how the
    SMILES is written. For every S or P atom, its terminal neighbours of one element that are
    either ``X-`` on a single bond or ``X`` on a double bond take the charges in every
    arrangement (a sulfonate's three O: three structures, a phosphate's four: four), the
    counts of each kept; several such atoms give the product.
    """
    groups = []
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() not in (15, 16):
            continue
        by_element: dict[int, list[tuple[int, int]]] = {}
        for bond in atom.GetBonds():
            x = bond.GetOtherAtom(atom)
            kind = (bond.GetBondType(), x.GetFormalCharge())
            if x.GetDegree() == 1 and kind in ((Chem.BondType.SINGLE, -1), (Chem.BondType.DOUBLE, 0)):
                by_element.setdefault(x.GetAtomicNum(), []).append((x.GetIdx(), bond.GetIdx()))
        for members in by_element.values():
            n_charged = sum(mol.GetAtomWithIdx(i).GetFormalCharge() == -1 for i, _ in members)
            if 0 < n_charged < len(members):
                groups.append((members, n_charged))
    if not groups:
        return [mol]
    out = [Chem.RWMol(mol)]
    for members, n_charged in groups:
        hybridization = {mol.GetAtomWithIdx(i).GetFormalCharge(): mol.GetAtomWithIdx(i).GetHybridization() for i, _ in members}
        grown = []
        for base in out:
            for charged in itertools.combinations(range(len(members)), n_charged):
                m = Chem.RWMol(base)
                for k, (i, b) in enumerate(members):
                    q = -1 if k in charged else 0
                    m.GetAtomWithIdx(i).SetFormalCharge(q)
                    m.GetAtomWithIdx(i).SetHybridization(hybridization[q])
                    m.GetBondWithIdx(b).SetBondType(Chem.BondType.SINGLE if q else Chem.BondType.DOUBLE)
                grown.append(m)
        out = grown[:MAX_RESONANCE_STRUCTURES]
    return [m.GetMol() for m in out]


def _charge_hybridization_one_hot(structures: list[Chem.Mol]) -> np.ndarray:
    """(n, len(_FORMAL_CHARGES) + len(_HYBRIDIZATIONS) + 1) formal-charge and hybridization (with its "other"
    slot) one-hots averaged over ``structures``."""
    out = np.zeros((structures[0].GetNumAtoms(), len(_FORMAL_CHARGES) + len(_HYBRIDIZATIONS) + 1))
    for m in structures:
        out += [
            _one_hot(a.GetFormalCharge(), _FORMAL_CHARGES)[:-1] + _one_hot(a.GetHybridization(), _HYBRIDIZATIONS)
            for a in m.GetAtoms()
        ]
    return out / len(structures)


def _bond_type_weights(bond: Chem.Bond, structures: list[Chem.Mol] | None) -> list[tuple[Chem.BondType, float]]:
    """(bond type, weight) of a bond: its own type, or its types over ``structures`` (an aromatic bond stays aromatic)."""
    if not structures or len(structures) < 2 or bond.GetIsAromatic():
        return [(bond.GetBondType(), 1.0)]
    w = 1.0 / len(structures)
    return [(m.GetBondWithIdx(bond.GetIdx()).GetBondType(), w) for m in structures]


def atom_features(mol: Chem.Mol, structures: list[Chem.Mol] | None = None) -> np.ndarray:
    """(n_atoms, ATOM_FEATURES) float32 atom features; formal charges and hybridization averaged over ``structures``
    (:func:`resonance_structures`) when given."""
    rows = []
    for atom in mol.GetAtoms():
        element = [0.0] * len(ELEMENTS)
        element[_ELEMENT_INDEX[atom.GetSymbol()]] = 1.0
        rows.append(
            element
            + _one_hot(atom.GetFormalCharge(), _FORMAL_CHARGES)[:-1]
            + _one_hot(atom.GetHybridization(), _HYBRIDIZATIONS)
            + _one_hot(atom.GetDegree(), _DEGREES)
            + _one_hot(atom.GetTotalNumHs(), _NUM_H)
            + [float(atom.GetIsAromatic()), float(atom.IsInRing())]
        )
    out = np.asarray(rows, dtype=np.float32).reshape(-1, ATOM_FEATURES)
    if structures is not None and len(structures) > 1:
        out[:, len(ELEMENTS):len(ELEMENTS) + len(_FORMAL_CHARGES) + len(_HYBRIDIZATIONS) + 1] = _charge_hybridization_one_hot(structures)
    return out


def bond_features(bond: Chem.Bond | None, structures: list[Chem.Mol] | None = None) -> list[float]:
    """Bond feature vector of a covalent bond, or of a non-covalent pair when ``bond`` is None; the
    bond-type one-hot averaged over ``structures`` (:func:`resonance_structures`) when given."""
    out = [0.0] * BOND_FEATURES
    if bond is None:
        out[NONCOVALENT] = 1.0
        return out
    for bt, w in _bond_type_weights(bond, structures):
        out[_BOND_TYPES.index(bt) if bt in _BOND_TYPES else 0] += w
    out[NONCOVALENT + 1] = float(bond.GetIsConjugated())
    out[NONCOVALENT + 2] = float(bond.IsInRing())
    return out


def covalent_pairs(mol: Chem.Mol, structures: list[Chem.Mol] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Covalent pairs (m, 2) int64 with i < j, sorted, and their (m, BOND_FEATURES) float32 features
    (``structures``: see :func:`bond_features`)."""
    bonds = sorted(
        (min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), b)
        for b in mol.GetBonds()
    )
    pairs = np.asarray([(i, j) for i, j, _ in bonds], dtype=np.int64).reshape(-1, 2)
    feats = np.asarray([bond_features(b, structures) for _, _, b in bonds], dtype=np.float32).reshape(-1, BOND_FEATURES)
    return pairs, feats


def _fragment_of_atoms(mol: Chem.Mol) -> np.ndarray:
    """(n,) int64 the fragment index of each atom."""
    frag = np.zeros(mol.GetNumAtoms(), dtype=np.int64)
    for k, atoms in enumerate(Chem.GetMolFrags(mol, asMols=False, sanitizeFrags=False)):
        frag[list(atoms)] = k
    return frag


def _topology(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Topological distances (n, n) (inf between fragments), fragment per atom, shared-ring matrix (n, n) bool."""
    n = mol.GetNumAtoms()
    frag = _fragment_of_atoms(mol)
    dist = np.asarray(Chem.GetDistanceMatrix(mol), dtype=np.float64) if n else np.zeros((0, 0))
    dist[frag[:, None] != frag[None, :]] = np.inf
    ring = np.zeros((n, n), dtype=bool)
    for atoms in mol.GetRingInfo().AtomRings():
        idx = np.asarray(atoms)
        ring[np.ix_(idx, idx)] = True
    return dist, frag, ring


def pair_features(mol: Chem.Mol, pairs: np.ndarray, structures: list[Chem.Mol] | None = None) -> np.ndarray:
    """(P, PAIR_FEATURES) float32 features of atom pairs ``pairs`` (P, 2) of ``mol``.

    Columns: bond features (:func:`bond_features`), distance class one-hot (1..5 bonds,
    >= 6 bonds, different molecules), shares a ring, reference bond length (Angstrom,
    covalent pairs only). With ``structures`` (:func:`resonance_structures`) a bond's type
    and reference length are averaged over them.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.zeros((len(pairs), PAIR_FEATURES), dtype=np.float32)
    if not len(pairs):
        return out
    dist, _, ring = _topology(mol)
    i, j = pairs[:, 0], pairs[:, 1]
    d = dist[i, j]
    cls = np.where(np.isinf(d), DISTANCE_CLASSES - 1, np.clip(np.nan_to_num(d, posinf=0.0), 1, 6) - 1).astype(np.int64)
    out[:, :BOND_FEATURES] = bond_features(None)
    out[np.arange(len(pairs)), BOND_FEATURES + cls] = 1.0
    out[:, _PAIR_SHARES_RING] = ring[i, j]
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    for k in np.flatnonzero(cls == 0):
        bond = mol.GetBondBetweenAtoms(int(i[k]), int(j[k]))
        out[k, :BOND_FEATURES] = bond_features(bond, structures)
        out[k, PAIR_REFERENCE_LENGTH] = sum(
            w * reference_bond_length(symbols[i[k]], symbols[j[k]], bt) for bt, w in _bond_type_weights(bond, structures)
        )
    return out


def intramolecular_pairs(mol: Chem.Mol) -> np.ndarray:
    """(P, 2) int64 every pair i < j of atoms in the same fragment, sorted."""
    n = mol.GetNumAtoms()
    frag = _fragment_of_atoms(mol)  # no distance matrix: pair_features computes it once
    iu, ju = np.triu_indices(n, 1)
    same = frag[iu] == frag[ju]
    return np.stack([iu[same], ju[same]], axis=1).astype(np.int64).reshape(-1, 2)


def path_atoms(mol: Chem.Mol, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inner atoms of the shortest paths of 1-3 and 1-4 pairs, as a sparse (P, n) matrix.

    Returns ``(row, atom, weight)``: pair ``pairs[row]`` has inner atom ``atom`` with weight
    ``weight`` (float32), the atom's share of the pair's shortest paths (1 for the middle atom
    of a 1-3 pair with one path; 1 for each atom of the central bond of a 1-4 pair with one
    path; divided by the number of paths where there are several, as across a ring). Other
    pairs have no entries; ``row`` is ascending. Symmetric in i and j; the path embedding of
    pair ``p`` is ``sum(weight * h[atom])`` over its entries.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    rows: list[int] = []
    atoms: list[int] = []
    weights: list[float] = []
    if not len(pairs):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    dist = _topology(mol)[0][pairs[:, 0], pairs[:, 1]]
    neighbours = [frozenset(n.GetIdx() for n in a.GetNeighbors()) for a in mol.GetAtoms()]
    for p in np.flatnonzero((dist == 2) | (dist == 3)).tolist():  # a few per atom: the loop is short
        i, j = int(pairs[p, 0]), int(pairs[p, 1])
        middle = neighbours[i] & neighbours[j]
        if middle:  # 1-3
            for k in sorted(middle):
                rows.append(p)
                atoms.append(k)
                weights.append(1.0 / len(middle))
            continue
        paths = [(k, l) for k in sorted(neighbours[i]) for l in sorted(neighbours[k] & neighbours[j]) if l != i]
        if paths:  # 1-4 (i-k-l-j)
            share: dict[int, float] = {}
            for k, l in paths:
                share[k] = share.get(k, 0.0) + 1.0 / len(paths)
                share[l] = share.get(l, 0.0) + 1.0 / len(paths)
            for a in sorted(share):
                rows.append(p)
                atoms.append(a)
                weights.append(share[a])
    return (
        np.asarray(rows, dtype=np.int64),
        np.asarray(atoms, dtype=np.int64),
        np.asarray(weights, dtype=np.float32),
    )


def intermolecular_pair_features() -> np.ndarray:
    """(PAIR_FEATURES,) float32 features of a pair of atoms in different molecules (all such pairs share them)."""
    out = np.zeros(PAIR_FEATURES, dtype=np.float32)
    out[:BOND_FEATURES] = bond_features(None)
    out[PAIR_DIFFERENT_MOLECULES] = 1.0
    return out


class MolGraph(Data):
    """A molecule's graph; batches offset atom indices by atoms and fragment ids by fragments."""

    def __cat_dim__(self, key, value, *args, **kwargs):
        if key in ("bond_index", "pair_index"):
            return 0
        return super().__cat_dim__(key, value, *args, **kwargs)

    def __inc__(self, key, value, *args, **kwargs):
        if key in ("bond_index", "pair_index", "edge_index", "path_atom"):
            return self.num_nodes
        if key == "path_pair":
            return self.pair_index.shape[0]
        if key == "fragment_index":
            return self.fragment_charge.numel()
        return 0


def mol_to_graph(mol: Chem.Mol, *, with_pairs: bool = False, structures: list[Chem.Mol] | None = None) -> MolGraph:
    """Build the graph of a molecule (atom order kept).

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        Molecule with explicit hydrogens (one or several fragments).
    with_pairs : bool
        Also store every atom pair i < j (``pair_index`` (P, 2) and its pair
        features ``pair_attr`` (P, PAIR_FEATURES)) and their path atoms (``path_pair``,
        ``path_atom``, ``path_weight``, :func:`path_atoms`), as training needs for
        whole-molecule energies.
    structures : list of rdkit.Chem.Mol, optional
        Average formal charges and bond types over these structures of ``mol``
        (:func:`resonance_structures`, for a model built with ``resonance_features``).

    Returns
    -------
    MolGraph
        A :class:`torch_geometric.data.Data` with ``x`` (n, ATOM_FEATURES), ``edge_index`` (2, 2m) both directions,
        ``edge_attr`` (2m, BOND_FEATURES), ``bond_index`` (m, 2) i < j,
        ``bond_attr`` (m, BOND_FEATURES), ``species`` (n,) element index,
        ``formal_charge`` (n,), ``fragment_index`` (n,) fragment id per atom,
        ``fragment_charge`` (n_fragments,) formal charge per fragment.
    """
    n = mol.GetNumAtoms()
    x = torch.from_numpy(atom_features(mol, structures))
    pairs, feats = covalent_pairs(mol, structures)
    bond_index = torch.from_numpy(pairs)
    bond_attr = torch.from_numpy(feats)
    edge_index = torch.cat([bond_index.T, bond_index.flip(1).T], dim=1)
    edge_attr = torch.cat([bond_attr, bond_attr], dim=0)
    frag_of_atom = np.zeros(n, dtype=np.int64)
    frags = Chem.GetMolFrags(mol, asMols=False, sanitizeFrags=False)
    for k, frag in enumerate(frags):
        frag_of_atom[list(frag)] = k
    formal = np.asarray([a.GetFormalCharge() for a in mol.GetAtoms()], dtype=np.float64)
    frag_charge = np.zeros(len(frags), dtype=np.float64)
    np.add.at(frag_charge, frag_of_atom, formal)
    data = MolGraph(
        x=x,
        edge_index=edge_index,
        edge_attr=edge_attr,
        bond_index=bond_index,
        bond_attr=bond_attr,
        species=torch.tensor([_ELEMENT_INDEX[a.GetSymbol()] for a in mol.GetAtoms()], dtype=torch.long),
        formal_charge=torch.from_numpy(formal),
        fragment_index=torch.from_numpy(frag_of_atom),
        fragment_charge=torch.from_numpy(frag_charge),
        num_nodes=n,
    )
    if with_pairs:
        iu, ju = np.triu_indices(n, 1)
        pair_index = np.stack([iu, ju], axis=1).astype(np.int64).reshape(-1, 2)
        data.pair_index = torch.from_numpy(pair_index)
        data.pair_attr = torch.from_numpy(pair_features(mol, pair_index, structures))
        row, atom, weight = path_atoms(mol, pair_index)
        data.path_pair, data.path_atom, data.path_weight = map(torch.from_numpy, (row, atom, weight))
    return data
