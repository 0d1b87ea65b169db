"""Training data: dataset records -> graphs -> batches, the Lightning data module,
and GFN2-xTB-labelled data sets (``physff-openmm label --level gfn2-xtb``).

Units: the shards hold Hartree and Hartree/Angstrom (see :mod:`.keys`); the graphs
built here hold the model's units, converted once, when a graph is built:

``pos``          (n_atoms, 3) float64 | Angstrom
``energy``       (1,) float64 | kcal/mol, total energy (NaN where absent)
``forces``       (n_atoms, 3) float64 | kcal/mol/Angstrom (NaN where absent)
``has_forces``   (1,) bool | the conformer has forces
``kd_total``     (1,) float64 | Hartree, Tr(DK) = sum_i kd_atom_i + sum_{i<j} kd_pair_ij (NaN where absent)
``interaction``  (1,) float64 | kcal/mol, E(AB) - sum E(fragments) (NaN where absent)
``ref_charges``  (n_atoms,) float64 | e, the record's ``charge_target`` (NaN where absent)
``charged_monomer`` (1,) bool | the record has fragments (a dimer) and one of them has a net charge
``mol_id``       (1,) long | position of the molecule's record in the data set
``conf_id``      (1,) long | conformer row in that record

Splits are always by molecule (:func:`~physff_openmm.training.dataset.split_by_molecule`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DependencyError, PhysFFError
from ..graph import ELEMENTS, MolGraph, mol_to_graph, resonance_structures
from ..units import HARTREE_TO_KCAL
from .dataset import MoleculeRecord, read_dataset, split_by_molecule
from .keys import XTB_LEVEL

try:
    import lightning.pytorch as pl
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise DependencyError("training needs Lightning: pip install 'physff-openmm[train]'") from _exc

__all__ = [
    "XTB_LEVEL",
    "record_to_graphs",
    "records_to_graphs",
    "element_counts",
    "make_loader",
    "PhysFFDataModule",
    "XTBSampling",
    "label_xtb",
    "bond_scan_geometries",
    "rotatable_torsions",
    "torsion_drive_geometries",
]

logger = logging.getLogger(__name__)


# ============================================================================ records -> graphs
def _kd_total(record: MoleculeRecord) -> np.ndarray:
    """Tr(DK) per conformer, Hartree (NaN where absent)."""
    c = record.n_conformers
    if record.kd_atom is None:
        return np.full(c, np.nan)
    total = record.kd_atom.sum(axis=1)
    if record.kd_pair is not None:
        iu, ju = np.triu_indices(record.n_atoms, 1)
        total = total + record.kd_pair[:, iu, ju].sum(axis=1)
    return total


def has_absolute_energies(record: MoleculeRecord) -> bool:
    """Whether a record's total energies are on the target level's scale (E_lin is fitted to them).

    Plain GFN2-xTB energies (level ``gfn2-xtb``) are not: they teach relative
    energies and forces only; every other level's are.
    """
    return record.level != XTB_LEVEL


def record_to_graphs(
    record: MoleculeRecord,
    *,
    with_pairs: bool = True,
    mol_id: int = 0,
    conformers: Sequence[int] | None = None,
    resonance: bool = False,
) -> list[MolGraph]:
    """One graph per conformer of a record, labels converted to kcal/mol and kcal/mol/Angstrom.

    Parameters
    ----------
    record : MoleculeRecord
    with_pairs : bool
        Store every atom pair (needed for energies; stage 1 does without).
    mol_id : int
        Stored in ``mol_id`` of every graph.
    conformers : sequence of int, optional
        Rows to use (default: all).
    resonance : bool
        Features averaged over the resonance structures (:func:`physff_openmm.graph.resonance_structures`),
        for a model with ``resonance_features``.

    Returns
    -------
    list of MolGraph
        Fields as in the module docstring.
    """
    mol = record.to_rdkit()
    template = mol_to_graph(mol, with_pairs=with_pairs, structures=resonance_structures(mol) if resonance else None)
    energy = np.asarray(record.energy, dtype=np.float64) * HARTREE_TO_KCAL
    inter = np.asarray(record.interaction_energy, dtype=np.float64) * HARTREE_TO_KCAL
    forces = None if record.forces is None else record.forces * HARTREE_TO_KCAL
    kd = _kd_total(record)
    ref_charges = torch.from_numpy(
        np.full(record.n_atoms, np.nan) if record.charge_target is None else np.asarray(record.charge_target, dtype=np.float64)
    )
    absolute = has_absolute_energies(record)
    charged_monomer = record.fragments is not None and any(
        int(record.formal_charges[record.fragments == f].sum()) != 0 for f in np.unique(record.fragments)
    )
    rows = range(record.n_conformers) if conformers is None else conformers
    out = []
    for k in rows:
        g = template.clone()
        g.pos = torch.from_numpy(np.ascontiguousarray(record.positions[k], dtype=np.float64))
        g.energy = torch.tensor([energy[k]], dtype=torch.float64)
        if forces is not None and np.all(np.isfinite(forces[k])):
            g.forces = torch.from_numpy(np.ascontiguousarray(forces[k]))
            g.has_forces = torch.tensor([True])
        else:
            g.forces = torch.full((record.n_atoms, 3), float("nan"), dtype=torch.float64)
            g.has_forces = torch.tensor([False])
        g.absolute = torch.tensor([absolute])
        g.kd_total = torch.tensor([kd[k]], dtype=torch.float64)
        g.interaction = torch.tensor([inter[k]], dtype=torch.float64)
        g.ref_charges = ref_charges.clone()
        g.charged_monomer = torch.tensor([charged_monomer])
        g.mol_id = torch.tensor([mol_id], dtype=torch.long)
        g.conf_id = torch.tensor([k], dtype=torch.long)
        out.append(g)
    return out


def records_to_graphs(
    records: Sequence[MoleculeRecord],
    *,
    with_pairs: bool = True,
    require: str | None = None,
    mol_ids: Sequence[int] | None = None,
    resonance: bool = False,
) -> list[MolGraph]:
    """Graphs of every conformer of every record.

    Parameters
    ----------
    records : sequence of MoleculeRecord
    with_pairs : bool
        See :func:`record_to_graphs`.
    require : {"energy", "kd", "any", None}
        Keep only conformers that have this label (``"any"``: an energy, an
        interaction energy or forces).
    mol_ids : sequence of int, optional
        ``mol_id`` of each record's graphs (default: its position in ``records``).
    resonance : bool
        See :func:`record_to_graphs`.

    Raises
    ------
    MoleculeError
        A record's topology does not sanitize.
    """
    out = []
    for m, rec in enumerate(records):
        if require == "energy":
            rows = np.flatnonzero(np.isfinite(rec.energy))
        elif require == "kd":
            rows = np.flatnonzero(np.isfinite(_kd_total(rec)))
        elif require == "any":  # an energy, an interaction energy or forces
            has_f = np.zeros(rec.n_conformers, bool) if rec.forces is None else np.isfinite(rec.forces).all(axis=(1, 2))
            rows = np.flatnonzero(np.isfinite(rec.energy) | np.isfinite(rec.interaction_energy) | has_f)
        elif require is None:
            rows = np.arange(rec.n_conformers)
        else:
            raise ConfigError(f"unknown label requirement {require!r}; valid: 'energy', 'kd', 'any', None")
        if len(rows):
            mid = m if mol_ids is None else int(mol_ids[m])
            out.extend(record_to_graphs(rec, with_pairs=with_pairs, mol_id=mid, conformers=rows.tolist(), resonance=resonance))
    return out


def element_counts(graphs: Sequence[MolGraph]) -> np.ndarray:
    """(n_graphs, n_elements + 1) design matrix: atoms per element and the number of fragments."""
    out = np.zeros((len(graphs), len(ELEMENTS) + 1))
    for k, g in enumerate(graphs):
        out[k, : len(ELEMENTS)] = np.bincount(g.species.numpy(), minlength=len(ELEMENTS))
        out[k, -1] = g.fragment_charge.numel()
    return out


class MoleculeBatchSampler(torch.utils.data.Sampler):
    """Batches of whole molecules: all graphs of a ``mol_id`` land in the same batch.

    Molecules are shuffled each epoch (seeded) and packed in that order until a
    batch holds at least ``batch_size`` graphs (a molecule larger than that is a
    batch of its own), so every batch can compare conformers of the same molecule.
    """

    def __init__(self, mol_ids: Sequence[int], batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0):
        groups: dict[int, list[int]] = {}
        for k, m in enumerate(mol_ids):
            groups.setdefault(int(m), []).append(k)
        self.groups = list(groups.values())
        self.batch_size = max(1, int(batch_size))
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = int(epoch)  # the next shuffle's: epoch k's order depends on seed + k only

    def _batches(self, order) -> list[list[int]]:
        out, cur = [], []
        for g in order:
            cur.extend(self.groups[g])
            if len(cur) >= self.batch_size:
                out.append(cur)
                cur = []
        if cur:
            out.append(cur)
        return out

    def __iter__(self):
        order = np.arange(len(self.groups))
        if self.shuffle:
            np.random.default_rng(self.seed + self.epoch).shuffle(order)
            self.epoch += 1
        yield from self._batches(order)

    def __len__(self) -> int:
        return len(self._batches(range(len(self.groups))))


def make_loader(
    graphs: Sequence[MolGraph], batch_size: int, shuffle: bool = False, num_workers: int = 0, seed: int = 0, group: bool = False,
    epoch: int = 0,
):
    """A torch_geometric DataLoader over graphs (deterministic shuffling for a given seed).

    With ``group``, batches hold whole molecules (:class:`MoleculeBatchSampler` over ``mol_id``), shuffled
    for epochs ``epoch``, ``epoch + 1``, ... as a run from epoch 0 shuffles them (a resumed run's order).
    """
    from torch_geometric.loader import DataLoader

    if group:
        sampler = MoleculeBatchSampler([int(g.mol_id) for g in graphs], batch_size, shuffle=shuffle, seed=seed, epoch=epoch)
        return DataLoader(list(graphs), batch_sampler=sampler, num_workers=int(num_workers), persistent_workers=num_workers > 0)
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return DataLoader(
        list(graphs),
        batch_size=int(batch_size),
        shuffle=shuffle,
        num_workers=int(num_workers),
        generator=gen if shuffle else None,
        persistent_workers=num_workers > 0,
    )


# ============================================================================ data module
class PhysFFDataModule(pl.LightningDataModule):
    """HDF5 shards -> train/validation/test graphs, split by molecule.

    Parameters
    ----------
    paths : path or list of paths
        Shard files or folders of shards.
    stage : {"embed", "energy"}
        ``"embed"`` keeps conformers with kinetic-energy labels and builds graphs
        without pair lists; ``"energy"`` keeps conformers with energies and lists every pair.
    batch_size : int
    split : (float, float, float)
        Train, validation and test fractions (by molecule).
    seed : int
        Split and shuffling seed.
    num_workers : int
        DataLoader worker processes.
    records : list of MoleculeRecord, optional
        Use these records instead of reading ``paths``.
    splits : (train, validation, test) lists of MoleculeRecord, optional
        A split made beforehand (e.g. :func:`.recipe.public_splits`); ``split`` is then ignored.
    group_by_molecule : bool
        Training batches hold all conformers of whole molecules (for the
        relative-energy loss); ``batch_size`` is then the target number of
        conformers per batch (a molecule larger than that forms its own batch).
    resonance : bool
        Graphs with features averaged over resonance structures (:func:`record_to_graphs`), for
        a model with ``resonance_features``.
    """

    def __init__(
        self,
        paths=None,
        *,
        stage: str = "energy",
        batch_size: int = 16,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        num_workers: int = 0,
        records: list[MoleculeRecord] | None = None,
        splits: tuple[Sequence[MoleculeRecord], Sequence[MoleculeRecord], Sequence[MoleculeRecord]] | None = None,
        group_by_molecule: bool = False,
        resonance: bool = False,
    ):
        super().__init__()
        if stage not in ("embed", "energy"):
            raise ConfigError(f"unknown stage {stage!r}; valid: 'embed', 'energy'")
        if paths is None and records is None and splits is None:
            raise ConfigError("PhysFFDataModule needs shard paths, records or splits")
        if splits is not None:
            if len(splits) != 3:
                raise ConfigError("splits must be (train, validation, test) lists of records")
            records = [r for part in splits for r in part]
        self._splits = None if splits is None else tuple(list(p) for p in splits)
        self.group_by_molecule = bool(group_by_molecule)
        self.resonance = bool(resonance)
        self.paths = paths
        self.stage = stage
        self.batch_size = int(batch_size)
        self.split = tuple(float(x) for x in split)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self._records = records
        self.train_records: list[MoleculeRecord] = []
        self.val_records: list[MoleculeRecord] = []
        self.test_records: list[MoleculeRecord] = []
        self.train_graphs: list[MolGraph] = []
        self.val_graphs: list[MolGraph] = []
        self.test_graphs: list[MolGraph] = []
        self._ready = False
        self._train_epoch = 0  # the epoch the next training loader starts shuffling for (load_state_dict)
        self._train_sampler: MoleculeBatchSampler | None = None

    @property
    def records(self) -> list[MoleculeRecord]:
        if self._records is None:
            self._records = read_dataset(self.paths)
        return self._records

    def setup(self, stage: str | None = None) -> None:  # noqa: D102 - Lightning hook
        if self._ready:
            return
        records = self.records
        if not records:
            raise ConfigError(f"no molecules in {self.paths}")
        if self._splits is not None:
            train, val, test = self._splits
        else:
            train, val, test = split_by_molecule(records, self.split, self.seed)
        if not train:
            raise ConfigError(
                f"the split {self.split} left no training molecules out of {len(records)}; "
                "add molecules or change the fractions"
            )
        if not val:  # tiny data sets: validate on the training molecules rather than on nothing
            logger.warning("no validation molecules in the split; validating on the training set")
        require = "kd" if self.stage == "embed" else "any"
        pairs = self.stage == "energy"
        self.train_records, self.val_records, self.test_records = train, val, test
        index = {id(r): k for k, r in enumerate(records)}  # mol_id: position in the whole data set

        def graphs(part):
            return records_to_graphs(part, with_pairs=pairs, require=require, mol_ids=[index[id(r)] for r in part],
                                     resonance=self.resonance)

        self.train_graphs = graphs(train)
        self.val_graphs = graphs(val or train)
        self.test_graphs = graphs(test)
        if not self.train_graphs:
            label = "kinetic-energy (kd_atom/kd_pair)" if self.stage == "embed" else "energy"
            raise ConfigError(f"no training conformer carries {label} labels in {self.paths}")
        self._ready = True

    def train_dataloader(self):  # noqa: D102
        if self.group_by_molecule:
            loader = make_loader(self.train_graphs, self.batch_size, shuffle=True, num_workers=self.num_workers,
                                 seed=self.seed, group=True, epoch=self._train_epoch)
            self._train_sampler = loader.batch_sampler
            return loader
        return make_loader(self.train_graphs, self.batch_size, shuffle=True, num_workers=self.num_workers, seed=self.seed)

    def state_dict(self) -> dict:
        """Saved in Lightning's checkpoints: the epoch the training batches are shuffled for next, so
        that a resumed run (:func:`~physff_openmm.training.stage1.fit_module`) sees the batches the
        uninterrupted one would (``group_by_molecule`` loaders; the others restart their shuffling)."""
        sampler = self._train_sampler
        return {"train_epoch": int(sampler.epoch if sampler is not None else self._train_epoch)}

    def load_state_dict(self, state_dict: dict) -> None:  # noqa: D102 - Lightning hook, before train_dataloader
        self._train_epoch = int(state_dict.get("train_epoch", 0))

    def val_dataloader(self):  # noqa: D102
        return make_loader(self.val_graphs, self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self):  # noqa: D102
        return make_loader(self.test_graphs, self.batch_size, num_workers=self.num_workers)

    def provenance(self) -> dict:
        """Counts and sources of the data (for model metadata)."""
        recs = self.records
        return {
            "shards": [str(p) for p in ([self.paths] if isinstance(self.paths, (str, Path)) else (self.paths or []))],
            "levels": sorted({r.level for r in recs}),
            "sources": sorted({r.source.split(";")[0] for r in recs})[:20],
            "n_molecules": len(recs),
            "n_conformers": int(sum(r.n_conformers for r in recs)),
            "n_train_molecules": len(self.train_records),
            "n_val_molecules": len(self.val_records),
            "n_test_molecules": len(self.test_records),
            "n_train_conformers": len(self.train_graphs),
            "split": list(self.split),
            "split_seed": self.seed,
        }


# ============================================================================ GFN2-xTB data sets
#: Lengths (multiples of the bond's) to which bond pulls stretch a bond to H, and the changes
#: (degrees; negative closes) by which angle bends turn an angle H-X-Y: the defaults of
#: :class:`XTBSampling`, :func:`~physff_openmm.training.recipe.pull_sampling` and the recipe's
#: ``bond_pulls:`` section.
PULL_LENGTHS = (1.4, 1.8, 2.2, 2.7)
BEND_DEGREES = (-40.0, -20.0, 20.0, 40.0)
#: Lengths (multiples of the bond's) to which heavy-atom pulls stretch an acyclic bond between two
#: heavy atoms: the defaults of :class:`XTBSampling` and the recipe's ``heavy_pulls:`` section.
HEAVY_PULL_LENGTHS = (1.15, 1.3, 1.5, 1.8)
#: Lengths (multiples of the bond's) to which cleavages take an acyclic bond between two heavy atoms,
#: from beyond the heavy-atom pulls to the two sides apart: the defaults of :class:`XTBSampling` and the
#: recipe's ``cleavages:`` section.
CLEAVE_LENGTHS = (2.2, 2.6, 3.0, 4.0, 7.0)


@dataclass
class XTBSampling:
    """How many geometries :func:`label_xtb` makes per molecule.

    Attributes
    ----------
    n_conformers : int
        RDKit conformers, each minimized with GFN2-xTB.
    n_md : int
        Snapshots of GFN2-xTB MD per minimized conformer.
    md_temperature_k : float
        Initial temperature of that MD, K.
    n_normal_modes : int
        Thermal normal-mode displacements per minimized conformer.
    normal_mode_temperature_k : float
        Temperature of those displacements, K.
    seed : int
    n_noise : int
        Copies of each minimized conformer with Gaussian Cartesian noise
        (standard deviations cycling through ``noise_sigmas``, Angstrom).
    noise_sigmas : tuple of float
        Angstrom.
    n_bond_scans : int
        Bonds to hydrogen of the lowest minimized conformer, each compressed once
        and stretched once (only the H moves): H on a charged atom first (the
        N-H of an ammonium), then H on N, O, S or P, then C-H; distinct heavy
        atoms first within each class.
    compress, stretch : (float, float)
        Ranges of the compressed and stretched lengths, as fractions of the
        bond's length (drawn uniformly).
    opt_steps : int
        L-BFGS iterations of each conformer's GFN2-xTB minimization (a few
        tens: a short relaxation).
    md_stride : int
        MD steps (0.5 fs) between snapshots.
    max_energy_kcal_mol : float or None
        Drop geometries more than this above the molecule's lowest one
        (GFN2-xTB); None keeps all.
    check_bonds : bool
        Drop minimized conformers, MD snapshots and noisy copies whose bonds
        perceived from the coordinates are not the molecule's
        (:func:`~.sources.connectivity_matches`): a proton that moved, e.g.
        within a zwitterion in the gas phase. Bond scans are not checked.
    solvent : str or None
        Make the geometries (minimization, MD, normal modes) on the GFN2-xTB +
        ALPB implicit-solvent surface of this tblite solvent (e.g. ``"water"``),
        where zwitterions keep their protons; the labels stay gas-phase GFN2-xTB.
    n_torsion_scans : int
        Rotatable bonds (:func:`rotatable_torsions`) of the lowest minimized
        conformer, each driven through 360 degrees in steps of
        ``torsion_step_deg`` (:func:`torsion_drive_geometries`: MMFF94 relaxes
        everything but the dihedral); the frames are checked like MD snapshots.
    torsion_step_deg : float
        Degrees between the points of a drive (a divisor of 360).
    n_bond_pulls : int
        Bonds to hydrogen of the lowest minimized conformer pulled apart
        (:func:`_pull_bonds`: heteroatom-H and C-H in turn), each to every
        length of ``pull`` (only the H moves): the dissociation profile, which
        must stay uphill for MD to keep its bonds.
    pull : tuple of float
        Lengths of the pulled bonds, as multiples of their length (each > 1).
    n_angle_bends : int
        Angles H-X-Y of the lowest minimized conformer bent (:func:`bend_angles`,
        :func:`bend_angle_geometries`: the H turns about X in the angle's plane,
        its bond length kept) by each change of ``bend``: how the energy of a
        hydrogen's angles rises far from their minimum, both ways, which thermal
        frames barely reach and MD at 2 fs visits.
    bend : tuple of float
        Changes of the bent angles, degrees (non-zero; negative closes, positive
        opens; an angle opens to 175 degrees at most).
    n_heavy_pulls : int
        Acyclic bonds between heavy atoms of the lowest minimized conformer
        (:func:`heavy_pull_bonds`: those at a charged atom first) pulled apart,
        each to every length of ``heavy_pull`` (:func:`fragment_pull_geometries`:
        the fragment on one side moves as a whole, so only that bond stretches).
    heavy_pull : tuple of float
        Lengths of those bonds, as multiples of their length (each > 1).
    n_cleavages : int
        As ``n_heavy_pulls`` (other bonds, drawn anew) to every length of ``cleave``, out to the
        two sides apart. Such a frame is labelled with the lower of two GFN2-xTB states, the
        closed shell and the high-spin one with two unpaired electrons per broken bond order
        (:func:`cleavage_spin`): the first holds near the bond's length, the second once the
        sides are radicals, so that the labels follow the bond to its dissociation energy.
    cleave : tuple of float
        Lengths of the cleaved bonds, as multiples of their length (each > 1).
    """

    n_conformers: int = 3
    n_md: int = 12
    md_temperature_k: float = 600.0
    n_normal_modes: int = 8
    normal_mode_temperature_k: float = 500.0
    seed: int = 0
    n_noise: int = 0
    noise_sigmas: tuple[float, ...] = (0.02, 0.04)
    n_bond_scans: int = 0
    compress: tuple[float, float] = (0.75, 0.85)
    stretch: tuple[float, float] = (1.2, 1.5)
    opt_steps: int = 500
    md_stride: int = 20
    max_energy_kcal_mol: float | None = None
    check_bonds: bool = False
    solvent: str | None = None
    n_torsion_scans: int = 0
    torsion_step_deg: float = 30.0
    n_bond_pulls: int = 0
    pull: tuple[float, ...] = PULL_LENGTHS
    n_angle_bends: int = 0
    bend: tuple[float, ...] = BEND_DEGREES
    n_heavy_pulls: int = 0
    heavy_pull: tuple[float, ...] = HEAVY_PULL_LENGTHS
    n_cleavages: int = 0
    cleave: tuple[float, ...] = CLEAVE_LENGTHS

    def __post_init__(self) -> None:
        counts = (self.n_conformers, self.n_md, self.n_normal_modes, self.n_noise, self.n_bond_scans, self.n_torsion_scans,
                  self.n_bond_pulls, self.n_angle_bends, self.n_heavy_pulls, self.n_cleavages)
        if self.n_conformers < 1 or min(counts) < 0 or self.opt_steps < 1 or self.md_stride < 1:
            raise ConfigError(
                "XTBSampling: need n_conformers, opt_steps and md_stride >= 1 and non-negative sample counts, "
                f"got {self}"
            )
        if self.n_noise and (not len(self.noise_sigmas) or min(self.noise_sigmas) <= 0):
            raise ConfigError(f"XTBSampling: noise_sigmas must be positive, got {self.noise_sigmas}")
        lo_c, hi_c = self.compress
        lo_s, hi_s = self.stretch
        if not (0 < lo_c <= hi_c <= 1 <= lo_s <= hi_s):
            raise ConfigError(f"XTBSampling: need 0 < compress <= 1 <= stretch ranges, got {self.compress}, {self.stretch}")
        n_points = 360.0 / self.torsion_step_deg if self.torsion_step_deg > 0 else 0.0
        if n_points < 2 or abs(n_points - round(n_points)) > 1e-9:
            raise ConfigError(f"XTBSampling: torsion_step_deg must divide 360 in 2 or more steps, got {self.torsion_step_deg}")
        for n, pull in ((self.n_bond_pulls, self.pull), (self.n_heavy_pulls, self.heavy_pull), (self.n_cleavages, self.cleave)):
            if n and (not len(pull) or min(pull) <= 1.0):
                raise ConfigError(f"XTBSampling: pull lengths must be multiples > 1 of the bond length, got {pull}")
        if self.n_angle_bends and (not len(self.bend) or not all(0.0 < abs(d) < 90.0 for d in self.bend)):
            raise ConfigError(f"XTBSampling: angle bends must be non-zero changes below 90 degrees, got {self.bend}")


def rotatable_torsions(mol, n_torsions: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Up to ``n_torsions`` dihedrals (i, j, k, l) about distinct rotatable bonds j-k of ``mol``.

    A rotatable bond is single, in no ring, and joins two atoms that each have
    another heavy neighbour and no triple bond (so no methyl, hydroxyl or
    amino rotor: those barriers come from the other frames). ``i`` and ``l``
    are the heaviest other neighbours of ``j`` and ``k``. Bonds are taken in
    a random order (``rng``).
    """
    from rdkit import Chem

    def heavy_others(atom, other: int) -> list:
        return [nb for nb in atom.GetNeighbors() if nb.GetAtomicNum() > 1 and nb.GetIdx() != other]

    out = []
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtom(), bond.GetEndAtom()
        if bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing():
            continue
        if any(x.GetAtomicNum() == 1 or not heavy_others(x, y.GetIdx()) for x, y in ((a, b), (b, a))):
            continue
        if any(nb.GetBondType() == Chem.BondType.TRIPLE for x in (a, b) for nb in x.GetBonds()):
            continue
        i = max(heavy_others(a, b.GetIdx()), key=lambda x: (x.GetAtomicNum(), -x.GetIdx())).GetIdx()
        l = max(heavy_others(b, a.GetIdx()), key=lambda x: (x.GetAtomicNum(), -x.GetIdx())).GetIdx()
        out.append((i, a.GetIdx(), b.GetIdx(), l))
    return [out[k] for k in rng.permutation(len(out))[:n_torsions]]


