"""Probabilistic comparison of patient records: a Fellegi–Sunter model in splink, on DuckDB.

Each field is compared at a few levels (exact, nickname or hyphenated part, close spelling,
transposed day and month, ...); each level's m and u probabilities give its match weight, and the
weights of a pair add up. The model starts from the priors written here and, once the hub holds
enough patients (``TRAIN_MIN``), learns u from random pairs and m by expectation maximisation on
the hub's own records (unsupervised). Only pairs that share a blocking key are compared, so the
cost grows with the records, not with their square.

Guards stand above the weights, for the people a weight sum mistakes for one: twins share a family
name, a birth date and a household but not a given name; a parent and child namesake share names
and a household but not a birth date. A pair whose given names or birth dates disagree outright is
never linked by weight alone: at most it goes to review. And two people of one common name born on
one day look like one person who moved: a pair with no address, phone or e-mail in common links
only at ``CONTACTLESS_LINK`` (a rare name gets there), else it goes to review.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hub.identity.features import FEATURES_SQL, RAW_COLUMNS, RULE_COLUMNS, nickname_groups, rule_pairs_sql

TRAIN_MIN = 2000  # records before the model learns its own weights (fewer: the priors)
BUCKET_MAX = 25  # records sharing one rule key beyond this: a placeholder value, not a person
FIELDS = ("given", "given_group", "family", "family_parts", "birth_date", "sex", "street", "postal", "phone", "email")


def _null(column: str) -> dict[str, Any]:
    return {"sql_condition": f"{column}_l IS NULL OR {column}_r IS NULL", "label_for_charts": "missing",
            "is_null_level": True}


def _level(label: str, sql: str, m: float, u: float, tf: str | None = None) -> dict[str, Any]:
    level = {"sql_condition": sql, "label_for_charts": label, "m_probability": m, "u_probability": u}
    if tf:  # the weight of an exact name follows the name's frequency: Smith says less than Raghunathan
        level.update(tf_adjustment_column=tf, tf_adjustment_weight=1.0, tf_minimum_u_value=0.0005)
    return level


def _comparison(name: str, null_column: str, levels: list[dict[str, Any]],
                null: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"output_column_name": name, "comparison_levels": [null or _null(null_column), *levels]}


# (m, u) priors: m from what the same person's records show (typos, nicknames, moves), u about one
# in the number of distinct values
COMPARISONS: list[dict[str, Any]] = [
    _comparison("given", "given", [
        _level("exact", "given_l = given_r", 0.82, 0.01, tf="given"),
        _level("nickname", "list_contains(given_group_l, given_r) OR list_contains(given_group_r, given_l)",
               0.08, 0.002),
        _level("close", "jaro_winkler_similarity(given_l, given_r) >= 0.88", 0.07, 0.01),
        # one side gives only an initial (J. Smith); two full names that share an initial are different
        _level("initial", "(length(given_l) = 1 OR length(given_r) = 1) AND substr(given_l, 1, 1) = "
               "substr(given_r, 1, 1)", 0.02, 0.003),
        _level("different", "ELSE", 0.01, 0.975),
    ]),
    _comparison("family", "family", [
        _level("exact", "family_l = family_r", 0.85, 0.005, tf="family"),
        _level("part", "list_has_any(family_parts_l, family_parts_r)", 0.05, 0.001),
        _level("close", "jaro_winkler_similarity(family_l, family_r) >= 0.9", 0.04, 0.005),
        _level("different", "ELSE", 0.06, 0.989),
    ]),
    _comparison("birth_date", "birth_date", [
        _level("exact", "birth_date_l = birth_date_r", 0.93, 0.00005),
        _level("day-month-swapped",
               "substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4) AND "
               "substr(birth_date_l, 6, 2) = substr(birth_date_r, 9, 2) AND "
               "substr(birth_date_l, 9, 2) = substr(birth_date_r, 6, 2)", 0.02, 0.00002),
        _level("one-digit", "damerau_levenshtein(birth_date_l, birth_date_r) <= 1", 0.04, 0.001),
        _level("different", "ELSE", 0.01, 0.99893),
    ]),
    _comparison("sex", "sex", [
        _level("exact", "sex_l = sex_r", 0.98, 0.5),
        _level("different", "ELSE", 0.02, 0.5),
    ]),
    _comparison("address", "street", [
        _level("exact", "street_l = street_r", 0.6, 0.0005),
        _level("close", "jaro_winkler_similarity(street_l, street_r) >= 0.9", 0.08, 0.002),
        _level("same-postal-code", "postal_l = postal_r", 0.07, 0.02),
        _level("different", "ELSE", 0.25, 0.9775),
    ], null={"sql_condition": "(street_l IS NULL OR street_r IS NULL) AND (postal_l IS NULL OR postal_r IS NULL)",
             "label_for_charts": "missing", "is_null_level": True}),  # a postal code alone still compares
    _comparison("phone", "phone", [
        _level("exact", "phone_l = phone_r", 0.7, 0.0002),
        _level("different", "ELSE", 0.3, 0.9998),
    ]),
    _comparison("email", "email", [
        _level("exact", "email_l = email_r", 0.75, 0.0001),
        _level("different", "ELSE", 0.25, 0.9999),
    ]),
]
# pairs compared: any that share one of these (and nothing else is)
# pairs compared: any that share one of these (and nothing else is). Equality only, so each is a hash
# join; a birth date goes with a first letter, or everyone born on one day would be compared
BLOCKING = ["l.birth_date = r.birth_date AND substr(l.family, 1, 1) = substr(r.family, 1, 1)",
            "l.birth_date = r.birth_date AND substr(l.given, 1, 1) = substr(r.given, 1, 1)",
            "l.birth_date = r.birth_date AND l.postal = r.postal",
            "l.given = r.given AND l.family = r.family", "l.phone = r.phone", "l.email = r.email",
            "l.street = r.street AND l.postal = r.postal", "l.family = r.family AND l.postal = r.postal"]
# EM learns m from pairs blocked on one of these: each rule's own fields are left out of what it learns
TRAINING_BLOCKS = [("birth_date",), ("given", "family")]
# the match rate: the pairs these find, at a recall of 80%, are the matches among all pairs
MATCH_RATE_BLOCKS = [("given", "family", "birth_date"), ("phone",), ("email",)]
TRAIN_SAMPLE = 200_000  # records the model is trained on, at most (a random sample of them beyond)
GUARDED = ("given", "birth_date")  # a pair "different" on one of these is never linked by weight alone
CONTACTLESS_LINK = 0.9999  # a pair with no address, phone or e-mail in common links only at this probability
TF_COLUMNS = ("given", "family")
PRIOR_MAX = 1e-4  # the prior match probability of two records, at most: a small store is not a crowd of twins
log = logging.getLogger("hub.identity")


def settings(prior: float) -> dict[str, Any]:
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "unique_id",
        "probability_two_random_records_match": prior,
        "blocking_rules_to_generate_predictions": [{"blocking_rule": rule} for rule in BLOCKING],
        "comparisons": COMPARISONS,
        # splink 5 keeps the comparison levels (gamma_*) with the compared values only; the values stay in
        # DuckDB's memory, the hub reads the levels
        "retain_matching_columns": True,
        "retain_intermediate_calculation_columns": False,
        "em_convergence": 0.001,
        "max_iterations": 20,
    }


def level_labels(model: dict[str, Any]) -> dict[str, dict[int, str]]:
    """comparison → {gamma value: level label} (splink numbers the levels from the bottom, missing = -1)."""
    out: dict[str, dict[int, str]] = {}
    for comparison in model["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        labels = {-1: "missing"}
        for i, level in enumerate(levels):
            labels[len(levels) - 1 - i] = level["label_for_charts"]
        out[comparison["output_column_name"]] = labels
    return out


@dataclass(frozen=True)
class Scored:
    left: int  # indexes into the records scored
    right: int
    weight: float
    probability: float
    agreement: dict[str, str]  # comparison → level label

    @property
    def guarded(self) -> bool:
        return any(self.agreement.get(name) == "different" for name in GUARDED)

    @property
    def contactless(self) -> bool:
        """Names and a birth date are all that agree: no address or postal code, phone or e-mail."""
        return (self.agreement.get("address") not in ("exact", "close", "same-postal-code")
                and self.agreement.get("phone") != "exact" and self.agreement.get("email") != "exact")

    def status(self, link: float) -> str:
        """``link`` at or above the threshold, unless a guard holds the pair back: then ``review``."""
        if self.probability < link or self.guarded:
            return "review"
        if self.contactless and self.probability < max(link, CONTACTLESS_LINK):
            return "review"  # the same name and birth date, living apart: strangers as often as movers
        return "link"


def raw_table(columns: dict[str, list[Any]]) -> Any:
    """The records to compare as an Arrow table: ``unique_id`` and ``features.RAW_COLUMNS`` and
    ``features.RULE_COLUMNS`` (text)."""
    import pyarrow as pa

    schema = pa.schema([("unique_id", pa.int64())] + [(name, pa.string()) for name in (*RAW_COLUMNS, *RULE_COLUMNS)])
    return pa.table({name: columns[name] for name in schema.names}, schema=schema)


def score(raw: Any, *, new_from: int = 0, model: dict[str, Any] | None = None, floor: float = 0.5,
          train: bool = False, shared: Iterable[str] = ()
          ) -> tuple[list[Scored], list[tuple[int, int, str]], dict[str, Any]]:
    """Score the pairs among the records of ``raw`` (``raw_table``; ``unique_id`` is the row's index)
    at or above the probability ``floor``. ``new_from``: records with a smaller id were compared
    already, so only pairs with a record from it on are scored. ``model``: a saved model (else the
    priors, trained when ``train`` and there are enough records). Returns the scored pairs, the
    pairs of the deterministic rules ((head, other, rule); ``shared``: the shared identifier
    systems), and the model used."""
    import duckdb
    import pyarrow as pa
    from splink import DuckDBAPI, Linker

    logging.getLogger("splink").setLevel(logging.ERROR)  # its notes on training are not the operator's
    n = raw.num_rows
    if n < 2 or new_from >= n:
        return [], [], model or settings(PRIOR_MAX)
    con = duckdb.connect()
    names, groups = nickname_groups()
    con.register("raw", raw)
    rules = [(int(head), int(other), str(rule)) for rule, head, other in
             con.execute(rule_pairs_sql(shared, new_from, BUCKET_MAX)).fetchall()]
    con.register("nicknames", pa.table({"name": names, "grp": groups}))
    con.execute(f"CREATE TABLE features AS {FEATURES_SQL}")
    con.unregister("raw")
    for column in TF_COLUMNS:  # name frequencies over every record, known and new: splink's look-ups
        con.execute(f"CREATE TABLE tf_{column} AS SELECT {column}, count(*) / sum(count(*)) OVER () AS tf_{column} "
                    f"FROM features WHERE {column} IS NOT NULL GROUP BY {column}")
    db = DuckDBAPI(con)
    prior = min(PRIOR_MAX, max(1e-9, 1.0 / n))
    if new_from == 0:
        con.execute("ALTER TABLE features RENAME TO patients_all")
        if train and n >= TRAIN_MIN and model is None:
            model = _trained(con, db, prior, n)
        linker = Linker(db.register("patients_all"), model or settings(prior), log_level=logging.ERROR)
        _frequencies(db, linker)
        used = linker.misc.save_model_to_json()
        return _pairs(linker.inference.predict(threshold_match_probability=floor), used), rules, used
    con.execute(f"CREATE TABLE patients_known AS SELECT * FROM features WHERE unique_id < {int(new_from)}")
    con.execute(f"CREATE TABLE patients_new AS SELECT * FROM features WHERE unique_id >= {int(new_from)}")
    con.execute("DROP TABLE features")
    old, new = db.register("patients_known"), db.register("patients_new")
    linker = Linker(new, model or settings(prior), log_level=logging.ERROR)
    _frequencies(db, linker)
    used = linker.misc.save_model_to_json()
    between = linker.inference.predict_between(old, new, threshold_match_probability=floor, warning_mode="never")
    within = linker.inference.predict_within(new, threshold_match_probability=floor, warning_mode="never")
    return _pairs(between, used) + _pairs(within, used), rules, used


def _frequencies(db: Any, linker: Any) -> None:
    for column in TF_COLUMNS:
        linker.table_management.register_term_frequency_lookup(db.register(f"tf_{column}"), column)


def _trained(con: Any, db: Any, prior: float, n: int) -> dict[str, Any]:
    """The model trained on the records (a random sample of ``TRAIN_SAMPLE`` of them when more): the
    cost of training stays bounded, and a sample's match rate and weights are the whole's.

    Records that cannot teach a model keep the priors, with a warning, rather than fail every run of
    the index: most of them sharing one name and birth date (placeholder or load-test patients:
    splink refuses the match rate with a ValueError), or none sharing a name and birth date, phone or
    e-mail (the rate would be 0). A training block no two records share (no birth date twice)
    teaches nothing: its fields keep their priors."""
    from splink import Linker, block_on

    table = "patients_all"
    if n > TRAIN_SAMPLE:
        con.execute(f"CREATE TABLE patients_sample AS SELECT * FROM patients_all "
                    f"USING SAMPLE reservoir({TRAIN_SAMPLE} ROWS) REPEATABLE (1)")
        table = "patients_sample"
    trainer = Linker(db.register(table), settings(prior), log_level=logging.ERROR)
    _frequencies(db, trainer)
    training = trainer.training
    model: dict[str, Any]
    try:
        if _any_shared(con, table, MATCH_RATE_BLOCKS):  # none: the rate would be 0 and every weight -inf
            training.estimate_probability_two_random_records_match(
                [block_on(*columns) for columns in MATCH_RATE_BLOCKS], recall=0.8)
    except ValueError:  # splink's reason quotes counts only; the operator needs ours
        log.warning("the match model cannot learn from these %d patients (most share one name and birth "
                    "date, or one phone or e-mail: placeholder or test records?); the prior weights are used", n)
        model = settings(prior)
    else:
        training.estimate_u_using_random_sampling(max_pairs=2_000_000, seed=1)
        for columns in TRAINING_BLOCKS:
            # a block no two records share teaches nothing (splink would raise, its settings half changed)
            if _any_shared(con, table, [columns]):
                training.estimate_parameters_using_expectation_maximisation(
                    block_on(*columns), fix_probability_two_random_records_match=True)
        model = trainer.misc.save_model_to_json()
    if table != "patients_all":
        con.execute("DROP TABLE patients_sample")
    return model


def _any_shared(con: Any, table: str, blocks: Iterable[tuple[str, ...]]) -> bool:
    """Whether two records of ``table`` share all the columns of one of ``blocks`` (none missing)."""
    for columns in blocks:
        present = " AND ".join(f"{c} IS NOT NULL" for c in columns)
        if con.execute(f"SELECT 1 FROM {table} WHERE {present} GROUP BY {', '.join(columns)} "
                       f"HAVING count(*) > 1 LIMIT 1").fetchall():
            return True
    return False


def _pairs(frame: Any, model: dict[str, Any]) -> list[Scored]:
    labels = level_labels(model)
    out = []
    table = frame.as_pyarrow_table()
    wanted = ["unique_id_l", "unique_id_r", "match_weight", "match_probability",
              *[f"gamma_{name}" for name in labels if f"gamma_{name}" in table.column_names]]
    for row in table.select(wanted).to_pylist():
        agreement = {name: by_gamma.get(row.get(f"gamma_{name}", -1), "missing") for name, by_gamma in labels.items()}
        left, right = sorted((int(row["unique_id_l"]), int(row["unique_id_r"])))
        out.append(Scored(left, right, float(row["match_weight"]), float(row["match_probability"]), agreement))
    frame.drop_table_from_database_and_remove_from_cache()
    return out
