"""Every collector the registry builds has its series in the model: replay rebuilds its samples, and the type the
collector's ``sample()`` returns is the one the model says the series holds."""

from __future__ import annotations

import importlib
import typing

import pytest

from optitop.collectors import REGISTRY
from optitop.model import SAMPLE_TYPES


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.name)
def test_each_registered_collector_has_its_series_and_returns_that_type(spec):
    assert spec.name in SAMPLE_TYPES, f"add {spec.name!r} to optitop/model/series.py"
    collector = getattr(importlib.import_module(f"optitop.collectors.{spec.module}"), spec.class_name)
    returned = typing.get_type_hints(collector.sample)["return"]
    assert SAMPLE_TYPES[spec.name] in (typing.get_args(returned) or (returned,))
