"""Stage 2: charge_net and feats_net on total energies, forces and interaction energies.

The model's energy (:meth:`PhysFFModel.energy`, kcal/mol) is a correction to the
linear model E_lin = w . N + b, which is fitted by least squares on element
counts first and then held fixed. Forces are minus the autograd gradient of that
energy with respect to the positions (kcal/mol/Angstrom), so the force loss
trains the same function the OpenMM System evaluates. Training coordinates get
Gaussian noise (sigma 0.005 Angstrom in the paper). Where a dimer carries an
interaction energy, the loss also compares E(AB) - E(A) - E(B) computed by the
same model: with embeddings that see only the covalent graph and charges that
sum to each fragment's formal charge, that difference is exactly the sum of the
intermolecular pair terms, which is how it is computed here.

Stage 2 starts from a stage-1 model file (``embed.pt``), optionally keeping the
embedding network frozen, or from scratch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import energy as pair_potential
from ..errors import ConfigError, ModelError
from ..graph import ELEMENTS, PAIR_COVALENT
from ..model import ModelConfig, PhysFFModel, load_model_file
from .config import Stage2Config, load_config
from .data import element_counts, pl
from .stage1 import EMBED_FILE, RandomStateInCheckpoints, configure_adam, fit_module, prepare_run

__all__ = [
    "EnergyModule",
    "fit_linear_energy",
    "interaction_energy",
    "energy_and_forces",
    "shared_pair_terms",
    "load_embedding",
    "train_stage2",
    "Stage2Result",
]

logger = logging.getLogger(__name__)


# ============================================================================ physics helpers
def energy_and_forces(
    model: PhysFFModel, batch, pos: torch.Tensor, *, forces: bool = True, create_graph: bool = False, terms=None
):
    """Energies (n_graphs,) kcal/mol and forces (n_atoms, 3) kcal/mol/Angstrom by autograd.

    ``pos`` (n_atoms, 3) Angstrom, float64. Forces are None when ``forces`` is False.
    ``terms``: ``model.pair_terms(batch)``, when already computed.
    """
    if not forces:
        return model.energy(batch, pos, terms), None
    if not pos.requires_grad:
        pos = pos.detach().requires_grad_(True)
    with torch.enable_grad():
        e = model.energy(batch, pos, terms)
        (grad,) = torch.autograd.grad(e.sum(), pos, create_graph=create_graph)
    return e, -grad


def shared_pair_terms(model: PhysFFModel, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.pair_terms(batch)``, with the pair parameters computed once per molecule.

    Conformers of one molecule (same ``mol_id``) share their topology, so their
    charges and pair parameters are equal: feats_net runs on the pairs of the first
    conformer of each molecule in the batch, and the other conformers' rows are
    copies (gradients flow back to the shared rows).
    """
    mol = getattr(batch, "mol_id", None)
    if mol is None or getattr(batch, "batch", None) is None:
        return model.pair_terms(batch)
    n_graphs = mol.numel()
    _, inv = torch.unique(mol, return_inverse=True)
    graph_ids = torch.arange(n_graphs, device=mol.device)
    first = torch.full((int(inv.max()) + 1,), n_graphs, dtype=torch.long, device=mol.device)
    first = first.scatter_reduce(0, inv, graph_ids, reduce="amin")[inv]  # (G,) first graph of each graph's molecule
    h = model.embed(batch.x, batch.edge_index, batch.edge_attr)
    q = model.charges(h, batch.fragment_index, batch.fragment_charge)
    i, j = batch.pair_index[:, 0], batch.pair_index[:, 1]
    pair_graph = batch.batch[i]
    n_pairs = torch.bincount(pair_graph, minlength=n_graphs)
    offset = torch.cumsum(n_pairs, 0) - n_pairs
    rows = torch.arange(i.numel(), device=i.device)
    source = offset[first[pair_graph]] + (rows - offset[pair_graph])  # the same pair in the first conformer
    own = torch.nonzero(first[pair_graph] == pair_graph).squeeze(1)
    slot = torch.full((i.numel(),), -1, dtype=torch.long, device=i.device)
    slot[own] = torch.arange(own.numel(), device=i.device)
    h_path = None
    if model.config.path_embeddings:  # only the rows feats_net runs on
        keep = slot[batch.path_pair] >= 0
        h_path = model.path_embeddings(
            h, slot[batch.path_pair[keep]], batch.path_atom[keep], batch.path_weight[keep], own.numel()
        )
    io, jo = i[own], j[own]
    species = torch.stack([batch.species[io], batch.species[jo]], dim=1)
    computed = model.pair_parameters(h[io], h[jo], batch.pair_attr[own], h_path, species, q[io] * q[jo])
    return q, computed[slot[source]]


