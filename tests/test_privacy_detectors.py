"""The PII detectors: every valid value is found with its exact span, checksum failures and look-alikes are not."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datawheel.errors import ConfigError
from datawheel.privacy.checksums import (
    card_iin_ok,
    gb11643_check_char,
    iban_check_digits,
    iban_ok,
    luhn_check_digit,
    luhn_ok,
)
from datawheel.privacy.detectors import DEFAULT_DETECTORS, Detector, Finding, PresidioDetector, detect

DIGITS = "0123456789"
UPPER_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + DIGITS
EN_BEFORE = ["", "Hello,", "As discussed,", "Please see", "thanks for the update:", "Note -"]
EN_AFTER = ["", ".", ", thanks!", "and that is all", "(see above)", "; regards"]
# Chinese filler with no cue that would name a bare number as something other than a phone (编号, 订单, 卡号).
ZH = st.text(alphabet="你好谢谢请我的是在这里收到今天明天", min_size=1, max_size=6)


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=DIGITS, min_size=n, max_size=n)


@st.composite
def cn_ids(draw: st.DrawFn) -> str:
    area = draw(st.integers(100000, 899999))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date.today()))
    body = f"{area}{born:%Y%m%d}{draw(st.integers(0, 999)):03d}"
    check = gb11643_check_char(body)
    return body + (check.lower() if check == "X" and draw(st.booleans()) else check)


# (prefix, lengths) covering every network the card detector knows
CARD_BRANDS = [("4", (13, 16, 19)), ("51", (16,)), ("55", (16,)), ("2221", (16,)), ("2720", (16,)), ("34", (15,)),
               ("37", (15,)), ("6011", (16, 19)), ("65", (16,)), ("644", (16,)), ("62", (16, 17, 18, 19)),
               ("3528", (16,)), ("3589", (16,)), ("36", (14,)), ("38", (14,)), ("300", (14,)), ("305", (14,))]


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A Luhn-valid number of a real network, plain or grouped as people type them."""
    prefix, lengths = draw(st.sampled_from(CARD_BRANDS))
    length = draw(st.sampled_from(lengths))
    body = prefix + draw(digits(length - len(prefix) - 1))
    number = body + luhn_check_digit(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    if not sep:
        return number
    cuts = (4, 10) if length in (14, 15) else tuple(range(4, length, 4))
    return sep.join(number[a:b] for a, b in zip((0, *cuts), (*cuts, None)))


# country: (IBAN length, letters at the start of the BBAN)
IBAN_COUNTRIES = {"DE": (22, 0), "GB": (22, 4), "FR": (27, 0), "ES": (24, 0), "IT": (27, 1), "NL": (18, 4),
                  "CH": (21, 0), "BE": (16, 0), "AT": (20, 0), "PL": (28, 0), "SE": (24, 0), "IE": (22, 4),
                  "PT": (25, 0)}


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(IBAN_COUNTRIES)))
    length, letters = IBAN_COUNTRIES[country]
    bban = draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=letters, max_size=letters))
    bban += draw(st.text(alphabet=UPPER_ALNUM if letters else DIGITS, min_size=length - 4 - letters,
                         max_size=length - 4 - letters))
    iban = country + iban_check_digits(country, bban) + bban
    if draw(st.booleans()):
        iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


@st.composite
def cn_mobiles(draw: st.DrawFn) -> str:
    number = "1" + draw(st.sampled_from("3456789")) + draw(digits(9))
    sep = draw(st.sampled_from(["", " ", "-"]))
    grouped = f"{number[:3]}{sep}{number[3:7]}{sep}{number[7:]}" if sep else number
    return draw(st.sampled_from(["", "+86", "+86 ", "0086 ", "+86-"])) + grouped


VALUES = {"CN_ID": cn_ids(), "CARD": card_numbers(), "IBAN": ibans(), "PHONE": cn_mobiles()}


def assert_found(text: str, value: str, kind: str) -> None:
    start = text.index(value)
    assert Finding(kind, start, start + len(value)) in detect(text), (text, detect(text))


def mutate(value: str, data: st.DataObject) -> str:
    i = data.draw(st.sampled_from([i for i, c in enumerate(value) if c.isdigit()]))
    return value[:i] + data.draw(st.sampled_from([d for d in DIGITS if d != value[i]])) + value[i + 1:]


def test_generators_make_valid_values():
    """The strategies' arithmetic agrees with the validators on known published examples."""
    assert gb11643_check_char("11010519491231002") == "X"
    assert luhn_ok("4111111111111111") and card_iin_ok("4111111111111111")
    assert iban_ok("DE89370400440532013000") and iban_check_digits("GB", "WEST12345698765432") == "82"


