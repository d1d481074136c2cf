"""PII benchmark: datawheel's pattern detectors against Microsoft Presidio on one labelled corpus.

    python benchmarks/pii.py [--n 2000] [--seed 0] [--presidio-n N] [--presidio-threshold 0.0]

The corpus is made with Faker (en_US and zh_CN, plus other locales for
international phone numbers and IBANs): English and Chinese sentences with
embedded values of every type, and negative sentences full of look-alikes
(prices, dates, order numbers, versions, ISBNs, timestamps, one-digit
mutations of valid IDs and cards, Luhn-valid order numbers). Every card number
Faker makes is used: those outside the issued ranges (12-digit Maestro, JCB
"35xx" below 3528) only after a card cue, because without one datawheel does not
claim them on purpose. Some values are disguised as people and attackers type
them: full-width, or with zero-width characters between the digits.

Texts pass the screen's normalization (NFKC, invisible characters dropped)
before detection, as on the write path; the ground truth is the span of each
value in the normalized text, and a finding counts only with the exact span and
the right type. A last table checks user ids: PII-shaped ones must be refused,
pseudonymous ones accepted.

Needs ``faker``. Presidio is optional (``presidio-analyzer`` and a spaCy English
pipeline package); without it only datawheel's figures are printed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import json
import random
import string
import time
import uuid
from collections import Counter
from collections.abc import Callable
from urllib.parse import quote

from faker import Faker

from datawheel.errors import ConfigError, InvalidInput
from datawheel.privacy.checksums import card_iin_ok, gb11643_check_char, iban_ok, luhn_check_digit, luhn_ok
from datawheel.privacy.detectors import DEFAULT_DETECTORS, PresidioDetector, detect
from datawheel.privacy.policy import Policy
from datawheel.privacy.screen import Screen, normalize

TYPES = ("EMAIL", "PHONE", "CN_ID", "CARD", "IBAN", "IP", "URL_SECRET", "SECRET")
PRESIDIO_MAP = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CARD", "IBAN_CODE": "IBAN",
                "IP_ADDRESS": "IP"}
IBAN_LOCALES = ("de_DE", "en_GB", "fr_FR", "es_ES", "it_IT", "nl_NL", "de_CH", "nl_BE", "de_AT", "pl_PL", "en_IE",
                "pt_PT", "cs_CZ", "da_DK", "fi_FI", "no_NO", "sk_SK", "tr_TR")
INTL_PHONE_LOCALES = ("en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "en_IN")
B62 = string.ascii_letters + string.digits
FULL_WIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
# Card templates with no card cue: only numbers in an issued range are expected to be found there.
CUELESS = {"用{v}支付了订单{n}", "The deposit of {date} went through on {v}."}

# Templates: {v} is the value; {name}, {company}, {city}, {addr}, {date}, {n} are filler.
EN = {
    "EMAIL": ["Please send the invoice to {v} before {date}.", "{name} can be reached at {v}.",
              "Contact: {v} (sales, {company})", "I changed my login to {v}, can you update it?",
              "cc {v} on the thread about order {n}"],
    "PHONE": ["Call me at {v} after 6pm.", "My phone number is {v}.", "{name}, mobile {v}, lives in {city}.",
              "You can reach the front desk on {v}.", "Tel: {v} / {company}", "Please text me at {v} when you arrive.",
              "Contact {name} ({v}) about the delivery on {date}.", "{name}: {v}", "{v} is my husband's."],
    "CN_ID": ["My ID number is {v}, issued in {city}.", "Passenger {name}, ID {v}.", "Resident ID: {v}",
              "The form says {v} but my ID expired on {date}."],
    "CARD": ["Charge it to my card {v}, expiry 09/27.", "{name} paid with {v} on {date}.", "Card number: {v}",
             "Please refund the {v} card, order {n}.", "Maestro {v}, holder {name}", "my debit card is {v}",
             "The deposit of {date} went through on {v}."],
    "IBAN": ["Wire the deposit to {v} by {date}.", "Our account: {v} ({company})", "IBAN {v}, reference {n}.",
             "{name} asked to be paid into {v}."],
    "IP": ["Login from {v} was blocked on {date}.", "The server at {v} stopped responding.", "whitelist {v} please",
           "[{v}]:8443 refused the connection", "ssh admin@{v}",
           "Requests from {v} exceeded the limit of 300 per minute."],
    "URL_SECRET": ["The export is at {v} if you need it.", "Use {v} to pull the backup.", "Link: {v}",
                   "{name} shared {v} in the chat."],
    "SECRET": ["Here is the key {v}, please rotate it after {date}.", "export TOKEN={v}", "config: {v}",
               "Someone committed {v} to the repo."],
    "ASSIGN": ["password={v} for the staging box", "Set DB_PASSWORD={v} in the env file.",
               'json: {{"password": "{v}"}}', "api_key={v} works for the sandbox", "client_secret: '{v}'",
               "my password: {v} please don't share"],
}
ZH = {
    "EMAIL": ["请把发票发到{v}谢谢", "联系我{v}，{name}", "邮箱：{v}，{city}分公司", "{name}的邮箱是{v}。"],
    "PHONE": ["电话{v}联系", "我的手机号是{v}，请尽快回电", "{name}，手机{v}，住在{addr}", "有事请拨打{v}。",
              "联系方式：{v}（{company}）", "收件人{name}{v}{addr}"],
    "CN_ID": ["身份证号{v}，姓名{name}", "我的身份证是{v}。", "证件号码：{v}，住址{addr}", "{name}{v}已登记"],
    "CARD": ["我的卡号是{v}，请退款", "银行卡{v}，持卡人{name}", "用{v}支付了订单{n}", "信用卡：{v}",
             "借记卡{v}已挂失"],
    "IBAN": ["请汇款到{v}，谢谢", "收款账户{v}（{company}）"],
    "IP": ["服务器{v}无法访问", "登录IP：{v}，时间{date}"],
    "URL_SECRET": ["下载地址{v}请勿外传", "备份链接：{v}"],
    "SECRET": ["密钥{v}已泄露，请更换", "令牌：{v}"],
    "ASSIGN": ["密码：{v}，请保管好", "密码是{v}"],
}
NEGATIVE = [
    "The total is {price}, paid on {date}.", "Order {order} shipped on {date} from {city}.",
    "订单号{order}，金额{price_cn}，{date}发货。", "Upgrade to version {version} before {date}.",
    "ISBN {isbn}, {pages} pages, {price}.", "Logged at {ts} (unix), batch {n}.",
    "Serial number {ordinary}, quantity {qty}.", "商品编号{ordinary}，库存{qty}件",
    "Meeting at {clock} in room {room}.",
    "Tracking {tracking}, weight 2.5 kg, {date}.", "Invoice {invoice} for {company}, due {date}.",
    "The card ending in {last4} expires 09/27.", "Build {sha} passed in {secs}s.", "Request id {uuid}",
    "Read https://{domain}/docs/page?id={qty}&lang=en for details.", "See {plainurl} for the schedule.",
    "The old ID {bad_id} was rejected as invalid.", "Card {bad_card} was declined (invalid number).",
    "{name} lives at {addr}.", "{name}住在{addr_cn}，邮编{postcode}。", "Coordinates 39.9042, 116.4074 at {clock}.",
    "Tip: use sk-learn-compatible pipelines.", "Password reset link sent to the registered address.",
    "Call volume was {qty} on {date}.", "Population {ordinary2} in {year}, growth 1.2.3%", "{mac} is the MAC",
    "Scores: 12:30:45 and 10:20", "{ordinary} rows scanned in {secs}s", "Account {ordinary} was closed on {date}.",
    "照片尺寸 1920x1080，拍摄于{date}", "Model v2.13.0.1.5 released", "Barcode {ean}, {price}", "Agent: {ua}",
    "The ratio was {float} at {clock}.", "Order {luhn12} was packed on {date}.", "订单{luhn12}已发货",
    "Invoice {luhn_35xx} paid in full.", "Reference {luhn12}, {qty} items", "订单号{order_fw}，{date}发货",
    "Ticket {luhn_35xx} closed on {date}.",
]


class Corpus:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        Faker.seed(seed)
        self.en, self.zh = Faker("en_US"), Faker("zh_CN")
        self.iban_fakers = [Faker(loc) for loc in IBAN_LOCALES]
        self.phone_fakers = [Faker(loc) for loc in INTL_PHONE_LOCALES]
        self.skipped: Counter[str] = Counter()
        self.disguised: Counter[str] = Counter()

    # -- values ------------------------------------------------------------------------------------------
    def email(self) -> str:
        return self.rng.choice([self.en.email, self.en.company_email, self.zh.email, self.en.free_email])()

    def cn_mobile(self) -> str:
        number = self.zh.phone_number()
        style = self.rng.random()
        if style < 0.6:
            return number
        sep = self.rng.choice(" -")
        grouped = f"{number[:3]}{sep}{number[3:7]}{sep}{number[7:]}"
        return grouped if style < 0.8 else self.rng.choice(["+86 ", "+86", "0086 ", "+86-"]) + grouped

    def phone(self, zh: bool) -> str:
        if zh:
            return self.cn_mobile()
        roll = self.rng.random()
        if roll < 0.55:
            return self.en.phone_number()
        if roll < 0.75:
            return self.cn_mobile()
        while True:
            number = self.rng.choice(self.phone_fakers).phone_number()
            if number.startswith("+"):
                return number
            self.skipped["phone in another country's national format (no +country code)"] += 1

    def cn_id(self) -> str:
        if self.rng.random() < 0.5:
            return self.zh.ssn()
        area = self.rng.choice(self.zh.area_codes) if hasattr(self.zh, "area_codes") else "110105"
        born = self.zh.date_between("-100y", "today").strftime("%Y%m%d")
        body = f"{area}{born}{self.rng.randrange(1000):03d}"
        check = gb11643_check_char(body)
        return body + (check.lower() if check == "X" and self.rng.random() < 0.2 else check)

    def card(self) -> str:
        number = self.en.credit_card_number()
        assert 12 <= len(number) <= 19 and luhn_ok(number), number
        style = self.rng.random()
        if style < 0.5:
            return number
        sep = " " if style < 0.8 else "-"
        cuts = (4, 10) if len(number) in (14, 15) else tuple(range(4, len(number), 4))  # Amex/Diners 4-6-5/4-6-4
        return sep.join(number[a:b] for a, b in zip((0, *cuts), (*cuts, None)))

    def luhn(self, prefix: str, length: int) -> str:
        body = prefix + "".join(self.rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
        return body + luhn_check_digit(body)

    def disguise(self, value: str, kind: str) -> str:
        """As people and attackers type it: full-width, or zero-width characters between the digits."""
        roll = self.rng.random()
        if roll < 0.9 or kind not in ("EMAIL", "PHONE", "CN_ID", "CARD", "IBAN"):
            return value
        if kind == "EMAIL" or roll < 0.95:
            self.disguised["full-width"] += 1
            return value.translate(FULL_WIDTH) if kind == "EMAIL" else \
                "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in value)
        self.disguised["zero-width characters between digits"] += 1
        return "".join(c + self.rng.choice(ZERO_WIDTH) if c.isdigit() and self.rng.random() < 0.3 else c
                       for c in value[:-1]) + value[-1]

    def iban(self) -> str:
        value = self.rng.choice(self.iban_fakers).iban()
        assert iban_ok(value), value
        if self.rng.random() < 0.4:
            value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
        return value

    def ip(self) -> str:
        roll = self.rng.random()
        if roll < 0.45:
            return self.rng.choice([self.en.ipv4, self.en.ipv4_private, self.en.ipv4_public])()
        if roll < 0.7:
            return self.en.ipv6()
        groups = self.en.ipv6().split(":")
        zero_from = self.rng.randrange(1, 6)
        for i in range(zero_from, zero_from + self.rng.randrange(1, 4)):
            groups[i] = "0"
        value = str(ipaddress.IPv6Address(":".join(groups)))  # compressed form
        return self.rng.choice([value, value, "::1", f"fe80::{self.rng.randrange(1, 65535):x}"])

    def url_secret(self) -> str:
        base = self.en.url().rstrip("/")
        roll = self.rng.random()
        if roll < 0.35:
            scheme, host = base.split("://")
            user, password = quote(self.en.user_name()), quote(self.en.password(), safe="")  # encoded, as in a URL
            scheme = self.rng.choice([scheme, "postgresql", "redis", "ftp"])
            return f"{scheme}://{user}:{password}@{host}/{self.en.uri_path()}"
        param = self.rng.choice(["token", "access_token", "api_key", "apikey", "key", "secret", "sig", "signature",
                                 "auth", "session", "sid", "password", "X-Amz-Signature"])
        value = self.en.sha1()[: self.rng.randrange(16, 41)]
        extra = f"page={self.rng.randrange(1, 9)}&" if self.rng.random() < 0.5 else ""
        return f"{base}/{self.en.uri_path()}?{extra}{param}={value}"

    def secret(self) -> str:
        def rnd(n, alphabet=B62):
            return "".join(self.rng.choice(alphabet) for _ in range(n))
        up = string.ascii_uppercase + string.digits
        def b64url(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
        makers: list[Callable[[], str]] = [
            lambda: self.rng.choice(["AKIA", "ASIA"]) + rnd(16, up),
            lambda: f"gh{self.rng.choice('pousr')}_" + rnd(36),
            lambda: "github_pat_" + rnd(22) + "_" + rnd(59),
            lambda: f"xox{self.rng.choice('baprs')}-{rnd(12, string.digits)}-{rnd(12, string.digits)}-{rnd(24)}",
            lambda: "sk-" + rnd(48),
            lambda: "sk-proj-" + rnd(self.rng.randrange(40, 80), B62 + "-_"),
            lambda: f"{self.rng.choice(['sk', 'rk', 'pk'])}_live_" + rnd(self.rng.randrange(24, 40)),
            lambda: "AIza" + rnd(35, B62 + "-_"),
            lambda: ".".join([b64url({"alg": "HS256", "typ": "JWT"}),
                              b64url({"sub": self.en.user_name(), "iat": self.rng.randrange(10**9, 2 * 10**9)}),
                              rnd(43, B62 + "-_")]),
            lambda: "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(rnd(64, B62 + "+/") for _ in range(4))
            + "\n-----END RSA PRIVATE KEY-----",
        ]
        return self.rng.choice(makers)()

    # -- sentences ---------------------------------------------------------------------------------------
    def filler(self, zh: bool) -> dict[str, str]:
        fake = self.zh if zh else self.en
        return {"name": fake.name(), "company": fake.company(), "city": fake.city(),
                "addr": fake.address().replace("\n", " "), "date": fake.date(),
                "n": str(self.rng.randrange(1000, 99999))}

    def positive(self) -> tuple[str, list[tuple[str, int, int]]]:
        """A text and its values' spans in the *normalized* text, where detection runs."""
        if self.rng.random() < 0.2:  # two values in one text, English or Chinese joined
            (a, sa), (b, sb) = self.positive(), self.positive()
            joint = self.rng.choice([" ", "\n", "；", " and also: "])
            shift = len(normalize(a + joint))
            return a + joint + b, sa + [(t, s + shift, e + shift) for t, s, e in sb]
        kind = self.rng.choice((*TYPES, "ASSIGN"))
        zh = self.rng.random() < 0.4
        makers = {"EMAIL": self.email, "PHONE": lambda: self.phone(zh), "CN_ID": self.cn_id, "CARD": self.card,
                  "IBAN": self.iban, "IP": self.ip, "URL_SECRET": self.url_secret, "SECRET": self.secret,
                  "ASSIGN": self.en.password}
        value = makers[kind]()
        templates = (ZH if zh else EN)[kind]
        if kind == "CARD" and not card_iin_ok(value.replace(" ", "").replace("-", "")):
            self.skipped["card outside the issued ranges (12-digit Maestro, JCB 35xx < 3528): cued templates only"] += 1
            templates = [t for t in templates if t not in CUELESS]
        head, tail = self.rng.choice(templates).split("{v}")
        fill = self.filler(zh)
        head, tail = head.format(**fill), tail.format(**fill)
        shown = self.disguise(value, kind)
        text, start = head + shown + tail, len(normalize(head))
        assert normalize(text) == normalize(head) + value + normalize(tail), text
        return text, [("SECRET" if kind == "ASSIGN" else kind, start, start + len(value))]

    def mutate(self, value: str) -> str:
        positions = [i for i, c in enumerate(value) if c.isdigit()]
        i = self.rng.choice(positions)
        return value[:i] + self.rng.choice([d for d in string.digits if d != value[i]]) + value[i + 1:]

    def negative(self) -> tuple[str, list[tuple[str, int, int]]]:
        rng, en = self.rng, self.en
        date_fmt = rng.choice(["%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%Y年%m月%d日"])
        values = {
            "price": f"${rng.randrange(1, 5000):,}.{rng.randrange(100):02d}",
            "price_cn": f"¥{rng.randrange(1, 99999)}.00",
            "date": en.date(date_fmt),
            "order": rng.choice([f"ORD-{en.date('%Y%m%d')}-{rng.randrange(10000):04d}",
                                 f"#{rng.randrange(10**8, 10**9)}", en.date("%Y%m%d") + f"{rng.randrange(10**8):08d}"]),
            "version": f"{rng.randrange(10)}.{rng.randrange(30)}.{rng.randrange(100)}",
            "isbn": en.isbn13(), "ean": en.ean13(), "ua": en.user_agent(), "float": str(en.pyfloat()),
            "pages": str(rng.randrange(50, 900)),
            "ts": str(rng.choice([int(en.unix_time()), int(en.unix_time() * 1000), en.unix_time()])),
            "n": str(rng.randrange(1, 10**6)),
            "ordinary": str(rng.randrange(10**9, 10**12)),  # 10 to 12 digits
            "ordinary2": f"{rng.randrange(10**6, 10**9):,}",
            "qty": str(rng.randrange(1, 10**6)), "clock": en.time(), "room": str(rng.randrange(100, 999)),
            "tracking": "1Z" + "".join(rng.choice(string.digits + "AE") for _ in range(16)),
            "invoice": f"INV-{rng.randrange(10**6):06d}", "company": en.company(),
            "last4": f"{rng.randrange(10**4):04d}", "sha": en.sha1()[:rng.choice([7, 40])],
            "secs": f"{rng.uniform(1, 500):.1f}", "uuid": en.uuid4(), "domain": en.domain_name(), "plainurl": en.url(),
            "bad_id": self.mutate(self.cn_id()), "bad_card": self.mutate(self.card()),
            "name": en.name(), "addr": en.address().replace("\n", ", "), "city": en.city(),
            "addr_cn": self.zh.address(), "postcode": self.zh.postcode(), "year": str(rng.randrange(1900, 2030)),
            "mac": en.mac_address(), "luhn12": self.luhn(rng.choice("123456789"), 12),
            "luhn_35xx": self.luhn(f"35{rng.randrange(28):02d}", 16),
            "order_fw": "".join(chr(ord(c) + 0xFEE0) for c in str(rng.randrange(10**11, 10**12))),
        }
        return rng.choice(NEGATIVE).format(**values), []

    def build(self, n: int) -> list[tuple[str, list[tuple[str, int, int]]]]:
        return [self.negative() if self.rng.random() < 0.25 else self.positive() for _ in range(n)]


