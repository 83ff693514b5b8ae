"""A synthetic patient population with known truth, for testing and measuring the patient index.

``generate(people, practices, seed)`` makes ``people`` persons, each seen at one or more practices
(``PRACTICES_SEEN``: about 1.7 patient records per person at three practices, 1.8 at four, with
the second charts), and returns the patient records, in the common model's
shape, with the truth: which person each record is. The records carry the hard cases of record
linkage at the rates of ``RATES``; each is made by a function of its own here, and the population
says which records and persons carry which (``variations``, ``related``), so a test can ask for a
population full of one case (``rates={"twin": 0.5}``) and find it.

Record-level cases, drawn independently for each record of a person after the first (the first
record is the person as they are; a duplicate chart counts as a later record), each where it can
apply:

- ``nickname``: the given name as one of its nicknames (Robert → Bob), from the ``nicknames`` dataset;
- ``given_typo``, ``family_typo``: one letter substituted, dropped, doubled or swapped with the next;
- ``day_month_swap``: the day and month of birth swapped (a day of 12 or less, not the month);
- ``birth_date_typo``: one digit of the birth date wrong (still a valid date);
- ``hyphenated``: a second family name added (Garcia → Garcia-Lopez), or one half of a hyphenated
  name dropped (Garcia-Lopez → Garcia; a share ``HYPHENATED_SHARE`` of people have one);
- ``married``: another family name (a woman of 20 or more), with the same address, phone and email;
- ``moved``: another street address and postal code (the phone and email stay).

Every record, its first too, may lack a phone (``no_phone``) or an email (``no_email``); an SSN is
sent with a share of records (``ssn``); the MBI of a person of 65 or more on Medicare (``medicare``
of them) is sent by every other practice (the first, third, ...). Practices differ in format only
as real systems do: phone punctuation (each its own), upper-case street lines (the second, fourth,
...), street kinds spelt out (Street for St: the second, fifth, ...), accents dropped (José → Jose:
the third, sixth, ...; the ``accents_dropped`` variation).

Person-level cases (the share of all people who are one of such a pair; ``related`` lists the pairs):

- ``twin``: two people of one family name, birth date, address and phone, with different given
  names (of the same sex more often than not), seen at the same practices;
- ``namesake``: a parent and child (Sr/Jr) of the same names, sex, address and phone, born 20 to
  40 years apart;
- ``stranger``: two people of a common given and family name, sex and birth date, who live apart
  (other address, postal code and phone);
- ``duplicate_chart`` (the share of people): a person with two records, two MRNs, at one practice.

Names are drawn from lists of common US names with a Zipf-like skew (Smith about one person in a
hundred), family names also from a long tail of rarer ones; some people's names have accents.

Deterministic for a seed; 100,000 people (180,000 records) take ten seconds or less. ``pairs`` lists the true matching
pairs; ``evaluate`` scores a clustering against the truth, pairwise.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import functools
import gc
import itertools
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from random import Random
from typing import Any, TypeVar

from nicknames import NickNamer

Key = tuple[str, str]  # (practice, source_id)
T = TypeVar("T")

RATES: dict[str, float] = {
    # of a person's records after the first, where the case can apply
    "nickname": 0.08,
    "given_typo": 0.03,
    "family_typo": 0.03,
    "day_month_swap": 0.02,
    "birth_date_typo": 0.02,
    "hyphenated": 0.03,
    "married": 0.10,
    "moved": 0.15,
    # of all records
    "no_phone": 0.10,
    "no_email": 0.40,
    "ssn": 0.25,
    # of people of 65 or more: on Medicare (an MBI, sent by every other practice)
    "medicare": 0.85,
    # of all people: one of a pair (twin, namesake, stranger); with a second chart at a practice
    "twin": 0.02,
    "namesake": 0.01,
    "stranger": 0.01,
    "duplicate_chart": 0.01,
}
RECORD_CASES = ("nickname", "given_typo", "family_typo", "day_month_swap", "birth_date_typo", "hyphenated",
                "married", "moved")
PAIR_CASES = ("twin", "namesake", "stranger")
# how many practices a person is seen at: 1, 2, 3, ... (cut to the practices there are)
PRACTICES_SEEN = (0.45, 0.35, 0.14, 0.05, 0.01)
TODAY = dt.date(2026, 1, 1)  # ages are as of this day, so a seed gives the same population every year
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
MBI_SYSTEM = "http://hl7.org/fhir/sid/us-mbi"

def _names(text: str) -> list[str]:
    return text.split()


# Common US given names by sex, most common first, with a few spelled with accents.
MALE = _names("""James Robert John Michael David William Richard Joseph Thomas Charles Christopher Daniel Matthew
Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey
Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander
Frank Patrick Raymond Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Douglas Zachary Peter Kyle Ethan
Walter Noah Jeremy Christian Keith Roger Terry Gerald Harold Sean Austin Carl Arthur Lawrence Dylan Jesse Jordan
Bryan Billy Joe Bruce Gabriel Logan Albert Willie Alan Juan Wayne Elijah Randy Roy Vincent Ralph Eugene Russell
Bobby Mason Philip Louis Harry Howard Liam Lucas Oliver Carlos Luis Victor Martin Ernest Phillip Todd Craig
Shawn Travis Chad Curtis Stanley Leonard Dale Manuel Rodney Marcus Fred Clarence Allen Norman Jimmy Luke
Francis Hunter Isaac Antonio Cody Evan Mario Miguel Jesus Jorge Ricardo Eduardo Edwin Alfred Leroy Herbert
Bernard Melvin Theodore Calvin Marvin Vernon Glenn Leon Darrell Jay Dean Lewis Micheal Warren Owen Caleb Ian
Connor Wyatt Sebastian Julian Levi Isaiah Landon Adrian Colton Dominic Xavier Jaxon Angel Alejandro Rafael
Omar Sergio Fernando Andres Hector Ramon Ivan Tyrone Darnell Malik Andre Rene""")
FEMALE = _names("""Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Margaret
Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca Sharon Laura
Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela Emma Nicole Helen Samantha Katherine Christine Debra
Rachel Carolyn Janet Catherine Maria Heather Diane Ruth Julie Olivia Joyce Virginia Victoria Kelly Lauren
Christina Joan Evelyn Judith Megan Andrea Cheryl Hannah Jacqueline Martha Gloria Teresa Ann Sara Madison
Frances Kathryn Janice Jean Abigail Alice Judy Sophia Grace Denise Amber Doris Marilyn Danielle Beverly Isabella
Theresa Diana Natalie Brittany Charlotte Marie Kayla Alexis Lori Ava Mia Chloe Zoe Renee Ella Lily Harper Avery
Aria Scarlett Layla Riley Nora Hazel Ellie Paisley Aubrey Violet Stella Lucy Claire Addison Leah Savannah
Audrey Brooklyn Bella Skylar Penelope Camila Gabriela Valentina Lucia Elena Ximena Sofia Adriana Veronica Monica
Yolanda Rosa Carmen Alicia Irene Josephine Ruby Peggy Phyllis Lillian Mildred Norma Wanda Edna Florence Louise
Sylvia Annie Bonnie Lois Tina Connie Tammy Rita Dawn Vanessa Erin Tiffany Crystal Courtney Melanie Kristen
Allison Jasmine Destiny Jordan Morgan Taylor Sierra Katie Molly Paige Caroline Naomi Ivy Alyssa Kaylee""")
# accented spellings used by some people whose name has one (an ASCII-only system drops the accent)
ACCENTED = {"Jose": "José", "Jesus": "Jesús", "Ramon": "Ramón", "Andre": "André", "Rene": "René", "Andres": "Andrés",
            "Hector": "Héctor", "Ivan": "Iván", "Maria": "María", "Zoe": "Zoë", "Chloe": "Chloé", "Renee": "Renée",
            "Lucia": "Lucía", "Sofia": "Sofía", "Monica": "Mónica", "Veronica": "Verónica",
            "Munoz": "Muñoz", "Pena": "Peña", "Nunez": "Núñez", "Ibanez": "Ibáñez", "Muller": "Müller",
            "Gomez": "Gómez", "Hernandez": "Hernández", "Lopez": "López", "Perez": "Pérez", "Sanchez": "Sánchez",
            "Ramirez": "Ramírez", "Diaz": "Díaz", "Alvarez": "Álvarez", "Jimenez": "Jiménez"}
ACCENT_SHARE = 0.3  # of people whose name has an accented spelling
# Common US family names, most common first (Smith: about 0.8 % of people).
FAMILY = _names("""Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez
Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis
Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera
Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart
Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox
Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders
Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes
Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace
Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens
Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns
Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer
Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols
Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce Vazquez Hansen Peters
Santos Hart Bradley Knight Elliott Cunningham Duncan Armstrong Hudson Carroll Lane Riley Andrews Alvarado Ray
Delgado Berry Perkins Hoffman Johnston Matthews Pena Richards Contreras Willis Carpenter Lawrence Sandoval
Guerrero George Chapman Rios Estrada Ortega Watkins Greene Nunez Wheeler Valdez Harper Burke Larson Santiago
Maldonado Morrison Franklin Carlson Austin Dominguez Carr Lawson Jacobs OBrien Lynch Singh Vega Bishop Montgomery
Oliver Jensen Harvey Williamson Gilbert Dean Sims Espinoza Howell Li Wong Reid Hanson Le McCoy Garrett Burton
Fuller Wang Weber Welch Rojas Lucero Fowler Ibanez Muller Schneider ONeil McCarthy""")
FAMILY = [{"OBrien": "O'Brien", "ONeil": "O'Neil"}.get(name, name) for name in FAMILY]
# The long tail: family names made of two parts (Ashford, Brookman), each as rare as the rarest above.
TAIL_FIRST = _names("""Ash Bal Black Bram Brook Cald Cart Chad Clay Cold Crane Dal Dray Dun East Elm Fair Fen Frost
Gal Glen Gold Green Hal Hart Hay Heath Holl Kings Lang Lock Marsh Mer New North Oak Pem Pres Rad Red Rock Roth
Sal Shel Stan Stock Storm Sum Thorn Tall Wal War West Whit Wild Win Wood Worth Wy""")
TAIL_SECOND = _names("""ford ley ton well man by field wood worth more ham dale brook stead wick son land er ridge
mont hurst combe ing cott win""")
FAMILY_HEAD_SHARE = 0.25  # of people with a family name from the list above; the rest from the tail
HYPHENATED_SHARE = 0.02  # of people with a family name of two (Garcia-Lopez)
STREETS = _names("""Oak Maple Pine Cedar Elm Washington Lake Hill Park Main Church Walnut Spruce Birch Willow Chestnut
Lincoln Jefferson Madison Franklin Jackson Adams Highland Forest River Meadow Sunset Ridge Spring Valley Cherry
Dogwood Magnolia Laurel Holly Poplar Sycamore Hickory Aspen Juniper Mill School Center Union Grove Prospect Pleasant
Fairview Woodland Lakeview Broad Market Front Water Bridge Harbor Summit Orchard Academy Colonial Heritage
Liberty Victoria Windsor Cambridge Oxford Kingston Hamilton Monroe Wilson Taylor Grant Sherman Clinton""")
SUFFIXES = ("St", "Ave", "Rd", "Dr", "Ln", "Blvd", "Ct", "Way", "Pl", "Ter")
SUFFIX_WORDS = {"St": "Street", "Ave": "Avenue", "Rd": "Road", "Dr": "Drive", "Ln": "Lane", "Blvd": "Boulevard",
                "Ct": "Court", "Way": "Way", "Pl": "Place", "Ter": "Terrace"}
EMAIL_DOMAINS = ("gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com",
                 "hotmail.com", "comcast.net")
PHONE_FORMATS = ("({0}) {1}-{2}", "{0}-{1}-{2}", "{0}{1}{2}", "+1 {0} {1} {2}")


@dataclass(slots=True)
class Person:
    """A person as they are: what their first record shows (accents as they write their name)."""

    number: int
    given_name: str
    family_name: str
    sex: str
    birth_date: dt.date
    address_line: str
    postal_code: str
    phone: str  # ten digits
    email: str
    ssn: str  # 123-45-6789
    mbi: str | None
    practices: tuple[str, ...]


@dataclass
class Population:
    records: list[dict[str, Any]]
    truth: dict[Key, int]  # (practice, source_id) → person number
    persons: list[Person]
    practices: list[str]
    # the cases each record carries, by name (RECORD_CASES, "accents_dropped", "duplicate_chart",
    # "no_phone", "no_email"); a record without any is absent
    variations: dict[Key, tuple[str, ...]] = field(default_factory=dict)
    # person-level cases: PAIR_CASES → pairs of person numbers (the first made, the second)
    related: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def records_of(self, person: int) -> list[dict[str, Any]]:
        return [r for r in self.records if self.truth[(r["practice"], r["source_id"])] == person]


# ------------------------------------------------------------------ the cases, one function each

@functools.cache
def _namer() -> NickNamer:
    return NickNamer()


@functools.lru_cache(maxsize=4096)
def _nicknames(given: str) -> tuple[str, ...]:
    return tuple(sorted(_namer().nicknames_of(fold(given))))


def nicknames_for(given: str) -> list[str]:
    """The nicknames of a given name (lower case, sorted); [] for a name without any."""
    return list(_nicknames(given))


def nickname(given: str, rnd: Random) -> str | None:
    """One of the name's nicknames (Robert → Bob), or None when it has none."""
    names = _nicknames(given)
    return rnd.choice(names).title() if names else None


