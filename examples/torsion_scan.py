"""Relaxed torsion scan of butane's central C-C bond (or any dihedral), with its plot.

    python examples/torsion_scan.py --model default --out results/
    python examples/torsion_scan.py --smiles "c1ccc(cc1)-c1ccccc1" --dihedral 2 3 6 7   # biphenyl
"""

from __future__ import annotations

import argparse
from pathlib import Path

from physff_openmm import workflows as wf
from physff_openmm.errors import DependencyError

BUTANE = "CCCC"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model name or file (default: %(default)s)")
    parser.add_argument("--out", default="torsion_scan_out", help="output folder")
    parser.add_argument("--smiles", default=BUTANE, help="molecule (default: butane)")
    parser.add_argument("--dihedral", type=int, nargs=4, default=(0, 1, 2, 3), metavar=("I", "J", "K", "L"),
                        help="zero-based atom indices (default: 0 1 2 3)")
    parser.add_argument("--step", type=float, default=15.0, help="degrees (default: %(default)s)")
    parser.add_argument("--platform", default=None, help="OpenMM platform (default: the fastest)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = wf.torsion_scan(args.smiles, tuple(args.dihedral), args.step, model=args.model, platform=args.platform)
    wf.write_rows_csv(out / "scan.csv", ("angle_deg", "energy_kcal_mol"), rows)
    try:
        wf.plot_scan(rows, out / "scan.png", title=f"{args.smiles}: dihedral {' '.join(map(str, args.dihedral))}")
        written = f"{out / 'scan.csv'} and {out / 'scan.png'}"
    except DependencyError as exc:  # matplotlib is an extra: the scan stands without its plot
        print(f"no plot: {exc}")
        written = f"{out / 'scan.csv'}"
    print(f"relaxed scan of dihedral {tuple(args.dihedral)} of {args.smiles}, {len(rows)} points:")
    for angle, e in rows:
        print(f"  {angle:7.1f} deg  {e:8.3f} kcal/mol")
    top = max(rows, key=lambda r: r[1])
    print(f"barrier (highest point) {top[1]:.2f} kcal/mol at {top[0]:.0f} deg")
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
