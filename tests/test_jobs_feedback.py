"""What the retrain learns from the votes: caps and trust reach training, and `playbill feedback` shows it."""

from __future__ import annotations

import json

import pytest

from playbill.engine import models
from playbill.jobs import trainers
from playbill.jobs.retrain import retrain_from_checkpoint
from test_console import playbill
from test_jobs_fakes import FAKE_SENTIMENT, calls, make_initial_model


def record_votes(settings, votes: list[tuple[str, str, int, str]]) -> None:
    """(review, the critic's label, voter id, verdict), one interaction per distinct review."""
    from playbill.history import api
    from playbill.history.db import open_history

    engine, sessions = open_history(settings.database_url)
    ids: dict[str, int] = {}
    try:
        for text, label, member, verdict in votes:
            if text not in ids:
                ids[text] = api.record_interaction(sessions, kind="sentiment", prompt=text, label=label,
                                                   probability=0.9, model_name="sentiment", user_id=1)
            api.record_feedback(sessions, ids[text], member, verdict)
    finally:
        engine.dispose()


TROLL = 666
HONEST = [(f"honest review {i}", "positive", 100 + i % 5, "right" if i % 4 else "wrong") for i in range(10)]
TROLLING = [(f"troll target {i}", "positive", TROLL, "wrong") for i in range(200)]


def test_a_trolls_200_capped_votes_do_not_teach_and_honest_votes_teach_whole(settings, monkeypatch) -> None:
    monkeypatch.setitem(models.SPECS, "sentiment", FAKE_SENTIMENT)
    make_initial_model(settings.home)
    record_votes(settings, HONEST + TROLLING)
    retrain_from_checkpoint("sentiment", settings)
    weights = {text.split(" ")[0]: weight for text, _, weight in calls(settings.home)[0]["extra"]}
    assert weights == {"honest": 1.0}  # each troll vote weighs 20 / 200 = 0.1 < trainers.MIN_WEIGHT


def test_a_member_within_twice_the_cap_still_teaches_at_a_reduced_weight(settings, monkeypatch) -> None:
    monkeypatch.setitem(models.SPECS, "sentiment", FAKE_SENTIMENT)
    make_initial_model(settings.home)
    record_votes(settings, [(f"busy review {i}", "positive", 42, "right") for i in range(25)])
    retrain_from_checkpoint("sentiment", settings)
    assert {round(weight, 6) for _, _, weight in calls(settings.home)[0]["extra"]} == {round(20 / 25, 6)}


def test_the_outcome_says_what_was_learnt(settings, monkeypatch) -> None:
    monkeypatch.setitem(models.SPECS, "sentiment", FAKE_SENTIMENT)
    make_initial_model(settings.home)
    record_votes(settings, HONEST + TROLLING)
    outcome = retrain_from_checkpoint("sentiment", settings)
    assert [m["member"] for m in outcome.figures["learnt"]["members"] if m["limited"]] == [TROLL]


def test_playbill_feedback_shows_settled_labels_agreement_and_caps(settings) -> None:
    record_votes(settings, HONEST + TROLLING + [("honest review 0", "positive", 999, "right")])
    result = playbill("feedback", "--reviews", "3")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "211 vote(s) by 7 member(s) on 210 review(s): 209 settled (202 correct the critic), 1 tied and left out" in text
    assert "member 666: 200 vote(s), capped on 1 night(s), each vote down to 0.10" in text
    assert "settled reviews (3 of 209)" in text


def test_playbill_feedback_json_lists_every_settled_review(settings) -> None:
    record_votes(settings, HONEST)
    result = playbill("feedback", "--json")
    details = json.loads(result.stdout)
    assert (details["settled"], len(details["reviews"]), details["train"] + details["holdout"]) == (10, 10, 10)
