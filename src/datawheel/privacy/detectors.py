"""PII detection for the privacy screen: every text field is scanned before it is stored.

The detectors are patterns plus validation, not a language model: they run on
the request path of every write, so they must be cheap (regexes compiled once
at import, a detector skips a text that cannot hold its type) and they must be
precise, because a false alarm rewrites a user's words and a miss puts raw
personal data on disk. Where an identifier has a check digit it is verified,
so prices, dates, order numbers and timestamps are not mistaken for IDs.

Chinese text has no spaces between words, so boundaries are digit or ASCII
lookarounds, never ``\\b``: "电话13812345678联系" holds a phone number.

Microsoft Presidio finds what patterns cannot (names, places) and is
available as :class:`PresidioDetector`, off by default, for workspaces that
install it.
"""

from __future__ import annotations

import bisect
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from datawheel.errors import ConfigError
from datawheel.privacy.checksums import IBAN_LENGTHS, card_iin_ok, cn_id_birth_date, cn_id_ok, iban_ok, luhn_ok


@dataclass(frozen=True)
class Finding:
    type: str
    start: int
    end: int  # text[start:end] is the value


class Detector(Protocol):
    type: str

    def find(self, text: str) -> list[Finding]: ...


def _digits(text: str) -> int:
    return sum(map(text.count, "0123456789"))


def _resolve(findings: Iterable[tuple[int, Finding]]) -> list[Finding]:
    """Non-overlapping findings by start; on overlap the longer span wins, on a tie the lower rank.

    Kept spans stay sorted and disjoint, so one bisection finds the only neighbour that could overlap:
    a log dump with thousands of addresses costs n log n, not n squared.
    """
    kept: list[Finding] = []
    starts: list[int] = []
    for _, f in sorted(findings, key=lambda rf: (rf[1].start - rf[1].end, rf[0], rf[1].start)):
        i = bisect.bisect_left(starts, f.end)
        if i and kept[i - 1].end > f.start:
            continue
        starts.insert(i, f.start)
        kept.insert(i, f)
    return kept


class _PatternDetector:
    """One type, one or more patterns; ``valid`` vets each candidate and may narrow it to a sub-span."""

    type = ""
    patterns: tuple[re.Pattern[str], ...] = ()

    def applies(self, text: str) -> bool:
        return True

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        return m.span()

    def find(self, text: str) -> list[Finding]:
        if not self.applies(text):
            return []
        found = []
        for rank, pattern in enumerate(self.patterns):
            for m in pattern.finditer(text):
                span = self.valid(m, text)
                if span is not None:
                    found.append((rank, Finding(self.type, *span)))
        return _resolve(found) if len(self.patterns) > 1 else [f for _, f in found]


