"""The only part of MASH Hub that touches raw keys.

* :mod:`.keys`: KEK providers (keyring file, environment) and the blind-index root secret;
* :mod:`.envelope`: per-record data keys and AES-256-GCM field / field-group encryption;
* :mod:`.blind_index` and :mod:`.normalise`: truncated HMAC indexes for equality search.
"""

from mash_hub.crypto.blind_index import INDEX_SPECS, BlindIndexer, IndexSpec, IndexTerm, index_terms
from mash_hub.crypto.envelope import (
    DataKey,
    FieldCipher,
    WrappedKey,
    new_data_key,
    rewrap_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from mash_hub.crypto.errors import (
    CryptoError,
    DecryptionError,
    KeyConfigError,
    KeyringExistsError,
    KeyringPermissionError,
    UnknownKeyError,
)
from mash_hub.crypto.keys import (
    DevelopmentKeysWarning,
    EnvKeyProvider,
    KeyProvider,
    LocalKeyringProvider,
    generate_dev_keyring,
)

__all__ = [
    "INDEX_SPECS",
    "BlindIndexer",
    "CryptoError",
    "DataKey",
    "DecryptionError",
    "DevelopmentKeysWarning",
    "EnvKeyProvider",
    "FieldCipher",
    "IndexSpec",
    "IndexTerm",
    "KeyConfigError",
    "KeyProvider",
    "KeyringExistsError",
    "KeyringPermissionError",
    "LocalKeyringProvider",
    "UnknownKeyError",
    "WrappedKey",
    "generate_dev_keyring",
    "index_terms",
    "new_data_key",
    "rewrap_data_key",
    "unwrap_data_key",
    "wrap_data_key",
]
