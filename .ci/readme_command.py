"""Print the README's first set-up command (install line and MD run), shortened for CI.

The command is the first ```bash block under "## Set-up on a fresh machine"; ``--steps N``
becomes ``--steps 20`` so that it runs in seconds. ``.ci/run`` runs the printed line in a
fresh virtual environment, and ``tests/test_readme.py`` checks it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SHORT_STEPS = 20


def first_command(text: str | None = None) -> str:
    """The README's first set-up command, with ``--steps`` shortened to :data:`SHORT_STEPS`."""
    text = README.read_text() if text is None else text
    section = text.split("## Set-up on a fresh machine", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    if block is None:
        raise SystemExit("README: no ```bash block under '## Set-up on a fresh machine'")
    command = " ".join(line.strip() for line in block.group(1).strip().splitlines())
    return re.sub(r"--steps \d+", f"--steps {SHORT_STEPS}", command)


if __name__ == "__main__":
    print(first_command())
    sys.exit(0)