class EmailDetector(_PatternDetector):
    type = "EMAIL"
    patterns = (re.compile(
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
        r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"),)

    def applies(self, text: str) -> bool:
        return "@" in text


_EXT = r"(?:\s?(?:ext\.?|x|extension|#)\s?\d{1,6})?"
_EXT_START = re.compile(r"\s?(?:ext|x|#)", re.IGNORECASE)
# A phone number is not a piece of a longer dotted or dashed number, nor the tail of an identifier ("ORD-...").
_PHONE_BEFORE = r"(?<![0-9A-Za-z+#])(?<!\d[.-])(?<![0-9A-Za-z][-_/])"
# The nearest cue before a bare run of digits says what it numbers.
_CUES = re.compile(r"(?P<phone>phone|call|\btel\b|mobile|\bcell|fax|sms|\btext|whatsapp|contact|reach|dial"
                   r"|my number|电话|手机|联系|致电|拨打|来电|热线)"
                   r"|(?P<barcode>barcode|\bean|\bupc|\bgtin|\bisbn|条码|条形码)"
                   r"|order|invoice|serial|account|\bacct|\bcard|tracking|ticket|\bsku|batch|\bref\b|reference|\bid\b"
                   r"|\bno\.|编号|订单|单号|账号|帐号|流水|批次|序列|工号|学号|证号|卡号", re.IGNORECASE)


def _cue_before(text: str, start: int) -> re.Match[str] | None:
    """The nearest cue since the previous number or sentence break ("订单16012；call 4155552671")."""
    lo = max(0, start - 32)
    for i in range(start - 1, lo - 1, -1):
        if text[i].isdigit() or text[i] in "\n.;!?。；！？":
            lo = i + 1
            break
    found = None
    for found in _CUES.finditer(text, lo, start):  # noqa: B007 - the last cue before the number is the one
        pass
    return found


class PhoneDetector(_PatternDetector):
    """International numbers, North-American numbers and mainland-China mobiles and landlines.

    A bare run of digits (4155552671, 13812345678) is a phone unless the nearest cue before it names
    something else ("order", "serial", "编号"): people label their order numbers, and write phones bare.
    """

    type = "PHONE"
    patterns = (
        # +CC or 00CC, then digit groups; the digit count is checked against E.164 in valid()
        re.compile(_PHONE_BEFORE + r"(?:\+|(?<!\d )00)[1-9]\d{0,2}(?:[ .-]?\(0\))?"
                   r"[ .-]?(?:\(\d{1,5}\)[ .-]?)?\d{1,12}(?:[ .-]\d{1,12}){0,6}" + _EXT + r"(?![0-9])(?![.-]\d)",
                   re.IGNORECASE),
        re.compile(_PHONE_BEFORE + r"(?:(?:\+?1|001)[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])"
                   r"[2-9]\d{2}[ .-]\d{4}" + _EXT + r"(?![0-9])(?![.-]\d)", re.IGNORECASE),
        re.compile(_PHONE_BEFORE + r"(?:(?:\+86|0086)[ -]?)?1[3-9]\d"
                   r"(?:\d{8}(?![0-9A-Za-z])(?![.,]\d)|(?P<s>[ -])\d{4}(?P=s)\d{4}(?![0-9])(?!-\d))"),
        re.compile(r"(?<![0-9A-Za-z+#-])0[1-9]\d{1,2}-[2-9]\d{6,7}(?![0-9-])"),  # 010-12345678
        re.compile(_PHONE_BEFORE + r"(?:\+?1)?[2-9]\d{2}[2-9]\d{6}" + _EXT + r"(?![0-9A-Za-z])(?![.,]\d)",
                   re.IGNORECASE),
    )

    def applies(self, text: str) -> bool:
        return _digits(text) >= 7

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        value = m.group()
        if m.re is self.patterns[0]:
            main = _EXT_START.split(value.replace("(0)", ""), maxsplit=1)[0]
            if not 8 <= _digits(main) - 2 * main.startswith("00") <= 15:  # E.164, after the + or 00
                return None
        if value.isdigit() or (m.re is self.patterns[4] and not value.startswith("+")):
            cue = _cue_before(text, m.start())
            return m.span() if cue is None or cue.group("phone") else None
        return m.span()


class CnIdDetector(_PatternDetector):
    type = "CN_ID"
    patterns = (re.compile(r"(?<![0-9])[1-8]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
                           r"\d{3}[0-9Xx](?![0-9Xx])"),)

    def applies(self, text: str) -> bool:
        return _digits(text) >= 17

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        return m.span() if cn_id_ok(m.group()) else None


class CardDetector(_PatternDetector):
    type = "CARD"
    # plain, in fours with a shorter tail (4-4-4-4, 4-4-5), or 4-6-5 / 4-6-4 (Amex, Diners)
    patterns = (re.compile(r"(?<![0-9A-Za-z])(?<!\d[ .,-])(?:\d{13,19}|\d{4}(?P<s>[ -])(?:\d{4}(?P=s)){0,3}\d{1,6}"
                           r"|\d{4}(?P<t>[ -])\d{6}(?P=t)\d{4,5})(?![0-9A-Za-z])(?![ .,-]\d)"),)

    def applies(self, text: str) -> bool:
        return _digits(text) >= 13

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        digits = m.group().replace(" ", "").replace("-", "")
        if len(digits) == 18 and cn_id_birth_date(digits) is not None:
            return None  # shaped like a resident ID with a wrong check digit: a mistyped ID, not a card
        if digits == m.group() and (cue := _cue_before(text, m.start())) and cue.group("barcode"):
            return None  # "EAN 4006381333931": one barcode in ten also passes Luhn
        return m.span() if 13 <= len(digits) <= 19 and card_iin_ok(digits) and luhn_ok(digits) else None


class IbanDetector(_PatternDetector):
    """Compact or grouped in fours; the country's registered length decides where the IBAN ends,
    so a word that follows a grouped IBAN ("... 00 EUR") is not swallowed into it."""

    type = "IBAN"
    patterns = (re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}"
                           r"(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)(?![A-Za-z0-9])"),)

    def applies(self, text: str) -> bool:
        return _digits(text) >= 2  # the check digits; some BBANs are mostly letters

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        value = m.group()
        length = IBAN_LENGTHS.get(value[:2])
        compact = value.replace(" ", "")
        if length is None or len(compact) < length:
            return None
        end, seen = 0, 0
        while seen < length:  # the span that holds exactly `length` characters
            seen += value[end] != " "
            end += 1
        if end < len(value) and value[end] != " ":
            return None
        return (m.start(), m.start() + end) if iban_ok(compact[:length]) else None


