"""From a ParameterSet to an OpenMM System, with two backends that give the same energy.

Both backends share one NonbondedForce for Coulomb + C6/C12: the charges give
Coulomb between fragments, and each pair within a fragment is an exception with
its own exact Coulomb (none for covalent pairs) and C6/C12 terms (sigma^6 =
C_1/C_0, epsilon = C_0^2 / (4 C_1)); pairs between fragments are exceptions too
for molecules and small complexes, or, for systems too large to list, take
C_0, C_1 from class tables in a CustomNonbondedForce.

``backend="torch"``
    A TorchForce (openmm-torch) for the switched Gaussian short-range terms.
``backend="native"``
    OpenMM's own forces, no torch at run time: a CustomBondForce with each listed
    pair's Gaussians.

    Complexes with many pairs between fragments (more than
    :data:`NATIVE_NEIGHBOR_LIST_MIN_PAIRS`, e.g. clusters of a dozen molecules):
    the Gaussians of pairs within a fragment stay listed, and those of pairs
    between fragments go to a CustomManyParticleForce over two particles with a
    cutoff at r_off and the class tables (an inter-fragment pair's parameters are
    exactly the class-table entry; beyond r_off its switched
    energy is exactly zero). OpenMM's CPU platform evaluates a CustomBondForce on
    one thread, ~100 ns per pair for the six exponentials, over every listed pair
    at every step; the neighbour list only visits pairs within r_off, on all
    threads. A CustomNonbondedForce cannot take the cutoff (all nonbonded forces
    of a System must agree on whether to apply one, and Coulomb has none), a
    CustomManyParticleForce can (on the CPU platform it computes in single
    precision, like NonbondedForce: 12-molecule cluster, short-range energy
    within 2e-7 relative of the listed double-precision sum, Reference platform
    within 1e-14). Measured per MD step (CPU platform, 2 threads,
    benchmarks/bench_md_step.py): 12 molecules, 243 atoms, 4.5 -> 3.0 ms; 48
    molecules, 972 atoms, 58 -> 14 ms; below ~6000 inter-fragment pairs listing
    is faster (dimer of 40 atoms: 0.58 listed, 0.81 ms with the neighbour list).

Units at the boundary are OpenMM's: nm, kJ/mol. Force groups: Coulomb + C6/C12
in :data:`LONG_RANGE_GROUP`, short-range Gaussians in :data:`SHORT_RANGE_GROUP`.
E_lin is a constant, not a force: see ``ParameterSet.energy_offset``.
"""

from __future__ import annotations

import numpy as np
import openmm
from openmm.app import element as _element

from .energy import GAUSSIAN_CENTERS, N_GAUSSIANS, WIDTH_EPSILON
from .errors import BackendError
from .parameters import ParameterSet
from .units import ANGSTROM_TO_NM, KCAL_TO_KJ

__all__ = [
    "BACKENDS",
    "LONG_RANGE_GROUP",
    "SHORT_RANGE_GROUP",
    "NATIVE_LISTED_PAIR_LIMIT",
    "NATIVE_NEIGHBOR_LIST_MIN_PAIRS",
    "create_system",
    "get_platform",
    "available_platforms",
]

BACKENDS = ("torch", "native")
#: Force group of Coulomb + C6/C12.
LONG_RANGE_GROUP = 1
#: Force group of the switched Gaussian short-range terms.
SHORT_RANGE_GROUP = 2
#: The native backend lists every pair up to this many pairs, then uses class tables.
NATIVE_LISTED_PAIR_LIMIT = 2_000_000
#: Above this many inter-fragment pairs, the native backend evaluates their Gaussians
#: through a neighbour list (cutoff r_off) instead of listing them.
NATIVE_NEIGHBOR_LIST_MIN_PAIRS = 10_000

# C_0 (kcal/mol A^6) -> kJ/mol nm^6, C_1 (kcal/mol A^12) -> kJ/mol nm^12
_C0_TO_OPENMM = KCAL_TO_KJ * ANGSTROM_TO_NM**6
_C1_TO_OPENMM = KCAL_TO_KJ * ANGSTROM_TO_NM**12
_PLATFORM_PREFERENCE = ("CUDA", "OpenCL", "CPU", "Reference")


def _f(x: float) -> str:
    """A float literal for a Lepton expression, at full precision."""
    return repr(float(x))


