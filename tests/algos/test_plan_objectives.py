"""Objectives on a planned day: the grammar, each term on hand-computed plans, the reading through
per-tick spend, and realised days of evaluation rows."""

import math

import pytest

torch = pytest.importorskip("torch")

from aigb.algos.plan_features import MARKET_CHANNELS, RobustScaler  # noqa: E402
from aigb.algos.plan_objectives import (  # noqa: E402
    ObjectiveTerm, PlanObjective, format_guide, objective_compliance, parse_guide, planned_efficiency, realised_day,
)

T = 48
P = len(MARKET_CHANNELS)
B_, S_, V_ = (MARKET_CHANNELS.index(c) for c in ("budget_left", "spend_rate", "value_delivered"))


def objective(text):
    return PlanObjective(text, MARKET_CHANNELS, RobustScaler.identity(P), T)   # identity: scaled units = plan units


def plan_from_spend(tick_share, value_T=1.0):
    """(1, T + 1, P) a consistent plan: tick_share (T,) the budget share spent in each tick."""
    share = torch.as_tensor(tick_share, dtype=torch.float64)
    x = torch.zeros(1, T + 1, P, dtype=torch.float64)
    x[0, :, B_] = 1.0 - torch.cat([torch.zeros(1, dtype=torch.float64), share.cumsum(0)])
    x[0, 1:, S_] = torch.log1p(share * T)                         # log(1 + spend / (B / T))
    x[0, :, V_] = torch.linspace(0.0, value_T, T + 1, dtype=torch.float64)
    return x


# --- grammar -----------------------------------------------------------------------------------------
def test_guide_grammar_and_canonical_labels():
    terms = parse_guide("cpa:0.9, util:0.95,cap:0.5@24*2,exhaust@40,exhaust:0.1@30,smooth*0.5")
    assert terms == (ObjectiveTerm("cpa", 0.9), ObjectiveTerm("util", 0.95), ObjectiveTerm("cap", 0.5, 24, 2.0),
                     ObjectiveTerm("exhaust", None, 40), ObjectiveTerm("exhaust", 0.1, 30), ObjectiveTerm("smooth", weight=0.5))
    assert format_guide(terms) == "cpa:0.9,util:0.95,cap:0.5@24*2,exhaust@40,exhaust:0.1@30,smooth*0.5"
    assert parse_guide(format_guide(terms)) == terms


@pytest.mark.parametrize("text, message", [
    ("cost:1", "unknown term 'cost'"),
    ("cpa", "term 'cpa': it needs a level"),
    ("cap:0.5", "term 'cap:0.5': it needs a tick"),
    ("cpa:0.9@24", "it takes no tick"),
    ("smooth:2", "it takes no level"),
    ("util:1.5", "a share of the budget, in \\(0, 1\\]"),
    ("cpa:-1", "level must be a finite number > 0"),
    ("cpa:0.9*0", "weight must be a finite number > 0"),
    ("cap:0.5@0", "tick must be an integer >= 1"),
    ("cap:0.5@x", "term 'cap:0.5@x'"),
    ("cpa:0.9,,util:1", "empty term"),
    ("", "no terms"),
])
def test_bad_terms_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_guide(text)


def test_objective_needs_the_market_plan_and_ticks_within_the_day():
    with pytest.raises(ValueError, match="spend_rate, value_delivered"):
        PlanObjective("cpa:1", ("budget_left", "state_1"), RobustScaler.identity(2), T)
    with pytest.raises(ValueError, match="tick 49 is beyond"):
        objective("cap:0.5@49")


