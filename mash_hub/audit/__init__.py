"""The audit log: every access to and change of personal data, hash-chained."""

from mash_hub.audit.log import AuditEvent, record

__all__ = ["AuditEvent", "record"]
