"""Rules read from the source code, without running it (no server: `make test-fast` runs them)."""

from __future__ import annotations

import ast

from tests import ROOT


def test_every_sql_statement_is_parameterized():
    """No query text is built with f-strings, % or .format: values always travel as $n parameters."""
    offenders = []
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]:  # packages within too
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr
                in {"execute", "executemany", "fetch", "fetchrow", "fetchval", "prepare", "cursor", "copy_to_table"}
            ):
                if node.args and _built(node.args[0]):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"query text built from values: {offenders}"


def _built(arg: ast.AST) -> bool:
    """Query text built from anything but module constants (column lists such as ORDER_COLUMNS)."""
    if isinstance(arg, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) and not _constant(v.value) for v in arg.values)
    if isinstance(arg, ast.BinOp) and isinstance(arg.op, (ast.Mod, ast.Add)):
        return True
    return isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format"


def _constant(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id.lstrip("_").isupper()
