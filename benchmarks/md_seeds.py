"""The README's MD command, repeated with several seeds and models: how far do bonds move?

Runs ``physff_openmm.workflows.run_md`` (NVT at 300 K after minimization; by default
2000 steps of 0.5 fs with no constraints, where free X-H bonds are hardest to keep) once per model and seed, and
tables the largest covalent-bond change of each run and whether it passed the 30 %
at which MD warns of a broken bond.

Usage (repository root)::

    python benchmarks/md_seeds.py --smiles "CC(=O)Nc1ccc(O)cc1" --models default --seeds 20
    python benchmarks/md_seeds.py --constraints hbonds --timestep 2 --steps 500   # the README's command now
"""

from __future__ import annotations

import argparse
import sys
import warnings

from _common import _file_sha256, command_line, machine_info, md_table, write_results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smiles", default="CC(=O)Nc1ccc(O)cc1", help="molecule (default: paracetamol)")
    p.add_argument("--models", nargs="+", default=["default"], help="model names or files (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=20, help="runs per model, seeds 1..N (default: %(default)s)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--timestep", type=float, default=0.5, help="fs (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default: %(default)s)")
    p.add_argument("--constraints", choices=("none", "hbonds"), default="none",
                   help="constrain bonds to hydrogen (hbonds, run_md's default) or nothing (default: %(default)s)")
    p.add_argument("--out", default="md_seeds_paracetamol", help="results stem in benchmarks/results")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.steps < 1 or args.timestep <= 0 or args.temperature <= 0:
        p.error("--seeds and --steps must be at least 1, --timestep and --temperature positive")
    from physff_openmm import workflows as wf
    from physff_openmm.errors import ModelFailureError, PhysFFError
    from physff_openmm.workflows.md import BROKEN_BOND_FRACTION

    from physff_openmm.registry import resolve_model

    runs = []
    try:
        resolved = {model: resolve_model(model) for model in args.models}  # every name checked before the first run
        for model in args.models:
            for seed in range(1, args.seeds + 1):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # a 2 fs step without constraints warns
                        res = wf.run_md(args.smiles, args.steps, model=model, temperature_k=args.temperature,
                                        timestep_fs=args.timestep, seed=seed, progress=False,
                                        constraints=None if args.constraints == "none" else "hbonds")
                    runs.append({"model": model, "seed": seed, "max_bond_change": res["max_bond_change"],
                                 "worst_bond": res["worst_bond"], "broken": None})
                except ModelFailureError as exc:  # a bond moved past the limit: the run stopped there
                    runs.append({"model": model, "seed": seed, "max_bond_change": None, "worst_bond": None,
                                 "broken": str(exc).split("; ")[0]})
    except PhysFFError as exc:  # unknown model, bad SMILES: one line, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = []
    for model in args.models:
        mine = [r for r in runs if r["model"] == model]
        changes = sorted(abs(r["max_bond_change"]) for r in mine if r["broken"] is None)
        summary.append([model, str(len(mine)), f"{changes[0]:.1%} - {changes[-1]:.1%}" if changes else "-",
                        str(sum(r["broken"] is not None for r in mine))])
    info = machine_info()
    models = {m: {"name": name, "sha256": _file_sha256(path)} for m, (name, path) in resolved.items()}
    text = (
        f"# Largest bond change in repeated MD runs of {args.smiles}\n\n"
        f"Command: `{command_line(argv, __file__)}` ({info['date_utc']}).\n\n"
        f"{args.steps} steps of {args.timestep:g} fs at {args.temperature:g} K (LangevinMiddle, after minimization, "
        f"{'bonds to hydrogen constrained' if args.constraints == 'hbonds' else 'no constraints'}), "
        f"seeds 1 to {args.seeds}; the change of every covalent bond from its length in the input geometry. "
        f"A bond past {BROKEN_BOND_FRACTION:.0%} stops the run (run_md raises ModelFailureError) and counts as broken.\n\n"
        + "".join(f"- `{m}`: {v['name']}, sha256 {v['sha256'][:8]}\n" for m, v in models.items()) + "\n"
        + md_table(["model", "runs", "largest bond change (range over runs)", "runs broken"], summary)
        + "\n\n"
        + md_table(["model", "seed", "largest change", "bond", "broken"],
                   [[r["model"], str(r["seed"]), "-" if r["broken"] else f"{r['max_bond_change']:+.1%}",
                     r["worst_bond"] or "-", r["broken"] or "-"] for r in runs])
        + "\n"
    )
    write_results(args.out, {"command": command_line(argv, __file__), "machine": info, "settings": vars(args),
                             "models": models, "runs": runs}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
