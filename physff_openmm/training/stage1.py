"""Stage 1: the MPNN learns atom embeddings by predicting the kinetic-energy partition.

The atom head predicts KD_i and the bond head KD_ij for covalent bonds; the loss
is the mean absolute error of the per-molecule sum against the labelled
Tr(DK) = sum_i kd_atom_i + sum_{i<j} kd_pair_ij (Hartree), as in the paper.
Per-element offsets of the atom head (``kd_offsets``) are fitted by least
squares on element counts before training, so the network learns a small residual.

The Lightning pieces shared with stage 2 (Adam with a step schedule, the Trainer
with early stopping, checkpoints and CSV logs) live here as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..graph import ELEMENTS
from ..model import PhysFFModel, save_model_file
from ..units import HARTREE_TO_KCAL
from .config import Stage1Config, TrainerConfig, config_to_dict, load_config
from .data import PhysFFDataModule, element_counts, pl

__all__ = [
    "EMBED_FILE",
    "EmbedModule",
    "fit_kd_offsets",
    "train_stage1",
    "Stage1Result",
    "make_trainer",
    "configure_adam",
]

logger = logging.getLogger(__name__)

#: Name of the stage-1 model file inside a stage-1 output folder.
EMBED_FILE = "embed.pt"


# ============================================================================ shared Lightning pieces
def configure_adam(module: torch.nn.Module, optim) -> dict:
    """Adam over the trainable parameters with a StepLR schedule (stepped per epoch)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: every parameter is frozen")
    opt = torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=optim.lr_step_epochs, gamma=optim.lr_gamma)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class _EpochTimer(pl.Callback):
    """Molecules (conformers) per second of each training epoch: loading, forward, backward and
    optimizer steps, from the start of the epoch to its last training batch (validation excluded)."""

    def __init__(self):
        self.rates: list[float] = []
        self._t0 = 0.0
        self._t_last = 0.0
        self._n = 0

    def on_train_epoch_start(self, trainer, module):  # noqa: D102
        self._t0 = self._t_last = time.perf_counter()
        self._n = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):  # noqa: D102
        self._n += int(batch.num_graphs)
        self._t_last = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):  # noqa: D102
        dt = self._t_last - self._t0
        if dt > 0 and self._n:
            self.rates.append(self._n / dt)


def make_trainer(cfg: TrainerConfig, out_dir: Path, *, monitor: str = "val_loss", grad_clip: float = 0.0):
    """A Lightning Trainer with checkpoints (best and last), CSV logs and early stopping.

    Returns
    -------
    (trainer, checkpoint_callback, timer_callback)
    """
    from datetime import timedelta

    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    ckpt = ModelCheckpoint(
        dirpath=out_dir / "checkpoints", filename="best-{epoch}", monitor=monitor, mode="min", save_last=True, save_top_k=1
    )
    timer = _EpochTimer()
    callbacks = [ckpt, timer]
    if cfg.patience > 0:
        callbacks.append(EarlyStopping(monitor=monitor, mode="min", patience=cfg.patience))
    max_time = None if cfg.max_time_minutes is None else timedelta(minutes=float(cfg.max_time_minutes))
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,
        max_epochs=cfg.max_epochs,
        max_time=max_time,
        callbacks=callbacks,
        logger=CSVLogger(str(out_dir), name="logs"),
        log_every_n_steps=cfg.log_every_n_steps,
        gradient_clip_val=grad_clip or None,
        deterministic=cfg.deterministic,
        inference_mode=False,  # validation computes forces with autograd
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(out_dir),
    )
    return trainer, ckpt, timer


# ============================================================================ stage 1
def _graph_sums(values: torch.Tensor, index: torch.Tensor, n_graphs: int) -> torch.Tensor:
    out = torch.zeros(n_graphs, dtype=values.dtype, device=values.device)
    return out.index_add_(0, index, values)


def predicted_kd_sum(model: PhysFFModel, batch) -> torch.Tensor:
    """Predicted Tr(DK) per graph, Hartree: sum of the atom head and the bond head."""
    h = model.embed(batch.x, batch.edge_index, batch.edge_attr)
    kd_atom, kd_bond = model.kinetic_terms(h, batch.species, batch.bond_index, batch.bond_attr)
    n = int(batch.num_graphs)
    total = _graph_sums(kd_atom, batch.batch, n)
    if kd_bond.numel():
        total = total + _graph_sums(kd_bond, batch.batch[batch.bond_index[:, 0]], n)
    return total