def _switch_expression(r_on_nm: float, r_off_nm: float) -> str:
    """Lepton expression of S(r) (r in nm), defining ``sw``."""
    return (
        f"sw = select(step(r - {_f(r_off_nm)}), 0, select(step(r - {_f(r_on_nm)}), 1 - xs^3*(10 - 15*xs + 6*xs^2), 1)); "
        f"xs = (r - {_f(r_on_nm)}) / {_f(r_off_nm - r_on_nm)}"
    )


def _gaussian_sum(amp: str, inv_w: str) -> str:
    """sum_k A_k exp(-(r - mu_k)^2 * g_k) in nm; ``amp``/``inv_w`` are name templates with {k}."""
    terms = [
        f"{amp.format(k=k)}*exp(-(r - {_f(GAUSSIAN_CENTERS[k] * ANGSTROM_TO_NM)})^2*{inv_w.format(k=k)})"
        for k in range(N_GAUSSIANS)
    ]
    return " + ".join(terms)


def _gaussian_openmm_parameters(c: np.ndarray) -> np.ndarray:
    """C_0..C_13 rows (kcal/mol, Angstrom) -> [A_1..A_6 (kJ/mol), g_1..g_6 (nm^-2)] rows."""
    amps = c[:, 2::2] * KCAL_TO_KJ
    inv_w = 1.0 / ((c[:, 3::2] ** 2 + WIDTH_EPSILON) * ANGSTROM_TO_NM**2)
    return np.concatenate([amps, inv_w], axis=1)


def _short_range_bond_force(pairs: np.ndarray, params: np.ndarray, r_on: float, r_off: float) -> openmm.CustomBondForce:
    """CustomBondForce with the switched Gaussians of the listed pairs (C_0..C_13 rows)."""
    expr = f"sw*({_gaussian_sum('a{k}', 'g{k}')}); " + _switch_expression(r_on * ANGSTROM_TO_NM, r_off * ANGSTROM_TO_NM)
    force = openmm.CustomBondForce(expr)
    for k in range(N_GAUSSIANS):
        force.addPerBondParameter(f"a{k}")
    for k in range(N_GAUSSIANS):
        force.addPerBondParameter(f"g{k}")
    values = _gaussian_openmm_parameters(params)
    for (i, j), v in zip(pairs.tolist(), values.tolist()):
        force.addBond(i, j, v)
    force.setName("physff short-range Gaussians")
    force.setForceGroup(SHORT_RANGE_GROUP)
    return force


def _add_particles(system: openmm.System, params: ParameterSet) -> None:
    for symbol in params.symbols:
        system.addParticle(_element.Element.getBySymbol(symbol).mass)


def _class_table_function(table: np.ndarray) -> openmm.Discrete2DFunction:
    n = table.shape[0]
    # Discrete2DFunction value (x, y) is values[x + n*y]; the table is symmetric
    return openmm.Discrete2DFunction(n, n, table.T.reshape(-1).tolist())


