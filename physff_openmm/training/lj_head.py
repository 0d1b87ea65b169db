"""The lj_net phase: per-atom Lennard-Jones terms for pairs with other force fields' atoms.

Inside a physff molecule every pair has its exact physff energy; between a physff molecule
and anything else (water, a protein, other physff molecules in a box) OpenMM combines
per-atom Lennard-Jones sigma and epsilon by Lorentz-Berthelot and adds Coulomb with the
physff charges (:func:`physff_openmm.forcefield.atom_lennard_jones`). This phase fits the
model's lj_net, which scales each atom's sigma and epsilon of that rule, on the interaction
energies those terms give for NCIAtlas dimers against CCSD(T)/CBS:

    E_int = sum_{i in A, j in B} k_e Q_i Q_j / r_ij + 4 eps_ij ((sigma_ij / r_ij)^12 - (sigma_ij / r_ij)^6),
    sigma_ij = (sigma_i + sigma_j) / 2,  eps_ij = sqrt(eps_i eps_j),

over every frame of each dimer's distance scan, with the rest of the model frozen (a heavy
atom's sigma at least ``LJHeadConfig.sigma_floor`` times its van der Waals diameter, the
model's ``lj_sigma_floor`` at run time). A
monomer that is water is TIP3P (charges, sigma and epsilon of OpenMM's ``amber14/tip3p.xml``,
its hydrogens with the small core the template generator gives them against physff atoms of
negative charge),
as in a solvated System; every other monomer is physff. The loss is a Huber loss of the
error, each frame weighted by 1 / (1 + |E_ref| / energy_scale), full batch, Adam.

The data are the NCIAtlas records of the model's public split (training part; the
validation part is reported), read by :func:`physff_openmm.training.recipe.read_public_sets`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import PhysFFError
from ..forcefield import BARE_HYDROGEN_CORE, lj_head_base
from ..model import PhysFFModel, lj_sigma_floors
from ..parameters import _float64_copy, _model_graph, class_embeddings, parameterize
from ..units import ANGSTROM_TO_NM, COULOMB_KCAL_ANGSTROM, HARTREE_TO_KCAL, KJ_TO_KCAL
from .config import LJHeadConfig
from .dataset import MoleculeRecord

__all__ = [
    "tip3p_water",
    "DimerBatch",
    "dimer_batch",
    "rule_sigma_epsilon",
    "interaction_energies",
    "dimer_errors",
    "train_lj_head",
]

logger = logging.getLogger(__name__)

#: A frame "collapses" when its energy at the shortest distance of a scan is this far (kcal/mol) below
#: the lowest reference energy of the scan (as benchmarks/water_cross_terms.py counts them).
COLLAPSE_MARGIN = 1.0


def tip3p_water() -> dict[str, tuple[float, float, float]]:
    """Charge (e), sigma (Angstrom) and epsilon (kcal/mol) of TIP3P's O and H as physff atoms meet them: OpenMM's
    ``amber14/tip3p.xml``, its hydrogens (no Lennard-Jones there) with the core
    :data:`~physff_openmm.forcefield.BARE_HYDROGEN_CORE` that ``PhysFFTemplateGenerator`` gives them against
    physff atoms of negative charge (:class:`DimerBatch` ``pair_plain`` leaves the others out)."""
    import openmm
    from openmm import app

    top = app.Topology()
    res = top.addResidue("HOH", top.addChain())
    o = top.addAtom("O", app.Element.getBySymbol("O"), res)
    for name in ("H1", "H2"):
        top.addBond(o, top.addAtom(name, app.Element.getBySymbol("H"), res))
    system = app.ForceField("amber14/tip3p.xml").createSystem(top, nonbondedMethod=app.NoCutoff, rigidWater=False)
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    out = {}
    for k, symbol in enumerate(("O", "H")):
        q, s, e = nb.getParticleParameters(k)
        s, e = (BARE_HYDROGEN_CORE if symbol == "H" and e._value == 0.0 else (s._value, e._value))
        out[symbol] = (q._value, s / ANGSTROM_TO_NM, e * KJ_TO_KCAL)
    return out


def _is_water(symbols: Sequence[str]) -> bool:
    return sorted(symbols) == ["H", "H", "O"]


@dataclass
class DimerBatch:
    """NCIAtlas dimers as flat tensors (float64; Angstrom, kcal/mol).

    Attributes
    ----------
    h : (n_atoms, hidden) class embedding of each atom (frozen model)
    base_sigma, base_epsilon : (n_atoms,) the rule's values before lj_net's factors (TIP3P's for water)
    learned : (n_atoms,) bool, True for physff atoms (False for TIP3P water)
    floor_unit : (n_atoms,) sigma floor of a physff heavy atom per unit of the model's ``lj_sigma_floor``
        (its van der Waals diameter, :func:`~physff_openmm.model.lj_sigma_floors`), 0 elsewhere
    pair_a, pair_b, pair_frame : (n_pairs,) atoms of monomer A and B and the frame of each pair
    pair_plain : (n_pairs,) bool, a water hydrogen with a physff atom whose charge is not negative: no
        Lennard-Jones there (the water hydrogens' core acts on physff atoms of negative charge only)
    r : (n_pairs,) distance
    coulomb : (n_frames,) Coulomb energy between the monomers
    reference : (n_frames,) CCSD(T)/CBS interaction energy
    scaling : (n_frames,) distance scaling of the frame
    record : (n_frames,) index of the frame's dimer
    names : each dimer's name; water : (n_dimers,) bool, a monomer is TIP3P water
    """

    h: torch.Tensor
    base_sigma: torch.Tensor
    base_epsilon: torch.Tensor
    learned: torch.Tensor
    floor_unit: torch.Tensor
    pair_a: torch.Tensor
    pair_b: torch.Tensor
    pair_frame: torch.Tensor
    pair_plain: torch.Tensor
    r: torch.Tensor
    coulomb: torch.Tensor
    reference: torch.Tensor
    scaling: np.ndarray
    record: np.ndarray
    names: list[str]
    water: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.reference.numel())


def dimer_batch(records: Sequence[MoleculeRecord], model: PhysFFModel) -> DimerBatch:
    """The dimers of ``records`` (two fragments, ``interaction_energy`` set) with ``model``'s charges,
    class embeddings and base Lennard-Jones values; a dimer the model cannot parameterize is left out."""
    tip = tip3p_water()
    cols: dict[str, list] = {k: [] for k in ("h", "bs", "be", "learned", "floor", "pa", "pb", "pf", "plain", "r", "coul", "ref",
                                              "s", "rec")}
    names, water = [], []
    n_atoms = n_frames = 0
    skipped = 0
    for rec in records:
        mol = rec.to_rdkit()
        try:
            params = parameterize(mol, model=model, cache=False)
        except PhysFFError:
            skipped += 1
            continue
        g, _ = _model_graph(mol, model)
        classes, hc = class_embeddings(g, _float64_copy(model))  # parameterize's own graph and float64 twin
        sigma, eps = lj_head_base(params)
        sigma, eps, q = sigma / ANGSTROM_TO_NM, eps * KJ_TO_KCAL, params.charges.copy()
        symbols = params.symbols
        parts = [np.flatnonzero(np.asarray(rec.fragments) == f) for f in (0, 1)]
        learned = np.ones(len(symbols), dtype=bool)
        plain = np.zeros(len(symbols), dtype=bool)  # water H: core only with physff atoms of negative charge
        tip_part = 1 if _is_water([symbols[i] for i in parts[1]]) else 0 if _is_water([symbols[i] for i in parts[0]]) else None
        if tip_part is not None:
            plain[parts[1 - tip_part]] = q[parts[1 - tip_part]] >= 0.0
            for i in parts[tip_part]:
                q[i], sigma[i], eps[i] = tip[symbols[i]]
                learned[i] = False
                plain[i] = symbols[i] == "H"
        x = np.asarray(rec.positions, dtype=np.float64)
        a, b = parts
        r = np.linalg.norm(x[:, a][:, :, None] - x[:, b][:, None], axis=-1)  # (frames, |A|, |B|)
        ia, ib = np.meshgrid(a, b, indexing="ij")
        n_f = len(x)
        cols["h"].append(hc[torch.from_numpy(classes)].numpy())
        cols["bs"].append(sigma)
        cols["be"].append(eps)
        cols["learned"].append(learned)
        cols["floor"].append(np.where(learned, lj_sigma_floors(symbols, 1.0), 0.0))
        cols["pa"].append(np.tile(ia.ravel(), n_f) + n_atoms)
        cols["pb"].append(np.tile(ib.ravel(), n_f) + n_atoms)
        cols["pf"].append(np.repeat(np.arange(n_f), ia.size) + n_frames)
        cols["plain"].append(np.tile((plain[ia] & plain[ib]).ravel(), n_f))
        cols["r"].append(r.reshape(-1))
        cols["coul"].append(COULOMB_KCAL_ANGSTROM * np.einsum("fab,a,b->f", 1.0 / r, q[a], q[b]))
        cols["ref"].append(np.asarray(rec.interaction_energy, dtype=np.float64) * HARTREE_TO_KCAL)
        cols["s"].append(np.asarray(rec.scaling, dtype=np.float64))
        cols["rec"].append(np.full(n_f, len(names)))
        names.append(rec.name)
        water.append(tip_part is not None)
        n_atoms += len(symbols)
        n_frames += n_f
    if skipped:
        logger.warning("lj_head: %d dimer(s) the model cannot parameterize left out", skipped)
    if not names:
        raise PhysFFError("lj_head: no dimer to fit (no NCIAtlas records with interaction energies)")
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    t = lambda k, dtype=torch.float64: torch.as_tensor(cat[k], dtype=dtype)  # noqa: E731
    return DimerBatch(
        h=t("h"), base_sigma=t("bs"), base_epsilon=t("be"), learned=t("learned", torch.bool), floor_unit=t("floor"),
        pair_a=t("pa", torch.long), pair_b=t("pb", torch.long), pair_frame=t("pf", torch.long),
        pair_plain=t("plain", torch.bool), r=t("r"),
        coulomb=t("coul"), reference=t("ref"), scaling=cat["s"], record=cat["rec"], names=names,
        water=np.asarray(water, dtype=bool),
    )


def rule_sigma_epsilon(model: PhysFFModel, batch: DimerBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Each atom's sigma (Angstrom) and epsilon (kcal/mol): the rule's base times ``model``'s lj_net factors
    (float64 lj_net), a heavy atom's sigma at least the model's floor, TIP3P's own for water."""
    f = model.lj_log_factors(batch.h)
    scaled = torch.maximum(batch.base_sigma * torch.exp(f[:, 0]), model.config.lj_sigma_floor * batch.floor_unit)
    sigma = torch.where(batch.learned, scaled, batch.base_sigma)
    eps = torch.where(batch.learned, batch.base_epsilon * torch.exp(f[:, 1]), batch.base_epsilon)
    return sigma, eps


def interaction_energies(batch: DimerBatch, sigma: torch.Tensor, epsilon: torch.Tensor) -> torch.Tensor:
    """(n_frames,) E_int, kcal/mol, of the per-atom rule with these sigma (Angstrom) and epsilon (kcal/mol)."""
    s = 0.5 * (sigma[batch.pair_a] + sigma[batch.pair_b])
    prod = epsilon[batch.pair_a] * epsilon[batch.pair_b]
    e = torch.where(prod > 0, torch.sqrt(prod.clamp_min(1e-30)), torch.zeros_like(prod))  # hydrogens without lj_net: epsilon 0
    e = torch.where(batch.pair_plain, torch.zeros_like(e), e)
    x6 = (s / batch.r) ** 6
    lj = 4.0 * e * (x6 * x6 - x6)
    return torch.zeros(batch.n_frames, dtype=lj.dtype).index_add_(0, batch.pair_frame, lj) + batch.coulomb


def dimer_errors(batch: DimerBatch, energies: torch.Tensor | np.ndarray) -> dict[str, Any]:
    """RMSE at equilibrium (scaling 1.00) over all dimers and over those with water, and the collapses of the latter."""
    e = np.asarray(energies.detach() if isinstance(energies, torch.Tensor) else energies, dtype=np.float64)
    err = e - batch.reference.numpy()
    eq = np.abs(batch.scaling - 1.0) < 1e-6
    water = batch.water[batch.record]
    rmse = lambda m: float(np.sqrt(np.mean(err[m] ** 2))) if m.any() else math.nan  # noqa: E731
    collapses = []
    for k in np.flatnonzero(batch.water):
        frames = np.flatnonzero(batch.record == k)
        if not eq[frames].any():
            continue
        shortest = frames[np.argmin(batch.scaling[frames])]
        if e[shortest] < batch.reference.numpy()[frames].min() - COLLAPSE_MARGIN:
            collapses.append(batch.names[k])
    return {
        "n_dimers": len(batch.names), "n_water_dimers": int(batch.water.sum()),
        "rmse_equilibrium": rmse(eq), "rmse_equilibrium_water": rmse(eq & water),
        "rmse_all_frames": rmse(np.ones_like(eq)), "water_collapses": collapses,
    }


def train_lj_head(
    model: PhysFFModel,
    train: Sequence[MoleculeRecord],
    val: Sequence[MoleculeRecord],
    config: LJHeadConfig,
) -> dict[str, Any]:
    """Give ``model`` an lj_net of ``config.hidden`` fitted on the ``train`` dimers (rest of the model frozen).

    ``model`` is changed in place (pass a copy to keep the original): it gets the head, its
    config the head's settings, and it is no longer the model of its file (``file_hash``
    None, so its parameters are not taken from the disk cache). Returns the errors
    (kcal/mol) on ``train`` and ``val`` with the base values (``before``: head at zero) and
    after fitting, with the settings.
    """
    cfg = config
    if cfg.hidden <= 0:
        raise PhysFFError("lj_head: hidden must be positive to fit an lj_net")
    t0 = time.perf_counter()
    batches = {"train": dimer_batch(train, model), "val": dimer_batch(val, model) if len(val) else None}
    torch.manual_seed(cfg.seed)
    model.add_lj_net(cfg.hidden, cfg.sigma_range, cfg.epsilon_range, cfg.sigma_floor)  # starts from the base values
    model.lj_net = model.lj_net.double()
    # the model is no longer the one its file holds: no cached parameters or float64 twin of that file
    model.file_hash = None
    model.__dict__.pop("_float64_copy", None)

    def errors() -> dict[str, Any]:
        with torch.no_grad():
            return {k: dimer_errors(b, interaction_energies(b, *rule_sigma_epsilon(model, b)))
                    for k, b in batches.items() if b is not None}

    before = errors()
    b = batches["train"]
    weight = 1.0 / (1.0 + b.reference.abs() / cfg.energy_scale)
    opt = torch.optim.Adam(model.lj_net.parameters(), lr=cfg.lr)
    loss = torch.tensor(math.nan)
    try:
        for step in range(cfg.steps):
            opt.zero_grad()
            e = interaction_energies(b, *rule_sigma_epsilon(model, b))
            loss = (weight * torch.nn.functional.huber_loss(e, b.reference, reduction="none",
                                                            delta=cfg.huber_delta)).mean()
            loss.backward()
            opt.step()
            if step % 100 == 0:
                logger.info("lj_head step %d: loss %.4f", step, float(loss.detach()))
        after = errors()
    finally:  # float32 like the rest of the weights, whatever happened
        model.lj_net = model.lj_net.float()
        for p in model.lj_net.parameters():
            p.requires_grad_(False)
    logger.info("lj_head: %s", {k: {m: v[m] for m in ("rmse_equilibrium", "rmse_equilibrium_water")} for k, v in after.items()})
    return {"before": before, "after": after, "final_loss": float(loss.detach()), "steps": cfg.steps,
            "seconds": time.perf_counter() - t0}
