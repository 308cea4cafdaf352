"""``python -m mash_hub`` is the same as ``mash-hub``."""

from mash_hub.cli import main

main()
