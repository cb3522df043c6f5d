"""Analysts' feedback to the detectors: allow-lists that suppress findings at scoring (:mod:`.allowlist`)."""

from seclake_ml.feedback.allowlist import (
    ALLOWLIST_PREFIX,
    KINDS,
    AddResult,
    AllowEntry,
    AllowEvent,
    AllowList,
    Matcher,
    RemoveResult,
    new_entry,
    normalise_cidr,
)

__all__ = [
    "ALLOWLIST_PREFIX", "KINDS", "AddResult", "AllowEntry", "AllowEvent", "AllowList", "Matcher", "RemoveResult",
    "new_entry", "normalise_cidr",
]  # fmt: skip
