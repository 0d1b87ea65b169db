"""The graph network: MPNN embeddings, charge_net, feats_net and the linear model E_lin.

Stage 1 of training fits the MPNN with the kinetic-energy heads (``atom_head``,
``bond_head``); stage 2 fits ``charge_net`` and ``feats_net`` (and fine-tunes
the rest) on total energies. A model file stores the resolved config, the
weights and the metadata (level of theory, data provenance, metrics, versions);
:func:`load_model_file` rebuilds the model from that alone.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from . import energy
from .errors import ConfigError, ModelError
from .graph import (
    ATOM_FEATURES,
    BOND_FEATURES,
    ELEMENTS,
    PAIR_COVALENT,
    PAIR_DIFFERENT_MOLECULES,
    PAIR_FEATURES,
    PAIR_REFERENCE_LENGTH,
)

__all__ = ["ModelConfig", "PhysFFModel", "save_model_file", "load_model_file", "MODEL_FORMAT"]

#: Identifies a physff-openmm model file.
MODEL_FORMAT = "physff-openmm-model"
MODEL_FORMAT_VERSION = 2  # 2: pair features with topology, covalent core (DESIGN.md version 2)

_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_ONE) == 1

#: Van der Waals radii (Bondi, J. Phys. Chem. 68, 441 (1964)), Angstrom: the scale of the
#: inner wall of non-covalent pairs within a molecule (``ModelConfig.wall_factor``).
VDW_RADII: dict[str, float] = {"H": 1.20, "C": 1.70, "N": 1.55, "O": 1.52, "F": 1.47, "S": 1.80, "Cl": 1.75, "Br": 1.85, "P": 1.80}


def lj_sigma_floors(symbols: Sequence[str], fraction: float) -> np.ndarray:
    """(n,) Angstrom: the smallest Lennard-Jones sigma of each atom with an lj_net (``ModelConfig.lj_sigma_floor``):
    ``fraction`` times a heavy atom's van der Waals diameter, 0 for hydrogens."""
    return np.array([0.0 if e == "H" else 2.0 * fraction * VDW_RADII[e] for e in symbols], dtype=np.float64)


