"""The suggested level from vital signs: a pure function of the signs and the thresholds (no I/O)."""

from typing import Any

import pytest
from pydantic import ValidationError

from services.triage.assessment import DEFAULT_VITAL_RULES, LevelMinutes, VitalRule, suggest_level
from services.triage.config import TriageSettings
from services.triage.schemas import TriageLevel, VitalSigns

NORMAL = {
    "heart_rate": 78,
    "systolic_bp": 122,
    "diastolic_bp": 78,
    "respiratory_rate": 16,
    "spo2": 98,
    "temperature": 36.6,
    "consciousness": "A",
}


def suggest(pain_score: int | None = None, rules: list[VitalRule] = DEFAULT_VITAL_RULES, **signs: Any) -> Any:
    return suggest_level(VitalSigns.model_validate(NORMAL | signs), pain_score=pain_score, rules=rules)


def test_normal_signs_suggest_level_iv_decided_by_no_sign() -> None:
    suggestion = suggest()
    assert (suggestion.level, suggestion.sign) == (TriageLevel.IV, None)
    assert "no vital sign" in suggestion.reason


@pytest.mark.parametrize(
    ("signs", "level", "sign", "reason"),
    [
        ({"heart_rate": 190}, "I", "heart_rate", "level I: heart rate 190 > 180"),
        ({"heart_rate": 35}, "I", "heart_rate", "level I: heart rate 35 < 40"),
        ({"systolic_bp": 65, "diastolic_bp": 40}, "I", "systolic_bp", "level I: systolic BP 65 < 70"),
        ({"spo2": 78}, "I", "spo2", "level I: SpO2 78 < 80"),
        ({"consciousness": "U"}, "I", "consciousness", "level I: consciousness U (AVPU)"),
        ({"heart_rate": 150}, "II", "heart_rate", "level II: heart rate 150 > 140"),
        ({"spo2": 88}, "II", "spo2", "level II: SpO2 88 < 90"),
        ({"consciousness": "V"}, "II", "consciousness", "level II: consciousness V (AVPU)"),
        ({"systolic_bp": 230, "diastolic_bp": 100}, "II", "systolic_bp", "level II: systolic BP 230 > 220"),
        ({"temperature": 39.5}, "III", "temperature", "level III: temperature 39.5 > 39"),
        ({"spo2": 93}, "III", "spo2", "level III: SpO2 93 < 94"),
        ({"respiratory_rate": 26}, "III", "respiratory_rate", "level III: respiratory rate 26 > 24"),
    ],
)
def test_a_sign_past_a_threshold_decides_the_level_and_says_so(
    signs: dict[str, Any], level: str, sign: str, reason: str
) -> None:
    suggestion = suggest(**signs)
    assert (suggestion.level, suggestion.sign, suggestion.reason) == (TriageLevel(level), sign, reason)


def test_thresholds_are_exclusive_bounds() -> None:
    assert suggest(heart_rate=180).level is TriageLevel.II  # 180 is not > 180, but > 140
    assert suggest(heart_rate=140).level is TriageLevel.III  # not > 140, but > 120
    assert suggest(heart_rate=120).level is TriageLevel.IV
    assert suggest(spo2=94).level is TriageLevel.IV


def test_the_most_urgent_sign_wins_whatever_the_order_of_signs() -> None:
    suggestion = suggest(temperature=39.5, heart_rate=150, spo2=75)
    assert (suggestion.level, suggestion.sign) == (TriageLevel.I, "spo2")


def test_pain_score_counts_and_unmeasured_signs_are_skipped() -> None:
    only_pain = suggest_level(VitalSigns(), pain_score=9, rules=DEFAULT_VITAL_RULES)
    assert (only_pain.level, only_pain.sign) == (TriageLevel.II, "pain_score")
    assert suggest(pain_score=5).level is TriageLevel.III
    assert suggest(pain_score=2).level is TriageLevel.IV
    assert suggest_level(VitalSigns(heart_rate=80), pain_score=None, rules=DEFAULT_VITAL_RULES).level is (
        TriageLevel.IV
    )


def test_thresholds_are_data_a_hospital_can_change() -> None:
    stricter = [VitalRule(level=TriageLevel.II, sign="heart_rate", above=110)]
    assert suggest(heart_rate=115, rules=stricter).level is TriageLevel.II
    assert suggest(heart_rate=190, rules=[]).level is TriageLevel.IV


def test_settings_read_thresholds_and_limits_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_VITAL_RULES", '[{"level": "I", "sign": "spo2", "below": 85}]')
    monkeypatch.setenv("TRIAGE_RESPONSE_MINUTES", '{"IV": 120}')
    settings = TriageSettings()
    assert settings.vital_rules == [VitalRule(level=TriageLevel.I, sign="spo2", below=85)]
    assert [settings.response_minutes.of(level) for level in TriageLevel] == [0, 10, 30, 120]
    assert (
        TriageSettings.model_fields["response_minutes"].default_factory is LevelMinutes
    )  # documented defaults
    assert [LevelMinutes().of(level) for level in TriageLevel] == [0, 10, 30, 240]


@pytest.mark.parametrize(
    "rule",
    [
        {"level": "I", "sign": "shoe_size", "above": 45},
        {"level": "I", "sign": "heart_rate"},
        {"level": "I", "sign": "consciousness", "below": 3},
        {"level": "I", "sign": "heart_rate", "above": 150, "avpu": ["U"]},
    ],
)
def test_a_malformed_rule_is_refused(rule: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        VitalRule.model_validate(rule)
