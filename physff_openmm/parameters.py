"""Per-topology parameters: charges, pair parameters C_0..C_13, E_lin and the switch.

:func:`parameterize` runs the graph model once per topology. Pairs within a
molecule (fragment) see their place in the graph (bond, topological distance,
shared ring) and are listed, each with its own C_0..C_13. Pairs between
molecules see only the two atoms' embeddings; atoms whose embeddings agree
(symmetry-equivalent atoms, repeated molecules) form one class, so those
parameters are a small class-by-class table, and a molecule's parameters never
depend on what else is in the complex. Results are cached on disk, keyed by
canonical SMILES and the model file's hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem

from .energy import N_PARAMETERS
from .errors import ModelError, PhysFFError
from .graph import (
    covalent_pairs,
    intermolecular_pair_features,
    intramolecular_pairs,
    mol_to_graph,
    pair_features,
    path_atoms,
    resonance_structures,
)
from ._progress import progress_bar
from .model import PhysFFModel

__all__ = ["ParameterSet", "parameterize", "default_cache_dir", "CLASS_TOLERANCE"]

#: Two atoms share a class when their embeddings differ by less than this (max abs).
CLASS_TOLERANCE: float = 1e-6
#: Bumped when featurization changes the parameters of some molecule (4: S and P oxyanion resonance).
_CACHE_VERSION = 4


@dataclass
class ParameterSet:
    """Charges and pair parameters of one topology (one molecule or a complex).

    Units: charges in e, C_0 in kcal/mol Angstrom^6, C_1 in kcal/mol Angstrom^12,
    C_{2k} in kcal/mol, C_{2k+1} in Angstrom, energies in kcal/mol, distances in Angstrom.

    Attributes
    ----------
    symbols : list[str]
        Element symbols in the molecule's atom order.
    charges : np.ndarray
        (n,) partial charges, e.
    covalent_pairs : np.ndarray
        (m, 2) zero-based covalent pairs, i < j, sorted.
    intra_pairs : np.ndarray
        (p, 2) every pair i < j within one fragment, sorted (covalent pairs included).
    intra_parameters : np.ndarray
        (p, 14) C_0..C_13 of each of ``intra_pairs``.
    atom_classes : np.ndarray
        (n,) class of each atom (atoms with identical embeddings share one).
    class_parameters : np.ndarray
        (n_classes, n_classes, 14) symmetric table of C_0..C_13 of pairs in different fragments.
    energy_offset : float
        E_lin, kcal/mol (a constant, not a force).
    switch : tuple[float, float]
        (r_on, r_off) of the short-range terms, Angstrom.
    fragments : list[tuple[int, ...]]
        Atom indices of each connected fragment.
    class_lj : np.ndarray or None
        (n_classes, 2) ln of the factors on the Lennard-Jones sigma and epsilon of each class's
        atoms in the per-atom rule for pairs with other force fields' atoms
        (:func:`physff_openmm.forcefield.atom_lennard_jones`), from the model's lj_net; None
        for a model without one.
    lj_sigma_floor : float
        The model's ``lj_sigma_floor``: with ``class_lj``, a heavy atom's sigma in that rule is at
        least this fraction of its van der Waals diameter (0: no floor).
    """

    symbols: list[str]
    charges: np.ndarray
    covalent_pairs: np.ndarray
    intra_pairs: np.ndarray
    intra_parameters: np.ndarray
    atom_classes: np.ndarray
    class_parameters: np.ndarray
    energy_offset: float
    switch: tuple[float, float]
    fragments: list[tuple[int, ...]]
    smiles: str = ""
    model_name: str = ""
    model_hash: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    class_lj: np.ndarray | None = None
    lj_sigma_floor: float = 0.0

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def n_classes(self) -> int:
        return int(self.class_parameters.shape[0])

    @property
    def total_charge(self) -> int:
        return int(round(float(self.charges.sum())))

    @property
    def covalent_parameters(self) -> np.ndarray:
        """(m, 14) C_0..C_13 of each covalent pair (rows of ``intra_parameters``)."""
        return self.intra_parameters[self._rows_of(self.covalent_pairs)]

    def _rows_of(self, pairs: np.ndarray) -> np.ndarray:
        """Rows of ``intra_pairs`` holding ``pairs`` (k, 2), i < j."""
        n = self.n_atoms
        keys = self.intra_pairs[:, 0] * n + self.intra_pairs[:, 1]
        return np.searchsorted(keys, pairs[:, 0] * n + pairs[:, 1])

    def intra_covalent(self) -> np.ndarray:
        """(p,) bool, True where a row of ``intra_pairs`` is a covalent pair."""
        out = np.zeros(len(self.intra_pairs), dtype=bool)
        out[self._rows_of(self.covalent_pairs)] = True
        return out

    def fragment_index(self) -> np.ndarray:
        """(n,) fragment of each atom (its position in ``fragments``)."""
        out = np.empty(self.n_atoms, dtype=np.int64)
        for k, atoms in enumerate(self.fragments):
            out[list(atoms)] = k
        return out

    def inter_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every pair i < j of atoms in different fragments, (p, 2), and its C_0..C_13 (p, 14) from the class table."""
        fragment = self.fragment_index()
        iu, ju = np.triu_indices(self.n_atoms, 1)
        keep = fragment[iu] != fragment[ju]
        pairs = np.stack([iu[keep], ju[keep]], axis=1).reshape(-1, 2)
        cls = self.atom_classes
        return pairs, self.class_parameters[cls[pairs[:, 0]], cls[pairs[:, 1]]]

    def equilibrium_lengths(self) -> np.ndarray:
        """(m,) minimum r_e = (2 C_1 / C_0)^(1/6) of each covalent pair's C6/C12 well, Angstrom."""
        c = self.covalent_parameters
        return (2.0 * np.abs(c[:, 1]) / np.abs(c[:, 0])) ** (1.0 / 6.0)

    def pair_parameters(self) -> np.ndarray:
        """(n, n, 14) symmetric C_0..C_13: listed entries within a fragment, the class table between fragments.

        The diagonal (an atom with itself) is zero.
        """
        cls = self.atom_classes
        out = self.class_parameters[cls[:, None], cls[None, :]].copy()
        i, j = self.intra_pairs[:, 0], self.intra_pairs[:, 1]
        out[i, j] = self.intra_parameters
        out[j, i] = self.intra_parameters
        idx = np.arange(len(cls))
        out[idx, idx] = 0.0
        return out

    def covalent_matrix(self) -> np.ndarray:
        """(n, n) bool, True for covalent pairs."""
        m = np.zeros((self.n_atoms, self.n_atoms), dtype=bool)
        i, j = self.covalent_pairs[:, 0], self.covalent_pairs[:, 1]
        m[i, j] = m[j, i] = True
        return m

    # --- persistence ------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        out = {k: getattr(self, k) for k in self._ARRAYS}
        if self.class_lj is not None:
            out["class_lj"] = self.class_lj
        return out

    def _header(self) -> dict[str, Any]:
        return {
            "symbols": list(self.symbols),
            "energy_offset": float(self.energy_offset),
            "switch": [float(x) for x in self.switch],
            "fragments": [list(map(int, f)) for f in self.fragments],
            "smiles": self.smiles,
            "model_name": self.model_name,
            "model_hash": self.model_hash,
            "metadata": self.metadata,
            "lj_sigma_floor": float(self.lj_sigma_floor),
        }

    def save(self, path: str | Path) -> None:
        """Write to an ``.npz`` file, or a ``.json`` file (:meth:`to_dict`), whole or not at all."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            tmp = path.with_name(path.name + ".partial.json")
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
        else:
            tmp = path.with_name(path.name + ".partial.npz")
            np.savez(tmp, header=np.asarray(json.dumps(self._header())), **self._arrays())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "ParameterSet":
        """Read a file written by :meth:`save`: ``.npz``, or the ``.json`` of :meth:`to_dict`
        (what ``physff-openmm parameterize`` writes beside the System XML)."""
        path = Path(path)
        try:
            if path.suffix.lower() == ".json":
                return cls.from_dict(json.loads(path.read_text()))
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                arrays = {k: z[k] for k in cls._ARRAYS}
                arrays["class_lj"] = z["class_lj"] if "class_lj" in z.files else None
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise PhysFFError(f"cannot read parameter file {str(path)!r}: {type(exc).__name__}: {exc}") from None
        return cls(
            symbols=header["symbols"],
            energy_offset=header["energy_offset"],
            switch=tuple(header["switch"]),
            fragments=[tuple(f) for f in header["fragments"]],
            smiles=header["smiles"],
            model_name=header["model_name"],
            model_hash=header["model_hash"],
            metadata=header["metadata"],
            lj_sigma_floor=float(header.get("lj_sigma_floor", 0.0)),
            **arrays,
        )

    #: The arrays of a parameter file.
    _ARRAYS = ("charges", "covalent_pairs", "intra_pairs", "intra_parameters", "atom_classes", "class_parameters")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ParameterSet":
        """The inverse of :meth:`to_dict`."""
        n_par = len(d["parameter_units"])
        return cls(
            symbols=list(d["symbols"]),
            charges=np.asarray(d["charges_e"], dtype=np.float64),
            covalent_pairs=np.asarray(d["covalent_pairs"], dtype=np.int64).reshape(-1, 2),
            intra_pairs=np.asarray(d["intra_pairs"], dtype=np.int64).reshape(-1, 2),
            intra_parameters=np.asarray(d["intra_parameters"], dtype=np.float64).reshape(-1, n_par),
            atom_classes=np.asarray(d["atom_classes"], dtype=np.int64),
            class_parameters=np.asarray(d["class_parameters"], dtype=np.float64).reshape(
                len(d["class_parameters"]), len(d["class_parameters"]), n_par),
            energy_offset=float(d["energy_offset_kcal_mol"]),
            switch=tuple(float(x) for x in d["switch_angstrom"]),
            fragments=[tuple(int(a) for a in f) for f in d["fragments"]],
            smiles=d["smiles"],
            model_name=d["model"]["name"],
            model_hash=d["model"]["sha256"],
            metadata=dict(d.get("metadata", {})),
            class_lj=None if d.get("class_lj_log_factors") is None
            else np.asarray(d["class_lj_log_factors"], dtype=np.float64).reshape(-1, 2),
            lj_sigma_floor=float(d.get("lj_sigma_floor", 0.0)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary with units in the key names."""
        return {
            "smiles": self.smiles,
            "model": {"name": self.model_name, "sha256": self.model_hash},
            "symbols": list(self.symbols),
            "charges_e": self.charges.tolist(),
            "energy_offset_kcal_mol": float(self.energy_offset),
            "switch_angstrom": [float(x) for x in self.switch],
            "fragments": [list(map(int, f)) for f in self.fragments],
            "covalent_pairs": self.covalent_pairs.tolist(),
            "intra_pairs": self.intra_pairs.tolist(),
            "intra_parameters": self.intra_parameters.tolist(),
            "atom_classes": self.atom_classes.tolist(),
            "class_parameters": self.class_parameters.tolist(),
            "parameter_units": ["kcal/mol A^6", "kcal/mol A^12"] + ["kcal/mol", "A"] * 6,
            "class_lj_log_factors": None if self.class_lj is None else self.class_lj.tolist(),
            "lj_sigma_floor": float(self.lj_sigma_floor),
            "metadata": self.metadata,
        }


