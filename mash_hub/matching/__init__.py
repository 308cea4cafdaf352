"""Probabilistic record linkage: which source records are one person.

``comparisons`` (model definition in code), ``features`` (decrypted values to comparable
keys), ``model`` (train / predict with Splink on locked-down in-memory DuckDB), ``cluster``
(guarded clustering, stable ids), ``evaluate`` (against ground truth), ``service`` (the
database side: read, link, assign person ids, store explanations).
"""
