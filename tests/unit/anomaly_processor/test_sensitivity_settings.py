"""SENSITIVITY and SENSITIVITY_BY_SERVICE, read in the processor's settings."""

import pytest
from anomaly_processor.settings import ProcessorSettings
from pydantic import ValidationError


def test_the_levels_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSITIVITY", "low")
    monkeypatch.setenv("SENSITIVITY_BY_SERVICE", "payment=highest")
    sensitivity = ProcessorSettings().detector_sensitivity()
    assert (sensitivity.offset("payment"), sensitivity.offset("orders")) == (-2.0, 1.0)


@pytest.mark.parametrize(("name", "value"), [("SENSITIVITY", "loud"), ("SENSITIVITY_BY_SERVICE", "payment:high")])
def test_an_unknown_level_stops_the_processor_at_start(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        ProcessorSettings()
