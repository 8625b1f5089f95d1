"""Every trigger rule, every branch of Airflow 3's TriggerRuleDep (flag_upstream_failed=True and False)."""

from __future__ import annotations

import pytest

from leoflow.domain.states import TaskInstanceState as S
from leoflow.domain.states import TriggerRule as TR
from leoflow.domain.trigger_rules import (
    SetupCounts,
    UpstreamCounts,
    Verdict,
    combine,
    evaluate,
    evaluate_setup_constraint,
)

W, R, SK, UF = Verdict.WAIT, Verdict.RUN, Verdict.SKIP, Verdict.UPSTREAM_FAILED


def c(upstream: int, s: int = 0, sk: int = 0, f: int = 0, uf: int = 0, rm: int = 0, **setup: int) -> UpstreamCounts:
    return UpstreamCounts(upstream=upstream, success=s, skipped=sk, failed=f, upstream_failed=uf, removed=rm, **setup)


# (rule, counts, verdict with flag_upstream_failed, verdict without)
TABLE = [
    # all_success: first failure -> upstream_failed, first skip -> skipped, without waiting.
    (TR.ALL_SUCCESS, c(2, s=2), R, R),
    (TR.ALL_SUCCESS, c(2, s=1), W, W),
    (TR.ALL_SUCCESS, c(3, s=1, f=1), UF, W),
    (TR.ALL_SUCCESS, c(3, uf=1), UF, W),
    (TR.ALL_SUCCESS, c(3, s=1, sk=1), SK, W),
    (TR.ALL_SUCCESS, c(2, f=1, sk=1), UF, W),
    (TR.ALL_SUCCESS, c(2, s=1, rm=1), W, W),
    # all_failed: any success/skip -> skipped at once; upstream_failed counts as failed.
    (TR.ALL_FAILED, c(2, f=2), R, R),
    (TR.ALL_FAILED, c(2, f=1, uf=1), R, R),
    (TR.ALL_FAILED, c(2, f=1), W, W),
    (TR.ALL_FAILED, c(3, s=1), SK, W),
    (TR.ALL_FAILED, c(3, sk=1, f=1), SK, W),
    # all_done: wait for all, whatever they ended as.
    (TR.ALL_DONE, c(3, s=1, f=1), W, W),
    (TR.ALL_DONE, c(3, s=1, f=1, sk=1), R, R),
    (TR.ALL_DONE, c(2, uf=2), R, R),
    # one_success: fires on the first success; all done without success -> upstream_failed;
    # all skipped -> skipped.
    (TR.ONE_SUCCESS, c(3, s=1), R, R),
    (TR.ONE_SUCCESS, c(3, f=1), W, W),
    (TR.ONE_SUCCESS, c(3, f=2, sk=1), UF, W),
    (TR.ONE_SUCCESS, c(2, sk=2), SK, W),
    (TR.ONE_SUCCESS, c(2, uf=1, f=1), UF, W),
    # one_failed: fires on the first failure (upstream_failed counts); all done, none failed -> skipped.
    (TR.ONE_FAILED, c(3, f=1), R, R),
    (TR.ONE_FAILED, c(3, uf=1), R, R),
    (TR.ONE_FAILED, c(3, s=2), W, W),
    (TR.ONE_FAILED, c(3, s=2, sk=1), SK, W),
    # one_done: fires on the first success or failure; all skipped/upstream_failed -> skipped.
    (TR.ONE_DONE, c(3, s=1), R, R),
    (TR.ONE_DONE, c(3, f=1), R, R),
    (TR.ONE_DONE, c(3, sk=1), W, W),
    (TR.ONE_DONE, c(2, sk=1, uf=1), SK, W),
    # none_failed: first failure -> upstream_failed; skips are fine.
    (TR.NONE_FAILED, c(3, s=1, sk=2), R, R),
    (TR.NONE_FAILED, c(2, sk=2), R, R),
    (TR.NONE_FAILED, c(3, s=1), W, W),
    (TR.NONE_FAILED, c(3, f=1), UF, W),
    (TR.NONE_FAILED, c(3, uf=1, s=2), UF, W),
    # none_failed_min_one_success: like none_failed, but all skipped -> skipped.
    (TR.NONE_FAILED_MIN_ONE_SUCCESS, c(3, s=1, sk=2), R, R),
    (TR.NONE_FAILED_MIN_ONE_SUCCESS, c(2, sk=2), SK, R),
    (TR.NONE_FAILED_MIN_ONE_SUCCESS, c(3, sk=2), W, W),
    (TR.NONE_FAILED_MIN_ONE_SUCCESS, c(3, f=1, sk=2), UF, W),
    (TR.NONE_FAILED_MIN_ONE_SUCCESS, c(3, s=1), W, W),
    # none_skipped: first skip -> skipped; failures are fine once all are done.
    (TR.NONE_SKIPPED, c(2, s=1, f=1), R, R),
    (TR.NONE_SKIPPED, c(2, s=1), W, W),
    (TR.NONE_SKIPPED, c(3, sk=1), SK, W),
    (TR.NONE_SKIPPED, c(2, uf=2), R, R),
    # all_skipped: any success/failed/upstream_failed -> skipped at once.
    (TR.ALL_SKIPPED, c(2, sk=2), R, R),
    (TR.ALL_SKIPPED, c(2, sk=1), W, W),
    (TR.ALL_SKIPPED, c(3, s=1), SK, W),
    (TR.ALL_SKIPPED, c(3, f=1), SK, W),
    (TR.ALL_SKIPPED, c(3, uf=1), SK, W),
    # always: runs regardless.
    (TR.ALWAYS, c(3), R, R),
    (TR.ALWAYS, c(3, f=3), R, R),
    # all_done_setup_success: wait for all; skip if every upstream setup skipped; upstream_failed if
    # no upstream setup succeeded; without setups it is all_done.
    (TR.ALL_DONE_SETUP_SUCCESS, c(2, s=1), W, W),
    (TR.ALL_DONE_SETUP_SUCCESS, c(2, s=1, f=1), R, R),
    (TR.ALL_DONE_SETUP_SUCCESS, c(2, s=1, f=1, upstream_setup=1, success_setup=1), R, R),
    (TR.ALL_DONE_SETUP_SUCCESS, c(2, s=1, f=1, upstream_setup=1), UF, W),
    (TR.ALL_DONE_SETUP_SUCCESS, c(2, s=1, sk=1, upstream_setup=1, skipped_setup=1), SK, W),
    (TR.ALL_DONE_SETUP_SUCCESS, c(3, s=1, f=1, upstream_setup=2, success_setup=1), W, W),
]


