"""The ``physff-openmm`` command.

Synopsis::

    physff-openmm parameterize FILE -o system.xml            [common options]
    physff-openmm energy       FILE [--json]
    physff-openmm minimize     FILE -o OUT.sdf|OUT.pdb [--json] [--tolerance F] [--max-iterations N]
    physff-openmm scan         FILE --dihedral I J K L [--step DEG] -o OUT.csv [--plot OUT.png] [-O OUT.sdf]
    physff-openmm scan         FILE --conformers N -o OUT.csv [-O OUT.sdf] [--seed N]
    physff-openmm md           FILE --steps N [--temperature K] [--timestep FS] -o TRAJ.dcd|TRAJ.pdb
                               [--report-csv STATE.csv] [--ensemble nvt|nve|npt] [--report-interval N]
                               [--checkpoint FILE] [--restart FILE] [--plot OUT.png] [--seed N]
                               [--no-constraints]   (default: 2 fs, bonds to H constrained)
                               [--solvent tip3p] [--padding NM] [--ions NaCl:0.15] [--pressure BAR]
                               [--structure START.pdb]   (in a periodic box of water, PME, NPT)
    physff-openmm md           COMPLEX.pdb --ligand LIGAND.sdf --steps N -o TRAJ.dcd ...
                               (protein with Amber14, water TIP3P, the ligand with physff)
    physff-openmm interaction  FILE [--json] [--minimize]
    physff-openmm models       [--json]
    physff-openmm label|train  ...   (with physff-openmm[train])

Common options: --model M, --backend torch|native, --platform NAME, --charge Q,
--quiet, --debug, --version. FILE is a .sdf/.mol/.pdb/.xyz file or a SMILES string.

Exit status: 0 on success, 2 for usage and input errors, 1 for other failures,
130 when interrupted. Errors are one line on stderr (``--debug`` adds the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shlex
import sys
import traceback
import warnings
from pathlib import Path

__all__ = ["main", "build_parser"]

PROG = "physff-openmm"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_TRAIN_HINT = "pip install physff-openmm[train]"
_TRAINING_COMMANDS = ("label", "train")


class _UsageError(Exception):
    """An argparse usage error, reported as one line."""

    def __init__(self, message: str, prog: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become one line on stderr (no usage block)."""

    def error(self, message):  # noqa: D102
        raise _UsageError(message, self.prog)


def _version() -> str:
    from . import __version__

    return f"{PROG} {__version__}"


# --- argument types ---------------------------------------------------------------------

from ._argtypes import nonnegative_int as _nonnegative_int  # noqa: E402
from ._argtypes import positive_float as _positive_float  # noqa: E402
from ._argtypes import positive_int as _positive_int  # noqa: E402


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


# --- parser -----------------------------------------------------------------------------

def _common_options() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument("--model", default="default", metavar="M", help="model name or model file (default: %(default)s)")
    g.add_argument(
        "--backend",
        choices=("torch", "native"),
        default="native",
        help="short-range terms as OpenMM forces (native, default) or a TorchForce (torch)",
    )
    g.add_argument(
        "--platform",
        metavar="NAME",
        help="OpenMM platform: Reference, CPU, CUDA or OpenCL (default: the fastest usable one)",
    )
    g.add_argument("--charge", type=_integer, metavar="Q", help="total charge in e (needed for XYZ files)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings or status lines")
    g.add_argument("--debug", action="store_true", help="show the traceback of an error")
    g.add_argument("--version", action="version", version=_version())
    return common


def _add_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="molecule: .sdf/.mol/.pdb/.xyz file or SMILES string")


def _add_training_placeholders(sub, reason: str | None) -> None:
    for name in _TRAINING_COMMANDS:
        what = "label structures with quantum chemistry" if name == "label" else "train a model"
        p = sub.add_parser(name, help=f"{what} (needs physff-openmm[train])", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_training_missing(name, reason))


