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

Labels made here, all through :func:`.data.label_xtb` (GFN2-xTB energies and forces,
level ``gfn2-xtb``: forces and energies relative within a molecule):

- :func:`xtb_charged`: charged states (ammonium ions, carboxylates, zwitterions of
  the xtb-frames molecules, and the small ions of :data:`.sources.SMALL_CHARGED`),
  which the public sets and the xtb-frames lack;
- :func:`xtb_drug_like` with :func:`torsion_sampling`: torsion drives of rotatable bonds of
  xtb-frames molecules and their charged variants, which the xtb-frames sample only at their
  conformers; with :func:`pull_sampling`: bonds to H of such molecules pulled to up to 2.7
  times their length, which no other source stretches past 1.5 times, and (``n_heavy``)
  acyclic bonds between heavy atoms, a charged group's first, pulled to up to 1.8 times;
- :func:`kd_inputs`: molecules for stage 1 (kinetic-energy partitions), labelled
  with :func:`.labelling.label` at a small-basis level.

And one shard at the target level, through :func:`.labelling.label` (PySCF, gpu4pyscf
on a GPU): :func:`dft_torsions`, B3LYP-D3BJ/def2-SVP energies and forces of the
torsion-drive frames of neutral molecules of the GFN2-xTB torsion drives.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from .data import BEND_DEGREES, CLEAVE_LENGTHS, HEAVY_PULL_LENGTHS, PULL_LENGTHS, XTBSampling, label_xtb
from .dataset import MoleculeRecord, pack_shard, read_dataset, split_by_molecule

__all__ = [
    "SOURCES",
    "PublicSplits",
    "read_public_sets",
    "public_splits",
    "kd_inputs",
    "charged_molecules",
    "CHARGED_SHARDS",
    "section_signature",
    "recipe_signature",
    "shard_path",
    "pack_recipe_shard",
    "split_charged_shard",
    "charged_sampling",
    "xtb_charged",
    "torsion_molecules",
    "torsion_sampling",
    "pull_sampling",
    "xtb_drug_like",
    "dft_torsion_inputs",
    "dft_torsions",
]

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
#: Order in which :func:`charged_molecules` takes the variants by default: the rare kinds first.
_CHARGED_KIND_ORDER = ("zwitterion", "carboxylate", "ammonium")


def charged_molecules(
    xtb_frames: str | Path | None,
    n_molecules: int,
    *,
    max_atoms: int = 60,
    seed: int = 0,
    small: bool = True,
    kinds: Sequence[str] = _CHARGED_KIND_ORDER,
) -> list[tuple[str, str]]:
    """(name, SMILES) of charged molecules to label with GFN2-xTB.

    First the small ions and zwitterions of :data:`.sources.SMALL_CHARGED`
    (named ``charged_<name>``), then the charged variants
    (:func:`.sources.charged_variants`) of the xtb-frames molecules, named
    ``charged_<group>_<kind>_<site>`` (e.g. ``charged_m000123_ammonium_7``):
    one kind after the other in the order of ``kinds`` (by default
    zwitterions, then carboxylates, then ammonium ions: anions and zwitterions
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
    kinds : sequence of str
        Kinds of variant (of :data:`.sources.CHARGED_KINDS`), in the order they are taken.

    Returns
    -------
    list of (str, str)
        Names (unique) and canonical SMILES.
    """
    from rdkit import Chem

    from .sources import CHARGED_KINDS, SMALL_CHARGED, charged_variants, xtb_frames_smiles

    if n_molecules < 0 or max_atoms < 1:
        raise ConfigError(f"need n_molecules >= 0 and max_atoms >= 1, got {n_molecules}, {max_atoms}")
    unknown = sorted(set(kinds) - set(CHARGED_KINDS))
    if unknown or not kinds:
        raise ConfigError(f"charged kinds must be some of {', '.join(CHARGED_KINDS)}, got {list(kinds)}")
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
    by_kind: dict[str, list[tuple[str, str]]] = {k: [] for k in kinds}
    flags = {"amines": "ammonium" in kinds, "acids": "carboxylate" in kinds, "zwitterions": "zwitterion" in kinds,
             "sulfonamides": "sulfonamide" in kinds, "phenols": "phenolate" in kinds, "aromatic_n": "aromatic_n" in kinds}
    for g in order.tolist():
        gname, mapped = groups[g]
        for v in charged_variants([mapped], **flags):
            if v.smiles in seen or n_atoms(v.smiles) > max_atoms:
                continue
            seen.add(v.smiles)
            by_kind[v.kind].append((f"charged_{gname}_{v.kind}_{'_'.join(map(str, v.site))}", v.smiles))
    for kind in kinds:
        out.extend(by_kind[kind])
    return out[:n_molecules]