@dataclass
class ModelConfig:
    """Architecture and physical settings of a model (stored in every model file).

    Attributes
    ----------
    hidden : int
        Width of atom embeddings h_i (350 in the paper).
    n_steps : int
        Message-passing steps (4 in the paper).
    pair_hidden : int
        Width of the hidden layers of feats_net.
    r_on, r_off : float
        Switch of the short-range Gaussian terms, Angstrom.
    c0_ref : float
        Scale of C_0 (C6 term), kcal/mol Angstrom^6.
    c1_ref : float
        Scale of C_1 (C12 term), kcal/mol Angstrom^12.
    amplitude_ref : float
        Scale of the Gaussian amplitudes C_2, C_4, ..., kcal/mol.
    width_ref : float
        Scale of the Gaussian widths C_3, C_5, ..., Angstrom.
    covalent_window : float
        The covalent core's minimum r_e lies within +-``covalent_window`` (relative) of
        the bond's reference length.
    covalent_depth_floor : float
        Smallest depth of the covalent core's C6/C12 well, kcal/mol.
    covalent_depth_ref : float
        Scale of the learned depth above the floor, kcal/mol.
    covalent_bound : float
        Each covalent pair's own energy at 0.75 r_e and at r_off lies at least this far
        above its energy at r_e, kcal/mol, whatever the weights.
    covalent_amplitude_max : float
        Bound on each Gaussian amplitude of a covalent pair, kcal/mol.
    wall_factor : float
        Non-covalent pairs within a molecule get an inner wall by construction: below
        r_w = ``wall_factor`` (R_i + R_j) (van der Waals radii :data:`VDW_RADII`) the pair's own
        energy (Gaussians, C6/C12, Coulomb) rises monotonically as the atoms approach
        (:func:`pair_wall`); 0: no wall (models trained before it).
    width_floor : float
        Gaussian widths C_3, C_5, ... are sqrt(width_floor^2 + w^2) with w the learned width,
        Angstrom; 0: no floor (models trained before it).
    curvature_max : float
        Bound on the curvature 2 |C_2k| / C_2k+1^2 of each Gaussian of a non-covalent pair,
        kcal/mol/Angstrom^2: its width becomes sqrt(width_floor^2 + 2 |C_2k| / curvature_max + w^2),
        so that no such Gaussian is stiffer than this wherever the atoms go (narrow Gaussians
        between distant atoms broke energy conservation in NVE, and a width floor alone turned
        large amplitudes into steep bumps that broke MD); covalent pairs keep their stiffness
        (their bonds); 0: no bound (models trained before it).
    lj_hidden : int
        Width of lj_net, the head that adjusts each atom's Lennard-Jones sigma and epsilon
        for pairs with other force fields' atoms (:func:`physff_openmm.forcefield.atom_lennard_jones`);
        0: no head.
    path_embeddings : bool
        feats_net also sees the embeddings of the inner atoms of a 1-3 or 1-4 pair's shortest
        paths (:func:`physff_openmm.graph.path_atoms`): the middle atom, the central bond.
    resonance_features : bool
        The graph averages formal charges and bond types over the molecule's resonance
        structures (:func:`physff_openmm.graph.resonance_structures`), so that
        resonance-equivalent atoms (a carboxylate's O) are parameterized alike; False for
        models trained before it.
    lj_sigma_range, lj_epsilon_range : float
        lj_net changes ln(sigma) by at most ``lj_sigma_range`` and ln(epsilon) by at most
        ``lj_epsilon_range`` from the base values it scales
        (:func:`physff_openmm.forcefield.lj_head_base`).
    lj_sigma_floor : float
        A heavy atom's sigma after lj_net's factors is at least ``lj_sigma_floor`` times its
        van der Waals diameter (2 R, :data:`VDW_RADII`), so that no factor shrinks an ion's O
        until water's hydrogens reach into it; 0 (no floor) for models trained before it.
    """

    hidden: int = 128
    n_steps: int = 4
    pair_hidden: int = 128
    r_on: float = 5.0
    r_off: float = 6.0
    c0_ref: float = 150.0
    c1_ref: float = 1.0e5
    amplitude_ref: float = 10.0
    width_ref: float = 0.4
    covalent_window: float = 0.15
    covalent_depth_floor: float = 20.0
    covalent_depth_ref: float = 20.0
    covalent_bound: float = 11.0
    covalent_amplitude_max: float = 100.0
    wall_factor: float = 0.0
    width_floor: float = 0.0
    curvature_max: float = 0.0
    path_embeddings: bool = False
    resonance_features: bool = False
    lj_hidden: int = 0
    lj_sigma_range: float = 0.2
    lj_epsilon_range: float = 2.0
    lj_sigma_floor: float = 0.0
    atom_features: int = ATOM_FEATURES
    bond_features: int = BOND_FEATURES
    pair_features: int = PAIR_FEATURES
    elements: tuple[str, ...] = ELEMENTS

    def __post_init__(self):
        self.elements = tuple(self.elements)
        if not (0.0 < self.r_on < self.r_off):
            raise ConfigError(f"switch needs 0 < r_on < r_off, got r_on={self.r_on}, r_off={self.r_off} Angstrom")
        for name in ("hidden", "n_steps", "pair_hidden"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0.0 <= self.covalent_window < 0.25:
            raise ConfigError(f"covalent_window must lie in [0, 0.25), got {self.covalent_window}")
        if self.covalent_depth_floor <= 0 or self.covalent_bound <= 0 or self.covalent_amplitude_max < 0:
            raise ConfigError("covalent_depth_floor and covalent_bound must be positive, covalent_amplitude_max >= 0")
        if self.wall_factor < 0 or self.width_floor < 0 or self.curvature_max < 0:
            raise ConfigError("wall_factor, width_floor and curvature_max must not be negative")
        widest = 2.0 * max(VDW_RADII[e] for e in self.elements)
        if self.wall_factor * widest >= self.r_on:
            raise ConfigError(
                f"wall_factor {self.wall_factor} puts a wall radius at or beyond r_on={self.r_on} Angstrom "
                f"(largest radius sum {widest} Angstrom)"
            )
        if int(self.lj_hidden) < 0 or self.lj_sigma_range < 0 or self.lj_epsilon_range < 0:
            raise ConfigError("lj_hidden, lj_sigma_range and lj_epsilon_range must not be negative")
        if not 0.0 <= self.lj_sigma_floor < 1.0:
            raise ConfigError(f"lj_sigma_floor must lie in [0, 1) (a fraction of the van der Waals diameter), got {self.lj_sigma_floor}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Build a config, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["elements"] = list(self.elements)
        return d


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))


