"""Settled votes: what the community's "right"/"wrong" votes teach the critic, and why.

The one home of the rule that turns votes into weighted labelled reviews (`settle`); the
nightly retrain, `playbill feedback`, `/admin feedback` and the benchmark all read it.

1. A vote says what the review *is*: "right" on a positive verdict means positive, "wrong" on a
   positive verdict means negative (and the other way round).
2. **Trust**: a member who keeps disagreeing with everyone else weighs less. On every review
   that others voted on too, the member's vote is compared with the majority of the other
   members' votes (a tie among them compares nothing). trust = (agreed + 2) / (compared + 2):
   1 for a member nobody contradicts, 2/3 after one disagreement of one, 1/6 after ten of ten.
3. **Cap per night**: what one member's votes weigh together per night (UTC day of the vote)
   is at most `member_cap`; a member with n votes that night has each weigh min(1, cap / n).
   200 votes under a cap of 20 weigh 0.1 each: one member cannot outvote the data.
4. A vote weighs trust x cap scale. Per review the side with more weight wins (a tie is left
   out); the review's training weight is min(1, winning - losing weight): one trusted vote
   counts as one review, a contested or capped one less.

Pure Python over plain rows (no database, no engine): easy to test and to explain.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

POSITIVE, NEGATIVE = 1, 0
TRUST_PRIOR = 2  # agreements a member starts with: a single disagreement does not silence anyone


@dataclass(frozen=True)
class Vote:
    """One member's vote on one verdict of the critic."""

    review_id: int  # the interaction
    text: str  # the review
    served_label: str  # what the critic said: "positive" / "negative"
    member: int  # the voter's user id
    verdict: str  # "right" / "wrong"
    night: date  # the UTC day the vote was cast (or last changed)

    @property
    def says(self) -> int:
        """The label this vote gives the review (1 positive, 0 negative)."""
        positive = self.served_label == "positive"
        return int(positive if self.verdict == "right" else not positive)


@dataclass(frozen=True)
class MemberWeight:
    member: int
    votes: int
    compared: int  # votes on reviews others voted on too (with a majority among them)
    agreed: int  # ... that agreed with that majority
    trust: float
    capped_nights: int  # nights on which the cap scaled this member's votes down
    lowest_scale: float  # the smallest cap scale applied (1.0: never capped)

    @property
    def limited(self) -> bool:
        return self.trust < 1.0 or self.lowest_scale < 1.0


@dataclass(frozen=True)
class SettledReview:
    review_id: int
    text: str
    label: int  # settled: 1 positive, 0 negative
    weight: float  # its weight as a training example, 0 < weight <= 1
    served_label: str  # what the critic said when it was asked
    votes: int
    positive_weight: float
    negative_weight: float
    members: tuple[int, ...]

    @property
    def critic_agreed(self) -> bool:
        """Did the critic's verdict match the settled label?"""
        return (self.served_label == "positive") == (self.label == POSITIVE)

    @property
    def agreement(self) -> float:
        """Share of the vote weight on the settled side (1.0: nobody disagreed)."""
        total = self.positive_weight + self.negative_weight
        return max(self.positive_weight, self.negative_weight) / total