# --- the model, run once per topology ---------------------------------------------------

def _assign_classes(h: np.ndarray, tol: float) -> np.ndarray:
    """Greedy clustering of embeddings: atom -> class index, classes in first-seen order."""
    reps: list[np.ndarray] = []
    out = np.empty(len(h), dtype=np.int64)
    scale = max(1.0, float(np.abs(h).max())) if len(h) else 1.0
    for a, row in enumerate(h):
        for k, rep in enumerate(reps):
            if np.abs(row - rep).max() <= tol * scale:
                out[a] = k
                break
        else:
            out[a] = len(reps)
            reps.append(row)
    return out


def _float64_copy(model: PhysFFModel) -> PhysFFModel:
    """A float64 copy of the model, made once and kept on it, for inference.

    Double precision makes parameters independent of atom order and of the rest
    of a complex to ~1e-12, where float32 rounding would show at ~1e-6.
    """
    copy = getattr(model, "_float64_copy", None)
    if copy is None or copy[0] != model.file_hash:
        import copy as _copy

        twin = _copy.deepcopy(model).double().eval()
        object.__setattr__(model, "_float64_copy", (model.file_hash, twin))
        return twin
    return copy[1]


#: Pairs per evaluation of the pair network: a large molecule's pairs go through it in blocks,
#: counted on a progress bar.
PAIR_BLOCK = 20_000


