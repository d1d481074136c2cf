"""PII detection for the privacy screen: every text field is scanned before it is stored.

The detectors are patterns plus validation, not a language model: they run on
the request path of every write, so they must be cheap (regexes compiled once
at import, a detector skips a text that cannot hold its type) and they must be
precise, because a false alarm rewrites a user's words and a miss puts raw
personal data on disk. Where an identifier has a check digit it is verified,
so prices, dates, order numbers and timestamps are not mistaken for IDs.

Chinese text has no spaces between words, so boundaries are digit or ASCII
lookarounds, never ``\\b``: "电话13812345678联系" holds a phone number.

The detectors see a folded view of the text (:func:`detection_view`): digits
of any script, full-width ASCII, dashes and spaces become their ASCII forms
one character for one, so "４１１１－１１１１…" is found and the spans still
point into the text as given. What cannot be folded in place (compatibility
forms, zero-width characters) is the screen's job before it calls
:func:`detect`.

Microsoft Presidio finds what patterns cannot (names, places) and is
available as :class:`PresidioDetector`, off by default, for workspaces that
install it.
"""

from __future__ import annotations

import bisect
import ipaddress
import os
import re
import unicodedata
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


class _Fold(dict[int, int]):
    """Code point -> its ASCII look-alike of the same length; filled on first sight of each character, up to
    a bound, so a client sending every code point cannot grow it without end."""

    def __missing__(self, cp: int) -> int:
        ch = chr(cp)
        decimal = unicodedata.decimal(ch, None)
        if cp < 128:
            out = cp
        elif decimal is not None:  # ４, ٤, ४, 𝟒: a card number typed in any script's digits
            out = 48 + decimal
        elif 0xFF01 <= cp <= 0xFF5E:  # full-width ASCII: ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ
            out = cp - 0xFEE0
        elif unicodedata.category(ch) == "Pd" or ch in "\u2212\ufe63":  # dashes and minus between digit groups
            out = 45
        elif unicodedata.category(ch) == "Zs":
            out = 32
        else:
            out = cp
        if len(self) < 50_000:
            self[cp] = out
        return out


_FOLD = _Fold()


def detection_view(text: str) -> str:
    """``text`` with look-alike digits, letters, dashes and spaces folded to ASCII, one character for one,
    so the patterns stay ASCII and every span found in the view is the same span in ``text``."""
    return text if text.isascii() else text.translate(_FOLD)


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

# Words that name a payment card, in English and Chinese; 卡 alone too ("工行卡", "这张卡").
_CARD_WORDS = (r"\bcard|\bvisa\b|\bmaster ?card|\bamex\b|\bamerican express|\bmaestro|\bjcb\b|\bunion ?pay"
               r"|\bdiners\b|银联|信用卡|银行卡|借记卡|储蓄卡|卡")
# The nearest cue before a bare run of digits says what it numbers. ASCII word boundaries: to Unicode, "好" is a
# word character, and "你好card number:" would have no boundary before "card".
_CUES = re.compile(r"(?P<phone>phone|call|\btel\b|mobile|\bcell|fax|sms|\btext|whatsapp|contact|reach|dial"
                   r"|my number|电话|手机|联系|致电|拨打|来电|热线)"
                   r"|(?P<barcode>barcode|\bean|\bupc|\bgtin|\bisbn|条码|条形码)"
                   r"|(?P<card>" + _CARD_WORDS + r"|\bpaid with|\bpay with|\bpaying with|卡号)"
                   r"|order|invoice|serial|account|\bacct|tracking|ticket|\bsku|batch|\bref\b|reference|\bid\b"
                   r"|\bno\.|编号|订单|单号|账号|帐号|流水|批次|序列|工号|学号|证号", re.IGNORECASE | re.ASCII)
# A card named right after the number: "the 5038 9141 7779 card", "6222…储蓄卡".
_CARD_AFTER = re.compile(r"[ \t]{0,2}(?:[(-][ \t]?)?(?:" + _CARD_WORDS + ")", re.IGNORECASE | re.ASCII)


def _run_digits(text: str, i: int, step: int) -> int:
    """Digits in the run of digits and single spaces or dashes that starts at ``text[i]`` and goes by ``step``."""
    n = 0
    while 0 <= i < len(text) and (text[i].isdigit() or (
            n and text[i] in " -" and 0 <= i + step < len(text) and text[i + step].isdigit())):
        n += text[i].isdigit()
        i += step
    return n