_KEYBOARD_NEIGHBOURS = {a: b for a, b in zip("qwertyuiopasdfghjklzxcvbnm", "wertyuiopqsdfghjkalxcvbnmz", strict=True)}


def typo(name: str, rnd: Random) -> str:
    """One letter wrong: substituted (by its keyboard neighbour), dropped, doubled, or swapped with the
    next. The first letter is kept (most typing errors are later in a word)."""
    if len(name) < 3:
        return name + name[-1]
    while True:
        i = rnd.randrange(1, len(name))
        op = rnd.randrange(4)
        ch = name[i]
        if not ch.isalpha():
            continue
        if op == 0 and ch.lower() in _KEYBOARD_NEIGHBOURS:
            out = name[:i] + _KEYBOARD_NEIGHBOURS[ch.lower()] + name[i + 1:]
        elif op == 1:
            out = name[:i] + name[i + 1:]
        elif op == 2:
            out = name[:i] + ch + name[i:]
        elif i + 1 < len(name) and name[i + 1].isalpha() and name[i + 1] != ch:
            out = name[:i] + name[i + 1] + ch + name[i + 2:]
        else:
            continue
        if fold(out) != fold(name):
            return out


def swap_day_month(born: dt.date) -> dt.date | None:
    """The date with day and month swapped (3 April → 4 March); None where that is no other date."""
    if born.day > 12 or born.day == born.month:
        return None
    return born.replace(month=born.day, day=born.month)


