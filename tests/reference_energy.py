"""An independent evaluation of the physff energy: plain NumPy, one pair at a time.

It shares no code with the package: the Coulomb constant comes from
scipy.constants (CODATA), the switch and Gaussians are written out here, and
pairs are looped over explicitly. Tests compare OpenMM energies and forces of
both backends against it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import constants as sc

#: k_e in kcal Angstrom / (mol e^2), from CODATA via scipy
KE = sc.e**2 / (4 * math.pi * sc.epsilon_0) * sc.N_A / 4184.0 * 1e10
MU = [1.2 + 0.6 * k for k in range(6)]


def switch(r: float, r_on: float, r_off: float) -> float:
    if r <= r_on:
        return 1.0
    if r >= r_off:
        return 0.0
    x = (r - r_on) / (r_off - r_on)
    return 1.0 - 10.0 * x**3 + 15.0 * x**4 - 6.0 * x**5


def gaussians(r: float, c: np.ndarray) -> float:
    return sum(c[2 * k] * math.exp(-((r - MU[k - 1]) ** 2) / (c[2 * k + 1] ** 2 + 1e-5)) for k in range(1, 7))


def reference_energy(params, positions_angstrom: np.ndarray) -> dict[str, float]:
    """Energy terms in kcal/mol of a ParameterSet at positions (n, 3) in Angstrom."""
    c = params.pair_parameters()
    q = params.charges
    r_on, r_off = params.switch
    bonded = {tuple(p) for p in params.covalent_pairs.tolist()}
    n = len(q)
    coul = lj = sr = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            r = float(np.linalg.norm(positions_angstrom[i] - positions_angstrom[j]))
            if r < r_off:
                sr += switch(r, r_on, r_off) * gaussians(r, c[i, j])
            lj += -abs(c[i, j, 0]) / r**6 + abs(c[i, j, 1]) / r**12  # every pair, bonds too (version 2)
            if (i, j) not in bonded:
                coul += KE * q[i] * q[j] / r
    total = params.energy_offset + coul + lj + sr
    return {"total": total, "coulomb": coul, "c6_c12": lj, "short_range": sr}