@torch.no_grad()
def class_embeddings(g, model: PhysFFModel) -> tuple[np.ndarray, torch.Tensor]:
    """Each atom's class (n,) and one embedding per class (n_classes, hidden), the mean of its atoms',
    as parameterization computes them; ``g`` from :func:`physff_openmm.graph.mol_to_graph`, ``model``
    in float64."""
    h = model.embed(g.x.double(), g.edge_index, g.edge_attr.double())
    classes = _assign_classes(h.double().numpy(), CLASS_TOLERANCE)
    n_cls = int(classes.max()) + 1 if len(classes) else 0
    # one embedding per class (the mean), so class members get bit-identical parameters
    hc = torch.zeros(n_cls, h.shape[1], dtype=h.dtype).index_add_(0, torch.from_numpy(classes), h)
    hc /= torch.bincount(torch.from_numpy(classes), minlength=n_cls).to(h.dtype).unsqueeze(1)
    return classes, hc


def _model_graph(mol: Chem.Mol, model: PhysFFModel) -> tuple[Any, list[Chem.Mol] | None]:
    """The graph that parameterization builds for ``mol`` under ``model``, and the resonance structures
    its features are averaged over (None for a model without ``resonance_features``)."""
    structures = resonance_structures(mol) if model.config.resonance_features else None
    return mol_to_graph(mol, structures=structures), structures


