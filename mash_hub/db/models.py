"""Imports every model module, so ``Base.metadata`` is complete for Alembic and the drift test."""

from __future__ import annotations

from mash_hub.audit import models as audit_models
from mash_hub.authz import models as authz_models
from mash_hub.crypto import models as crypto_models
from mash_hub.db.base import Base
from mash_hub.feeds import models as feed_models
from mash_hub.matching import models as matching_models
from mash_hub.persons import models as person_models
from mash_hub.quality import models as quality_models
from mash_hub.referrals import models as referral_models
from mash_hub.users import models as user_models

__all__ = [
    "Base",
    "audit_models",
    "authz_models",
    "crypto_models",
    "feed_models",
    "matching_models",
    "person_models",
    "quality_models",
    "referral_models",
    "user_models",
]
