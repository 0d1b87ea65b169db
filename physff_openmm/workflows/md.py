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
import signal
import threading
import time
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from ..errors import ConfigError, FileAccessError, ModelFailureError, RunInterrupted, SimulationError
from ..units import ANGSTROM_TO_NM, KJ_TO_KCAL, in_units
from ._files import atomic_output, check_output_path, kept_output
from .simulation import (
    BROKEN_BOND_FRACTION,
    DEFAULT_TOLERANCE_KCAL_MOL_A,
    bond_changes,
    build_simulation,
    check_bonds_kept,
    check_constraints,
    check_positive,
    context_positions_angstrom,
    degrees_of_freedom,
    minimize_context,
    progress_bar,
)

__all__ = ["run_md", "TRAJECTORY_SUFFIXES", "BROKEN_BOND_FRACTION"]

#: Trajectory formats of :func:`run_md`.
TRAJECTORY_SUFFIXES: tuple[str, ...] = (".dcd", ".pdb")

#: Minimizer tolerance (RMS force, kcal/mol/A) before MD in water: OpenMM's default, 10 kJ/mol/nm.
SOLVATED_TOLERANCE_KCAL_MOL_A = 10.0 * KJ_TO_KCAL * ANGSTROM_TO_NM
#: Iteration limit of that minimization (L-BFGS with constraints: ~10-20 ms per iteration for 1000 atoms
#: on one CPU thread).
SOLVATED_MAX_ITERATIONS = 500


class _TrajectoryWriter:
    """An OpenMM reporter writing positions to an open DCD or PDB file (frames every ``interval`` steps)."""

    def __init__(self, handle, fmt: str, interval: int, *, append: bool = False, frames_before: int = 0):
        self._fh = handle
        self._fmt = fmt
        self._interval = interval
        self._append = append  # DCD: extend the file's header and frames; PDB: number models on
        self._dcd = None
        self._frames = frames_before

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
                    append=self._append,
                )
            box = state.getPeriodicBoxVectors() if simulation.topology.getPeriodicBoxVectors() is not None else None
            self._dcd.writeModel(positions, periodicBoxVectors=box)
        else:
            if self._frames == 0 and not self._append:
                app.PDBFile.writeHeader(simulation.topology, self._fh)
            app.PDBFile.writeModel(simulation.topology, positions, self._fh, self._frames + 1)
        self._frames += 1

    def close(self, topology) -> None:
        if self._fmt == ".pdb" and self._frames:
            app.PDBFile.writeFooter(topology, self._fh)


class _BondWatch:
    """An OpenMM reporter following every covalent bond's length against its length in the input geometry.

    Keeps the largest relative change and the bond it belongs to. Once a bond
    moved further than :data:`BROKEN_BOND_FRACTION` it keeps the error in
    ``failure`` (a :class:`~physff_openmm.errors.ModelFailureError`), which the
    run raises: the model's covalent terms did not hold the bond, and what
    follows would not be chemistry.
    """

    def __init__(self, pairs, symbols, reference_angstrom, interval: int):
        self._pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
        self._symbols = list(symbols)
        self._reference = np.asarray(reference_angstrom, dtype=np.float64)
        self._interval = interval
        self.max_change = 0.0  # signed: > 0 stretched, < 0 compressed
        self.worst_bond = None
        self.failure: ModelFailureError | None = None

    def describeNextReport(self, simulation):  # noqa: N802 - OpenMM reporter API
        steps = self._interval - simulation.currentStep % self._interval
        return (steps, True, False, False, False, None)

    def report(self, simulation, state):
        if not len(self._pairs) or self.failure is not None:
            return
        x = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        t = state.getTime().value_in_unit(unit.picosecond)
        try:
            change, bond = check_bonds_kept(self._pairs, self._symbols, self._reference, x,
                                            where=f"MD (t = {t:.3f} ps, step {state.getStepCount()})")
        except ModelFailureError as exc:
            self.failure = exc
            return
        if abs(change) > abs(self.max_change):
            self.max_change, self.worst_bond = change, bond