@torch.no_grad()
def _run_model(mol: Chem.Mol, model: PhysFFModel, progress: bool | None = False) -> dict[str, Any]:
    """Charges, classes, class table and intramolecular pair parameters of ``mol`` (input atom order)."""
    model = _float64_copy(model)
    g, structures = _model_graph(mol, model)
    classes, hc = class_embeddings(g, model)
    n_cls = hc.shape[0]
    h_sym = hc[torch.from_numpy(classes)]
    q = model.charges(hc, g.fragment_index, g.fragment_charge, classes=torch.from_numpy(classes)).numpy()
    # pairs between fragments: a class table from the upper triangle of class pairs
    ci, cj = np.triu_indices(n_cls)
    e_inter = torch.from_numpy(intermolecular_pair_features()).to(hc.dtype).expand(len(ci), -1)
    no_path = torch.zeros(len(ci), hc.shape[1], dtype=hc.dtype) if model.config.path_embeddings else None
    tri = model.pair_parameters(hc[ci], hc[cj], e_inter, no_path).numpy()  # no path between molecules
    table = np.zeros((n_cls, n_cls, N_PARAMETERS))
    table[ci, cj] = tri
    table[cj, ci] = tri
    # pairs within a fragment: listed, with their place in the graph
    pairs = intramolecular_pairs(mol)
    intra = np.zeros((len(pairs), N_PARAMETERS))
    if len(pairs):
        feats = torch.from_numpy(pair_features(mol, pairs, structures)).to(hc.dtype)
        qt = torch.from_numpy(q)
        path = path_atoms(mol, pairs) if model.config.path_embeddings else None  # rows ascending
        show = progress if len(pairs) > PAIR_BLOCK else False  # a drug-like molecule takes milliseconds
        with progress_bar(len(pairs), "pair", show, desc="parameterizing") as bar:
            for a in range(0, len(pairs), PAIR_BLOCK):
                b = slice(a, a + PAIR_BLOCK)
                h_path = None
                if path is not None:  # the block's own path embeddings: memory stays bounded by the block
                    row, atom, weight = path
                    e = slice(*np.searchsorted(row, [a, a + PAIR_BLOCK]))
                    h_path = model.path_embeddings(
                        h_sym, torch.from_numpy(row[e] - a), torch.from_numpy(atom[e]), torch.from_numpy(weight[e]),
                        len(pairs[b]),
                    )
                pb = torch.from_numpy(pairs[b])
                intra[b] = model.pair_parameters(
                    h_sym[pb[:, 0]], h_sym[pb[:, 1]], feats[b], h_path, g.species[pb], qt[pb[:, 0]] * qt[pb[:, 1]]
                ).numpy()
                bar.update(len(intra[b]))
    species = g.species
    e_lin = float(model.linear_energy(species, g.fragment_charge.numel()))
    lj = model.lj_log_factors(hc)
    lj = np.zeros((0, 2)) if lj is None else lj.numpy()
    return {"charges": q, "classes": classes, "table": table, "pairs": pairs, "intra": intra, "e_lin": e_lin, "lj": lj}


