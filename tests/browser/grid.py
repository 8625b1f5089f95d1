"""Read the state the Airflow 3.3.2 grid *shows* for each run and task instance, from its colours.

What the bundle renders (read from the minified index-*.js of apache-airflow-core 3.3.2):

- a task-instance cell is ``<a id="grid-{run_id}-{task_id}">`` inside an element carrying
  ``data-run-id`` and ``data-task-id``; the coloured square is its child Badge
  ``[data-testid=task-state-badge]`` with ``colorPalette = ti.state ?? "none"`` and
  ``variant="solid"``, i.e. ``background: var(--chakra-colors-{state}-solid)``;
- a run's bar in the grid header is a link to ``/dags/{dag}/runs/{run_id}/`` inside an element
  carrying ``data-run-id`` (no ``data-task-id``), whose child has ``background: {state}.solid``;
- a cell or bar with a note keeps that colour as the first stop of a ``linear-gradient`` (the note
  corner), so its ``background-color`` is transparent and the colour is read from the gradient;
- the theme's semantic tokens give every state its own palette (``success: uz("green")``,
  ``failed: uz("red")``, ``running: uz("cyan")``, ... with ``solid = {colors.<palette>.600}``).

So the page's colours are decoded back to state names by resolving each state's
``--chakra-colors-<state>-solid`` in the page itself: a test then asserts ``"success"`` only if the
colour the browser computes for the cell is the bundle's own success colour, not because an API said so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

# Every state the grid colours (Airflow's TaskInstanceState and DagRunState, plus the UI's "none").
STATES = ("success", "failed", "running", "queued", "scheduled", "skipped", "upstream_failed", "up_for_retry",
          "up_for_reschedule", "restarting", "deferred", "awaiting_input", "removed", "none")

_READ_GRID = """
([dagId, states]) => {
  const probe = document.createElement('div');
  document.body.appendChild(probe);
  const resolve = (value) => { probe.style.backgroundColor = value; return getComputedStyle(probe).backgroundColor; };
  const palette = states.map(s => [s, resolve(`var(--chakra-colors-${s}-solid)`)]);
  const green600 = resolve('var(--chakra-colors-green-600)');
  probe.remove();
  const colourRe = /(oklch|oklab|lch|lab|rgba?|hsla?|color)\\([^()]*\\)/;
  const shown = (el) => {
    const cs = getComputedStyle(el);
    let colour = cs.backgroundColor;
    if (colour === 'rgba(0, 0, 0, 0)' && cs.backgroundImage.startsWith('linear-gradient')) {
      // gradient(45deg, <state colour> calc(100% - 8px), <note colour> ...): the note corner
      const m = cs.backgroundImage.replace(/^linear-gradient\\([^,]*,/, '').match(colourRe);
      colour = m ? m[0] : colour;
    }
    const hit = palette.find(([, c]) => c === colour);
    return hit ? hit[0] : `unknown colour ${colour}`;
  };
  const runs = {};
  const entry = (runId) => (runs[runId] ??= {run: null, tasks: {}});
  for (const a of document.querySelectorAll('a[id^="grid-"]')) {
    const holder = a.closest('[data-run-id][data-task-id]');
    const badge = a.querySelector('[data-testid=task-state-badge]');
    if (!holder || !badge) continue;
    entry(holder.dataset.runId).tasks[holder.dataset.taskId] = shown(badge);
  }
  for (const holder of document.querySelectorAll('[data-run-id]:not([data-task-id])')) {
    const runId = holder.dataset.runId;
    const a = holder.querySelector(`a[href="/dags/${dagId}/runs/${runId}/"]`);
    if (a && a.firstElementChild) entry(runId).run = shown(a.firstElementChild);
  }
  return {runs, palette: Object.fromEntries(palette), green600};
}
"""


@dataclass(frozen=True)
class GridView:
    """What the grid shows: per run id, the run bar's state and each task cell's state."""

    runs: dict[str, dict[str, Any]]
    palette: dict[str, str]
    green600: str

    def run(self, run_id: str) -> str | None:
        return self.runs.get(run_id, {}).get("run")

    def tasks(self, run_id: str) -> dict[str, str]:
        return dict(self.runs.get(run_id, {}).get("tasks", {}))


def read_grid(page: Any, dag_id: str) -> GridView:
    raw = page.evaluate(_READ_GRID, [dag_id, list(STATES)])
    return GridView(runs=raw["runs"], palette=raw["palette"], green600=raw["green600"])


def assert_palette_is_the_bundles(view: GridView) -> None:
    """The decoding is only meaningful if the states' colours are distinct and success is the
    theme's green.600 (``success: uz("green")``, ``solid: {colors.green.600}`` in the bundle)."""
    colours = view.palette
    assert len(set(colours.values())) == len(colours), f"state colours are not distinct: {colours}"
    assert "rgba(0, 0, 0, 0)" not in colours.values(), f"a state token did not resolve: {colours}"
    assert colours["success"] == view.green600, view


def wait_for_grid(page: Any, dag_id: str, run_id: str, run_state: str, tasks: dict[str, str],
                  timeout: float = 30.0) -> GridView:
    """Wait, bounded, until the open page's grid shows the run bar and every listed cell in the
    given states (the UI polls while a run is active, so a live page changes by itself)."""
    deadline = time.monotonic() + timeout
    while True:
        view = read_grid(page, dag_id)
        if view.run(run_id) == run_state and view.tasks(run_id) == tasks:
            assert_palette_is_the_bundles(view)
            return view
        if time.monotonic() >= deadline:
            raise AssertionError(f"after {timeout:.0f}s the grid shows run {run_id} as {view.run(run_id)!r} with cells "
                                 f"{view.tasks(run_id)}, expected {run_state!r} with {tasks}")
        time.sleep(0.25)
