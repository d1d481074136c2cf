"""The PII detectors: every valid value is found with its exact span, checksum failures and look-alikes are not."""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
import unicodedata
import zlib
from datetime import date

import pytest
from faker import Faker
from faker.providers.credit_card import Provider as CardProvider
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
from datawheel.privacy.screen import normalize

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


# --- Values from outside this code: Faker's generators, checked against the networks' published rules ---------

FAKER_CARD_TYPES = sorted(CardProvider.credit_card_types)  # maestro, mastercard, visa13/16/19, amex, jcb15/16, ...
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")


def faker_for(name: str, locale: str = "en_US") -> Faker:
    fake = Faker(locale)
    fake.seed_instance(zlib.crc32(name.encode()))  # the same values on every run and every machine
    return fake


def full_width(value: str) -> str:
    """Digits and ASCII as a Chinese or Japanese input method types them: "４１１１", "＋８６"."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in value)


def zero_width_split(value: str, seed: int) -> str:
    """A zero-width character after every digit but the last: invisible to a reader, a wall to a regex."""
    marks = itertools.cycle(ZERO_WIDTH[seed % len(ZERO_WIDTH):] + ZERO_WIDTH[:seed % len(ZERO_WIDTH)])
    return "".join(c + next(marks) if c.isdigit() else c for c in value[:-1]) + value[-1]


def grouped(number: str, sep: str) -> str:
    """As printed on the card: Amex and Diners 4-6-5 / 4-6-4, the others in fours."""
    cuts = (4, 10) if len(number) in (14, 15) else tuple(range(4, len(number), 4))
    return sep.join(number[a:b] for a, b in zip((0, *cuts), (*cuts, None)))


def card_forms(number: str) -> list[str]:
    return [number, grouped(number, " "), grouped(number, "-"), full_width(grouped(number, " ")),
            grouped(number, "\u2013"), grouped(number, "\u3000")]  # en dash, ideographic space


def expected_without_cue(card_type: str, number: str) -> bool:
    """Whether a bare number of this Faker type is in a range its network issues at that length (ISO/IEC 7812
    ranges as the networks publish them). Maestro's 12 digits are issued but are not claimed unnamed: one
    12-digit number in ten passes Luhn. JCB issues 3528-3589; Faker's "jcb" draws any 35xx."""
    if card_type == "maestro":
        return len(number) >= 13
    if card_type in ("jcb", "jcb16"):
        return 3528 <= int(number[:4]) <= 3589
    return True


CARD_CUES = ["Card number: {v}", "{name} paid with {v} yesterday", "charge my debit card {v}, exp 09/27",
             "Maestro {v}", "refund the {v} card please", "卡号{v}，请退款", "银行卡：{v}", "信用卡{v}已挂失",
             "用这张卡{v}付款", "借记卡 {v}"]


@pytest.mark.parametrize("card_type", FAKER_CARD_TYPES)
def test_faker_cards_named_by_a_cue_are_found_in_every_form(card_type):
    """Every card type Faker makes, 12-digit Maestro and JCB's 35xx included, is found after (or before) a card
    cue: plain, grouped by spaces or dashes, full-width, with an en dash or an ideographic space."""
    fake = faker_for(card_type)
    for i in range(12):
        number = fake.credit_card_number(card_type)
        for form in card_forms(number):
            template = CARD_CUES[i % len(CARD_CUES)]
            text = template.format(v=form, name=fake.first_name())
            assert_found(text, form, "CARD")


@pytest.mark.parametrize("card_type", FAKER_CARD_TYPES)
def test_faker_cards_without_a_cue_are_found_when_in_an_issued_range(card_type):
    """Unnamed, a Luhn-valid number is a card only in a range its network issues; 12-digit Maestro numbers and
    JCB's unissued 35xx stay unflagged, like the order numbers they cannot be told from."""
    fake = faker_for(card_type + "-bare")
    for i in range(30):
        number = fake.credit_card_number(card_type)
        form = card_forms(number)[i % 4]
        text = f"{['see', '你好', 'thanks,'][i % 3]} {form} {['ok', '谢谢', 'then'][i % 3]}"
        cards = [text[f.start:f.end] for f in detect(text) if f.type == "CARD"]
        assert cards == ([form] if expected_without_cue(card_type, number) else []), (card_type, text)


@pytest.mark.parametrize("card_type", FAKER_CARD_TYPES)
def test_faker_cards_with_a_wrong_check_digit_are_not_cards_even_after_a_cue(card_type):
    """The cue widens the prefixes, never the checksum: a mistyped number after "card" is not reported."""
    fake = faker_for(card_type + "-typo")
    for _ in range(10):
        number = fake.credit_card_number(card_type)
        typo = number[:-1] + str((int(number[-1]) + 1) % 10)
        for text in (f"Card number: {typo}", f"卡号{grouped(typo, ' ')}"):
            assert [f for f in detect(text) if f.type == "CARD"] == [], text


@pytest.mark.parametrize("text", ["order 503891417779 shipped", "订单503891417779已发货", "Invoice 3503417684878707",
                                  "ref 676363170660, 3 items", "503891417779 rows scanned"])
def test_unnamed_luhn_valid_order_numbers_are_not_cards(text):
    """12-digit and 35xx numbers that pass Luhn are cards only when named: "order", "invoice" and nothing at all
    do not name them (the numbers here are Faker Maestro/JCB values)."""
    assert [f for f in detect(text) if f.type == "CARD"] == []


