"""Build the default model from public data: labels -> stage 1 -> stage 2 -> checks -> model file.

Usage (from the repository root, with ``pip install -e .[train]``)::

    python training/train_default_model.py training/default_model.yaml [--stage label|embed|energy|finetune|refine|lj|all] [--install]

Stages (each resumes or reuses what an earlier run left in ``work_dir``; a label shard packed
in the recipe's ``shard_dir`` is used as is and not labelled again):

- ``label``: charged molecules with GFN2-xTB forces (where ``charged.n_molecules`` > 0,
  and more ions where ``ions.n_molecules`` > 0), torsion drives with GFN2-xTB forces (where ``torsion_scans.n_molecules`` > 0),
  bonds to H pulled apart with GFN2-xTB forces (where ``bond_pulls.n_molecules`` > 0),
  acyclic bonds between heavy atoms pulled apart (where ``heavy_pulls.n_molecules`` > 0) and
  cleaved, out to the two sides apart (where ``cleavages.n_molecules`` > 0),
  B3LYP-D3BJ/def2-SVP energies and forces of frames of those torsion drives (where
  ``dft_torsions.n_molecules`` > 0; gpu4pyscf on a GPU),
  and the stage-1 kinetic-energy labels (QM9 and small training molecules, where
  ``kd`` asks for them);
- ``embed``: stage 1 on those labels;
- ``energy``: stage 2 on the public sets (fixed split of
  :func:`physff_openmm.training.recipe.public_splits`), the xTB frames and the
  charged molecules;
- ``finetune``: a second stage-2 phase from those weights with the torsion
  drives (and their DFT frames) added;
- ``refine``: a third phase from the fine-tuning phase's weights on the same data,
  the ``ions``, ``bond_pulls``, ``heavy_pulls`` and ``cleavages`` shards (where the config has ``refine``), e.g. with path
  embeddings added;
- ``lj``: the model's lj_net (per-atom Lennard-Jones terms with other force
  fields' atoms, :mod:`physff_openmm.training.lj_head`) on the NCIAtlas training
  dimers, the rest of the model frozen (where ``lj_head.hidden`` > 0);

then the MD check, the minimization check and the model file.

A phase reads only the shards its config labels, so that one recipe's run
is not changed by another's shards left in a shared ``work_dir``. No molecule
of the public test split trains, whatever its source.

Every step is library code in :mod:`physff_openmm.training`; this script only
strings them together. ``--install`` registers the file in ``models/index.json``
under its name, with the config's alias.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # labelling: one thread per process on a 2-core machine

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from physff_openmm.errors import PhysFFError
from physff_openmm.training.config import DefaultModelConfig, config_to_dict, load_config
from physff_openmm.training.recipe import (
    CHARGED_SHARDS,
    charged_sampling,
    dft_torsions,
    kd_inputs,
    public_splits,
    pull_sampling,
    pack_recipe_shard,
    read_public_sets,
    shard_path,
    split_charged_shard,
    torsion_sampling,
    xtb_charged,
    xtb_drug_like,
)

logger = logging.getLogger("train_default_model")


def _splits(cfg: DefaultModelConfig):
    sets = read_public_sets(cfg.public.data_dir, limit=cfg.public.limit)
    return public_splits(sets, {k: tuple(v) for k, v in cfg.public.fractions.items()}, cfg.public.seed)


def _paths(cfg: DefaultModelConfig) -> dict[str, Path]:
    w = Path(cfg.work_dir)
    return {
        "kd": w / "kd.h5", "charged": w / "charged.h5", "ions": w / "ions.h5", "torsion_scans": w / "torsion_scans.h5",
        "bond_pulls": w / "bond_pulls.h5", "heavy_pulls": w / "heavy_pulls.h5",
        "cleavages": w / "cleavages.h5", "dft_torsions": w / "dft_torsions.h5",
        "embed": w / "embed", "energy": w / "energy", "finetune": w / "finetune", "refine": w / "refine",
    }


def label(cfg: DefaultModelConfig, splits) -> dict:
    from physff_openmm.training.labelling import label as qm_label
    from physff_openmm.training.sources import read_qm9

    paths = _paths(cfg)
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
    out: dict = {}

    def run(key: str, labeller, *args, **kwargs) -> None:
        """Label one shard, ``out[key] = labeller(*args, **kwargs)``, timed, and pack it into
        ``shard_dir``; progress printed after each."""
        t = time.perf_counter()
        out[key] = labeller(*args, **kwargs)
        out[key]["seconds"] = round(time.perf_counter() - t, 1)
        if cfg.shard_dir:
            out[key]["packed"] = pack_recipe_shard(cfg, key)
        print(json.dumps(out), flush=True)

    def todo(key: str) -> bool:
        """Whether shard ``key`` is to be labelled: the config asks for it and ``shard_dir`` has no packed copy."""
        if not _labelled(cfg, key):
            return False
        path = shard_path(cfg, key)  # ConfigError if a packed copy was made with another section
        if path == paths[key]:
            return True
        out[key] = {"packed": str(path)}
        return False

    for key in CHARGED_SHARDS:
        c = getattr(cfg, key)
        if not todo(key):
            continue
        sampling = charged_sampling(
            n_conformers=c.n_conformers, opt_steps=c.opt_steps, n_md=c.n_md, md_temperature_k=c.md_temperature_k,
            md_stride=c.md_stride, n_noise=c.n_noise, noise_sigmas=c.noise_sigmas, n_bond_scans=c.n_bond_scans,
            compress=c.compress, stretch=c.stretch, solvent=c.solvent or None, max_energy_kcal_mol=c.max_energy_kcal_mol,
            seed=c.seed,
        )
        run(key, xtb_charged,
            paths[key], c.source or cfg.xtb_frames.path or None, c.n_molecules, max_atoms=c.max_atoms,
            sampling=sampling, workers=c.workers, seed=c.seed, small=c.small, kinds=c.kinds,
        )
    d = cfg.torsion_scans
    if todo("torsion_scans"):
        run("torsion_scans", xtb_drug_like,
            paths["torsion_scans"], d.source or cfg.xtb_frames.path, d.n_molecules, torsion_sampling(
                n_scans=d.n_scans, step_deg=d.step_deg, opt_steps=d.opt_steps, max_energy_kcal_mol=d.max_energy_kcal_mol,
                seed=d.seed,
            ), charged_fraction=d.charged_fraction, max_atoms=d.max_atoms, workers=d.workers, seed=d.seed,
        )
    p = cfg.bond_pulls
    if todo("bond_pulls"):
        run("bond_pulls", xtb_drug_like,
            paths["bond_pulls"], p.source or cfg.xtb_frames.path, p.n_molecules, pull_sampling(
                n_bonds=p.n_bonds, pull=p.pull, n_angles=p.n_angles, bend=p.bend, opt_steps=p.opt_steps,
                max_energy_kcal_mol=p.max_energy_kcal_mol, seed=p.seed,
            ), charged_fraction=p.charged_fraction, max_atoms=p.max_atoms, workers=p.workers, seed=p.seed,
        )
    for key, count, lengths in (("heavy_pulls", "n_heavy", "heavy_pull"), ("cleavages", "n_cleave", "cleave")):
        h = getattr(cfg, key)  # bonds between heavy atoms pulled apart, or cleaved
        if todo(key):
            run(key, xtb_drug_like,
                paths[key], h.source or cfg.xtb_frames.path, h.n_molecules, pull_sampling(
                    n_bonds=0, n_angles=0, **{count: h.n_bonds, lengths: h.pull}, opt_steps=h.opt_steps,
                    max_energy_kcal_mol=h.max_energy_kcal_mol, solvent=h.solvent, seed=h.seed,
                ), charged_fraction=h.charged_fraction, max_atoms=h.max_atoms, workers=h.workers, seed=h.seed,
            )
    t = cfg.dft_torsions
    if todo("dft_torsions"):
        source = shard_path(cfg, "torsion_scans")
        if not source.is_file():
            raise PhysFFError(f"dft_torsions labels frames of the torsion drives, but {source} is missing: label torsion_scans first")
        run("dft_torsions", dft_torsions,
            paths["dft_torsions"], source, t.n_molecules, max_atoms=t.max_atoms, level=t.level, workers=t.workers, seed=t.seed,
        )
    k = cfg.kd
    inputs = kd_inputs(read_qm9(limit=k.n_qm9, seed=k.seed)) if k.n_qm9 else []
    if k.max_atoms:
        inputs += kd_inputs(splits.part("train"), max_atoms=k.max_atoms)
    if inputs:
        t = time.perf_counter()
        qm_label(inputs, paths["kd"], level=k.level, n_conformers=0, optimize=None, forces=False, kinetic=True,
                 n_workers=k.workers, progress=False, seed=k.seed)
        out["kd"] = {"molecules": len(inputs), "level": k.level, "seconds": round(time.perf_counter() - t, 1)}
    return out


def _has_stage1(cfg: DefaultModelConfig) -> bool:
    """Whether the recipe has stage 1: ``kd`` asks for kinetic-energy labels."""
    return bool(cfg.kd.n_qm9 or cfg.kd.max_atoms)


def embed(cfg: DefaultModelConfig) -> dict:
    from physff_openmm.training.stage1 import train_stage1

    if not _has_stage1(cfg):
        raise PhysFFError("the embed stage needs kinetic-energy labels: kd.n_qm9 or kd.max_atoms > 0 in the config")
    paths = _paths(cfg)
    result = train_stage1(str(paths["kd"]), paths["embed"], cfg.stage1)
    return result.metrics


def _xtb_frames(cfg: DefaultModelConfig) -> tuple[list, list]:
    """Training and validation records of the GFN2-xTB frames (none when ``xtb_frames.path`` is empty)."""
    from physff_openmm.training.dataset import split_by_molecule
    from physff_openmm.training.sources import read_xtb_frames

    x = cfg.xtb_frames
    if not x.path:
        return [], []
    records = read_xtb_frames(x.path, limit=x.limit, kinds=x.kinds or None, max_energy_kcal_mol=x.max_energy_kcal_mol, seed=x.seed)
    train, val, _ = split_by_molecule(records, (1.0 - x.val_fraction, x.val_fraction, 0.0), x.seed)
    return train, val


def _charged(cfg: DefaultModelConfig, key: str) -> tuple[list, list]:
    """Training and validation records of charged shard ``key`` (none unless the config labels it)."""
    if not _labelled(cfg, key):
        return [], []
    path = shard_path(cfg, key)
    if not path.is_file():
        return [], []
    return split_charged_shard(path, getattr(cfg, key))


def _skeletons(records) -> set[str]:
    """Canonical SMILES without stereochemistry of every fragment of ``records``."""
    from rdkit import Chem

    out = set()
    for r in records:
        for part in r.smiles.split("."):
            mol = Chem.MolFromSmiles(part)
            out.add(Chem.MolToSmiles(mol, isomericSmiles=False) if mol is not None else part)
    return out


def _datamodule(cfg, splits, stage_cfg, shards, charged=("charged",)):
    """Public splits, the xTB frames, the ``charged`` shards (each split by molecule) and the labelled
    ``shards``; a record of a validation molecule stays in validation."""
    from physff_openmm.training.data import PhysFFDataModule
    from physff_openmm.training.dataset import read_dataset

    train, val, test = splits.part("train"), splits.part("val"), splits.part("test")
    xtb_train, xtb_val = _xtb_frames(cfg)
    held_out = _skeletons(test)  # a molecule of the public test split never trains, whatever its source
    train += [r for r in xtb_train if not _skeletons([r]) & held_out]
    val += xtb_val
    for key in charged:
        charged_train, charged_val = _charged(cfg, key)
        train += [r for r in charged_train if not _skeletons([r]) & held_out]
        val += charged_val
    names_val = {r.name for r in val}
    for path in shards:
        if Path(path).is_file():
            extra = read_dataset(path)
            train += [r for r in extra if r.name not in names_val and not _skeletons([r]) & held_out]
            val += [r for r in extra if r.name in names_val]
    if stage_cfg.loss.charge_weight > 0:  # GFN2-xTB charges of the charged molecules: the charge term's targets
        from physff_openmm.training.xtb import attach_charge_targets

        t0 = time.perf_counter()
        counts = attach_charge_targets(train + val, charged_only=True)
        print(f"charge targets: {counts} ({time.perf_counter() - t0:.0f} s)", flush=True)
    d = stage_cfg.data
    return PhysFFDataModule(
        splits=(train, val, test), batch_size=d.batch_size, seed=d.seed, num_workers=d.num_workers,
        group_by_molecule=d.group_by_molecule, resonance=stage_cfg.resonance_features,
    )


def energy(cfg: DefaultModelConfig, splits, install: bool, recipe: str) -> dict:
    """Stage 2 from the stage-1 embeddings; the result goes to ``work_dir/energy/stage2.pt``."""
    import torch

    from physff_openmm.training.export import export_model
    from physff_openmm.training.stage2 import train_stage2

    torch.set_num_threads(os.cpu_count() or 1)
    paths = _paths(cfg)
    dm = _datamodule(cfg, splits, cfg.stage2, [])
    embed_file = paths["embed"] / "embed.pt"  # a recipe without stage 1 ignores one left in work_dir
    result = train_stage2(dm, paths["energy"], cfg.stage2, embed=embed_file if _has_stage1(cfg) and embed_file.is_file() else None)
    meta = {"name": cfg.name, "level": "b3lyp-d3bj/def2-svp", "metrics": result.metrics, "data": result.provenance}
    export_model(result.model, paths["energy"] / "stage2.pt", meta, config=cfg.stage2)
    if cfg.finetune is None:
        if cfg.lj_head.hidden:
            return lj_phase(cfg, splits, install, recipe)
        return _finish(cfg, splits, result, {"stage2": _summary(result.metrics)}, install, recipe)
    return {"stage2": _summary(result.metrics), "file": str(paths["energy"] / "stage2.pt")}


#: The shards of frames of drug-like molecules (GFN2-xTB, and DFT of the torsion drives) each fine-tuning phase adds.
PHASE_SHARDS = {"finetune": ("torsion_scans", "dft_torsions"), "refine": ("torsion_scans", "bond_pulls", "heavy_pulls", "cleavages", "dft_torsions")}


def _labelled(cfg: DefaultModelConfig, key: str) -> bool:
    """Whether the config labels shard ``key`` (a shard another recipe left in work_dir does not count)."""
    return bool(getattr(cfg, key).n_molecules)


def finetune(cfg: DefaultModelConfig, splits, install: bool, recipe: str, phase: str = "finetune") -> dict:
    """A fine-tuning phase (``finetune`` from stage 2's weights, ``refine`` from the fine-tuning
    phase's); then the next phase, or the checks and the model file."""
    import torch

    from physff_openmm.model import file_sha256, load_model_file
    from physff_openmm.training.export import export_model
    from physff_openmm.training.stage2 import train_stage2

    torch.set_num_threads(os.cpu_count() or 1)
    paths = _paths(cfg)
    stage_cfg = getattr(cfg, phase)
    start_path = Path(cfg.work_dir) / PHASE_START[phase]
    start = load_model_file(start_path)
    dm = _datamodule(cfg, splits, stage_cfg, [shard_path(cfg, k) for k in PHASE_SHARDS[phase] if _labelled(cfg, k)],
                     charged=PHASE_CHARGED[phase])
    result = train_stage2(dm, paths[phase], stage_cfg, embed=start)
    summary = {**_summary(result.metrics), "start_file": str(start_path), "start_sha256": file_sha256(start_path)}
    phases = _phase_history(start.metadata, phase, summary)
    last = _last_stage2_phase(cfg) == phase
    if last and not cfg.lj_head.hidden:
        return _finish(cfg, splits, result, phases, install, recipe)
    meta = {"name": cfg.name, "level": "b3lyp-d3bj/def2-svp", "metrics": result.metrics, "phases": phases,
            "data": result.provenance}
    out = Path(cfg.work_dir) / PHASE_FILE[phase]
    export_model(result.model, out, meta, config=stage_cfg)
    if not last:
        return {phase: _summary(result.metrics), "file": str(out)}
    return lj_phase(cfg, splits, install, recipe)


#: The model file (in ``work_dir``) each stage-2 phase writes, in the order the phases run.
PHASE_FILE = {"stage2": "energy/stage2.pt", "finetune": "finetune/finetune.pt", "refine": "refine/refine.pt"}
#: The charged shards each fine-tuning phase reads (stage 2 reads ``charged`` only).
PHASE_CHARGED = {"finetune": ("charged",), "refine": CHARGED_SHARDS}
#: Each fine-tuning phase starts from the file of the phase before it.
PHASE_START = {"finetune": PHASE_FILE["stage2"], "refine": PHASE_FILE["finetune"]}


def _last_stage2_phase(cfg: DefaultModelConfig) -> str:
    """``refine``, ``finetune`` or ``stage2``: the last stage-2 phase the config has."""
    return "refine" if cfg.refine is not None else "finetune" if cfg.finetune is not None else "stage2"


#: The lj_net phase starts from the last stage-2 phase's model file.
LJ_START = PHASE_FILE


def lj_phase(cfg: DefaultModelConfig, splits, install: bool, recipe: str) -> dict:
    """The lj_net on the NCIAtlas training dimers, the rest of the model frozen; then the checks and the model file."""
    from types import SimpleNamespace

    import torch

    from physff_openmm.model import file_sha256, load_model_file
    from physff_openmm.training.lj_head import train_lj_head

    if not cfg.lj_head.hidden:
        raise PhysFFError("the lj stage needs lj_head.hidden > 0 in the config")
    torch.set_num_threads(os.cpu_count() or 1)
    start_path = Path(cfg.work_dir) / LJ_START[_last_stage2_phase(cfg)]
    model = load_model_file(start_path)
    start_meta = dict(model.metadata)
    lj = train_lj_head(model, splits.train["ncia"], splits.val["ncia"], cfg.lj_head)
    metrics = {k: v for k, v in start_meta.get("metrics", {}).items() if k not in ("phases", "md_stability")}
    summary = {"lj_head": lj, "start_file": str(start_path), "start_sha256": file_sha256(start_path)}
    result = SimpleNamespace(model=model, metrics={**metrics, "lj_head": lj}, provenance=start_meta.get("data", {}))
    return _finish(cfg, splits, result, _phase_history(start_meta, "lj_head", summary), install, recipe)


def _phase_history(start_metadata: dict, name: str, summary: dict) -> dict:
    """The phases behind the start file, then this one (a repeated name gets a suffix: _3, _4, ...).

    An earlier phase's file keeps them in ``phases``, a finished model file in
    ``metrics.phases`` (a recipe that continues another's model); a file with neither
    counts as one stage-2 phase.
    """
    metrics = start_metadata.get("metrics", {})
    earlier = start_metadata.get("phases") or metrics.get("phases") or {"stage2": _summary(metrics)}
    key = name if name not in earlier else f"{name}_{len(earlier) + 1}"
    return {**earlier, key: summary}


def _summary(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("test_molecules",)}


def _finish(cfg: DefaultModelConfig, splits, result, phases: dict, install: bool, recipe: str) -> dict:
    """MD and minimization checks, model file with provenance and metrics, registry entry.

    A model that fails either check is written (to be looked at) but not installed: the run
    ends with an error that names the molecules.
    """
    from physff_openmm.training.evaluate import md_stability, minimization_check
    from physff_openmm.training.export import export_model, install_model

    md = md_stability(result.model, cfg.md_check)
    kept = minimization_check(result.model, cfg.md_check)
    metadata = {
        "name": cfg.name,
        "description": cfg.description,
        "level": "b3lyp-d3bj/def2-svp",
        "metrics": {**result.metrics, "phases": phases, "md_stability": md, "minimization": kept},
        "data": {
            **result.provenance,
            "recipe": recipe,
            "public_splits": splits.counts(),
            "config": config_to_dict(cfg),
        },
    }
    sha = export_model(result.model, cfg.output, metadata, config=getattr(cfg, _last_stage2_phase(cfg)))
    failed = [f"MD of {k} (bond change {v['max_bond_change']:.1%})" for k, v in md["molecules"].items() if not v["stable"]]
    failed += [f"minimization of {k} ({v['bond']} by {v['max_bond_change']:+.1%})" for k, v in kept["molecules"].items() if not v["kept"]]
    if failed:
        raise PhysFFError(f"{cfg.output} (sha256 {sha[:8]}) fails its checks, so it is not installed: {'; '.join(failed)}")
    if install:
        install_model(cfg.output, cfg.name, description=cfg.description, alias=cfg.alias or None)
    return {"file": cfg.output, "sha256": sha, "metrics": metadata["metrics"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--stage", choices=("label", "embed", "energy", "finetune", "refine", "lj", "all"), default="all")
    p.add_argument("--install", action="store_true", help="register the model in physff_openmm/models/index.json")
    p.add_argument("--output", help="model file to write instead of the config's output")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return _run(args)
    except PhysFFError as exc:  # bad config, data folder, shard or model file: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    cfg = load_config(args.config, DefaultModelConfig)
    if cfg.refine is not None and cfg.finetune is None:
        raise PhysFFError(f"{args.config}: a refine phase needs the finetune phase it starts from")
    if cfg.shard_dir and not Path(cfg.shard_dir).is_absolute():  # relative to the repository root, from any folder
        cfg.shard_dir = str(Path(__file__).resolve().parents[1] / cfg.shard_dir)
    if cfg.shard_dir and Path(cfg.shard_dir).resolve() == Path(cfg.work_dir).resolve():
        raise PhysFFError(f"{args.config}: shard_dir must be another folder than work_dir, where shards are labelled")
    if args.output:
        cfg.output = args.output
    splits = _splits(cfg)
    print(json.dumps({"public_splits": splits.counts()}), flush=True)
    if args.stage in ("label", "all"):
        print(json.dumps(label(cfg, splits), indent=1), flush=True)
    if args.stage == "embed" or (args.stage == "all" and _has_stage1(cfg)):
        print(json.dumps(embed(cfg), indent=1, default=str), flush=True)
    recipe = Path(os.path.relpath(args.config)).as_posix()  # "training/default_model.yaml" from the repository root
    if args.stage in ("energy", "all"):
        print(json.dumps(energy(cfg, splits, args.install, recipe), indent=1, default=str), flush=True)
    for phase in ("finetune", "refine"):
        if args.stage in (phase, "all") and getattr(cfg, phase) is not None:
            print(json.dumps(finetune(cfg, splits, args.install, recipe, phase), indent=1, default=str), flush=True)
    if args.stage == "lj":
        print(json.dumps(lj_phase(cfg, splits, args.install, recipe), indent=1, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
