"""Do a model's covalent pair curves hold their bonds? Gaps below a Morse floor, by bond type.

For each molecule (RDKit/MMFF geometry) and each covalent pair, the model's
short-range curve E_SR is compared with the floor of the stage-2 covalent-well
term (:func:`physff_openmm.training.stage2.covalent_well_gaps`: depth 40 kcal/mol,
Morse exponent 2 per Angstrom, by default) at 0.7-2.5 times the bond length. The
table gives the mean gap per element pair and grid point; zero means the curve
alone restores the bond there, a large gap at 0.7-0.9 r0 that nothing in the
curve stops the atoms being pushed together.

With ``--fit-steps N`` the script then trains every stage-2 weight on that term
alone (full batch over the molecules, Adam), once with the mean gap as the loss
and once with the root-mean-square gap (what training uses), and tabulates the
gaps after each: it shows whether the formula can build the walls and which
reduction of the gaps gets there.

Usage (repository root, with ``pip install -e .[train]``)::

    python benchmarks/covalent_well_check.py --model physff-default --fit-steps 300
"""

from __future__ import annotations

import argparse
import copy
import sys

import numpy as np

from _common import command_line, machine_info, md_table, write_results

SMILES = ("CCO", "c1ccccc1O", "CC(=O)NC", "Clc1ccccc1C(=O)O", "CS(=O)(=O)N", "c1ccncc1", "CC#N", "CCBr",
          "OCC(N)C(=O)O", "Nc1ccccc1", "CCOC(C)=O", "C1CCNCC1", "FC(F)(F)c1ccccc1", "COP(=O)(OC)OC")
GRID = (0.7, 0.8, 0.9, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5)


def _covalent_batch(smiles):
    """Graphs of the molecules at an MMFF geometry, their covalent pairs and element-pair labels."""
    import torch
    from torch_geometric.data import Batch

    from physff_openmm.graph import NONCOVALENT
    from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
    from physff_openmm.training.data import records_to_graphs
    from physff_openmm.training.dataset import MoleculeRecord

    records, symbols = [], []
    for k, s in enumerate(smiles):
        mol = ensure_conformer(load_molecule(s))
        records.append(MoleculeRecord.from_rdkit(mol, f"m{k}", positions=positions_angstrom(mol)[None],
                                                 energy=np.zeros(1), level="none"))
        symbols += [a.GetSymbol() for a in mol.GetAtoms()]
    batch = Batch.from_data_list(records_to_graphs(records))
    i, j = batch.pair_index[:, 0], batch.pair_index[:, 1]
    cov = batch.pair_attr[:, NONCOVALENT] < 0.5
    i, j = i[cov], j[cov]
    r0 = torch.linalg.vector_norm(batch.pos[i].double() - batch.pos[j].double(), dim=-1)
    labels = ["-".join(sorted((symbols[a], symbols[b]))) for a, b in zip(i.tolist(), j.tolist())]
    return batch, i, j, cov, r0, labels


def _gaps(model, batch, i, j, cov, r0, grid, depth, steepness):
    from physff_openmm.training.stage2 import covalent_well_gaps

    h = model.embed(batch.x, batch.edge_index, batch.edge_attr)
    params = model.pair_parameters(h[i], h[j], batch.pair_attr[cov])
    return covalent_well_gaps(params, r0, grid, depth, steepness)


def _table(gaps, labels) -> dict:
    g = gaps.detach().cpu().numpy()
    out = {}
    for lab in sorted(set(labels)):
        sel = np.array([x == lab for x in labels])
        out[lab] = {"bonds": int(sel.sum()), "mean_gap_kcal_mol": [round(float(v), 2) for v in g[sel].mean(0)]}
    out["all"] = {"bonds": len(labels), "mean_gap_kcal_mol": [round(float(v), 2) for v in g.mean(0)]}
    return out