#: The recipe's sections of charged molecules (:class:`.config.ChargedConfig`), each labelled into ``work_dir/<key>.h5``.
CHARGED_SHARDS = ("charged", "ions")


#: The attribute of a packed shard that holds the config section it was labelled with.
SECTION_ATTR = "recipe_section"
#: Section fields that change how fast a shard is made, not what it holds.
_RUN_ONLY_FIELDS = ("workers",)


def section_signature(section) -> str:
    """JSON of a shard's config section without the fields that only set how it runs (``workers``).

    Configs hold typed values (:func:`.config.load_config` makes a ``list[float]`` of YAML
    integers floats), so the same section written either way signs the same.
    """
    values = {k: v for k, v in dataclasses.asdict(section).items() if k not in _RUN_ONLY_FIELDS}
    return json.dumps(values, sort_keys=True)


#: Shards labelled from another shard of the recipe: their signature includes that shard's section.
SHARD_SOURCES = {"dft_torsions": "torsion_scans"}


def recipe_signature(cfg, key: str) -> str:
    """:func:`section_signature` of shard ``key``'s section in recipe ``cfg``, with that of the
    shard it is labelled from (:data:`SHARD_SOURCES`), so that a changed source refuses it too."""
    own = section_signature(getattr(cfg, key))
    if key not in SHARD_SOURCES:
        return own
    src = SHARD_SOURCES[key]
    return json.dumps({key: json.loads(own), src: json.loads(section_signature(getattr(cfg, src)))}, sort_keys=True)


def shard_path(cfg, key: str) -> Path:
    """Where recipe ``cfg`` reads label shard ``key``: its packed copy in ``cfg.shard_dir``
    when there is one, else ``cfg.work_dir/<key>.h5``.

    Raises
    ------
    ConfigError
        If the packed copy was labelled with another config section than ``cfg``'s
        (delete it, or restore the section, to go on).
    """
    labelled = Path(cfg.work_dir) / f"{key}.h5"
    if not cfg.shard_dir:
        return labelled
    packed = Path(cfg.shard_dir) / f"{key}.h5"
    if not packed.is_file():
        return labelled
    import h5py

    with h5py.File(packed, "r") as f:
        stored = f.attrs.get(SECTION_ATTR, "")
    stored = stored.decode() if isinstance(stored, bytes) else str(stored)
    expected = recipe_signature(cfg, key)
    if stored != expected:
        raise ConfigError(
            f"{packed} was labelled with {key}: {stored or '(no record)'}, not with this recipe's "
            f"{key}: {expected}; delete it, and {labelled} if present (labelling resumes from it), "
            "to label the shard again"
        )
    return packed


def pack_recipe_shard(cfg, key: str) -> dict[str, Any]:
    """Pack shard ``key`` labelled in ``cfg.work_dir`` into ``cfg.shard_dir`` (created if missing), signed with
    its config section, where :func:`shard_path` finds it; ``file`` and the counts of
    :func:`.dataset.pack_shard`."""
    packed = Path(cfg.shard_dir) / f"{key}.h5"
    packed.parent.mkdir(parents=True, exist_ok=True)
    counts = pack_shard(Path(cfg.work_dir) / f"{key}.h5", packed, {SECTION_ATTR: recipe_signature(cfg, key)})
    return {"file": str(packed), **counts}