class RandomStateInCheckpoints:
    """Mixin of the LightningModules: torch's random state is saved with each checkpoint and set again when a
    run resumes from it (:func:`fit_module`), so that a resumed run draws the noise the uninterrupted one would."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:  # noqa: D102 - Lightning hook
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:  # noqa: D102 - Lightning hook
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])


class EmbedModule(RandomStateInCheckpoints, pl.LightningModule):
    """Stage 1 as a LightningModule: MAE of the per-molecule kinetic sum (Hartree)."""

    def __init__(self, model: PhysFFModel, config: Stage1Config):
        super().__init__()
        self.model = model
        self.config = config
        # stage 2 heads get no gradient here
        for net in (model.charge_net, model.feats_net):
            for p in net.parameters():
                p.requires_grad_(False)

    def _loss(self, batch) -> torch.Tensor:
        pred = predicted_kd_sum(self.model, batch)
        return (pred - batch.kd_total).abs().mean()

    def training_step(self, batch, batch_idx):  # noqa: D102
        loss = self._loss(batch)
        self.log("train_loss", loss, batch_size=int(batch.num_graphs), on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):  # noqa: D102
        loss = self._loss(batch)
        n = int(batch.num_graphs)
        self.log("val_loss", loss, batch_size=n, prog_bar=True)
        self.log("val_kd_mae_kcal_mol", loss * HARTREE_TO_KCAL, batch_size=n)

    def on_save_checkpoint(self, checkpoint):  # noqa: D102 - lets export_model rebuild the model
        checkpoint["physff_model_config"] = self.model.config.to_dict()

    def configure_optimizers(self):  # noqa: D102
        return configure_adam(self.model, self.config.optim)


def fit_kd_offsets(graphs) -> np.ndarray:
    """Per-element Hartree offsets: least squares of Tr(DK) on element counts."""
    x = element_counts(graphs)[:, : len(ELEMENTS)]
    y = np.array([float(g.kd_total) for g in graphs])
    present = x.sum(0) > 0
    w = np.zeros(len(ELEMENTS))
    w[present] = np.linalg.lstsq(x[:, present], y, rcond=None)[0]
    return w


@dataclass
class Stage1Result:
    """What :func:`train_stage1` returns.

    Attributes
    ----------
    model : PhysFFModel
        Best weights (lowest validation loss).
    model_file : Path
        ``out_dir / embed.pt`` (a model file with the stage-1 weights).
    metrics : dict
        Validation MAE (Hartree and kcal/mol), epochs, throughput.
    provenance : dict
    """

    model: PhysFFModel
    model_file: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def _evaluate_kd(model: PhysFFModel, loader) -> float:
    model.eval()
    errs = []
    with torch.no_grad():
        for batch in loader:
            errs.append((predicted_kd_sum(model, batch) - batch.kd_total).abs())
    model.train()
    return float(torch.cat(errs).mean()) if errs else math.nan


def prepare_run(cfg, data, stage: str, out_dir: str | Path, epochs: int | None) -> tuple[Path, PhysFFDataModule]:
    """Apply an ``epochs`` override, create ``out_dir``, seed everything, set up the data module."""
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {epochs}")
        cfg.trainer.max_epochs = int(epochs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    dm = data if isinstance(data, PhysFFDataModule) else PhysFFDataModule(
        data, stage=stage, batch_size=cfg.data.batch_size, split=cfg.data.split, seed=cfg.data.seed,
        num_workers=cfg.data.num_workers, group_by_molecule=cfg.data.group_by_molecule,
        resonance=getattr(cfg, "resonance_features", False),
    )
    dm.setup()
    return out_dir, dm


#: Trainer settings a resumed run may differ in from the run it resumes: how long it trains.
RESUMABLE_CHANGES = ("max_epochs", "max_time_minutes")


def run_signature(module, dm: PhysFFDataModule, cfg) -> str:
    """SHA-256 of what makes a training run the same run: its config (less :data:`RESUMABLE_CHANGES`),
    the starting weights and the sizes of its training and validation sets."""
    conf = config_to_dict(cfg)
    for key in RESUMABLE_CHANGES:
        conf.get("trainer", {}).pop(key, None)
    h = hashlib.sha256(json.dumps(conf, sort_keys=True, default=str).encode())
    for name, value in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([len(dm.train_graphs), len(dm.val_graphs)]).encode())
    return h.hexdigest()


def _resume_checkpoint(out_dir: Path, signature: str) -> str | None:
    """``out_dir/checkpoints/last.ckpt`` when it belongs to the run of ``signature``; otherwise None, with the
    checkpoints of another run deleted (they would be taken for this run's). The signature is written."""
    folder = out_dir / "checkpoints"
    last, sig_file = folder / "last.ckpt", folder / "run.json"
    resume = None
    if last.is_file():
        old = json.loads(sig_file.read_text()).get("signature") if sig_file.is_file() else None
        if old == signature:
            resume = str(last)
            logger.info("resuming the run in %s from %s", out_dir, last)
        else:
            logger.warning("%s holds checkpoints of another run (config, starting weights or data differ): starting over",
                           folder)
            for f in folder.glob("*.ckpt"):
                f.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    sig_file.write_text(json.dumps({"signature": signature}) + "\n")
    return resume


def fit_module(module, dm: PhysFFDataModule, cfg, out_dir: Path) -> tuple[PhysFFModel, dict[str, Any], str]:
    """Train ``module``; keep the best or last weights as the config says; the model in eval mode on CPU.

    A run resumes from ``out_dir/checkpoints/last.ckpt`` (weights, optimizer, learning-rate schedule,
    best checkpoint, the batches' shuffling) when that checkpoint is of the same run
    (:func:`run_signature`): an interrupted run goes on where it stopped, and one run again with a
    larger ``trainer.max_epochs`` trains the extra epochs only, as one longer run would have.

    Returns the model, its training statistics (epochs, seconds, molecules per second, the epoch
    it resumed at) and the path of the best checkpoint ("" when none was written).
    """
    resume = _resume_checkpoint(out_dir, run_signature(module, dm, cfg))
    trainer, ckpt, timer = make_trainer(cfg.trainer, out_dir, grad_clip=cfg.optim.grad_clip)
    start_epoch = int(torch.load(resume, map_location="cpu", weights_only=False)["epoch"]) + 1 if resume else 0
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=resume)
    seconds = time.perf_counter() - t0
    if cfg.trainer.keep == "best" and ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    stats = {
        "epochs": int(trainer.current_epoch),
        "train_seconds": seconds,
        "train_molecules_per_second": float(np.mean(timer.rates)) if timer.rates else math.nan,
    }
    if resume:
        stats["resumed_at_epoch"] = start_epoch
    return module.model.cpu().eval(), stats, str(ckpt.best_model_path or "")


