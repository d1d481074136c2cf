"""Check digits and issuing rules for the identifiers the detectors report.

A pattern alone cannot tell a card number from an order number or an ID from a
timestamp; the check digit can, so every numeric identifier is reported only
when its checksum holds, and card numbers and IBANs only with a prefix and a
length that someone actually issues. The builders (``*_check_*``) are public so
tests and the benchmark make valid values with the same arithmetic.
"""

from __future__ import annotations

from datetime import date

_GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_CHARS = "10X98765432"  # indexed by the weighted sum mod 11


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` Luhn-valid."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = ord(ch) - 48
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


def luhn_ok(digits: str) -> bool:
    return len(digits) > 1 and digits.isdigit() and luhn_check_digit(digits[:-1]) == digits[-1]


def gb11643_check_char(first17: str) -> str:
    """The 18th character of a mainland-China resident ID (GB 11643-1999, ISO 7064 MOD 11-2)."""
    return _GB11643_CHARS[sum(int(c) * w for c, w in zip(first17, _GB11643_WEIGHTS)) % 11]


def cn_id_birth_date(value: str, today: date | None = None) -> date | None:
    """The birth date of an 18-character resident ID if it is a real date from 1900 to today, else None."""
    if len(value) != 18 or not value[:17].isdigit() or value[0] in "09":
        return None
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return None
    return born if date(1900, 1, 1) <= born <= (today or date.today()) else None


def cn_id_ok(value: str, today: date | None = None) -> bool:
    """A real birth date and a matching check character; the area code is not looked up because the
    official list changes every year and a stale list would let IDs of newer districts through."""
    return cn_id_birth_date(value, today) is not None and gb11643_check_char(value[:17]) == value[17].upper()


def _iban_number(rearranged: str) -> int:
    return int("".join(str(int(ch, 36)) for ch in rearranged))


def iban_check_digits(country: str, bban: str) -> str:
    """The two check digits of the IBAN for ``country`` and ``bban`` (ISO 13616 mod-97)."""
    return f"{98 - _iban_number(bban + country + '00') % 97:02d}"


def iban_ok(iban: str) -> bool:
    """Mod-97 of the rearranged IBAN is 1; ``iban`` is compact (no spaces) and upper case."""
    if len(iban) < 5 or not iban.isalnum() or not iban.isascii():
        return False
    return _iban_number(iban[4:] + iban[:4]) % 97 == 1


# The IBAN registry's length per country: a country that is not listed issues no IBANs.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IR": 26, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}


# (prefix digits, lowest, highest, lengths) of the networks' issuer ranges. 12-digit Maestro is left out:
# one 12-digit number in ten passes Luhn, and ordinary 12-digit numbers are everywhere.
_IIN_RANGES: tuple[tuple[int, int, int, frozenset[int]], ...] = tuple(
    (len(str(lo)), lo, hi, frozenset(lengths)) for lo, hi, lengths in (
        (4, 4, (13, 16, 19)),                                    # Visa
        (51, 55, (16,)), (2221, 2720, (16,)),                    # Mastercard
        (34, 34, (15,)), (37, 37, (15,)),                        # American Express
        (6011, 6011, (16, 17, 18, 19)), (644, 649, (16, 17, 18, 19)), (65, 65, (16, 17, 18, 19)),  # Discover
        (62, 62, (16, 17, 18, 19)),                              # UnionPay
        (3528, 3589, (16, 17, 18, 19)), (1800, 1800, (15,)), (2131, 2131, (15,)),  # JCB
        (300, 305, (14, 15, 16, 17, 18, 19)), (36, 36, (14, 15, 16, 17, 18, 19)),  # Diners
        (38, 39, (14, 15, 16, 17, 18, 19)),
        (2200, 2204, (16, 17, 18, 19)),                          # Mir
        (5018, 5018, range(13, 20)), (5020, 5020, range(13, 20)), (5038, 5038, range(13, 20)),  # Maestro
        (56, 58, range(13, 20)), (6304, 6304, range(13, 20)), (6390, 6390, range(13, 20)),
        (6759, 6759, range(13, 20)), (6761, 6763, range(13, 20)),
    ))


def card_iin_ok(digits: str) -> bool:
    """A card network issues numbers of this length with this prefix."""
    return any(lo <= int(digits[:k]) <= hi and len(digits) in lengths for k, lo, hi, lengths in _IIN_RANGES)