def score(corpus, predictions) -> dict[str, tuple[int, int, int, int, int]]:
    """Per type: (inserted, found exactly, covered, reported, reported that match an inserted span).

    "Covered" is the redaction view: the value lies inside a finding of its type, even if the finding is wider.
    """
    inserted, found, covered, reported, correct = Counter(), Counter(), Counter(), Counter(), Counter()
    for (_, truth), preds in zip(corpus, predictions):
        truth_set, pred_set = set(truth), set(preds)
        for t, s, e in truth:
            inserted[t] += 1
            covered[t] += any(p == t and ps <= s and e <= pe for p, ps, pe in pred_set)
        for t, *_ in pred_set:
            reported[t] += 1
        for span in pred_set & truth_set:
            found[span[0]] += 1
            correct[span[0]] += 1
    return {t: (inserted[t], found[t], covered[t], reported[t], correct[t]) for t in TYPES}


def is_english(text: str) -> bool:
    return not any("\u4e00" <= ch <= "\u9fff" for ch in text)


def run_datawheel(texts: list[str]) -> tuple[list[list[tuple[str, int, int]]], float]:
    """Findings on the raw texts as the screen sees them (normalized first), and texts per second."""
    preds = [[(f.type, f.start, f.end) for f in detect(normalize(t), DEFAULT_DETECTORS)] for t in texts]
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0 or runs < 3:
        for t in texts:
            detect(normalize(t), DEFAULT_DETECTORS)
        runs += 1
    return preds, runs * len(texts) / (time.perf_counter() - start)


