"""Deterministic, streamed synthetic agency extracts (police, council, social care) with truth.

Used to test and tune record linkage without touching real people's data.
"""

from mash_hub.synth.errors import ErrorRates
from mash_hub.synth.generator import SynthSummary, generate
from mash_hub.synth.writers import EXTRACT_FILES, TRUTH_FILE

__all__ = ["EXTRACT_FILES", "TRUTH_FILE", "ErrorRates", "SynthSummary", "generate"]
