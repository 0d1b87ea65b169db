"""Build the development model "dev": GFN2-xTB data -> E_lin -> stage 2 -> checks -> model file.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python training/train_dev_model.py training/dev_model.yaml [--stage label|train|all]

Every step is library code in :mod:`physff_openmm.training`; this script only
strings them together. Registering the file in ``models/index.json`` is a
separate, explicit step (``--install``).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tblite: one thread per process on a 2-core machine

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from physff_openmm.training.config import DevModelConfig, load_config
from physff_openmm.training.data import XTBSampling, augment_xtb, label_xtb, smallest_molecules
from physff_openmm.training.dataset import read_dataset


def label(cfg: DevModelConfig) -> dict:
    d = cfg.dataset
    molecules = smallest_molecules(d.molecules_csv, d.n_smallest, d.skip_elements) + list(d.extra_molecules.items())
    sampling = XTBSampling(d.n_conformers, d.n_md, d.md_temperature_k, d.n_normal_modes, d.normal_mode_temperature_k, d.seed)
    counts = label_xtb(molecules, cfg.shard, sampling, dimers=[tuple(p) for p in d.dimers], workers=d.workers)
    if cfg.augment_shard:
        counts["augment"] = augment_xtb(
            read_dataset(cfg.shard), cfg.augment_shard, bond_fractions=d.bond_fractions, n_hot_modes=d.n_hot_modes,
            hot_temperature_k=d.hot_temperature_k, max_energy_kcal_mol=d.max_energy_kcal_mol, workers=d.workers, seed=d.seed,
        )
    counts["molecule_list"] = {"csv": d.molecules_csv, "n_smallest": d.n_smallest, "extra": sorted(d.extra_molecules)}
    return counts


def train(cfg: DevModelConfig, install: bool, work: str | None = None) -> dict:
    from physff_openmm.training.data import records_to_graphs
    from physff_openmm.training.evaluate import evaluate_graphs, md_stability
    from physff_openmm.training.export import export_model, install_model
    from physff_openmm.training.stage2 import train_stage2

    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # labelling wanted one OpenMP thread per process; training all cores
    out_dir = Path(work) if work else Path(cfg.shard).parent / "stage2"
    shards = [cfg.shard] + ([cfg.augment_shard] if cfg.augment_shard else [])
    result = train_stage2(shards, out_dir, cfg.train)
    # held-out molecules without the bond scans and hot samples: errors on thermal (MD-like) geometries
    dm = result.datamodule
    base = [r for r in dm.test_records if "bond scans" not in r.source]
    ids = [dm.records.index(r) for r in base]
    result.metrics["test_thermal"] = evaluate_graphs(result.model, records_to_graphs(base, mol_ids=ids))
    held_out = [s for s in result.metrics.get("test_molecules", []) if "." not in s][:2]  # two molecules never seen
    md = md_stability(result.model, dataclasses.replace(cfg.md_check, smiles=list(cfg.md_check.smiles) + held_out))
    metadata = {
        "name": cfg.name,
        "description": cfg.description,
        "level": "gfn2-xtb",
        "metrics": {**result.metrics, "md_stability": md},
        "data": {**result.provenance, "recipe": "training/dev_model.yaml", "dataset": _asdict(cfg.dataset)},
    }
    sha = export_model(result.model, cfg.output, metadata, config=cfg.train)
    if install:
        install_model(
            cfg.output, cfg.name, description=cfg.description, alias=cfg.alias or None, alias_warning=cfg.alias_warning or None
        )
    return {"file": cfg.output, "sha256": sha, "metrics": metadata["metrics"]}


def _asdict(x):
    from physff_openmm.training.config import config_to_dict

    return config_to_dict(x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--stage", choices=("label", "train", "all"), default="all")
    p.add_argument("--install", action="store_true", help="register the model in physff_openmm/models/index.json")
    p.add_argument("--output", help="model file to write instead of the config's output")
    p.add_argument("--work", help="folder for checkpoints and logs (default: beside the shard)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_config(args.config, DevModelConfig)
    if args.output:
        cfg.output = args.output
    cfg_work = args.work
    if args.stage in ("label", "all"):
        print(json.dumps(label(cfg), indent=1), flush=True)
    if args.stage in ("train", "all"):
        print(json.dumps(train(cfg, args.install, cfg_work), indent=1, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