def user_ids(gen: Corpus, n: int) -> list[tuple[str, bool, str]]:
    """(kind, shaped like personal data, id): what clients send as user ids, good and bad."""
    rng, en, zh = gen.rng, gen.en, gen.zh
    pii: dict[str, Callable[[], str]] = {
        "e-mail": en.email, "e-mail, full-width": lambda: en.email().translate(FULL_WIDTH),
        "CN resident ID": zh.ssn, "CN mobile": zh.phone_number, "phone, E.164": lambda: "+86" + zh.phone_number(),
        "prefixed mobile (wx-…)": lambda: f"wx-{zh.phone_number()}",
        "card, issued range": lambda: en.credit_card_number(rng.choice(["visa", "mastercard", "amex", "discover"])),
        # not refused, on purpose: unnamed, such numbers cannot be told from numeric ids (one in ten passes Luhn)
        "card, Maestro-12/JCB 35xx": lambda: en.credit_card_number(rng.choice(["maestro", "jcb16"])),
    }
    pseudonymous: dict[str, Callable[[], str]] = {
        "UUID": lambda: str(uuid.UUID(int=rng.getrandbits(128))),
        "sha1 hex": lambda: hashlib.sha1(rng.randbytes(8)).hexdigest(),
        "sha256 hex, 16": lambda: hashlib.sha256(rng.randbytes(8)).hexdigest()[:16],
        "user_<n>": lambda: f"user_{rng.randrange(10**7)}",
        "numeric, 4-9 digits": lambda: str(rng.randrange(10**3, 10**9)),
        "random base62, 22": lambda: "".join(rng.choice(B62) for _ in range(22)),
        "auth0|hex": lambda: "auth0|" + rng.randbytes(12).hex(),
    }
    return [(kind, is_pii, make()) for is_pii, makers in ((True, pii), (False, pseudonymous))
            for kind, make in makers.items() for _ in range(n)]