def birth_date_typo(born: dt.date, rnd: Random) -> dt.date:
    """The date with one digit of its ISO form wrong (the year's last two, the month's, the day's)."""
    text = born.isoformat()
    while True:
        i = rnd.choice((2, 3, 3, 5, 6, 8, 9, 9))
        digit = str((int(text[i]) + rnd.randrange(1, 10)) % 10)
        try:
            out = dt.date.fromisoformat(text[:i] + digit + text[i + 1:])
        except ValueError:
            continue
        if out <= TODAY and out != born:
            return out


def hyphenate(family: str, other: str, rnd: Random) -> str:
    """A hyphenated name dropped to one half (Garcia-Lopez → Garcia or Lopez), or a plain one with a
    second name added (Garcia → Garcia-Lopez)."""
    if "-" in family:
        return rnd.choice(family.split("-"))
    return f"{family}-{other}" if rnd.random() < 0.7 else f"{other}-{family}"


def marry(family: str, other: str) -> str:
    """The family name after a marriage: another one (``other``, not ``family``)."""
    assert other != family
    return other


def drop_accents(text: str) -> str:
    """What an ASCII-only system keeps of a name: José → Jose."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


@functools.lru_cache(maxsize=1 << 16)
def fold(text: str) -> str:
    """Lower-case ASCII letters of a name (the baseline's and the tests' comparison)."""
    return "".join(filter(str.isalpha, drop_accents(text).lower()))


# ------------------------------------------------------------------ the generator

def _zipf(count: int, exponent: float) -> list[float]:
    return list(itertools.accumulate(1 / (rank ** exponent) for rank in range(1, count + 1)))


def _dedupe(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


_MALE, _FEMALE = _dedupe(MALE), _dedupe(FEMALE)
_TAIL = [a + b for a in TAIL_FIRST for b in TAIL_SECOND]
_FAMILY = _dedupe(FAMILY)
_MALE_CUM, _FEMALE_CUM, _FAMILY_CUM = _zipf(len(_MALE), 0.9), _zipf(len(_FEMALE), 0.9), _zipf(len(_FAMILY), 0.6)
_COMMON = 20  # the first names of each list, for same-name strangers


class _Random(Random):
    """Random with a quicker randrange and choice (one float each; the bias is far below a test's
    tolerance): the generator draws some forty numbers a person."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if stop is None:
            start, stop = 0, start
        return start + int(self.random() * (stop - start))

    def choice(self, seq: Sequence[T]) -> T:  # type: ignore[override]
        return seq[int(self.random() * len(seq))]

    def weighted(self, seq: Sequence[T], cum_weights: list[float]) -> T:
        return seq[bisect.bisect_right(cum_weights, self.random() * cum_weights[-1])]


