"""What every command's parser shares: one-line usage errors."""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["Parser"]


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse's own also prints the usage block)
        self.exit(2, f"{self.prog}: error: {message}\n")