def torsion_drive_geometries(mol, x0: np.ndarray, torsion: tuple[int, int, int, int], step_deg: float, *, max_iters: int = 500) -> list[tuple[float, np.ndarray]]:
    """A relaxed drive of ``torsion`` from geometry ``x0`` (Angstrom): (angle, positions) per point.

    Every ``step_deg`` degrees from the dihedral's value in ``x0`` around the
    circle, the dihedral is set (the atoms on the l side rotate) and MMFF94
    minimizes everything else with the dihedral held by a stiff restraint;
    each point starts from the previous one. A point whose minimization
    cannot be set up (an atom MMFF94 does not type) ends the drive.
    """
    from rdkit import Chem
    from rdkit.Chem import rdForceFieldHelpers, rdMolTransforms
    from rdkit.Geometry import Point3D

    m = Chem.Mol(mol)
    m.RemoveAllConformers()
    conf = Chem.Conformer(m.GetNumAtoms())
    for a, (x, y, z) in enumerate(np.asarray(x0, dtype=float).tolist()):
        conf.SetAtomPosition(a, Point3D(x, y, z))
    m.AddConformer(conf, assignId=True)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(m)
    if props is None:
        return []
    conf = m.GetConformer()
    start = rdMolTransforms.GetDihedralDeg(conf, *torsion)
    out = []
    for k in range(int(round(360.0 / step_deg))):
        angle = (start + k * step_deg + 180.0) % 360.0 - 180.0
        rdMolTransforms.SetDihedralDeg(conf, *torsion, angle)
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(m, props)
        ff.MMFFAddTorsionConstraint(*torsion, False, angle, angle, 1.0e4)
        ff.Minimize(maxIts=max_iters)
        out.append((angle, np.array(conf.GetPositions())))
    return out


