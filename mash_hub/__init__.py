"""MASH Hub: a shared, encrypted, audited person index for a Multi-Agency Safeguarding Hub."""

__version__ = "0.1.0"
