"""Molecular dynamics of a drug-like molecule (paracetamol by default) in vacuum, with a plot.

Builds the molecule from SMILES, minimizes it, runs Langevin NVT dynamics (2 fs steps
with bonds to hydrogen constrained, the default; ``--no-constraints --timestep 1`` frees
them), writes a DCD trajectory and a state report, and plots energies and temperature.

    python examples/md_drug_molecule.py --model default --out results/ --steps 500
"""

from __future__ import annotations

import argparse
from pathlib import Path

from physff_openmm import workflows as wf
from physff_openmm.errors import DependencyError

PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model name or file (default: %(default)s)")
    parser.add_argument("--out", default="md_drug_molecule_out", help="output folder")
    parser.add_argument("--smiles", default=PARACETAMOL, help="molecule (default: paracetamol)")
    parser.add_argument("--steps", type=int, default=500, help="MD steps (default: %(default)s)")
    parser.add_argument("--timestep", type=float, default=None,
                        help="fs (default: 2 with bonds to hydrogen constrained; give 1 with --no-constraints)")
    parser.add_argument("--no-constraints", action="store_true", help="do not constrain bonds to hydrogen")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default: %(default)s)")
    parser.add_argument("--friction", type=float, default=5.0,
                        help="Langevin friction, 1/ps (default: %(default)s, strong so a short run reaches the temperature)")
    parser.add_argument("--platform", default=None, help="OpenMM platform (default: the fastest)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    e = wf.energy(args.smiles, model=args.model, platform=args.platform)
    print(f"{args.smiles}: {e['n_atoms']} atoms, energy at the embedded geometry {e['energy_kcal_mol']:.2f} kcal/mol")
    res = wf.run_md(
        args.smiles,
        args.steps,
        model=args.model,
        platform=args.platform,
        temperature_k=args.temperature,
        timestep_fs=args.timestep,
        friction_per_ps=args.friction,
        constraints=None if args.no_constraints else "hbonds",
        trajectory=out / "md.dcd",
        report_csv=out / "md.csv",
        report_interval=10,
        seed=2024,
    )
    report = wf.read_report_csv(out / "md.csv")
    temps = report["Temperature (K)"][len(report["Temperature (K)"]) // 2 :]
    written = [out / "md.dcd", out / "md.csv"]
    try:
        wf.plot_md_report(out / "md.csv", out / "md.png", title=f"NVT MD of {args.smiles}")
        written.append(out / "md.png")
    except DependencyError as exc:  # matplotlib is an extra: the run stands without its plot
        print(f"no plot: {exc}")
    print(
        f"{res['steps']} steps of {res['timestep_fs']:g} fs on {res['platform']}"
        f"{' (bonds to H constrained)' if res['constraints'] else ''}: t = {res['time_ps']:.2f} ps, "
        f"final potential energy {res['potential_energy_kcal_mol']:.2f} kcal/mol, "
        f"mean temperature (second half) {temps.mean():.0f} K, {res['ns_per_day']:.0f} ns/day"
    )
    print(f"wrote {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
