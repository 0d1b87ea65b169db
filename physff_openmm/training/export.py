"""Export a trained model to the runtime model file, and register it (a separate step).

:func:`export_model` writes the file :func:`physff_openmm.model.load_model_file`
reads, with the resolved config, the level of theory, data provenance, metrics
and package versions in its metadata; the model's hash is the file's SHA-256,
which ``load_model_file`` computes. :func:`install_model` copies a model file
into the package's ``models/`` folder and lists it in ``models/index.json``;
nothing calls it automatically.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ..model import PhysFFModel, file_sha256, save_model_file

__all__ = ["export_model", "install_model", "package_versions"]


def package_versions() -> dict[str, str]:
    """Versions of the packages that made a model (those importable here)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("physff-openmm", "torch", "torch-geometric", "lightning", "rdkit", "openmm", "pyscf", "tblite", "numpy", "h5py"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if "physff-openmm" not in out:
        from .. import __version__

        out["physff-openmm"] = __version__
    return out


def _model_from(source) -> PhysFFModel:
    """A PhysFFModel from a model, a LightningModule holding one, a Lightning checkpoint or a model file."""
    if isinstance(source, PhysFFModel):
        return source
    inner = getattr(source, "model", None)
    if isinstance(inner, PhysFFModel):
        return inner
    path = Path(source)
    if not path.is_file():
        raise ModelError(f"cannot export {str(source)!r}: no such file")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(payload, dict) and "state_dict" in payload and "format" not in payload:
        # a Lightning checkpoint: weights under "model." (the LightningModule's attribute)
        from ..model import ModelConfig

        state = {k[len("model."):]: v for k, v in payload["state_dict"].items() if k.startswith("model.")}
        cfg = payload.get("physff_model_config")
        if cfg is None:
            raise ModelError(f"{path} is a Lightning checkpoint without a physff model config")
        model = PhysFFModel(ModelConfig.from_dict(cfg))
        model.load_state_dict(state)
        return model
    from ..model import load_model_file

    return load_model_file(path)


def export_model(checkpoint_or_module, out_path: str | Path, metadata: dict[str, Any] | None = None, *, config=None) -> str:
    """Write a runtime model file (atomically); returns its SHA-256.

    Parameters
    ----------
    checkpoint_or_module : PhysFFModel, LightningModule, Lightning checkpoint path or model file
    out_path : path
        The ``.pt`` file to write.
    metadata : dict, optional
        Level of theory (``level``), data provenance (``data``), metrics, name,
        description. Package versions and the export time are added.
    config : training config, optional
        Stored resolved under ``training_config``.
    """
    from .config import config_to_dict

    model = _model_from(checkpoint_or_module)
    meta = dict(metadata or {})
    meta.setdefault("level", model.metadata.get("level", "unknown"))
    meta["versions"] = {**meta.get("versions", {}), **package_versions()}
    meta["exported"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if config is not None:
        meta["training_config"] = config_to_dict(config)
    meta["model_config"] = model.config.to_dict()
    meta = json.loads(json.dumps(meta, default=_jsonable))  # plain types only: weights_only loading
    model = model.cpu()
    was_training = model.training
    model.eval()
    sha = save_model_file(model, out_path, meta)
    model.train(was_training)
    return sha


def _jsonable(x):
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return str(x)


def install_model(
    path: str | Path,
    name: str,
    *,
    description: str | None = None,
    models_dir: str | Path | None = None,
    alias: str | None = None,
    alias_warning: str | None = None,
) -> Path:
    """Add a model file to the package's shipped models (``models/index.json``).

    Parameters
    ----------
    path : path
        A model file (checked with :func:`load_model_file`).
    name : str
        Registry name; its file becomes ``<name>.pt`` in ``models_dir``.
    description : str, optional
        Default: the file's metadata ``description``.
    models_dir : path, optional
        Default: :data:`physff_openmm.registry.MODELS_DIR`.
    alias, alias_warning : str, optional
        Also point ``alias`` (e.g. "default") at ``name``, with a warning shown on use.

    Returns
    -------
    Path
        The installed file.
    """
    from ..model import load_model_file
    from ..registry import MODELS_DIR

    if not name or "/" in name or name.startswith("."):
        raise ModelError(f"invalid model name {name!r}")
    model = load_model_file(path)
    models_dir = Path(models_dir) if models_dir is not None else MODELS_DIR
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / f"{name}.pt"
    src = Path(path).resolve()
    if src != target.resolve():
        tmp = target.with_name(target.name + ".partial")
        shutil.copyfile(src, tmp)
        tmp.replace(target)
    if file_sha256(target) != model.file_hash:
        raise ModelError(f"copy of {src} to {target} does not match the original")
    index_path = models_dir / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    index[name] = {
        "file": target.name,
        "description": description or model.metadata.get("description", ""),
        "sha256": model.file_hash,
    }
    if alias:
        index[alias] = {"alias_of": name}
        if alias_warning:
            index[alias]["warning"] = alias_warning
    tmp = index_path.with_name("index.json.partial")
    tmp.write_text(json.dumps(index, indent=2) + "\n")
    os.replace(tmp, index_path)
    return target
