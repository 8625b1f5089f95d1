"""Rendering Leoflow's own pages (agents, executors, git source) as small server-side HTML pages.

They are shown inside the unmodified Airflow UI through its plugin mechanism (an external view is
loaded in a same-origin iframe), so they need no JavaScript build and no change to the bundle.
Jinja2 autoescaping is on: ids, hostnames and git errors come from outside and must not inject.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_ENV = Environment(loader=PackageLoader("leoflow.ui", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def _fmt(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(template: str, *, title: str, view: Any, base: str, json_href: str, refresh: int = 10) -> str:
    return _ENV.get_template(template).render(
        title=title, view=view, base=base, json_href=json_href, refresh=refresh, fmt=_fmt,
        generated=_fmt(getattr(view, "generated_at", None)),
    )