def _lj_exception(c0: np.ndarray, c1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C6/C12 (OpenMM units) -> Lennard-Jones (sigma, epsilon) and whether the form exists.

    sigma^6 = C_1/C_0 and epsilon = C_0^2 / (4 C_1); a pair with C_0 or C_1 zero has no such form.
    """
    ok = (c0 > 0) & (c1 > 0) & np.isfinite(c1 / np.where(c0 > 0, c0, 1.0))
    safe_c0 = np.where(ok, c0, 1.0)
    safe_c1 = np.where(ok, c1, 1.0)
    sigma = np.where(ok, (safe_c1 / safe_c0) ** (1.0 / 6.0), 1.0)
    eps = np.where(ok, safe_c0 * safe_c0 / (4.0 * safe_c1), 0.0)
    return sigma, eps, ok


def _intra_charge_products(params: ParameterSet) -> np.ndarray:
    """(p,) q_i q_j of each pair of ``params.intra_pairs`` (e^2), zero for covalent pairs (no Coulomb)."""
    intra = params.intra_pairs
    q = params.charges
    return np.where(params.intra_covalent(), 0.0, q[intra[:, 0]] * q[intra[:, 1]])


def _c6_c12_fallback_force() -> openmm.CustomBondForce:
    """CustomBondForce for C6/C12 pairs that have no Lennard-Jones form (C_0 or C_1 zero, rare)."""
    fallback = openmm.CustomBondForce("c1/r^12 - c0/r^6")
    fallback.addPerBondParameter("c0")
    fallback.addPerBondParameter("c1")
    fallback.setName("physff C6/C12 (pairs without a Lennard-Jones form)")
    fallback.setForceGroup(LONG_RANGE_GROUP)
    return fallback


def _add_exact_pairs(
    nb: openmm.NonbondedForce,
    fallback: openmm.CustomBondForce,
    pairs: np.ndarray,
    charge_products: np.ndarray,
    values: np.ndarray,
    replace: bool = False,
) -> None:
    """Give each listed pair its exact Coulomb (``charge_products``, e^2) and C6/C12 (C_0, C_1 of ``values``).

    One NonbondedForce exception per pair (sigma^6 = C_1/C_0, epsilon = C_0^2 / (4 C_1));
    a pair without a Lennard-Jones form gets its C6/C12 in ``fallback`` instead.
    ``replace``: overwrite exceptions that exist already (e.g. 1-2/1-3/1-4 exceptions of a ForceField).
    """
    c0 = np.abs(values[:, 0]) * _C0_TO_OPENMM
    c1 = np.abs(values[:, 1]) * _C1_TO_OPENMM
    sigma, eps, lj_ok = _lj_exception(c0, c1)
    for k, (i, j) in enumerate(np.asarray(pairs).tolist()):
        if lj_ok[k]:
            nb.addException(i, j, float(charge_products[k]), float(sigma[k]), float(eps[k]), replace)
        else:  # C6/C12 without a Lennard-Jones form (rare): a bond force
            nb.addException(i, j, float(charge_products[k]), 1.0, 0.0, replace)
            fallback.addBond(i, j, [float(c0[k]), float(c1[k])])


def _long_range_forces(system: openmm.System, params: ParameterSet, listed_inter: bool) -> None:
    """Coulomb + C6/C12 of every pair, exact.

    A NonbondedForce carries the charges (Coulomb between fragments) and one
    exception per pair within a fragment with its own C6/C12 (and no Coulomb
    for covalent pairs). Pairs between fragments are exceptions too when
    ``listed_inter``; otherwise their C6/C12 come from the class tables of a
    CustomNonbondedForce that excludes the pairs within fragments.
    """
    q = params.charges
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    nb.setName("physff Coulomb + C6/C12 (exact per pair)")
    nb.setForceGroup(LONG_RANGE_GROUP)
    for k in range(params.n_atoms):
        nb.addParticle(float(q[k]), 1.0, 0.0)
    pairs, values, qq = [params.intra_pairs], [params.intra_parameters], [_intra_charge_products(params)]
    if listed_inter:
        inter, inter_values = params.inter_pairs()
        pairs.append(inter)
        values.append(inter_values)
        qq.append(q[inter[:, 0]] * q[inter[:, 1]])
    fallback = _c6_c12_fallback_force()
    _add_exact_pairs(nb, fallback, np.concatenate(pairs), np.concatenate(qq), np.concatenate(values))
    system.addForce(nb)
    if fallback.getNumBonds():
        system.addForce(fallback)
    if not listed_inter:
        system.addForce(_c6_c12_class_force(params))


def _native_short_range(system: openmm.System, params: ParameterSet, listed_inter: bool) -> None:
    """Switched Gaussians: pairs within fragments listed; between fragments listed, or class tables
    through a neighbour list when there are many of them (or ``listed_inter`` is False)."""
    intra = params.intra_pairs
    inter, inter_values = params.inter_pairs()
    if listed_inter and len(inter) <= NATIVE_NEIGHBOR_LIST_MIN_PAIRS:
        pairs = np.concatenate([intra, inter])
        values = np.concatenate([params.intra_parameters, inter_values])
        system.addForce(_short_range_bond_force(pairs, values, *params.switch))
        return
    system.addForce(_short_range_bond_force(intra, params.intra_parameters, *params.switch))
    if len(inter):
        system.addForce(_intermolecular_short_range_force(params, intra[:, 0], intra[:, 1]))


def _gaussian_class_expression(params: ParameterSet) -> str:
    """Lepton expression of the switched Gaussians with parameters from class tables (cls1, cls2)."""
    r_on, r_off = (x * ANGSTROM_TO_NM for x in params.switch)
    return (
        f"sw*({_gaussian_sum('a{k}', 'g{k}')}); "
        + _switch_expression(r_on, r_off)
        + "; "
        + "; ".join(f"a{k} = ta{k}(cls1, cls2); g{k} = tg{k}(cls1, cls2)" for k in range(N_GAUSSIANS))
    )


def _add_gaussian_class_tables(force, params: ParameterSet) -> None:
    """Add the Gaussian class tables ta0..ta5, tg0..tg5 (kJ/mol, nm^-2) to a custom force."""
    table = params.class_parameters
    nc = table.shape[0]
    gauss = _gaussian_openmm_parameters(table.reshape(nc * nc, -1))
    for k in range(N_GAUSSIANS):
        force.addTabulatedFunction(f"ta{k}", _class_table_function(gauss[:, k].reshape(nc, nc)))
        force.addTabulatedFunction(f"tg{k}", _class_table_function(gauss[:, N_GAUSSIANS + k].reshape(nc, nc)))


def _intermolecular_short_range_force(params: ParameterSet, intra_i: np.ndarray, intra_j: np.ndarray) -> openmm.CustomManyParticleForce:
    """Switched Gaussians of the pairs between fragments: class tables, neighbour list with cutoff r_off.

    ``intra_i``, ``intra_j``: the pairs within a fragment, excluded here (they are listed elsewhere).
    """
    force = openmm.CustomManyParticleForce(2, _gaussian_class_expression(params) + "; r = distance(p1, p2)")
    force.setNonbondedMethod(openmm.CustomManyParticleForce.CutoffNonPeriodic)
    force.setCutoffDistance(params.switch[1] * ANGSTROM_TO_NM)
    force.addPerParticleParameter("cls")
    _add_gaussian_class_tables(force, params)
    for k in range(params.n_atoms):
        force.addParticle([float(params.atom_classes[k])], 0)
    for i, j in zip(intra_i.tolist(), intra_j.tolist()):
        force.addExclusion(i, j)
    force.setName("physff short-range Gaussians between fragments (class tables, neighbour list)")
    force.setForceGroup(SHORT_RANGE_GROUP)
    return force


def _c6_c12_class_force(params: ParameterSet) -> openmm.CustomNonbondedForce:
    """C6/C12 of the pairs between fragments, C_0 and C_1 from class tables (pairs within fragments excluded)."""
    table = params.class_parameters
    expr = "c1/r^12 - c0/r^6; c0 = tc0(cls1, cls2); c1 = tc1(cls1, cls2)"
    force = openmm.CustomNonbondedForce(expr)
    force.setNonbondedMethod(openmm.CustomNonbondedForce.NoCutoff)
    force.addPerParticleParameter("cls")
    force.addTabulatedFunction("tc0", _class_table_function(np.abs(table[:, :, 0]) * _C0_TO_OPENMM))
    force.addTabulatedFunction("tc1", _class_table_function(np.abs(table[:, :, 1]) * _C1_TO_OPENMM))
    for k in range(params.n_atoms):
        force.addParticle([float(params.atom_classes[k])])
    for i, j in params.intra_pairs.tolist():
        force.addExclusion(i, j)
    force.setName("physff C6/C12 between fragments (class tables)")
    force.setForceGroup(LONG_RANGE_GROUP)
    return force


def _reload_torch_plugins() -> None:
    """Load openmm-torch's OpenMM plugins that failed because torch was not loaded yet.

    OpenMM loads its plugins when ``openmm`` is first imported. The openmm-torch
    plugins link against libtorch and its CUDA libraries, which only resolve once
    ``torch`` is imported; if ``openmm`` came first, TorchForce has no kernels.
    """
    import re

    for failure in openmm.Platform.getPluginLoadFailures():
        match = re.search(r"Error loading library (\S*libOpenMMTorch\S*\.(?:so|dylib|dll))", failure)
        if match and match.group(1) not in _reloaded_plugins:
            _reloaded_plugins.add(match.group(1))
            try:
                openmm.Platform.loadPluginLibrary(match.group(1))
            except Exception:  # e.g. the OpenCL plugin without libOpenCL: not needed here
                pass


_reloaded_plugins: set[str] = set()


def _import_torch_force():
    """openmmtorch's TorchForce, with its plugins loaded, without the 'simtk.openmm' log line."""
    import logging

    import torch  # noqa: F401  (loads libtorch and its CUDA libraries before the plugins)

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        from openmmtorch import TorchForce
    except ImportError as exc:  # pragma: no cover - openmmtorch is a dependency
        raise BackendError(f"backend 'torch' needs openmmtorch ({exc}); use backend='native'") from None
    finally:
        logging.disable(previous)
    _reload_torch_plugins()
    return TorchForce


def _torch_backend(system: openmm.System, params: ParameterSet, layout: str, precision: str) -> None:
    import torch

    from .torchforce import LISTED_PAIR_LIMIT, ShortRangeModule

    TorchForce = _import_torch_force()
    if layout == "auto":
        layout = "listed" if params.n_atoms * (params.n_atoms - 1) // 2 <= LISTED_PAIR_LIMIT else "classes"
    _long_range_forces(system, params, listed_inter=layout == "listed")
    dtype = {"double": torch.float64, "single": torch.float32}[precision]
    module = torch.jit.script(ShortRangeModule(params, layout=layout, dtype=dtype))
    tf = TorchForce(module)
    tf.setName("physff short-range Gaussians (TorchForce)")
    tf.setForceGroup(SHORT_RANGE_GROUP)
    tf.setUsesPeriodicBoundaryConditions(False)
    system.addForce(tf)


def create_system(
    parameter_set_or_molecule,
    backend: str = "native",
    *,
    model="default",
    charge: int | None = None,
    layout: str = "auto",
    precision: str = "double",
) -> openmm.System:
    """Build an OpenMM System (atoms in the molecule's order) with the physff energy.

    Parameters
    ----------
    parameter_set_or_molecule : ParameterSet, rdkit.Chem.Mol, str or path
        Parameters, or anything :func:`physff_openmm.parameterize` accepts.
    backend : {"native", "torch"}
        OpenMM's own forces only (default: no torch at run time; Systems copy and
        serialize), or a TorchForce for the Gaussians. The torch backend's limits:
        on the CPU platform a step costs 2-70x a native one (benchmarks/bench_md_step.py),
        and with openmmtorch 1.5 / torch 2.9 ``copy.deepcopy`` of such a System and
        ``XmlSerializer.deserialize`` of its XML crash the process.
    model : str or path
        Model used when a molecule is given.
    charge : int, optional
        Total charge, when a molecule is given.
    layout : {"auto", "listed", "classes"}
        Every pair listed, or class tables (for systems too large to list).
    precision : {"double", "single"}
        Arithmetic of the TorchForce module.

    Returns
    -------
    openmm.System
        Energies in kJ/mol without the constant E_lin (``energy_offset``).
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if layout not in ("auto", "listed", "classes"):
        raise BackendError(f"unknown layout {layout!r}; choose 'auto', 'listed' or 'classes'")
    if precision not in ("double", "single"):
        raise BackendError(f"unknown precision {precision!r}; choose 'double' or 'single'")
    if isinstance(parameter_set_or_molecule, ParameterSet):
        params = parameter_set_or_molecule
    else:
        from .parameters import parameterize

        params = parameterize(parameter_set_or_molecule, model=model, charge=charge)
    system = openmm.System()
    _add_particles(system, params)
    if backend == "torch":
        _torch_backend(system, params, layout, precision)
    else:
        n_pairs = params.n_atoms * (params.n_atoms - 1) // 2
        listed = layout == "listed" or (layout == "auto" and n_pairs <= NATIVE_LISTED_PAIR_LIMIT)
        _long_range_forces(system, params, listed_inter=listed)
        _native_short_range(system, params, listed_inter=listed)
    return system


def available_platforms() -> list[str]:
    """Names of the OpenMM platforms present, fastest first."""
    names = [openmm.Platform.getPlatform(k).getName() for k in range(openmm.Platform.getNumPlatforms())]
    ordered = [p for p in _PLATFORM_PREFERENCE if p in names]
    return ordered + sorted(set(names) - set(ordered))


def _usable(platform_name: str) -> bool:
    """Whether a Context can be created on this platform (a plugin may load without a device)."""
    if platform_name not in _usable_cache:
        system = openmm.System()
        system.addParticle(1.0)
        try:
            openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform_name))
            _usable_cache[platform_name] = True
        except Exception:
            _usable_cache[platform_name] = False
    return _usable_cache[platform_name]


_usable_cache: dict[str, bool] = {}


def get_platform(name: str | None = None) -> openmm.Platform:
    """An OpenMM platform by name (case-insensitive), or the fastest usable one when None."""
    present = available_platforms()
    if name is None:
        for p in present:
            if _usable(p):
                return openmm.Platform.getPlatformByName(p)
    for p in present:
        if p.lower() == str(name).lower():
            return openmm.Platform.getPlatformByName(p)
    raise BackendError(f"OpenMM platform {name!r} is not available here; available: {', '.join(present)}")
