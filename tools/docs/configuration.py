"""docs/configuration.md, generated from the settings classes: every environment variable a
service reads, its default and what it is for.

    python -m tools.docs.configuration           # writes docs/configuration.md
    python -m tools.docs.configuration --check   # exits 1 when the file differs from the classes

A variable's name is the field's `validation_alias`, else the class's `env_prefix` and the field
name. Its description is, first that exists: the field's `description`; the comment lines right
above the field in its class; the entry naming the variable in the docstring of the module that
defines the class (a `- GIAO_X (default): text` bullet or a `| GIAO_X | default | text |` row).
tests/docs/test_configuration.py fails when the committed file drifts from the classes.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import inspect
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "configuration.md"

# (title, module candidates, class name): the first module that imports and holds the class wins.
SOURCES = (
    ("Every service", ("shared.settings",), "CommonSettings"),
    ("Orders (`services/orders`)", ("services.orders.settings", "services.orders.app"), "OrdersSettings"),
    ("Dispatch (`services/dispatch`)", ("services.dispatch.settings",), "DispatchSettings"),
    ("Tracking (`services/tracking`)", ("services.tracking.settings",), "TrackingSettings"),
)
COMMON = "CommonSettings"


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    type: str
    description: str


def settings_class(modules: tuple[str, ...], class_name: str) -> type[BaseSettings]:
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # the module exists but something it imports does not
                raise
            continue
        cls = getattr(module, class_name, None)
        if cls is not None:
            return cls
    raise LookupError(f"{class_name} is in none of {', '.join(modules)}")


def env_names(cls: type[BaseSettings], field_name: str, field: FieldInfo) -> list[str]:
    """The environment variables pydantic-settings reads for a field (upper-cased, as documented)."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return [alias.upper()]
    if alias is not None:  # AliasChoices: every plain-string choice
        return [c.upper() for c in getattr(alias, "choices", []) if isinstance(c, str)]
    if field.alias:
        return [field.alias.upper()]
    return [f"{cls.model_config.get('env_prefix', '')}{field_name}".upper()]


def shown_default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "(computed)"
    value = field.default
    if value is PydanticUndefined:
        return "(required)"
    if value is None:
        return "(none)"
    if value == "":
        return "(empty)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def shown_type(field: FieldInfo) -> str:
    annotation = field.annotation
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("NoneType", "None")
    bounds = []
    for m in field.metadata:
        for kind, attribute, sign in ((Ge, "ge", "≥"), (Gt, "gt", ">"), (Le, "le", "≤"), (Lt, "lt", "<")):
            if isinstance(m, kind):
                bound = getattr(m, attribute)
                bounds.append(f"{sign} {bound:g}" if isinstance(bound, float) else f"{sign} {bound}")
    return ", ".join([text, *bounds])


def comments_above(cls: type) -> dict[str, str]:
    """Field name -> the comment lines right above its assignment in the class body."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    class_def = ast.parse(textwrap.dedent("".join(lines))).body[0]
    if not isinstance(class_def, ast.ClassDef):
        return {}
    found: dict[str, str] = {}
    for node in class_def.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above: list[str] = []
            i = node.lineno - 2  # the line before, 0-based
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            if above:
                found[node.target.id] = " ".join(above)
    return found


_NAME = re.compile(r"GIAO_[A-Z0-9_]+")


def docstring_entries(module: ModuleType) -> dict[str, str]:
    """Variable -> its text in the module docstring's bullets (`- GIAO_X (default): text`, with
    indented continuation lines; `, _SUFFIX (default)` names a sibling of the first variable)
    or table rows (`| GIAO_X | default | text |`)."""
    doc = inspect.getdoc(module) or ""
    entries: dict[str, str] = {}
    bullets: list[list[str]] = []
    for line in doc.splitlines():
        if line.startswith("- "):
            bullets.append([line[2:].strip()])
        elif bullets and line.startswith("  ") and line.strip():
            bullets[-1].append(line.strip())
        elif not line.strip() or not line.startswith("  "):
            if bullets and bullets[-1] and bullets[-1][-1] != "":
                bullets[-1].append("")  # the bullet ended
        row = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(row) >= 3 and _NAME.fullmatch(row[0]):
            entries[row[0]] = row[-1]
    for bullet in bullets:
        text = " ".join(part for part in bullet if part)
        head, sep, description = text.partition("): ")
        if not sep or not head.startswith("GIAO_"):
            continue
        names = _NAME.findall(head)
        first = names[0]
        for suffix in re.findall(r"(?<![A-Z0-9])(_[A-Z0-9_]+)\s*\(", head):
            names.append(first.rsplit("_", 1)[0] + suffix)
        for name in names:
            entries.setdefault(name, description.strip())
    return entries


def variables(cls: type[BaseSettings], inherited_from: type[BaseSettings] | None) -> list[Variable]:
    """The class's own variables (those `inherited_from` already lists are left out), in field order."""
    own = [(n, f) for n, f in cls.model_fields.items()
           if inherited_from is None or n not in inherited_from.model_fields]
    result = []
    for name, field in own:
        owner = next(k for k in cls.__mro__ if name in vars(k).get("__annotations__", {}))
        names = env_names(cls, name, field)
        documented = docstring_entries(sys.modules[owner.__module__])
        description = (field.description or comments_above(owner).get(name)
                       or next((documented[n] for n in names if n in documented), ""))
        description = description[:1].upper() + description[1:]
        result.append(Variable(" / ".join(f"`{n}`" for n in names), shown_default(field), shown_type(field),
                               description))
    return result


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "—"


HEADER = """\
<!-- Generated from the settings classes by `python -m tools.docs.configuration`: do not edit by
hand. Change a field (its default, its `description` or the comment above it) and run it again;
tests/docs/test_configuration.py fails while this file and the classes differ. -->

# Configuration

Every setting is an environment variable, read when a service starts (pydantic-settings; names
are case-insensitive, written here in capitals). Each service reads the variables of
[every service](#every-service) and its own, which carry its prefix (`GIAO_ORDERS_`,
`GIAO_DISPATCH_`, `GIAO_TRACKING_`). Unless `GIAO_ENV` is `development` or `test`, a service
refuses to start on the public development defaults of the secrets it holds (`GIAO_ADMIN_TOKEN`
and `GIAO_DELIVERY_CODE_KEY`: orders and dispatch; tracking holds neither).

The variables that only the local scripts read (`make up`: instances, ports of the local Kafka
and PostgreSQL, `GIAO_DISPATCH_SPLIT`, ...) and those of the tests are in
[operations.md](operations.md#variables-of-the-local-scripts).
"""


def render() -> str:
    parts = [HEADER]
    common = settings_class(SOURCES[0][1], COMMON)
    for title, modules, class_name in SOURCES:
        cls = settings_class(modules, class_name)
        rows = variables(cls, None if cls is common else common)
        parts.append(f"\n## {title}\n\nFrom `{cls.__qualname__}`.\n\n| variable | default | type | what it is for |\n"
                     "| --- | --- | --- | --- |\n")
        parts.extend(f"| {v.name} | {cell(v.default)} | {cell(v.type)} | {cell(v.description)} |\n" for v in rows)
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.docs.configuration", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the settings classes")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current == text:
            return 0
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                   str(OUT.relative_to(ROOT)), "generated"))
        print(f"{OUT.relative_to(ROOT)} is out of date: run python -m tools.docs.configuration", file=sys.stderr)
        return 1
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
