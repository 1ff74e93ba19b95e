"""A daemon imports from its install, not from the shell it was started in.

``PYTHONPATH`` is for developers' interpreters; a service that honours it can be handed a different
program by its environment: a folder on it that holds a file named like a dependency (a check script
called ``wyoming.py``, say) would shadow the real package for every import after it. systemd never
sets it, so dropping it changes nothing for an installed service, and a run by hand behaves the same.
Called first thing in each app's ``main()``, before the imports that could be shadowed.
"""

from __future__ import annotations

import os
import sys


def ignore_pythonpath() -> None:
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if not entries:
        return
    drop = {os.path.realpath(p) for p in entries}
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) not in drop]
