"""Progress bars of long operations (tqdm on stderr), shown on a terminal unless asked otherwise."""

from __future__ import annotations

import sys

__all__ = ["progress_bar", "progress_enabled"]


def progress_enabled(progress: bool | None) -> bool:
    """Whether to show a progress bar: as asked, or (None) when stderr is a terminal."""
    if progress is not None:
        return bool(progress)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(total: int | None, unit_name: str, progress: bool | None, desc: str | None = None):
    """A tqdm progress bar on stderr, shown as :func:`progress_enabled` says (a no-op bar otherwise)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit_name, desc=desc, disable=not progress_enabled(progress), file=sys.stderr,
                leave=False)