class _Builder:
    def __init__(self, practices: list[str], seed: int, rates: Mapping[str, float] | None,
                 persons: list[Person] | None = None, records: Iterable[dict[str, Any]] = ()) -> None:
        unknown = set(rates or ()) - set(RATES)
        if unknown:
            raise ValueError(f"unknown rates: {sorted(unknown)}")
        self.rates = {**RATES, **(rates or {})}
        self.rnd = _Random(seed)
        self.practices = practices
        self.index = {p: i for i, p in enumerate(practices)}
        self.seen_weights = list(itertools.accumulate(PRACTICES_SEEN[:len(practices)]))
        # each practice's area: the first three digits of its patients' postal codes, its phone area codes
        area = Random(f"areas:{','.join(practices)}")
        self.zip3 = [f"{area.randrange(100, 999)}" for _ in practices]
        self.area_codes = [[f"{area.randrange(201, 989)}" for _ in range(3)] for _ in practices]
        # how each practice's system writes a record: (accents dropped, street kind spelt out, street line
        # upper case, phone format, MRN system, sends the MBI)
        self.styles = {p: (i % 3 == 2, i % 3 == 1, i % 2 == 1, PHONE_FORMATS[i % len(PHONE_FORMATS)],
                           f"urn:{p}:mrn", i % 2 == 0) for i, p in enumerate(practices)}
        self.mrns: dict[str, set[str]] = {p: set() for p in practices}
        for record in records:
            self.mrns.setdefault(record["practice"], set()).add(record["source_id"])
        self.persons: list[Person] = persons if persons is not None else []
        self.emails = {p.email for p in self.persons}
        self.records: list[dict[str, Any]] = []
        self.truth: dict[Key, int] = {}
        self.variations: dict[Key, tuple[str, ...]] = {}
        self.related: dict[str, list[tuple[int, int]]] = {case: [] for case in PAIR_CASES}

    # ---------------------------------------------------------- people
    def given(self, sex: str, common: bool = False) -> str:
        names, cum = (_MALE, _MALE_CUM) if sex == "male" else (_FEMALE, _FEMALE_CUM)
        if common:
            return names[self.rnd.randrange(_COMMON)]
        name = self.rnd.weighted(names, cum)
        return self.accented(name)

    def family(self, common: bool = False) -> str:
        rnd = self.rnd
        if common:
            return _FAMILY[rnd.randrange(_COMMON)]
        if rnd.random() < HYPHENATED_SHARE:
            first, second = rnd.weighted(_FAMILY, _FAMILY_CUM), rnd.weighted(_FAMILY, _FAMILY_CUM)
            if first != second:
                return f"{first}-{second}"
        if rnd.random() < FAMILY_HEAD_SHARE:
            return self.accented(rnd.weighted(_FAMILY, _FAMILY_CUM))
        return _TAIL[rnd.randrange(len(_TAIL))]

    def accented(self, name: str) -> str:
        accented = ACCENTED.get(name)
        return accented if accented is not None and self.rnd.random() < ACCENT_SHARE else name

    def birth_date(self, adult: bool = False) -> dt.date:
        rnd = self.rnd
        age_days = rnd.randrange(365 * 18, 365 * 95) if adult or rnd.random() < 0.85 else rnd.randrange(30, 365 * 18)
        return TODAY - dt.timedelta(days=age_days)

    def home(self, practice: str) -> tuple[str, str]:
        rnd = self.rnd
        line = f"{rnd.randrange(1, 9999)} {STREETS[rnd.randrange(len(STREETS))]} {rnd.choice(SUFFIXES)}"
        if rnd.random() < 0.15:
            line += f" Apt {rnd.randrange(1, 40)}{rnd.choice('ABCD')}"
        return line, f"{self.zip3[self.index[practice]]}{rnd.randrange(100):02d}"

    def phone(self, practice: str) -> str:
        r = self.rnd.random
        codes = self.area_codes[self.index[practice]]
        exchange = 200 + int(r() * 799)
        exchange += exchange == 555  # 555: the numbers of films, not of people
        return f"{codes[int(r() * len(codes))]}{exchange}{int(r() * 10000):04d}"

    def email(self, given: str, family: str) -> str:
        """An address of the person's own (no two people share one)."""
        rnd = self.rnd
        g, f = fold(given), fold(family)
        form = int(rnd.random() * 4)
        local = (f"{g}.{f}" if form == 0 else f"{g[0]}{f}" if form == 1 else
                 f"{g}{f}{rnd.randrange(1, 99)}" if form == 2 else f"{f}.{g}{rnd.randrange(10)}")
        address = f"{local}@{rnd.choice(EMAIL_DOMAINS)}"
        while address in self.emails:
            address = f"{local}{rnd.randrange(100, 10000)}@{rnd.choice(EMAIL_DOMAINS)}"
        self.emails.add(address)
        return address

    def ssn(self) -> str:
        """A number of the shape the SSA issues (area not 000, 666 or 9xx; group and serial not zero)."""
        r = self.rnd.random
        area = 1 + int(r() * 898)
        area += area == 666
        return f"{area:03d}-{1 + int(r() * 99):02d}-{1 + int(r() * 9999):04d}"

    def mbi(self, born: dt.date) -> str | None:
        if (TODAY - born).days < 365.25 * 65 or self.rnd.random() >= self.rates["medicare"]:
            return None
        rnd = self.rnd
        letters, digits = "ACDEFGHJKMNPQRTUVWXY", "0123456789"  # no S, L, O, I, B, Z
        alnum = letters + digits
        return "".join(rnd.choice(chars) for chars in ("123456789", letters, alnum, digits, letters, alnum, digits,
                                                      letters, letters, digits, digits))

    def seen_at(self) -> tuple[str, ...]:
        rnd = self.rnd
        count = 1 + bisect.bisect_right(self.seen_weights, rnd.random() * self.seen_weights[-1])
        first = rnd.randrange(len(self.practices))
        if count == 1:
            return (self.practices[first],)
        others = [p for i, p in enumerate(self.practices) if i != first]
        return (self.practices[first], *rnd.sample(others, count - 1))

    def person(self, *, sex: str | None = None, given: str | None = None, family: str | None = None,
               born: dt.date | None = None, like: Person | None = None, adult: bool = False) -> Person:
        rnd = self.rnd
        sex = sex or rnd.choice(("female", "male"))
        given = given or self.given(sex)
        family = family or self.family()
        born = born or self.birth_date(adult)
        if like is not None:  # one household
            practices, (line, postal), phone = like.practices, (like.address_line, like.postal_code), like.phone
        else:
            practices = self.seen_at()
            line, postal = self.home(practices[0])
            phone = self.phone(practices[0])
        p = Person(len(self.persons), given, family, sex, born, line, postal, phone, self.email(given, family),
                   self.ssn(), self.mbi(born), practices)
        self.persons.append(p)
        return p

    def people(self, count: int) -> None:
        rnd, rates = self.rnd, self.rates
        start = len(self.persons)
        # a draw makes one person or a pair; a pair of a case at q = rate / (2 - R), R the three rates'
        # sum, puts a share ``rate`` of all people in such pairs
        share = sum(rates[case] for case in PAIR_CASES)
        if share > 1:
            raise ValueError("twin, namesake and stranger rates add up to more than everyone")
        pair_at = list(itertools.accumulate(rates[case] / (2 - share) for case in PAIR_CASES))
        while len(self.persons) - start < count:
            draw = rnd.random()
            if len(self.persons) - start + 2 > count or draw >= pair_at[2]:
                self.seen(self.person())
            elif draw < pair_at[0]:
                self.twins()
            elif draw < pair_at[1]:
                self.namesakes()
            else:
                self.strangers()

    def twins(self) -> None:
        a = self.person()
        sex = a.sex if self.rnd.random() < 0.6 else ("male" if a.sex == "female" else "female")
        given = self.given(sex)
        while fold(given) == fold(a.given_name):
            given = self.given(sex)
        b = self.person(sex=sex, given=given, family=a.family_name, born=a.birth_date, like=a)
        self.related["twin"].append((a.number, b.number))
        self.seen(a)
        self.seen(b)

    def namesakes(self) -> None:
        rnd = self.rnd
        while True:
            parent = TODAY - dt.timedelta(days=rnd.randrange(365 * 21, 365 * 90))
            child = parent + dt.timedelta(days=rnd.randrange(365 * 20, 365 * 40))
            if child < TODAY - dt.timedelta(days=365):
                break
        sex = "male" if rnd.random() < 0.85 else "female"
        a = self.person(sex=sex, born=parent)
        b = self.person(sex=sex, given=a.given_name, family=a.family_name, born=child, like=a)
        self.related["namesake"].append((a.number, b.number))
        self.seen(a)
        self.seen(b)

    def strangers(self) -> None:
        sex = self.rnd.choice(("female", "male"))
        a = self.person(sex=sex, given=self.given(sex, common=True), family=self.family(common=True), adult=True)
        b = self.person(sex=sex, given=a.given_name, family=a.family_name, born=a.birth_date)
        while b.postal_code == a.postal_code or b.phone == a.phone or b.address_line == a.address_line:
            self.persons.pop()
            b = self.person(sex=sex, given=a.given_name, family=a.family_name, born=a.birth_date)
        self.related["stranger"].append((a.number, b.number))
        self.seen(a)
        self.seen(b)

    # ---------------------------------------------------------- records
    def seen(self, person: Person) -> None:
        for n, practice in enumerate(person.practices):
            self.record(person, practice, first=n == 0)
        if self.rnd.random() < self.rates["duplicate_chart"]:
            self.record(person, self.rnd.choice(person.practices), first=False, duplicate=True)

    def mrn(self, practice: str) -> str:
        used = self.mrns[practice]
        while True:
            mrn = f"M{10**7 + int(self.rnd.random() * 9 * 10**7)}"
            if mrn not in used:
                used.add(mrn)
                return mrn

    def record(self, p: Person, practice: str, *, first: bool, duplicate: bool = False) -> None:
        rnd, rates = self.rnd, self.rates
        cases: list[str] = ["duplicate_chart"] if duplicate else []
        given, family, born = p.given_name, p.family_name, p.birth_date
        line, postal, phone, email = p.address_line, p.postal_code, p.phone, p.email
        married = False
        if not first:
            if rnd.random() < rates["nickname"] and (nick := nickname(given, rnd)) is not None:
                given = nick
                cases.append("nickname")
            if rnd.random() < rates["given_typo"]:
                given = typo(given, rnd)
                cases.append("given_typo")
            if p.sex == "female" and (TODAY - born).days >= 365 * 20 and rnd.random() < rates["married"]:
                other = self.family()
                while fold(other) == fold(family):
                    other = self.family()
                family = marry(family, other)
                married = True
                cases.append("married")
            if rnd.random() < rates["hyphenated"]:
                other = self.family()
                while fold(other) in fold(family):
                    other = self.family()
                family = hyphenate(family, other, rnd)
                cases.append("hyphenated")
            if rnd.random() < rates["family_typo"]:
                family = typo(family, rnd)
                cases.append("family_typo")
            if rnd.random() < rates["day_month_swap"] and (swapped := swap_day_month(born)) is not None:
                born = swapped
                cases.append("day_month_swap")
            elif rnd.random() < rates["birth_date_typo"]:
                born = birth_date_typo(born, rnd)
                cases.append("birth_date_typo")
            if not married and rnd.random() < rates["moved"]:
                home = p.practices[0]
                while (moved := self.home(home))[1] == postal:
                    pass
                line, postal = moved
                cases.append("moved")
        ascii_only, spelt_out, upper, phone_format, mrn_system, sends_mbi = self.styles[practice]
        if ascii_only and not (given + family).isascii():
            given, family = drop_accents(given), drop_accents(family)
            cases.append("accents_dropped")
        if spelt_out:  # the street's kind spelt out: Oak St → Oak Street
            words = line.split(" ")
            words[2] = SUFFIX_WORDS.get(words[2], words[2])
            line = " ".join(words)
        if upper:
            line = line.upper()
        if not married and rnd.random() < rates["no_phone"]:
            phone_text = None
            cases.append("no_phone")
        else:
            phone_text = phone_format.format(phone[:3], phone[3:6], phone[6:])
        if not married and rnd.random() < rates["no_email"]:
            email_text = None
            cases.append("no_email")
        else:
            email_text = email
        mrn = self.mrn(practice)
        identifiers = [{"system": mrn_system, "value": mrn, "type": "MR"}]
        if rnd.random() < rates["ssn"]:
            identifiers.append({"system": SSN_SYSTEM, "value": p.ssn, "type": "SS"})
        if p.mbi is not None and sends_mbi:
            identifiers.append({"system": MBI_SYSTEM, "value": p.mbi, "type": "MC"})
        self.records.append({"kind": "patient", "practice": practice, "source_id": mrn, "identifiers": identifiers,
                             "family_name": family, "given_name": given, "birth_date": born, "sex": p.sex,
                             "postal_code": postal, "phone": phone_text, "address_line": line, "email": email_text})
        key = (practice, mrn)
        self.truth[key] = p.number
        if cases:
            self.variations[key] = tuple(cases)

    def population(self) -> Population:
        return Population(self.records, self.truth, self.persons, self.practices, self.variations, self.related)


