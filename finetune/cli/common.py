"""What several verbs share."""

from __future__ import annotations

import argparse
from dataclasses import fields

from storygen.config import UNSET


def given_flags(args: argparse.Namespace, cls: type) -> dict:
    """The settings of ``cls`` given as flags (those not given stay out)."""
    given = {f.name: getattr(args, f.name) for f in fields(cls)}
    return {name: value for name, value in given.items() if value is not UNSET}
