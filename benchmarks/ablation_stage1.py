"""Ablation of stage 1: stage 2 from the stage-1 (kinetic-energy) embeddings against stage 2 from scratch.

Two runs of the training recipe that differ only in stage 1, each with the
recipe's first stage-2 phase alone (its data: the public training sets, the
GFN2-xTB frames and the charged molecules; its model and loss), shortened to
``--minutes`` of training:

- ``with_stage1``: kinetic-energy labels (``--level``, default HF/STO-3G, the
  paper's cheaper level) of ``--n-qm9`` QM9 molecules and of the public training
  molecules up to ``--max-atoms`` atoms, stage 1 (``--stage1-minutes``) on them
  with stage 2's architecture, then stage 2 from its weights (nothing frozen);
- ``without_stage1``: stage 2 from random weights.

Both are then scored on the validation split by ``compare_validation.score``
(relative conformer energies, torsion drives, NCIAtlas dimers, bonds to H pulled
out, angle bends) beside the validation metrics each run stored, and the recipe's
MD check of each. No fine-tuning, refining or lj_net phase: the comparison is of
what stage 1 gives stage 2 under the same budget, not of shippable models.

Run from the repository root (about ``2 * minutes + stage1-minutes`` plus labels
and scoring)::

    python benchmarks/ablation_stage1.py [--recipe training/default_model.yaml] [--data ../shared/data]
        [--minutes 20] [--stage1-minutes 10] [--n-qm9 400] [--max-atoms 30] [--work /tmp/physff-ablation]

A run whose model file is already in ``--work``, made with the same settings, is not trained again. Writes
``benchmarks/results/ablation_stage1.json`` (and ``.md``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import compare_validation as cv  # noqa: E402

#: The recipe's shards of GFN2-xTB frames that only later phases read (left out here).
LATER_SHARDS = ("ions", "torsion_scans", "bond_pulls")
VARIANTS = ("with_stage1", "without_stage1")


def variant(recipe: dict, work: Path, name: str, args) -> dict:
    """The recipe as one stage-2 phase of ``args.minutes``, with or without stage 1 (``name``)."""
    cfg = copy.deepcopy(recipe)
    cfg.update(name=f"ablation-{name}", description=f"stage-1 ablation: {name.replace('_', ' ')}",
               output=str(work / f"{name}.pt"), work_dir=str(work / name), alias="")
    for key in LATER_SHARDS:
        cfg[key] = {"n_molecules": 0}
    cfg["finetune"] = cfg["refine"] = None
    cfg["lj_head"] = {"hidden": 0}
    cfg["stage2"]["trainer"].update(max_epochs=1000, max_time_minutes=float(args.minutes))
    if name == "with_stage1":
        cfg["kd"] = {"level": args.level, "n_qm9": args.n_qm9, "max_atoms": args.max_atoms, "workers": 2, "seed": 0}
        cfg["stage1"] = {
            "model": dict(cfg["stage2"]["model"]),
            "data": {"split": [0.9, 0.1, 0.0], "seed": 0, "batch_size": 32, "num_workers": 0},
            "optim": {"lr": 5.0e-4, "weight_decay": 0.0, "lr_step_epochs": 30, "lr_gamma": 0.5, "grad_clip": 10.0},
            "trainer": {"max_epochs": 1000, "max_time_minutes": float(args.stage1_minutes), "patience": 0,
                        "accelerator": "cpu", "devices": 1, "seed": 0, "log_every_n_steps": 50, "keep": "best"},
        }
    else:
        cfg["kd"] = {"n_qm9": 0, "max_atoms": 0}
    return cfg


def train(cfg: dict, work: Path) -> dict:
    """Run the recipe script on ``cfg`` unless its model file exists from a run of the same ``cfg``;
    the wall time of the run that wrote it, and whether it was reused."""
    out = Path(cfg["output"])
    timing = work / f"{cfg['name']}.seconds.json"  # the config and wall time of the run that wrote the model file
    if out.is_file() and timing.is_file():
        done = json.loads(timing.read_text())
        if done.get("config") == cfg:
            return {"seconds": done["seconds"], "reused": True}
    out.unlink(missing_ok=True)  # made with other settings (or untimed): train again
    import yaml

    path = work / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t = time.perf_counter()
    with open(work / f"{cfg['name']}.log", "w") as log:
        rc = subprocess.call([sys.executable, "training/train_default_model.py", str(path)], cwd=_common.ROOT,
                             stdout=log, stderr=subprocess.STDOUT)
    if rc or not out.is_file():
        raise SystemExit(f"training {cfg['name']} failed (exit {rc}); see {work / (cfg['name'] + '.log')}")
    seconds = round(time.perf_counter() - t, 1)
    timing.write_text(json.dumps({"seconds": seconds, "config": cfg}))
    return {"seconds": seconds, "reused": False}


def run_facts(model_file: Path) -> dict:
    """Epochs, stage-1 metrics and the recipe's MD check stored in a model file."""
    import physff_openmm as pf

    meta = pf.load_model(str(model_file)).metadata
    metrics = meta.get("metrics", {})
    runs = metrics.get("md_stability", {}).get("molecules", {})
    return {
        "epochs": metrics.get("epochs"),
        "stage1": metrics.get("embed_metrics", {}),
        "md_check_stable": f"{sum(bool(v.get('stable')) for v in runs.values())} of {len(runs)}",
        "md_check": runs,
    }


