"""docs/configuration.md is what tools.docs.configuration makes of the settings classes, and every
variable it names is one the class really reads."""

from __future__ import annotations

import json
import types

import pytest
from pydantic_core import PydanticUndefined

from tools.docs import configuration
from tools.docs.configuration import COMMON, SOURCES, env_names, settings_class

CLASSES = [settings_class(modules, name) for _, modules, name in SOURCES]


def test_the_committed_file_is_what_the_settings_classes_give() -> None:
    assert configuration.OUT.read_text() == configuration.render(), (
        "docs/configuration.md drifted from the settings classes: run python -m tools.docs.configuration"
    )


def test_check_fails_on_a_stale_file_and_passes_once_written(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(configuration.render().replace("GIAO_ADMIN_TOKEN", "GIAO_OLD_NAME"))
    monkeypatch.setattr(configuration, "OUT", stale)
    monkeypatch.setattr(configuration, "ROOT", tmp_path)
    assert configuration.main(["--check"]) == 1
    assert configuration.main([]) == 0
    assert configuration.main(["--check"]) == 0


# Settings whose values have a shape another_value cannot guess.
VALID_VALUES = {"GIAO_SERVICE_AREA": '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 1]]]}'}


def another_value(annotation: object, default: object) -> str:
    """A valid value unlike the default, as an environment variable would carry it."""
    if annotation is bool:
        return "false" if default else "true"
    if default is None or default is PydanticUndefined:
        return "4242"
    if isinstance(default, (int, float)):
        return str(default + 1)
    if isinstance(default, tuple):  # a list setting is read as JSON
        return json.dumps([*default, 1])
    return f"{default}x" if default else "10.0.0.0/8"  # an empty string here is the rate-limit exemption list


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_documented_variable_is_read_by_its_class(cls, monkeypatch) -> None:
    common = settings_class(SOURCES[0][1], COMMON)
    rows = configuration.variables(cls, None if cls is common else common)
    assert rows, f"{cls.__name__} documents no variable"
    for name, field in cls.model_fields.items():
        if cls is not common and name in common.model_fields:
            continue
        (env,) = env_names(cls, name, field)
        assert any(f"`{env}`" == row.name for row in rows), env
        value = VALID_VALUES.get(env) or another_value(field.annotation, field.default)
        with monkeypatch.context() as m:
            m.setenv(env, value)
            read = getattr(cls(), name)
        assert read != field.default, f"{env}={value} did not change {cls.__name__}.{name}"


def test_descriptions_come_from_the_docstring_bullets_and_rows() -> None:
    module = types.ModuleType(
        "example",
        """Example.

- GIAO_X_LIMIT (5): how many
  at once, at most
- GIAO_X_SIZE_SMALL (1), _LARGE (9): per size
- GIAO_X_PORT (8000)

| variable | default | what |
| --- | --- | --- |
| GIAO_X_TTL_HOURS | 24 | how long a key is kept |
""",
    )
    assert configuration.docstring_entries(module) == {
        "GIAO_X_LIMIT": "how many at once, at most",
        "GIAO_X_SIZE_SMALL": "per size",
        "GIAO_X_SIZE_LARGE": "per size",
        "GIAO_X_TTL_HOURS": "how long a key is kept",
    }


def test_a_class_is_taken_from_the_first_module_that_exists() -> None:
    # services.orders.settings may not exist yet: the orders settings then come from services.orders.app.
    assert settings_class(("shared.no_such_module", "shared.settings"), COMMON).__name__ == COMMON
    with pytest.raises(LookupError):
        settings_class(("shared.no_such_module",), COMMON)