def split_charged_shard(path: str | Path, section) -> tuple[list[MoleculeRecord], list[MoleculeRecord]]:
    """Training and validation records of a labelled charged shard, split by molecule as its config section says
    (``val_fraction``, ``seed``)."""
    v = section.val_fraction
    train, val, _ = split_by_molecule(read_dataset(path), (1.0 - v, v, 0.0), section.seed)
    return train, val


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
    small: bool = True,
    kinds: Sequence[str] = _CHARGED_KIND_ORDER,
) -> dict[str, Any]:
    """Label charged molecules with GFN2-xTB energies and forces into a shard (resumable).

    The molecules of :func:`charged_molecules` (``xtb_frames``, ``n_molecules``,
    ``max_atoms``, ``seed``, ``small``, ``kinds``), sampled as ``sampling`` says (default
    :func:`charged_sampling` with ``seed``) by :func:`.data.label_xtb`: each
    molecule is written as soon as it is labelled, and molecules already
    complete in the shard are skipped. Level ``gfn2-xtb``: training uses their
    forces and relative energies, not their total energies.

    Returns
    -------
    dict
        ``molecules`` listed, ``molecules_labelled`` now, ``geometries_written``, ``skipped`` names.
    """
    molecules = charged_molecules(xtb_frames, n_molecules, max_atoms=max_atoms, seed=seed, small=small, kinds=kinds)
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
    """(name, SMILES) of molecules that :func:`xtb_drug_like` labels (torsion drives, bond pulls).

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
    """The per-molecule sampling of torsion drives (:func:`xtb_drug_like`): about 25 frames, 1-2 s of one core.

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