@dataclass
class Settlement:
    """The votes settled: labelled reviews with weights, what was left out, and who weighed less."""

    member_cap: float
    reviews: list[SettledReview] = field(default_factory=list)
    ties: list[int] = field(default_factory=list)  # review ids whose votes cancelled out
    members: dict[int, MemberWeight] = field(default_factory=dict)
    votes: int = 0

    def examples(self) -> list[tuple[str, int, float]]:
        """(text, label, weight) per settled review: what the retrain learns."""
        return [(r.text, r.label, r.weight) for r in self.reviews]

    @property
    def critic_agreement(self) -> float | None:
        """Share of settled reviews on which the critic's verdict was right."""
        return sum(r.critic_agreed for r in self.reviews) / len(self.reviews) if self.reviews else None

    def limited_members(self) -> list[MemberWeight]:
        return sorted((m for m in self.members.values() if m.limited), key=lambda m: (m.trust * m.lowest_scale, m.member))

    def explain(self) -> list[str]:
        """What was done, in lines a person reads (`playbill feedback`)."""
        corrected = sum(not r.critic_agreed for r in self.reviews)
        lines = [f"{self.votes} vote(s) by {len(self.members)} member(s) on {len(self.reviews) + len(self.ties)} review(s): "
                 f"{len(self.reviews)} settled ({corrected} correct the critic), {len(self.ties)} tied and left out"]
        if self.reviews:
            weight = sum(r.weight for r in self.reviews)
            lines.append(f"the critic agreed with the settled label on {len(self.reviews) - corrected} of "
                         f"{len(self.reviews)}; they weigh {weight:.1f} review(s) in training")
        lines.append(f"cap: one member's votes weigh at most {self.member_cap:g} per night")
        for m in self.limited_members():
            why = []
            if m.lowest_scale < 1.0:
                why.append(f"capped on {m.capped_nights} night(s), each vote down to {m.lowest_scale:.2f}")
            if m.trust < 1.0:
                why.append(f"agreed with the others on {m.agreed} of {m.compared} shared review(s), trust {m.trust:.2f}")
            lines.append(f"member {m.member}: {m.votes} vote(s), " + "; ".join(why))
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "votes": self.votes,
            "member_cap": self.member_cap,
            "settled": len(self.reviews),
            "corrections": sum(not r.critic_agreed for r in self.reviews),
            "ties": list(self.ties),
            "critic_agreement": self.critic_agreement,
            "training_weight": round(sum(r.weight for r in self.reviews), 4),
            "reviews": [{**asdict(r), "critic_agreed": r.critic_agreed, "agreement": r.agreement} for r in self.reviews],
            "members": [{**asdict(m), "limited": m.limited} for m in sorted(self.members.values(), key=lambda m: m.member)],
            "explanation": self.explain(),
        }


def settle(votes: Iterable[Vote], *, member_cap: float) -> Settlement:
    """The settled labels and weights of `votes` (one vote per member and review; see the module)."""
    if not member_cap > 0:
        raise ValueError(f"member_cap must be positive, not {member_cap!r}")
    votes = list(votes)
    by_review: dict[int, list[Vote]] = defaultdict(list)
    for vote in votes:
        by_review[vote.review_id].append(vote)

    compared: Counter[int] = Counter()
    agreed: Counter[int] = Counter()
    for review_votes in by_review.values():
        for vote in review_votes:
            others = Counter(v.says for v in review_votes if v.member != vote.member)
            if others[POSITIVE] != others[NEGATIVE]:
                compared[vote.member] += 1
                majority = POSITIVE if others[POSITIVE] > others[NEGATIVE] else NEGATIVE
                agreed[vote.member] += vote.says == majority

    per_night = Counter((v.member, v.night) for v in votes)
    scale = {key: min(1.0, member_cap / n) for key, n in per_night.items()}
    members: dict[int, MemberWeight] = {}
    for member, n in Counter(v.member for v in votes).items():
        scales = [s for (m, _), s in scale.items() if m == member]
        members[member] = MemberWeight(
            member=member, votes=n, compared=compared[member], agreed=agreed[member],
            trust=(agreed[member] + TRUST_PRIOR) / (compared[member] + TRUST_PRIOR),
            capped_nights=sum(s < 1.0 for s in scales), lowest_scale=min(scales))

    settlement = Settlement(member_cap=member_cap, members=members, votes=len(votes))
    for review_id in sorted(by_review):
        review_votes = by_review[review_id]
        weight = {POSITIVE: 0.0, NEGATIVE: 0.0}
        for vote in review_votes:
            weight[vote.says] += members[vote.member].trust * scale[(vote.member, vote.night)]
        if abs(weight[POSITIVE] - weight[NEGATIVE]) < 1e-9:
            settlement.ties.append(review_id)
            continue
        label = POSITIVE if weight[POSITIVE] > weight[NEGATIVE] else NEGATIVE
        first = review_votes[0]
        settlement.reviews.append(SettledReview(
            review_id=review_id, text=first.text, label=label,
            weight=round(min(1.0, abs(weight[POSITIVE] - weight[NEGATIVE])), 6),
            served_label=first.served_label, votes=len(review_votes),
            positive_weight=round(weight[POSITIVE], 6), negative_weight=round(weight[NEGATIVE], 6),
            members=tuple(sorted(v.member for v in review_votes))))
    return settlement
