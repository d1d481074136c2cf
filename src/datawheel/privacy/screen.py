"""The privacy screen at the door: personal data is found and replaced before anything is written.

Every free-text field on the online path (a text input, a feedback comment,
metadata keys and values, a model name) passes through :class:`Screen`
before the store sees it. Per the workspace policy a finding is replaced by a
typed placeholder (``<EMAIL>``), by a keyed pseudonym (``<EMAIL:kdjfhgpalemc>``:
the same value always gives the same token, and the token cannot be reversed
without the workspace key), or the whole record is refused. Replacements
contain no digits and no ``@``, so cleaning is idempotent.

The screen cleans what it is given whoever prepared it: every string is
normalized first (:func:`normalize`), so a card number typed in full-width
digits or split by zero-width spaces is found like the plain one. User ids are
not cleaned but checked (:meth:`Screen.check_user_id`), and the ids that passed are remembered for a while:
the same few ids come back request after request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from datawheel.errors import ConsentRequired, InvalidInput, PolicyRejected
from datawheel.privacy.detectors import DEFAULT_DETECTORS, Detector, Finding, PresidioDetector, detect
from datawheel.privacy.policy import Policy

_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")
_PASSES = 4  # of detection per field; a text needing more is a contrived run of numbers with no word between
# Invisible format characters: soft hyphen, Mongolian vowel separator, zero-width space/joiners, bidi marks
# and embeddings, word joiner and invisible operators, bidi isolates, the byte-order mark.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]+")
# Separators inside a user id that may hide a number from the patterns' boundaries ("wx-13812345678").
_ID_SEPARATORS = re.compile(r"[_.:/|\\-]")
#: user ids that passed, remembered per screen (:meth:`Screen.check_user_id`): a few thousand active users' ids
PASSED_IDS = 4096


def _joinable(ch: str) -> bool:
    """A character that a joiner or bidi mark may legitimately sit next to: a letter, mark or emoji of a
    script that uses them (Arabic, Persian, Indic, emoji sequences) -- never ASCII, a digit, or CJK."""
    if not ch or ch.isascii() or ch.isdigit():
        return False
    cp, category = ord(ch), unicodedata.category(ch)
    if 0x2E80 <= cp <= 0xFFEF or cp >= 0x20000:
        return False
    return category[0] in "LM" or category in ("So", "Sk")


def _drop_invisible(m: re.Match[str]) -> str:
    before = m.string[m.start() - 1] if m.start() else ""
    after = m.string[m.end()] if m.end() < len(m.string) else ""
    return m.group() if _joinable(before) and _joinable(after) else ""


def normalize(text: str) -> str:
    """NFKC, then without the invisible characters that can hide a value from the patterns.

    NFKC makes full-width and compatibility forms (４１１１, ①, ｍａｉｌ＠…) plain; a zero-width space
    between two digits splits a card number for a regex but not for a reader, so it goes. A joiner
    between two letters of a script that needs it (Persian ZWNJ, emoji ZWJ sequences) stays: removing
    it would change the words, and no pattern runs through such letters.
    """
    text = unicodedata.normalize("NFKC", text)
    if _INVISIBLE.search(text):
        text = unicodedata.normalize("NFKC", _INVISIBLE.sub(_drop_invisible, text))
    return text


class Screen:
    def __init__(self, policy: Policy, key: str, detectors: Sequence[Detector] | None = None,
                 on_finding: Callable[[str, str], None] | None = None) -> None:
        self.policy = policy
        self._key = key.encode()
        if detectors is None:
            detectors = tuple(DEFAULT_DETECTORS) + ((PresidioDetector(),) if policy.presidio else ())
        self.detectors = tuple(detectors)
        self.on_finding = on_finding
        #: ids that passed :meth:`check_user_id`, least recently seen first, and the screen they passed under
        self._passed: OrderedDict[str, None] = OrderedDict()
        self._passed_under: tuple[Policy, tuple[Detector, ...]] | None = None
        self._passed_lock = threading.Lock()

    def pseudonym(self, pii_type: str, value: str) -> str:
        digest = hmac.new(self._key, f"{pii_type}:{value}".encode(), hashlib.sha256).hexdigest()[:12]
        return f"<{pii_type}:{digest.translate(_LETTERS)}>"

    def clean_text(self, text: str, field: str) -> str:
        """``text`` normalized, with each finding replaced as the policy says, or PolicyRejected."""
        return self._clean(normalize(text), field)

    def _clean(self, text: str, field: str, context: str = "") -> str:
        """Findings replaced until none is left; ``context`` (a metadata key) is read for cues only.

        One pass is not always enough: in "13812345678 4111111111111111" the card looks like the tail of a
        longer number until the phone before it is a placeholder. Each pass replaces digits by letters, so
        a few passes reach the text that a further one would leave alone.
        """
        for _ in range(_PASSES):
            findings = detect(text, self.detectors, context)
            if not findings:
                break
            text = self._replace(text, findings, field)
        return text

    def _replace(self, text: str, findings: Sequence[Finding], field: str) -> str:
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
        """Text items are cleaned, and every message of a conversation; other items (images) carry no text."""
        if isinstance(item, str):
            return self.clean_text(item, field)
        if isinstance(item, tuple) and all(isinstance(m, tuple) and len(m) == 2 for m in item):
            return tuple((role, self.clean_text(content, f"{field}[{i}].content"))
                         for i, (role, content) in enumerate(item))
        return item

    def clean_optional(self, text: str | None, field: str) -> str | None:
        return None if text is None else self.clean_text(text, field)

    def clean_meta(self, meta: Mapping[str, Any] | None, field: str = "metadata") -> dict | None:
        """Keys and values cleaned; errors name a value by its cleaned key, so a key that held personal data
        is not quoted back."""
        if meta is None:
            return None
        out = {}
        for k, v in meta.items():
            key = self.clean_text(k, f"{field} key")
            out[key] = self._clean_meta_value(key, v, f"{field}.{key[:32]}")
        return out

    def _clean_meta_value(self, key: str, value: Any, field: str) -> Any:
        """Strings are cleaned with their key as the cue; an integer is personal data too when its digits are
        ({"phone": 13812345678}), and is then replaced by the placeholder string."""
        if isinstance(value, str):
            return self._clean(normalize(value), field, context=f"{key}: ")
        if isinstance(value, int) and not isinstance(value, bool):
            digits = str(value)
            cleaned = self._clean(digits, field, context=f"{key}: ")
            return value if cleaned == digits else cleaned
        return value

    def check_user_id(self, user_id: str, field: str = "user_id") -> str:
        """``user_id`` unchanged, or InvalidInput when it looks like personal data.

        Refused, not cleaned: an id is a join key, so redacting it would merge every "<EMAIL>" user into
        one, and pseudonymizing it here would still leave the raw value in URLs, access logs and the
        client's next call (export, erasure), which the screen never sees. Only the client can send an
        id that carries no one's e-mail, phone, ID or card number, so it is told to. The id is checked in
        its NFKC form, also with its separators read as spaces ("wx-13812345678"), and returned as given
        so every route keeps meaning the same user. Numeric ids shaped like a phone or a card number are
        refused too: the patterns cannot tell them apart, and a pseudonymous id need not be numeric.
        Presidio, when enabled, is not asked: it reads random ids as names.

        An id that passed is remembered (the last :data:`PASSED_IDS` of them), and passes again without a
        scan: a product sends the same users' ids with every call, and the scan cost tens of microseconds
        of each predict. That is safe because the verdict depends on nothing but the id as given and the
        screen's pattern detectors, which are pure functions of the text; the remembered ids are bound to
        the policy and detectors they passed under (by identity: both are immutable), so a screen given
        another policy or other detectors forgets them all and checks every id afresh. Only passes are
        remembered: a refused id is scanned, counted and refused every time, and nothing about a refusal is
        kept. The ids are held in this process's memory only, as the request that brought each already held
        it, never written or logged; they are ids the screen accepted as pseudonymous. An erased user's id
        stays until it is pushed out or the process ends: it is a string the store no longer joins to anything.
        """
        policy, detectors = self.policy, self.detectors  # read once: the verdict is remembered under these
        with self._passed_lock:
            under = self._passed_under
            if (under is not None and under[0] is policy and under[1] is detectors
                    and user_id in self._passed):
                self._passed.move_to_end(user_id)
                return user_id
        patterns = [d for d in detectors if not isinstance(d, PresidioDetector)]
        plain = normalize(user_id)
        findings = detect(plain, patterns) or detect(_ID_SEPARATORS.sub(" ", plain), patterns)
        if findings:
            for f in findings:
                self._count(f.type, "reject")
            # The value is never echoed: the message would carry the very data it refuses.
            raise InvalidInput("looks like personal data (an e-mail address, phone, ID, card or account "
                               "number); send a pseudonymous id instead, such as a random UUID or a keyed hash "
                               "of your own user key", field)
        with self._passed_lock:
            under = self._passed_under
            if under is None or under[0] is not policy or under[1] is not detectors:
                self._passed.clear()
                self._passed_under = (policy, detectors)
            self._passed[user_id] = None
            if len(self._passed) > PASSED_IDS:
                self._passed.popitem(last=False)
        return user_id

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
