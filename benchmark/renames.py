"""Methods that were renamed. An old name keeps working wherever a method is named
(``--plugins``, ``show``, suite files, the Python API) with one deprecation line, and result
files recorded under it are read under the new name (see schema.py)."""

from __future__ import annotations

import sys
from collections.abc import Mapping

# old name -> current name; an entry stays until old names have left users' commands
RENAMED_METHODS: Mapping[str, str] = {
    "cvm_net": "cvm-net",  # after 0.1.0: words joined by "-", as in raw-pixels
}
_said: set[str] = set()


def current_method(name: str) -> str:
    """NAME, or the current name of a renamed method; the first use of an old name in a
    process prints one deprecation line on stderr."""
    new = RENAMED_METHODS.get(name)
    if new is None:
        return name
    if name not in _said:
        _said.add(name)
        print(
            f"warning: the method name {name!r} is deprecated; use {new!r} (the old name "
            "still works for now).",
            file=sys.stderr,
        )
    return new