def interaction_energy(model: PhysFFModel, batch, pos: torch.Tensor, terms=None) -> torch.Tensor:
    """E(AB) - sum E(fragments) per graph, kcal/mol (zero for single-fragment graphs).

    Computed as the sum of the intermolecular pair terms, which equals the
    difference of the model's energies of the complex and of its isolated
    fragments (embeddings use only covalent bonds; each fragment's charges sum
    to its formal charge; E_lin is additive). ``terms``: ``model.pair_terms(batch)``,
    when already computed.
    """
    i, j = batch.pair_index[:, 0], batch.pair_index[:, 1]
    inter = batch.fragment_index[i] != batch.fragment_index[j]
    graph = batch.batch if getattr(batch, "batch", None) is not None else torch.zeros_like(batch.species)
    n_graphs = int(graph.max()) + 1 if graph.numel() else 1
    out = torch.zeros(n_graphs, dtype=torch.float64, device=pos.device)
    if not bool(inter.any()):
        return out
    q, params = model.pair_terms(batch) if terms is None else terms
    i, j, params = i[inter], j[inter], params[inter]
    covalent = batch.pair_attr[inter][:, PAIR_COVALENT] > 0.5
    r = torch.linalg.vector_norm(pos[i].double() - pos[j].double(), dim=-1)
    c = model.config
    e = pair_potential.pair_energy(r, q[i], q[j], params, covalent, c.r_on, c.r_off)
    return out.index_add_(0, graph[i], e)


