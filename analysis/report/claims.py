"""A claim of the paper as ``paper_repro.md`` shows it: the fields, the verdicts, and their checks.

A claim is a dict with exactly the fields of :data:`CLAIM_FIELDS`; :func:`validate_claim` says which
field is missing or bad. :func:`format_pm` writes a value with its standard error.

Three verdict rules read a confidence interval of a difference ``d`` (for example the loss of AdamS
minus that of AdamW, paired by seed) against a margin ``m`` stated before the runs; each can return
every one of its verdicts, and an interval too wide to decide is ``"inconclusive"``, never a pass:

* :func:`equivalence_verdict`: "the same" holds if the interval lies inside [-m, m], does not hold if it
  lies wholly outside it;
* :func:`superiority_verdict`: "lower" holds if the interval lies below 0, does not hold if it lies at
  or above 0, or, with a margin, above -m (the claim is "better", not "better by m"; the margin only
  lets a tight interval around 0 rule out an advantage that matters);
* :func:`noninferiority_verdict`: "no worse than m" holds if the interval lies below m, does not hold
  if it lies above m;
* :func:`inferiority_verdict`: "worse by more than m" holds if the interval lies above m, does not
  hold if it lies below m (the mirror of the previous rule).

:func:`all_of` joins the verdicts of a claim with several parts.
"""
from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["VERDICTS", "CLAIM_FIELDS", "validate_claim", "format_pm", "equivalence_verdict", "superiority_verdict",
           "noninferiority_verdict", "inferiority_verdict", "all_of"]

