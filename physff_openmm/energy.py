"""The pair potential, written once (torch, TorchScript-compatible).

Positions in Angstrom, energies in kcal/mol, charges in e, as in the paper:

    E = E_lin + sum_{i<j, r_ij < r_off} S(r_ij) E_SR(r_ij; C_ij)
              + sum_{i<j}                      E_LJ(r_ij; C_ij)
              + sum_{i<j, (i,j) not a covalent bond} k_e Q_i Q_j / r_ij

    E_SR(r) = sum_{k=1..6} C_{2k} exp(-(r - mu_k)^2 / (C_{2k+1}^2 + 1e-5)),
              mu_k = 1.2 + 0.6 (k - 1)
    E_LJ(r) = -|C_0| / r^6 + |C_1| / r^12
    S(r)    = 1 for r <= r_on, 0 for r >= r_off,
              1 - 10x^3 + 15x^4 - 6x^5 with x = (r - r_on)/(r_off - r_on) between

Training, the TorchForce module and the tests use these functions; the native
OpenMM backend writes the same expressions in Lepton (see :mod:`physff_openmm.system`),
and a test keeps them equal. The C6/C12 term applies to covalent pairs too (DESIGN.md
version 2): the model parameterizes their C_0, C_1 so that every bond is bound by its
own terms (:func:`physff_openmm.model.covalent_core`); Coulomb stays off for them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .units import COULOMB_KCAL_ANGSTROM

__all__ = [
    "N_PARAMETERS",
    "N_GAUSSIANS",
    "GAUSSIAN_CENTERS",
    "WIDTH_EPSILON",
    "COULOMB",
    "switch",
    "short_range",
    "pair_energy",
    "pair_energy_terms",
]

#: Number of pair parameters C_0..C_13.
N_PARAMETERS: int = 14
#: Number of Gaussian short-range terms.
N_GAUSSIANS: int = 6
#: Gaussian centres mu_k in Angstrom.
GAUSSIAN_CENTERS: tuple[float, ...] = tuple(1.2 + 0.6 * k for k in range(N_GAUSSIANS))
#: Added to the squared width C_{2k+1}^2, Angstrom^2.
WIDTH_EPSILON: float = 1e-5
#: Coulomb constant k_e, kcal Angstrom / (mol e^2), derived from openmm.unit.
COULOMB: float = COULOMB_KCAL_ANGSTROM


def switch(r: Tensor, r_on: float, r_off: float) -> Tensor:
    """Smooth switch S(r): 1 below ``r_on``, 0 above ``r_off``, quintic between.

    Parameters
    ----------
    r : Tensor
        Distances in Angstrom.
    r_on, r_off : float
        Switch start and end in Angstrom (``r_on < r_off``).
    """
    x = torch.clamp((r - r_on) / (r_off - r_on), 0.0, 1.0)
    x3 = x * x * x
    return 1.0 - x3 * (10.0 - 15.0 * x + 6.0 * x * x)


def short_range(r: Tensor, params: Tensor) -> Tensor:
    """Unswitched Gaussian short-range energy E_SR(r), kcal/mol.

    Parameters
    ----------
    r : Tensor
        (P,) distances in Angstrom.
    params : Tensor
        (P, 14) C_0..C_13, or (P, 12) C_2..C_13.
    """
    # literals, not the module constants, so that TorchScript can compile this
    # function; a check at import keeps them equal to GAUSSIAN_CENTERS and WIDTH_EPSILON
    if params.shape[-1] == 14:
        params = params[..., 2:]
    amplitudes = params[..., 0::2]  # C_2, C_4, ..., C_12 (kcal/mol)
    widths = params[..., 1::2]  # C_3, C_5, ..., C_13 (Angstrom)
    centers = 1.2 + 0.6 * torch.arange(6, dtype=r.dtype, device=r.device)
    d = r.unsqueeze(-1) - centers
    return (amplitudes * torch.exp(-(d * d) / (widths * widths + 1e-5))).sum(-1)


def _coulomb_c6_c12(r: Tensor, q_i: Tensor, q_j: Tensor, c0: Tensor, c1: Tensor) -> tuple[Tensor, Tensor]:
    inv_r = 1.0 / r
    inv_r6 = inv_r * inv_r * inv_r
    inv_r6 = inv_r6 * inv_r6
    return COULOMB * q_i * q_j * inv_r, torch.abs(c1) * inv_r6 * inv_r6 - torch.abs(c0) * inv_r6


def pair_energy_terms(
    r: Tensor,
    q_i: Tensor,
    q_j: Tensor,
    params: Tensor,
    covalent: Tensor,
    r_on: float,
    r_off: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair energy split into Coulomb, C6/C12 and switched short-range terms (kcal/mol).

    Parameters
    ----------
    r : Tensor
        (P,) distances in Angstrom.
    q_i, q_j : Tensor
        (P,) charges of the two atoms, e.
    params : Tensor
        (P, 14) C_0..C_13.
    covalent : Tensor
        (P,) bool, True for covalent pairs (no Coulomb term).
    r_on, r_off : float
        Switch of the short-range terms, Angstrom.
    """
    coulomb, lj = _coulomb_c6_c12(r, q_i, q_j, params[:, 0], params[:, 1])
    coulomb = (~covalent).to(r.dtype) * coulomb
    sr = switch(r, r_on, r_off) * short_range(r, params)
    return coulomb, lj, sr


def pair_energy(
    r: Tensor,
    q_i: Tensor,
    q_j: Tensor,
    params: Tensor,
    covalent: Tensor,
    r_on: float,
    r_off: float,
) -> Tensor:
    """Total per-pair energy S(r) E_SR + E_LJ + [not covalent] Coulomb, kcal/mol. Shapes as in :func:`pair_energy_terms`."""
    coulomb, lj, sr = pair_energy_terms(r, q_i, q_j, params, covalent, r_on, r_off)
    return coulomb + lj + sr


def _check_literals() -> None:
    r = torch.tensor([0.0], dtype=torch.float64)
    for k, mu in enumerate(GAUSSIAN_CENTERS):
        p = torch.zeros(1, 12, dtype=torch.float64)
        p[0, 2 * k] = 1.0  # unit amplitude, zero width: exp(-mu^2 / WIDTH_EPSILON)
        expected = torch.exp(torch.tensor(-(mu * mu) / WIDTH_EPSILON, dtype=torch.float64))
        if not torch.allclose(short_range(r + mu, p), torch.ones(1, dtype=torch.float64)) or not torch.allclose(
            short_range(r, p), expected
        ):
            raise RuntimeError("short_range literals disagree with GAUSSIAN_CENTERS / WIDTH_EPSILON")


_check_literals()
