"""Can the pair-potential formula hold covalent wells? Fit a model to a few molecules' bond scans alone.

Starts from a model file, takes the first ``--molecules`` records of a bond-scan
shard (``xtb_bond_scans`` output, e.g. ``/tmp/physff-default/bond_scans.h5`` left by
``training/train_default_model.py``) and trains every stage-2 weight full-batch on
them: loss = RMSE of the energies relative to each molecule's mean + MAE of the
forces, Adam. A falling relative RMSE shows that the formula can represent the
scanned wells; it says nothing about how well they generalize.

Usage (repository root, with ``pip install -e .[train]``)::

    python benchmarks/covalent_fit_check.py --scans /tmp/physff-default/bond_scans.h5 --model physff-default
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import machine_info, md_table, write_results


def fit(model_name: str, scans: Path, n_molecules: int, steps: int, lr: float, every: int) -> dict:
    import torch
    from torch_geometric.data import Batch

    from physff_openmm.registry import load_model
    from physff_openmm.training.data import records_to_graphs
    from physff_openmm.training.dataset import read_dataset
    from physff_openmm.training.stage2 import energy_and_forces

    records = read_dataset(scans)[:n_molecules]
    model = load_model(model_name)
    batch = Batch.from_data_list(records_to_graphs(records, require="energy"))
    heads = ("atom_head", "bond_head")  # stage-1 heads play no part in energies
    params = [p for n, p in model.named_parameters() if not n.startswith(heads)]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)

    def centred(e):
        out = torch.empty_like(e)
        for m in batch.mol_id.unique():
            sel = batch.mol_id == m
            out[sel] = e[sel] - e[sel].mean()
        return out

    ref = centred(batch.energy)
    rows = []
    for step in range(steps + 1):
        e, f = energy_and_forces(model, batch, batch.pos.double(), create_graph=True)
        d = centred(e) - ref
        rel_rmse = (d * d).mean().sqrt()
        force_mae = (f - batch.forces).abs().mean()
        if step % every == 0 or step == steps:
            rows.append({"step": step, "relative_rmse_kcal_mol": float(rel_rmse), "relative_mae_kcal_mol": float(d.abs().mean()),
                         "force_mae_kcal_mol_angstrom": float(force_mae)})
        if step == steps:
            break
        opt.zero_grad()
        (rel_rmse + force_mae).backward()
        opt.step()
    return {"model": model_name, "model_sha256": model.file_hash, "scans": str(scans), "molecules": [r.name for r in records],
            "geometries": int(batch.num_graphs), "steps": steps, "lr": lr, "trajectory": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scans", type=Path, required=True, help="bond-scan shard (HDF5) from xtb_bond_scans")
    p.add_argument("--model", default="physff-default", help="model name or file to start from (default: %(default)s)")
    p.add_argument("--molecules", type=int, default=8, help="first N records of the shard (default: %(default)s)")
    p.add_argument("--steps", type=int, default=140, help="full-batch Adam steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="covalent_fit_check", help="results stem in benchmarks/results (default: %(default)s)")
    args = p.parse_args(argv)
    if args.molecules < 1 or args.steps < 1 or args.lr <= 0 or args.threads < 1:
        p.error("--molecules, --steps and --threads must be positive integers and --lr positive")
    if not args.scans.is_file():
        print(f"error: no such bond-scan shard: {args.scans}", file=sys.stderr)
        return 2
    import torch

    from physff_openmm.errors import PhysFFError

    torch.set_num_threads(args.threads)
    try:
        res = fit(args.model, args.scans, args.molecules, args.steps, args.lr, every=20)
    except PhysFFError as exc:  # unknown model, unreadable shard: one line, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = machine_info()
    traj = [[r["step"], f"{r['relative_rmse_kcal_mol']:.2f}", f"{r['relative_mae_kcal_mol']:.2f}", f"{r['force_mae_kcal_mol_angstrom']:.2f}"]
            for r in res["trajectory"]]
    command = "python benchmarks/covalent_fit_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (
        f"# Fit of {args.model} to the bond scans of {len(res['molecules'])} molecules alone\n\n"
        f"Command: `{command}` ({info['date_utc']}).\n\n"
        f"{res['geometries']} geometries; full-batch Adam (lr {args.lr}) on RMSE of energies relative to each molecule's "
        "mean + MAE of forces.\n\n"
        + md_table(["step", "relative RMSE (kcal/mol)", "relative MAE (kcal/mol)", "force MAE (kcal/mol/A)"], traj)
        + "\n"
    )
    write_results(args.out, {"command": command, "machine": info, **res}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