class IpDetector(_PatternDetector):
    type = "IP"
    _octet = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    patterns = (
        # not a version: "1.2.3.4.5", "v1.2.3.4", "Firefox/1.9.7.20", "rv:1.9.7.20"
        re.compile(rf"(?<![0-9A-Za-z.])(?<![A-Za-z]/)(?<!rv:)(?:{_octet}\.){{3}}{_octet}(?![0-9])(?!\.\d)"),
        re.compile(r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{1,4}|:)?(?::[0-9A-Fa-f]{0,4}){2,7}"
                   r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z:]|\.\d)"),
    )

    def applies(self, text: str) -> bool:
        return "." in text or ":" in text

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        if m.re is self.patterns[0]:
            return m.span()
        value = m.group().split("%")[0]
        if not any(c.isdigit() for c in value):  # "a::b" in code, "dead::beef"
            return None
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return None
        return m.span()


# A parameter named like a credential, alone or as the last word of a longer name ("X-Amz-Signature").
_SECRET_PARAM = (r"[A-Za-z0-9_.-]*?(?<![A-Za-z0-9])(?:access_token|token|api_?key|apikey|key|secret|password"
                 r"|passwd|pwd|sig|signature|auth|session|sessionid|sid|credential)")


class UrlSecretDetector(_PatternDetector):
    """A URL that carries a password or a token is a secret as a whole: any part of it may grant access."""

    type = "URL_SECRET"
    patterns = (re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,15}://"
                           r"[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+"),)
    _credentials = re.compile(r"^[^:/]+://[^/?#@:]*:[^/?#@]+@")
    _param = re.compile(rf"[?&;#]{_SECRET_PARAM}=[^&#;]", re.IGNORECASE)

    def applies(self, text: str) -> bool:
        return "://" in text

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        url = m.group()
        while url and url[-1] in ".,;:!?)]}" and not (url[-1] == ")" and url.count("(") >= url.count(")")):
            url = url[:-1]
        if self._credentials.match(url) or self._param.search(url):
            return m.start(), m.start() + len(url)
        return None


_ASCII_VALUE = r"[^\x00-\x20\"'<>,;\x7f-\U0010ffff]"  # case-sensitive: under re.I "k" would match the Kelvin sign


