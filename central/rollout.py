"""The staged rollout, as pure functions: who is admitted at each stage, and when a stage advances or halts.

Stage 0 is every node on the pilot channel; the later stages admit a growing share of the stable nodes (e.g.
10 %, 50 %, 100 %), in an order fixed by a hash of the rollout id and the node id (so a node's place does not
change while the rollout runs, and different rollouts pick different first nodes). A stage halts the rollout
as soon as its failures exceed ``max_failure_rate`` of its nodes; it advances when enough of its nodes
succeeded and it has soaked ``soak_s`` seconds.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SUCCEEDED = "committed"
FAILED = ("rolled_back", "failed")
STAGE_PILOT = "pilot"


@dataclass(frozen=True)
class Plan:
    """A rollout's rules: stable-share percentages after the pilot stage, failure limit, soak time."""

    shares: tuple[float, ...] = (10.0, 50.0, 100.0)
    max_failure_rate: float = 0.1
    soak_s: float = 3600.0

    def problems(self) -> list[str]:
        out = []
        if not self.shares or any(not 0 < s <= 100 for s in self.shares):
            out.append("stages: each share must be in (0, 100]")
        elif list(self.shares) != sorted(self.shares) or self.shares[-1] != 100:
            out.append("stages: shares must grow and end at 100")
        if not 0 <= self.max_failure_rate < 1:
            out.append("max_failure_rate: allowed 0 <= rate < 1")
        if self.soak_s < 0:
            out.append("soak_s: must be >= 0")
        return out

    @property
    def stage_names(self) -> list[str]:
        return [STAGE_PILOT] + [f"{s:g}%" for s in self.shares]


def order_key(rollout_id: int, node_id: str) -> str:
    return hashlib.sha256(f"{rollout_id}\x1f{node_id}".encode()).hexdigest()


def stages(rollout_id: int, plan: Plan, nodes: Mapping[str, str]) -> list[list[str]]:
    """The nodes each stage adds (not cumulative), from ``nodes``: node id -> channel."""
    pilots = sorted(n for n, channel in nodes.items() if channel == "pilot")
    stable = sorted((n for n, channel in nodes.items() if channel != "pilot"), key=lambda n: order_key(rollout_id, n))
    out, taken = [pilots], 0
    for share in plan.shares:
        upto = math.ceil(len(stable) * share / 100.0)
        out.append(stable[taken:upto])
        taken = max(taken, upto)
    return out


def admitted(rollout_id: int, plan: Plan, nodes: Mapping[str, str], stage: int) -> set[str]:
    """Every node admitted up to and including ``stage``."""
    return {n for added in stages(rollout_id, plan, nodes)[: stage + 1] for n in added}


@dataclass(frozen=True)
class Verdict:
    """What to do with the current stage: wait, advance, halt, or complete (the last stage is done)."""

    action: str
    reason: str
    size: int
    succeeded: int
    failed: int


def count(members: Iterable[str], outcomes: Mapping[str, str]) -> tuple[int, int, int]:
    """(size, succeeded, failed) of a stage's members, by each node's latest report for this rollout."""
    size = succeeded = failed = 0
    for node in members:
        size += 1
        state = outcomes.get(node)
        succeeded += state == SUCCEEDED
        failed += state in FAILED
    return size, succeeded, failed


def judge(plan: Plan, stage: int, members: Sequence[str], outcomes: Mapping[str, str], soaked_s: float) -> Verdict:
    """The verdict on ``stage``, whose own (newly admitted) nodes are ``members``."""
    size, ok, bad = count(members, outcomes)
    last = stage >= len(plan.shares)
    if size and bad / size > plan.max_failure_rate:
        reason = f"{bad} of {size} nodes failed ({bad / size:.0%} > limit {plan.max_failure_rate:.0%})"
        return Verdict("halt", reason, size, ok, bad)
    needed = math.ceil(size * (1.0 - plan.max_failure_rate) - 1e-9)
    if ok < needed:
        return Verdict("wait", f"{ok} of {size} succeeded; {needed} needed", size, ok, bad)
    if size and soaked_s < plan.soak_s:
        return Verdict("wait", f"soaking: {soaked_s:.0f} of {plan.soak_s:.0f} s", size, ok, bad)
    return Verdict("complete" if last else "advance", f"{ok} of {size} succeeded", size, ok, bad)


def failed_earlier(plan: Plan, done: Sequence[Sequence[str]], outcomes: Mapping[str, str]) -> str | None:
    """Why the rollout must halt for a stage already passed (its nodes can still report a failure, e.g. a
    rollback hours later), or None."""
    for index, members in enumerate(done):
        size, _ok, bad = count(members, outcomes)
        if size and bad / size > plan.max_failure_rate:
            return f"stage {plan.stage_names[index]}: {bad} of {size} nodes failed ({bad / size:.0%} > limit {plan.max_failure_rate:.0%})"
    return None
