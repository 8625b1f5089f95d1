"""Secret values out of task log lines: each line is rewritten before it is stored (adr/0093).

What counts as secret for one try (Airflow's masker rules, plus the forms a value takes in a URI):
a connection's password, its percent-encoded form, the whole ``AIRFLOW_CONN_*`` URI, the values
of sensitive ``extra`` keys; a variable's value when it came from Vault (a secrets store holds
secrets) or when its key name is sensitive (``password``, ``token``, ... as Airflow decides).
Each value is also masked in its JSON-escaped forms (Python's and Go's, which escapes ``& < >``):
a Nomad task receives a connection held as fields in Vault as Airflow's JSON form, rendered by
Nomad's template with Go's encoder, and printing that env value must not reveal the password.
Values shorter than ``MIN_LENGTH`` are not masked (Airflow's ``min_length_masked_secret``): a
password of ``1`` would otherwise star every digit in the log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REPLACEMENT = "***"
MIN_LENGTH = 5


_GO_ESCAPES = {"&": "\\u0026", "<": "\\u003c", ">": "\\u003e", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _json_forms(value: str) -> set[str]:
    """The value as it appears inside a JSON string (Python ``json.dumps`` both ways, Go's
    ``json.Marshal``); only the forms that differ from the value itself."""
    plain = json.dumps(value, ensure_ascii=False)[1:-1]
    forms = {plain, json.dumps(value)[1:-1], "".join(_GO_ESCAPES.get(c, c) for c in plain)}
    forms.discard(value)
    return forms


class Masker:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *values: str) -> None:
        for value in values:
            if not isinstance(value, str) or len(value) < MIN_LENGTH:
                continue
            for form in (value, quote(value, safe=""), quote_plus(value), *_json_forms(value)):
                if len(form) >= MIN_LENGTH:
                    self._values.add(form)
            # A multi-line secret (a private key) is printed line by line too.
            self._values.update(line for line in value.splitlines() if len(line.strip()) >= MIN_LENGTH)
        if self._values:
            # Longest first: a URI containing a password is replaced whole, not around the password.
            alternatives = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    def __bool__(self) -> bool:
        return bool(self._values)

    def mask(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REPLACEMENT, text)
