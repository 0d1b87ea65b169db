"""Data of the default model: the public reference sets, their fixed split, and labels made here.

The default model is trained on three public sets (``../shared/data``, read by
:mod:`.sources`):

- the drug-like conformer benchmark: B3LYP-D3BJ/def2-SVP total energies of
  about 10 conformers per molecule (the level the model targets);
- torsion drives: B3LYP-D3BJ/def2-SVP energies along 24-point dihedral scans;
- NCIAtlas dimers: CCSD(T)/CBS interaction energies along distance scans.

Each set is split by molecule (SMILES hash, :func:`.dataset.split_by_molecule`)
with its own fractions, so a molecule's conformers, a drive's points and a
dimer's distance scan stay together. :func:`public_splits` is the single
definition of that split, used by the training recipe and the accuracy report.

Labels made here:

- :func:`xtb_displacements`: for MD stability, randomly displaced copies of
  training conformers with GFN2-xTB forces. Their energy label is the
  reference conformer's DFT energy plus the GFN2-xTB energy change of the
  displacement, ``E_DFT(x0) + E_xTB(x) - E_xTB(x0)``: the public sets hold no
  forces and no geometries off their minima, which a pair potential needs to
  learn bond stiffness and the repulsive wall.
- :func:`xtb_bond_scans`: bonds stretched and compressed one at a time, same labels.
- :func:`xtb_md_samples`: frames of a trained model's own MD, same labels: where
  its MD goes wrong, they show the next phase what the energy really is.
- :func:`kd_inputs`: molecules for stage 1 (kinetic-energy partitions), labelled
  with :func:`.labelling.label` at a small-basis level.
- :func:`xtb_charged`: charged states (ammonium ions, carboxylates, zwitterions of
  the xtb-frames molecules, and the small ions of :data:`.sources.SMALL_CHARGED`)
  with plain GFN2-xTB energies and forces (level ``gfn2-xtb``: relative energies
  only), which the public sets and the xtb-frames lack.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, PhysFFError
from .data import XTBSampling, label_new_records, label_xtb
from .dataset import MoleculeRecord, split_by_molecule

__all__ = [
    "SOURCES",
    "PublicSplits",
    "read_public_sets",
    "public_splits",
    "xtb_displacements",
    "xtb_bond_scans",
    "xtb_md_samples",
    "kd_inputs",
    "charged_molecules",
    "charged_sampling",
    "xtb_charged",
]

logger = logging.getLogger(__name__)

#: Names of the public sets, as used in splits, configs and the accuracy report.
SOURCES = ("conformers", "torsions", "ncia")

#: Default split fractions (train, validation, test) per set. Torsion drives are
#: few (30), so a larger share is held out to make their test RMSE meaningful.
DEFAULT_FRACTIONS = {"conformers": (0.8, 0.1, 0.1), "torsions": (0.6, 0.1, 0.3), "ncia": (0.8, 0.1, 0.1)}
DEFAULT_SPLIT_SEED = 0


@dataclass
class PublicSplits:
    """Train / validation / test records of each public set (keys of :data:`SOURCES`)."""

    train: dict[str, list[MoleculeRecord]] = field(default_factory=dict)
    val: dict[str, list[MoleculeRecord]] = field(default_factory=dict)
    test: dict[str, list[MoleculeRecord]] = field(default_factory=dict)

    def part(self, which: str) -> list[MoleculeRecord]:
        """All records of one part (``"train"``, ``"val"`` or ``"test"``), sets concatenated."""
        if which not in ("train", "val", "test"):
            raise ConfigError(f"unknown split part {which!r}; valid: 'train', 'val', 'test'")
        d = getattr(self, which)
        return [r for s in SOURCES for r in d.get(s, [])]

    def counts(self) -> dict[str, dict[str, int]]:
        """Molecules (records) and conformers per set and part."""
        out: dict[str, dict[str, int]] = {}
        for which in ("train", "val", "test"):
            for s, recs in getattr(self, which).items():
                out.setdefault(s, {})[f"{which}_molecules"] = len(recs)
                out[s][f"{which}_conformers"] = int(sum(r.n_conformers for r in recs))
        return out


def read_public_sets(data_dir: str | Path, *, sets: Sequence[str] = SOURCES, limit: int | None = None) -> dict[str, list[MoleculeRecord]]:
    """Read the public sets from ``data_dir`` (the folder holding ``conformer-benchmark/`` and the rest).

    Parameters
    ----------
    data_dir : path
    sets : sequence of str
        Which of :data:`SOURCES` to read.
    limit : int, optional
        At most this many records per set (quick runs and tests).
    """
    from .sources import read_conformer_benchmark, read_ncia, read_torsion_drives

    data_dir = Path(data_dir)
    unknown = sorted(set(sets) - set(SOURCES))
    if unknown:
        raise ConfigError(f"unknown public sets {unknown}; valid: {list(SOURCES)}")
    if not data_dir.is_dir():
        raise ConfigError(f"data folder {str(data_dir)!r} does not exist (expected ../shared/data or similar)")
    readers = {
        "conformers": lambda: read_conformer_benchmark(data_dir / "conformer-benchmark", limit=limit),
        "torsions": lambda: read_torsion_drives(data_dir / "torsion-drives", limit=limit),
        "ncia": lambda: read_ncia(data_dir / "ncia-atlas", limit=limit),
    }
    return {s: readers[s]() for s in sets}


def public_splits(
    sets: dict[str, list[MoleculeRecord]],
    fractions: dict[str, Sequence[float]] | None = None,
    seed: int = DEFAULT_SPLIT_SEED,
) -> PublicSplits:
    """Split each set by molecule with its own fractions (defaults: :data:`DEFAULT_FRACTIONS`)."""
    fr = dict(DEFAULT_FRACTIONS)
    fr.update(fractions or {})
    out = PublicSplits()
    for name, records in sets.items():
        if name not in fr:
            raise ConfigError(f"no split fractions for set {name!r}")
        tr, va, te = split_by_molecule(records, fr[name], seed)
        out.train[name], out.val[name], out.test[name] = tr, va, te
    return out


# ============================================================================ GFN2-xTB displacements
def _displace_one(args) -> MoleculeRecord | None:
    """Displaced copies of a record's conformers with DFT-anchored GFN2-xTB labels (worker process)."""
    rec, n_samples, sigmas, max_conformers, max_e, seed = args
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(np.isfinite(rec.energy))
    if max_conformers and len(rows) > max_conformers:
        rows = np.sort(rng.choice(rows, size=max_conformers, replace=False))
    pos, es, fs, ids = [], [], [], []
    for k in rows:
        x0 = rec.positions[k]
        geoms = [x0 + rng.normal(scale=float(sigmas[t % len(sigmas)]), size=x0.shape) for t in range(n_samples)]
        names = [f"{rec.conformer_ids[k]}-d{t}" for t in range(n_samples)]
        for acc, got in zip((pos, es, fs, ids), _xtb_samples(rec, x0, float(rec.energy[k]), geoms, names, max_e)):
            acc.extend(got)
    return _anchored_record(rec, (pos, es, fs, ids), f"Gaussian displacements (sigma {list(sigmas)} Angstrom) of")


