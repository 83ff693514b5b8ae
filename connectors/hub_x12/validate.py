"""The deep check of a practice's sample against the 5010 implementation guides, with pyx12.

pyx12 walks every segment through the guide's map (loops, usage, element types and code sets): a few
thousand segments a second, so it runs for onboarding checks (``Connector.findings``), never on the
ingest path. Findings name the segment, its position and the rule, never an element's value.
"""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any

_LOG_NAME = "pyx12"
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'|\([^)]{9,}\)|(?<=[:=]) ?\S+")  # quoted text, a value after = or :


def guide_findings(text: str) -> list[str]:
    """What pyx12 finds wrong in one interchange (an empty list when it is valid against its guide)."""
    import pyx12.params  # a heavy import (the guides' maps), only for onboarding checks
    import pyx12.x12n_document

    report = io.StringIO()
    logger = logging.getLogger(_LOG_NAME)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.ERROR)  # pyx12 logs element values (patient data): kept here, sanitised, never logged
    logger.propagate = False
    caught = _Caught()
    logger.addHandler(caught)
    try:
        valid = pyx12.x12n_document.x12n_document(pyx12.params.params(), io.StringIO(text), None, None,
                                                  fd_json=report)
    except Exception as exc:  # pyx12 raises on what it cannot read at all
        return [f"ISA: pyx12 could not read the interchange ({type(exc).__name__})"]
    finally:
        logger.removeHandler(caught)
        logger.setLevel(level)
        logger.propagate = propagate
    findings = list(_walk(_load(report.getvalue())))
    if not valid and not findings:  # errors of the ST's own elements are not in the report: pyx12's log has them
        findings = [_say("ST", m) for m in caught.messages] or [
            "ISA: pyx12 found the interchange invalid against its implementation guide"]
    return findings


class _Caught(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < 100:
            self.messages.append(record.getMessage().split(" - ", 1)[-1])


def _load(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {}


# the 999's codes (IK304 for segments, IK403 for elements): findings name the rule, never pyx12's text,
# which quotes the element's value
SEGMENT_CODES = {"1": "unrecognized segment", "2": "unexpected segment", "3": "required segment missing",
                 "4": "loop occurs over maximum times", "5": "segment exceeds maximum use",
                 "6": "segment not in the transaction set", "7": "segment not in proper sequence",
                 "8": "segment has data element errors", "I4": "segment not used in this guide is present",
                 "I6": "segment the guide requires here is missing", "I7": "loop occurs under minimum times",
                 "I8": "segment below minimum use", "I9": "segment not used in this situation is present"}
ELEMENT_CODES = {"1": "required element missing", "2": "conditional required element missing",
                 "3": "too many elements", "4": "element too short", "5": "element too long",
                 "6": "invalid character", "7": "invalid code value", "8": "invalid date", "9": "invalid time",
                 "10": "exclusion condition violated", "12": "too many repetitions", "13": "too many components",
                 "I10": "element not used in this guide is present", "I11": "too few repetitions",
                 "I12": "pattern match failure", "I13": "element not used in this situation is present",
                 "I6": "code value not used in this guide", "I9": "element the guide requires here is missing"}


def _walk(report: Any) -> list[str]:
    out: list[str] = []
    for isa in report.get("interchanges") or ():
        out += [_say("ISA", e) for e in isa.get("errors") or ()]
        for gs in isa.get("groups") or ():
            out += [_say("GS", e) for e in gs.get("errors") or ()]
            for st in gs.get("transactions") or ():
                out += [_say("ST", e) for e in st.get("errors") or ()]
                for seg in st.get("segments") or ():
                    sid, line = seg.get("seg_id") or "?", seg.get("cur_line", "?")
                    name = f" ({seg['name']})" if seg.get("name") else ""
                    for e in seg.get("errors") or ():
                        code = str(e.get("err_cde") or "")
                        out.append(f"{sid}{name}, line {line}: {SEGMENT_CODES.get(code, 'segment error')} "
                                   f"(code {code})")
                    for ele in seg.get("elements") or ():
                        at = f"{sid}-{ele.get('ele_pos') or '?'}"
                        if ele.get("subele_pos"):
                            at += f"-{ele['subele_pos']}"
                        label = f" ({ele['name']})" if ele.get("name") else ""
                        for e in ele.get("errors") or ():
                            code = str(e.get("err_cde") or "")
                            out.append(f"{at}{label}, line {line}: {ELEMENT_CODES.get(code, 'element error')} "
                                       f"(code {code})")
    return out


def _say(where: str, error: Any) -> str:
    """An envelope-level finding (pyx12's own text, which may quote a value: quoted parts are left out)."""
    if isinstance(error, dict):
        code, text = error.get("err_cde") or "", error.get("err_str") or ""
    else:
        code, text = "", str(error)
    text = _QUOTED.sub("(value)", text)
    return f"{where}: {text} (code {code})" if code else f"{where}: {text}"