def _practice_names(practices: list[str] | int) -> list[str]:
    if isinstance(practices, int):
        if practices < 1:
            raise ValueError("at least one practice")
        return [f"practice-{chr(ord('a') + i)}" if i < 26 else f"practice-{i}" for i in range(practices)]
    if not practices or len(set(practices)) != len(practices):
        raise ValueError("practices: one or more, each once")
    return list(practices)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The collector paused while the records are made: they are many and none is garbage, and its
    passes over them would make the generator's time grow faster than the population."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def generate(people: int, practices: list[str] | int = 3, seed: int = 0, *,
             rates: Mapping[str, float] | None = None) -> Population:
    """``people`` persons seen at ``practices`` (names, or how many: practice-a, practice-b, ...),
    with the cases at ``RATES`` (``rates`` overrides some)."""
    builder = _Builder(_practice_names(practices), seed, rates)
    with _no_gc():
        builder.people(people)
    return builder.population()


def grow(population: Population, records: int, seed: int = 1, *, existing: float = 0.4,
         rates: Mapping[str, float] | None = None) -> Population:
    """``records`` more patient records: a share ``existing`` of them new records of the population's
    people (at a practice they were not seen at yet, else a second chart), the rest of new people
    (each at one practice: the records are new patients). Returns the new records only, with their
    truth; person numbers go on from the population's (``population.persons`` grows)."""
    builder = _Builder(population.practices, seed, rates, persons=population.persons, records=population.records)
    rnd = builder.rnd
    for _ in range(records):
        if population.persons and rnd.random() < existing:
            p = population.persons[rnd.randrange(len(population.persons))]
            elsewhere = [q for q in builder.practices if q not in p.practices]
            if elsewhere:
                practice = rnd.choice(elsewhere)
                builder.persons[p.number] = p = replace(p, practices=(*p.practices, practice))
                builder.record(p, practice, first=False)
            else:
                builder.record(p, rnd.choice(p.practices), first=False, duplicate=True)
        else:
            p = builder.person()
            p = builder.persons[p.number] = replace(p, practices=p.practices[:1])
            builder.record(p, p.practices[0], first=True)
    return builder.population()