def cn_id_forms(value: str) -> list[str]:
    return [value, f"{value[:6]} {value[6:14]} {value[14:]}", f"{value[:6]}-{value[6:10]}-{value[10:14]}-{value[14:]}",
            full_width(value), value.lower()]


def test_faker_zh_cn_resident_ids_are_found_in_every_form():
    """Faker's zh_CN ``ssn()`` (GB 11643-1999 IDs) in Chinese and English text: compact, grouped 6-8-4 or
    6-4-4-4 as forms print them, full-width, and with a lower-case x."""
    fake = faker_for("cn-id", "zh_CN")
    for i in range(40):
        value = fake.ssn()
        for form in cn_id_forms(value):
            text = [f"身份证号{form}，姓名{fake.name()}", f"Passenger ID {form}.", f"证件号码：{form}"][i % 3]
            assert_found(text, form, "CN_ID")


E164_LOCALES = ("en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL", "pt_BR", "en_IN", "en_AU")


def faker_e164(n: int) -> list[str]:
    """International numbers from Faker's locales, rewritten to E.164: "+", country code, national number
    without the trunk "(0)" (Italy keeps its leading 0, as E.164 does); and mainland mobiles as +86."""
    out = []
    for loc in E164_LOCALES:
        fake = faker_for("e164", loc)
        while len(out) < n * (E164_LOCALES.index(loc) + 1):
            number = fake.phone_number()
            if number.startswith("+"):
                out.append("+" + re.sub(r"\D", "", number.replace("(0)", "")))
    zh = faker_for("e164", "zh_CN")
    return out + ["+86" + zh.phone_number() for _ in range(n)]


@pytest.mark.parametrize("value", faker_e164(6))
def test_faker_phone_numbers_in_e164_are_found_plain_and_full_width(value):
    """E.164 numbers ("+442074960074") are found between English or Chinese words, and typed full-width."""
    assert 8 <= len(value) - 1 <= 15
    for form in (value, full_width(value)):
        assert_found(f"call {form} today", form, "PHONE")
        assert_found(f"电话{form}联系", form, "PHONE")


def test_zero_width_characters_do_not_hide_numbers():
    """A zero-width space, joiner, word joiner or BOM between the digits of a card, an ID, a mobile or an E.164
    number is gone after the screen's normalization, and the number is found whole."""
    fake, zh = faker_for("zw"), faker_for("zw", "zh_CN")
    values = [("CARD", "card ", fake.credit_card_number(t)) for t in FAKER_CARD_TYPES]
    values += [("CN_ID", "身份证", zh.ssn()) for _ in range(5)]
    values += [("PHONE", "电话", zh.phone_number()) for _ in range(5)]
    values += [("PHONE", "call ", v) for v in faker_e164(1)]
    for i, (kind, cue, value) in enumerate(values):
        for form in (zero_width_split(value, i), zero_width_split(full_width(value), i)):
            text = normalize(f"{cue}{form} ok")
            assert text == unicodedata.normalize("NFKC", f"{cue}{value} ok"), repr(form)
            assert_found(text, value, kind)


def test_other_scripts_digits_are_read_as_digits():
    """Arabic-Indic, Devanagari and mathematical digits are digits to a reader, so to the detectors too; the
    span is the one in the text as given."""
    for digits in ("٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗"):
        value = "4111111111111111".translate(str.maketrans("0123456789", digits))
        assert_found(f"card {value} ok", value, "CARD")


# Shapes NFKC produces from Chinese punctuation ("，" -> ",", "：" -> ":", "；" -> ";"), and card groupings.
NORMALIZED_SHAPES = [
    ("13812345678,13912345678", [("PHONE", "13812345678"), ("PHONE", "13912345678")]),
    ("电话13812345678,卡号4111111111111111", [("PHONE", "13812345678"), ("CARD", "4111111111111111")]),
    ("4111111111111111 4012888888881881", [("CARD", "4111111111111111"), ("CARD", "4012888888881881")]),
    ("登录IP:2001:db8::8a2e:370:7334,时间", [("IP", "2001:db8::8a2e:370:7334")]),
    ("地址:fe80::1", [("IP", "fe80::1")]),
    ("链接:https://x.example.com/a?token=abc123;谢谢", [("URL_SECRET", "https://x.example.com/a?token=abc123")]),
    ("see https://x.example.com/a?token=abc123;then", [("URL_SECRET", "https://x.example.com/a?token=abc123")]),
    ("卡号622202 1234567890128", [("CARD", "622202 1234567890128")]),
    ("card 41111111 1111 1111", [("CARD", "41111111 1111 1111")]),
    ("身份证 110105 19491231 002X。", [("CN_ID", "110105 19491231 002X")]),
    ("pi 3,4111111111111111", []), ("total 4155552671,00 EUR", []), ("4111 1111 1111 1111 1", []),
    ("hash 0049532011717b14a9", []), ("time 12:30:45", []),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZED_SHAPES)
def test_shapes_after_normalization(text, expected):
    """A list of numbers joined by a comma is two numbers, a decimal comma is not a list, a label's colon does
    not glue to an address, a word after ";" is not part of a URL, and cards keep their common groupings."""
    assert [(f.type, text[f.start:f.end]) for f in detect(text)] == expected
