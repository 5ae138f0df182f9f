"""playbill.history.votes.settle: votes -> weighted labelled reviews (majority, trust, cap per member and night)."""

from __future__ import annotations

from datetime import date

import pytest

from playbill.history.votes import Vote, settle

NIGHT = date(2026, 12, 1)


def vote(review: int, member: int, verdict: str, served: str = "positive", night: date = NIGHT) -> Vote:
    return Vote(review_id=review, text=f"review {review}", served_label=served, member=member, verdict=verdict,
                night=night)


def labels(votes: list[Vote], cap: float = 20) -> dict[int, int]:
    return {r.review_id: r.label for r in settle(votes, member_cap=cap).reviews}


def test_a_vote_says_what_the_review_is() -> None:
    votes = [vote(1, 7, "wrong", "positive"), vote(2, 7, "right", "positive"), vote(3, 7, "wrong", "negative")]
    assert labels(votes) == {1: 0, 2: 1, 3: 1}


def test_the_majority_settles_a_review_and_a_tie_is_left_out() -> None:
    votes = [vote(1, 1, "wrong"), vote(1, 2, "wrong"), vote(1, 3, "right"), vote(2, 1, "right"), vote(2, 2, "wrong")]
    settled = settle(votes, member_cap=20)
    assert ([r.label for r in settled.reviews], settled.ties) == ([0], [2])


def test_one_trusted_vote_counts_as_one_review() -> None:
    [review] = settle([vote(1, 7, "wrong")], member_cap=20).reviews
    assert review.weight == 1.0


def test_one_members_votes_weigh_at_most_the_cap_per_night() -> None:
    votes = [vote(i, 666, "wrong") for i in range(200)]
    weights = {r.weight for r in settle(votes, member_cap=20).reviews}
    assert weights == {0.1}


def test_the_cap_is_per_night() -> None:
    votes = [vote(i, 666, "wrong", night=date(2026, 12, 1 + i % 2)) for i in range(200)]
    weights = {r.weight for r in settle(votes, member_cap=20).reviews}
    assert weights == {0.2}


def test_a_member_who_keeps_disagreeing_weighs_less_and_loses_the_contested_reviews() -> None:
    # members 1 and 2 agree on reviews 0-9; member 9 contradicts them on all of them, then
    # meets member 3 alone on review 10: the contrarian's vote no longer settles it
    votes = [vote(i, m, "right") for i in range(10) for m in (1, 2)] + [vote(i, 9, "wrong") for i in range(10)]
    votes += [vote(10, 9, "wrong"), vote(10, 3, "right")]
    settled = settle(votes, member_cap=20)
    assert (round(settled.members[9].trust, 3), labels(votes)[10]) == (round(2 / 13, 3), 1)


def test_the_explanation_names_the_capped_member() -> None:
    votes = [vote(i, 666, "wrong") for i in range(200)] + [vote(500, 1, "right")]
    lines = settle(votes, member_cap=20).explain()
    assert any(line.startswith("member 666: 200 vote(s), capped on 1 night(s), each vote down to 0.10") for line in lines)


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="member_cap must be positive"):
        settle([vote(1, 1, "right")], member_cap=0)