# --- each term on hand-computed plans ---------------------------------------------------------------
def test_a_plan_spending_60_percent_before_noon_violates_a_half_cap_by_a_tenth():
    x = plan_from_spend([0.6 / 24] * 24 + [0.3 / 24] * 24)
    rep = objective("cap:0.5@24").report(x)["cap:0.5@24"]
    assert float(rep["measure"]) == pytest.approx(0.6)
    assert float(rep["violation"]) == pytest.approx(0.1)
    assert float(rep["log_f"]) == pytest.approx(-2 * math.log(0.6 / 0.5))       # log min(1, (0.5 / 0.6)^2)
    met = objective("cap:0.61@24*3").report(x)["cap:0.61@24*3"]
    assert float(met["violation"]) == 0.0 and float(met["log_f"]) == 0.0


def test_cpa_util_exhaust_and_smooth_by_hand():
    # 90 % of the budget spent, value 0.75 (conversions x C / B): CPA = 0.9 / 0.75 = 1.2 C.
    x = plan_from_spend([0.9 / 48] * 48, value_T=0.75)
    rep = objective("cpa:1,util:0.95,exhaust:0.2@40,smooth").report(x)
    assert float(rep["cpa:1"]["measure"]) == pytest.approx(1.2)
    assert float(rep["cpa:1"]["violation"]) == pytest.approx(0.2)                   # in units of C
    assert float(rep["cpa:1"]["log_f"]) == pytest.approx(2 * math.log(1 / 1.2))     # the score's own penalty
    assert float(rep["util:0.95"]["measure"]) == pytest.approx(0.9)
    assert float(rep["util:0.95"]["violation"]) == pytest.approx(0.05)
    assert float(rep["util:0.95"]["log_f"]) == pytest.approx(2 * math.log(0.9 / 0.95))
    assert float(rep["exhaust:0.2@40"]["measure"]) == pytest.approx(1 - 0.9 * 40 / 48)   # 0.25 left: met
    assert float(rep["exhaust:0.2@40"]["log_f"]) == 0.0
    assert float(rep["smooth"]["measure"]) == pytest.approx(0.0, abs=1e-12)           # an even pace
    # Spend alternating 0 / 2 x the even pace: every change is 2 (units of B / T), squared 4.
    rep = objective("smooth*0.5,exhaust@48").report(plan_from_spend([0.0, 2 / 48] * 24))
    assert float(rep["smooth*0.5"]["measure"]) == pytest.approx(4.0)
    assert float(rep["smooth*0.5"]["log_f"]) == pytest.approx(-2.0)
    assert float(rep["exhaust@48"]["violation"]) == pytest.approx(1 / 48)            # nothing left; floor 1 / T


def test_terms_add_up_and_weights_multiply():
    x = plan_from_spend([0.6 / 24] * 24 + [0.3 / 24] * 24, value_T=0.5)
    one, two = objective("cap:0.5@24"), objective("cpa:1")
    both = objective("cap:0.5@24*2,cpa:1")
    torch.testing.assert_close(both(x), 2 * one(x) + two(x))


def test_planned_efficiency_is_the_score_of_the_last_row():
    x = plan_from_spend([0.9 / 48] * 48, value_T=0.75)                               # CPA 1.2 C
    b, v = x[..., B_], x[..., V_]
    assert float(planned_efficiency(b, v, T)) == pytest.approx(0.75 / 1.2 ** 2)
    x = plan_from_spend([0.5 / 48] * 48, value_T=0.75)                               # CPA 2/3 C: no penalty
    assert float(planned_efficiency(x[..., B_], x[..., V_], T)) == pytest.approx(0.75)


