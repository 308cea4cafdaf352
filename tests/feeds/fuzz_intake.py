"""An atheris fuzz target for intake: the readers, mapping and standardisers of every format.

Run by ``tests/feeds/test_intake_properties.py`` for a bounded time (``-max_total_time``);
run it by hand for longer: ``python tests/feeds/fuzz_intake.py -max_total_time=600``.
For any bytes, reading a file either yields rows or raises ``MalformedFileError`` (the file
is rejected whole), and preparing a row never raises: a bad row becomes reasons.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["mash_hub.feeds"]):
    from mash_hub.crypto.keys import LocalKeyringProvider
    from mash_hub.feeds.definition import FeedDefinition, feed_folders, load_feeds
    from mash_hub.feeds.ingest import prepare_one
    from mash_hub.feeds.reader import MalformedFileError, read_records
    from mash_hub.persons.store import PersonStore

_DIR = Path(tempfile.mkdtemp(prefix="mash-fuzz-"))
STORE = PersonStore.from_provider(LocalKeyringProvider.create(_DIR / "keyring.json"))
FEEDS: list[FeedDefinition] = [
    *load_feeds(feed_folders()).values(),
    FeedDefinition.model_validate(
        {
            "name": "events",
            "agency": "council",
            "format": {"type": "ndjson"},
            "record_id": {"path": "id"},
            "date_formats": ["%d.%m.%Y"],
            "person": {
                "full_name": {"path": "name"},
                "date_of_birth": {"path": "born", "date": True},
                "nhs_number": {"path": "nhs"},
                "phone": {"path": "tel"},
                "addresses": {
                    "path": "homes",
                    "fields": {
                        "line1": {"path": ["no", "street"]},
                        "postcode": {"path": "pc"},
                        "from": {"path": "from", "date": True},
                    },
                },
            },
        }
    ),
]
BATCH = uuid.uuid4()


def one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    definition = FEEDS[provider.ConsumeIntInRange(0, len(FEEDS) - 1)]
    path = _DIR / "extract"
    path.write_bytes(provider.ConsumeBytes(provider.remaining_bytes()))
    try:
        for raw in read_records(definition, path):
            prepare_one(STORE, definition, BATCH, raw)
    except MalformedFileError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
