"""The benchmark's score by hand: conversions * min(1, (C / realized_cpa) ** beta)."""

import numpy as np
import pytest

from aigb.score import DEFAULT_BETA, cpa_penalty, realized_cpa, score


def test_no_conversions_scores_zero():
    assert score(0, 0.0, 50.0) == 0.0
    assert score(0, 123.0, 50.0) == 0.0


def test_cpa_at_or_under_target_scores_the_conversions():
    assert score(10, 400.0, 50.0) == 10.0   # CPA 40 < 50
    assert score(10, 500.0, 50.0) == 10.0   # CPA exactly on target
    assert score(3, 0.0, 50.0) == 3.0       # free conversions: CPA 0, no penalty


def test_cpa_over_target_is_penalised_quadratically():
    assert DEFAULT_BETA == 2.0
    assert score(10, 1000.0, 50.0) == pytest.approx(10 * 0.5 ** 2)      # CPA 100 = 2 C
    assert score(8, 8 * 75.0, 50.0) == pytest.approx(8 * (50 / 75) ** 2)


def test_beta_is_configurable():
    assert score(10, 1000.0, 50.0, beta=1.0) == pytest.approx(5.0)
    assert score(10, 1000.0, 50.0, beta=3.0) == pytest.approx(10 * 0.5 ** 3)
    assert score(10, 1000.0, 50.0, beta=0.0) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="beta"):
        score(10, 1000.0, 50.0, beta=-1.0)


def test_score_broadcasts_over_campaigns():
    conversions = np.array([0.0, 10.0, 10.0, 4.0])
    cost = np.array([30.0, 400.0, 1000.0, 0.0])
    out = score(conversions, cost, 50.0)
    assert isinstance(out, np.ndarray) and out.shape == (4,) and out.dtype == np.float64
    np.testing.assert_allclose(out, [0.0, 10.0, 2.5, 4.0])
    np.testing.assert_allclose(score(10.0, 1000.0, np.array([50.0, 100.0, 200.0])), [2.5, 10.0, 10.0])
    one = score(1, 1.0, 1.0)
    assert isinstance(one, float) and one == 1.0   # a scalar campaign gives a plain float, not a 0-d array


def test_realized_cpa_and_penalty():
    np.testing.assert_allclose(realized_cpa([100.0, 0.0, 5.0], [4.0, 2.0, 0.0]), [25.0, 0.0, np.nan])
    np.testing.assert_allclose(cpa_penalty([1000.0, 400.0, 10.0, 0.0], [10.0, 10.0, 0.0, 3.0], 50.0),
                               [0.25, 1.0, 1.0, 1.0])


def test_tasks_by_hand():
    """One campaign, 10 conversions for 1,000 against a target CPA of 50 (realised CPA 100 = 2 C):
    Target-CPA keeps a quarter of them, Max-Return (budget only) all ten."""
    from aigb.score import TASKS, task_beta

    assert TASKS == ("cpa", "max-return")
    assert score(10, 1000.0, 50.0, task_beta("cpa")) == pytest.approx(2.5)
    assert score(10, 1000.0, 50.0, task_beta("max-return")) == 10.0
    assert score(10, 400.0, 50.0, task_beta("cpa")) == score(10, 400.0, 50.0, task_beta("max-return")) == 10.0
    assert score(0, 123.0, 50.0, task_beta("max-return")) == 0.0


def test_unknown_task_names_the_field_and_the_choices():
    from aigb.score import task_beta
    from aigb.types import ConfigError

    with pytest.raises(ConfigError, match=r"task: unknown task 'roas'; choose one of cpa, max-return"):
        task_beta("roas")
