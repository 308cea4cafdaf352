"""Named, independent random streams derived from the run seed.

String seeds are hashed with SHA-512 by ``random.Random`` (not ``hash()``), so streams are
identical across processes whatever PYTHONHASHSEED is. Separate streams mean, for example,
that changing error rates changes how people are recorded but not who exists.
"""

from __future__ import annotations

from random import Random


def stream(seed: int, name: str) -> Random:
    """The ``name`` stream for ``seed``: reproducible synthetic data, never for security."""
    return Random(f"mash-synth:{seed}:{name}")  # noqa: S311
