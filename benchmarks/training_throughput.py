"""Training throughput on CPU: molecules (conformers) per second per epoch, stage 1 and stage 2.

Synthetic labels on real geometries: the smallest drug-like molecules of the
shared conformer benchmark (SMILES only), RDKit ETKDG conformers, random
energies, forces and kinetic-energy terms. Throughput does not depend on label
values, and no quantum chemistry is needed. Each stage runs through the same
Lightning modules as real training (``train_stage1`` / ``train_stage2``), with the
shipped model's architecture (:data:`SHIPPED_ARCHITECTURE`: the refining phase of
``training/default_model.yaml``) at each width of ``--hidden`` (128 is the shipped one).

Usage::

    python benchmarks/training_throughput.py [--molecules 60] [--conformers 10] [--epochs 3]
        [--hidden 128 350] [--threads 2]

Writes ``benchmarks/results/training_throughput.json`` (and ``.md``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import torch  # noqa: E402


#: The shipped model's architecture other than its width (training/default_model.yaml): ModelConfig fields of
#: stage 2, and the refining phase's additions, which stage 2's config takes at its top level.
SHIPPED_ARCHITECTURE = {"n_steps": 4, "r_on": 5.0, "r_off": 6.0, "amplitude_ref": 10.0}
SHIPPED_REFINE = {"path_embeddings": True, "resonance_features": True, "wall_factor": 0.55, "width_floor": 0.05,
                  "curvature_max": 500.0}


def synthetic_records(n_molecules: int, n_conformers: int, seed: int = 0):
    from rdkit.Chem import rdDistGeom

    from physff_openmm.molecule import load_molecule
    from physff_openmm.training.dataset import MoleculeRecord

    rows = sorted(_common.read_molecules_csv(), key=lambda r: int(r["natoms"]))
    rng = np.random.default_rng(seed)
    out = []
    for row in rows:
        if len(out) >= n_molecules:
            break
        if not _common.usable(row["smiles"]):
            continue
        try:
            mol = load_molecule(row["smiles"])
        except Exception:  # noqa: BLE001 - skip what the loader rejects
            continue
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = seed
        ids = list(rdDistGeom.EmbedMultipleConfs(mol, n_conformers, params))
        if not ids:
            continue
        pos = np.stack([mol.GetConformer(i).GetPositions() for i in ids])
        c, n = pos.shape[:2]
        out.append(
            MoleculeRecord.from_rdkit(
                mol, row["name"], positions=pos, energy=-500.0 + rng.standard_normal(c),
                forces=0.02 * rng.standard_normal((c, n, 3)), kd_atom=rng.random((c, n)) * 10,
                level="synthetic", source="benchmarks/training_throughput.py",
            )
        )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--molecules", type=int, default=60)
    p.add_argument("--conformers", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 350], help="widths (128: the shipped model's)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)

    from physff_openmm.training.data import PhysFFDataModule
    from physff_openmm.training.stage1 import train_stage1
    from physff_openmm.training.stage2 import train_stage2

    t0 = time.perf_counter()
    records = synthetic_records(args.molecules, args.conformers)
    n_conf = sum(r.n_conformers for r in records)
    n_atoms = [r.n_atoms for r in records]
    print(f"{len(records)} molecules, {n_conf} conformers, {min(n_atoms)}-{max(n_atoms)} atoms ({time.perf_counter() - t0:.1f} s)")
    load_before = _common.load_average()
    runs = []
    common = {"data": {"split": [1.0, 0.0, 0.0], "batch_size": args.batch_size},
              "trainer": {"max_epochs": args.epochs, "patience": 0, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 50}}
    for hidden in args.hidden:
        model = {**SHIPPED_ARCHITECTURE, "hidden": hidden, "pair_hidden": min(hidden, 128)}
        with tempfile.TemporaryDirectory() as tmp:
            dm1 = PhysFFDataModule(records=records, stage="embed", batch_size=args.batch_size, split=(1.0, 0.0, 0.0))
            r1 = train_stage1(dm1, Path(tmp) / "embed", {**common, "model": model})
            dm2 = PhysFFDataModule(records=records, stage="energy", batch_size=args.batch_size, split=(1.0, 0.0, 0.0),
                                   resonance=True)
            r2 = train_stage2(dm2, Path(tmp) / "energy", {**common, **SHIPPED_REFINE}, embed=r1.model_file)
        entry = {
            "hidden": hidden,
            "pair_hidden": model["pair_hidden"],
            "n_steps": SHIPPED_ARCHITECTURE["n_steps"],
            "parameters": int(sum(p.numel() for p in r2.model.parameters())),
            "stage1_molecules_per_second": r1.metrics["train_molecules_per_second"],
            "stage2_molecules_per_second": r2.metrics["train_molecules_per_second"],
            "stage1_seconds": r1.metrics["train_seconds"],
            "stage2_seconds": r2.metrics["train_seconds"],
        }
        print(entry, flush=True)
        runs.append(entry)
    payload = {
        "what": "training throughput, conformers (molecules) per second per training epoch, mean over epochs; "
        "stage 2 includes forces by autograd (create_graph) and the coordinate noise",
        "machine": _common.machine_info(),
        "load_average_before": load_before,
        "load_average_after": _common.load_average(),
        "command": _common.command_line(),
        "architecture": {**SHIPPED_ARCHITECTURE, **SHIPPED_REFINE},
        "settings": {"molecules": len(records), "conformers": n_conf, "atoms_min": min(n_atoms), "atoms_max": max(n_atoms),
                     "mean_atoms": float(np.mean(n_atoms)), "epochs": args.epochs, "batch_size": args.batch_size,
                     "torch_threads": args.threads, "device": "cpu"},
        "runs": runs,
    }
    rows = [[r["hidden"], r["parameters"], r["stage1_molecules_per_second"], r["stage2_molecules_per_second"]] for r in runs]
    md = _common.md_table(["hidden", "parameters", "stage 1 (mol/s)", "stage 2 (mol/s)"], rows, digits=1)
    info = payload["machine"]
    text = (
        "# Training throughput (CPU)\n\n"
        f"Command: `{payload['command']}` ({info['date_utc']}, {info['cpu_model']}, {args.threads} torch threads; "
        f"load average before {load_before}, after {payload['load_average_after']}).\n\n"
        f"{len(records)} molecules of {min(n_atoms)}-{max(n_atoms)} atoms, {n_conf} conformers, synthetic labels, "
        f"{args.epochs} epochs, batch size {args.batch_size}; the shipped model's architecture "
        f"({ {**SHIPPED_ARCHITECTURE, **SHIPPED_REFINE} }; stage 1 without the refining phase's additions) at each width. Conformers (molecules) per second per training epoch, mean over epochs; stage 2 includes the "
        "forces by autograd and the coordinate noise.\n\n" + md + "\n"
    )
    print(text)
    _common.write_results("training_throughput", payload, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
