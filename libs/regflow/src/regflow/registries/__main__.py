"""``python -m regflow.registries``: print a new key for ``REGFLOW_SECRET_KEYS``.

Kept out of :mod:`regflow.registries.crypto`, which the package imports: running
an already imported module with ``-m`` makes Python warn and run it twice.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final

from regflow.registries.crypto import KEYS_VARIABLE, SecretBox

USAGE: Final = (
    "usage: python -m regflow.registries  "
    f"(prints a new Fernet key for {KEYS_VARIABLE})"
)
_HELP_FLAGS: Final = frozenset({"-h", "--help"})
_USAGE_ERROR: Final = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Print a new key, or the usage for ``--help``; return the exit status.

    Any other argument is a usage error (status 2), so a mistyped option is
    never mistaken for a request for a key.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(SecretBox.generate_key())  # noqa: T201 - the command's output is the key
        return 0
    if len(args) == 1 and args[0] in _HELP_FLAGS:
        print(USAGE)  # noqa: T201 - help goes to standard output
        return 0
    print(USAGE, file=sys.stderr)  # noqa: T201 - usage errors go to standard error
    return _USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
