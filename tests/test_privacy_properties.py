"""The privacy screen as a whole: properties over generated text, and its contract for metadata and user ids.

The personal data comes from Faker (every card type, GB 11643 resident IDs, mobiles, E.164 numbers, IBANs,
e-mails), not from the detectors' own arithmetic. Hypothesis picks the seeds, how each value is disguised
(full-width, zero-width characters between the digits, grouped by spaces or dashes) and the English and
Chinese text around it.
"""

from __future__ import annotations

import re
import unicodedata
import uuid

import pytest
from faker import Faker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datawheel.errors import InvalidInput, PolicyRejected
from datawheel.privacy.policy import Policy
from datawheel.privacy.screen import Screen, normalize

SCREENS = {"redact": Screen(Policy(), "test-key"),
           "pseudonymize": Screen(Policy(default="pseudonymize", pii={}), "test-key")}
FAKE = {loc: Faker(loc) for loc in ("en_US", "zh_CN", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES")}
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
# Card types whose every Faker number is in an issued range, so they are found with no cue at all.
ISSUED_CARD_TYPES = ("visa", "visa13", "visa16", "visa19", "mastercard", "amex", "discover", "diners", "jcb15")
ALL_CARD_TYPES = (*ISSUED_CARD_TYPES, "maestro", "jcb", "jcb16")
CARD_CUES = ("card number: ", "paid with ", "my debit card ", "Visa ", "卡号", "银行卡", "信用卡：", "这张卡 ")

# Filler with no cue word in it (no "order", "编号", "卡", "id", "password"...), so nothing in it renames a value.
EN_WORDS = ("hello", "thanks", "please", "see", "the", "weather", "is", "good", "we", "met", "today", "great",
            "product", "love", "it", "ｆｕｌｌ", "ｗｉｄｔｈ", "naïve", "café")
ZH_WORDS = ("你好", "谢谢", "请", "今天", "我们", "见面", "很好", "明天", "天气", "产品", "喜欢", "东西")
# A Persian ZWNJ, an emoji ZWJ sequence, compatibility forms NFKC rewrites ("Ⅻ" -> "XII", "㎏" -> "kg")
OTHER_WORDS = ("می\u200cخواهم", "👩\u200d💻", "😀", "Ⅻ", "ﬁne", "㎏")
WORD_GLUE = (" ", "，", "。", "！", "\n", "、")


def faker(locale: str, seed: int) -> Faker:
    fake = FAKE[locale]
    fake.seed_instance(seed)
    return fake


def group(value: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for size in sizes:
        out.append(value[i:i + size])
        i += size
    return sep.join([*out, value[i:]] if value[i:] else out)


def card_groups(number: str) -> tuple[int, ...]:
    return (4, 6) if len(number) in (14, 15) else (4,) * ((len(number) - 1) // 4)


@st.composite
def pii_values(draw: st.DrawFn) -> tuple[str, str, str]:
    """(kind, the text as typed with its cue, the value's canonical form) of one piece of personal data."""
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["CARD", "CARD_NAMED", "CN_ID", "MOBILE", "E164", "EMAIL", "IBAN"]))
    sep = draw(st.sampled_from(["", " ", "-", "\u2013", "\u3000"]))  # en dash, ideographic space
    if kind in ("CARD", "CARD_NAMED"):
        types = ISSUED_CARD_TYPES if kind == "CARD" else ALL_CARD_TYPES
        value = faker("en_US", seed).credit_card_number(draw(st.sampled_from(types)))
        shown = group(value, card_groups(value), sep) if sep else value
        cue = draw(st.sampled_from(CARD_CUES)) if kind == "CARD_NAMED" else draw(st.sampled_from(["", "see "]))
    elif kind == "CN_ID":
        value = faker("zh_CN", seed).ssn()
        shown = group(value, draw(st.sampled_from([(6, 8), (6, 4, 4)])), sep) if sep in ("", " ", "-") else value
        cue = draw(st.sampled_from(["", "身份证号", "ID "]))
    elif kind == "MOBILE":
        value = faker("zh_CN", seed).phone_number()
        shown = group(value, (3, 4), sep) if sep in ("", " ", "-") else value
        cue = draw(st.sampled_from(["", "电话", "call ", "手机："]))
    elif kind == "E164":
        loc = draw(st.sampled_from(["en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "zh_CN"]))
        value = e164(loc, seed)
        shown, cue = value, draw(st.sampled_from(["", "call ", "电话"]))
    elif kind == "EMAIL":
        value = draw(st.sampled_from([faker("en_US", seed).email(), faker("zh_CN", seed).email()]))
        shown, cue = value, draw(st.sampled_from(["", "mail ", "邮箱"]))
    else:
        value = faker(draw(st.sampled_from(["en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES"])), seed).iban()
        shown = group(value, (4,) * ((len(value) - 1) // 4), " ") if sep == " " else value
        cue = draw(st.sampled_from(["", "IBAN "]))
    return kind, cue + disguise(draw, shown), value


def e164(locale: str, seed: int) -> str:
    """A Faker number of the locale as E.164: "+", country code, national number without the trunk "(0)"."""
    fake = faker(locale, seed)
    if locale == "zh_CN":
        return "+86" + fake.phone_number()
    number = fake.phone_number()
    while not number.startswith("+"):  # the locale's national formats have no country code to keep
        number = fake.phone_number()
    return "+" + re.sub(r"\D", "", number.replace("(0)", ""))


def disguise(draw: st.DrawFn, shown: str) -> str:
    """Full-width digits and letters, and zero-width characters after some of the digits."""
    if draw(st.booleans()):
        shown = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in shown)
    marks = draw(st.lists(st.sampled_from(["", *ZERO_WIDTH]), min_size=len(shown), max_size=len(shown)))
    return "".join(c + m if c.isdigit() else c for c, m in zip(shown[:-1], marks)) + shown[-1]


def filler(zh: bool) -> st.SearchStrategy[str]:
    """Words that hold no personal data and no cue; a small number only between two words."""
    words = st.sampled_from(ZH_WORDS if zh else EN_WORDS + OTHER_WORDS)
    piece = st.one_of(words, st.tuples(words, st.integers(0, 999), words).map(lambda t: f"{t[0]} {t[1]} {t[2]}"))
    return st.lists(piece, min_size=1, max_size=4).map(("" if zh else " ").join)


@st.composite
def texts_with_pii(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    """Filler, value, filler, ...: each value set off by a space or Chinese punctuation, or glued to Chinese."""
    values = draw(st.lists(pii_values(), min_size=1, max_size=3))
    parts = []
    for _kind, typed, _value in values:
        zh = draw(st.booleans())
        parts.append(draw(filler(zh)))
        parts.append(draw(st.sampled_from(WORD_GLUE[:-1] + (("",) if zh else ()))))
        parts.append(typed)
        parts.append(draw(st.sampled_from(WORD_GLUE)))
    parts.append(draw(filler(draw(st.booleans()))))
    return "".join(parts), [(kind, value) for kind, _, value in values]


def digits_only(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", text) if c.isdigit())


@pytest.mark.parametrize("policy", sorted(SCREENS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=texts_with_pii())
def test_no_personal_data_survives_cleaning(policy, case):
    """Whatever the disguise, after clean_text no value is left: not its digits, not its address."""
    text, values = case
    out = SCREENS[policy].clean_text(text, "t")
    for kind, value in values:
        if kind == "EMAIL":
            assert value.lower() not in out.lower(), (text, out)
        else:
            assert digits_only(value) not in digits_only(out), (text, out)


@pytest.mark.parametrize("policy", sorted(SCREENS))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=texts_with_pii())
def test_cleaning_is_idempotent(policy, case):
    """A cleaned text is clean: a second pass finds nothing more and changes nothing."""
    once = SCREENS[policy].clean_text(case[0], "t")
    assert SCREENS[policy].clean_text(once, "t") == once


@st.composite
def safe_texts(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(st.tuples(filler(draw(st.booleans())), st.sampled_from(WORD_GLUE)), max_size=6))
    return "".join(a + b for a, b in pieces)


@settings(max_examples=150, deadline=None)
@given(text=safe_texts())
def test_text_without_personal_data_comes_back_as_its_nfkc_form(text):
    """Nothing to replace: the text is only normalized (a Persian ZWNJ and an emoji ZWJ sequence included)."""
    for screen in SCREENS.values():
        assert screen.clean_text(text, "t") == unicodedata.normalize("NFKC", text)


# --- The screen's contract for each kind of field -------------------------------------------------------------

SCREEN = SCREENS["redact"]


def test_every_clean_method_normalizes_first():
    """Comments, model names, items and metadata all go through the same normalization as text inputs."""
    card = "４１１１\u200b１１１１ １\ufeff１１１ １１１１"
    assert SCREEN.clean_text(f"card {card}", "t") == "card <CARD>"
    assert SCREEN.clean_optional("wrong, call １３\u200d８ 12\u200c34 5678", "comment") == "wrong, call <PHONE>"
    assert SCREEN.clean_optional(None, "comment") is None
    assert SCREEN.clean_item(f"卡号{card}", "input.text") == "卡号<CARD>"
    assert SCREEN.clean_item(b"\x89PNG", "input.image") == b"\x89PNG"
    assert SCREEN.clean_text("ｆｕｌｌ ｗｉｄｔｈ", "t") == "full width"


def test_metadata_keys_values_and_numbers_are_cleaned():
    """Keys are cleaned like values; a key names what its value is; an integer can be a phone or a card."""
    meta = {"phone １３８１２３４５６７８": "x", "card_number": "5038 9141 7779", "note": "mail ａ@example.org",
            "mobile": 13812345678, "card": 4111111111111111, "count": 3, "ok": True, "ratio": 0.5, "none": None}
    assert SCREEN.clean_meta(meta) == {
        "phone <PHONE>": "x", "card_number": "<CARD>", "note": "mail <EMAIL>", "mobile": "<PHONE>", "card": "<CARD>",
        "count": 3, "ok": True, "ratio": 0.5, "none": None}
    assert SCREEN.clean_meta(None) is None


def test_metadata_errors_name_the_cleaned_key_not_the_raw_one():
    """A refused value is named by its key as stored, so a key holding a phone number is not quoted back."""
    screen = Screen(Policy(pii={"EMAIL": "reject"}), "k")
    with pytest.raises(PolicyRejected) as err:
        screen.clean_meta({"contact 13812345678": "li.wei@example.org"})
    assert "13812345678" not in str(err.value) and "li.wei" not in str(err.value)
    assert "metadata.contact <PHONE>" in str(err.value)


PII_USER_IDS = [
    "alice.smith@example.com", "ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "li.wei+shop@mail.example.cn",
    "11010519491231002X", "11010519491231002x", "+8613812345678", "13812345678", "wx-13812345678",
    "user.13812345678", "+442074960074", "4111111111111111", "DE89370400440532013000", "192.168.1.10",
    "１３８１２３４５６７８", "138\u200b1234\u200b5678",
]


@pytest.mark.parametrize("user_id", [*PII_USER_IDS, FAKE["en_US"].email(), FAKE["zh_CN"].ssn()])
def test_user_ids_shaped_like_personal_data_are_refused_without_echoing_them(user_id):
    """An e-mail, phone, resident ID, card, IBAN or IP as a user id is refused (422) with a message that asks
    for a pseudonymous id and never repeats the value."""
    with pytest.raises(InvalidInput) as err:
        SCREEN.check_user_id(user_id)
    assert err.value.field == "user_id" and err.value.status_code == 422
    assert "pseudonymous" in str(err.value)
    assert user_id not in str(err.value) and normalize(user_id) not in str(err.value)
    with pytest.raises(InvalidInput) as err:
        SCREEN.check_user_id(user_id, "path.user_id")
    assert err.value.field == "path.user_id"


@pytest.mark.parametrize("user_id", ["user_42", "u-0001", "alice", "42", "1000234", "auth0|5f7c8ec7c33c6c004bbafe82",
                                     "5d41402abc4b2a76b9719d911017c592", "Zk3q9XrT1mWc8Lp2Vb7Ns0", "客户_7"])
def test_pseudonymous_user_ids_are_accepted_unchanged(user_id):
    assert SCREEN.check_user_id(user_id) == user_id


@settings(max_examples=200, deadline=None)
@given(user_id=st.uuids(version=4).map(str))
def test_uuids_are_accepted_unchanged(user_id):
    """The id a client is told to send instead is never refused."""
    assert SCREEN.check_user_id(user_id) == user_id


def test_a_refused_user_id_is_counted_but_not_logged():
    """The metrics hook learns the type and the refusal; nothing else is passed out."""
    seen: list[tuple[str, str]] = []
    screen = Screen(Policy(), "k", on_finding=lambda t, a: seen.append((t, a)))
    with pytest.raises(InvalidInput):
        screen.check_user_id("alice.smith@example.com")
    assert seen == [("EMAIL", "reject")]
    assert screen.check_user_id(str(uuid.UUID(int=7))) == str(uuid.UUID(int=7))


def test_a_value_next_to_another_is_cleaned_in_the_same_call():
    """A card right after a phone looks like the tail of one long number until the phone is a placeholder;
    the screen repeats detection, so no raw value is left for a second call to find."""
    for policy in SCREENS.values():
        out = policy.clean_text("13812345678 4111111111111111", "t")
        assert digits_only(out) == "" and policy.clean_text(out, "t") == out


def test_a_metadata_key_can_name_a_value_but_never_hide_one():
    """"card_number" makes a 12-digit Maestro a card; "order" does not make a mobile number stop being one."""
    assert SCREEN.clean_meta({"card_number": "5038 9141 7779", "order": "13812345678", "ref": "503891417779"}) == {
        "card_number": "<CARD>", "order": "<PHONE>", "ref": "503891417779"}
