"""Featurization: an RDKit molecule (explicit hydrogens) -> a torch-geometric graph.

Atom features: one-hot element, formal charge, hybridization, degree and
attached-hydrogen count, plus aromaticity and ring membership. Bond features:
one-hot bond type (single, double, triple, aromatic, and "non-covalent" for
pairs that are not bonded), conjugation and ring membership.
"""

from __future__ import annotations

import numpy as np
import torch
from rdkit import Chem
from torch_geometric.data import Data

__all__ = [
    "ELEMENTS",
    "ATOM_FEATURES",
    "BOND_FEATURES",
    "NONCOVALENT",
    "atom_features",
    "bond_features",
    "covalent_pairs",
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


def _one_hot(value, choices) -> list[float]:
    """One-hot of ``value`` in ``choices``, with a final "other" slot."""
    out = [0.0] * (len(choices) + 1)
    try:
        out[choices.index(value)] = 1.0
    except ValueError:
        out[-1] = 1.0
    return out


def atom_features(mol: Chem.Mol) -> np.ndarray:
    """(n_atoms, ATOM_FEATURES) float32 atom features."""
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
    return np.asarray(rows, dtype=np.float32).reshape(-1, ATOM_FEATURES)


def bond_features(bond: Chem.Bond | None) -> list[float]:
    """Bond feature vector of a covalent bond, or of a non-covalent pair when ``bond`` is None."""
    out = [0.0] * BOND_FEATURES
    if bond is None:
        out[NONCOVALENT] = 1.0
        return out
    bt = bond.GetBondType()
    out[_BOND_TYPES.index(bt) if bt in _BOND_TYPES else 0] = 1.0
    out[NONCOVALENT + 1] = float(bond.GetIsConjugated())
    out[NONCOVALENT + 2] = float(bond.IsInRing())
    return out


def covalent_pairs(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Covalent pairs (m, 2) int64 with i < j, sorted, and their (m, BOND_FEATURES) float32 features."""
    bonds = sorted(
        (min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), b)
        for b in mol.GetBonds()
    )
    pairs = np.asarray([(i, j) for i, j, _ in bonds], dtype=np.int64).reshape(-1, 2)
    feats = np.asarray([bond_features(b) for _, _, b in bonds], dtype=np.float32).reshape(-1, BOND_FEATURES)
    return pairs, feats


class MolGraph(Data):
    """A molecule's graph; batches offset atom indices by atoms and fragment ids by fragments."""

    def __cat_dim__(self, key, value, *args, **kwargs):
        if key in ("bond_index", "pair_index"):
            return 0
        return super().__cat_dim__(key, value, *args, **kwargs)

    def __inc__(self, key, value, *args, **kwargs):
        if key in ("bond_index", "pair_index", "edge_index"):
            return self.num_nodes
        if key == "fragment_index":
            return self.fragment_charge.numel()
        return 0


def mol_to_graph(mol: Chem.Mol, *, with_pairs: bool = False) -> MolGraph:
    """Build the graph of a molecule (atom order kept).

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        Molecule with explicit hydrogens (one or several fragments).
    with_pairs : bool
        Also store every atom pair i < j (``pair_index`` (P, 2) and its bond
        features ``pair_attr``), as training needs for whole-molecule energies.

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
    x = torch.from_numpy(atom_features(mol))
    pairs, feats = covalent_pairs(mol)
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
        pair_index = np.stack([iu, ju], axis=1).astype(np.int64)
        pair_attr = np.tile(np.asarray(bond_features(None), dtype=np.float32), (len(iu), 1))
        if len(pairs):
            # position of pair (i, j) in the triu enumeration
            pos = pairs[:, 0] * n - pairs[:, 0] * (pairs[:, 0] + 1) // 2 + (pairs[:, 1] - pairs[:, 0] - 1)
            pair_attr[pos] = feats
        data.pair_index = torch.from_numpy(pair_index)
        data.pair_attr = torch.from_numpy(pair_attr)
    return data