class SecretDetector(_PatternDetector):
    """Keys and tokens of the shapes the big providers issue, private keys, and ``password=...`` values."""

    type = "SECRET"
    patterns = (
        re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]{0,16384}?-----END [A-Z0-9 ]*PRIVATE KEY-----"
                   r"|(?:\s*[A-Za-z0-9+/=]{16,})+)"),
        re.compile(r"(?<![A-Za-z0-9_-])(?:"
                   r"(?:AKIA|ASIA)[A-Z0-9]{16}"
                   r"|gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255}"
                   r"|xox[baprs]-[A-Za-z0-9-]{10,}"
                   r"|sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"
                   r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}"
                   r"|AIza[0-9A-Za-z_-]{35}"
                   r"|eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}"
                   r")(?![A-Za-z0-9_-])"),
        # the name may end a longer one ("DB_PASSWORD", "client_secret"): "_" is no letter for the lookbehind
        re.compile(r"(?<![A-Za-z0-9])[\"']?(?i:password|passwd|pwd|secret|api_?key|apikey|token|private_key)[\"']?"
                   r"\s*(?P<op>[:=：])\s*(?P<q>[\"']?)(?P<v>" + _ASCII_VALUE + r"{3,})"
                   r"|(?:密码|口令)\s*(?P<op2>[:=：是为])\s*(?P<v2>" + _ASCII_VALUE + r"{3,})"),
    )

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        if m.re is not self.patterns[2]:
            value = m.group()
            if value.startswith("sk-") and not any(c.isdigit() for c in value):
                return None  # "sk-" and a hyphenated phrase is prose; keys mix letters and digits
            return m.span()
        group = "v" if m.group("v") else "v2"
        start, end = m.span(group)
        while end > start and text[end - 1] == ".":  # a sentence's full stop; a bracket may be part of it
            end -= 1
        value = text[start:end]
        if m.group("op") in (":", "：") and not m.group("q") and value.isalpha():
            return None  # "Password: reset by email" is prose; a quoted value, digits or symbols are a secret
        return (start, end) if end - start >= 3 else None


DEFAULT_DETECTORS: tuple[Detector, ...] = (
    EmailDetector(), PhoneDetector(), CnIdDetector(), CardDetector(), IbanDetector(), IpDetector(),
    UrlSecretDetector(), SecretDetector(),
)


def detect(text: str, detectors: Sequence[Detector] = DEFAULT_DETECTORS) -> list[Finding]:
    """All findings, sorted and non-overlapping: the longer span wins, on a tie the earlier detector."""
    return _resolve((rank, f) for rank, d in enumerate(detectors) for f in d.find(text))


class PresidioDetector:
    """Microsoft Presidio's analyzer (names, places, dates, ...) behind the same interface; findings keep
    Presidio's entity names (PERSON, LOCATION, EMAIL_ADDRESS, ...).

    Presidio would download a spaCy model on first use; the screen never reaches out to the network, so it
    uses an English pipeline that is already installed and refuses to start without one.
    """

    type = "PRESIDIO"
    _MODEL_PREFERENCE = ("lg", "md", "sm", "trf")

    def __init__(self, entities: Sequence[str] | None = None, language: str = "en", score_threshold: float = 0.5,
                 model: str | None = None) -> None:
        # tldextract (used by Presidio's e-mail check) otherwise fetches the public suffix list over the network.
        os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
        try:
            import spacy.util
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import NlpEngineProvider
        except ImportError:
            raise ConfigError("policy.presidio: Presidio is enabled but not installed; install presidio-analyzer "
                              "and a spaCy English model package, or set presidio = false") from None
        model = model or self._installed_model(spacy.util.get_installed_models(), language)
        if model is None:
            raise ConfigError(f"policy.presidio: no spaCy pipeline for language {language!r} is installed; "
                              "install one (a package providing e.g. en_core_web_sm) or set presidio = false")
        nlp = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "spacy", "models": [{"lang_code": language, "model_name": model}]}).create_engine()
        self._engine: Any = AnalyzerEngine(nlp_engine=nlp, supported_languages=[language])
        self.entities = list(entities) if entities else None
        self.language = language
        self.score_threshold = score_threshold
        self.model = model

    @classmethod
    def _installed_model(cls, installed: Iterable[str], language: str) -> str | None:
        names = sorted(n for n in installed if n.startswith(f"{language}_core_web_"))
        for size in cls._MODEL_PREFERENCE:
            for name in names:
                if name.startswith(f"{language}_core_web_{size}"):
                    return name
        return names[0] if names else None

    def find(self, text: str) -> list[Finding]:
        results = self._engine.analyze(text=text, language=self.language, entities=self.entities,
                                       score_threshold=self.score_threshold)
        return [Finding(r.entity_type, r.start, r.end) for r in results]