def _xh_bonds(mol, n_bonds: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to ``n_bonds`` (heavy atom, H) bonds in the order of :attr:`XTBSampling.n_bond_scans`."""
    tiers: dict[int, list[tuple[int, int]]] = {0: [], 1: [], 2: []}
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() == 1:
            continue
        tier = 0 if atom.GetFormalCharge() != 0 else 1 if atom.GetAtomicNum() in (7, 8, 15, 16) else 2
        for nb in atom.GetNeighbors():
            if nb.GetAtomicNum() == 1:
                tiers[tier].append((atom.GetIdx(), nb.GetIdx()))
    out: list[tuple[int, int]] = []
    for tier in (0, 1, 2):
        bonds = [tiers[tier][k] for k in rng.permutation(len(tiers[tier]))]
        heavy = {i for i, _ in out}
        bonds.sort(key=lambda b: b[0] in heavy)  # stable: distinct heavy atoms first
        out.extend(bonds)
    return out[:n_bonds]


def _pull_bonds(mol, n_bonds: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to ``n_bonds`` (heavy atom, H) bonds to pull apart: one on a heteroatom or charged atom, one
    on a neutral carbon, in turn (each list in the order of :func:`_xh_bonds`)."""
    order = _xh_bonds(mol, mol.GetNumAtoms(), rng)

    def on_carbon(bond: tuple[int, int]) -> bool:
        atom = mol.GetAtomWithIdx(bond[0])
        return atom.GetAtomicNum() == 6 and atom.GetFormalCharge() == 0

    carbon = [b for b in order if on_carbon(b)]
    other = [b for b in order if not on_carbon(b)]
    out = [lst[k] for k in range(max(len(carbon), len(other))) for lst in (other, carbon) if k < len(lst)]
    return out[:n_bonds]


def heavy_pull_bonds(mol, n_bonds: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to ``n_bonds`` acyclic bonds (i, j) between heavy atoms to pull apart: first those with
    an atom that is charged or bonded to a charged atom (the C-C of a carboxylate, the C-N of an
    ammonium), then the others, each group in a random order (``rng``); ``j`` is the end on the
    side with fewer atoms, the fragment that :func:`fragment_pull_geometries` moves."""
    near, far = [], []
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtom(), bond.GetEndAtom()
        if bond.IsInRing() or a.GetAtomicNum() == 1 or b.GetAtomicNum() == 1:
            continue
        charged = any(x.GetFormalCharge() or any(nb.GetFormalCharge() for nb in x.GetNeighbors()) for x in (a, b))
        i, j = a.GetIdx(), b.GetIdx()
        if len(_fragment(mol, i, j)) > len(_fragment(mol, j, i)):
            i, j = j, i
        (near if charged else far).append((i, j))
    out = [grp[k] for grp in (near, far) for k in rng.permutation(len(grp))]
    return out[:n_bonds]


def cleavage_spin(mol, bond: tuple[int, int]) -> int:
    """Unpaired electrons of the high-spin state of ``mol`` with ``bond`` broken: two per bond order
    (a triplet for a single bond, a quintet for a double bond), each side keeping one per order."""
    return 2 * int(round(mol.GetBondBetweenAtoms(*map(int, bond)).GetBondTypeAsDouble()))


def _fragment(mol, i: int, j: int) -> list[int]:
    """The atoms reached from j without crossing the bond i-j (j included; i too where the bond is in a ring)."""
    seen, todo = {j}, [j]
    while todo:
        a = todo.pop()
        for nb in mol.GetAtomWithIdx(a).GetNeighbors():
            k = nb.GetIdx()
            if (a, k) != (j, i) and k not in seen:
                seen.add(k)
                todo.append(k)
    return sorted(seen)


def fragment_pull_geometries(mol, positions: np.ndarray, bond: tuple[int, int], factors: Sequence[float]) -> np.ndarray:
    """Geometries with the acyclic bond (i, j) at each of ``factors`` times its length: the fragment on
    j's side moves as a whole along the bond, so that no other bond or angle inside either fragment
    changes. (n_factors, n_atoms, 3) Angstrom."""
    i, j = bond
    side = _fragment(mol, i, j)
    if i in side:
        raise PhysFFError(f"bond {i}-{j} is in a ring: pulling it apart would break the ring")
    d = positions[j] - positions[i]
    out = []
    for f in factors:
        g = positions.copy()
        g[side] += d * (float(f) - 1.0)
        out.append(g)
    return np.asarray(out).reshape(-1, *positions.shape)


def bend_angles(mol, n_angles: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Up to ``n_angles`` angles (H, X, Y) to bend: the H of :func:`_pull_bonds`' bonds in that
    order, each with a random other neighbour Y of its atom X (a hydrogen where X has another)."""
    out = []
    for x, h in _pull_bonds(mol, mol.GetNumAtoms(), rng):
        others = [nb.GetIdx() for nb in mol.GetAtomWithIdx(x).GetNeighbors() if nb.GetIdx() != h]
        if not others:
            continue
        hydrogens = [y for y in others if mol.GetAtomWithIdx(y).GetAtomicNum() == 1]
        pool = hydrogens if hydrogens and len(out) % 2 == 0 else others
        out.append((h, x, int(pool[rng.integers(len(pool))])))
    return out[:n_angles]


#: The widest angle (degrees) to which :func:`bend_angle_geometries` opens an angle.
MAX_BENT_ANGLE_DEG = 175.0


def bend_angle_geometries(positions: np.ndarray, angle: tuple[int, int, int], changes_deg: Sequence[float]) -> np.ndarray:
    """Geometries with angle (h, x, y) changed by each of ``changes_deg`` (degrees; negative
    closes): h turns about x in the plane of the angle, its distance to x kept, everything else
    stays; an angle opens to :data:`MAX_BENT_ANGLE_DEG` at most. (n_changes, n_atoms, 3) Angstrom."""
    h, x, y = angle
    u, v = positions[h] - positions[x], positions[y] - positions[x]
    a = np.linalg.norm(u)
    v_hat = v / np.linalg.norm(v)
    w = u - (u @ v_hat) * v_hat
    if np.linalg.norm(w) < 1e-6 * a:  # a linear angle: any plane through x-y
        w = np.cross(v_hat, np.eye(3)[int(np.argmin(np.abs(v_hat)))])
    w_hat = w / np.linalg.norm(w)
    theta0 = np.degrees(np.arccos(np.clip(u @ v_hat / a, -1.0, 1.0)))
    out = []
    for d in changes_deg:
        t = np.radians(np.clip(theta0 + d, 1.0, MAX_BENT_ANGLE_DEG))
        g = positions.copy()
        g[h] = positions[x] + a * (np.cos(t) * v_hat + np.sin(t) * w_hat)
        out.append(g)
    return np.asarray(out)


def _xtb_molecule(args) -> MoleculeRecord | None:
    """Label one molecule (run in a worker process)."""
    name, smiles, sampling = args
    import warnings

    from ..molecule import load_molecule
    from .conformers import generate_conformers, optimize_conformers_xtb
    from .sources import connectivity_matches
    from .xtb import sample_off_equilibrium, xtb_lowest_state

    try:
        mol = load_molecule(smiles)
    except PhysFFError as exc:
        logger.warning("skipping %s (%s): %s", name, smiles, exc)
        return None
    charge = int(sum(a.GetFormalCharge() for a in mol.GetAtoms()))
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    rng_seed = sampling.seed + sum(map(ord, name)) % 100_000  # deterministic per name
    try:
        confs = generate_conformers(mol, sampling.n_conformers, seed=rng_seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            confs, minima_e = optimize_conformers_xtb(confs, charge, max_steps=sampling.opt_steps, solvent=sampling.solvent)
    except PhysFFError as exc:
        logger.warning("skipping %s (%s): %s", name, smiles, exc)
        return None

    def bonded(x) -> bool:
        return not sampling.check_bonds or connectivity_matches(mol, x)

    positions, ids = [], []
    lowest, lowest_e, minima = None, np.inf, {}
    for c, conf in enumerate(confs.GetConformers()):
        x0 = np.asarray(conf.GetPositions())
        if not bonded(x0):
            logger.warning("%s: conformer %d changed its bonds in the GFN2-xTB minimization; dropped", name, c)
            continue
        positions.append(x0)
        ids.append(f"c{c}")
        minima[c] = x0
        if minima_e[c] < lowest_e:
            lowest, lowest_e = c, minima_e[c]
        samples: list[tuple[str, np.ndarray]] = []
        if sampling.n_md:
            md = sample_off_equilibrium(
                numbers, x0, charge, sampling.n_md, method="md", temperature_k=sampling.md_temperature_k, seed=rng_seed + c,
                stride=sampling.md_stride, solvent=sampling.solvent,
            )
            samples += [(f"c{c}-md{k}", x) for k, x in enumerate(md)]
        if sampling.n_normal_modes:
            nm = sample_off_equilibrium(
                numbers,
                x0,
                charge,
                sampling.n_normal_modes,
                method="normal_modes",
                temperature_k=sampling.normal_mode_temperature_k,
                seed=rng_seed + 1000 + c,
                solvent=sampling.solvent,
            )
            samples += [(f"c{c}-nm{k}", x) for k, x in enumerate(nm)]
        if sampling.n_noise:
            rng = np.random.default_rng(rng_seed + 2000 + c)
            sig = sampling.noise_sigmas
            samples += [(f"c{c}-n{k}", x0 + rng.normal(scale=float(sig[k % len(sig)]), size=x0.shape)) for k in range(sampling.n_noise)]
        for cid, x in samples:
            if bonded(x):
                positions.append(x)
                ids.append(cid)
    if lowest is not None and sampling.n_bond_scans:
        x0 = minima[lowest]
        rng = np.random.default_rng(rng_seed + 3000)
        for i, j in _xh_bonds(mol, sampling.n_bond_scans, rng):
            ratios = (rng.uniform(*sampling.compress), rng.uniform(*sampling.stretch))
            for tag, x in zip(("c", "s"), bond_scan_geometries(x0, np.array([[i, j]]), [r - 1.0 for r in ratios])):
                positions.append(x)
                ids.append(f"c{lowest}-bond{i}_{j}-{tag}")
    if lowest is not None and sampling.n_bond_pulls:
        x0 = minima[lowest]
        rng = np.random.default_rng(rng_seed + 5000)
        for i, j in _pull_bonds(mol, sampling.n_bond_pulls, rng):
            pulled = bond_scan_geometries(x0, np.array([[i, j]]), [f - 1.0 for f in sampling.pull])
            for f, x in zip(sampling.pull, pulled):
                positions.append(x)
                ids.append(f"c{lowest}-pull{i}_{j}-{f:g}")
    spins: dict[int, int] = {}  # frame -> unpaired electrons of the state labelled beside the closed shell
    for n, lengths, offset, tag, apart in ((sampling.n_heavy_pulls, sampling.heavy_pull, 7000, "hpull", False),
                                           (sampling.n_cleavages, sampling.cleave, 8000, "cleave", True)):
        if lowest is None or not n:
            continue
        rng = np.random.default_rng(rng_seed + offset)
        for i, j in heavy_pull_bonds(mol, n, rng):
            for f, x in zip(lengths, fragment_pull_geometries(mol, minima[lowest], (i, j), lengths)):
                if apart:  # cleaved out to the two sides apart: the high-spin state is labelled too
                    spins[len(positions)] = cleavage_spin(mol, (i, j))
                positions.append(x)
                ids.append(f"c{lowest}-{tag}{i}_{j}-{f:g}")
    if lowest is not None and sampling.n_angle_bends:
        rng = np.random.default_rng(rng_seed + 6000)
        for angle in bend_angles(mol, sampling.n_angle_bends, rng):
            for d, x in zip(sampling.bend, bend_angle_geometries(minima[lowest], angle, sampling.bend)):
                positions.append(x)
                ids.append(f"c{lowest}-bend{'_'.join(map(str, angle))}-{d:+g}")
    if lowest is not None and sampling.n_torsion_scans:
        rng = np.random.default_rng(rng_seed + 4000)
        for t in rotatable_torsions(mol, sampling.n_torsion_scans, rng):
            for angle, x in torsion_drive_geometries(mol, minima[lowest], t, sampling.torsion_step_deg):
                if bonded(x):
                    positions.append(x)
                    ids.append(f"c{lowest}-tor{'_'.join(map(str, t))}-{angle:.0f}")
    energies, forces, keep = [], [], []
    for k, x in enumerate(positions):
        try:  # a cleaved bond's frame: the lower of the closed shell and the high-spin state
            e, f = xtb_lowest_state(numbers, x, charge, (None, spins[k]) if k in spins else (None,))
        except PhysFFError as exc:
            logger.warning("%s %s: %s", name, ids[k], exc)
            continue
        energies.append(e)
        forces.append(f)
        keep.append(k)
    if sampling.max_energy_kcal_mol is not None and energies:
        e = np.asarray(energies)
        low = np.flatnonzero((e - e.min()) * HARTREE_TO_KCAL <= sampling.max_energy_kcal_mol)
        energies, forces, keep = [energies[k] for k in low], [forces[k] for k in low], [keep[k] for k in low]
    if not keep:
        return None
    what = ["RDKit ETKDGv3 conformers", f"GFN2-xTB (tblite) minima ({sampling.opt_steps} L-BFGS steps at most)"]
    if sampling.solvent:
        what[1] = f"GFN2-xTB + ALPB({sampling.solvent}) minima ({sampling.opt_steps} L-BFGS steps at most), geometries sampled in ALPB"
    if sampling.n_md:
        what.append(f"MD ({sampling.md_temperature_k:g} K start, a frame every {sampling.md_stride * 0.5:g} fs)")
    if sampling.n_normal_modes:
        what.append("normal-mode samples")
    if sampling.n_noise:
        what.append(f"Gaussian noise ({', '.join(f'{x:g}' for x in sampling.noise_sigmas)} Angstrom)")
    if sampling.n_bond_scans:
        what.append(
            f"X-H bonds compressed to {sampling.compress[0]:g}-{sampling.compress[1]:g} and stretched to "
            f"{sampling.stretch[0]:g}-{sampling.stretch[1]:g} of their length"
        )
    if sampling.n_bond_pulls:
        what.append(
            f"{sampling.n_bond_pulls} bonds to H pulled to {', '.join(f'{x:g}' for x in sampling.pull)} times their length"
        )
    if sampling.n_heavy_pulls:
        what.append(
            f"{sampling.n_heavy_pulls} acyclic bonds between heavy atoms pulled to "
            f"{', '.join(f'{x:g}' for x in sampling.heavy_pull)} times their length (one side moving as a whole)"
        )
    if sampling.n_cleavages:
        what.append(
            f"{sampling.n_cleavages} acyclic bonds between heavy atoms cleaved to "
            f"{', '.join(f'{x:g}' for x in sampling.cleave)} times their length (one side moving as a whole; "
            "the lower of the closed-shell and the high-spin state)"
        )
    if sampling.n_angle_bends:
        what.append(
            f"{sampling.n_angle_bends} angles H-X-Y bent by {', '.join(f'{x:+g}' for x in sampling.bend)} degrees"
        )
    if sampling.n_torsion_scans:
        what.append(
            f"drives of up to {sampling.n_torsion_scans} rotatable bonds in {sampling.torsion_step_deg:g} degree steps "
            "(MMFF94 relaxation at each fixed dihedral)"
        )
    if sampling.max_energy_kcal_mol is not None:
        what.append(f"frames within {sampling.max_energy_kcal_mol:g} kcal/mol of the lowest")
    what.append("labels: gas-phase GFN2-xTB (tblite) energies and forces")
    return MoleculeRecord.from_rdkit(
        mol,
        name,
        positions=np.stack([positions[k] for k in keep]),
        energy=np.asarray(energies),
        forces=np.stack(forces),
        conformer_ids=[ids[k] for k in keep],
        level=XTB_LEVEL,
        source=f"{', '.join(what)}; {smiles}",
    )


def bond_scan_geometries(positions: np.ndarray, bonds: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Geometries with one bond stretched or compressed at a time.

    For every bond (i, j) and every fraction f, atom j moves along the bond so that
    the bond length becomes r0 (1 + f); everything else stays. These teach a pair
    potential the repulsive wall and the stretch of covalent bonds, which thermal
    samples at 300-600 K barely reach.

    Parameters
    ----------
    positions : (n_atoms, 3) Angstrom, a minimum
    bonds : (n_bonds, 2) zero-based
    fractions : relative changes of the bond length, e.g. (-0.22, -0.11, 0.12, 0.3)

    Returns
    -------
    (n_bonds * len(fractions), n_atoms, 3) Angstrom
    """
    out = []
    for i, j in np.asarray(bonds).reshape(-1, 2).tolist():
        d = positions[j] - positions[i]
        for f in fractions:
            x = positions.copy()
            x[j] += d * float(f)
            out.append(x)
    return np.asarray(out).reshape(-1, *positions.shape)


def _map_in_workers(func, items: list, workers: int):
    """``func`` over ``items``, results in order: in ``workers`` spawned processes, else here.

    Each worker runs one OpenMP thread: tblite oversubscribes otherwise (10x slower on
    2 cores). OMP_NUM_THREADS is read by each spawned worker as it starts, then restored.
    """
    if workers <= 1 or len(items) <= 1:
        yield from map(func, items)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        with ProcessPoolExecutor(max_workers=int(workers), mp_context=multiprocessing.get_context("spawn")) as pool:
            yield from pool.map(func, items)
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def label_xtb(
    molecules: Iterable[tuple[str, str]],
    out_path: str | Path,
    sampling: XTBSampling | None = None,
    *,
    workers: int = 1,
) -> dict:
    """Label molecules with GFN2-xTB energies and forces and write them to a shard.

    Parameters
    ----------
    molecules : iterable of (name, smiles)
    out_path : path
        Shard to write; molecules already complete in it are skipped (resumable).
    sampling : XTBSampling
    workers : int
        Processes.

    Returns
    -------
    dict
        Counts: molecules, geometries, skipped names.
    """

    from .dataset import ShardWriter, safe_name

    sampling = sampling or XTBSampling()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with ShardWriter(out_path) as w:
        done = w.completed_names()
    todo = [(n, s, sampling) for n, s in molecules if safe_name(n) not in done]
    skipped: list[str] = []
    n_geoms = 0
    with ShardWriter(out_path) as w:
        for (name, _, _), rec in zip(todo, _map_in_workers(_xtb_molecule, todo, workers)):
            if rec is None:
                skipped.append(name)
                continue
            added = w.write_record(rec)
            n_geoms += added
            logger.info("%s: %d geometries written to %s", name, added, out_path)
    return {"molecules_labelled": len(todo) - len(skipped), "geometries_written": n_geoms, "skipped": skipped}
