"""Probabilistic comparison of patient records: a Fellegi–Sunter model in splink, on DuckDB.

Each field is compared at a few levels (exact, nickname or hyphenated part, close spelling,
transposed day and month, ...); each level's m and u probabilities give its match weight, and the
weights of a pair add up. The model starts from the priors written here and, once the hub holds
enough patients (``TRAIN_MIN``), learns u from random pairs and m by expectation maximisation on
the hub's own records (unsupervised). Only pairs that share a blocking key are compared, so the
cost grows with the records, not with their square.

Two guards stand above the weights, for the people a weight sum mistakes for one: twins share a
family name, a birth date and a household but not a given name; a parent and child namesake share
names and a household but not a birth date. A pair whose given names or birth dates disagree
outright is never linked by weight alone: at most it goes to review.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TRAIN_MIN = 2000  # records before the model learns its own weights (fewer: the priors)
FIELDS = ("given", "given_group", "family", "family_parts", "birth_date", "sex", "street", "postal", "phone", "email")


def _null(column: str) -> dict[str, Any]:
    return {"sql_condition": f"{column}_l IS NULL OR {column}_r IS NULL", "label_for_charts": "missing",
            "is_null_level": True}


def _level(label: str, sql: str, m: float, u: float, tf: str | None = None) -> dict[str, Any]:
    level = {"sql_condition": sql, "label_for_charts": label, "m_probability": m, "u_probability": u}
    if tf:  # the weight of an exact name follows the name's frequency: Smith says less than Raghunathan
        level.update(tf_adjustment_column=tf, tf_adjustment_weight=1.0, tf_minimum_u_value=0.0005)
    return level


def _comparison(name: str, null_column: str, levels: list[dict[str, Any]]) -> dict[str, Any]:
    return {"output_column_name": name, "comparison_levels": [_null(null_column), *levels]}


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
    ]),
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
BLOCKING = ["l.birth_date = r.birth_date", "l.given = r.given AND l.family = r.family",
            "l.phone = r.phone", "l.email = r.email", "l.street = r.street AND l.postal = r.postal",
            "l.family = r.family AND l.postal = r.postal"]  # equality only: each rule is a hash join
TRAINING_BLOCKS = ["l.birth_date = r.birth_date", "l.given = r.given AND l.family = r.family"]
GUARDED = ("given", "birth_date")  # a pair "different" on one of these is never linked by weight alone
TF_COLUMNS = ("given", "family")
PRIOR_MAX = 1e-4  # the prior match probability of two records, at most: a small store is not a crowd of twins


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


def _table(rows: Sequence[dict[str, Any]], offset: int = 0) -> Any:
    import pyarrow as pa

    columns: dict[str, list[Any]] = {"unique_id": list(range(offset, offset + len(rows)))}
    for name in FIELDS:
        columns[name] = [row.get(name) for row in rows]
    schema = pa.schema([("unique_id", pa.int64())] + [
        (name, pa.list_(pa.string()) if name in ("given_group", "family_parts") else pa.string()) for name in FIELDS])
    return pa.table(columns, schema=schema)


def score(rows: Sequence[dict[str, Any]], *, new_from: int | None = None, model: dict[str, Any] | None = None,
          floor: float = 0.5, train: bool = False) -> tuple[list[Scored], dict[str, Any]]:
    """Score the pairs among ``rows`` (feature rows, ``hub.identity.features``) at or above the
    probability ``floor``. ``new_from``: rows before this index were compared already, so only
    pairs with a row from it on are scored. ``model``: a saved model (else the priors, trained when
    ``train`` and there are enough rows). Returns the pairs and the model used."""
    from splink import DuckDBAPI, Linker

    logging.getLogger("splink").setLevel(logging.WARNING)
    n = len(rows)
    if n < 2:
        return [], model or settings(1e-4)
    db = DuckDBAPI()
    prior = min(PRIOR_MAX, max(1e-9, 1.0 / n))
    if new_from is None or new_from == 0:
        frame = db.register(_table(rows), table_name="patients_all")
        linker = Linker(frame, model or settings(prior), log_level=logging.WARNING)
        _register_frequencies(db, linker, rows)
        if train and n >= TRAIN_MIN and model is None:
            _train(linker)
        predictions = linker.inference.predict(threshold_match_probability=floor)
    else:
        old = db.register(_table(rows[:new_from]), table_name="patients_known")
        new = db.register(_table(rows[new_from:], new_from), table_name="patients_new")
        linker = Linker(new, model or settings(prior), log_level=logging.WARNING)
        _register_frequencies(db, linker, rows)
        between = linker.inference.predict_between(old, new, threshold_match_probability=floor,
                                                   warning_mode="never")
        within = linker.inference.predict_within(new, threshold_match_probability=floor, warning_mode="never")
        predictions = None
        used = linker.misc.save_model_to_json()
        pairs = _pairs(between, used) + _pairs(within, used)
        return pairs, used
    used = linker.misc.save_model_to_json()
    return _pairs(predictions, used), used


def _register_frequencies(db: Any, linker: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Name frequencies over every record (known and new), as splink's term-frequency look-ups."""
    import pyarrow as pa

    for column in TF_COLUMNS:
        counts = Counter(row[column] for row in rows if row.get(column))
        total = sum(counts.values()) or 1
        table = pa.table({column: list(counts), f"tf_{column}": [n / total for n in counts.values()]},
                         schema=pa.schema([(column, pa.string()), (f"tf_{column}", pa.float64())]))
        linker.table_management.register_term_frequency_lookup(db.register(table), column)


def _train(linker: Any) -> None:
    from splink import block_on

    training = linker.training
    training.estimate_probability_two_random_records_match(
        [block_on("given", "family", "birth_date"), block_on("phone"), block_on("email")], recall=0.8)
    training.estimate_u_using_random_sampling(max_pairs=2_000_000, seed=1)
    for rule in TRAINING_BLOCKS:
        training.estimate_parameters_using_expectation_maximisation(rule, fix_probability_two_random_records_match=True)


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
