"""The argparse parser strata's commands are added to: argparse's own, with a
hint where it reads a file's name as an option.

A file whose name starts with '-' (`-a.arch`) looks like an option to argparse,
which then says "the following arguments are required: spec" or "unrecognized
arguments"; the hint says how to give it (`./-a.arch`, or after `--`):

    strata check -- -a.arch
"""

from __future__ import annotations

import argparse
import os
import sys

from strata.io import SPEC_SUFFIXES

__all__ = ["Parser"]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors name a file argparse took for an option
    (its subcommands' parsers are of this class too)."""

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        given = getattr(self, "_given", [])
        given = given[:given.index("--")] if "--" in given else given  # after --: files already
        dashed = [a for a in given if a.startswith("-") and a.strip("-")
                  and (a.lower().endswith(SPEC_SUFFIXES) or os.path.lexists(a))]
        if dashed:
            message += (f" ('{dashed[0]}' starts with '-', so it was read as an option: to give the "
                        f"file, write ./{dashed[0]}, or put -- before it, after the options)")
        super().error(message)
