"""The training subcommands of ``physff-openmm``: ``label`` and ``train``.

Synopsis::

    physff-openmm label INPUT --level LEVEL --conformers N --out DATA.h5
                        [--optimize xtb|none] [--off-equilibrium N]
                        [--scheduler ADDR] [--workers N] [--seed N]
    physff-openmm train embed  --data DATA.h5 [DATA2.h5 ...] --epochs N --out DIR [--config YAML]
    physff-openmm train energy --data DATA.h5 [...] [--embed DIR] --epochs N --out DIR [--config YAML]
    physff-openmm train evaluate --model MODEL --data DATA.h5 [...] --out DIR [--no-xtb]

``INPUT`` is a structure file (.smi, .sdf, .mol, .xyz) or one SMILES string.
``--level`` takes a PySCF level (``b3lyp-d3bj/def2-svp``, ``hf/sto-3g``, ...) or
``gfn2-xtb`` (tblite energies and forces, no kinetic-energy terms).
``train energy`` writes ``DIR/model.pt``, a runtime model file; adding it to the
package's model index is a separate step (:func:`physff_openmm.training.export.install_model`).

Each handler returns an exit code; errors are :class:`~physff_openmm.errors.PhysFFError`
subclasses, which the main command prints as one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..errors import ConfigError

__all__ = ["register", "cmd_label", "cmd_train_embed", "cmd_train_energy", "cmd_train_evaluate", "MODEL_FILE"]

#: File name of the model written by ``train energy``.
MODEL_FILE = "model.pt"


from .._argtypes import nonnegative_int as _nonnegative_int  # noqa: E402
from .._argtypes import positive_int as _positive_int  # noqa: E402


def _flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--debug", action="store_true", help="tracebacks on errors")


def register(subparsers) -> None:
    """Add the ``label`` and ``train`` subcommands to the ``physff-openmm`` parser."""
    p = subparsers.add_parser("label", help="label structures with quantum chemistry (HDF5 shard)")
    p.add_argument("input", metavar="INPUT", help="structure file (.smi/.sdf/.mol/.xyz) or a SMILES string")
    p.add_argument("--level", default="b3lyp-d3bj/def2-svp", help="level of theory, e.g. b3lyp-d3bj/def2-svp, hf/sto-3g, gfn2-xtb (default: %(default)s)")
    p.add_argument("--conformers", type=_nonnegative_int, default=4, metavar="N", help="conformers per molecule; 0: the input's own (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DATA.h5", help="shard to write (resumed if it exists)")
    p.add_argument("--optimize", choices=("xtb", "none"), default="xtb", help="GFN2-xTB minimization first (default: %(default)s)")
    p.add_argument("--off-equilibrium", type=_nonnegative_int, default=0, metavar="N", help="GFN2-xTB MD samples per conformer (default: 0)")
    p.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler address (default: a local cluster)")
    p.add_argument("--workers", type=_positive_int, metavar="N", help="worker processes of the local cluster")
    p.add_argument("--charge", type=int, help="total charge of each input molecule (xyz files)")
    p.add_argument("--no-kinetic", action="store_true", help="skip the kinetic-energy partition (stage-1 labels)")
    p.add_argument("--no-forces", action="store_true", help="skip forces")
    p.add_argument("--seed", type=int, default=0, help="conformer and sampling seed (default: 0)")
    _flags(p)
    p.set_defaults(func=cmd_label)

    t = subparsers.add_parser("train", help="train a model (stage 1: embed, stage 2: energy) or evaluate one")
    tsub = t.add_subparsers(dest="train_command", metavar="STAGE", required=True)

    e = tsub.add_parser("embed", help="stage 1: MPNN embeddings from kinetic-energy labels")
    e.add_argument("--data", nargs="+", required=True, metavar="DATA.h5", help="shards or folders of shards")
    e.add_argument("--epochs", type=_positive_int, required=True, metavar="N")
    e.add_argument("--out", required=True, metavar="DIR", help="output folder (embed.pt, checkpoints, logs)")
    e.add_argument("--config", metavar="YAML", help="Stage1Config YAML")
    _flags(e)
    e.set_defaults(func=cmd_train_embed)

    g = tsub.add_parser("energy", help="stage 2: charges and pair parameters from energies and forces")
    g.add_argument("--data", nargs="+", required=True, metavar="DATA.h5", help="shards or folders of shards")
    g.add_argument("--embed", metavar="DIR", help="stage-1 output folder or model file (default: train from scratch)")
    g.add_argument("--epochs", type=_positive_int, required=True, metavar="N")
    g.add_argument("--out", required=True, metavar="DIR", help=f"output folder ({MODEL_FILE}, checkpoints, logs)")
    g.add_argument("--config", metavar="YAML", help="Stage2Config YAML")
    g.add_argument("--name", help="model name stored in the file (default: the folder name)")
    _flags(g)
    g.set_defaults(func=cmd_train_energy)

    v = tsub.add_parser("evaluate", help="error report of a model on labelled shards, with parity plots")
    v.add_argument("--model", required=True, help="model name or file")
    v.add_argument("--data", nargs="+", required=True, metavar="DATA.h5")
    v.add_argument("--out", required=True, metavar="DIR", help="report.json and parity_*.png")
    v.add_argument("--no-xtb", action="store_true", help="skip the GFN2-xTB baseline")
    v.add_argument("--max-conformers", type=_positive_int, metavar="N", help="per molecule")
    _flags(v)
    v.set_defaults(func=cmd_train_evaluate)


def _setup_logging(args) -> None:
    level = logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    import lightning.pytorch  # noqa: F401 - it sets its loggers' levels on import; override them after

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING if not getattr(args, "debug", False) else logging.INFO)


def _inputs(text: str, charge: int | None) -> list[tuple[str, object]]:
    from .sources import read_structures

    path = Path(text)
    if path.exists() or path.suffix.lower() in (".smi", ".sdf", ".mol", ".xyz"):
        return read_structures(path, charge=charge)
    from ..molecule import load_molecule
    from .dataset import safe_name

    return [(safe_name(text), load_molecule(text, charge=charge))]


def cmd_label(args) -> int:
    """``label``: QM (or GFN2-xTB) labels for the input molecules, appended to ``--out``."""
    _setup_logging(args)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ConfigError(f"output folder {str(out.parent)!r} does not exist")
    inputs = _inputs(args.input, args.charge)
    optimize = None if args.optimize == "none" else args.optimize
    if args.level.strip().lower() in ("gfn2-xtb", "gfn2", "xtb"):
        from rdkit import Chem

        from .data import XTBSampling, label_xtb

        if args.conformers < 1:
            raise ConfigError("--level gfn2-xtb embeds its own conformers: --conformers must be >= 1")
        smiles = [(name, mol if isinstance(mol, str) else Chem.MolToSmiles(mol)) for name, mol in inputs]
        sampling = XTBSampling(n_conformers=args.conformers, n_md=args.off_equilibrium, n_normal_modes=0, seed=args.seed)
        counts = label_xtb(smiles, out, sampling, workers=args.workers or 1)
        if not args.quiet:
            print(json.dumps(counts), file=sys.stderr)
        return 0
    from .labelling import label

    label(
        inputs,
        out,
        level=args.level,
        n_conformers=args.conformers,
        optimize=optimize,
        n_off_equilibrium=args.off_equilibrium,
        forces=not args.no_forces,
        kinetic=not args.no_kinetic,
        scheduler=args.scheduler,
        n_workers=args.workers,
        progress=not args.quiet,
        seed=args.seed,
    )
    return 0


def cmd_train_embed(args) -> int:
    """``train embed``: stage 1; writes ``DIR/embed.pt``."""
    _setup_logging(args)
    from .stage1 import train_stage1

    result = train_stage1(args.data, args.out, args.config, epochs=args.epochs)
    if not args.quiet:
        m = result.metrics
        print(
            f"stage 1: {m['epochs']} epochs, validation MAE of Tr(DK) {m['val_kd_sum_mae_kcal_mol']:.2f} kcal/mol; "
            f"wrote {result.model_file}",
            file=sys.stderr,
        )
    return 0


def cmd_train_energy(args) -> int:
    """``train energy``: stage 2 from a stage-1 folder; writes ``DIR/model.pt``."""
    _setup_logging(args)
    from .export import export_model
    from .stage2 import train_stage2

    out = Path(args.out)
    result = train_stage2(args.data, out, args.config, embed=args.embed, epochs=args.epochs)
    levels = result.provenance.get("levels", [])
    metadata = {
        "name": args.name or out.resolve().name,
        "description": f"trained with `physff-openmm train energy` on {', '.join(map(str, args.data))}",
        "level": levels[0] if len(levels) == 1 else levels,
        "metrics": result.metrics,
        "data": result.provenance,
    }
    path = out / MODEL_FILE
    sha = export_model(result.model, path, metadata, config=result.config)
    if not args.quiet:
        val = result.metrics.get("validation", {})
        e = val.get("energy_kcal_mol", {}).get("mae", float("nan"))
        f = val.get("forces_kcal_mol_angstrom", {}).get("mae", float("nan"))
        print(
            f"stage 2: {result.metrics['epochs']} epochs, validation MAE {e:.2f} kcal/mol (energy), "
            f"{f:.2f} kcal/mol/A (forces); wrote {path} (sha256 {sha[:12]})",
            file=sys.stderr,
        )
    return 0


def cmd_train_evaluate(args) -> int:
    """``train evaluate``: report.json and parity plots of a model on labelled shards."""
    _setup_logging(args)
    from .evaluate import evaluate_report

    report = evaluate_report(args.model, args.data, args.out, xtb_baseline=not args.no_xtb, max_conformers=args.max_conformers)
    if not args.quiet:
        print(json.dumps(report["all"], indent=1, default=float))
    return 0