class MessageStep(nn.Module):
    """One edge-conditioned message-passing step with a residual update.

    m_i = sum over edges (j -> i) of message_net([h_i, h_j, e_ij]) (``edge_index`` rows:
    source j, target i; both directions of each bond are listed), then
    h_i <- LayerNorm(h_i + update_net([h_i, m_i])). The sum is PyG's ``scatter``:
    the same aggregation as ``MessagePassing(aggr="add")``, without the propagate
    module that ``MessagePassing`` writes to a temporary file in every new process.
    """

    def __init__(self, hidden: int, edge_dim: int):
        super().__init__()
        self.message_net = _mlp(2 * hidden + edge_dim, hidden, hidden)
        self.update_net = _mlp(2 * hidden, hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        src, dst = edge_index[0], edge_index[1]
        msg = self.message_net(torch.cat([h[dst], h[src], edge_attr], dim=-1))
        m = scatter(msg, dst, dim=0, dim_size=h.shape[0], reduce="sum")
        return self.norm(h + self.update_net(torch.cat([h, m], dim=-1)))


def covalent_core(
    r_ref: Tensor, raw_length: Tensor, raw_depth: Tensor, gaussians: Tensor, config: "ModelConfig"
) -> tuple[Tensor, Tensor]:
    """C_0, C_1 (P,) of covalent pairs: a C6/C12 well that binds the bond by construction.

    The well -eps [2 (r_e/r)^6 - (r_e/r)^12] has its minimum at
    r_e = r_ref (1 + w tanh(raw_length)) (w = ``covalent_window``) and depth
    eps = eps_min + depth_ref softplus(raw_depth), where eps_min is the smallest depth
    (at least ``covalent_depth_floor``) for which the pair's own energy, Gaussians
    ``gaussians`` (P, 12) = C_2..C_13 included, is at 0.75 r_e and at r_off at least
    ``covalent_bound`` above its value at r_e. Then C_0 = 2 eps r_e^6, C_1 = eps r_e^12.
    """
    c = config
    r_e = r_ref * (1.0 + c.covalent_window * torch.tanh(raw_length))
    r_in = 0.75 * r_e
    g_e = energy.switch(r_e, c.r_on, c.r_off) * energy.short_range(r_e, gaussians)
    g_in = energy.switch(r_in, c.r_on, c.r_off) * energy.short_range(r_in, gaussians)
    x_off = (r_e / c.r_off) ** 6
    lj_in = (1.0 / 0.75) ** 12 - 2.0 * (1.0 / 0.75) ** 6  # LJ at 0.75 r_e, in units of eps
    # E(0.75 r_e) - E(r_e) = eps (lj_in + 1) + g_in - g_e;  E(r_off) - E(r_e) = eps (1 + x^2 - 2x) - g_e
    need_in = (c.covalent_bound - (g_in - g_e)) / (lj_in + 1.0)
    need_off = (c.covalent_bound + g_e) / (1.0 + x_off * x_off - 2.0 * x_off)
    floor = torch.full_like(r_e, c.covalent_depth_floor)
    eps = torch.maximum(floor, torch.maximum(need_in, need_off)) + c.covalent_depth_ref * nn.functional.softplus(raw_depth)
    r6 = r_e**6
    return 2.0 * eps * r6, eps * r6 * r6


def gaussian_inward_slope(r_w: Tensor, gaussians: Tensor) -> Tensor:
    """(P,) an upper bound of dE_SR/dr where positive (energy falling as the atoms approach)
    on 0 < r <= r_w (P,), for Gaussians ``gaussians`` (P, 12) = C_2..C_13 (unswitched).

    Exact per Gaussian: A exp(-(r - mu)^2 / s^2) slopes by 2 |A| u / s^2 exp(-u^2 / s^2)
    with u = mu - r for A > 0 (left of its centre), u = r - mu for A < 0 (right of it); the
    largest value on the interval is at u = s / sqrt(2) clamped into the interval's range of u.
    """
    amp, width = gaussians[:, 0::2], gaussians[:, 1::2]
    s2 = width * width + energy.WIDTH_EPSILON
    mu = torch.as_tensor(energy.GAUSSIAN_CENTERS, dtype=gaussians.dtype, device=gaussians.device)
    r_w = r_w.unsqueeze(-1)
    positive = amp > 0
    zero = torch.zeros_like(amp)
    lo = torch.where(positive, torch.clamp(mu - r_w, min=0.0), zero)
    hi = torch.where(positive, mu.expand_as(amp), torch.clamp(r_w - mu, min=0.0))
    u = torch.minimum(torch.maximum(torch.sqrt(0.5 * s2), lo), hi)
    return (2.0 * amp.abs() * u / s2 * torch.exp(-u * u / s2)).sum(-1)


def pair_wall(r_w: Tensor, c0: Tensor, qq: Tensor, gaussians: Tensor) -> Tensor:
    """(P,) the C_1 that non-covalent pairs add to their learned one so that each pair's own
    energy falls monotonically with r on 0 < r <= r_w (P,) (r_w below r_on, where S = 1).

    The inward-pulling slopes there are bounded by G + 6 C_0 / r^7 + k_e |Q_i Q_j| / r^2
    (G: :func:`gaussian_inward_slope`; the Coulomb part for opposite charges only); with
    12 C_1 / r_w^13 at least their value at r_w, the wall's slope 12 C_1 / r^13 grows faster
    than each of them inward and outweighs their sum everywhere below r_w.
    """
    rw2 = r_w * r_w
    inward = (
        gaussian_inward_slope(r_w, gaussians)
        + 6.0 * c0.abs() / (rw2 * rw2 * rw2 * r_w)
        + energy.COULOMB * torch.clamp(-qq, min=0.0) / rw2
    )
    return inward * r_w ** 13 / 12.0


class PhysFFModel(nn.Module):
    """MPNN -> h_i; charge_net(h_i) -> Q_i; feats_net(h_i, h_j, e_ij) -> C_0..C_13; E_lin.

    Parameters
    ----------
    config : ModelConfig
        Architecture and physical settings.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.atom_embed = nn.Linear(c.atom_features, c.hidden)
        self.steps = nn.ModuleList([MessageStep(c.hidden, c.bond_features) for _ in range(c.n_steps)])
        # stage 1 heads: kinetic-energy partition KD_i (atoms) and KD_ij (bonds), Hartree
        self.atom_head = _mlp(c.hidden, c.hidden, 1)
        self.bond_head = _mlp(2 * c.hidden + c.bond_features, c.hidden, 1)
        # stage 2 heads
        self.charge_net = _mlp(c.hidden, c.hidden, 1)
        n_path = c.hidden if c.path_embeddings else 0
        self.feats_net = _mlp(2 * c.hidden + c.pair_features + n_path, c.pair_hidden, energy.N_PARAMETERS)
        # head of the per-atom Lennard-Jones terms with other force fields' atoms (optional)
        self.lj_net = None
        if c.lj_hidden > 0:
            self.add_lj_net(c.lj_hidden, c.lj_sigma_range, c.lj_epsilon_range, c.lj_sigma_floor)
        with torch.no_grad():  # start from small parameters; feats_net's last layer near zero
            self.feats_net[-1].weight.mul_(0.01)
            self.feats_net[-1].bias.zero_()
            self.charge_net[-1].weight.mul_(0.1)
            self.charge_net[-1].bias.zero_()
        n_el = len(c.elements)
        # E_lin = sum_atoms w[element] + b * n_fragments, kcal/mol
        self.register_buffer("elin_weights", torch.zeros(n_el, dtype=torch.float64))
        self.register_buffer("elin_bias", torch.zeros((), dtype=torch.float64))
        # per-element offsets of the stage-1 atom head, Hartree
        self.register_buffer("kd_offsets", torch.zeros(n_el, dtype=torch.float64))
        self.metadata: dict[str, Any] = {}
        self.file_hash: str | None = None
        self.name: str | None = None

    # --- embeddings -----------------------------------------------------------------
    def embed(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """Atom embeddings h_i (n, hidden) from atom features and the covalent graph."""
        h = self.atom_embed(x)
        for step in self.steps:
            h = step(h, edge_index, edge_attr)
        return h

    @staticmethod
    def _pair_input(h_i: Tensor, h_j: Tensor, e_ij: Tensor, h_path: Tensor | None = None) -> Tensor:
        # symmetric in i and j by construction (h_path is: a sum over the pair's shortest paths)
        parts = [h_i + h_j, h_i * h_j, e_ij.to(h_i.dtype)]
        if h_path is not None:
            parts.append(h_path)
        return torch.cat(parts, dim=-1)

    def path_embeddings(self, h: Tensor, path_pair: Tensor, path_atom: Tensor, path_weight: Tensor, n_pairs: int) -> Tensor | None:
        """(n_pairs, hidden) the weighted sum of each pair's path atoms' embeddings
        (:func:`physff_openmm.graph.path_atoms`); None for a model built without them."""
        if not self.config.path_embeddings:
            return None
        out = torch.zeros(n_pairs, h.shape[1], dtype=h.dtype, device=h.device)
        return out.index_add_(0, path_pair, h[path_atom] * path_weight.to(h.dtype).unsqueeze(1))

    def add_path_embeddings(self) -> None:
        """Widen feats_net's input for path embeddings (config updated); the new input weights
        start at zero, so that the model's parameters stay as they are until trained."""
        if self.config.path_embeddings:
            return
        old = self.feats_net[0]
        new = nn.Linear(old.in_features + self.config.hidden, old.out_features).to(old.weight.dtype)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, : old.in_features] = old.weight
            new.bias.copy_(old.bias)
        self.feats_net[0] = new
        self.config.path_embeddings = True

    def set_walls(self, wall_factor: float | None, width_floor: float | None,
                  curvature_max: float | None = None) -> None:
        """Set ``wall_factor``, ``width_floor`` and ``curvature_max`` of the config (None: keep); validated as
        the config is."""
        values = self.config.to_dict()
        for key, value in (("wall_factor", wall_factor), ("width_floor", width_floor), ("curvature_max", curvature_max)):
            if value is not None:
                values[key] = float(value)
        self.config = ModelConfig.from_dict(values)

    # --- stage 1 --------------------------------------------------------------------
    def kinetic_terms(self, h: Tensor, species: Tensor, bond_index: Tensor, bond_attr: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted KD_i (n,) and KD_ij per bond (m,), Hartree."""
        kd_atom = self.atom_head(h).squeeze(-1).to(torch.float64) + self.kd_offsets[species]
        hi, hj = h[bond_index[:, 0]], h[bond_index[:, 1]]
        kd_bond = self.bond_head(self._pair_input(hi, hj, bond_attr)).squeeze(-1).to(torch.float64)
        return kd_atom, kd_bond

    # --- stage 2 --------------------------------------------------------------------
    def charges(self, h: Tensor, fragment_index: Tensor, fragment_charge: Tensor, classes: Tensor | None = None) -> Tensor:
        """Partial charges (n,) in e; each fragment's charges sum exactly to its formal charge.

        With ``classes`` (n,), ``h`` holds one embedding per class and atoms of a class
        get bit-identical raw charges.
        """
        q = self.charge_net(h).squeeze(-1).to(torch.float64)
        if classes is not None:
            q = q[classes]
        n_frag = fragment_charge.numel()
        total = torch.zeros(n_frag, dtype=q.dtype, device=q.device).index_add_(0, fragment_index, q)
        count = torch.zeros(n_frag, dtype=q.dtype, device=q.device).index_add_(0, fragment_index, torch.ones_like(q))
        shift = (fragment_charge.to(q.dtype) - total) / count
        return q + shift[fragment_index]

    def add_lj_net(self, hidden: int, sigma_range: float, epsilon_range: float, sigma_floor: float = 0.0) -> None:
        """Give the model a new lj_net of width ``hidden`` (config updated), its output layer at zero,
        so that it leaves the rule's base values as they are until trained (``sigma_floor`` aside)."""
        self.config.lj_hidden = int(hidden)
        self.config.lj_sigma_range = float(sigma_range)
        self.config.lj_epsilon_range = float(epsilon_range)
        self.config.lj_sigma_floor = float(sigma_floor)
        self.lj_net = nn.Sequential(nn.Linear(self.config.hidden, int(hidden)), nn.SiLU(), nn.Linear(int(hidden), 2))
        with torch.no_grad():
            self.lj_net[-1].weight.zero_()
            self.lj_net[-1].bias.zero_()

    def lj_log_factors(self, h: Tensor) -> Tensor | None:
        """(n, 2) float64: ln of the factors on each atom's Lennard-Jones sigma and epsilon of the
        per-atom rule (:func:`physff_openmm.forcefield.atom_lennard_jones`), bounded by the config's
        ranges; None for a model without lj_net."""
        if self.lj_net is None:
            return None
        c = self.config
        w = next(self.lj_net.parameters())
        t = torch.tanh(self.lj_net(h.to(w.dtype)).to(torch.float64))
        return t * torch.tensor([c.lj_sigma_range, c.lj_epsilon_range], dtype=torch.float64, device=t.device)

    def wall_radii(self, species: Tensor) -> Tensor:
        """(P,) float64 wall radius r_w = ``wall_factor`` (R_i + R_j) of pairs of element indices ``species`` (P, 2)."""
        radii = torch.tensor([VDW_RADII[e] for e in self.config.elements], dtype=torch.float64, device=species.device)
        return self.config.wall_factor * radii[species].sum(-1)

    def pair_parameters(
        self,
        h_i: Tensor,
        h_j: Tensor,
        e_ij: Tensor,
        h_path: Tensor | None = None,
        species: Tensor | None = None,
        qq: Tensor | None = None,
    ) -> Tensor:
        """C_0..C_13 (P, 14), float64, in kcal/mol and Angstrom; symmetric in i and j.

        ``e_ij`` (P, PAIR_FEATURES): pair features (:func:`physff_openmm.graph.pair_features`);
        ``h_path`` (P, hidden): path embeddings (:meth:`path_embeddings`), for a model built with them;
        ``species`` (P, 2) element indices and ``qq`` (P,) products of charges Q_i Q_j, for a
        model with walls (``wall_factor`` > 0) and pairs within a molecule.
        C_0, C_1 >= 0 (C6, C12 coefficients), C_{2k} Gaussian amplitudes, C_{2k+1} widths >= 0.
        Covalent pairs (distance class 1) get the covalent core (:func:`covalent_core`)
        and Gaussian amplitudes bounded by ``covalent_amplitude_max``; non-covalent pairs
        within a molecule get the inner wall of :func:`pair_wall`.
        """
        c = self.config
        if self.config.path_embeddings and h_path is None:
            raise ValueError("this model's feats_net needs the pairs' path embeddings (h_path)")
        if not self.config.path_embeddings:
            h_path = None
        raw = self.feats_net(self._pair_input(h_i, h_j, e_ij, h_path)).to(torch.float64)
        cov = e_ij[:, PAIR_COVALENT] > 0.5
        amp = c.amplitude_ref * raw[:, 2::2]
        if c.covalent_amplitude_max > 0:
            bounded = c.covalent_amplitude_max * torch.tanh(amp / c.covalent_amplitude_max)
        else:
            bounded = torch.zeros_like(amp)
        amp = torch.where(cov.unsqueeze(-1), bounded, amp)
        width = c.width_ref * nn.functional.softplus(raw[:, 3::2] + _SOFTPLUS_ONE)
        if c.width_floor > 0 or c.curvature_max > 0:
            least = torch.full_like(width, c.width_floor * c.width_floor)
            if c.curvature_max > 0:
                least = least + torch.where(cov.unsqueeze(-1), 0.0, 2.0 * amp.abs() / c.curvature_max)
            width = torch.sqrt(least + width * width)
        out = torch.empty(raw.shape[0], energy.N_PARAMETERS, dtype=torch.float64, device=raw.device)
        out[:, 2::2] = amp
        out[:, 3::2] = width
        c0 = c.c0_ref * nn.functional.softplus(raw[:, 0] + _SOFTPLUS_ONE)
        c1 = c.c1_ref * nn.functional.softplus(raw[:, 1] + _SOFTPLUS_ONE)
        if bool(cov.any()):
            r_ref = e_ij[cov, PAIR_REFERENCE_LENGTH].to(torch.float64)
            cov_c0, cov_c1 = covalent_core(r_ref, raw[cov, 0], raw[cov, 1], out[cov, 2:], c)
            idx = (torch.nonzero(cov).squeeze(1),)
            c0, c1 = c0.index_put(idx, cov_c0), c1.index_put(idx, cov_c1)
        if c.wall_factor > 0:
            inside = (~cov) & (e_ij[:, PAIR_DIFFERENT_MOLECULES] < 0.5)
            if bool(inside.any()):
                if species is None or qq is None:
                    raise ValueError("this model's pairs within a molecule need species and qq for their walls")
                r_w = self.wall_radii(species[inside])
                wall = pair_wall(r_w, c0[inside], qq[inside].to(torch.float64), out[inside, 2:])
                c1 = c1.index_put((torch.nonzero(inside).squeeze(1),), c1[inside] + wall)
        out[:, 0] = c0
        out[:, 1] = c1
        return out

    def linear_energy(self, species: Tensor, n_fragments: int | Tensor) -> Tensor:
        """E_lin = sum_atoms w[element] + b * n_fragments, kcal/mol."""
        return self.elin_weights[species].sum() + self.elin_bias * n_fragments

    def pair_terms(self, data) -> tuple[Tensor, Tensor]:
        """Charges (n,) e and pair parameters (P, 14) of ``data.pair_index``: the energy's
        topology-dependent part, which does not depend on positions.

        Compute them once where several quantities of one batch need them
        (energies, interaction energies, covalent wells) and pass them as ``terms``.
        """
        h = self.embed(data.x, data.edge_index, data.edge_attr)
        q = self.charges(h, data.fragment_index, data.fragment_charge)
        i, j = data.pair_index[:, 0], data.pair_index[:, 1]
        h_path = None
        if self.config.path_embeddings:  # only a path model reads the graph's path atoms
            h_path = self.path_embeddings(h, data.path_pair, data.path_atom, data.path_weight, i.numel())
        species = torch.stack([data.species[i], data.species[j]], dim=1)
        return q, self.pair_parameters(h[i], h[j], data.pair_attr, h_path, species, q[i] * q[j])

    def energy(self, data, positions: Tensor, terms: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Total energies (kcal/mol) of a batch of graphs built with ``with_pairs=True``.

        Parameters
        ----------
        data : MolGraph or a torch_geometric Batch of them
        positions : Tensor
            (n_atoms, 3) Angstrom, float64 recommended.
        terms : tuple of Tensor, optional
            ``pair_terms(data)``, when already computed.

        Returns
        -------
        Tensor
            (n_graphs,) energies E_lin + pair terms, kcal/mol.
        """
        q, params = self.pair_terms(data) if terms is None else terms
        i, j = data.pair_index[:, 0], data.pair_index[:, 1]
        covalent = data.pair_attr[:, PAIR_COVALENT] > 0.5
        pos = positions.to(torch.float64)
        r = torch.linalg.vector_norm(pos[i] - pos[j], dim=-1)
        c = self.config
        e_pair = energy.pair_energy(r, q[i], q[j], params, covalent, c.r_on, c.r_off)
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(data.num_nodes, dtype=torch.long, device=pos.device)
        n_graphs = int(batch.max()) + 1 if batch.numel() else 1
        out = torch.zeros(n_graphs, dtype=torch.float64, device=pos.device)
        out.index_add_(0, batch[i], e_pair)
        out.index_add_(0, batch, self.elin_weights[data.species])
        frag_batch = torch.zeros(data.fragment_charge.numel(), dtype=torch.long, device=pos.device)
        frag_batch[data.fragment_index] = batch
        out.index_add_(0, frag_batch, self.elin_bias.expand(frag_batch.shape[0]))
        return out


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model_file(model: PhysFFModel, path: str | Path, metadata: dict[str, Any] | None = None) -> str:
    """Write a model file (config, weights, metadata); returns its SHA-256.

    The file is written to a temporary name and renamed, so it is either whole or absent.
    """
    import torch_geometric

    path = Path(path)
    meta = dict(model.metadata)
    meta.update(metadata or {})
    meta.setdefault("versions", {})
    meta["versions"].update({"torch": str(torch.__version__), "torch_geometric": str(torch_geometric.__version__)})
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": meta,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    tmp.replace(path)
    return file_sha256(path)


def load_model_file(path: str | Path, *, sha256: str | None = None) -> PhysFFModel:
    """Load a model file written by :func:`save_model_file` (evaluation mode, float32 weights).

    ``sha256``: the file's hash when the caller has just computed it (the registry checks
    shipped files against their recorded hash before reading them); otherwise it is computed.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ModelError(f"model file {str(path)!r} is empty (an interrupted download or copy?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for corrupt files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "weights only load failed" in reason.lower():  # torch's advice to unpickle: not for a model file
            reason = "torch cannot read it as a file of weights"
        raise ModelError(
            f"model file {str(path)!r} is corrupt or not a physff-openmm model file ({reason[:200]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelError(f"{str(path)!r} is not a physff-openmm model file")
    if payload.get("format_version", 0) < MODEL_FORMAT_VERSION:
        raise ModelError(
            f"model file {str(path)!r} has format version {payload.get('format_version', 0)} (version 1 models, "
            "without pair topology and covalent core, are retired); retrain it with this physff-openmm"
        )
    if payload.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise ModelError(
            f"model file {str(path)!r} has format version {payload['format_version']}; "
            f"this physff-openmm reads up to {MODEL_FORMAT_VERSION}: upgrade the package"
        )
    model = PhysFFModel(ModelConfig.from_dict(payload["config"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"model file {str(path)!r} does not match its config: {exc}") from None
    model.metadata = dict(payload.get("metadata", {}))
    model.file_hash = sha256 or file_sha256(path)
    model.eval()
    return model