# --- the reading through per-tick spend --------------------------------------------------------------
def test_planned_budget_path_follows_the_spend_channel_and_moves_the_next_row():
    t = 10
    x = plan_from_spend([0.02] * 48)
    x[0, t + 1:, B_] = 0.9                                    # an inconsistent cumulative channel after row t
    obj = objective("cap:0.3@24")
    b, _ = obj.quantities(x, tick=t)
    torch.testing.assert_close(b[0, : t + 1], x[0, : t + 1, B_])                      # realised rows as they are
    torch.testing.assert_close(b[0, 24], torch.tensor(1 - 0.02 * 24, dtype=torch.float64))
    b_plain, _ = obj.quantities(x)                                                  # without a tick: the channel
    assert float(b_plain[0, 24]) == pytest.approx(0.9)
    # The gradient of the cap reaches the spend of every planned tick before 24, the next one included,
    # and none of the planned cumulative rows (the realised row t anchors the path; in-painting keeps
    # guidance off it).
    x = plan_from_spend([0.02] * 48).requires_grad_(True)
    (grad,) = torch.autograd.grad(obj(x, tick=t).sum(), x)
    assert (grad[0, t + 1: 25, S_] < 0).all() and (grad[0, 25:, S_] == 0).all()
    assert (grad[0, t + 1:, B_] == 0).all() and (grad[0, :t, B_] == 0).all()


# --- realised days -----------------------------------------------------------------------------------
def row(budget, spend_by_tick, conversions, cpa=2.0, error=None):
    remaining = [budget - sum(spend_by_tick[:k]) for k in range(len(spend_by_tick))]
    return {"budget": budget, "target_cpa": cpa, "spend": sum(spend_by_tick), "conversions": conversions,
            "expected_conversions": conversions, "remaining_budget": remaining, "error": error}


def test_realised_days_and_compliance():
    early = row(100.0, [60 / 24] * 24 + [30 / 24] * 24, conversions=40)    # 60 % before noon, CPA 90 / 40 = 2.25
    even = row(100.0, [90 / 48] * 48, conversions=50)                       # 45 % before noon, CPA 1.8
    b, v = realised_day(even)
    assert b.shape == (49,) and float(b[0]) == 1.0 and float(b[-1]) == pytest.approx(0.1)
    assert float(v[-1]) == pytest.approx(50 * 2 / 100) and math.isnan(float(v[0]))
    out = objective_compliance([early, even, row(1.0, [0.0] * 48, 0, error="boom")], "cap:0.5@24,cpa:1")
    # No conversions, no CPA: met, and out of the mean measure (the evaluation's convention).
    none = objective_compliance([even, row(100.0, [1.0] * 48, conversions=0)], "cpa:1")["cpa:1"]
    assert none["met"] == 1.0 and none["measure"] == pytest.approx(0.9) and none["campaigns"] == 2
    assert out["cap:0.5@24"]["met"] == 0.5 and out["cap:0.5@24"]["campaigns"] == 2
    assert out["cap:0.5@24"]["measure"] == pytest.approx((0.6 + 0.45) / 2)
    assert out["cap:0.5@24"]["violation"] == pytest.approx(0.05)
    assert out["cpa:1"]["met"] == 0.5 and out["cpa:1"]["measure"] == pytest.approx((2.25 + 1.8) / 2 / 2)
    assert out["all"]["met"] == 0.5


def test_a_cpa_condition_against_a_scaled_target_for_the_retrained_reference():
    import numpy as np

    from aigb.algos.diffbid import DiffBidConfig
    from aigb.algos.plan_features import MarketPlan
    from aigb.algos.registry import config_from_dict
    from aigb.features import FEATURE_NAMES

    terminal = np.zeros((1, len(FEATURE_NAMES)))
    for name, value in (("spend", 90.0), ("conversions", 50.0), ("budget", 100.0), ("target_cpa", 2.0)):
        terminal[0, FEATURE_NAMES.index(name)] = value                               # CPA 1.8 = 0.9 C
    view = MarketPlan(len(FEATURE_NAMES), T)
    assert view.outcomes(terminal, np.array([0.5]))[0, 1] == pytest.approx(1.0)
    assert view.outcomes(terminal, np.array([0.5]), cpa_scale=0.8)[0, 1] == pytest.approx((1.6 / 1.8) ** 2)
    assert config_from_dict(DiffBidConfig, {}).cpa_condition_scale == 1.0             # configs saved before it load
    with pytest.raises(ValueError, match="cpa_condition_scale"):
        DiffBidConfig(cpa_condition_scale=0.0)