def xtb_drug_like(
    out_path: str | Path,
    xtb_frames: str | Path,
    n_molecules: int,
    sampling: XTBSampling,
    *,
    charged_fraction: float = 0.25,
    max_atoms: int = 60,
    workers: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Label drug-like molecules with GFN2-xTB energies and forces into a shard (resumable).

    The molecules of :func:`torsion_molecules` (``xtb_frames``, ``n_molecules``,
    ``charged_fraction``, ``max_atoms``, ``seed``), sampled as ``sampling`` says
    (:func:`torsion_sampling`: torsion drives; :func:`pull_sampling`: bonds to
    H pulled apart) by :func:`.data.label_xtb`. Level ``gfn2-xtb``: training
    uses the forces and the energies relative within a molecule, which carry
    the shapes of its torsion and dissociation profiles.

    Returns
    -------
    dict
        ``molecules`` listed, ``molecules_labelled`` now, ``geometries_written``, ``skipped`` names.
    """
    molecules = torsion_molecules(xtb_frames, n_molecules, charged_fraction=charged_fraction, max_atoms=max_atoms, seed=seed)
    info = label_xtb(molecules, out_path, sampling, workers=workers)
    return {"molecules": len(molecules), **info}


# ============================================================================ bond pulls
def pull_sampling(
    *,
    n_bonds: int = 4,
    pull: Sequence[float] = PULL_LENGTHS,
    n_angles: int = 6,
    bend: Sequence[float] = BEND_DEGREES,
    n_heavy: int = 0,
    heavy_pull: Sequence[float] = HEAVY_PULL_LENGTHS,
    n_cleave: int = 0,
    cleave: Sequence[float] = CLEAVE_LENGTHS,
    opt_steps: int = 10,
    max_energy_kcal_mol: float = 200.0,
    solvent: str | None = None,
    seed: int = 0,
) -> XTBSampling:
    """The per-molecule sampling of bond pulls (:func:`xtb_drug_like`): about 25 frames, a few seconds of one core.

    One RDKit conformer, relaxed by ``opt_steps`` L-BFGS steps of GFN2-xTB; then
    ``n_bonds`` of its bonds to H (heteroatom-H and C-H in turn) pulled apart,
    each to every length of ``pull`` (multiples of the bond's length; only the H
    moves), and ``n_angles`` angles H-X-Y bent by each change of ``bend``
    (degrees, negative closes; the H turns about X); frames more than
    ``max_energy_kcal_mol`` above the molecule's lowest are dropped. Labels:
    gas-phase GFN2-xTB energies and forces, whose relative energies rise along
    each pull (a bond that breaks costs energy) and as each angle bends either
    way. Without the bends a model trained on pulls let the angles of hydrogens
    go soft far from their minimum (a C-O-H angle opened by 32 degrees for
    0.25 kcal/mol, GFN2-xTB 12.8), and MD at 2 fs broke. With ``n_heavy``
    (the ``heavy_pulls:`` section), that many acyclic bonds between heavy atoms
    (those at a charged atom first) are pulled to every length of
    ``heavy_pull``, one side of the bond moving as a whole; with ``n_cleave`` (the
    ``cleavages:`` section), that many to every length of ``cleave``, out to the two
    sides apart, labelled with the lower of the closed-shell and the high-spin state
    (:func:`~physff_openmm.training.data.cleavage_spin`). ``solvent``: the
    relaxation runs on the GFN2-xTB + ALPB surface of that tblite solvent (a
    zwitterion keeps its protons); the labels stay gas-phase.
    """
    return XTBSampling(
        n_conformers=1, n_md=0, n_normal_modes=0, opt_steps=int(opt_steps), n_bond_pulls=int(n_bonds),
        pull=tuple(float(x) for x in pull), n_angle_bends=int(n_angles), bend=tuple(float(x) for x in bend),
        n_heavy_pulls=int(n_heavy), heavy_pull=tuple(float(x) for x in heavy_pull),
        n_cleavages=int(n_cleave), cleave=tuple(float(x) for x in cleave),
        max_energy_kcal_mol=float(max_energy_kcal_mol), check_bonds=True, solvent=solvent or None, seed=int(seed),
    )


# ============================================================================ DFT labels of torsion drives
def dft_torsion_inputs(
    source: str | Path, n_molecules: int, *, max_atoms: int = 40, seed: int = 0
) -> list[tuple[str, Any]]:
    """(name, RDKit molecule with every frame as a conformer) of :func:`dft_torsions`.

    The molecules of the torsion-drive shard ``source`` (:func:`xtb_drug_like` with
    :func:`torsion_sampling`) without a formal charge on any atom and with at most
    ``max_atoms`` atoms, under their names there (so that a validation molecule stays in
    validation), ordered by a seeded hash of the name: a molecule's place depends on no
    other molecule, so the list for a larger ``n_molecules`` extends the smaller one, and a
    larger ``source`` or ``max_atoms`` only inserts molecules.

    Raises
    ------
    ConfigError
        No molecule of ``source`` qualifies, or invalid numbers.
    """
    from .dataset import _unit_hash

    if n_molecules < 0 or max_atoms < 1:
        raise ConfigError(f"dft_torsions: need n_molecules >= 0 and max_atoms >= 1, got {n_molecules}, {max_atoms}")
    records = [r for r in read_dataset(source) if r.n_atoms <= max_atoms and not np.any(r.formal_charges) and r.fragments is None]
    if n_molecules and not records:
        raise ConfigError(f"dft_torsions: no molecule of {source} is neutral with at most {max_atoms} atoms")
    records.sort(key=lambda r: (_unit_hash(r.name, seed), r.name))
    return [(r.name, r.to_rdkit()) for r in records[:n_molecules]]


def dft_torsions(
    out_path: str | Path,
    source: str | Path,
    n_molecules: int,
    *,
    max_atoms: int = 40,
    level: str = "b3lyp-d3bj/def2-svp",
    workers: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Label the frames of torsion drives at ``level`` (energies and forces) into a shard (resumable).

    The molecules of :func:`dft_torsion_inputs` (``source``, ``n_molecules``, ``max_atoms``,
    ``seed``), every frame at its stored geometry (conformer ids ``input<k>``: frame k of the
    source's record), by :func:`.labelling.label` (PySCF; gpu4pyscf when it and a CUDA device
    are present). The GFN2-xTB drives carry the shapes of torsion profiles at the cost of
    xTB's errors; these carry them at the level the model targets: forces, energies relative
    within a molecule (``loss.relative_forces_weight``) and totals (``loss.energy_weight``),
    although PySCF's totals sit 0.0004-0.0007 Hartree above the public sets' ORCA ones
    (``benchmarks/results/qm_level_check.md``).
    On the CPU a frame of 35 atoms takes minutes: these labels are a GPU's work.

    Returns
    -------
    dict
        ``molecules`` listed, ``molecules_labelled`` (complete in the shard), ``geometries_written``
        (their frames), ``skipped`` names (incomplete: a run again retries them).
    """
    from .dataset import ShardWriter
    from .labelling import label

    inputs = dft_torsion_inputs(source, n_molecules, max_atoms=max_atoms, seed=seed)
    if inputs:
        label(inputs, out_path, level=level, n_conformers=0, optimize=None, forces=True, kinetic=False,
              n_workers=workers, progress=False, seed=seed)
    names = [n for n, _ in inputs]
    if not Path(out_path).is_file():
        return {"molecules": len(names), "molecules_labelled": 0, "geometries_written": 0, "skipped": names}
    with ShardWriter(out_path) as w:
        done = {n for n in names if w.is_complete(n)}
        frames = sum(len(w.conformer_ids(n)) for n in done)
    return {"molecules": len(names), "molecules_labelled": sum(n in done for n in names),
            "geometries_written": frames, "skipped": [n for n in names if n not in done]}

