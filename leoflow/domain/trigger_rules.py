"""Trigger rules, decided exactly as Airflow 3's ``TriggerRuleDep`` decides them.

Airflow evaluates a rule from counts of the *finished* upstream task instances (success, skipped,
failed, upstream_failed, removed; ``up_for_retry`` is not finished, so a failure that will be
retried keeps its downstream waiting). With ``flag_upstream_failed`` (what the scheduler always
passes) a rule may settle the task without running it: ``skipped`` or ``upstream_failed``. Which
of the two, and whether it happens before every upstream is done, differs per rule; those
details are what users notice (e.g. ``one_success`` fires on the first success, ``none_failed``
turns ``upstream_failed`` on the first failure, ``all_failed`` skips on the first success).

This module is the single source of those answers; ``planning`` feeds it counts it built from a
run snapshot, and the table tests pin every branch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from leoflow.domain.states import TaskInstanceState, TriggerRule


class Verdict(StrEnum):
    WAIT = "wait"
    RUN = "run"
    SKIP = "skipped"
    UPSTREAM_FAILED = "upstream_failed"


_FINISHED = frozenset(
    {
        TaskInstanceState.SUCCESS,
        TaskInstanceState.SKIPPED,
        TaskInstanceState.FAILED,
        TaskInstanceState.UPSTREAM_FAILED,
        TaskInstanceState.REMOVED,
    }
)


@dataclass(frozen=True)
class UpstreamCounts:
    """Counts over the finished direct upstreams; ``upstream`` is how many upstreams there are in all.

    The ``*_setup`` counts are the subset of each count that are setup tasks (Airflow's counter is
    inclusive of the setup counter).
    """

    upstream: int
    success: int = 0
    skipped: int = 0
    failed: int = 0
    upstream_failed: int = 0
    removed: int = 0
    upstream_setup: int = 0
    success_setup: int = 0
    skipped_setup: int = 0

    @property
    def done(self) -> int:
        return self.success + self.skipped + self.failed + self.upstream_failed + self.removed

    @classmethod
    def of(cls, states: Iterable[tuple[TaskInstanceState | None, bool]]) -> UpstreamCounts:
        """Count ``(state, is_setup)`` pairs, one per upstream task instance."""
        upstream = upstream_setup = 0
        counts: dict[TaskInstanceState, int] = {}
        setup_counts: dict[TaskInstanceState, int] = {}
        for state, is_setup in states:
            upstream += 1
            if is_setup:
                upstream_setup += 1
            if state in _FINISHED:
                assert state is not None
                counts[state] = counts.get(state, 0) + 1
                if is_setup:
                    setup_counts[state] = setup_counts.get(state, 0) + 1
        return cls(
            upstream=upstream,
            success=counts.get(TaskInstanceState.SUCCESS, 0),
            skipped=counts.get(TaskInstanceState.SKIPPED, 0),
            failed=counts.get(TaskInstanceState.FAILED, 0),
            upstream_failed=counts.get(TaskInstanceState.UPSTREAM_FAILED, 0),
            removed=counts.get(TaskInstanceState.REMOVED, 0),
            upstream_setup=upstream_setup,
            success_setup=setup_counts.get(TaskInstanceState.SUCCESS, 0),
            skipped_setup=setup_counts.get(TaskInstanceState.SKIPPED, 0),
        )


def _flagged_state(rule: TriggerRule, c: UpstreamCounts) -> Verdict | None:
    """The state Airflow sets under ``flag_upstream_failed`` (None: leave the task alone)."""
    upstream_done = c.done >= c.upstream
    if rule is TriggerRule.ALL_SUCCESS:
        if c.upstream_failed or c.failed:
            return Verdict.UPSTREAM_FAILED
        if c.skipped:
            return Verdict.SKIP
    elif rule is TriggerRule.ALL_FAILED:
        if c.success or c.skipped:
            return Verdict.SKIP
    elif rule is TriggerRule.ONE_SUCCESS:
        if upstream_done and c.done == c.skipped:
            return Verdict.SKIP
        if upstream_done and c.success <= 0:
            return Verdict.UPSTREAM_FAILED
    elif rule is TriggerRule.ONE_FAILED:
        if upstream_done and not (c.failed or c.upstream_failed):
            return Verdict.SKIP
    elif rule is TriggerRule.ONE_DONE:
        if upstream_done and not (c.failed or c.success):
            return Verdict.SKIP
    elif rule is TriggerRule.NONE_FAILED:
        if c.upstream_failed or c.failed:
            return Verdict.UPSTREAM_FAILED
    elif rule is TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS:
        if c.upstream_failed or c.failed:
            return Verdict.UPSTREAM_FAILED
        if c.skipped == c.upstream:
            return Verdict.SKIP
    elif rule is TriggerRule.NONE_SKIPPED:
        if c.skipped:
            return Verdict.SKIP
    elif rule is TriggerRule.ALL_SKIPPED:
        if c.success or c.failed or c.upstream_failed:
            return Verdict.SKIP
    elif rule is TriggerRule.ALL_DONE_SETUP_SUCCESS:
        if upstream_done and c.upstream_setup and c.skipped_setup >= c.upstream_setup:
            return Verdict.SKIP
        if upstream_done and c.upstream_setup and c.success_setup == 0:
            return Verdict.UPSTREAM_FAILED
    return None


def _passes(rule: TriggerRule, c: UpstreamCounts) -> bool:
    """Airflow's "failing status" checks, inverted: True when the rule lets the task run."""
    upstream_done = c.done >= c.upstream
    if rule is TriggerRule.ONE_SUCCESS:
        return c.success > 0
    if rule is TriggerRule.ONE_FAILED:
        return bool(c.failed or c.upstream_failed)
    if rule is TriggerRule.ONE_DONE:
        return c.success + c.failed > 0
    if rule is TriggerRule.ALL_SUCCESS:
        return c.upstream - c.success <= 0
    if rule is TriggerRule.ALL_FAILED:
        return c.upstream - c.failed - c.upstream_failed <= 0
    if rule is TriggerRule.ALL_DONE:
        return upstream_done
    if rule in (TriggerRule.NONE_FAILED, TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS):
        return c.upstream - c.success - c.skipped <= 0
    if rule is TriggerRule.NONE_SKIPPED:
        return upstream_done and c.skipped == 0
    if rule is TriggerRule.ALL_SKIPPED:
        return c.upstream - c.skipped <= 0
    if rule is TriggerRule.ALL_DONE_SETUP_SUCCESS:
        return upstream_done and not (c.upstream_setup and not c.success_setup)
    if rule is TriggerRule.ALWAYS:
        return True
    raise ValueError(f"no strategy to evaluate trigger rule {rule!r}")