@pytest.mark.parametrize(("rule", "counts", "flagged", "unflagged"), TABLE,
                         ids=[f"{r.value}-{i}" for i, (r, *_rest) in enumerate(TABLE)])
def test_rule_table(rule: TR, counts: UpstreamCounts, flagged: Verdict, unflagged: Verdict) -> None:
    assert evaluate(rule, counts, flag_upstream_failed=True) is flagged
    assert evaluate(rule, counts, flag_upstream_failed=False) is unflagged


def test_every_rule_is_in_the_table() -> None:
    assert {r for r, *_ in TABLE} == set(TR)


@pytest.mark.parametrize("rule", list(TR))
def test_no_upstream_always_runs(rule: TR) -> None:
    assert evaluate(rule, c(0)) is R


def test_counts_only_finished_states_and_setups() -> None:
    counts = UpstreamCounts.of([
        (S.SUCCESS, True), (S.SKIPPED, True), (S.FAILED, False), (S.UPSTREAM_FAILED, False),
        (S.UP_FOR_RETRY, False), (S.RUNNING, False), (None, False), (S.REMOVED, False),
    ])
    assert counts == UpstreamCounts(upstream=8, success=1, skipped=1, failed=1, upstream_failed=1, removed=1,
                                    upstream_setup=2, success_setup=1, skipped_setup=1)
    assert counts.done == 5


@pytest.mark.parametrize(("counts", "flagged", "unflagged"), [
    (SetupCounts(setups=0), R, R),
    (SetupCounts(setups=2, success=2), R, R),
    (SetupCounts(setups=2, success=1), W, W),
    (SetupCounts(setups=2, failed=1), UF, W),
    (SetupCounts(setups=2, upstream_failed=1, success=1), UF, W),
    (SetupCounts(setups=2, skipped=1, success=1), SK, W),
])
def test_setup_constraint(counts: SetupCounts, flagged: Verdict, unflagged: Verdict) -> None:
    assert evaluate_setup_constraint(counts) is flagged
    assert evaluate_setup_constraint(counts, flag_upstream_failed=False) is unflagged


@pytest.mark.parametrize(("setup", "direct", "expected"), [
    (R, R, R), (W, R, W), (R, W, W), (SK, R, SK), (UF, SK, UF), (W, UF, UF), (R, SK, SK),
])
def test_combine_setup_first(setup: Verdict, direct: Verdict, expected: Verdict) -> None:
    assert combine(setup, direct) is expected
