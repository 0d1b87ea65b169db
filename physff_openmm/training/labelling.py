"""Quantum-chemistry labelling of molecules, spread over Dask workers, resumable.

For each molecule: conformers (RDKit ETKDG, :func:`.conformers.generate_conformers`),
optionally a GFN2-xTB minimization of each (:func:`.xtb.xtb_optimize`), optionally
off-equilibrium samples around each (:func:`.xtb.sample_off_equilibrium`), then one
PySCF single point per geometry (:func:`.qm.single_point`): energy (Hartree),
forces (Hartree/Angstrom), Mulliken charges (e) and the kinetic-energy partition
``kd_atom`` / ``kd_pair`` (Hartree).

Results stream back as they finish and are appended by this (the only writing)
process to one HDF5 shard (:class:`.dataset.ShardWriter`), flushed after every
conformer. Running :func:`label` again on the same ``out_path`` resumes: molecules
marked complete are skipped and conformers already stored (by conformer id) are
not recomputed. Conformer ids are deterministic for a given ``seed``:
``c<k>`` for conformer k, ``c<k>_off<j>`` for its off-equilibrium sample j and
``input<k>`` for the input's own conformers (``n_conformers=0``).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from physff_openmm.errors import ConfigError, DependencyError, PhysFFError, QMError

from .dataset import ShardWriter, canonical_smiles, safe_name

__all__ = ["label"]

logger = logging.getLogger(__name__)

_OPTIMIZERS = ("xtb", None)


@dataclass
class _Job:
    """One molecule to label."""

    index: int
    name: str
    mol: Any  # rdkit.Chem.Mol, validated, explicit hydrogens
    done: set[str] = field(default_factory=set)
    pending: int = 0  # single points submitted and not yet back
    prepared: bool = False
    n_geometries: int = 0
    failed: bool = False


# ============================================================================ worker functions
def _prepare_geometries(
    mol,
    n_conformers: int,
    optimize: str | None,
    n_off_equilibrium: int,
    seed: int,
    done: frozenset[str],
) -> list[tuple[str, np.ndarray]]:
    """Geometries (Angstrom) to label, with their conformer ids; runs on a worker.

    Conformers whose geometry and samples are all in ``done`` are returned with
    their unoptimized positions (they will not be computed again).
    """
    from physff_openmm.molecule import positions_angstrom

    from .sources import connectivity_matches

    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    charge = int(sum(a.GetFormalCharge() for a in mol.GetAtoms()))
    if n_conformers == 0:
        if mol.GetNumConformers() == 0:
            raise ConfigError("n_conformers=0 labels the input's own conformers, but the molecule has none")
        starts = [
            (f"input{k}", positions_angstrom(mol, conf.GetId())) for k, conf in enumerate(mol.GetConformers())
        ]
    else:
        from . import conformers

        confmol = conformers.generate_conformers(mol, n_conformers, seed=seed)
        starts = [(f"c{k}", np.asarray(c.GetPositions(), dtype=np.float64)) for k, c in enumerate(confmol.GetConformers())]

    out: list[tuple[str, np.ndarray]] = []
    for k, (cid, pos) in enumerate(starts):
        ids = [cid] + [f"{cid}_off{j}" for j in range(n_off_equilibrium)]
        if all(i in done for i in ids):
            out.extend((i, pos) for i in ids)
            continue
        if optimize == "xtb":
            from . import xtb

            pos, _ = xtb.xtb_optimize(numbers, pos, charge)
            if not connectivity_matches(mol, pos):
                logger.warning("conformer %s changed its bonds during the GFN2-xTB optimization; skipped", cid)
                continue
        out.append((cid, np.asarray(pos, dtype=np.float64)))
        if n_off_equilibrium:
            from . import xtb

            samples = xtb.sample_off_equilibrium(numbers, pos, charge, n_off_equilibrium, seed=seed + k)
            out.extend((f"{cid}_off{j}", np.asarray(s, dtype=np.float64)) for j, s in enumerate(samples))
    return out


def _run_single_point(numbers, positions, charge: int, level: str, forces: bool, kinetic: bool):
    """One PySCF single point (looked up at call time, so it can be replaced in tests)."""
    from . import qm

    return qm.single_point(numbers, positions, charge, level, forces=forces, kinetic=kinetic)


# ============================================================================ helpers
def _check_options(n_conformers, optimize, n_off_equilibrium, n_workers, scheduler) -> None:
    if isinstance(n_conformers, bool) or not isinstance(n_conformers, (int, np.integer)) or n_conformers < 0:
        raise ConfigError(f"n_conformers must be an integer >= 0, got {n_conformers!r}")
    if optimize not in _OPTIMIZERS:
        raise ConfigError(f"unknown optimize={optimize!r}; valid: 'xtb' or None")
    n_off = n_off_equilibrium
    if isinstance(n_off, bool) or not isinstance(n_off, (int, np.integer)) or n_off < 0:
        raise ConfigError(f"n_off_equilibrium must be an integer >= 0, got {n_off_equilibrium!r}")
    if n_workers is not None and (
        isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)) or n_workers < 1
    ):
        raise ConfigError(f"n_workers must be an integer >= 1 or None, got {n_workers!r}")
    if scheduler is not None and not isinstance(scheduler, str) and not hasattr(scheduler, "submit"):
        raise ConfigError(
            f"scheduler must be None, 'synchronous', 'local', a scheduler address or a dask Client, got {scheduler!r}"
        )


def _load_inputs(inputs) -> list[tuple[str, Any]]:
    from physff_openmm.molecule import load_molecule

    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise ConfigError("inputs must be a list of (name, molecule) pairs")
    out, seen = [], {}
    for item in inputs:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ConfigError(f"each input must be a (name, molecule) pair, got {item!r}")
        name, source = item
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"molecule names must be non-empty strings, got {name!r}")
        gname = safe_name(name)
        if gname in seen:
            raise ConfigError(f"molecule names {seen[gname]!r} and {name!r} are not unique (both stored as {gname!r})")
        seen[gname] = name
        out.append((name, load_molecule(source)))
    return out


def _source_string(level: str, n_conformers: int, optimize: str | None, n_off: int) -> str:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    geometry = "input geometries" if n_conformers == 0 else f"RDKit {version('rdkit')} ETKDGv3 conformers"
    if optimize == "xtb":
        geometry += f", GFN2-xTB (tblite {version('tblite')}) minimized"
    if n_off:
        geometry += f", {n_off} GFN2-xTB MD samples each"
    return f"physff-openmm labelling: PySCF {version('pyscf')} {level}; {geometry}"


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="geom", desc="QM labels", leave=True)


# ============================================================================ main
def label(
    inputs: Sequence[tuple[str, Any]],
    out_path: str | Path,
    *,
    level: str = "b3lyp-d3bj/def2-svp",
    n_conformers: int = 4,
    optimize: str | None = "xtb",
    n_off_equilibrium: int = 0,
    forces: bool = True,
    kinetic: bool = True,
    scheduler: Any = None,
    n_workers: int | None = None,
    progress: bool = True,
    seed: int = 0,
) -> Path:
    """Compute QM labels for molecules and append them to an HDF5 shard.

    Parameters
    ----------
    inputs : sequence of (str, molecule)
        Unique names and molecules: RDKit molecules with explicit hydrogens,
        SMILES or structure files (anything :func:`physff_openmm.molecule.load_molecule`
        accepts; see also :func:`.sources.read_structures`).
    out_path : str or Path
        Shard file; created if missing, resumed if present.
    level : str
        Level of theory, ``"method[-dispersion]/basis"`` (see :func:`.qm.parse_level`);
        stored in canonical form.
    n_conformers : int
        Conformers embedded per molecule (rigid molecules may give fewer);
        0 labels the input's own conformers (coordinates in Angstrom).
    optimize : {"xtb", None}
        Minimize each conformer with GFN2-xTB first (conformers whose bonds
        change are skipped).
    n_off_equilibrium : int
        Off-equilibrium GFN2-xTB MD samples per conformer, labelled too.
    forces, kinetic : bool
        Compute forces (Hartree/Angstrom) and the kinetic-energy partition (Hartree).
    scheduler : None, str or dask.distributed.Client
        None: a local Dask cluster of ``n_workers`` processes (default: the
        number of cores), one task thread each, OpenMP threads shared among
        them, or the in-process path when ``n_workers == 1``;
        ``"synchronous"``: in-process, no Dask; ``"local"``: always a local
        cluster; any other string: the address of a running Dask scheduler;
        a ``Client``: used as is (not closed).
    n_workers : int, optional
        Worker processes of the local cluster.
    progress : bool
        Show a progress bar (tqdm) over geometries.
    seed : int
        Seed of conformer embedding and sampling (conformer ids depend on it
        through the geometries only, so keep it fixed when resuming).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    QMError
        Unknown level, before any work starts.
    ConfigError
        Invalid options or names; a name already stored for another molecule
        or at another level.
    MoleculeError, MoleculeFileError
        Unreadable or invalid input molecules (from :mod:`physff_openmm.molecule`).
    DependencyError
        PySCF, h5py, dask or tblite missing.

    Notes
    -----
    A geometry whose SCF fails (:class:`QMError`), or a molecule whose
    conformers cannot be generated, is logged and left out; its molecule is
    not marked complete, so a later run retries it. Any other exception stops
    the run; what was written stays in the file.
    """
    from . import qm

    level_name = qm.parse_level(level).name  # QMError before any work
    _check_options(n_conformers, optimize, n_off_equilibrium, n_workers, scheduler)
    molecules = _load_inputs(inputs)
    out_path = Path(out_path)
    source = _source_string(level_name, int(n_conformers), optimize, int(n_off_equilibrium))

    with ShardWriter(out_path) as writer:
        jobs: list[_Job] = []
        for k, (name, mol) in enumerate(molecules):
            attrs = writer.group_attrs(name)
            if attrs is not None:
                smiles = canonical_smiles(mol)
                if attrs.get("smiles") != smiles:
                    raise ConfigError(
                        f"{out_path}: {name!r} is stored as {attrs.get('smiles')!r}, not {smiles!r}; use another name"
                    )
                if attrs.get("level") != level_name:
                    raise ConfigError(
                        f"{out_path}: {name!r} is stored at level {attrs.get('level')!r}, not {level_name!r}; "
                        "write other levels to another shard"
                    )
                if writer.is_complete(name):
                    continue
            jobs.append(_Job(index=k, name=name, mol=mol, done=set(writer.conformer_ids(name))))
        n_skipped = len(molecules) - len(jobs)
        if n_skipped:
            logger.info("%s: %d of %d molecules already complete", out_path, n_skipped, len(molecules))
        if not jobs:
            return out_path

        options = dict(
            n_conformers=int(n_conformers),
            optimize=optimize,
            n_off_equilibrium=int(n_off_equilibrium),
            seed=int(seed),
        )
        sp_options = dict(level=level_name, forces=bool(forces), kinetic=bool(kinetic))
        per_molecule = max(int(n_conformers), 1) * (1 + int(n_off_equilibrium))
        expected = sum(max(per_molecule - len(j.done), 0) for j in jobs)
        in_process = scheduler == "synchronous" or (scheduler is None and n_workers == 1)
        runner = _run_in_process if in_process else _run_dask
        with _progress_bar(expected, progress) as bar:
            state = _State(writer, bar, source, sp_options, expected_per_molecule=per_molecule)
            runner(jobs, state, options, scheduler=scheduler, n_workers=n_workers)
        incomplete = [j.name for j in jobs if not writer.is_complete(j.name)]
    if incomplete:
        logger.warning(
            "%s: %d molecule(s) incomplete (%s); run label() again with the same out_path to retry",
            out_path, len(incomplete), ", ".join(incomplete[:10]) + (" ..." if len(incomplete) > 10 else ""),
        )
    return out_path


class _State:
    """Bookkeeping shared by both runners: writes results, tracks completion and progress."""

    def __init__(self, writer: ShardWriter, bar, source: str, sp_options: dict, expected_per_molecule: int):
        self.writer = writer
        self.bar = bar
        self.source = source
        self.sp_options = sp_options
        self.expected_per_molecule = expected_per_molecule

    def prepared(self, job: _Job, geometries: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
        """Record a molecule's geometries; return those still to compute."""
        job.prepared = True
        job.n_geometries = len(geometries)
        todo = [(cid, pos) for cid, pos in geometries if cid not in job.done]
        expected = max(self.expected_per_molecule - len(job.done), 0)
        if len(todo) != expected:
            self.bar.total = max(self.bar.total + len(todo) - expected, self.bar.n)
            self.bar.refresh()
        if not geometries:
            logger.warning("%s: no geometry to label", job.name)
            job.failed = True
        job.pending = len(todo)
        self._maybe_complete(job)
        return todo

    def prepare_failed(self, job: _Job, exc: BaseException) -> None:
        logger.warning("%s: could not prepare geometries (%s: %s); molecule skipped", job.name, type(exc).__name__, exc)
        job.failed = True
        expected = max(self.expected_per_molecule - len(job.done), 0)
        self.bar.total = max(self.bar.total - expected, self.bar.n)
        self.bar.refresh()

    def computed(self, job: _Job, cid: str, positions: np.ndarray, result) -> None:
        self.writer.append_conformer(
            job.name,
            job.mol,
            positions,
            conformer_id=cid,
            energy=result.energy,
            forces=result.forces,
            qm_charges=result.mulliken,
            kd_atom=result.kd_atom,
            kd_pair=result.kd_pair,
            level=self.sp_options["level"],
            source=self.source,
        )
        job.done.add(cid)
        job.pending -= 1
        self.bar.update(1)
        self._maybe_complete(job)

    def sp_failed(self, job: _Job, cid: str, exc: BaseException) -> None:
        logger.warning("%s: single point of conformer %s failed (%s); left out", job.name, cid, exc)
        job.failed = True
        job.pending -= 1
        self.bar.update(1)

    def _maybe_complete(self, job: _Job) -> None:
        if job.prepared and job.pending == 0 and not job.failed and job.n_geometries:
            self.writer.mark_complete(job.name)