def evaluate(rule: TriggerRule, counts: UpstreamCounts, *, flag_upstream_failed: bool = True) -> Verdict:
    """Decide a task whose direct upstreams are summarized by ``counts``.

    A task without upstreams, or with ``always``, runs. Otherwise a flagged state (skip /
    upstream_failed) wins over running, as in Airflow where the state is set before the dep's
    status is reported; without ``flag_upstream_failed`` the task just waits.
    """
    if counts.upstream == 0 or rule is TriggerRule.ALWAYS:
        return Verdict.RUN
    if flag_upstream_failed:
        flagged = _flagged_state(rule, counts)
        if flagged is not None:
            return flagged
    return Verdict.RUN if _passes(rule, counts) else Verdict.WAIT


@dataclass(frozen=True)
class SetupCounts:
    """Counts over a task's *indirect* relevant setups (setups that are not direct upstreams)."""

    setups: int
    success: int = 0
    skipped: int = 0
    failed: int = 0
    upstream_failed: int = 0


def evaluate_setup_constraint(counts: SetupCounts, *, flag_upstream_failed: bool = True) -> Verdict:
    """Airflow's setup constraint: every relevant indirect setup must have succeeded.

    A failed setup makes the task ``upstream_failed`` and a skipped one makes it ``skipped``
    without waiting for the other setups; otherwise the task waits until all succeeded.
    """
    if counts.setups == 0:
        return Verdict.RUN
    if flag_upstream_failed:
        if counts.upstream_failed or counts.failed:
            return Verdict.UPSTREAM_FAILED
        if counts.skipped:
            return Verdict.SKIP
    return Verdict.RUN if counts.setups - counts.success <= 0 else Verdict.WAIT


def combine(setup: Verdict, direct: Verdict) -> Verdict:
    """Airflow evaluates the setup constraint first: a state it sets ends the evaluation."""
    if setup in (Verdict.SKIP, Verdict.UPSTREAM_FAILED):
        return setup
    if direct in (Verdict.SKIP, Verdict.UPSTREAM_FAILED):
        return direct
    if setup is Verdict.WAIT or direct is Verdict.WAIT:
        return Verdict.WAIT
    return Verdict.RUN