def check(model_name: str, smiles, grid, depth: float, steepness: float, fit_steps: int, lr: float) -> dict:
    import torch

    from physff_openmm.registry import load_model

    model = load_model(model_name)
    model.eval()
    batch, i, j, cov, r0, labels = _covalent_batch(smiles)
    keep = (r0.unsqueeze(-1) * torch.tensor(grid, dtype=torch.float64)) <= model.config.r_on
    res = {"model": model_name, "model_sha256": model.file_hash, "smiles": list(smiles), "grid": list(grid),
           "depth_kcal_mol": depth, "steepness_per_angstrom": steepness}
    with torch.no_grad():
        res["start"] = _table(_gaps(model, batch, i, j, cov, r0, grid, depth, steepness), labels)
    if not fit_steps:
        return res
    for reduction in ("mean", "rms"):
        net = copy.deepcopy(model)
        heads = ("atom_head", "bond_head")  # stage-1 heads play no part in energies
        params = [p for n, p in net.named_parameters() if not n.startswith(heads)]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=lr)
        trace = []
        for step in range(fit_steps + 1):
            g = _gaps(net, batch, i, j, cov, r0, grid, depth, steepness)[keep]
            loss = g.mean() if reduction == "mean" else torch.sqrt((g * g).mean() + 1e-12)
            if step % max(1, fit_steps // 6) == 0 or step == fit_steps:
                d = g.detach()
                trace.append({"step": step, "mean_gap": round(float(d.mean()), 3), "rms_gap": round(float((d * d).mean().sqrt()), 3)})
            if step == fit_steps:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            res[f"fit_{reduction}"] = {"trace": trace, **_table(_gaps(net, batch, i, j, cov, r0, grid, depth, steepness), labels)}
    res["fit"] = {"steps": fit_steps, "lr": lr, "optimizer": "Adam, full batch"}
    return res


def _md(title: str, table: dict, grid) -> str:
    rows = [[k, v["bonds"], *[f"{x:.1f}" for x in v["mean_gap_kcal_mol"]]] for k, v in table.items() if k != "trace"]
    return f"### {title}\n\n" + md_table(["bond", "bonds", *[f"{t} r0" for t in grid]], rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="physff-default", help="model name or file (default: %(default)s)")
    p.add_argument("--smiles", nargs="+", default=list(SMILES), help="molecules (default: 14 drug-like fragments)")
    p.add_argument("--depth", type=float, default=40.0, help="floor depth, kcal/mol (default: %(default)s)")
    p.add_argument("--steepness", type=float, default=2.0, help="floor Morse exponent, 1/Angstrom (default: %(default)s)")
    p.add_argument("--fit-steps", type=int, default=0, help="also fit the term alone for N Adam steps (default: no fit)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="results stem in benchmarks/results (default: covalent_well_<model>)")
    args = p.parse_args(argv)
    if args.fit_steps < 0 or args.lr <= 0 or args.threads < 1 or args.depth < 0 or args.steepness <= 0:
        p.error("--fit-steps must be >= 0, --depth >= 0, and --lr, --steepness and --threads positive")
    import torch

    from physff_openmm.errors import PhysFFError

    torch.set_num_threads(args.threads)
    try:
        res = check(args.model, args.smiles, GRID, args.depth, args.steepness, args.fit_steps, args.lr)
    except PhysFFError as exc:  # unknown model, bad SMILES: one line, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = machine_info()
    command = command_line(argv, __file__)
    text = (
        f"# Covalent wells of {args.model}: gaps below a Morse floor\n\n"
        f"Command: `{command}` ({info['date_utc']}).\n\n"
        f"Floor {args.depth:g} * (1 - exp(-{args.steepness:g} (r - r0)))^2 kcal/mol above E_SR(r0); mean gap (kcal/mol) per "
        f"element pair over the covalent pairs of {len(args.smiles)} molecules at MMFF geometries.\n\n"
        + _md("The model", res["start"], GRID)
    )
    for reduction in ("mean", "rms"):
        if f"fit_{reduction}" in res:
            fit = res[f"fit_{reduction}"]
            text += "\n" + _md(f"After {args.fit_steps} Adam steps (lr {args.lr:g}) on the {reduction} gap alone", fit, GRID)
            text += "\n" + md_table(["step", "mean gap", "RMS gap"], [[r["step"], r["mean_gap"], r["rms_gap"]] for r in fit["trace"]])
    stem = args.out or f"covalent_well_{str(args.model).rsplit('/', 1)[-1].removesuffix('.pt')}"
    write_results(stem, {"command": command, "machine": info, **res}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