def fit_linear_energy(graphs, pair_energies: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """E_lin by least squares: per-element weights and the per-fragment bias, kcal/mol.

    Parameters
    ----------
    graphs : sequence of MolGraph with ``energy``
    pair_energies : (n_graphs,) kcal/mol, optional
        The model's pair terms (energy minus E_lin) of each graph; E_lin is then
        fitted to ``energy - pair_energies`` (default: to ``energy``).

    Returns
    -------
    weights : (n_elements,) kcal/mol per atom
    bias : float, kcal/mol per fragment
    rmse : float, kcal/mol, residual of the fit on ``graphs``
    """
    keep = np.array([bool(g.absolute) for g in graphs], dtype=bool)  # plain xTB energies are on another scale
    graphs = [g for g, k in zip(graphs, keep) if k]
    x = element_counts(graphs)
    y = np.array([float(g.energy) for g in graphs])
    if pair_energies is not None:
        y = y - np.asarray(pair_energies, dtype=np.float64)[keep]
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if not len(y):
        raise ConfigError("no energies to fit E_lin to")
    present = x.sum(0) > 0
    coef = np.zeros(x.shape[1])
    coef[present] = np.linalg.lstsq(x[:, present], y, rcond=None)[0]
    rmse = float(np.sqrt(np.mean((x @ coef - y) ** 2)))
    return coef[: len(ELEMENTS)], float(coef[-1]), rmse


def refit_linear_energy(model: PhysFFModel, graphs, batch_size: int = 64) -> float:
    """Fit the model's E_lin to what its pair terms leave of the energies of ``graphs`` without forces.

    Returns the RMSE (kcal/mol) of the fitted total energies on those graphs.
    """
    from torch_geometric.loader import DataLoader

    chosen = [g for g in graphs if bool(g.absolute) and not bool(g.has_forces) and bool(torch.isfinite(g.energy).all())]
    if not chosen:
        raise ConfigError("refit_linear: no training energies without forces to fit E_lin to")
    dev, was_training = model.elin_weights.device, model.training
    model.eval()
    model.elin_weights.zero_()  # energies are then the pair terms alone
    model.elin_bias.zero_()
    with torch.no_grad():
        pairs = []
        for b in DataLoader(chosen, batch_size=batch_size, shuffle=False):
            b = b.to(dev)
            pairs.append(model.energy(b, b.pos.to(torch.float64)).cpu().numpy())
    w, b, rmse = fit_linear_energy(chosen, np.concatenate(pairs))
    model.elin_weights.copy_(torch.from_numpy(w))
    model.elin_bias.fill_(b)
    model.train(was_training)
    return rmse


# ============================================================================ Lightning module
class EnergyModule(RandomStateInCheckpoints, pl.LightningModule):
    """Stage 2 as a LightningModule.

    Loss (each term MAE, MSE or RMSE per ``config.loss.kind``)::

        energy_weight * |E - E_ref| (/ n_atoms if per_atom)
        + force_weight * |F - F_ref| per component, over conformers with forces
        + interaction_weight * |E_int - E_int_ref|, over dimers with interaction energies (weighted mean:
          charged_dimer_weight for dimers with a charged monomer, 1 for the others)
        + relative_weight * |(E - <E>_mol) - (E_ref - <E_ref>_mol)|, over conformers without
          forces whose molecule has several conformers in the batch (<>_mol: mean over them)
        + relative_forces_weight * the same, over conformers with forces (GFN2-xTB frames,
          charged molecules, torsion drives)
        + charge_weight * |Q - Q_ref|, over the atoms with a target charge (``ref_charges``)
    """

    def __init__(self, model: PhysFFModel, config: Stage2Config):
        super().__init__()
        self.model = model
        self.config = config
        for p in model.parameters():
            p.requires_grad_(True)
        for net in (model.atom_head, model.bond_head):  # stage-1 heads are not used here
            for p in net.parameters():
                p.requires_grad_(False)
        if config.freeze_embedding:
            for net in (model.atom_embed, model.steps):
                for p in net.parameters():
                    p.requires_grad_(False)

    def _err(self, pred: torch.Tensor, ref: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """MAE, MSE or RMSE of ``pred`` against ``ref``; with ``weight``, the weighted mean over rows."""
        d = pred - ref
        kind = self.config.loss.kind

        def mean(x: torch.Tensor) -> torch.Tensor:
            return x.mean() if weight is None else (weight * x).sum() / weight.sum()

        if kind == "mae":
            return mean(d.abs())
        mse = mean(d * d)
        return mse if kind == "mse" else torch.sqrt(mse + 1e-12)

    @staticmethod
    def _relative(e: torch.Tensor, batch, select: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Predicted and reference energies minus their mean over each molecule's selected conformers.

        Only molecules with at least two selected conformers in the batch count;
        None when there are none.
        """
        if int(select.sum()) < 2:
            return None
        inv = torch.unique(batch.mol_id[select], return_inverse=True)[1]
        n = torch.bincount(inv).to(e.dtype)
        multi = n[inv] > 1
        if not bool(multi.any()):
            return None
        p, r = e[select], batch.energy[select]
        mean_p = torch.zeros_like(n).index_add_(0, inv, p) / n
        mean_r = torch.zeros_like(n).index_add_(0, inv, r) / n
        return (p - mean_p[inv])[multi], (r - mean_r[inv])[multi]

    def compute(self, batch, *, train: bool) -> dict[str, torch.Tensor]:
        """Loss and error terms of a batch."""
        lc = self.config.loss
        pos = batch.pos.to(torch.float64)
        if train and lc.noise_sigma > 0:
            pos = pos + lc.noise_sigma * torch.randn_like(pos)
        atom_has_f = batch.has_forces[batch.batch]
        want_f = lc.force_weight > 0 and bool(atom_has_f.any())
        terms = shared_pair_terms(self.model, batch)  # once per batch and molecule, shared by every term below
        e, f = energy_and_forces(self.model, batch, pos, forces=want_f, create_graph=train, terms=terms)
        n_atoms = torch.bincount(batch.batch, minlength=int(batch.num_graphs)).to(e.dtype)
        ok = torch.isfinite(batch.energy)
        out: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), dtype=torch.float64, device=e.device)
        absolute = ok & batch.absolute  # total energies on the target level's scale (not plain xTB)
        if bool(absolute.any()):
            scale = n_atoms[absolute] if lc.per_atom else 1.0
            loss = loss + lc.energy_weight * self._err(e[absolute] / scale, batch.energy[absolute] / scale)
            out["energy_mae"] = (e[absolute] - batch.energy[absolute]).abs().mean().detach()
        if want_f:
            loss = loss + lc.force_weight * self._err(f[atom_has_f], batch.forces[atom_has_f])
            out["force_mae"] = (f[atom_has_f] - batch.forces[atom_has_f]).abs().mean().detach()
        if lc.relative_weight > 0:
            rel = self._relative(e, batch, ok & ~batch.has_forces)
            if rel is not None:
                loss = loss + lc.relative_weight * self._err(*rel)
                out["relative_mae"] = (rel[0] - rel[1]).abs().mean().detach()
        if lc.relative_forces_weight > 0:
            rel = self._relative(e, batch, ok & batch.has_forces)
            if rel is not None:
                loss = loss + lc.relative_forces_weight * self._err(*rel)
                out["relative_forces_mae"] = (rel[0] - rel[1]).abs().mean().detach()
        has_int = torch.isfinite(batch.interaction)
        if lc.interaction_weight > 0 and bool(has_int.any()):
            e_int = interaction_energy(self.model, batch, pos, terms)
            weight = None
            if lc.charged_dimer_weight != 1.0:
                charged = batch.charged_monomer[has_int].to(e_int.dtype)
                weight = 1.0 + (lc.charged_dimer_weight - 1.0) * charged
            loss = loss + lc.interaction_weight * self._err(e_int[has_int], batch.interaction[has_int], weight)
            out["interaction_mae"] = (e_int[has_int] - batch.interaction[has_int]).abs().mean().detach()
        ref_q = getattr(batch, "ref_charges", None)
        has_q = torch.isfinite(ref_q) if ref_q is not None else None
        if lc.charge_weight > 0 and has_q is not None and bool(has_q.any()):
            loss = loss + lc.charge_weight * self._err(terms[0][has_q], ref_q[has_q])
            out["charge_mae"] = (terms[0][has_q] - ref_q[has_q]).abs().mean().detach()
        out["loss"] = loss
        return out

    def training_step(self, batch, batch_idx):  # noqa: D102
        out = self.compute(batch, train=True)
        n = int(batch.num_graphs)
        for k, v in out.items():
            self.log(f"train_{k}", v, batch_size=n, on_epoch=True, on_step=False)
        return out["loss"]

    def validation_step(self, batch, batch_idx):  # noqa: D102
        out = self.compute(batch, train=False)
        n = int(batch.num_graphs)
        for k, v in out.items():
            self.log(f"val_{k}", v.detach(), batch_size=n, prog_bar=k == "loss")

    def on_save_checkpoint(self, checkpoint):  # noqa: D102 - lets export_model rebuild the model
        super().on_save_checkpoint(checkpoint)
        checkpoint["physff_model_config"] = self.model.config.to_dict()

    def on_train_epoch_start(self):  # noqa: D102 - E_lin follows the pair terms (refit_linear)
        if self.config.refit_linear:
            rmse = refit_linear_energy(self.model, self.trainer.datamodule.train_graphs, self.config.data.batch_size)
            self.log("elin_refit_rmse", rmse, on_epoch=True, on_step=False)

    def configure_optimizers(self):  # noqa: D102
        return configure_adam(self.model, self.config.optim)


# ============================================================================ driver
def load_embedding(source: str | Path | PhysFFModel) -> PhysFFModel:
    """The stage-1 model: a PhysFFModel, a model file, or a stage-1 output folder (its ``embed.pt``)."""
    if isinstance(source, PhysFFModel):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / EMBED_FILE
        if not path.is_file():
            raise ModelError(f"{str(source)!r} holds no {EMBED_FILE}: run `train embed` into it first")
    return load_model_file(path)


@dataclass
class Stage2Result:
    """What :func:`train_stage2` returns.

    Attributes
    ----------
    model : PhysFFModel
        Best weights (lowest validation loss), evaluation mode.
    metrics : dict
        E_lin fit, validation and test errors (kcal/mol, kcal/mol/Angstrom), epochs, throughput.
    provenance : dict
        Data counts and sources.
    config : Stage2Config
    best_checkpoint : str
    """

    model: PhysFFModel
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    config: Stage2Config | None = None
    best_checkpoint: str = ""
    datamodule: Any = None


def train_stage2(
    data,
    out_dir: str | Path,
    config=None,
    *,
    embed: str | Path | PhysFFModel | None = None,
    epochs: int | None = None,
) -> Stage2Result:
    """Train stage 2 (charges and pair parameters) on energies and forces.

    Parameters
    ----------
    data : path, list of paths or PhysFFDataModule
        HDF5 shards with energies (forces and interaction energies optional).
    out_dir : path
        Checkpoints (``checkpoints/``) and CSV logs (``logs/``).
    config : Stage2Config, dict, YAML path or None
    embed : stage-1 folder, model file or model, optional
        Start from these weights (the architecture comes from it).
    epochs : int, optional
        Overrides ``config.trainer.max_epochs``.
    """
    from .evaluate import evaluate_graphs

    cfg: Stage2Config = load_config(config, Stage2Config)
    out_dir, dm = prepare_run(cfg, data, "energy", out_dir, epochs)
    if embed is not None:
        model = load_embedding(embed)
        model.train()
        stage1_meta = {"embed_file_sha256": model.file_hash, "embed_metrics": model.metadata.get("metrics", {})}
    else:
        model = PhysFFModel(cfg.model or ModelConfig())
        stage1_meta = {}
    if cfg.path_embeddings:
        model.add_path_embeddings()
    if cfg.resonance_features:
        model.config.resonance_features = True
    if model.config.resonance_features != dm.resonance:
        raise ConfigError(
            f"the model has resonance_features={model.config.resonance_features} but the data was built with "
            f"resonance={dm.resonance}: set resonance_features in the stage config to the model's"
        )
    model.set_walls(cfg.wall_factor, cfg.width_floor, cfg.curvature_max)
    cfg.model = model.config
    metrics: dict[str, Any] = {"stage": "energy", **stage1_meta}
    if cfg.fit_linear:
        w, b, rmse = fit_linear_energy(dm.train_graphs)
        model.elin_weights.copy_(torch.from_numpy(w))
        model.elin_bias.fill_(b)
        metrics["elin_fit_rmse_kcal_mol"] = rmse
    module = EnergyModule(model, cfg)
    model, fit_stats, best_checkpoint = fit_module(module, dm, cfg, out_dir)
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.refit_linear:
        metrics["elin_refit_rmse_kcal_mol"] = refit_linear_energy(model, dm.train_graphs, cfg.data.batch_size)
    metrics.update(fit_stats)
    metrics["validation"] = evaluate_graphs(model, dm.val_graphs)
    if dm.test_graphs:
        metrics["test"] = evaluate_graphs(model, dm.test_graphs)
        metrics["test_molecules"] = sorted({r.smiles for r in dm.test_records})
    return Stage2Result(
        model=model,
        metrics=metrics,
        provenance=dm.provenance(),
        config=cfg,
        best_checkpoint=best_checkpoint,
        datamodule=dm,
    )
