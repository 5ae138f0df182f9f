"""playbill.jobs.gate.judge: the one promotion rule (validation data and the community hold-out; test only reported)."""

from __future__ import annotations

from playbill.jobs.gate import judge


def critic(validation: float, community: float | None = None, test: float = 0.9) -> dict:
    figures = {"accuracy": validation, "n": 2500, "test_accuracy": test}
    if community is not None:
        figures.update(community_accuracy=community, community_n=10)
    return figures


def test_a_candidate_that_learnt_may_lose_at_most_the_tolerance_on_validation() -> None:
    assert judge("sentiment", critic(0.9275, 1.0), critic(0.9300, 0.6), allowed_drop=0.003).promote


def test_losing_more_than_the_tolerance_on_validation_is_refused() -> None:
    decision = judge("sentiment", critic(0.9260, 1.0), critic(0.9300, 0.6), allowed_drop=0.003)
    assert (decision.promote, decision.reason.startswith("accuracy on")) == (False, True)


def test_a_worse_community_hold_out_is_refused_even_with_a_better_validation() -> None:
    decision = judge("sentiment", critic(0.95, 0.5), critic(0.93, 0.6), allowed_drop=0.003)
    assert (decision.promote, decision.reason.startswith("community_accuracy")) == (False, True)


def test_without_community_data_the_validation_figure_must_be_no_worse() -> None:
    assert not judge("sentiment", critic(0.9299), critic(0.9300), allowed_drop=0.003).promote


def test_the_test_set_is_reported_and_never_decides() -> None:
    decision = judge("sentiment", critic(0.93, 0.9, test=0.80), critic(0.93, 0.9, test=0.95), allowed_drop=0.0)
    assert (decision.promote, "reported only: test_accuracy 0.8000 vs 0.9500" in decision.reason) == (True, True)


def test_the_playwright_gate_reads_a_loss_lower_is_better() -> None:
    candidate = {"val_loss": 1.505, "community_val_loss": 1.2}
    current = {"val_loss": 1.500, "community_val_loss": 1.6}
    assert judge("scene", candidate, current, allowed_drop=0.01).promote


def test_the_playwright_gate_refuses_a_loss_risen_beyond_the_tolerance() -> None:
    candidate = {"val_loss": 1.52, "community_val_loss": 1.2}
    current = {"val_loss": 1.50, "community_val_loss": 1.6}
    assert not judge("scene", candidate, current, allowed_drop=0.01).promote
