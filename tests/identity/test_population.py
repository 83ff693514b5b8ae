"""The synthetic population of hub.testing.population: its truth, its hard cases at their rates, its scoring."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from random import Random

import pytest

from hub.model.schemas import validate_record
from hub.testing.population import (
    MBI_SYSTEM,
    RATES,
    SSN_SYSTEM,
    TODAY,
    Population,
    birth_date_typo,
    drop_accents,
    evaluate,
    fold,
    generate,
    grow,
    hyphenate,
    nickname,
    nicknames_for,
    pairs,
    swap_day_month,
    typo,
)

PEOPLE = 20_000


@pytest.fixture(scope="module")
def population() -> Population:
    return generate(PEOPLE, ["north", "south", "east", "west"], seed=11)


def key(record: dict) -> tuple[str, str]:
    return record["practice"], record["source_id"]


def later_records(pop: Population) -> list[dict]:
    """Every record of a person but the first made (the person as they are)."""
    seen: set[int] = set()
    out = []
    for record in pop.records:
        person = pop.truth[key(record)]
        if person in seen:
            out.append(record)
        seen.add(person)
    return out


def near(observed: int, trials: int, rate: float) -> bool:
    """Within five standard deviations of a binomial count, and never further than a fifth of the rate off."""
    expected = trials * rate
    return abs(observed - expected) <= max(5 * math.sqrt(trials * rate * (1 - rate)), 0.01 * trials * rate) \
        and abs(observed - expected) <= 0.2 * expected + 5


# ------------------------------------------------------------------ the case functions


def test_nickname_comes_from_the_nicknames_dataset() -> None:
    rnd = Random(1)
    assert {nickname("Robert", rnd) for _ in range(200)} >= {"Bob", "Rob", "Bobby"}
    assert nickname("Elizabeth", rnd) in {n.title() for n in nicknames_for("Elizabeth")}
    assert "liz" in nicknames_for("Elizabeth") and "bill" in nicknames_for("William")
    assert nickname("Karen", rnd) is None  # a name without one


def test_typo_is_one_letter_off_and_keeps_the_first() -> None:
    rnd = Random(2)
    for name in ("Johnson", "Garcia", "Elizabeth", "Lee"):
        for _ in range(50):
            wrong = typo(name, rnd)
            assert wrong != name and wrong[0] == name[0]
            assert abs(len(wrong) - len(name)) <= 1
            if len(wrong) == len(name):  # substituted, or two neighbours swapped
                diff = [i for i in range(len(name)) if wrong[i] != name[i]]
                assert len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                          and wrong[diff[0]] == name[diff[1]])


def test_day_and_month_swapped_only_where_another_date() -> None:
    assert swap_day_month(dt.date(1980, 7, 3)) == dt.date(1980, 3, 7)
    assert swap_day_month(dt.date(1980, 7, 13)) is None  # no 13th month
    assert swap_day_month(dt.date(1980, 5, 5)) is None  # the same date


def test_birth_date_typo_is_one_digit() -> None:
    rnd = Random(3)
    born = dt.date(1961, 10, 28)
    for _ in range(100):
        wrong = birth_date_typo(born, rnd)
        assert wrong != born
        assert sum(a != b for a, b in zip(wrong.isoformat(), born.isoformat(), strict=True)) == 1


def test_hyphenated_names_gain_or_lose_a_half() -> None:
    rnd = Random(4)
    assert {hyphenate("Garcia", "Lopez", rnd) for _ in range(50)} == {"Garcia-Lopez", "Lopez-Garcia"}
    assert {hyphenate("Garcia-Lopez", "Smith", rnd) for _ in range(50)} == {"Garcia", "Lopez"}
    assert drop_accents("José Núñez") == "Jose Nunez" and fold("Zoë O'Neil") == "zoeoneil"


# ------------------------------------------------------------------ the population


def test_same_seed_same_population_other_seed_another() -> None:
    a, b, c = generate(300, 3, seed=5), generate(300, 3, seed=5), generate(300, 3, seed=6)
    assert a.records == b.records and a.truth == b.truth
    assert a.records != c.records


def test_records_fit_the_common_model(population: Population) -> None:
    for record in population.records[:3000]:
        validate_record(record)
        assert record["kind"] == "patient" and record["sex"] in ("male", "female")
        assert isinstance(record["birth_date"], dt.date)
        mrn = record["identifiers"][0]
        assert mrn == {"system": f"urn:{record['practice']}:mrn", "value": record["source_id"], "type": "MR"}
        assert record["source_id"][0] == "M" and record["source_id"][1:].isdigit()


def test_every_person_seen_about_one_and_seven_tenths_times(population: Population) -> None:
    assert len(population.truth) == len(population.records)  # one truth per record, no key twice
    per_person = Counter(population.truth.values())
    assert set(per_person) == set(range(PEOPLE))
    assert 1.6 <= len(population.records) / PEOPLE <= 1.9
    assert max(per_person.values()) <= 5  # four practices, and a second chart at one of them
    by_practice = Counter(r["practice"] for r in population.records)
    assert set(by_practice) == {"north", "south", "east", "west"}
    assert min(by_practice.values()) > 0.2 * len(population.records)


def test_duplicate_charts_are_two_mrns_of_one_person_at_one_practice(population: Population) -> None:
    at = Counter((r["practice"], population.truth[key(r)]) for r in population.records)
    twice = [k for k, n in at.items() if n > 1]
    assert near(len(twice), PEOPLE, RATES["duplicate_chart"])
    assert len(twice) == sum("duplicate_chart" in v for v in population.variations.values())


def test_truth_pairs_are_every_pair_of_a_persons_records(population: Population) -> None:
    per_person = Counter(population.truth.values())
    true_pairs = pairs(population.truth)
    assert len(true_pairs) == sum(n * (n - 1) // 2 for n in per_person.values())
    for pair in list(true_pairs)[:500]:
        a, b = sorted(pair)
        assert a != b and population.truth[a] == population.truth[b]


def test_record_cases_at_their_rates(population: Population) -> None:
    persons = population.persons
    later = later_records(population)
    cases = Counter(c for r in later for c in population.variations.get(key(r), ()))

    def eligible(case: str) -> int:
        def ok(r: dict) -> bool:
            p = persons[population.truth[key(r)]]
            adult_woman = p.sex == "female" and (TODAY - p.birth_date).days >= 365 * 20
            return {"nickname": bool(nicknames_for(p.given_name)),
                    "married": adult_woman,
                    "day_month_swap": swap_day_month(p.birth_date) is not None,
                    "moved": "married" not in population.variations.get(key(r), ())}.get(case, True)
        return sum(1 for r in later if ok(r))

    for case in ("nickname", "given_typo", "family_typo", "day_month_swap", "hyphenated", "married", "moved"):
        assert near(cases[case], eligible(case), RATES[case]), case
    # a typo in the birth date where the day and month were not swapped
    assert near(cases["birth_date_typo"], len(later), RATES["birth_date_typo"] * (1 - RATES["day_month_swap"] / 2))


def test_missing_contacts_and_identifiers_at_their_rates(population: Population) -> None:
    records = population.records
    unmarried = [r for r in records if "married" not in population.variations.get(key(r), ())]
    assert near(sum(r["phone"] is None for r in unmarried), len(unmarried), RATES["no_phone"])
    assert near(sum(r["email"] is None for r in unmarried), len(unmarried), RATES["no_email"])
    assert near(sum(any(i["system"] == SSN_SYSTEM for i in r["identifiers"]) for r in records), len(records),
                RATES["ssn"])
    with_mbi = [r for r in records if any(i["system"] == MBI_SYSTEM for i in r["identifiers"])]
    assert {r["practice"] for r in with_mbi} == {"north", "east"}  # every other practice sends it
    for r in with_mbi:
        assert (TODAY - population.persons[population.truth[key(r)]].birth_date).days >= 365.25 * 65
    old_at_mbi_practices = [r for r in records if r["practice"] in ("north", "east")
                            and (TODAY - population.persons[population.truth[key(r)]].birth_date).days >= 365.25 * 65]
    mbi_keys = {key(r) for r in with_mbi}
    assert near(sum(key(r) in mbi_keys for r in old_at_mbi_practices), len(old_at_mbi_practices), RATES["medicare"])


def test_a_record_shows_its_cases_and_no_others(population: Population) -> None:
    persons = population.persons
    for r in later_records(population):
        p = persons[population.truth[key(r)]]
        cases = set(population.variations.get(key(r), ()))
        same_given = fold(r["given_name"]) == fold(p.given_name)
        assert same_given == (not cases & {"nickname", "given_typo"}), cases
        if cases & {"nickname"} and "given_typo" not in cases:
            assert fold(r["given_name"]) in nicknames_for(p.given_name)
        same_family = fold(r["family_name"]) == fold(p.family_name)
        assert same_family == (not cases & {"married", "hyphenated", "family_typo"}), cases
        if "day_month_swap" in cases:
            assert r["birth_date"] == swap_day_month(p.birth_date)
        assert (r["birth_date"] == p.birth_date) == (not cases & {"day_month_swap", "birth_date_typo"})
        assert (r["postal_code"] != p.postal_code) == ("moved" in cases)
        assert (r["address_line"].upper().split()[:2] != p.address_line.upper().split()[:2]) <= ("moved" in cases)
        if "married" in cases:  # a new family name, the same household and contacts
            assert r["postal_code"] == p.postal_code and r["email"] == p.email
            assert "".join(ch for ch in r["phone"] if ch.isdigit())[-10:] == p.phone


def test_names_are_skewed_and_some_have_accents(population: Population) -> None:
    family = Counter(fold(r["family_name"]) for r in population.records)
    top = [name for name, _ in family.most_common(5)]
    assert "smith" in top[:2]
    assert 0.004 < family["smith"] / len(population.records) < 0.03
    assert len(family) > 2000  # a long tail
    accented = [r for r in population.records if not (r["given_name"] + r["family_name"]).isascii()]
    assert 0 < len(accented) < 0.05 * len(population.records)
    assert all(r["practice"] != "east" for r in accented)  # the third practice keeps ASCII only
    assert any("accents_dropped" in population.variations.get(key(r), ()) for r in population.records
               if r["practice"] == "east")


def _pairs_of(pop: Population, case: str) -> list[tuple]:
    return [(pop.persons[a], pop.persons[b]) for a, b in pop.related[case]]


def test_twins_are_two_people_of_one_household_and_birthday(population: Population) -> None:
    twins = _pairs_of(population, "twin")
    assert near(len(twins), PEOPLE, RATES["twin"] / 2)
    for a, b in twins:
        assert a.number != b.number
        assert a.family_name == b.family_name and a.birth_date == b.birth_date
        assert (a.address_line, a.postal_code, a.phone) == (b.address_line, b.postal_code, b.phone)
        assert fold(a.given_name) != fold(b.given_name)
        assert a.practices == b.practices
    assert sum(a.sex == b.sex for a, b in twins) > len(twins) / 2
    # and their records have two truths
    by_person = defaultdict(list)
    for r in population.records:
        by_person[population.truth[key(r)]].append(r)
    a, b = twins[0]
    assert by_person[a.number] and by_person[b.number]
    assert not {key(r) for r in by_person[a.number]} & {key(r) for r in by_person[b.number]}


def test_namesakes_are_parent_and_child(population: Population) -> None:
    namesakes = _pairs_of(population, "namesake")
    assert near(len(namesakes), PEOPLE, RATES["namesake"] / 2)
    for parent, child in namesakes:
        assert (parent.given_name, parent.family_name, parent.sex) == (child.given_name, child.family_name, child.sex)
        assert (parent.address_line, parent.phone) == (child.address_line, child.phone)
        assert 20 * 365 <= (child.birth_date - parent.birth_date).days <= 40 * 366
        assert child.birth_date < TODAY


def test_strangers_share_name_and_birth_date_not_a_home(population: Population) -> None:
    strangers = _pairs_of(population, "stranger")
    assert near(len(strangers), PEOPLE, RATES["stranger"] / 2)
    for a, b in strangers:
        assert (a.given_name, a.family_name, a.birth_date, a.sex) == (b.given_name, b.family_name, b.birth_date, b.sex)
        assert a.postal_code != b.postal_code and a.phone != b.phone and a.address_line != b.address_line
        assert a.email != b.email


def test_rates_can_be_asked_for() -> None:
    pop = generate(400, 2, seed=3, rates={"twin": 1.0, "namesake": 0.0, "stranger": 0.0, "nickname": 0.0,
                                          "moved": 1.0})
    assert len(pop.related["twin"]) == 200 and not pop.related["stranger"]
    later = later_records(pop)
    assert later and all("moved" in pop.variations[key(r)] or "married" in pop.variations[key(r)] for r in later)
    assert not any("nickname" in v for v in pop.variations.values())
    with pytest.raises(ValueError, match="unknown rates"):
        generate(10, rates={"twins": 0.5})
    with pytest.raises(ValueError, match="more than everyone"):
        generate(10, rates={"twin": 0.6, "stranger": 0.6})


def test_grow_adds_new_records_of_new_and_known_people() -> None:
    base = generate(3000, 3, seed=8)
    known_people = len(base.persons)
    more = grow(base, 1000, seed=9)
    assert len(more.records) == 1000
    assert not set(more.truth) & set(base.truth)
    for practice in {r["practice"] for r in base.records}:
        mrns = [r["source_id"] for r in base.records + more.records if r["practice"] == practice]
        assert len(mrns) == len(set(mrns))
    of_known = sum(person < known_people for person in more.truth.values())
    assert 300 < of_known < 500  # existing=0.4
    assert len(base.persons) > known_people  # the new people joined the population


# ------------------------------------------------------------------ scoring


def test_evaluate_counts_a_merged_pair_of_twins_as_one_false_positive() -> None:
    truth = {("a", "T1"): 0, ("a", "T2"): 1, ("a", "J1"): 2, ("b", "J2"): 2}
    merged = {("a", "T1"): "e1", ("a", "T2"): "e1", ("a", "J1"): "e2", ("b", "J2"): "e2"}
    assert evaluate(truth, merged) == (0.5, 1.0, 1, 1, 0)
    apart = {("a", "T1"): "e1", ("a", "T2"): "e2", ("a", "J1"): "e3", ("b", "J2"): "e4"}
    assert evaluate(truth, apart) == (1.0, 0.0, 0, 0, 1)  # no pair claimed: nothing claimed wrongly
    assert evaluate(truth, {}) == (1.0, 0.0, 0, 0, 1)  # a record left out is alone
    assert evaluate(truth, {("a", "J1"): "x", ("b", "J2"): "x"}) == (1.0, 1.0, 1, 0, 0)


def test_evaluate_on_three_people_in_two_clusters() -> None:
    # person 0: four records, person 1: two; cluster X holds three of person 0 and one of person 1
    truth = {("p", str(i)): 0 for i in range(4)} | {("q", "5"): 1, ("q", "6"): 1}
    clusters = {("p", "0"): "X", ("p", "1"): "X", ("p", "2"): "X", ("q", "5"): "X",
                ("p", "3"): "Y", ("q", "6"): "Y"}
    # predicted: C(4,2) + C(2,2) = 7; true: C(4,2) + C(2,2) = 7; right: C(3,2) = 3 in X, none in Y
    precision, recall, tp, fp, fn = evaluate(truth, clusters)
    assert (tp, fp, fn) == (3, 4, 4)
    assert precision == pytest.approx(3 / 7) and recall == pytest.approx(3 / 7)


def test_evaluate_counts_a_huge_cluster_without_listing_its_pairs() -> None:
    truth = {("p", str(i)): i % 10 for i in range(20_000)}  # ten people, 2,000 records each
    clusters = {k: "all" for k in truth}
    precision, recall, tp, fp, fn = evaluate(truth, clusters)
    assert tp == 10 * 2000 * 1999 // 2 and fn == 0
    assert fp == 20_000 * 19_999 // 2 - tp
    assert recall == 1.0 and precision == pytest.approx(1999 / 19_999)


def test_evaluate_refuses_records_the_truth_does_not_know() -> None:
    with pytest.raises(ValueError):
        evaluate({("a", "1"): 0}, {("a", "1"): "x", ("a", "2"): "x"})
