"""Cost of the render budget (template_limits): bounded vs plain sandbox rendering. Prints figures.

    .venv/bin/python -m tests.benchmarks.bench_templating
    .venv/bin/python -m tests.benchmarks.bench_templating --renders 20000

Renders a typical field (context lookups, a 20-item loop, a macro call, a ``~``) with Jinja's
plain ``SandboxedEnvironment`` and with the budgeted one the scheduler uses, and the time a
runaway template (nested ``range(100000)`` loops) takes to be stopped by the operation budget.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from leoflow.domain.template_limits import DEFAULT_LIMITS, BoundedEnvironment, RenderLimitExceeded, render_bounded
from leoflow.domain.templating import MACROS

TYPICAL = ("{{ ds }} {{ params.x }} {% for i in range(20) %}{{ i }},{% endfor %} "
           "{{ macros.ds_add(ds, 1) }} {{ 'a' ~ run_id }}")
RUNAWAY = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
CONTEXT = {"ds": "2026-01-01", "params": {"x": 1}, "macros": MACROS, "run_id": "r"}


def _figures(name: str, fn: Callable[[], object], n: int) -> None:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    times.sort()
    print(f"{name:<28} median {statistics.median(times) * 1e6:8.1f} us  p95 {times[int(n * .95)] * 1e6:8.1f} us  "
          f"p99 {times[int(n * .99)] * 1e6:8.1f} us  ({n / sum(times):,.0f} renders/s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--renders", type=int, default=5000)
    args = parser.parse_args()
    plain = SandboxedEnvironment(undefined=StrictUndefined).from_string(TYPICAL)
    bounded = BoundedEnvironment(undefined=StrictUndefined).from_string(TYPICAL)
    _figures("plain sandbox, typical", lambda: plain.render(CONTEXT), args.renders)
    _figures("budgeted, typical", lambda: render_bounded(bounded, CONTEXT, DEFAULT_LIMITS), args.renders)
    runaway = BoundedEnvironment(undefined=StrictUndefined).from_string(RUNAWAY)
    started = time.perf_counter()
    try:
        render_bounded(runaway, {}, DEFAULT_LIMITS)
    except RenderLimitExceeded as exc:
        print(f"runaway nested loops stopped after {time.perf_counter() - started:.3f} s: {exc}")


if __name__ == "__main__":
    main()
