"""Which sample type each series holds: how a recording's lines are rebuilt into model samples.

A collector's name is its series name in the store, the recording and the exporter. A new collector adds one line
here beside its ``CollectorSpec`` in ``collectors/__init__.py`` (``tests/optitop/test_series.py`` checks that every
registered collector has one: without it, replay would skip the collector's recorded samples).
"""

from __future__ import annotations

from optitop.model.core import Sample
from optitop.model.gpu import GpuSample
from optitop.model.process import ProcessSample
from optitop.model.pystacks import PyStacksSample
from optitop.model.serving import ServingSample
from optitop.model.sockets import SocketSample
from optitop.model.system import SystemSample

#: Series name -> the sample type its collector produces.
SAMPLE_TYPES: dict[str, type[Sample]] = {
    "process": ProcessSample,
    "system": SystemSample,
    "gpu": GpuSample,
    "queue": ServingSample,
    "logs": ServingSample,
    "sockets": SocketSample,
    "pystacks": PyStacksSample,
}