def _decimal_comma_after(text: str, end: int) -> bool:
    """A comma joins the number to a short one ("4155552671,00"): a decimal or thousands comma. A run of 7
    digits or more is the next item of a list ("13812345678，4111 1111 …" once NFKC has made "，" a ",")."""
    return text[end:end + 1] == "," and 0 < _run_digits(text, end + 1, 1) < 7


def _decimal_comma_before(text: str, start: int) -> bool:
    return start >= 2 and text[start - 1] == "," and 0 < _run_digits(text, start - 2, -1) < 7


def _cue_before(text: str, start: int) -> re.Match[str] | None:
    """The nearest cue since the previous number, placeholder or sentence break ("订单16012；call 4155552671").

    A placeholder ("<CARD>", "<CARD:kdjf…>") ends the search like the number it replaced did, so a cleaned
    text is judged as the raw one was and cleaning twice changes nothing.
    """
    lo = max(0, start - 32)
    for i in range(start - 1, lo - 1, -1):
        if text[i].isdigit() or text[i] in "\n.;!?。；！？>":
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
        # +CC or 00CC, then digit groups; the digit count is checked against E.164 in valid(). Not glued to
        # letters: "0049532011717b1" is the start of a hash, not a call to Germany.
        re.compile(_PHONE_BEFORE + r"(?:\+|(?<!\d )00)[1-9]\d{0,2}(?:[ .-]?\(0\))?"
                   r"[ .-]?(?:\(\d{1,5}\)[ .-]?)?\d{1,12}(?:[ .-]\d{1,12}){0,6}" + _EXT
                   + r"(?![0-9A-Za-z])(?![.-]\d)",
                   re.IGNORECASE),
        re.compile(_PHONE_BEFORE + r"(?:(?:\+?1|001)[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])"
                   r"[2-9]\d{2}[ .-]\d{4}" + _EXT + r"(?![0-9])(?![.-]\d)", re.IGNORECASE),
        re.compile(_PHONE_BEFORE + r"(?:(?:\+86|0086)[ -]?)?1[3-9]\d"
                   r"(?:\d{8}(?![0-9A-Za-z])(?!\.\d)|(?P<s>[ -])\d{4}(?P=s)\d{4}(?![0-9])(?!-\d))"),
        re.compile(r"(?<![0-9A-Za-z+#-])0[1-9]\d{1,2}-[2-9]\d{6,7}(?![0-9-])"),  # 010-12345678
        re.compile(_PHONE_BEFORE + r"(?:\+?1)?[2-9]\d{2}[2-9]\d{6}" + _EXT + r"(?![0-9A-Za-z])(?!\.\d)",
                   re.IGNORECASE),
    )

    def applies(self, text: str) -> bool:
        return _digits(text) >= 7

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        value = m.group()
        if m.re in (self.patterns[2], self.patterns[4]) and _decimal_comma_after(text, m.end()):
            return None  # "13812345678,00"
        if m.re is self.patterns[0]:
            main = _EXT_START.split(value.replace("(0)", ""), maxsplit=1)[0]
            if not 8 <= _digits(main) - 2 * main.startswith("00") <= 15:  # E.164, after the + or 00
                return None
        if value.isdigit() or (m.re is self.patterns[4] and not value.startswith("+")):
            cue = _cue_before(text, m.start())
            return m.span() if cue is None or cue.group("phone") else None
        return m.span()


class CnIdDetector(_PatternDetector):
    """Compact, or grouped as forms print it: 6-8-4 (area, birth date, sequence) or 6-4-4-4."""

    type = "CN_ID"
    _date = r"(?:19|20)\d{2}(?P=s)?(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
    patterns = (
        re.compile(r"(?<![0-9])[1-8]\d{5}(?P<s>)" + _date + r"\d{3}[0-9Xx](?![0-9Xx])"),
        re.compile(r"(?<![0-9])(?:(?<!\d[ -])|(?<=\d{7} ))[1-8]\d{5}(?P<s>[ -])" + _date
                   + r"(?P=s)\d{3}[0-9Xx](?![0-9Xx])(?![ -]\d)"),
    )

    def applies(self, text: str) -> bool:
        return _digits(text) >= 17

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        compact = m.group().replace(m.group("s"), "") if m.group("s") else m.group()
        return m.span() if cn_id_ok(compact) else None


