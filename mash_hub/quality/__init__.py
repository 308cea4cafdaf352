"""Data quality: values of indexed records that failed validation, their correction, and
per-feed reports.

A record with one bad value (an identifier failing its check, an impossible date, an invalid
postcode, an unparseable phone) is indexed on what is valid; each bad value becomes an issue:
its reason code and field in ``quality_issues`` (no personal data), its raw value encrypted
with the record in the record's ``quality`` field group, for correction.
"""