VERDICTS = ("holds", "holds at our scale", "does not hold", "inconclusive", "not testable here")
CLAIM_FIELDS = {
    "id": str,  # stable slug, unique across all notebooks
    "order": int,  # sort key in paper_repro.md
    "claim": str,  # the paper's statement, in our words
    "paper_value": str,  # what the paper says or reports
    "measured": str,  # our number, with its spread
    "command": str,  # the command that reproduces it
    "verdict": str,  # one of VERDICTS
    "note": str,  # why, and the caveats
}
_EMPTY_ALLOWED = {"note"}
_SLUG = re.compile(r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$")

def validate_claim(claim: Any, where: str = "claim") -> dict:
    """Check one claim dict and return it; raise ``ValueError`` naming the missing or bad field."""
    if not isinstance(claim, dict):
        raise ValueError(f"{where}: a claim must be a dict, got {type(claim).__name__}")
    label = f"{where} {claim.get('id')!r}" if isinstance(claim.get("id"), str) else where
    missing = [k for k in CLAIM_FIELDS if k not in claim]
    if missing:
        raise ValueError(f"{label}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(claim) - set(CLAIM_FIELDS))
    if unknown:
        raise ValueError(
            f"{label}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(CLAIM_FIELDS)}"
        )
    for key, kind in CLAIM_FIELDS.items():
        value = claim[key]
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{label}: field 'order' must be an int, got {value!r}")
        elif not isinstance(value, str):
            raise ValueError(f"{label}: field {key!r} must be a str, got {type(value).__name__}")
        elif not value.strip() and key not in _EMPTY_ALLOWED:
            raise ValueError(f"{label}: field {key!r} is empty")
    if not _SLUG.match(claim["id"]):
        raise ValueError(
            f"{label}: field 'id' must be a lowercase slug like 'state-memory-half', got {claim['id']!r}"
        )
    if claim["verdict"] not in VERDICTS:
        raise ValueError(
            f"{label}: field 'verdict' is {claim['verdict']!r}; use one of {', '.join(map(repr, VERDICTS))}"
        )
    return claim


def format_pm(value: float, se: float, digits: int = 2) -> str:
    """``value +- se`` with the standard error to ``digits`` significant digits and the value to match.

    >>> format_pm(0.99991234, 0.0000412), format_pm(3.2, 0.0213), format_pm(12.0, 0.0)
    ('0.999912 +- 0.000041', '3.200 +- 0.021', '12 +- 0')
    """
    if not (math.isfinite(value) and math.isfinite(se)) or se < 0:
        raise ValueError(f"cannot format {value} +- {se}")
    if se == 0:
        return f"{value:g} +- 0"
    decimals = max(0, digits - 1 - math.floor(math.log10(se)))
    return f"{value:.{decimals}f} +- {se:.{decimals}f}"


def _interval(ci, margin) -> tuple[float, float, float]:
    try:
        lo, hi = (float(x) for x in ci)
        margin = float(margin)
    except (TypeError, ValueError):
        raise ValueError(f"a verdict needs an interval (lo, hi) and a margin, got {ci!r} and {margin!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"the interval must be finite with lo <= hi, got ({lo}, {hi})")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"the margin must be a finite number >= 0, got {margin}")
    return lo, hi, margin


def equivalence_verdict(ci, margin: float, *, holds: str = "holds at our scale") -> str:
    """``holds`` if the interval of d lies inside [-margin, margin]; "does not hold" if it lies wholly
    outside (d is larger than the margin, one way or the other); else "inconclusive".

    >>> equivalence_verdict((-0.01, 0.015), 0.02), equivalence_verdict((0.03, 0.05), 0.02), equivalence_verdict((0.0, 0.03), 0.02)
    ('holds at our scale', 'does not hold', 'inconclusive')
    """
    lo, hi, margin = _interval(ci, margin)
    if -margin <= lo and hi <= margin:
        return holds
    if hi < -margin or lo > margin:
        return "does not hold"
    return "inconclusive"


def superiority_verdict(ci, margin: float | None = None, *, holds: str = "holds at our scale") -> str:
    """For "d < 0" (lower is better): ``holds`` if the interval lies below 0; "does not hold" if it lies
    at or above 0, or, given a ``margin``, above -margin (any advantage is smaller than the margin and
    none is shown); else "inconclusive".

    >>> superiority_verdict((-0.05, -0.01)), superiority_verdict((0.0, 0.02)), superiority_verdict((-0.05, 0.01))
    ('holds at our scale', 'does not hold', 'inconclusive')
    >>> superiority_verdict((-0.005, 0.004), 0.02), superiority_verdict((-0.03, 0.004), 0.02)
    ('does not hold', 'inconclusive')
    """
    lo, hi, m = _interval(ci, 0.0 if margin is None else margin)
    if hi < 0:
        return holds
    if lo >= 0 or (margin is not None and lo > -m):
        return "does not hold"
    return "inconclusive"


def noninferiority_verdict(ci, margin: float, *, holds: str = "holds at our scale") -> str:
    """For "d is at most margin": ``holds`` if the interval lies below margin; "does not hold" if it
    lies above margin; else "inconclusive".

    >>> noninferiority_verdict((0.0, 0.01), 0.02), noninferiority_verdict((0.03, 0.06), 0.02), noninferiority_verdict((0.01, 0.03), 0.02)
    ('holds at our scale', 'does not hold', 'inconclusive')
    """
    lo, hi, margin = _interval(ci, margin)
    if hi < margin:
        return holds
    if lo > margin:
        return "does not hold"
    return "inconclusive"


def inferiority_verdict(ci, margin: float, *, holds: str = "holds at our scale") -> str:
    """For "d is larger than margin" (worse by more than m): ``holds`` if the interval lies above
    margin; "does not hold" if it lies below margin; else "inconclusive".

    >>> inferiority_verdict((0.03, 0.06), 0.02), inferiority_verdict((-0.01, 0.01), 0.02), inferiority_verdict((0.01, 0.03), 0.02)
    ('holds at our scale', 'does not hold', 'inconclusive')
    """
    lo, hi, margin = _interval(ci, margin)
    if lo > margin:
        return holds
    if hi < margin:
        return "does not hold"
    return "inconclusive"


def all_of(*verdicts: str) -> str:
    """The verdict of a claim that needs every part: "does not hold" if any part does not hold, else
    "not testable here" if any part is not testable, else "inconclusive" if any part is, else the
    weakest of the holds ("holds at our scale" before "holds").

    >>> all_of("holds", "holds at our scale"), all_of("holds", "inconclusive"), all_of("inconclusive", "does not hold")
    ('holds at our scale', 'inconclusive', 'does not hold')
    """
    if not verdicts:
        raise ValueError("all_of: no verdicts given")
    unknown = [v for v in verdicts if v not in VERDICTS]
    if unknown:
        raise ValueError(f"all_of: unknown verdicts {unknown}; known: {', '.join(VERDICTS)}")
    for verdict in ("does not hold", "not testable here", "inconclusive", "holds at our scale"):
        if verdict in verdicts:
            return verdict
    return "holds"