def _minutes(seconds) -> str:
    return "not timed" if seconds is None else f"{seconds / 60:.0f} min"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="training/default_model.yaml")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--minutes", type=float, default=20.0, help="stage-2 training time of each run")
    p.add_argument("--stage1-minutes", type=float, default=10.0)
    p.add_argument("--level", default="hf/sto-3g", help="level of the kinetic-energy labels")
    p.add_argument("--n-qm9", type=int, default=400)
    p.add_argument("--max-atoms", type=int, default=30)
    p.add_argument("--work", default="/tmp/physff-ablation", help="configs, logs and model files (outside the repository)")
    p.add_argument("--out", default=str(_common.RESULTS / "ablation_stage1.json"))
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.stage1_minutes <= 0 or args.n_qm9 < 0 or args.max_atoms < 0 or not (args.n_qm9 or args.max_atoms):
        p.error("need --minutes > 0, --stage1-minutes > 0 and stage-1 molecules (--n-qm9 or --max-atoms > 0)")
    import yaml

    from physff_openmm.errors import PhysFFError
    from physff_openmm.training.recipe import read_public_sets

    recipe = yaml.safe_load(Path(args.recipe).read_text())
    work = Path(args.work).resolve()  # the recipe script runs from the repository root
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    runs = {}
    for name in VARIANTS:
        cfg = variant(recipe, work, name, args)
        runs[name] = {"training": train(cfg, work), "model_file": cfg["output"]}
    logging.disable(logging.WARNING)
    try:
        sets = read_public_sets(Path(args.data))
        rows = [cv.score(runs[name]["model_file"], sets, Path(args.data)) for name in VARIANTS]
    except PhysFFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, row in zip(VARIANTS, rows):
        runs[name].update(run_facts(Path(runs[name]["model_file"])), validation=row)
    report = {
        "command": " ".join(["python", "benchmarks/ablation_stage1.py", *(argv if argv is not None else sys.argv[1:])]),
        "recipe": args.recipe,
        "settings": {k: getattr(args, k) for k in ("minutes", "stage1_minutes", "level", "n_qm9", "max_atoms")},
        "machine": _common.machine_info(),
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(cv.ar.jsonable(report), indent=1) + "\n")
    for r, name in zip(rows, VARIANTS):
        r["model"] = name
    md = (f"# Stage-1 ablation\n\n`{report['command']}`\n\nStage 2 alone ({args.minutes:g} min each), from the stage-1 "
          f"embeddings ({args.level}, {args.n_qm9} QM9 molecules and public training molecules up to {args.max_atoms} "
          f"atoms, stage 1 {args.stage1_minutes:g} min) and from random weights; validation split (kcal/mol):\n\n"
          + cv.table(rows) + "\n\n"
          + "\n".join(f"- {name}: {runs[name]['epochs']} epochs of stage 2; the recipe run, start to end "
                      f"{_minutes(runs[name]['training']['seconds'])}; the recipe's MD check (10 ps at 1 fs): "
                      f"{runs[name]['md_check_stable']} stable" for name in VARIANTS) + "\n")
    Path(args.out).with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
