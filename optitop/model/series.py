"""Which sample type each series holds: the one table replay, compare and the typed window reads agree on.

A collector's name is its series name in the store, the recording and the exporter. Adding a collector adds its
sample module here (and its ``CollectorSpec`` in ``collectors/__init__.py``); nothing else keys on the name.
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
