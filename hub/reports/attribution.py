"""Which service line a charge (and so its payments, adjustments and margin) counts under.

Feeds differ in what a charge line carries: a CSV export names the visit type (mapped to a
service line), an HL7 v2 DFT or a FHIR ChargeItem names only its encounter. The rollups give
every charge the first service line found in this order:

1. the charge's own (its visit type, mapped by the practice's mapping);
2. its encounter's (``encounter_source_id``);
3. the appointment that encounter came from (``appointment_source_id``), or, when no encounter has
   the charge's visit number, the appointment whose id it is (many practice systems number a visit
   by its appointment: an HL7 v2 DFT names only PV1-19);
4. its procedure code in the MSO vocabulary ``procedure_service_lines``
   (``mappings/mso/procedure_service_lines.yaml``: codes that belong to one service line);
5. none: the charge counts in the "unattributed" bucket.

The bucket is a slice like any other: the rollups keep it as the empty service line, and a report
shows it as ``UNATTRIBUTED``, so the service lines of any figure add up to its total. The link is
resolved when a cell is recomputed, from the rows as they are then: an encounter that arrives
after its charges moves them when its month is recomputed (the same month: a charge is dated the
day of its visit); a change of the procedure map applies at ``hub report rebuild``.
"""

from __future__ import annotations

from hub.mapping.vocabulary import load_vocabulary, procedure_service_lines

UNATTRIBUTED = "unattributed"  # how a report names the service line of records with none


def charge_joins(alias: str = "c") -> str:
    """The joins the attribution needs: none. The encounter and appointment are looked up per charge by
    scalar subqueries (``_steps``), which both stores run as index probes and only as far as needed; as
    LEFT JOINs, PostgreSQL hashed a practice's whole encounters and appointments for each cell."""
    return ""


def _steps(alias: str) -> list[tuple[str, str]]:
    """(where the line comes from, its SQL), in the order of precedence; the procedure map last."""
    c = alias
    visit = f"practice = {c}.practice AND {{t}}.source_id = {c}.encounter_source_id"
    encounter = f"(SELECT NULLIF(e.service_line, '') FROM encounters e WHERE e.{visit.format(t='e')})"
    via_encounter = (f"(SELECT NULLIF(a.service_line, '') FROM encounters e JOIN appointments a ON a.practice = "
                     f"e.practice AND a.source_id = e.appointment_source_id WHERE e.{visit.format(t='e')})")
    by_number = (f"(SELECT NULLIF(a.service_line, '') FROM appointments a WHERE a.{visit.format(t='a')} AND NOT "
                 f"EXISTS (SELECT 1 FROM encounters e WHERE e.{visit.format(t='e')}))")
    steps = [("charge", f"NULLIF({c}.service_line, '')"), ("encounter", encounter),
             ("appointment", f"COALESCE({via_encounter}, {by_number})")]
    by_code = procedure_service_lines(load_vocabulary())
    if by_code:  # codes and lines are checked when the vocabulary loads: letters, digits and underscores
        whens = " ".join(f"WHEN '{code}' THEN '{line}'" for code, line in sorted(by_code.items()))
        steps.append(("procedure_code", f"CASE UPPER(TRIM({c}.procedure_code)) {whens} END"))
    return steps


def charge_service_line(alias: str = "c") -> str:
    """SQL: the charge's attributed service line, '' when none (needs ``charge_joins(alias)``)."""
    return f"COALESCE({', '.join(sql for _, sql in _steps(alias))}, '')"


def charge_service_line_from(alias: str = "c") -> str:
    """SQL: where the attributed line came from (``charge``, ``encounter``, ``appointment``,
    ``procedure_code``), or ``unattributed``: what the drill-down shows beside each charge."""
    whens = " ".join(f"WHEN {sql} IS NOT NULL THEN '{name}'" for name, sql in _steps(alias))
    return f"CASE {whens} ELSE '{UNATTRIBUTED}' END"
