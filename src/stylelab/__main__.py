"""`python -m stylelab` and the `stylelab` console script: the CLI, with Ctrl-C handled from the first moment."""

import sys


def entry() -> int:
    """Import the CLI (torch and the network code: seconds) and run it; a Ctrl-C at any point is exit 130."""
    try:
        from .cli import main

        return main()
    except KeyboardInterrupt:
        print("stylelab: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(entry())