@contextlib.contextmanager
def _deferred_interrupt():
    """Yield a function that tells whether Ctrl-C was pressed; the run stops at its next clean point.

    A second Ctrl-C interrupts at once. Outside the main thread (no signal
    handlers there) Ctrl-C is not deferred.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    pressed: list[bool] = []

    def handler(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def _strip_pdb_footer(path: Path) -> int:
    """Remove the CONECT/END footer of a multi-model PDB file (to append models); returns its model count."""
    lines = path.read_text().splitlines(keepends=True)
    while lines and (lines[-1].strip() == "END" or lines[-1].startswith("CONECT")):
        lines.pop()
    path.write_text("".join(lines))
    return sum(line.startswith("MODEL") for line in lines)


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

    Numbers take the units their names say; ``openmm.unit`` Quantities are converted
    (``temperature_k=310 * unit.kelvin``, ``timestep_fs=0.002 * unit.picoseconds``).

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
        Checkpoint written by an earlier run of the same molecule to continue from; the
        trajectory and state report, where they exist, are appended to (no second
        starting frame).
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
        ``wall_seconds``, ``ns_per_day``, ``platform``, the output paths, ``appended`` (the
        outputs a restart extended: ``"trajectory"``, ``"report_csv"``), and the bond watch
        (every ``report_interval`` steps or more often): ``max_bond_change`` (the largest
        relative change of a covalent bond from its length in the input geometry; > 0
        stretched) and ``worst_bond`` (e.g. ``"O8-H17"``). Constrained bonds keep their length.
        In water also ``n_atoms``, ``n_waters``, ``box_volume_nm3`` and ``density_g_ml`` (at the
        end of the run), ``solvent`` and ``pressure_bar`` (None unless NPT); the bond watch
        follows the physff molecules' bonds.

    Raises
    ------
    ModelFailureError
        A covalent bond moved more than :data:`BROKEN_BOND_FRACTION` from its length in
        the input geometry: in the minimization (nothing is written) or in MD (the run
        stops; the trajectory and state report keep what was written, and the message
        says so).
    SimulationError
        Energies or coordinates became NaN (the run stops; outputs as above).
    RunInterrupted
        Ctrl-C: the run stops after the current chunk of steps, the trajectory and state
        report keep what was written, the checkpoint (if any) is saved at that step, and
        a run with ``restart`` continues from it and appends to them.
    """
    temperature_k = in_units(temperature_k, unit.kelvin, "temperature_k")
    timestep_fs = in_units(timestep_fs, unit.femtosecond, "timestep_fs")
    friction_per_ps = in_units(friction_per_ps, unit.picosecond**-1, "friction_per_ps")
    padding_nm = in_units(padding_nm, unit.nanometer, "padding_nm")
    pressure_bar = in_units(pressure_bar, unit.bar, "pressure_bar")
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
    reference = context_positions_angstrom(sim.context)  # the input geometry: every bond is measured from it
    if restart is not None:
        load_checkpoint(sim, restart)
        changes = bond_changes(sim.physff_bonds, reference, context_positions_angstrom(sim.context))
        if len(changes) and not np.all(np.abs(changes) <= BROKEN_BOND_FRACTION):
            k = int(np.nanargmax(np.where(np.isfinite(changes), np.abs(changes), np.inf)))
            i, j = (int(a) for a in np.asarray(sim.physff_bonds)[k])
            raise ConfigError(
                f"restart file {str(restart)!r} does not fit this molecule: its bond {sim.physff_symbols[i]}{i}-"
                f"{sim.physff_symbols[j]}{j} is {changes[k]:+.0%} from the input geometry's; it is probably a "
                "checkpoint of another molecule (restart with the molecule file the checkpoint was run with)"
            )
    else:
        if minimize_first:
            if periodic:  # a start for MD, not a converged minimum
                minimize_context(sim.context, SOLVATED_TOLERANCE_KCAL_MOL_A, SOLVATED_MAX_ITERATIONS)
            else:
                minimize_context(sim.context, DEFAULT_TOLERANCE_KCAL_MOL_A)
            check_bonds_kept(sim.physff_bonds, sim.physff_symbols, reference, context_positions_angstrom(sim.context),
                             where="the minimization before MD")
        if seed is None:
            sim.context.setVelocitiesToTemperature(temperature_k * unit.kelvin)
        else:
            sim.context.setVelocitiesToTemperature(temperature_k * unit.kelvin, int(seed))
    first_step = sim.currentStep
    offset = sim.physff_energy_offset
    platform_name = sim.context.getPlatform().getName()
    appended = []

    def kept(step: int) -> str:
        """What a run that stopped at ``step`` leaves behind, for the error message."""
        files = [str(outputs[k]) for k in ("trajectory", "report_csv") if k in outputs]
        return f"frames and rows up to step {step} are kept in {', '.join(files)}" if files else "no trajectory was written"

    with contextlib.ExitStack() as stack:
        writers, traj = [], None
        if trajectory is not None:
            path, append = stack.enter_context(kept_output(outputs["trajectory"], append=restart is not None))
            fmt = outputs["trajectory"].suffix.lower()
            frames_before = _strip_pdb_footer(path) if append and fmt == ".pdb" else 0
            mode = ("r+b" if append else "wb") if fmt == ".dcd" else ("a" if append else "w")
            fh = stack.enter_context(open(path, mode))
            traj = _TrajectoryWriter(fh, fmt, report_interval, append=append, frames_before=frames_before)
            stack.callback(traj.close, sim.topology)  # the PDB footer, also when the run stops early
            writers.append((traj, append))
            if append:
                appended.append("trajectory")
        if report_csv is not None:
            path, append = stack.enter_context(kept_output(outputs["report_csv"], append=restart is not None))
            fh = stack.enter_context(open(path, "a" if append else "w"))
            writers.append((
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
                    append=append,
                ),
                append,
            ))
            if append:
                appended.append("report_csv")
        interrupted = stack.enter_context(_deferred_interrupt())
        chunk = max(1, min(report_interval, steps // 100 or 1))
        t0 = time.perf_counter()
        try:
            start_state = sim.context.getState(getPositions=True, getVelocities=True, getEnergy=True,
                                              enforcePeriodicBox=periodic)
            if structure is not None:
                with atomic_output(outputs["structure"]) as tmp, open(tmp, "w") as fh:
                    app.PDBFile.writeFile(sim.topology, start_state.getPositions(), fh, keepIds=True)
            for w, append in writers:  # the starting frame (an appended file has it already)
                if not append:
                    w.report(sim, start_state)
            watch = _BondWatch(sim.physff_bonds, sim.physff_symbols, reference, chunk)
            watch.report(sim, start_state)
            sim.reporters.extend([w for w, _ in writers] + [watch])
            if checkpoint is not None:
                sim.reporters.append(_CheckpointWriter(outputs["checkpoint"], checkpoint_interval))
            with progress_bar(steps, "step", progress) as bar:
                done = 0
                while done < steps and watch.failure is None:
                    n = min(chunk, steps - done)
                    sim.step(n)
                    done += n
                    bar.update(n)
                    if interrupted() and done < steps:
                        saved, path = "", None
                        if checkpoint is not None:
                            save_checkpoint(sim, outputs["checkpoint"])
                            path = str(outputs["checkpoint"])
                            saved = f"; the checkpoint {path!r} holds step {sim.currentStep}"
                        raise RunInterrupted(f"interrupted at step {sim.currentStep}; {kept(sim.currentStep)}{saved}",
                                             checkpoint=path)
            if watch.failure is not None:
                raise ModelFailureError(f"{watch.failure}; the run stopped, {kept(sim.currentStep)}",
                                        bond=watch.failure.bond, change=watch.failure.change)
        except RunInterrupted:
            raise
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread: at once, mid-step
            saved = checkpoint is not None and Path(outputs["checkpoint"]).is_file()
            raise RunInterrupted(
                f"interrupted at step {sim.currentStep}; {kept(sim.currentStep)}"
                + (f"; the checkpoint {str(outputs['checkpoint'])!r} holds the last periodic save" if saved else ""),
                checkpoint=str(outputs["checkpoint"]) if saved else None,
            ) from None
        except (ValueError, openmm.OpenMMException) as exc:  # StateDataReporter: "Energy is NaN"; NaN coordinates
            raise SimulationError(
                f"the simulation became unstable at step {sim.currentStep} ({str(exc).splitlines()[0]}); "
                f"{kept(sim.currentStep)}; try a smaller time step, or minimize the structure first"
            ) from None
        finally:
            sim.reporters.clear()
        wall = time.perf_counter() - t0
        state = sim.context.getState(getEnergy=True)
        e_pot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        e_kin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        if not (math.isfinite(e_pot) and math.isfinite(e_kin)):
            raise SimulationError(
                f"the simulation became unstable (energy is {e_pot} kJ/mol at step {sim.currentStep}); "
                f"{kept(sim.currentStep)}; try a smaller time step, or minimize the structure first"
            )
        if checkpoint is not None:
            save_checkpoint(sim, outputs["checkpoint"])

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
        "appended": appended,
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
