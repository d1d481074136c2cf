"""The privacy screen at the door: personal data is found and replaced before anything is written.

Every free-text field on the online path (a text input, a feedback comment,
metadata keys and values, a model name) passes through :class:`Screen`
before the store sees it. Per the workspace policy a finding is replaced by a
typed placeholder (``<EMAIL>``), by a keyed pseudonym (``<EMAIL:kdjfhgpalemc>``:
the same value always gives the same token, and the token cannot be reversed
without the workspace key), or the whole record is refused. Replacements
contain no digits and no ``@``, so cleaning is idempotent.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from datawheel.errors import ConsentRequired, PolicyRejected
from datawheel.privacy.detectors import DEFAULT_DETECTORS, Detector, PresidioDetector, detect
from datawheel.privacy.policy import Policy

_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")


class Screen:
    def __init__(self, policy: Policy, key: str, detectors: Sequence[Detector] | None = None,
                 on_finding: Callable[[str, str], None] | None = None) -> None:
        self.policy = policy
        self._key = key.encode()
        if detectors is None:
            detectors = tuple(DEFAULT_DETECTORS) + ((PresidioDetector(),) if policy.presidio else ())
        self.detectors = tuple(detectors)
        self.on_finding = on_finding

    def pseudonym(self, pii_type: str, value: str) -> str:
        digest = hmac.new(self._key, f"{pii_type}:{value}".encode(), hashlib.sha256).hexdigest()[:12]
        return f"<{pii_type}:{digest.translate(_LETTERS)}>"

    def clean_text(self, text: str, field: str) -> str:
        findings = detect(text, self.detectors)
        if not findings:
            return text
        refused = sorted({f.type for f in findings if self.policy.action(f.type) == "reject"})
        if refused:
            for f in findings:
                self._count(f.type, "reject")
            # Types only, never the values: the error itself must not leak what it refuses.
            raise PolicyRejected(f"{field}: contains personal data the workspace policy refuses to store "
                                 f"({', '.join(refused)}); remove it and send again")
        out, last = [], 0
        for f in findings:
            action = self.policy.action(f.type)
            self._count(f.type, action)
            out.append(text[last:f.start])
            out.append(self.pseudonym(f.type, text[f.start:f.end]) if action == "pseudonymize" else f"<{f.type}>")
            last = f.end
        out.append(text[last:])
        return "".join(out)

    def clean_item(self, item: Any, field: str) -> Any:
        """Text items are cleaned; other items (images) carry no text to scan."""
        return self.clean_text(item, field) if isinstance(item, str) else item

    def clean_optional(self, text: str | None, field: str) -> str | None:
        return None if text is None else self.clean_text(text, field)

    def clean_meta(self, meta: Mapping[str, Any] | None, field: str = "metadata") -> dict | None:
        if meta is None:
            return None
        return {self.clean_text(k, f"{field} key"): self.clean_text(v, f"{field}.{k[:32]}") if isinstance(v, str) else v
                for k, v in meta.items()}

    def requirement(self, source: str) -> Callable[[Mapping[str, bool]], None]:
        """A check of the consent in force, run inside the write so a refused record leaves no trace."""
        needed = self.policy.source(source).min_consent

        def check(consent: Mapping[str, bool]) -> None:
            if needed != "none" and not consent.get(needed, False):
                raise ConsentRequired(f"consent: the workspace policy stores {source} records only with "
                                      f"'{needed}' consent; ask the user, then PUT /v1/users/{{id}}/consent")
        return check

    def _count(self, pii_type: str, action: str) -> None:
        if self.on_finding is not None:
            self.on_finding(pii_type, action)