# --- disk cache -------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$PHYSFF_CACHE_DIR``, else ``$XDG_CACHE_HOME/physff-openmm``, else ``~/.cache/physff-openmm``."""
    env = os.environ.get("PHYSFF_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "physff-openmm"


def _cache_path(cache_dir: Path, smiles: str, model_hash: str) -> Path:
    key = hashlib.sha256(f"{_CACHE_VERSION}|{model_hash}|{smiles}".encode()).hexdigest()
    return cache_dir / key[:2] / f"{key}.npz"


def _canonical(mol: Chem.Mol) -> tuple[str, np.ndarray]:
    """Canonical SMILES (explicit H kept) and each atom's canonical rank."""
    ranks = np.asarray(Chem.CanonicalRankAtoms(mol, breakTies=True), dtype=np.int64)
    return Chem.MolToSmiles(mol), ranks


#: Arrays of a cache entry (:func:`_cache_store`).
_CACHE_KEYS = ("charges", "classes", "table", "pairs", "intra", "e_lin", "lj")


def _cache_store(path: Path, result: dict[str, Any], ranks: np.ndarray) -> None:
    """Store a model result in canonical-rank order."""
    inv = np.empty_like(ranks)
    inv[ranks] = np.arange(len(ranks))
    pairs = ranks[result["pairs"]] if len(result["pairs"]) else result["pairs"]
    pairs = np.sort(pairs, axis=1) if len(pairs) else pairs
    order = np.lexsort((pairs[:, 1], pairs[:, 0])) if len(pairs) else np.zeros(0, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.partial.npz")
    np.savez(
        tmp,
        charges=result["charges"][inv],
        classes=result["classes"][inv],
        table=result["table"],
        pairs=pairs[order],
        intra=result["intra"][order],
        e_lin=np.asarray(result["e_lin"]),
        lj=result["lj"],
    )
    tmp.replace(path)


def _cache_load(path: Path, mol: Chem.Mol, ranks: np.ndarray) -> dict[str, Any] | None:
    """Map a cached result back to ``mol``'s atom order; None when absent or inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as z:
            c = {k: z[k] for k in z.files}
        c = {k: c[k] for k in _CACHE_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(
            f"parameter cache entry {str(path)!r} is unreadable ({type(exc).__name__}); the parameters are "
            "computed again and the entry replaced",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    if len(c["charges"]) != len(ranks) or len(c["lj"]) not in (0, len(c["table"])):
        return None
    pairs = intramolecular_pairs(mol)
    if len(pairs) != len(c["pairs"]):
        return None
    intra = np.zeros((len(pairs), N_PARAMETERS))
    if len(pairs):
        rp = np.sort(ranks[pairs], axis=1)
        n = len(ranks)
        cached_keys = c["pairs"][:, 0] * n + c["pairs"][:, 1]
        keys = rp[:, 0] * n + rp[:, 1]
        pos = np.searchsorted(cached_keys, keys)
        if np.any(pos >= len(cached_keys)) or np.any(cached_keys[np.minimum(pos, len(cached_keys) - 1)] != keys):
            return None
        intra = c["intra"][pos]
    return {
        "charges": c["charges"][ranks],
        "classes": c["classes"][ranks],
        "table": c["table"],
        "pairs": pairs,
        "intra": intra,
        "e_lin": float(c["e_lin"]),
        "lj": c["lj"],
    }


def parameterize(
    molecule,
    model="default",
    *,
    charge: int | None = None,
    cache: bool | str | Path = True,
    progress: bool | None = None,
) -> ParameterSet:
    """Predict charges and pair parameters of a molecule or complex.

    Parameters
    ----------
    molecule : rdkit.Chem.Mol, str or path
        RDKit Mol with explicit hydrogens (several fragments form a complex),
        a SMILES string, or a path to an SDF/MOL/PDB/XYZ file.
    model : str, path or PhysFFModel
        Registered model name (see :func:`physff_openmm.available_models`) or model file.
    charge : int, optional
        Total charge; checked against the formal charges (needed for XYZ files).
    cache : bool or path
        Use the on-disk cache (True: :func:`default_cache_dir`; a path: that folder; False: off).
    progress : bool, optional
        For molecules with more than :data:`PAIR_BLOCK` pairs within a fragment (a few
        hundred atoms), count the pairs on a progress bar (default: when stderr is a terminal).

    Returns
    -------
    ParameterSet
    """
    from .molecule import load_molecule
    from .registry import load_model

    t0 = time.perf_counter()
    mol = load_molecule(molecule, charge=charge)
    net = load_model(model)
    if net.file_hash is None:
        net_hash = "unsaved-" + hashlib.sha256(str(id(net)).encode()).hexdigest()[:16]
        cache = False
    else:
        net_hash = net.file_hash
    smiles, ranks = _canonical(mol)
    result = None
    path = None
    if cache:
        cache_dir = default_cache_dir() if cache is True else Path(cache)
        path = _cache_path(cache_dir, smiles, net_hash)
        if path.is_file():
            result = _cache_load(path, mol, ranks)
    hit = result is not None
    if result is None:
        try:
            result = _run_model(mol, net, progress)
        except (KeyError, IndexError) as exc:
            raise ModelError(f"model {net.name!r} cannot handle this molecule: {exc}") from None
        if path is not None:
            try:
                _cache_store(path, result, ranks)
            except OSError:
                pass  # a read-only cache folder must not stop parameterization
    frags = [tuple(int(a) for a in f) for f in Chem.GetMolFrags(mol, asMols=False, sanitizeFrags=False)]
    return ParameterSet(
        symbols=[a.GetSymbol() for a in mol.GetAtoms()],
        charges=np.asarray(result["charges"], dtype=np.float64),
        covalent_pairs=covalent_pairs(mol)[0],
        intra_pairs=np.asarray(result["pairs"], dtype=np.int64).reshape(-1, 2),
        intra_parameters=np.asarray(result["intra"], dtype=np.float64).reshape(-1, N_PARAMETERS),
        atom_classes=np.asarray(result["classes"], dtype=np.int64),
        class_parameters=np.asarray(result["table"], dtype=np.float64),
        energy_offset=float(result["e_lin"]),
        switch=(float(net.config.r_on), float(net.config.r_off)),
        fragments=frags,
        smiles=smiles,
        model_name=net.name or "",
        model_hash=net_hash,
        metadata={"cache_hit": hit, "seconds": time.perf_counter() - t0},
        class_lj=np.asarray(result["lj"], dtype=np.float64).reshape(-1, 2) if len(result["lj"]) else None,
        lj_sigma_floor=float(net.config.lj_sigma_floor),
    )
