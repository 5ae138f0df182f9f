"""The promotion gate: does a candidate version replace the current one? One rule, applied by the
one promotion procedure (`jobs.promotion`) for every caller: the nightly retrain, `playbill
train --resume`/`--checkpoint` and the warm-up.

Both versions are measured on the same data (`measure`), never on a test set:

- **validation**: the model's fixed validation data (the critic: the fixed validation split of
  the IMDB training reviews; the playwright: its corpus's validation block), the spec's
  `gate_metric`;
- **community**: what the members taught it, kept out of training (the critic: the held-out
  slice of the settled votes; the playwright: the held-out end of the extra corpus files),
  `community_<gate_metric>`.

The rule (`judge`): promote when the community figure is no worse **and** the validation
figure is worse by at most the model's tolerance (`gate_tolerance` in the model's own section; the critic's
default 0.003 = 0.3 accuracy points). Without community data the candidate learnt nothing new
to trade for, and the validation figure alone must be no worse. Test figures (the critic's IMDB
test accuracy) are reported beside the decision and never read by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from playbill.engine.models import ModelSpec, spec
from playbill.settings import Settings

COMMUNITY = "community_"  # prefix of the figures measured on the members' held-out data


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str  # one line: the figures and the rule that decided
    checks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tolerance(settings: Settings, model_name: str) -> float:
    """How much worse the validation figure may get when the candidate learnt from the community:
    the model's own `gate_tolerance` setting (`[sentiment] gate_tolerance`, `[scene] gate_tolerance`)."""
    return float(settings.section(spec(model_name).name)["gate_tolerance"])


def judge(model_name: str, candidate: Mapping[str, Any], current: Mapping[str, Any], *,
          allowed_drop: float) -> Decision:
    """The gate's decision on two versions' figures (from `measure`, same data for both)."""
    model = spec(model_name)
    metric, sign = model.gate_metric, (1.0 if model.higher_is_better else -1.0)
    community = f"{COMMUNITY}{metric}"
    learnt = community in candidate and community in current
    checks = []
    if learnt:
        checks.append(_check(f"{community} on {candidate.get(COMMUNITY + 'n', '?')} held-out",
                             candidate[community], current[community], sign, 0.0))
    checks.append(_check(f"{metric} on {model.held_out}", candidate[metric], current[metric], sign,
                         allowed_drop if learnt else 0.0))
    failed = [c for c in checks if not c["passed"]]
    figures = "; ".join(f"{c['figure']}: {c['candidate']:.4f} vs {c['current']:.4f}"
                        + (f" (may be worse by {c['allowed']:g})" if c["allowed"] else "") for c in checks)
    tests = [f"{key} {candidate[key]:.4f} vs {current[key]:.4f}" for key in sorted(candidate)
             if key.startswith("test_") and isinstance(candidate.get(key), float) and key in current]
    reported = f" [reported only: {', '.join(tests)}]" if tests else ""
    if failed:
        return Decision(False, f"{failed[0]['figure']} would get worse; {figures}{reported}", checks)
    return Decision(True, figures + reported, checks)


def _check(figure: str, candidate: float, current: float, sign: float, allowed: float) -> dict[str, Any]:
    candidate, current = float(candidate), float(current)
    return {"figure": figure, "candidate": candidate, "current": current, "allowed": allowed,
            "passed": sign * (candidate - current) >= -allowed - 1e-12}


def measure(model_name: str | ModelSpec, settings: Settings, version: str, *, holdout: Sequence[Any] = (),
            report_test: bool = False) -> dict[str, Any]:
    """`version`'s figures for the gate: the gate metric on the validation data, and on the
    community hold-out when there is one (`community_<metric>`, `community_n`); with
    `report_test` (callers that know the model has a test set: the critic) the test figure too
    (`test_<metric>`, `test_n`), reported beside the decision and never gated on."""
    model = model_name if isinstance(model_name, ModelSpec) else spec(model_name)
    section = settings.section(model.name)
    data = model.data_from(section)
    metric = model.gate_metric
    figures = dict(model.evaluate(settings.home, settings.data_dir, version=version, data=data, split="validation"))
    if holdout:
        checked = model.evaluate(settings.home, settings.data_dir, version=version, data=_holdout_data(holdout))
        figures[f"{COMMUNITY}{metric}"] = checked[metric]
        figures[f"{COMMUNITY}n"] = checked.get("n", len(holdout))
    if report_test:
        tested = model.evaluate(settings.home, settings.data_dir, version=version, data=data, split="test")
        figures[f"test_{metric}"] = tested[metric]
        figures["test_n"] = tested.get("n")
    return figures


def _holdout_data(holdout: Sequence[Any]) -> Any:
    """Held-out votes are (text, label) rows; a held-out text (the playwright's) is scored whole."""
    if all(isinstance(item, str) for item in holdout):
        return "\n".join(holdout)
    return [(row[0], int(row[1])) for row in holdout]
