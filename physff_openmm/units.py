"""Unit constants, all derived from :mod:`openmm.unit`.

The model works in Angstrom, kcal/mol and elementary charges, as the paper does;
OpenMM sees nm and kJ/mol. Convert at the boundary, before any arithmetic.
"""

from __future__ import annotations

import math

import openmm.unit as _u
from openmm.unit import constants as _c

__all__ = [
    "ANGSTROM_TO_NM",
    "NM_TO_ANGSTROM",
    "KCAL_TO_KJ",
    "KJ_TO_KCAL",
    "HARTREE_TO_KCAL",
    "BOHR_TO_ANGSTROM",
    "COULOMB_KCAL_ANGSTROM",
    "COULOMB_KJ_NM",
    "in_units",
]

#: Angstrom -> nm
ANGSTROM_TO_NM: float = (1.0 * _u.angstrom).value_in_unit(_u.nanometer)
NM_TO_ANGSTROM: float = 1.0 / ANGSTROM_TO_NM
#: kcal/mol -> kJ/mol
KCAL_TO_KJ: float = (1.0 * _u.kilocalorie).value_in_unit(_u.kilojoule)
KJ_TO_KCAL: float = 1.0 / KCAL_TO_KJ
#: Hartree (per particle) -> kcal/mol
HARTREE_TO_KCAL: float = (1.0 * _u.hartree * _c.AVOGADRO_CONSTANT_NA).value_in_unit(
    _u.kilocalorie_per_mole
)
#: Bohr -> Angstrom
BOHR_TO_ANGSTROM: float = (1.0 * _u.bohr).value_in_unit(_u.angstrom)


def _coulomb_constant() -> float:
    """N_A e^2 / (4 pi eps0) in kJ nm / (mol e^2), with eps0 = 1 / (mu0 c^2), mu0 = 4 pi 1e-7."""
    e = (1.0 * _u.elementary_charge).value_in_unit(_u.coulomb)
    n_a = _c.AVOGADRO_CONSTANT_NA.value_in_unit(_u.mole**-1)
    c = _c.SPEED_OF_LIGHT_C.value_in_unit(_u.meter / _u.second)
    mu0 = 4.0 * math.pi * 1e-7  # N / A^2
    joule_meter_per_mol = n_a * e * e * mu0 * c * c / (4.0 * math.pi)
    return (joule_meter_per_mol * _u.joule * _u.meter).value_in_unit(_u.kilojoule * _u.nanometer)


#: Coulomb constant k_e in kJ nm / (mol e^2) (about 138.935)
COULOMB_KJ_NM: float = _coulomb_constant()
#: Coulomb constant k_e in kcal Angstrom / (mol e^2) (about 332.0637)
COULOMB_KCAL_ANGSTROM: float = COULOMB_KJ_NM * KJ_TO_KCAL * NM_TO_ANGSTROM


def in_units(value, unit: _u.Unit, name: str):
    """``value`` as a number in ``unit``: an ``openmm.unit`` Quantity is converted, a number is taken as is.

    The Python API takes plain numbers in the units its argument names say
    (``temperature_k``, ``timestep_fs``, ...) and OpenMM Quantities alike.

    Raises
    ------
    ConfigError
        A Quantity whose unit is not compatible with ``unit`` (e.g. a time for a temperature).
    """
    if isinstance(value, _u.Quantity):
        if not value.unit.is_compatible(unit):
            from .errors import ConfigError

            raise ConfigError(f"{name}: {value} is not a quantity in {unit.get_name()} or a compatible unit")
        return value.value_in_unit(unit)
    return value
