"""The llmchatlinker command: start the whole suite or one service."""

import sys


def main() -> None:
    sys.exit("llmchatlinker: not implemented yet")