@pytest.mark.parametrize("kind", sorted(VALUES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_valid_values_found_exactly_in_english_filler(kind, data):
    """A valid value between English words is reported with its exact span and type."""
    value = data.draw(VALUES[kind])
    before, after = data.draw(st.sampled_from(EN_BEFORE)), data.draw(st.sampled_from(EN_AFTER))
    text = " ".join(p for p in (before, value, after) if p)
    assert_found(text, value, kind)


@pytest.mark.parametrize("kind", sorted(VALUES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_valid_values_found_when_glued_to_chinese(kind, data):
    """Chinese has no spaces: a value with Chinese characters touching both sides is still found exactly."""
    value = data.draw(VALUES[kind])
    assert_found(data.draw(ZH) + value + data.draw(ZH), value, kind)


@pytest.mark.parametrize("kind", ["CN_ID", "CARD", "IBAN"])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_one_digit_mutations_are_not_reported(kind, data):
    """Changing any one digit breaks the checksum, and the value is no longer reported as that type."""
    value = mutate(data.draw(VALUES[kind]), data)
    assert [f for f in detect(f"value {value} end") if f.type == kind] == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*"0123456789 .-+:@/abcxX电话号码", "+86", "AKIA", "://", "1381234", "4111"]),
               max_size=40).map("".join))
def test_findings_are_sorted_disjoint_and_inside_the_text(text):
    """Whatever the input, findings come sorted by start, never overlap, and lie within the text."""
    found = detect(text)
    assert all(0 <= f.start < f.end <= len(text) for f in found)
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))


LOOKALIKES = [
    "The total is $1,299.99 (¥8,999.00), paid on 2024-05-01.", "2024/05/01 12:30:45", "订单号20240501123456789",
    "Order ORD-20240501-7781 shipped", "order #100234567", "version 1.2.3.4.5 and v2.13.0", "ISBN 978-3-16-148410-0",
    "ISBN 9783161484100", "timestamp 1714521600 and 1714521600123", "quantity 4155552671 rows", "serial 12345678901",
    "account 123456789012", "20240501123000", "ts=2024-05-01T12:30:45.123Z", "tracking 1Z999AA10123456784",
    "pi is 3.14159265358979323846", "MAC 00:1A:2B:3C:4D:5E", "uuid 123e4567-e89b-12d3-a456-426614174000",
    "the ID 110105194912310021 is not valid",  # wrong check digit
    "card 4111 1111 1111 1112 declined", "IBAN DE89 3704 0044 0532 0130 01", "Barcode 4205540970523",
]


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalikes_are_not_ids_cards_or_ibans(text):
    """Prices, dates, order numbers, versions, ISBNs, timestamps and plain numbers give no CARD, CN_ID or IBAN."""
    assert [f for f in detect(text) if f.type in ("CARD", "CN_ID", "IBAN")] == []


@pytest.mark.parametrize("text", ["Paid $1,299.99 on 2024-05-01 at 12:30", "order #100234567 of 3 items",
                                  "Order ORD-415-555-2671", "serial number 13812345678", "商品编号13812345678",
                                  "batch 4155552671 done", "hash 4155552671abcdef"])
def test_labelled_and_embedded_numbers_are_not_phones(text):
    """A bare number named by its label ('serial', '编号') or embedded in an identifier is not a phone."""
    assert [f for f in detect(text) if f.type == "PHONE"] == []


