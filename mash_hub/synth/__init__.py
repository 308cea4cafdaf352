"""Deterministic, streamed synthetic agency extracts (police, council, social care) with truth.

Used to test and tune record linkage without touching real people's data.
"""

from mash_hub.synth.errors import ErrorRates
from mash_hub.synth.generator import SynthSummary, generate

__all__ = ["ErrorRates", "SynthSummary", "generate"]