class CardDetector(_PatternDetector):
    """A Luhn-valid number of 12 to 19 digits, plain or grouped as people type it.

    Named as a card ("card number", "paid with", "卡号", "… visa") it is a card whatever its prefix: Maestro
    issues 12-digit numbers, networks open new ranges, and a person who says "card" means it. Unnamed, it
    must also fall in an issued range (ISO/IEC 7812) with that range's length, because one number in ten
    passes Luhn and order numbers, invoices and barcodes are everywhere.
    """

    type = "CARD"
    # plain, or in groups with one kind of separator: 4-4-4-4, 4-4-4-4-3, 4-6-5 / 4-6-4 (Amex, Diners), UnionPay's
    # 6-13, or 8-4-4 where a zero-width character stood for a space; valid() counts the digits. Not a piece of a
    # longer grouped number, but a neighbour of 7 digits or more is the next item of a list of numbers.
    patterns = (re.compile(r"(?<![0-9A-Za-z])(?:(?<!\d[ .-])|(?<=\d{7} ))"
                           r"(?:\d{12,19}|\d{4,8}(?P<s>[ -])(?:\d{4,8}(?P=s)){0,3}\d{1,13})"
                           r"(?![0-9A-Za-z])(?![ .-]\d{1,6}(?!\d))"),)

    def applies(self, text: str) -> bool:
        return _digits(text) >= 12

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        digits = m.group().replace(" ", "").replace("-", "")
        if not (12 <= len(digits) <= 19 and luhn_ok(digits)):
            return None
        if _decimal_comma_before(text, m.start()) or _decimal_comma_after(text, m.end()):
            return None  # "3,1415926535897932"
        cue = _cue_before(text, m.start())
        if (cue and cue.group("card")) or _CARD_AFTER.match(text, m.end()):
            return m.span()
        if len(digits) == 18 and cn_id_birth_date(digits) is not None:
            return None  # shaped like a resident ID with a wrong check digit: a mistyped ID, not a card
        if digits == m.group() and cue and cue.group("barcode"):
            return None  # "EAN 4006381333931": one barcode in ten also passes Luhn
        return m.span() if card_iin_ok(digits) else None


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
        # may follow a label's colon ("IP:fe80::1", NFKC of "登录IP：…"), not a colon inside a longer address
        re.compile(r"(?<![0-9A-Za-z.])(?<![0-9A-Fa-f:.]:)(?:[0-9A-Fa-f]{1,4}|:)?(?::[0-9A-Fa-f]{0,4}){2,7}"
                   r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z:]|\.\d)"),
    )

    def applies(self, text: str) -> bool:
        return "." in text or ":" in text

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        if m.re is self.patterns[0]:
            return m.span()
        start = m.start()
        if m.group().startswith(":") and not m.group().startswith("::"):
            start += 1  # "地址:fe80::1": that colon is the label's
        value = text[start:m.end()].split("%")[0]
        if not any(c.isdigit() for c in value):  # "a::b" in code, "dead::beef"
            return None
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return None
        return start, m.end()


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
    # A word glued on by punctuation: NFKC turns "链接…；谢谢" / "…，then" into ASCII ";" and "," that URLs allow.
    _prose_tail = re.compile(r"[;,][A-Za-z]{2,}$")

    def applies(self, text: str) -> bool:
        return "://" in text

    def valid(self, m: re.Match[str], text: str) -> tuple[int, int] | None:
        url = m.group()
        while url and url[-1] in ".,;:!?)]}" and not (url[-1] == ")" and url.count("(") >= url.count(")")):
            url = url[:-1]
        if tail := self._prose_tail.search(url):
            url = url[:tail.start()]
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


def detect(text: str, detectors: Sequence[Detector] = DEFAULT_DETECTORS, context: str = "") -> list[Finding]:
    """All findings, sorted and non-overlapping: the longer span wins, on a tie the earlier detector.

    The detectors read :func:`detection_view`, so full-width and other-script digits are found; spans are
    the same in ``text``. ``context`` is read just before ``text`` for its cues (a metadata key such as
    "card_number: "): it can add findings in ``text``, never hide one, because a client chooses its keys
    and {"order": "13812345678"} must not keep a phone number.
    """
    found = [(rank, f) for rank, d in enumerate(detectors) for f in d.find(detection_view(text))]
    if context:
        n, view = len(context), detection_view(context + text)
        found += [(rank, Finding(f.type, max(f.start, n) - n, f.end - n))
                  for rank, d in enumerate(detectors) for f in d.find(view) if f.end > n]
    return _resolve(found)


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
