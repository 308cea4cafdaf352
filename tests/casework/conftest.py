"""The casework tests use the person store's fixtures: a fresh keyring and a store over it."""

from tests.persons.conftest import keyring, store

__all__ = ["keyring", "store"]