EXAMPLES = [
    ("mail li.wei+news@mail.example.co.uk today", "EMAIL", "li.wei+news@mail.example.co.uk"),
    ("联系我abc@example.com谢谢", "EMAIL", "abc@example.com"),
    ("call +44 20 7946 0958 now", "PHONE", "+44 20 7946 0958"),
    ("office +1 (415) 555-2671 ext. 123, thanks", "PHONE", "+1 (415) 555-2671 ext. 123"),
    ("US 001-415-555-2671x12", "PHONE", "001-415-555-2671x12"),
    ("desk (415) 555-2671.", "PHONE", "(415) 555-2671"),
    ("desk 415-555-2671", "PHONE", "415-555-2671"),
    ("电话13812345678联系", "PHONE", "13812345678"),
    ("手机：+86 138-1234-5678", "PHONE", "+86 138-1234-5678"),
    ("Phone: 4155552671", "PHONE", "4155552671"),
    ("身份证11010519491231002X。", "CN_ID", "11010519491231002X"),
    ("card 4111 1111 1111 1111 exp 09/27", "CARD", "4111 1111 1111 1111"),
    ("amex 3782-822463-10005", "CARD", "3782-822463-10005"),
    ("IBAN DE89 3704 0044 0532 0130 00 EUR", "IBAN", "DE89 3704 0044 0532 0130 00"),
    ("pay GB82WEST12345698765432.", "IBAN", "GB82WEST12345698765432"),
    ("from 192.168.1.10, blocked", "IP", "192.168.1.10"),
    ("host 2001:db8:85a3::8a2e:370:7334 down", "IP", "2001:db8:85a3::8a2e:370:7334"),
    ("loopback ::1 only", "IP", "::1"),
    ("full 2001:0db8:0000:0000:0000:ff00:0042:8329 ok", "IP", "2001:0db8:0000:0000:0000:ff00:0042:8329"),
    ("db at postgresql://admin:s3cr%40t@db.internal:5432/app.", "URL_SECRET",
     "postgresql://admin:s3cr%40t@db.internal:5432/app"),
    ("see (https://api.example.com/v1/items?page=2&token=abc123def)", "URL_SECRET",
     "https://api.example.com/v1/items?page=2&token=abc123def"),
    ("key AKIAIOSFODNN7EXAMPLE leaked", "SECRET", "AKIAIOSFODNN7EXAMPLE"),
    ("gh ghp_" + "a1B2" * 9 + " here", "SECRET", "ghp_" + "a1B2" * 9),
    ("pat github_pat_11ABCDEFG0123456789abc_" + "x" * 59, "SECRET", "github_pat_11ABCDEFG0123456789abc_" + "x" * 59),
    ("slack xoxb-1234567890-1234567890-abcdefghijklmnop", "SECRET", "xoxb-1234567890-1234567890-abcdefghijklmnop"),
    ("openai sk-" + "Ab3" * 16, "SECRET", "sk-" + "Ab3" * 16),
    ("proj sk-proj-" + "x_Y-9" * 10, "SECRET", "sk-proj-" + "x_Y-9" * 10),
    ("stripe sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "SECRET", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("google AIzaSyA-1234567890abcdefghijklmnopqrstu ok", "SECRET", "AIzaSyA-1234567890abcdefghijklmnopqrstu"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmU", "SECRET",
     "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmU"),
    ("k -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY----- end", "SECRET",
     "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"),
    ("set password=hunter2 now", "SECRET", "hunter2"),
    ('{"api_key": "abcd1234efgh"}', "SECRET", "abcd1234efgh"),
    ("密码：Pa55w0rd，请保管", "SECRET", "Pa55w0rd"),
]


@pytest.mark.parametrize(("text", "kind", "value"), EXAMPLES, ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(EXAMPLES)])
def test_examples_of_each_type(text, kind, value):
    """Each supported shape is found as exactly one finding covering the value."""
    start = text.index(value)
    assert detect(text) == [Finding(kind, start, start + len(value))]


def test_email_inside_a_credential_url_is_one_finding():
    """The longer span wins an overlap: user:pass@host inside a URL is one URL_SECRET, not also an EMAIL."""
    text = "backup ftp://alice:s3cret@ftp.example.com/dump"
    assert detect(text) == [Finding("URL_SECRET", 7, len(text))]


def test_overlap_tie_goes_to_the_earlier_detector():
    """Two detectors reporting the same span: the one listed first keeps it; a longer span beats both."""
    class Fixed:
        def __init__(self, type_: str, start: int, end: int) -> None:
            self.type, self.span = type_, (start, end)

        def find(self, text: str) -> list[Finding]:
            return [Finding(self.type, *self.span)]

    detectors: list[Detector] = [Fixed("A", 2, 5), Fixed("B", 2, 5)]
    assert detect("0123456789", detectors) == [Finding("A", 2, 5)]
    assert detect("0123456789", [*detectors, Fixed("C", 1, 6)]) == [Finding("C", 1, 6)]


def test_prose_and_placeholders_are_left_alone():
    """Ordinary prose and the gate's own placeholders contain nothing, so cleaning twice changes nothing."""
    for text in ["Password: reset it by email", "use sk-learn pipelines", "std::vector<int> and a::b",
                 "write <EMAIL> or <PHONE:kdjfhgpalemc>, password=<SECRET>", "IP 10.0.0.256 is not an address"]:
        assert detect(text) == [], text


def test_default_detectors_cover_every_type():
    """One small detector per PII type, in the documented order."""
    assert [d.type for d in DEFAULT_DETECTORS] == ["EMAIL", "PHONE", "CN_ID", "CARD", "IBAN", "IP", "URL_SECRET",
                                                   "SECRET"]


def test_presidio_missing_is_a_config_error(monkeypatch):
    """Without presidio-analyzer, asking for the Presidio detector is a ConfigError that says what to install."""
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)
    with pytest.raises(ConfigError, match="install presidio-analyzer"):
        PresidioDetector()


def test_presidio_detector_when_available():
    """Presidio is off by default: absent, it refuses with ConfigError; installed, it reports EMAIL_ADDRESS."""
    if importlib.util.find_spec("presidio_analyzer") is None:
        with pytest.raises(ConfigError, match="presidio-analyzer"):
            PresidioDetector()
        return
    try:
        detector = PresidioDetector()
    except ConfigError as exc:  # installed without a spaCy English pipeline
        pytest.skip(str(exc))
    text = "write to li.wei@example.org please"
    assert Finding("EMAIL_ADDRESS", 9, 9 + len("li.wei@example.org")) in detector.find(text)