def print_user_ids(gen: Corpus, n: int) -> None:
    screen = Screen(Policy(), "benchmark-key", detectors=DEFAULT_DETECTORS)
    refused: Counter[str] = Counter()
    kinds: dict[str, bool] = {}
    for kind, is_pii, value in user_ids(gen, n):
        kinds[kind] = is_pii
        try:
            screen.check_user_id(value)
        except InvalidInput:
            refused[kind] += 1
    print(f"\nuser ids ({n} of each kind): Screen.check_user_id")
    print(f"{'kind':<26} {'PII-shaped':>10} {'refused':>9}")
    for kind, is_pii in kinds.items():
        print(f"{kind:<26} {'yes' if is_pii else 'no':>10} {pct(refused[kind], n):>9}")
    print("  (12-digit Maestro and JCB below 3528 pass: with no card cue they cannot be told from numeric ids)")


def run_presidio(corpus, threshold: float):
    texts = [t for t, _ in corpus]
    try:
        detector = PresidioDetector(score_threshold=threshold)
    except ConfigError as exc:  # not installed, or no spaCy English pipeline
        return None, f"Presidio not available ({exc}); showing datawheel only"
    detector.find("warm up with John Smith in London")
    start = time.perf_counter()
    raw = [detector.find(t) for t in texts]
    rate = len(texts) / (time.perf_counter() - start)
    preds, unmapped, on_values = [], Counter(), Counter()
    for (text, truth), findings in zip(corpus, raw):
        mapped = []
        for f in findings:
            value = text[f.start:f.end]
            if f.type in PRESIDIO_MAP:
                mapped.append((PRESIDIO_MAP[f.type], f.start, f.end))
            elif f.type == "URL" and "://" in value and ("@" in value or "=" in value):
                mapped.append(("URL_SECRET", f.start, f.end))  # a URL that can carry a credential
            elif f.type != "URL":
                unmapped[f.type] += 1
                on_values[f.type] += any(f.start < e and s < f.end for _, s, e in truth)
        preds.append(mapped)
    return (preds, rate, unmapped, on_values, detector.model), None


