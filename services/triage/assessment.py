"""The suggested triage level: China's four-level emergency grading (急诊预检分级) read from vital signs.

`suggest_level` is pure: the thresholds are data (`VitalRule`, settable as `TRIAGE_VITAL_RULES`), the
most urgent level any measured sign reaches wins, and the answer names the sign that decided it so the
nurse can check it. The defaults follow the Beijing 2019 adult level-I criteria (HR >180 or <40,
SBP <70 mmHg, SpO2 <80 %, loss of consciousness) quoted in the 2018 expert consensus; the level II and
III bounds are common local values, not a national table, hence configurable.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field, model_validator

from services.triage.schemas import Consciousness, TriageLevel, VitalSigns

# A sign the rules may read: every numeric field of `VitalSigns`, the pain score, and consciousness.
NUMERIC_SIGNS = (
    "heart_rate",
    "systolic_bp",
    "diastolic_bp",
    "respiratory_rate",
    "spo2",
    "temperature",
    "pain_score",
)
SIGN_NAMES = {
    "heart_rate": "heart rate",
    "systolic_bp": "systolic BP",
    "diastolic_bp": "diastolic BP",
    "respiratory_rate": "respiratory rate",
    "spo2": "SpO2",
    "temperature": "temperature",
    "pain_score": "pain score",
    "consciousness": "consciousness",
}


class VitalRule(BaseModel):
    """One threshold: `sign` below `below`, above `above` (both exclusive), or consciousness in `avpu`,
    puts the patient at `level` at least."""

    level: TriageLevel
    sign: str
    below: float | None = None
    above: float | None = None
    avpu: list[Consciousness] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "VitalRule":
        if self.sign == "consciousness":
            if not self.avpu or self.below is not None or self.above is not None:
                raise ValueError("a consciousness rule names AVPU values only")
        elif self.sign in NUMERIC_SIGNS:
            if self.avpu is not None or (self.below is None and self.above is None):
                raise ValueError("a numeric rule needs `below` or `above`")
        else:
            raise ValueError(f"unknown sign {self.sign!r}")
        return self


def _rule(level: str, sign: str, below: float | None = None, above: float | None = None) -> VitalRule:
    return VitalRule(level=TriageLevel(level), sign=sign, below=below, above=above)


DEFAULT_VITAL_RULES: list[VitalRule] = [
    # Level I 急危: resuscitation now.
    _rule("I", "heart_rate", below=40, above=180),
    _rule("I", "systolic_bp", below=70),
    _rule("I", "spo2", below=80),
    _rule("I", "respiratory_rate", below=8, above=40),
    VitalRule(level=TriageLevel.I, sign="consciousness", avpu=[Consciousness.P, Consciousness.U]),
    # Level II 急重: monitor now, a doctor within 10 minutes.
    _rule("II", "heart_rate", below=50, above=140),
    _rule("II", "systolic_bp", below=90, above=220),
    _rule("II", "diastolic_bp", above=120),
    _rule("II", "spo2", below=90),
    _rule("II", "respiratory_rate", below=10, above=30),
    _rule("II", "temperature", below=32, above=41),
    _rule("II", "pain_score", above=7),
    VitalRule(level=TriageLevel.II, sign="consciousness", avpu=[Consciousness.V]),
    # Level III 急症: seen within 30 minutes.
    _rule("III", "heart_rate", above=120),
    _rule("III", "systolic_bp", below=100, above=180),
    _rule("III", "diastolic_bp", above=110),
    _rule("III", "spo2", below=94),
    _rule("III", "respiratory_rate", above=24),
    _rule("III", "temperature", below=35, above=39),
    _rule("III", "pain_score", above=3),
]
LEVEL_ORDER = (TriageLevel.I, TriageLevel.II, TriageLevel.III, TriageLevel.IV)


@dataclass(frozen=True, slots=True)
class Suggestion:
    level: TriageLevel
    sign: str | None  # None: no sign reached a level III threshold
    reason: str


def _reading(vitals: VitalSigns, pain_score: int | None, sign: str) -> float | str | None:
    if sign == "pain_score":
        return pain_score
    value: float | str | None = getattr(vitals, sign)
    return value


def _triggered(rule: VitalRule, value: float | str) -> str | None:
    """The reason in words when `value` crosses the rule's threshold, else None."""
    name = SIGN_NAMES[rule.sign]
    if rule.avpu is not None:
        return f"{name} {value} (AVPU)" if value in rule.avpu else None
    assert isinstance(value, int | float)
    if rule.below is not None and value < rule.below:
        return f"{name} {value:g} < {rule.below:g}"
    if rule.above is not None and value > rule.above:
        return f"{name} {value:g} > {rule.above:g}"
    return None


def suggest_level(vitals: VitalSigns, *, pain_score: int | None, rules: list[VitalRule]) -> Suggestion:
    """The most urgent level any measured sign reaches, and the first rule (in `rules` order) that did.

    Signs not measured are skipped; with none over a threshold the suggestion is level IV.
    """
    for level in LEVEL_ORDER[:-1]:
        for rule in (r for r in rules if r.level is level):
            value = _reading(vitals, pain_score, rule.sign)
            if value is None:
                continue
            reason = _triggered(rule, value)
            if reason is not None:
                return Suggestion(level=level, sign=rule.sign, reason=f"level {level.value}: {reason}")
    return Suggestion(
        level=TriageLevel.IV, sign=None, reason="level IV: no vital sign past a level III threshold"
    )


def due_at(assessed_at: datetime, minutes: int) -> datetime:
    """When a patient assessed at `assessed_at` with a `minutes` limit counts as overdue."""
    return assessed_at + timedelta(minutes=minutes)


class LevelMinutes(BaseModel):
    """Minutes per level; settable as JSON (`{"I": 0, "II": 10, "III": 30, "IV": 240}`)."""

    I: int = Field(default=0, ge=0, le=24 * 60)  # noqa: E741 - the level's official name
    II: int = Field(default=10, ge=0, le=24 * 60)
    III: int = Field(default=30, ge=0, le=24 * 60)
    IV: int = Field(default=240, ge=0, le=24 * 60)

    def of(self, level: TriageLevel) -> int:
        minutes: int = getattr(self, level.value)
        return minutes
