"""Molecular dynamics: one driver for vacuum and for water boxes, with reporters, bond watch and checkpoints.

In vacuum: Langevin NVT or Verlet NVE. With a solvent (or a receptor): a periodic box of
water built by :mod:`physff_openmm.workflows.solvation`, PME, NPT with a Monte Carlo
barostat by default. The default is a 2 fs step with bonds to hydrogen constrained;
``constraints=None`` with a 1 fs step runs every bond free.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from ..errors import ConfigError, FileAccessError, SimulationError
from ..units import ANGSTROM_TO_NM, KJ_TO_KCAL
from ._files import atomic_output, check_output_path
from .simulation import (
    DEFAULT_TOLERANCE_KCAL_MOL_A,
    build_simulation,
    check_constraints,
    check_positive,
    degrees_of_freedom,
    minimize_context,
)

__all__ = ["run_md", "TRAJECTORY_SUFFIXES", "BROKEN_BOND_FRACTION"]

#: Trajectory formats of :func:`run_md`.
TRAJECTORY_SUFFIXES: tuple[str, ...] = (".dcd", ".pdb")

#: Minimizer tolerance (RMS force, kcal/mol/A) before MD in water: OpenMM's default, 10 kJ/mol/nm.
SOLVATED_TOLERANCE_KCAL_MOL_A = 10.0 * KJ_TO_KCAL * ANGSTROM_TO_NM
#: Iteration limit of that minimization (L-BFGS with constraints: ~10-20 ms per iteration for 1000 atoms
#: on one CPU thread).
SOLVATED_MAX_ITERATIONS = 500

#: A covalent bond whose length moves further than this fraction from its length at the start of
#: the run counts as broken, as in the accuracy report's MD test (docs/accuracy.md).
BROKEN_BOND_FRACTION = 0.3


class _TrajectoryWriter:
    """An OpenMM reporter writing positions to an open DCD or PDB file (frames every ``interval`` steps)."""

    def __init__(self, handle, fmt: str, interval: int):
        self._fh = handle
        self._fmt = fmt
        self._interval = interval
        self._dcd = None
        self._frames = 0

    def describeNextReport(self, simulation):  # noqa: N802 - OpenMM reporter API
        steps = self._interval - simulation.currentStep % self._interval
        return (steps, True, False, False, False, None)

    def report(self, simulation, state):
        positions = state.getPositions(asNumpy=True)
        if self._fmt == ".dcd":
            if self._dcd is None:
                self._dcd = app.DCDFile(
                    self._fh,
                    simulation.topology,
                    simulation.integrator.getStepSize(),
                    simulation.currentStep,
                    self._interval,
                )
            box = state.getPeriodicBoxVectors() if simulation.topology.getPeriodicBoxVectors() is not None else None
            self._dcd.writeModel(positions, periodicBoxVectors=box)
        else:
            if self._frames == 0:
                app.PDBFile.writeHeader(simulation.topology, self._fh)
            app.PDBFile.writeModel(simulation.topology, positions, self._fh, self._frames + 1)
        self._frames += 1

    def close(self, topology) -> None:
        if self._fmt == ".pdb" and self._frames:
            app.PDBFile.writeFooter(topology, self._fh)


class _BondWatch:
    """An OpenMM reporter following every covalent bond's length against its length at the start.

    Keeps the largest relative change and the bond it belongs to; the first time a bond
    moves further than :data:`BROKEN_BOND_FRACTION` it warns, once: the model's covalent
    terms did not hold it, and the rest of the trajectory is not chemistry.
    """

    def __init__(self, pairs, symbols, start_positions_nm, interval: int):
        self._pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
        self._labels = [f"{symbols[i]}{i}-{symbols[j]}{j}" for i, j in self._pairs]
        self._d0 = self._lengths(start_positions_nm)
        self._interval = interval
        self.max_change = 0.0  # signed: > 0 stretched, < 0 compressed
        self.worst_bond = None
        self.broken_at_ps = None

    def _lengths(self, positions_nm) -> np.ndarray:
        x = np.asarray(positions_nm)
        return np.linalg.norm(x[self._pairs[:, 0]] - x[self._pairs[:, 1]], axis=1)

    def describeNextReport(self, simulation):  # noqa: N802 - OpenMM reporter API
        steps = self._interval - simulation.currentStep % self._interval
        return (steps, True, False, False, False, None)

    def report(self, simulation, state):
        if not len(self._pairs):
            return
        rel = self._lengths(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)) / self._d0 - 1.0
        k = int(np.argmax(np.abs(rel)))
        if abs(rel[k]) > abs(self.max_change):
            self.max_change, self.worst_bond = float(rel[k]), self._labels[k]
        if abs(rel[k]) > BROKEN_BOND_FRACTION and self.broken_at_ps is None:
            self.broken_at_ps = state.getTime().value_in_unit(unit.picosecond)
            how = "stretched" if rel[k] > 0 else "compressed"
            warnings.warn(
                f"bond {self._labels[k]} {how} by {abs(rel[k]):.0%} at t = {self.broken_at_ps:.3f} ps: the model's "
                "covalent terms did not hold it, and what follows is not chemistry (a smaller time step can help; "
                "the models' MD limits are in docs/accuracy.md)",
                RuntimeWarning,
                stacklevel=2,
            )


class _CheckpointWriter:
    """An OpenMM reporter saving the State (XML: positions, velocities, step) every ``interval`` steps."""

    def __init__(self, path: Path, interval: int):
        self._path = path
        self._interval = interval

    def describeNextReport(self, simulation):  # noqa: N802 - OpenMM reporter API
        steps = self._interval - simulation.currentStep % self._interval
        return (steps, False, False, False, False, None)

    def report(self, simulation, state):
        save_checkpoint(simulation, self._path)


def save_checkpoint(simulation: app.Simulation, path: str | os.PathLike) -> None:
    """Save positions, velocities, time and step count as an OpenMM State XML file (portable, whole or absent)."""
    state = simulation.context.getState(getPositions=True, getVelocities=True, getParameters=True)
    xml = openmm.XmlSerializer.serialize(state)
    with atomic_output(path) as tmp:
        tmp.write_text(xml)


def load_checkpoint(simulation: app.Simulation, path: str | os.PathLike) -> None:
    """Restore a State saved by :func:`save_checkpoint` (step count and time included)."""
    path = Path(path)
    try:
        xml = path.read_text()
    except OSError as exc:
        raise FileAccessError(f"cannot read restart file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        state = openmm.XmlSerializer.deserialize(xml)
    except Exception:
        state = None
    if not isinstance(state, openmm.State):
        raise ConfigError(f"restart file {str(path)!r} is not an OpenMM State XML file (written by --checkpoint)")
    n_state = len(state.getPositions())
    n_sys = simulation.system.getNumParticles()
    if n_state != n_sys:
        raise ConfigError(
            f"restart file {str(path)!r} holds {n_state} atoms but the molecule has {n_sys}; "
            "restart with the same molecule file"
        )
    simulation.context.setState(state)


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def run_md(
    molecule,
    steps: int,
    *,
    model="default",
    backend: str = "native",
    platform=None,
    charge: int | None = None,
    temperature_k: float = 300.0,
    timestep_fs: float | None = None,
    friction_per_ps: float = 1.0,
    ensemble: str | None = None,
    constraints: str | None = "hbonds",
    solvent: str | None = None,
    receptor: str | os.PathLike | None = None,
    padding_nm: float | None = None,
    ions: str | None = None,
    pressure_bar: float = 1.0,
    structure: str | os.PathLike | None = None,
    trajectory: str | os.PathLike | None = None,
    report_csv: str | os.PathLike | None = None,
    report_interval: int = 100,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_interval: int | None = None,
    restart: str | os.PathLike | None = None,
    minimize_first: bool = True,
    seed: int | None = None,
    progress: bool | None = None,
) -> dict:
    """Run molecular dynamics of a molecule or complex, in vacuum or in a box of water.

    By default the time step is 2 fs with every covalent bond to hydrogen constrained
    (``openmm.app.HBonds``; in vacuum at its length in the starting geometry, in water at
    its length in the molecule's physff minimum); with ``constraints=None`` nothing is
    constrained (but water stays rigid), and a 1 fs step is the one to give (a longer
    unconstrained step warns). Velocities are drawn at ``temperature_k`` (also for NVE)
    after an optional minimization; with ``restart`` the positions, velocities, box, time
    and step count come from a checkpoint instead. The first frame (and state row) is the
    starting state; then one every ``report_interval`` steps.

    With ``solvent`` or ``receptor`` the molecule is put in a periodic box of water
    (:func:`physff_openmm.workflows.solvation.build_solvated_system`: Amber14 for the
    receptor, the water model's file for water and ions, physff for the molecule, PME)
    and the default ensemble is NPT.

    Parameters
    ----------
    molecule : rdkit.Chem.Mol, str or path
        Anything :func:`physff_openmm.molecule.load_molecule` accepts; with a receptor,
        the ligand in the receptor's frame.
    steps : int
        Number of time steps to run (after a restart: further steps).
    model, backend, platform, charge
        As in :func:`physff_openmm.workflows.build_simulation` (in water the backend is
        always ``native``: OpenMM's own forces).
    temperature_k : float
        Temperature of the thermostat and of the initial velocities, K.
    timestep_fs : float, optional
        Time step, fs (default 2; take 1 with ``constraints=None``).
    friction_per_ps : float
        Langevin friction, 1/ps (NVT only).
    ensemble : {"nvt", "nve", "npt"}, optional
        LangevinMiddleIntegrator, VerletIntegrator, or LangevinMiddleIntegrator with a
        MonteCarloBarostat (periodic boxes only). Default: NPT in water, NVT in vacuum.
    constraints : {"hbonds", None}
        ``"hbonds"`` (default): constrain bonds to hydrogen, as in
        :func:`physff_openmm.workflows.build_simulation`; None: no constraints.
    solvent : str, optional
        Water model (``"tip3p"``, see :data:`~physff_openmm.workflows.solvation.WATER_MODELS`):
        simulate in a periodic box of it. Default: vacuum, or ``"tip3p"`` with a receptor.
    receptor : path, optional
        PDB/mmCIF file of the protein (may hold water, ions and the ligand, which
        ``molecule`` replaces); implies a solvent.
    padding_nm : float, optional
        Water around the solute, nm (default 1.0).
    ions : str, optional
        Salt and molar concentration, e.g. ``"NaCl:0.15"`` (default: neutralize with NaCl).
    pressure_bar : float
        Barostat pressure, bar (NPT).
    structure : path, optional
        PDB file of the starting structure (after minimization): the topology to read a DCD
        trajectory with.
    trajectory : path, optional
        ``.dcd`` or ``.pdb`` trajectory file.
    report_csv : path, optional
        OpenMM StateDataReporter CSV: step, time (ps), potential, kinetic and total
        energy (kJ/mol, without E_lin), temperature (K).
    report_interval : int
        Steps between trajectory frames and report rows.
    checkpoint : path, optional
        State XML file saved every ``checkpoint_interval`` steps and at the end; each
        save replaces the previous one whole, so after an interruption the last
        complete checkpoint remains.
    checkpoint_interval : int, optional
        Default: 10 x ``report_interval``.
    restart : path, optional
        Checkpoint written by an earlier run of the same molecule to continue from.
    minimize_first : bool
        Minimize before drawing velocities (ignored on restart).
    seed : int, optional
        Seed of the initial velocities and Langevin noise (default: random).
    progress : bool, optional
        Show a tqdm progress bar (default: when stderr is a terminal).

    Returns
    -------
    dict
        ``steps``, ``first_step``, ``last_step``, ``time_ps``, ``potential_energy_kcal_mol``
        (OpenMM's potential energy plus the physff molecules' E_lin; in vacuum the absolute
        physff energy), ``kinetic_energy_kcal_mol``, ``temperature_k``
        (instantaneous; degrees of freedom 3N less one per constraint, as in the state
        report), ``timestep_fs``, ``constraints`` (``"hbonds"`` or None), ``n_constraints``,
        ``wall_seconds``, ``ns_per_day``, ``platform``, the output paths, and the bond check
        every ``report_interval`` steps:
        ``max_bond_change`` (the largest relative change of a covalent bond from its length
        at the start of the run; > 0 stretched), ``worst_bond`` (e.g. ``"O8-H17"``) and
        ``bond_broken_at_ps`` (when a bond first moved more than :data:`BROKEN_BOND_FRACTION`,
        with a ``RuntimeWarning``; None if none did). Constrained bonds keep their length.
        In water also ``n_atoms``, ``n_waters``, ``box_volume_nm3`` and ``density_g_ml`` (at the
        end of the run), ``solvent`` and ``pressure_bar`` (None unless NPT); the bond watch
        follows the physff molecules' bonds.

    Raises
    ------
    SimulationError
        Energies or coordinates became NaN (the outputs are not written).
    """
    check_positive("steps", steps, integer=True)
    check_positive("report_interval", report_interval, integer=True)
    steps, report_interval = int(steps), int(report_interval)
    if checkpoint_interval is None:
        checkpoint_interval = 10 * report_interval
    check_positive("checkpoint_interval", checkpoint_interval, integer=True)
    checkpoint_interval = int(checkpoint_interval)
    outputs = {}
    if trajectory is not None:
        outputs["trajectory"] = check_output_path(trajectory, what="trajectory", suffixes=TRAJECTORY_SUFFIXES)
    if report_csv is not None:
        outputs["report_csv"] = check_output_path(report_csv, what="state report")
    if checkpoint is not None:
        outputs["checkpoint"] = check_output_path(checkpoint, what="checkpoint")
    if structure is not None:
        outputs["structure"] = check_output_path(structure, what="structure", suffixes=(".pdb",))
    if len({p.resolve() for p in outputs.values()}) != len(outputs):
        raise ConfigError("the trajectory, state report, checkpoint and structure must be different files")
    if restart is not None and not Path(restart).is_file():
        raise FileAccessError(f"restart file {str(restart)!r} does not exist")

    solvated = solvent is not None or receptor is not None
    if not solvated:
        for name, value in (("padding_nm", padding_nm), ("ions", ions)):
            if value is not None:
                raise ConfigError(f"{name} is for MD in water: give a solvent (e.g. solvent='tip3p') or a receptor")
    if ensemble is None:
        ensemble = "npt" if solvated else "nvt"
    common = dict(model=model, platform=platform, charge=charge, temperature_k=temperature_k, timestep_fs=timestep_fs,
                  friction_per_ps=friction_per_ps, ensemble=ensemble, seed=seed, constraints=constraints)
    if solvated:
        from .solvation import DEFAULT_IONS, DEFAULT_PADDING_NM, build_solvated_simulation

        if backend != "native":
            raise ConfigError("MD in water uses OpenMM's own forces: give backend='native' (--backend native)")
        sim = build_solvated_simulation(
            molecule, receptor=receptor, solvent=solvent or "tip3p",
            padding_nm=DEFAULT_PADDING_NM if padding_nm is None else padding_nm,
            ions=DEFAULT_IONS if ions is None else ions, pressure_bar=pressure_bar, **common,
        )
    else:
        sim = build_simulation(molecule, backend=backend, **common)
    timestep_fs = sim.integrator.getStepSize().value_in_unit(unit.femtosecond)
    periodic = sim.system.usesPeriodicBoundaryConditions()
    if restart is not None:
        load_checkpoint(sim, restart)
    else:
        if minimize_first and periodic:  # a start for MD, not a converged minimum
            minimize_context(sim.context, SOLVATED_TOLERANCE_KCAL_MOL_A, SOLVATED_MAX_ITERATIONS)
        elif minimize_first:
            minimize_context(sim.context, DEFAULT_TOLERANCE_KCAL_MOL_A)
        if seed is None:
            sim.context.setVelocitiesToTemperature(temperature_k * unit.kelvin)
        else:
            sim.context.setVelocitiesToTemperature(temperature_k * unit.kelvin, int(seed))
    first_step = sim.currentStep
    offset = sim.physff_energy_offset
    platform_name = sim.context.getPlatform().getName()

    with contextlib.ExitStack() as stack:
        writers = []
        if trajectory is not None:
            tmp = stack.enter_context(atomic_output(outputs["trajectory"]))
            fmt = outputs["trajectory"].suffix.lower()
            fh = stack.enter_context(open(tmp, "wb" if fmt == ".dcd" else "w"))
            traj = _TrajectoryWriter(fh, fmt, report_interval)
            writers.append(traj)
        if report_csv is not None:
            tmp = stack.enter_context(atomic_output(outputs["report_csv"]))
            fh = stack.enter_context(open(tmp, "w"))
            writers.append(
                app.StateDataReporter(
                    fh,
                    report_interval,
                    step=True,
                    time=True,
                    potentialEnergy=True,
                    kineticEnergy=True,
                    totalEnergy=True,
                    temperature=True,
                    volume=periodic,
                    density=periodic,
                    separator=",",
                )
            )
        from tqdm.auto import tqdm

        chunk = max(1, min(report_interval, steps // 100 or 1))
        t0 = time.perf_counter()
        try:
            start_state = sim.context.getState(getPositions=True, getVelocities=True, getEnergy=True,
                                              enforcePeriodicBox=periodic)
            if structure is not None:
                with atomic_output(outputs["structure"]) as tmp, open(tmp, "w") as fh:
                    app.PDBFile.writeFile(sim.topology, start_state.getPositions(), fh, keepIds=True)
            for w in writers:  # the starting frame
                w.report(sim, start_state)
            watch = _BondWatch(sim.physff_bonds, sim.physff_symbols,
                               start_state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), report_interval)
            sim.reporters.extend([*writers, watch])
            if checkpoint is not None:
                sim.reporters.append(_CheckpointWriter(outputs["checkpoint"], checkpoint_interval))
            with tqdm(total=steps, unit="step", disable=not _progress_enabled(progress), file=sys.stderr) as bar:
                done = 0
                while done < steps:
                    n = min(chunk, steps - done)
                    sim.step(n)
                    done += n
                    bar.update(n)
        except (ValueError, openmm.OpenMMException) as exc:  # StateDataReporter: "Energy is NaN"; NaN coordinates
            raise SimulationError(
                f"the simulation became unstable at step {sim.currentStep} ({str(exc).splitlines()[0]}); "
                "try a smaller time step, or minimize the structure first"
            ) from None
        wall = time.perf_counter() - t0
        state = sim.context.getState(getEnergy=True)
        e_pot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        e_kin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        if not (math.isfinite(e_pot) and math.isfinite(e_kin)):
            raise SimulationError(
                f"the simulation became unstable (energy is {e_pot} kJ/mol at step {sim.currentStep}); "
                "try a smaller time step, or minimize the structure first"
            )
        if trajectory is not None:
            traj.close(sim.topology)
        if checkpoint is not None:
            save_checkpoint(sim, outputs["checkpoint"])
        sim.reporters.clear()

    gas_constant = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    dof = degrees_of_freedom(sim.system)
    sim_time_ps = sim.context.getState().getTime().value_in_unit(unit.picosecond)
    run_ps = steps * timestep_fs * unit.femtosecond.conversion_factor_to(unit.picosecond)
    return {
        "steps": steps,
        "first_step": int(first_step),
        "last_step": int(sim.currentStep),
        "time_ps": sim_time_ps,
        "potential_energy_kcal_mol": e_pot * KJ_TO_KCAL + offset,
        "kinetic_energy_kcal_mol": e_kin * KJ_TO_KCAL,
        "temperature_k": 2.0 * e_kin / (dof * gas_constant),
        "wall_seconds": wall,
        "ns_per_day": run_ps * 1e-3 / (wall / 86400.0) if wall > 0 else float("inf"),
        "platform": platform_name,
        "ensemble": ensemble,
        "timestep_fs": timestep_fs,
        "constraints": check_constraints(constraints),
        "n_constraints": int(sim.system.getNumConstraints()),
        "max_bond_change": watch.max_change,
        "worst_bond": watch.worst_bond,
        "bond_broken_at_ps": watch.broken_at_ps,
        **_box_summary(sim, ensemble, pressure_bar),
        **{k: str(v) for k, v in outputs.items()},
    }


def _box_summary(sim: app.Simulation, ensemble: str, pressure_bar: float) -> dict:
    """Size, volume and density of a periodic box at the end of a run (empty in vacuum)."""
    built = getattr(sim, "physff_system", None)
    if built is None:
        return {}
    state = sim.context.getState()
    volume_nm3 = state.getPeriodicBoxVolume().value_in_unit(unit.nanometer**3)
    mass = sum((sim.system.getParticleMass(i) for i in range(sim.system.getNumParticles())), 0.0 * unit.dalton)
    density = (mass / (volume_nm3 * unit.nanometer**3)).value_in_unit(unit.gram / unit.item / unit.milliliter)
    return {
        "solvent": built.solvent,
        "n_atoms": built.counts["atoms"],
        "n_waters": built.counts["waters"],
        "box_volume_nm3": volume_nm3,
        "density_g_ml": density,
        "pressure_bar": float(pressure_bar) if ensemble == "npt" else None,
    }