def _numbers_charge(mol) -> tuple[list[int], int]:
    return [a.GetAtomicNum() for a in mol.GetAtoms()], int(sum(a.GetFormalCharge() for a in mol.GetAtoms()))


def _run_in_process(jobs: list[_Job], state: _State, options: dict, **_: Any) -> None:
    """Label molecule after molecule in this process."""
    for job in jobs:
        try:
            geometries = _prepare_geometries(job.mol, done=frozenset(job.done), **options)
        except DependencyError:
            raise
        except PhysFFError as exc:
            state.prepare_failed(job, exc)
            continue
        numbers, charge = _numbers_charge(job.mol)
        for cid, pos in state.prepared(job, geometries):
            try:
                result = _run_single_point(numbers, pos, charge, **state.sp_options)
            except QMError as exc:
                state.sp_failed(job, cid, exc)
                continue
            state.computed(job, cid, pos, result)


def _run_dask(jobs: list[_Job], state: _State, options: dict, *, scheduler, n_workers: int | None) -> None:
    """Spread geometry preparation and single points over Dask workers; write as results arrive."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            "parallel labelling needs dask.distributed: pip install 'dask[distributed]' "
            "(or use scheduler='synchronous')"
        ) from exc

    with ExitStack() as stack:
        if scheduler is None or scheduler == "local":
            cores = os.cpu_count() or 1
            workers = int(n_workers or cores)
            threads = max(1, cores // workers)
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                         "OPENBLAS_NUM_THREADS": str(threads)},
                )
            )
            client = stack.enter_context(Client(cluster))
        elif isinstance(scheduler, str):
            client = stack.enter_context(Client(scheduler))
        else:
            client = scheduler

        tasks: dict[str, tuple] = {}
        ac = as_completed()
        submitted = []

        def submit(fn, *args, meta, priority, **kwargs):
            fut = client.submit(fn, *args, pure=False, priority=priority, **kwargs)
            tasks[fut.key] = meta
            submitted.append(fut)
            ac.add(fut)

        try:
            for job in jobs:
                submit(
                    _prepare_geometries, job.mol, done=frozenset(job.done), meta=("prepare", job, None, None),
                    priority=1_000_000 - job.index, **options,
                )
            for fut in ac:
                kind, job, cid, pos = tasks.pop(fut.key)
                if kind == "prepare":
                    try:
                        geometries = fut.result()
                    except DependencyError:
                        raise
                    except PhysFFError as exc:
                        state.prepare_failed(job, exc)
                        continue
                    numbers, charge = _numbers_charge(job.mol)
                    for gid, gpos in state.prepared(job, geometries):
                        submit(
                            _run_single_point, numbers, gpos, charge, meta=("sp", job, gid, gpos),
                            priority=-job.index, **state.sp_options,
                        )
                else:
                    try:
                        result = fut.result()
                    except QMError as exc:
                        state.sp_failed(job, cid, exc)
                        continue
                    state.computed(job, cid, pos, result)
                fut.release()
        except BaseException:
            client.cancel([f for f in submitted if not f.done()])
            raise