# ------------------------------------------------------------------ truth and scoring

def pairs(truth: Mapping[Key, int]) -> set[frozenset[Key]]:
    """Every pair of records of one person."""
    by_person: dict[int, list[Key]] = {}
    for key, person in truth.items():
        by_person.setdefault(person, []).append(key)
    return {frozenset(pair) for keys in by_person.values() for pair in itertools.combinations(keys, 2)}


def _pairs_in(counts: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in counts)


def evaluate(truth: Mapping[Key, int], clusters: Mapping[Key, str]) -> tuple[float, float, int, int, int]:
    """Pairwise (precision, recall, true positives, false positives, false negatives) of a clustering
    (record → cluster id; a record of the truth it leaves out is a cluster of its own). Counted per
    cluster and per (cluster, person) cell, so a large cluster costs no more than its records."""
    stray = [key for key in clusters if key not in truth]
    if stray:
        raise ValueError(f"{len(stray)} clustered records are not in the truth")
    predicted = _pairs_in(Counter(clusters.values()).values())
    actual = _pairs_in(Counter(truth.values()).values())
    true_positive = _pairs_in(Counter((cluster, truth[key]) for key, cluster in clusters.items()).values())
    false_positive, false_negative = predicted - true_positive, actual - true_positive
    precision = true_positive / predicted if predicted else 1.0
    recall = true_positive / actual if actual else 1.0
    return precision, recall, true_positive, false_positive, false_negative
