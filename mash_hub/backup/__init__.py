"""Encrypted backups of the database, restore, and the erasure ledger kept outside it.

* :mod:`~mash_hub.backup.archive`: a ``pg_dump`` stream sealed in chunks with AES-256-GCM
  under the backup key (``<data dir>/backup.key`` or ``MASH_BACKUP_KEY[_FILE]``), which is
  not the KEK: a stolen backup file alone opens nothing, and even opened, the personal data
  in it is still envelope-encrypted under the KEKs, which are kept apart from both.
* :mod:`~mash_hub.backup.ledger`: every erasure appends the person's id to a file outside the
  database, so erasures made after a backup are made again when it is restored.
"""