def train_stage1(data, out_dir: str | Path, config=None, *, epochs: int | None = None) -> Stage1Result:
    """Train stage 1 and write ``out_dir/embed.pt``, checkpoints and CSV logs.

    Parameters
    ----------
    data : path, list of paths or PhysFFDataModule
        HDF5 shards with ``kd_atom`` / ``kd_pair`` labels.
    out_dir : path
    config : Stage1Config, dict, YAML path or None
    epochs : int, optional
        Overrides ``config.trainer.max_epochs``.
    """
    cfg: Stage1Config = load_config(config, Stage1Config)
    out_dir, dm = prepare_run(cfg, data, "embed", out_dir, epochs)
    model = PhysFFModel(cfg.model)
    offsets = fit_kd_offsets(dm.train_graphs)
    model.kd_offsets.copy_(torch.from_numpy(offsets))
    module = EmbedModule(model, cfg)
    model, fit_stats, _ = fit_module(module, dm, cfg, out_dir)
    val_mae = _evaluate_kd(model, dm.val_dataloader())
    metrics = {
        "stage": "embed",
        "val_kd_sum_mae_hartree": val_mae,
        "val_kd_sum_mae_kcal_mol": val_mae * HARTREE_TO_KCAL,
        **fit_stats,
    }
    provenance = dm.provenance()
    levels = provenance.get("levels", [])
    path = out_dir / EMBED_FILE
    save_model_file(
        model,
        path,
        {
            "stage": "embed",
            "level": levels[0] if len(levels) == 1 else levels,
            "metrics": metrics,
            "data": provenance,
            "training_config": config_to_dict(cfg),
        },
    )
    return Stage1Result(model=model, model_file=path, metrics=metrics, provenance=provenance)
