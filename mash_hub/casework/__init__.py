"""What staff do with the person index: search it, view a person, see why records are linked,
and export a subject-access request.

These use cases combine the person store (``persons``), linkage (``matching``) and referrals
(``referrals``), so they sit above all three; the API, the pages and the CLI call them here.
"""
