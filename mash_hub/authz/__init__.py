"""Authorisation: the compiled Casbin access policy and its published versions.

``AccessPolicy.for_session(session).mask(caller, source)`` is the one answer to "which field
groups of records from this source may this caller see"; everything that shows personal data
asks it. See ``policies/README.md`` for the policy itself.
"""

from mash_hub.authz.files import PolicyTexts, Problem, policies_dir
from mash_hub.authz.policy import (
    AccessPolicy,
    Caller,
    Decisions,
    PolicyError,
    PolicyIntegrityError,
    PolicyNotPublishedError,
    compile_policy,
)

__all__ = [
    "AccessPolicy",
    "Caller",
    "Decisions",
    "PolicyError",
    "PolicyIntegrityError",
    "PolicyNotPublishedError",
    "PolicyTexts",
    "Problem",
    "compile_policy",
    "policies_dir",
]
