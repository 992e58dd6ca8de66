"""How the synthetic exports spell things: timestamps, ids, phone numbers, e-mails, CSV lines.

Kept apart from the simulation so that the *world* (who buys what, when) and its
*spelling* (offsets, phone formats, messy e-mails) stay independent: changing a
dirt rate changes how records look, never what happened.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from datetime import date

DAY = 86_400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# Index 0 is the canonical spelling (UTC as "+00:00"); the others are the "dirt" spellings real
# exports mix: local European time, a US-based system, and the "Z" suffix.
OFFSETS: tuple[tuple[str, int], ...] = (("+00:00", 0), ("+01:00", 3_600), ("+02:00", 7_200),
                                        ("-05:00", -18_000), ("Z", 0))


def day_start(day: date) -> int:
    """Epoch seconds of midnight UTC starting ``day``."""
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY


def to_date(ts: int) -> date:
    """The UTC calendar day of epoch seconds ``ts``."""
    return date.fromordinal(_EPOCH_ORDINAL + ts // DAY)


_TIMES: list[str] = []  # "Thh:mm:ss" for every second of a day, built on first use


class Clock:
    """Formats epoch seconds as ISO 8601 in one of :data:`OFFSETS`.

    Called for every generated timestamp (tens of millions at the larger presets), so
    it avoids ``datetime``: the date part is cached per local day and the time part
    looked up in a table of the 86,400 seconds of a day.
    """

    def __init__(self) -> None:
        self._dates: dict[int, str] = {}
        if not _TIMES:
            _TIMES.extend(f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(DAY))

    def iso(self, ts: int, offset: int = 0) -> str:
        suffix, shift = OFFSETS[offset]
        day, sec = divmod(ts + shift, DAY)
        text = self._dates.get(day)
        if text is None:
            text = self._dates[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
        return text + _TIMES[sec] + suffix


def pick_offset(u: float, rate: float) -> int:
    """Which spelling of a timestamp, from one uniform draw: canonical unless ``u < rate``."""
    if u >= rate:
        return 0
    return 1 + min(3, int(u / rate * 4))


# Shop traffic by UTC hour (a European shop: quiet at night, busy in the evening). Raw simulation
# time is uniform over the day; :class:`DayShape` bends it into this profile without reordering.
HOURLY_PROFILE = (1.2, 0.7, 0.5, 0.4, 0.5, 1.0, 2.0, 3.2, 4.0, 4.4, 4.6, 4.8,
                  5.0, 4.8, 4.6, 4.7, 5.0, 5.6, 6.2, 6.4, 5.8, 4.6, 3.2, 2.0)


class DayShape:
    """Monotone map from raw simulation time to wall-clock time with a daily rhythm.

    Monotone within a day and the identity on day boundaries, so order of events and
    the day a record belongs to are unchanged; only the hour of day gets realistic.
    """

    def __init__(self, profile: tuple[float, ...] = HOURLY_PROFILE) -> None:
        total = sum(profile)
        self._cum = [0.0]
        for weight in profile:
            self._cum.append(self._cum[-1] + weight / total)
        self._rate = [w / total for w in profile]

    def wall(self, raw: float) -> int:
        day = math.floor(raw / DAY)
        q = (raw - day * DAY) / DAY
        hour = min(23, bisect.bisect_right(self._cum, q) - 1)
        sec = int(hour * 3_600 + (q - self._cum[hour]) / self._rate[hour] * 3_600)
        return day * DAY + min(max(sec, 0), DAY - 1)


# --------------------------------------------------------------------------- ids

_MASK20 = (1 << 20) - 1
_MASK64 = (1 << 64) - 1


def permute40(value: int, key: int) -> int:
    """A bijection on 40-bit integers (a small Feistel network).

    Ids are built from (entity kind, entity index, sequence number) so they never depend on
    how many records *other* entities produced, which is what keeps every day's drop stable
    when history is extended. The permutation makes them look opaque instead of leaking
    which person a guest record or an order belongs to.
    """
    left, right = value >> 20, value & _MASK20
    for rnd in range(4):
        f = ((right * 0x9E3779B1 + key * 0x85EBCA6B + rnd * 0x7F4A7C15) ^ (right >> 7)) & _MASK20
        left, right = right, left ^ f
    return (left << 20) | right


def mix64(value: int) -> int:
    """A cheap bijection on 64-bit integers (odd multiplier, then xor-shift), for event ids."""
    value = (value * 0x9E3779B97F4A7C15) & _MASK64
    return value ^ (value >> 29)


def code40(kind: int, index: int, seq: int) -> int:
    """Pack an entity kind (2 bits), entity index (24 bits) and sequence (14 bits)."""
    if index >= 1 << 24 or seq >= 1 << 14:
        raise ValueError(f"id space exhausted (entity {index}, sequence {seq})")
    return (kind << 38) | (index << 14) | seq


# --------------------------------------------------------------------------- people

FEMALE_NAMES = ("Anna", "Chloe", "Emma", "Greta", "Ines", "Karla", "Mia", "Olga", "Rosa", "Tara",
                "Zoë", "Lena", "Sofia", "Hanna", "Julia", "Marta", "Ewa", "Léa", "Giulia", "Sanne")
MALE_NAMES = ("Ben", "David", "Felix", "Hugo", "Jonas", "Luca", "Noah", "Paul", "Sven", "Yusuf",
              "Jürgen", "Marco", "Piotr", "Lukas", "Tomasz", "Daan", "Louis", "Matteo", "Elias", "Karim")
LAST_NAMES = ("Schmidt", "Meyer", "Novak", "Rossi", "Dubois", "Jansen", "Kowalski", "Berg", "Silva",
              "Horvat", "Nielsen", "Weber", "Costa", "Müller", "Larsen", "Garcia", "Wagner", "Bianchi",
              "Lefèvre", "de Vries", "Nowak", "Gruber", "Fischer", "Moreau", "Bakker", "Wiśniewski",
              "Hoffmann", "Ricci", "Laurent", "Huber", "Peeters", "Köhler")
_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e", "è": "e", "ë": "e",
                           "ś": "s", "ł": "l", " ": ""})


def mailbox(name: str) -> str:
    """The ASCII local-part people make of their name."""
    return name.lower().translate(_TRANSLIT)


@dataclass(frozen=True)
class City:
    name: str
    region: str
    area: str  # area code as dialled after the country code


@dataclass(frozen=True)
class Country:
    code: str
    dial: str  # country calling code without "+"
    trunk: str  # national trunk prefix ("" where the area code is dialled as is)
    subscriber_digits: int
    weight: float
    cities: tuple[City, ...]


COUNTRIES = (
    Country("DE", "49", "0", 7, 40, (City("Berlin", "Berlin", "30"), City("Hamburg", "Hamburg", "40"),
                                       City("München", "Bayern", "89"), City("Köln", "Nordrhein-Westfalen", "221"),
                                       City("Leipzig", "Sachsen", "341"))),
    Country("FR", "33", "0", 8, 18, (City("Paris", "Île-de-France", "1"), City("Lyon", "Auvergne-Rhône-Alpes", "4"),
                                       City("Lille", "Hauts-de-France", "3"), City("Nantes", "Pays de la Loire", "2"))),
    Country("NL", "31", "0", 7, 12, (City("Utrecht", "Utrecht", "30"), City("Amsterdam", "Noord-Holland", "20"),
                                       City("Rotterdam", "Zuid-Holland", "10"))),
    Country("AT", "43", "0", 7, 10, (City("Wien", "Wien", "1"), City("Graz", "Steiermark", "316"),
                                       City("Linz", "Oberösterreich", "732"))),
    Country("IT", "39", "", 7, 12, (City("Milano", "Lombardia", "02"), City("Roma", "Lazio", "06"),
                                      City("Torino", "Piemonte", "011"))),
    Country("PL", "48", "", 7, 8, (City("Kraków", "Małopolskie", "12"), City("Warszawa", "Mazowieckie", "22"),
                                     City("Gdańsk", "Pomorskie", "58"))),
)
COUNTRY_WEIGHTS = tuple(c.weight for c in COUNTRIES)

PHONE_STYLES = 8  # style 0 is the canonical international spelling


def render_phone(country: Country, area: str, sub: str, style: int) -> str:
    """One subscriber number in one of the spellings people and systems use for it."""
    cc, trunk = country.dial, country.trunk
    if country.code == "FR":  # grouped in pairs: +33 1 23 45 67 89
        pairs = " ".join(sub[i:i + 2] for i in range(0, 8, 2))
        return (f"+{cc} {area} {pairs}", f"0{area} {pairs}", f"00{cc}-{area}-{sub}", f"(0{area}) {pairs}",
                f"+{cc}{area}{sub}", f"0{area}/{sub}", f"0{area}.{pairs.replace(' ', '.')}",
                f"+{cc} (0){area} {pairs}")[style]
    national = f"{trunk}{area}"
    if style == 0:
        return f"+{cc} {area} {sub}"
    if style == 1:
        return f"{national} {sub}"
    if style == 2:
        return f"00{cc}-{area}-{sub}"
    if style == 3:
        return f"({national}) {sub[:3]} {sub[3:]}"
    if style == 4:
        return f"+{cc}{area}{sub}"
    if style == 5:
        return f"{national}/{sub}"
    if style == 6:
        return f"{national}.{sub[:3]}.{sub[3:]}"
    return f"+{cc} ({trunk}){area} {sub}" if trunk else f"+{cc}-{area}-{sub}"


def placeholder_phone(country: Country, u: float) -> str:
    """What lands in the phone field when someone does not want to give a number."""
    return ("0000000000", f"+{country.dial} 000 000000", "n/a", "123456")[min(3, int(u * 4))]


def messy_email(rng: random.Random, email: str) -> str:
    """How people type an e-mail into a form: always differs from ``email`` but normalises back to it."""
    roll = rng.random()
    if roll < 0.25:
        return email.upper()
    if roll < 0.45:
        return email[0].upper() + email[1:]
    if roll < 0.65:
        return f" {email}"
    if roll < 0.85:
        return f"{email}  "
    head, _, domain = email.partition("@")
    return f" {head.title()}@{domain.upper()} "


# --------------------------------------------------------------------------- CSV

CUSTOMER_COLUMNS = ("customer_id", "account_type", "first_name", "last_name", "email", "phone", "gender",
                    "birth_year", "income_band", "occupation", "city", "region", "country_code",
                    "acquisition_channel", "marketing_consent", "created_at", "updated_at")
ORDER_COLUMNS = ("order_id", "customer_id", "ordered_at", "status", "currency", "channel", "refund_amount",
                 "updated_at")
LINE_COLUMNS = ("order_id", "line_number", "product_id", "quantity", "unit_price")
PRODUCT_COLUMNS = ("product_id", "product_name", "category", "list_price")


def csv_line(values: tuple[str, ...] | list[str]) -> str:
    """One CSV record (no line end), quoting only where the format needs it."""
    out = []
    for value in values:
        if "," in value or '"' in value or "\n" in value or "\r" in value:
            value = '"' + value.replace('"', '""') + '"'
        out.append(value)
    return ",".join(out)


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"