def pct(num: int, den: int) -> str:
    return f"{100 * num / den:6.2f}%" if den else "     -"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="texts in the corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--presidio-n", type=int, default=None, help="run Presidio on the first N texts only")
    parser.add_argument("--no-presidio", action="store_true", help="skip Presidio even if it is installed")
    parser.add_argument("--presidio-threshold", type=float, default=0.0, help="Presidio's score threshold")
    parser.add_argument("--show-errors", type=int, default=0, help="print up to N misses and false alarms")
    parser.add_argument("--user-ids", type=int, default=500, help="user ids of each kind to check")
    args = parser.parse_args()

    gen = Corpus(args.seed)
    raw = gen.build(args.n)
    corpus = [(normalize(t), truth) for t, truth in raw]  # the ground truth is in the normalized text
    print(f"corpus: {len(corpus)} texts ({sum(1 for _, s in corpus if not s)} negative), seed {args.seed}")
    for reason, count in sorted(gen.skipped.items()):
        print(f"  Faker value placed apart: {reason} x{count}")
    for how, count in sorted(gen.disguised.items()):
        print(f"  values disguised: {how} x{count}")

    dw_preds, dw_rate = run_datawheel([t for t, _ in raw])
    dw = score(corpus, dw_preds)
    subset = corpus[: args.presidio_n] if args.presidio_n else corpus
    presidio, why_not = (None, "Presidio skipped (--no-presidio)") if args.no_presidio else \
        run_presidio(subset, args.presidio_threshold)
    pr = score(subset, presidio[0]) if presidio else None

    print()
    if pr:
        english = [i for i, (text, _) in enumerate(subset) if is_english(text)]
        pr_en = score([subset[i] for i in english], [presidio[0][i] for i in english])
        print(f"Presidio's columns: {len(subset)} texts; 'EN only' = the {len(english)} texts without Chinese")
    header = f"{'type':<11} {'n':>5} | {'datawheel':^26} |"
    sub = f"{'':<11} {'':>5} | {'recall':>8} {'covered':>8} {'prec':>8} |"
    if pr:
        header += f" {'Presidio':^44}"
        sub += f" {'recall':>8} {'covered':>8} {'prec':>8} {'EN-only recall':>17}"
    print(header)
    print(sub)
    print("-" * len(sub))
    for t in TYPES:
        n, found, cov, rep, ok = dw[t]
        line = f"{t:<11} {n:>5} | {pct(found, n):>8} {pct(cov, n):>8} {pct(ok, rep):>8} |"
        if pr:
            pn, pfound, pcov, prep, pok = pr[t]
            line += (f" {pct(pfound, pn):>8} {pct(pcov, pn):>8} {pct(pok, prep):>8}"
                     f" {pct(pr_en[t][1], pr_en[t][0]):>17}")
        print(line)
    print()
    print(f"datawheel normalize + detect: {dw_rate:,.0f} texts/s (pattern detectors, one process)")
    if presidio:
        _, rate, unmapped, on_values, model = presidio
        print(f"Presidio analyzer ({model}, threshold {args.presidio_threshold}): {rate:,.1f} texts/s "
              f"on {len(subset)} texts")
        print(f"throughput ratio datawheel/Presidio: {dw_rate / rate:,.0f}x")
        print("Presidio entity types with no datawheel type: findings (of which on a value the corpus labels "
              "as another type)")
        for kind, count in unmapped.most_common():
            print(f"  {kind:<18} {count:>5} ({on_values[kind]})")
        print("Presidio has no recognizer for: "
              + ", ".join(t for t in TYPES if t not in PRESIDIO_MAP.values() and t != "URL_SECRET"))
    else:
        print(why_not)
    print_user_ids(gen, args.user_ids)
    if args.show_errors:
        shown = 0
        for (text, truth), preds in zip(corpus, dw_preds):
            if set(truth) != set(preds) and shown < args.show_errors:
                shown += 1
                print(f"  {text!r}\n    truth {[(t, text[a:b]) for t, a, b in truth]}"
                      f"\n    found {[(t, text[a:b]) for t, a, b in preds]}")


if __name__ == "__main__":
    main()
