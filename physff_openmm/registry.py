"""Named models: files shipped in the package, user registrations and entry points.

``load_model("default")`` works offline: the shipped files live in
``physff_openmm/models``. Other packages add models through the entry-point
group ``physff_openmm.models`` (each entry point is a callable returning the
model file's path), or at run time with :func:`register_model`.
"""

from __future__ import annotations

import json
import threading
import warnings
from importlib import metadata as importlib_metadata
from pathlib import Path

from .errors import ModelError
from .model import PhysFFModel, file_sha256, load_model_file

__all__ = ["available_models", "register_model", "resolve_model", "load_model", "MODELS_DIR", "ENTRY_POINT_GROUP"]

#: Folder of the model files shipped with the package.
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: Entry-point group through which other packages register models.
ENTRY_POINT_GROUP = "physff_openmm.models"

_registered: dict[str, Path] = {}
_cache: dict[tuple[str, float], PhysFFModel] = {}
_lock = threading.Lock()
_warned: set[str] = set()


def _shipped() -> dict[str, dict]:
    """Shipped models from ``models/index.json``: name -> {file, description, alias_of?}."""
    index = MODELS_DIR / "index.json"
    if not index.is_file():
        return {}
    return json.loads(index.read_text())


def _entry_points() -> dict[str, object]:
    try:
        eps = importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # broken third-party metadata must not break the built-ins
        return {}
    return {ep.name: ep for ep in eps}


def available_models() -> dict[str, str]:
    """Names of the models that can be loaded, with a one-line description each."""
    out = {name: info.get("description") or (f"alias of {info['alias_of']}" if "alias_of" in info else "")
           for name, info in _shipped().items()}
    out.update({name: f"registered: {path}" for name, path in _registered.items()})
    out.update({name: f"entry point {ep.value}" for name, ep in _entry_points().items() if name not in out})
    return dict(sorted(out.items()))


def register_model(name: str, path: str | Path) -> None:
    """Register a model file under ``name`` for this process."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"cannot register model {name!r}: {str(path)!r} does not exist")
    _registered[name] = path.resolve()


def resolve_model(model: str | Path) -> tuple[str, Path]:
    """(name, file path) of a model given by name or by path.

    Raises
    ------
    ModelError
        For an unknown name (the message lists the valid ones) or a missing file.
    """
    text = str(model)
    path = Path(text)
    if isinstance(model, Path) or path.suffix in (".pt", ".pth") or path.is_file():
        if not path.is_file():
            raise ModelError(f"model file {text!r} does not exist")
        return path.stem, path.resolve()
    if text in _registered:
        return text, _registered[text]
    shipped = _shipped()
    if text in shipped:
        info = shipped[text]
        if "alias_of" in info:
            target = info["alias_of"]
            if text not in _warned and info.get("warning"):
                _warned.add(text)
                warnings.warn(info["warning"], UserWarning, stacklevel=3)
            return target, MODELS_DIR / shipped[target]["file"]
        return text, MODELS_DIR / info["file"]
    eps = _entry_points()
    if text in eps:
        target = eps[text].load()
        return text, Path(target() if callable(target) else target)
    valid = ", ".join(available_models()) or "(none installed)"
    raise ModelError(f"unknown model {text!r}; available models: {valid}; or give a path to a model file")


def load_model(model: str | Path | PhysFFModel = "default") -> PhysFFModel:
    """Load a model by name or path (cached per file and modification time)."""
    if isinstance(model, PhysFFModel):
        return model
    name, path = resolve_model(model)
    if not path.is_file():
        raise ModelError(f"model {name!r} points to {str(path)!r}, which does not exist")
    key = (str(path), path.stat().st_mtime)
    with _lock:
        if key not in _cache:
            expected = _shipped().get(name, {}).get("sha256") if path.parent == MODELS_DIR else None
            actual = None
            if expected:  # checked before reading: a damaged shipped file is named with its expected hash
                actual = file_sha256(path)
                if actual != expected:
                    raise ModelError(
                        f"shipped model {name!r} ({str(path)!r}) has sha256 {actual}, but models/index.json "
                        f"records {expected}: the file is damaged or was replaced; reinstall physff-openmm"
                    )
            m = load_model_file(path, sha256=actual)  # hashed once
            m.name = m.metadata.get("name", name)
            _cache[key] = m
        return _cache[key]
