"""``assert`` vanishes under ``python -O``: request-path code must check explicitly and answer a problem.

Scans the modules that handle requests (AST, so strings and comments do not count); assertions
inside ``if TYPE_CHECKING:`` blocks are for the type checker only and are allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import leoflow.api

API = Path(leoflow.api.__file__).parent
REQUEST_PATH_MODULES = sorted([*API.glob("public/*.py"), *API.glob("ui/*.py"), API / "logs.py", API / "dto.py",
                               API / "problem.py", API / "audit.py"])


def _asserts(tree: ast.AST) -> list[int]:
    found: list[int] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Assert):
            found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_request_path_modules_hold_no_assert_statements():
    offenders = {
        str(path.relative_to(API.parent.parent)): lines
        for path in REQUEST_PATH_MODULES
        if (lines := _asserts(ast.parse(path.read_text(), str(path))))
    }
    assert len(REQUEST_PATH_MODULES) > 20
    assert offenders == {}