def xtb_displacements(
    records: Sequence[MoleculeRecord],
    out_path: str | Path,
    *,
    n_samples: int = 4,
    sigmas: Sequence[float] = (0.04, 0.08, 0.12),
    max_conformers: int = 2,
    max_energy_kcal_mol: float = 150.0,
    workers: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Write displaced, DFT-anchored GFN2-xTB samples of ``records`` to a shard (resumable).

    For each single-fragment record with energies, up to ``max_conformers``
    conformers get ``n_samples`` copies with every coordinate displaced by
    Gaussian noise (standard deviations cycling through ``sigmas``, Angstrom).
    Labels: GFN2-xTB forces, and energy ``E_ref(x0) + E_xTB(x) - E_xTB(x0)``
    (Hartree) with ``E_ref`` the record's own energy. Samples more than
    ``max_energy_kcal_mol`` above their conformer (by GFN2-xTB) are dropped.
    Records are written under their own names, so splits by molecule agree.
    """
    if n_samples < 1 or not len(sigmas) or any(float(s) <= 0 for s in sigmas):
        raise ConfigError(f"need n_samples >= 1 and positive sigmas, got {n_samples}, {list(sigmas)}")
    options = (int(n_samples), tuple(float(s) for s in sigmas), int(max_conformers), float(max_energy_kcal_mol))
    return label_new_records(_displace_one, records, out_path, options, workers=workers, seed=seed, require_energy=True)


def _choose_bonds(rec: MoleculeRecord, max_bonds: int, rng: np.random.Generator, candidates: np.ndarray | None = None) -> np.ndarray:
    """Up to ``max_bonds`` bonds (of ``candidates``, default all), one per bond type (element pair and order) first, in random order."""
    order_of = {tuple(sorted(b)): float(o) for b, o in zip(rec.bonds.tolist(), rec.bond_orders.tolist())}
    pool = rec.bonds if candidates is None else np.asarray(candidates).reshape(-1, 2)
    kinds: dict[tuple, list[int]] = {}
    for b, (i, j) in enumerate(pool.tolist()):
        kinds.setdefault((*sorted((int(rec.species[i]), int(rec.species[j]))), order_of[tuple(sorted((i, j)))]), []).append(b)
    first = [int(rng.choice(v)) for v in kinds.values()]
    rest = [b for b in range(len(pool)) if b not in set(first)]
    order = list(rng.permutation(first)) + list(rng.permutation(rest)) if rest else list(rng.permutation(first))
    return pool[np.asarray(order[:max_bonds], dtype=int)]


def _xtb_samples(rec: MoleculeRecord, x0: np.ndarray, e_ref: float, geoms, ids, max_e: float):
    """Anchored GFN2-xTB labels of ``geoms`` around ``x0``: (positions, energies, forces, ids) kept.

    Energies are ``e_ref + E_xTB(x) - e0`` (Hartree) with ``e0`` the GFN2-xTB energy at
    ``x0``; geometries more than ``max_e`` kcal/mol above ``e0`` are dropped.
    """
    from ..units import HARTREE_TO_KCAL
    from .xtb import xtb_energy_forces

    z = rec.species.astype(int)
    out: tuple[list, list, list, list] = ([], [], [], [])
    try:
        e0, _ = xtb_energy_forces(z, x0, rec.total_charge)
    except PhysFFError as exc:
        logger.warning("%s: %s", rec.name, exc)
        return out
    for x, cid in zip(geoms, ids):
        try:
            e, f = xtb_energy_forces(z, x, rec.total_charge)
        except PhysFFError:
            continue
        if (e - e0) * HARTREE_TO_KCAL > max_e:
            continue
        for lst, v in zip(out, (x, e_ref + (e - e0), f, cid)):
            lst.append(v)
    return out


def _anchored_record(rec: MoleculeRecord, samples, what: str) -> MoleculeRecord | None:
    """A record of the kept (positions, energies, forces, ids) samples; None when there are none."""
    pos, es, fs, ids = samples
    if not pos:
        return None
    return rec.with_conformers(
        np.stack(pos), energy=np.asarray(es), forces=np.stack(fs), conformer_ids=list(ids), level=f"{rec.level}+delta(gfn2-xtb)",
        source=f"{what} {rec.source.split(':')[0]} conformers; "
        f"energy E_ref(x0) + E_GFN2-xTB(x) - E_GFN2-xTB(x0), GFN2-xTB forces (tblite); {rec.smiles}",
    )


def _bond_scan_one(args) -> MoleculeRecord | None:
    """Bond scans around a record's lowest conformer with DFT-anchored GFN2-xTB labels (worker process)."""
    rec, fractions, max_bonds, max_e, rigid, seed = args
    from .data import bond_scan_geometries, bond_side

    rows = np.flatnonzero(np.isfinite(rec.energy))
    if not len(rows) or not len(rec.bonds):
        return None
    k = int(rows[np.argmin(rec.energy[rows])])
    if rigid:  # bonds outside rings only: their far side can move away as a whole
        keep = [b for b, (i, j) in enumerate(rec.bonds.tolist()) if bond_side(rec.n_atoms, rec.bonds, i, j) is not None]
        if not keep:
            return None
        rec_b = rec.bonds[keep]
    else:
        rec_b = rec.bonds
    bonds = _choose_bonds(rec, max_bonds, np.random.default_rng(seed), candidates=rec_b)
    geoms = bond_scan_geometries(rec.positions[k], bonds, fractions, all_bonds=rec.bonds if rigid else None)
    ids = [f"{rec.conformer_ids[k]}-bond{i}_{j}-{t}" for i, j in bonds.tolist() for t in range(len(fractions))]
    samples = _xtb_samples(rec, rec.positions[k], float(rec.energy[k]), geoms, ids, max_e)
    what = "rigid-fragment bond scans" if rigid else "bond scans"
    return _anchored_record(rec, samples, f"{what} (fractions {list(fractions)}) around the lowest")


def xtb_bond_scans(
    records: Sequence[MoleculeRecord],
    out_path: str | Path,
    *,
    fractions: Sequence[float] = (-0.2, -0.1, 0.15, 0.35, 0.6, 0.9),
    max_bonds: int = 4,
    max_energy_kcal_mol: float = 150.0,
    rigid: bool = False,
    workers: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Write bond scans with DFT-anchored GFN2-xTB labels of ``records`` to a shard (resumable).

    Around each single-fragment record's lowest conformer, up to ``max_bonds``
    bonds (one of each element pair and bond order first) are stretched or
    compressed one at a time to r0 (1 + f) for each f in ``fractions``
    (:func:`.data.bond_scan_geometries`); labels as in :func:`xtb_displacements`.
    They teach the covalent pair terms a well: without them the pair potential
    of a bond need not rise when the bond stretches, and MD breaks bonds.
    With ``rigid``, bonds outside rings are scanned by moving the smaller
    fragment on one side as a whole: a dissociation path.
    """
    if max_bonds < 1 or not len(fractions):
        raise ConfigError(f"need max_bonds >= 1 and some fractions, got {max_bonds}, {list(fractions)}")
    options = (tuple(float(f) for f in fractions), int(max_bonds), float(max_energy_kcal_mol), bool(rigid))
    return label_new_records(_bond_scan_one, records, out_path, options, workers=workers, seed=seed, require_energy=True)


# ============================================================================ the model's own MD
def _md_sample_one(args) -> MoleculeRecord | None:
    """Frames of Langevin MD with ``model`` from a record's lowest conformer, DFT-anchored GFN2-xTB labels (worker process)."""
    rec, model, time_ps, n_frames, temperature_k, max_e, seed = args
    import openmm
    import openmm.unit as u

    from ..parameters import parameterize
    from ..system import create_system
    from ..units import ANGSTROM_TO_NM, NM_TO_ANGSTROM

    rows = np.flatnonzero(np.isfinite(rec.energy))
    if not len(rows):
        return None
    k = int(rows[np.argmin(rec.energy[rows])])
    x0 = rec.positions[k]
    try:
        params = parameterize(rec.to_rdkit(), model=model, cache=False)
    except PhysFFError as exc:
        logger.warning("%s: %s", rec.name, exc)
        return None
    system = create_system(params, backend="native")
    integ = openmm.LangevinMiddleIntegrator(temperature_k * u.kelvin, 1.0 / u.picosecond, 1.0 * u.femtosecond)
    integ.setRandomNumberSeed(int(seed) % 2**31)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    ctx.setPositions(x0 * ANGSTROM_TO_NM)
    ctx.setVelocitiesToTemperature(temperature_k * u.kelvin, int(seed) % 2**31)
    steps = max(1, round(time_ps * 1000.0 / n_frames))
    geoms = []
    for _ in range(n_frames):
        try:
            integ.step(steps)
        except openmm.OpenMMException:  # the model's MD blew up: keep the frames before
            break
        x = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(u.nanometer) * NM_TO_ANGSTROM
        if not np.all(np.isfinite(x)):
            break
        geoms.append(np.asarray(x, dtype=np.float64))
    ids = [f"{rec.conformer_ids[k]}-md{t}" for t in range(len(geoms))]
    samples = _xtb_samples(rec, x0, float(rec.energy[k]), geoms, ids, max_e)
    what = f"frames of {time_ps:g} ps {temperature_k:g} K Langevin MD with model {Path(str(model)).name} from the lowest"
    return _anchored_record(rec, samples, what)


def xtb_md_samples(
    records: Sequence[MoleculeRecord],
    out_path: str | Path,
    model: str | Path,
    *,
    time_ps: float = 2.0,
    n_frames: int = 8,
    temperature_k: float = 400.0,
    max_energy_kcal_mol: float = 150.0,
    workers: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Write frames of a model's own MD with DFT-anchored GFN2-xTB labels to a shard (resumable).

    From each single-fragment record's lowest conformer, ``model`` (name or file)
    runs ``time_ps`` of Langevin MD (native backend, 1 fs, friction 1/ps) at
    ``temperature_k``; ``n_frames`` evenly spaced frames (up to the first
    non-finite one) get GFN2-xTB forces and the anchored energy of
    :func:`xtb_displacements`; frames more than ``max_energy_kcal_mol`` above the
    conformer (GFN2-xTB) are dropped. Where the model's MD goes wrong (a bond that
    stretches too far, atoms that come too close) the frames show it, and their
    labels tell the next training phase what the energy really is there: the
    usual way to make a learned potential stable in MD.
    """
    if time_ps <= 0 or n_frames < 1 or temperature_k <= 0:
        raise ConfigError(f"need time_ps > 0, n_frames >= 1 and temperature_k > 0, got {time_ps}, {n_frames}, {temperature_k}")
    from ..registry import load_model

    load_model(model)  # a bad name or file fails here, before any worker starts
    options = (str(model), float(time_ps), int(n_frames), float(temperature_k), float(max_energy_kcal_mol))
    return label_new_records(_md_sample_one, records, out_path, options, workers=workers, seed=seed, require_energy=True)


# ============================================================================ stage-1 inputs
def kd_inputs(records: Sequence[MoleculeRecord], *, max_atoms: int = 40, per_record: int = 1) -> list[tuple[str, Any]]:
    """(name, RDKit molecule with conformers) for stage-1 labelling of the first conformers of records.

    Records with more than ``max_atoms`` atoms or with several fragments are left out.
    """
    out = []
    for r in records:
        if r.n_atoms > max_atoms or r.fragments is not None or not r.n_conformers:
            continue
        mol = r.to_rdkit()
        keep = list(range(min(per_record, r.n_conformers)))
        for cid in [c.GetId() for c in mol.GetConformers()]:
            if cid not in keep:
                mol.RemoveConformer(cid)
        out.append((r.name, mol))
    return out


# ============================================================================ charged states
#: Order in which :func:`charged_molecules` takes the variants: the rare kinds first.
_CHARGED_KIND_ORDER = ("zwitterion", "carboxylate", "ammonium")


def charged_molecules(
    xtb_frames: str | Path | None,
    n_molecules: int,
    *,
    max_atoms: int = 60,
    seed: int = 0,
    small: bool = True,
) -> list[tuple[str, str]]:
    """(name, SMILES) of charged molecules to label with GFN2-xTB.

    First the small ions and zwitterions of :data:`.sources.SMALL_CHARGED`
    (named ``charged_<name>``), then the charged variants
    (:func:`.sources.charged_variants`) of the xtb-frames molecules, named
    ``charged_<group>_<kind>_<site>`` (e.g. ``charged_m000123_ammonium_7``):
    zwitterions, then carboxylates, then ammonium ions (anions and zwitterions
    are rare), each kind in the order of a seeded shuffle of the molecules.
    A variant whose canonical SMILES came earlier is left out. The list for a
    larger ``n_molecules`` extends the smaller one, so a shard labelled for the
    smaller one resumes.

    Parameters
    ----------
    xtb_frames : path or None
        The xtb-frames folder or file (only its ``mapped_smiles`` are read);
        None: the small molecules only.
    n_molecules : int
        Length of the list (fewer when the sources run out).
    max_atoms : int
        Variants with more atoms (hydrogens included) are left out.
    seed : int
        Shuffle seed.
    small : bool
        Start with :data:`.sources.SMALL_CHARGED`.

    Returns
    -------
    list of (str, str)
        Names (unique) and canonical SMILES.
    """
    from rdkit import Chem

    from .sources import SMALL_CHARGED, charged_variants, xtb_frames_smiles

    if n_molecules < 0 or max_atoms < 1:
        raise ConfigError(f"need n_molecules >= 0 and max_atoms >= 1, got {n_molecules}, {max_atoms}")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def n_atoms(smiles: str) -> int:
        return Chem.AddHs(Chem.MolFromSmiles(smiles)).GetNumAtoms()

    for name, smiles in SMALL_CHARGED if small else ():
        canonical = Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
        if canonical not in seen and n_atoms(canonical) <= max_atoms:
            seen.add(canonical)
            out.append((f"charged_{name}", canonical))
    if xtb_frames is None or len(out) >= n_molecules:
        return out[:n_molecules]
    groups = xtb_frames_smiles(xtb_frames)
    order = np.random.default_rng(seed).permutation(len(groups))
    by_kind: dict[str, list[tuple[str, str]]] = {k: [] for k in _CHARGED_KIND_ORDER}
    for g in order.tolist():
        gname, mapped = groups[g]
        for v in charged_variants([mapped]):
            if v.smiles in seen or n_atoms(v.smiles) > max_atoms:
                continue
            seen.add(v.smiles)
            by_kind[v.kind].append((f"charged_{gname}_{v.kind}_{'_'.join(map(str, v.site))}", v.smiles))
    for kind in _CHARGED_KIND_ORDER:
        out.extend(by_kind[kind])
    return out[:n_molecules]


def charged_sampling(
    *,
    n_conformers: int = 2,
    opt_steps: int = 20,
    n_md: int = 2,
    md_temperature_k: float = 500.0,
    md_stride: int = 10,
    n_noise: int = 2,
    noise_sigmas: Sequence[float] = (0.02, 0.035),
    n_bond_scans: int = 2,
    compress: Sequence[float] = (0.75, 0.85),
    stretch: Sequence[float] = (1.2, 1.5),
    solvent: str | None = "water",
    max_energy_kcal_mol: float = 150.0,
    seed: int = 0,
) -> XTBSampling:
    """The per-molecule sampling of :func:`xtb_charged`: about 14 frames, a few seconds of one core.

    Per RDKit conformer (``n_conformers``, pruned when rigid): a short GFN2-xTB
    relaxation (``opt_steps`` L-BFGS steps), ``n_md`` snapshots of MD started at
    ``md_temperature_k`` (every ``md_stride`` steps of 0.5 fs) and ``n_noise``
    copies with Cartesian noise (``noise_sigmas``, Angstrom); around the lowest
    conformer, ``n_bond_scans`` bonds to H (the N-H of an ammonium first), each
    compressed to ``compress`` and stretched to ``stretch`` of its length once.
    Geometries are made with ALPB implicit ``solvent`` (None: gas phase), where a
    zwitterion keeps its protons; frames whose bonds changed are dropped, and
    frames more than ``max_energy_kcal_mol`` above the molecule's lowest. Labels:
    gas-phase GFN2-xTB. See :class:`.data.XTBSampling` for each field.
    """
    return XTBSampling(
        n_conformers=int(n_conformers), n_md=int(n_md), md_temperature_k=float(md_temperature_k), n_normal_modes=0,
        seed=int(seed), n_noise=int(n_noise), noise_sigmas=tuple(float(x) for x in noise_sigmas),
        n_bond_scans=int(n_bond_scans), compress=tuple(float(x) for x in compress), stretch=tuple(float(x) for x in stretch),
        opt_steps=int(opt_steps), md_stride=int(md_stride), max_energy_kcal_mol=float(max_energy_kcal_mol),
        check_bonds=True, solvent=solvent or None,
    )


def xtb_charged(
    out_path: str | Path,
    xtb_frames: str | Path | None,
    n_molecules: int,
    *,
    max_atoms: int = 60,
    sampling: XTBSampling | None = None,
    workers: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Label charged molecules with GFN2-xTB energies and forces into a shard (resumable).

    The molecules of :func:`charged_molecules` (``xtb_frames``, ``n_molecules``,
    ``max_atoms``, ``seed``), sampled as ``sampling`` says (default
    :func:`charged_sampling` with ``seed``) by :func:`.data.label_xtb`: each
    molecule is written as soon as it is labelled, and molecules already
    complete in the shard are skipped. Level ``gfn2-xtb``: training uses their
    forces and relative energies, not their total energies.

    Returns
    -------
    dict
        ``molecules`` listed, ``molecules_labelled`` now, ``geometries_written``, ``skipped`` names.
    """
    molecules = charged_molecules(xtb_frames, n_molecules, max_atoms=max_atoms, seed=seed)
    info = label_xtb(molecules, out_path, sampling or charged_sampling(seed=seed), workers=workers)
    return {"molecules": len(molecules), **info}


# ============================================================================ torsion drives
def torsion_molecules(
    xtb_frames: str | Path,
    n_molecules: int,
    *,
    charged_fraction: float = 0.25,
    max_atoms: int = 60,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """(name, SMILES) of molecules whose rotatable bonds :func:`xtb_torsions` drives.

    The xtb-frames molecules in the order of a seeded shuffle, named like
    their frames (``xtb_<group>``, so that a validation molecule of the
    frames stays in validation), with ``charged_fraction`` of the list taken
    from :func:`charged_molecules` (same names as there, small ions left
    out). The list for a larger ``n_molecules`` extends the smaller one
    where ``charged_fraction`` is unchanged.
    """
    from .sources import xtb_frames_smiles

    if n_molecules < 0 or not 0.0 <= charged_fraction <= 1.0:
        raise ConfigError(f"torsion drives: need n_molecules >= 0 and charged_fraction in [0, 1], got {n_molecules}, {charged_fraction}")
    # position k is charged where floor((k + 1) f) > floor(k f): the same mix in every prefix
    is_charged = [int((k + 1) * charged_fraction) > int(k * charged_fraction) for k in range(n_molecules)]
    n_charged = sum(is_charged)
    charged = charged_molecules(xtb_frames, n_charged, max_atoms=max_atoms, seed=seed + 1, small=False) if n_charged else []
    groups = xtb_frames_smiles(xtb_frames)
    order = np.random.default_rng(seed).permutation(len(groups)).tolist()
    neutral = iter((f"xtb_{groups[g][0]}", groups[g][1]) for g in order)
    charged_iter = iter(charged)
    out = [next(charged_iter, None) if c else next(neutral, None) for c in is_charged]
    return [m for m in out if m is not None]


def torsion_sampling(
    *,
    n_scans: int = 2,
    step_deg: float = 30.0,
    opt_steps: int = 10,
    max_energy_kcal_mol: float = 60.0,
    seed: int = 0,
) -> XTBSampling:
    """The per-molecule sampling of :func:`xtb_torsions`: about 25 frames, 1-2 s of one core.

    One RDKit conformer, relaxed by ``opt_steps`` L-BFGS steps of GFN2-xTB;
    ``n_scans`` of its rotatable bonds driven in ``step_deg`` steps with
    MMFF94 relaxing the rest at each fixed dihedral; frames whose bonds
    changed are dropped, and frames more than ``max_energy_kcal_mol`` above
    the molecule's lowest. Labels: gas-phase GFN2-xTB energies and forces.
    """
    return XTBSampling(
        n_conformers=1, n_md=0, n_normal_modes=0, opt_steps=int(opt_steps), n_torsion_scans=int(n_scans),
        torsion_step_deg=float(step_deg), max_energy_kcal_mol=float(max_energy_kcal_mol), check_bonds=True, seed=int(seed),
    )


def xtb_torsions(
    out_path: str | Path,
    xtb_frames: str | Path,
    n_molecules: int,
    *,
    charged_fraction: float = 0.25,
    max_atoms: int = 60,
    sampling: XTBSampling | None = None,
    workers: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Label torsion drives of drug-like molecules with GFN2-xTB energies and forces (resumable shard).

    The molecules of :func:`torsion_molecules`, sampled as ``sampling`` says
    (default :func:`torsion_sampling`) by :func:`.data.label_xtb`. Level
    ``gfn2-xtb``: training uses the forces and the energies relative within a
    molecule, which carry the shapes of its torsion profiles.

    Returns
    -------
    dict
        ``molecules`` listed, ``molecules_labelled`` now, ``geometries_written``, ``skipped`` names.
    """
    molecules = torsion_molecules(xtb_frames, n_molecules, charged_fraction=charged_fraction, max_atoms=max_atoms, seed=seed)
    info = label_xtb(molecules, out_path, sampling or torsion_sampling(seed=seed), workers=workers)
    return {"molecules": len(molecules), **info}