def _training_missing(name: str, reason: str | None):
    def run(args) -> int:
        why = f" ({reason})" if reason else ""
        print(f"{PROG}: error: '{name}' needs the training extras{why}: {_TRAIN_HINT}", file=sys.stderr)
        return EXIT_FAILURE

    return run


def build_parser(*, training: bool = False) -> argparse.ArgumentParser:
    """The argument parser.

    With ``training`` the ``label`` and ``train`` commands come from
    ``physff_openmm.training.cli.register`` (imported only then: it needs the
    training extras); otherwise, or when that import fails, they are placeholders
    that print an install hint.
    """
    reason = None
    if training:
        try:
            training_cli = importlib.import_module("physff_openmm.training.cli")
            parser, sub = _base_parser()
            training_cli.register(sub)
            return parser
        except ImportError as exc:  # the module, or one of its dependencies, is missing
            missing = getattr(exc, "name", None)
            if isinstance(exc, ModuleNotFoundError) and missing:
                reason = f"missing module {missing!r}"
            else:
                reason = "physff_openmm.training.cli is not available"
    parser, sub = _base_parser()
    _add_training_placeholders(sub, reason)
    return parser


def _base_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    common = _common_options()
    parser = _Parser(
        prog=PROG,
        description="Graph-network force field for OpenMM: energies, minimization, scans, MD, interaction energies.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("parameterize", parents=[common], help="write the OpenMM System (XML) and the parameters (JSON)")
    _add_file(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.xml", help="System XML; the parameters go to OUT.json")
    p.set_defaults(func=_cmd_parameterize)

    p = sub.add_parser("energy", parents=[common], help="single-point energy and its components")
    _add_file(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_energy)

    p = sub.add_parser("minimize", parents=[common], help="minimize a molecule or complex")
    _add_file(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.sdf|OUT.pdb", help="minimized structure")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--tolerance", type=_positive_float, default=0.1, metavar="F", help="RMS force, kcal/mol/A (default: %(default)s)")
    p.add_argument("--max-iterations", type=_nonnegative_int, default=0, metavar="N", help="0: until converged")
    p.set_defaults(func=_cmd_minimize)

    p = sub.add_parser("scan", parents=[common], help="relaxed torsion scan, or conformer ranking")
    _add_file(p)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dihedral", nargs=4, type=_nonnegative_int, metavar=("I", "J", "K", "L"), help="zero-based atom indices")
    mode.add_argument("--conformers", type=_positive_int, metavar="N", help="rank N ETKDG conformers")
    p.add_argument("--step", type=_positive_float, metavar="DEG", help="torsion grid step, degrees (default: 15)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.csv", help="CSV of the scan")
    p.add_argument("--plot", metavar="OUT.png", help="torsion profile plot")
    p.add_argument(
        "-O", "--output-structures", metavar="OUT.sdf", help="optimized structures: scan points, or conformers in rank order"
    )
    p.add_argument("--seed", type=_integer, default=0xF00D, help="ETKDG seed (conformer mode)")
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser("md", parents=[common], help="molecular dynamics in vacuum, in water, or beside a protein")
    p.add_argument("file", metavar="FILE",
                   help="molecule: .sdf/.mol/.pdb/.xyz file or SMILES string; with --ligand, the receptor (.pdb/.cif)")
    p.add_argument("--steps", type=_positive_int, required=True, metavar="N", help="number of time steps")
    p.add_argument("--temperature", type=_positive_float, default=300.0, metavar="K", help="K (default: %(default)s)")
    p.add_argument("--timestep", type=_positive_float, default=None, metavar="FS",
                   help="fs (default: 2, with bonds to hydrogen constrained; give 1 with --no-constraints)")
    p.add_argument("--no-constraints", action="store_true",
                   help="do not constrain bonds to hydrogen (then use --timestep 1: a 2 fs step is too long "
                   "for free X-H bonds and warns)")
    p.add_argument("--friction", type=_positive_float, default=1.0, metavar="PER_PS", help="Langevin friction, 1/ps (default: %(default)s)")
    p.add_argument("--ensemble", choices=("nvt", "nve", "npt"), default=None,
                   help="Langevin NVT, Verlet NVE, or Langevin with a Monte Carlo barostat (NPT; in water only); "
                   "default: NPT in water, NVT in vacuum")
    p.add_argument("-o", "--output", required=True, metavar="TRAJ.dcd|TRAJ.pdb", help="trajectory")
    p.add_argument("--report-csv", metavar="STATE.csv", help="energies and temperature every --report-interval steps")
    p.add_argument("--report-interval", type=_positive_int, default=100, metavar="N", help="steps between frames (default: %(default)s)")
    p.add_argument("--checkpoint", metavar="FILE", help="state file (XML) saved periodically and at the end")
    p.add_argument("--checkpoint-interval", type=_positive_int, metavar="N", help="steps between checkpoints (default: 10 report intervals)")
    p.add_argument("--restart", metavar="FILE", help="continue from a checkpoint")
    p.add_argument("--no-minimize", action="store_true", help="do not minimize before drawing velocities")
    p.add_argument("--plot", metavar="OUT.png", help="energy and temperature traces (needs --report-csv)")
    p.add_argument("--seed", type=_integer, help="seed of the velocities and Langevin noise")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    g = p.add_argument_group("in water (a periodic box, PME; protein and water by Amber14, the molecule by physff)")
    g.add_argument("--solvent", metavar="MODEL",
                   help="water model: tip3p (the default with --ligand), tip3pfb, spce, opc3, tip4pew")
    g.add_argument("--ligand", metavar="LIGAND.sdf",
                   help="the ligand, in the receptor's frame; FILE is then the receptor (protein, maybe water and the "
                   "ligand itself, which LIGAND replaces)")
    g.add_argument("--padding", type=_positive_float, metavar="NM",
                   help="water around the solute: box edge = solute diameter + NM (default: 1.0)")
    g.add_argument("--ions", metavar="SALT:MOLAR", help="salt and concentration, e.g. NaCl:0.15 (default: neutralize with NaCl)")
    g.add_argument("--pressure", type=_positive_float, default=1.0, metavar="BAR", help="barostat pressure, bar (default: %(default)s)")
    g.add_argument("--structure", metavar="START.pdb", help="the starting structure (after minimization), to read the DCD with")
    p.set_defaults(func=_cmd_md)

    p = sub.add_parser("interaction", parents=[common], help="interaction energy of a complex, E(AB) - E(A) - E(B)")
    _add_file(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--minimize", action="store_true", help="minimize the complex first")
    p.set_defaults(func=_cmd_interaction)

    p = sub.add_parser("models", parents=[common], help="list the available models")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_models)
    return parser, sub


# --- helpers ----------------------------------------------------------------------------

def _status(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr)


def _finite_json(value):
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


def _print_json(data) -> None:
    print(json.dumps(_finite_json(data), indent=2, allow_nan=False))


# --- commands ---------------------------------------------------------------------------

def _cmd_parameterize(args) -> int:
    from . import create_system, parameterize
    from .errors import ConfigError
    from .workflows import atomic_output, check_output_path

    out = Path(args.output)
    if out.suffix.lower() == ".json":
        raise ConfigError(f"-o {out}: give the System XML path (e.g. system.xml); the parameters go next to it as .json")
    json_path = out.with_suffix(".json")
    check_output_path(out, what="System XML")
    check_output_path(json_path, what="parameter JSON")
    import openmm

    params = parameterize(args.file, model=args.model, charge=args.charge)
    system = create_system(params, backend=args.backend)
    xml = openmm.XmlSerializer.serialize(system)
    with atomic_output(out) as tmp_xml, atomic_output(json_path) as tmp_json:
        tmp_xml.write_text(xml)
        tmp_json.write_text(json.dumps(params.to_dict(), indent=1))
    _status(args, f"wrote {out} ({params.n_atoms} atoms, {args.backend} backend) and {json_path}")
    return EXIT_OK


def _cmd_energy(args) -> int:
    from .workflows import energy

    res = energy(args.file, model=args.model, backend=args.backend, platform=args.platform, charge=args.charge)
    if args.json:
        _print_json(res)
    else:
        print(f"energy          {res['energy_kcal_mol']:16.4f} kcal/mol  ({res['energy_kj_mol']:.4f} kJ/mol)")
        print(f"  Coulomb       {res['coulomb_kcal_mol']:16.4f} kcal/mol")
        print(f"  C6/C12        {res['c6_c12_kcal_mol']:16.4f} kcal/mol")
        print(f"  short-range   {res['short_range_kcal_mol']:16.4f} kcal/mol")
        print(f"  E_lin offset  {res['energy_offset_kcal_mol']:16.4f} kcal/mol")
        print(f"{res['n_atoms']} atoms, model {res['model']}, {res['backend']} backend, {res['platform']} platform")
    return EXIT_OK


def _cmd_minimize(args) -> int:
    from .workflows import STRUCTURE_SUFFIXES, check_output_path, minimize, write_structures

    out = check_output_path(args.output, what="structure", suffixes=STRUCTURE_SUFFIXES)
    mol, res = minimize(
        args.file,
        model=args.model,
        backend=args.backend,
        platform=args.platform,
        charge=args.charge,
        tolerance_kcal_mol_a=args.tolerance,
        max_iterations=args.max_iterations,
        progress=False if args.quiet else None,
    )
    write_structures(mol, out, properties=[{"physff_energy_kcal_mol": repr(res["final_energy_kcal_mol"])}])
    if args.json:
        _print_json({**res, "output": str(out)})
    else:
        print(f"initial energy {res['initial_energy_kcal_mol']:14.4f} kcal/mol")
        print(f"final energy   {res['final_energy_kcal_mol']:14.4f} kcal/mol  (change {res['energy_change_kcal_mol']:.4f})")
        print(f"RMS displacement {res['rmsd_angstrom']:.3f} A; wrote {out}")
    return EXIT_OK


def _cmd_scan(args) -> int:
    from .workflows import (
        check_output_path,
        check_plot_path,
        conformer_scan,
        plot_scan,
        torsion_scan,
        write_rows_csv,
        write_structures,
    )

    if args.conformers is not None:
        for flag, value in (("--plot", args.plot), ("--step", args.step)):
            if value is not None:
                raise _UsageError(f"{flag} is for torsion scans (--dihedral), not with --conformers", f"{PROG} scan")
    if args.step is not None and (abs(360.0 / args.step - round(360.0 / args.step)) > 1e-9 or round(360.0 / args.step) < 2):
        raise _UsageError(f"--step must divide 360 degrees into at least two points (15, 30, 45...), got {args.step:g}",
                          f"{PROG} scan")
    out = check_output_path(args.output, what="scan CSV")
    plot = check_plot_path(args.plot) if args.plot else None
    sdf = None
    if args.output_structures:
        sdf = check_output_path(args.output_structures, what="structures", suffixes=(".sdf",))
    common = dict(model=args.model, backend=args.backend, platform=args.platform, charge=args.charge,
                  progress=False if args.quiet else None)
    if args.dihedral is not None:
        step = 15.0 if args.step is None else args.step
        rows = torsion_scan(args.file, tuple(args.dihedral), step, output_structures=sdf, **common)
        write_rows_csv(out, ("angle_deg", "energy_kcal_mol"), rows)
        if plot is not None:
            plot_scan(rows, plot, title=f"torsion {' '.join(map(str, args.dihedral))}")
        written = ", ".join(str(p) for p in (out, plot, sdf) if p is not None)
        _status(args, f"{len(rows)} scan points; wrote {written}")
        if not args.quiet:
            for angle, e in rows:
                print(f"{angle:8.1f} {e:12.4f}")
    else:
        mol, rows = conformer_scan(args.file, args.conformers, seed=args.seed, **common)
        if sdf is not None:
            props = [{"conformer": cid, "energy_kcal_mol": repr(e)} for cid, e in rows]
            write_structures(mol, sdf, conf_ids=[cid for cid, _ in rows], properties=props)
        write_rows_csv(out, ("conformer", "energy_kcal_mol"), rows)
        _status(args, f"{len(rows)} conformers ranked; wrote {out}" + (f" and {sdf}" if sdf else ""))
        if not args.quiet:
            for cid, e in rows:
                print(f"{cid:6d} {e:12.4f}")
    return EXIT_OK


def _cmd_md(args) -> int:
    from .workflows import check_plot_path, plot_md_report, run_md

    if args.plot and not args.report_csv:
        raise _UsageError("--plot needs --report-csv (the plot is drawn from the state report)", f"{PROG} md")
    in_water = args.solvent is not None or args.ligand is not None
    if not in_water:
        for flag, value in (("--padding", args.padding), ("--ions", args.ions)):
            if value is not None:
                raise _UsageError(f"{flag} is for MD in water: add --solvent tip3p (or --ligand with a receptor)", f"{PROG} md")
    if args.plot:
        check_plot_path(args.plot)
    molecule, receptor = (args.ligand, args.file) if args.ligand is not None else (args.file, None)
    res = run_md(
        molecule,
        args.steps,
        model=args.model,
        backend=args.backend,
        platform=args.platform,
        charge=args.charge,
        temperature_k=args.temperature,
        timestep_fs=args.timestep,
        friction_per_ps=args.friction,
        ensemble=args.ensemble,
        constraints=None if args.no_constraints else "hbonds",
        solvent=args.solvent,
        receptor=receptor,
        padding_nm=args.padding,
        ions=args.ions,
        pressure_bar=args.pressure,
        structure=args.structure,
        trajectory=args.output,
        report_csv=args.report_csv,
        report_interval=args.report_interval,
        checkpoint=args.checkpoint,
        checkpoint_interval=args.checkpoint_interval,
        restart=args.restart,
        minimize_first=not args.no_minimize,
        seed=args.seed,
        progress=False if args.quiet else None,
    )
    if args.plot:
        plot_md_report(args.report_csv, args.plot, title=f"{res['ensemble'].upper()} MD")
        res["plot"] = str(args.plot)
    if args.json:
        _print_json(res)
    else:
        print(
            f"{res['steps']} steps of {res['timestep_fs']:g} fs ({res['ensemble'].upper()}, "
            f"{'bonds to H constrained' if res['constraints'] else 'no constraints'}, {res['platform']}), "
            f"t = {res['time_ps']:.3f} ps; "
            f"E_pot {res['potential_energy_kcal_mol']:.3f} kcal/mol, T {res['temperature_k']:.1f} K; "
            f"{res['ns_per_day']:.1f} ns/day"
        )
        if "density_g_ml" in res:
            print(f"{res['n_atoms']} atoms, {res['n_waters']} {res['solvent']} waters; box {res['box_volume_nm3']:.2f} nm^3, "
                  f"density {res['density_g_ml']:.3f} g/mL")
        if res["worst_bond"] is not None:
            print(f"largest bond change from the input geometry {res['max_bond_change']:+.1%} ({res['worst_bond']})")
        written = [res[k] for k in ("trajectory", "report_csv", "checkpoint", "structure", "plot")
                   if k in res and k not in res["appended"]]
        extended = [res[k] for k in res["appended"]]
        parts = (["wrote " + ", ".join(written)] if written else []) + (
            ["appended to " + ", ".join(extended)] if extended else [])
        _status(args, "; ".join(parts))
    return EXIT_OK


def _cmd_interaction(args) -> int:
    from .workflows import interaction_energy

    res = interaction_energy(
        args.file,
        minimize=args.minimize,
        model=args.model,
        backend=args.backend,
        platform=args.platform,
        charge=args.charge,
    )
    if args.json:
        _print_json(res)
    else:
        geometry = "minimized complex" if res["minimized"] else "input geometry"
        print(
            f"interaction energy {res['interaction_energy_kcal_mol']:.4f} kcal/mol "
            f"({res['interaction_energy_kj_mol']:.4f} kJ/mol), {len(res['fragments'])} fragments, {geometry}"
        )
        print(f"  E(complex)   {res['complex_energy_kcal_mol']:16.4f} kcal/mol")
        for k, e in enumerate(res["fragment_energies_kcal_mol"]):
            print(f"  E(fragment {k + 1}) {e:14.4f} kcal/mol")
    return EXIT_OK


def _cmd_models(args) -> int:
    from .registry import available_models

    models = available_models()
    if args.json:
        _print_json(models)
    elif not models:
        print("no models installed; pass --model PATH to a model file")
    else:
        width = max(len(n) for n in models)
        for name, description in models.items():
            print(f"{name:<{width}}  {description}")
    return EXIT_OK


# --- entry point ------------------------------------------------------------------------

def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _command_word(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the ``physff-openmm`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    quiet = "--quiet" in argv or "-q" in argv

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if not quiet:
            print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)

    from .errors import DependencyError, PhysFFError, QMError, RunInterrupted, SimulationError

    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            parser = build_parser(training=_command_word(argv) in _TRAINING_COMMANDS)
            args = parser.parse_args(argv)
            rc = args.func(args)
            return EXIT_OK if rc is None else int(rc)
        except _UsageError as exc:
            print(f"{PROG}: error: {_one_line(exc)} (see '{exc.prog} --help')", file=sys.stderr)
            return EXIT_USAGE
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
        except KeyboardInterrupt as exc:
            if isinstance(exc, RunInterrupted):  # MD stopped at a clean point and says what it kept
                resume = f"; continue with --restart {shlex.quote(exc.checkpoint)}" if exc.checkpoint else ""
                print(f"{PROG}: {_one_line(exc)}{resume}", file=sys.stderr)
            else:
                print(f"{PROG}: interrupted; no partial output was kept", file=sys.stderr)
            return EXIT_INTERRUPTED
        except PhysFFError as exc:
            if debug:
                traceback.print_exc()
            print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
            runtime = isinstance(exc, (SimulationError, QMError, DependencyError))
            return EXIT_FAILURE if runtime else EXIT_USAGE
        except ImportError as exc:  # an optional dependency a command reached for is not installed
            if debug:
                traceback.print_exc()
            missing = getattr(exc, "name", None)
            what = f"module {missing!r}" if missing else "a module"
            training = _command_word(argv) in _TRAINING_COMMANDS
            hint = _TRAIN_HINT if training else "pip install physff-openmm[plot]" if missing == "matplotlib" else (
                "reinstall physff-openmm (pip install physff-openmm)")
            print(f"{PROG}: error: {what} is not installed: {hint}", file=sys.stderr)
            return EXIT_FAILURE
        except BrokenPipeError:  # the reader of our output went away (`| head`): stop quietly
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError, AttributeError):
                pass
            return EXIT_FAILURE
        except OSError as exc:
            if debug:
                traceback.print_exc()
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            print(f"{PROG}: error: {_one_line(exc.strerror or exc)}{where}", file=sys.stderr)
            return EXIT_FAILURE
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
            if debug:
                traceback.print_exc()
                return EXIT_FAILURE
            print(
                f"{PROG}: error: unexpected {type(exc).__name__}: {_one_line(exc)} "
                "(rerun with --debug to see the traceback)",
                file=sys.stderr,
            )
            return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
