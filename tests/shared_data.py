"""Where the tests find the public reference data: ``../shared/data`` beside the repository (as in CI),
or the folder named by ``PHYSFF_SHARED_DATA``."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """The reference-data folder (it may not exist: tests that need it skip, naming it)."""
    env = os.environ.get("PHYSFF_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"
