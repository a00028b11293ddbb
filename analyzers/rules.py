"""The analyzer's rules as data: signals, thresholds, weights, evidence lines, fix keys and provenance.

Each rule says "this signal beyond this threshold points to this class, this strongly". Weights are the
rule's strength on its own (0..1) and combine as a noisy OR (independent pieces of evidence for one class
reinforce without ever exceeding 1); negative weights are evidence against the class. ``when``
conditions gate a rule on its context (DRAM near peak means memory-bound only while tensor cores are
quiet). ``branch`` says where the busy time is judged: ``gpu`` rules apply when the target uses a GPU,
``cpu`` rules when it does not, ``any`` rules always.

Every threshold names where it came from: ``measured`` (on this project's machines, see
ARCHITECTURE.md), ``vendor`` (NVIDIA, vLLM, SGLang, py-spy, Linux documentation) or ``ours`` (a
starting point to calibrate with the scenario benchmark). ``docs/ANALYZER.md`` is generated from this
module by ``scripts/gen_analyzer_doc.py``. What the signals and classes are in words, the fixes behind the fix
keys and the hints for missing sources are in ``analyzers/wording.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optitop.analyzers.wording import SIGNAL_LABELS

#: Comparison operators a rule may use.
OPS: tuple[str, ...] = (">=", ">", "<=", "<")
#: Where a threshold came from.
ORIGINS: dict[str, str] = {
    "measured": "measured on this project's machines (ARCHITECTURE.md)",
    "vendor": "vendor or upstream guidance",
    "ours": "our choice; calibrate with the scenario benchmark",
}
#: The busy-time classes (level 3 of the hierarchy): the one that explains the busy time wins.
BUSY_CLASSES: tuple[str, ...] = ("compute", "memory_io", "host_cpu")

#: The top-down order and each level's gate (the score a class needs to be named at that level).
#: "busy" stands for the best of BUSY_CLASSES. ``none`` is the remainder and has no gate.
HIERARCHY: tuple[tuple[str, float], ...] = (
    ("idle", 0.45),
    ("scheduling", 0.45),
    ("busy", 0.35),
    ("network", 0.45),
)
#: A later level overrides an earlier one that passed its gate only when it scores this much more
#: (top-down precedence, but a weak early match cannot hide overwhelming later evidence). Our choice.
OVERRIDE_MARGIN = 0.25
#: With no class past its gate and no work visible, the best class is named only from this score;
#: below it the verdict is ``unknown`` (too little is known), not a guess.
FALLBACK_MIN = 0.3
#: Classes scoring at least this appear as runners-up.
SECONDARY_MIN = 0.2
#: The most a verdict's confidence can be: the analyzer samples counters, it does not trace.
MAX_CONFIDENCE = 0.95
#: Confidence multiplier when GPU utilisation came from the legacy NVML calls (busy, not what kind).
LEGACY_GPU_FACTOR = 0.8
#: Host CPU busy % from which other processes are taken to compete with the target for the cores.
HOST_BUSY_PCT = 90.0
#: Process samples needed before judging (rates need two).
MIN_PROCESS_SAMPLES = 2


@dataclass(frozen=True, slots=True)
class Cond:
    """One comparison of a signal with a threshold."""

    signal: str
    op: str
    threshold: float
    #: What to assume when the signal is unknown (None: the rule's outcome is unknown). A guard that only
    #: excludes a look-alike (PCIe traffic for launch-bound) may assume it holds.
    if_unknown: bool | None = None

    def holds(self, value: Any) -> bool | None:
        """True/False for a known value; ``if_unknown`` when the signal is unknown."""
        if value is None:
            return self.if_unknown
        v = float(value)
        if self.op == ">=":
            return v >= self.threshold
        if self.op == ">":
            return v > self.threshold
        if self.op == "<=":
            return v <= self.threshold
        return v < self.threshold

    def words(self) -> str:
        """``GPU SM activity % < 50`` (for docs and counter-evidence lines)."""
        text = f"{SIGNAL_LABELS.get(self.signal, self.signal)} {self.op} {fmt_threshold(self.threshold)}"
        return text + (" (or unknown)" if self.if_unknown else "")


@dataclass(frozen=True, slots=True)
class Rule:
    """One piece of evidence for (or, with a negative weight, against) a class.

    Attributes:
        id: stable name (tests and docs refer to it).
        category: the class it speaks for.
        branch: ``gpu`` / ``cpu`` / ``any`` (see the module docstring).
        signal: the Signals field it reads.
        op: one of OPS.
        threshold: compared with the signal's window average.
        weight: strength on its own, -1..1.
        evidence: the line shown when it fires; ``{v}`` is the signal's value, other ``{names}`` are the
            signals of its ``when`` conditions.
        fix: key into FIXES ("" for none).
        origin: ``measured`` / ``vendor`` / ``ours``.
        source: where exactly the threshold came from.
        when: further conditions that must all hold.
    """

    id: str
    category: str
    branch: str
    signal: str
    op: str
    threshold: float
    weight: float
    evidence: str
    fix: str
    origin: str
    source: str
    when: tuple[Cond, ...] = ()

    @property
    def cond(self) -> Cond:
        """The rule's main comparison."""
        return Cond(self.signal, self.op, self.threshold)

    @property
    def signals(self) -> tuple[str, ...]:
        """Every signal the rule reads."""
        return (self.signal, *(c.signal for c in self.when))


def fmt_threshold(x: float) -> str:
    """Thresholds in the docs: 65536 -> '64 KiB', 4e9 -> '4 GB', 0.5 -> '0.5'."""
    if x >= 1e9:
        return f"{x / 1e9:g} GB"
    if x >= 1024 and x % 1024 == 0:
        return f"{x / 1024:g} KiB" if x < 1024 * 1024 else f"{x / (1024 * 1024):g} MiB"
    return f"{x:g}"


def _r(
    id: str,  # noqa: A002 - the record's field name
    category: str,
    branch: str,
    cond: tuple[str, str, float],
    weight: float,
    evidence: str,
    fix: str,
    origin: str,
    source: str,
    when: tuple[tuple[str, str, float] | tuple[str, str, float, bool], ...] = (),
) -> Rule:
    signal, op, threshold = cond
    return Rule(
        id, category, branch, signal, op, threshold, weight, evidence, fix, origin, source,
        tuple(Cond(*c) for c in when),
    )  # fmt: skip


MEASURED_MATMUL = "H100 bf16 matmul loop: SM 78 %, tensor 75 %, DRAM 23 %"
MEASURED_COPY = "H100 device-to-device copy: DRAM 90 %, SM 99.5 %, tensor 0 %"
MEASURED_PCIE = "H100 pinned host<->device copies: ~17 GB/s each way (~27 % of PCIe 5 x16), SM 0 %"
MEASURED_TINY = "H100 tiny kernels + .item() per step: graphics 26 %, SM 0.03 %"
LITTLE = (
    "Little's law (in flight = rate x residence) and the utilisation law (CPU-s per s = rate x CPU-s per request): "
    "residence minus service demand is waiting"
)
MEASURED_BATCHER = (
    "benchmarks/wild batcher (asyncio, max batch 64, max wait 0.5 s, 4 clients): 550 ms per request, 0.4 ms of CPU"
)
MEASURED_OPS = (
    "this 2-core host, torch 2.13 CPU: the demo's compute scenario reads Linear.forward 93 % of on-CPU samples; "
    "benchmarks/wild membound (copy_/mul_/add_ over 192 MB, index_select from a 768 MB table, preallocated) "
    "reads ~100 % memory ops; roofline: matmul reuses each byte O(n) times, a copy or gather once"
)
MEASURED_FAULTS = (
    "this 2-core host, torch 2.13 CPU: gather+elementwise over 32 MB tensors 29k-275k minor faults per "
    "CPU-second; a 1024x4096 MLP 0-5.6k"
)
LOADED_MARGIN = "a spinning thread reads > 50 % of a core on a loaded 2-core machine, ~100 % when not"

# One rule per entry: id, class, branch, (signal, op, threshold), weight, evidence, fix, origin, source, when.
# fmt: off
RULES: tuple[Rule, ...] = (
    # ---------------------------------------------------------------- 1. idle: is work arriving at all?
    _r("idle.cpu", "idle", "any", ("proc_cpu_pct", "<", 5), 0.5,
       "process CPU {v:.1f} % of a core", "idle", "ours", "an idle Python server ticks at ~0-2 %"),
    _r("idle.gpu", "idle", "any", ("gpu_busy_pct", "<", 5), 0.2,
       "GPU busy {v:.1f} %", "idle", "vendor", "research table: SM < 0.05 (DCGM SM_ACTIVE)"),
    _r("idle.requests", "idle", "any", ("requests_in_system", "<", 0.5), 0.5,
       "no requests running or waiting", "idle", "vendor", "research table: running = waiting = 0"),
    _r("idle.rate", "idle", "any", ("request_rate_per_s", "<", 0.05), 0.3,
       "{v:.2f} requests/s arriving", "idle", "ours", "fewer than one request per 20 s"),
    _r("idle.clients", "idle", "any", ("inbound_conns", "<", 0.5), 0.2,
       "no client connections", "idle", "ours", "nobody connected"),
    _r("idle.python", "idle", "any", ("py_active_pct", "<", 5), 0.2,
       "Python threads active {v:.0f} % of samples", "idle", "vendor", "py-spy: active = OS state R"),
    _r("idle.not.waiting", "idle", "any", ("requests_waiting", ">=", 0.5), -1.0,
       "{v:.1f} requests waiting", "", "vendor", "a queue means work is arriving"),
    _r("idle.not.running", "idle", "any", ("requests_running", ">=", 0.5), -0.6,
       "{v:.1f} requests running", "", "vendor", "work in flight"),
    _r("idle.not.accept", "idle", "any", ("accept_queue", ">=", 0.5), -0.6,
       "{v:.1f} connections waiting to be accepted", "", "vendor", "ss(8): listen Recv-Q = accept queue"),
    _r("idle.not.rate", "idle", "any", ("request_rate_per_s", ">=", 0.5), -0.7,
       "{v:.1f} requests/s arriving", "", "ours", "requests arrive, even if they finish quickly"),
    _r("idle.not.cpu", "idle", "any", ("proc_cpu_pct", ">=", 20), -0.8,
       "process CPU {v:.0f} % of a core", "", "ours", "busy, whatever the reason"),
    _r("idle.not.gpu", "idle", "any", ("gpu_busy_pct", ">=", 20), -0.8,
       "GPU busy {v:.0f} %", "", "ours", "busy, whatever the reason"),
    _r("idle.not.clients", "idle", "any", ("inbound_conns", ">=", 1), -0.25,
       "{v:.0f} client connections open", "", "ours", "clients connected (keep-alive pools can idle, hence weak)"),
    _r("idle.not.many_clients", "idle", "any", ("inbound_conns", ">=", 8), -0.4,
       "{v:.0f} clients connected", "", "ours", "many clients do not hold idle connections for nothing"),
    _r("idle.not.upstream", "idle", "any", ("py_wait_network", ">=", 0.25), -0.6,
       "threads wait on sockets {v:.0%} of the time with clients and upstreams connected", "", "ours",
       "waiting for upstreams is not idleness", when=(("upstream_conns", ">=", 1), ("inbound_conns", ">=", 1))),
    _r("idle.not.parked", "idle", "any", ("py_parked", ">=", 0.5), -0.4,
       "workers parked on queues/timers {v:.0%} of the time with clients connected", "", "ours",
       "parked with clients connected is scheduling", when=(("inbound_conns", ">=", 1),)),
    # ------------------------------------------- 2. scheduling: work waits while capacity is free
    _r("sched.waiting", "scheduling", "any", ("requests_waiting", ">=", 1), 0.5,
       "{v:.1f} requests waiting", "sched_admission", "vendor",
       "SGLang tuning: #queue-req > 0 with spare capacity; vLLM num_requests_waiting"),
    _r("sched.kv_room", "scheduling", "any", ("kv_cache_pct", "<", 90), 0.35,
       "KV cache only {v:.0f} % used while requests wait", "sched_admission", "vendor",
       "SGLang tuning: token usage < 0.9 with a queue = scheduler too conservative",
       when=(("requests_waiting", ">=", 1),)),
    _r("sched.batch_room", "scheduling", "any", ("batch_fill_pct", "<", 50), 0.3,
       "running batch {v:.0f} % of its maximum while requests wait", "sched_admission", "ours",
       "admission, not the batch cap, holds requests back", when=(("requests_waiting", ">=", 1),)),
    _r("sched.queue_time", "scheduling", "any", ("queue_time_p50_s", ">=", 0.1), 0.3,
       "median queue time {v:.2f} s", "sched_admission", "ours", "100 ms in a queue is user-visible"),
    _r("sched.accept", "scheduling", "any", ("accept_queue", ">=", 1), 0.5,
       "{v:.1f} connections waiting in the accept queue with CPU {proc_cpu_of_allowed_pct:.0f} % of allowed",
       "sched_workers", "vendor", "ss(8)/Linux: listen Recv-Q counts connections not yet accepted",
       when=(("proc_cpu_of_allowed_pct", "<", 60),)),
    _r("sched.unread", "scheduling", "any", ("inbound_recv_q_bytes", ">=", 1), 0.35,
       "{v:B} of client requests unread while CPU is {proc_cpu_of_allowed_pct:.0f} % of allowed",
       "sched_workers", "vendor", "Linux: established Recv-Q = bytes our process has not read",
       when=(("proc_cpu_of_allowed_pct", "<", 60),)),
    _r("sched.parked", "scheduling", "any", ("py_parked", ">=", 0.5), 0.35,
       "workers parked on queues/timers {v:.0%} of the time with {inbound_conns:.0f} clients connected",
       "sched_timer", "ours", "workers parked on an internal queue or batch timer while clients wait "
       "(and not on sockets: handlers also park while workers wait on upstreams)",
       when=(("inbound_conns", ">=", 1), ("proc_cpu_of_allowed_pct", "<", 60), ("py_wait_network", "<", 0.2))),
    _r("sched.parked_backend", "scheduling", "any", ("py_parked", ">=", 0.5), 0.35,
       "workers parked waiting for work {v:.0%} of the time while {requests_waiting:.1f} requests wait",
       "sched_timer", "measured", "TorchServe 0.12 Python worker with maxBatchDelay 1 s: parked in "
       "retrieve_msg 97-100 % with 3 requests queued at its frontend; a backend worker has no client "
       "connections of its own, so sched.parked cannot see the clients",
       when=(("requests_waiting", ">=", 1), ("inbound_conns", "<", 1, True), ("proc_cpu_of_allowed_pct", "<", 60),
             ("py_wait_network", "<", 0.2))),
    _r("sched.timer", "scheduling", "any", ("py_wait_sleep", ">=", 0.3), 0.3,
       "threads sleep {v:.0%} of the time (a batch timer?) with clients connected", "sched_timer", "ours",
       "sleeping while requests are in flight", when=(("inbound_conns", ">=", 1),)),
    _r("sched.none_running", "scheduling", "any", ("requests_running", "<", 0.5), 0.5,
       "{requests_waiting:.1f} requests waiting while none runs", "sched_timer", "ours",
       "a batch held back for a timer or a full batch", when=(("requests_waiting", ">=", 1),)),
    _r("sched.waiting_inside", "scheduling", "any", ("lat_waiting_share", ">=", 0.8), 0.7,
       "{v:.0%} of each request's {lat_residence_s:.2f} s is spent waiting inside the server while CPU is "
       "{proc_cpu_of_allowed_pct:.0f} % of allowed (requests are held, not worked on)", "sched_timer", "measured",
       LITTLE + "; " + MEASURED_BATCHER + " (held by the batch timer while the cores idle). Not with upstreams open "
       "(they may be what requests wait for) nor with a thread that wants a core all the time (requests then queue "
       "behind it: a capacity limit)",
       when=(("lat_residence_s", ">=", 0.05), ("proc_cpu_of_allowed_pct", "<", 60), ("py_wait_network", "<", 0.3, True),
             ("upstream_conns", "<", 1, True), ("runnable_threads", "<", 0.5, True),
             ("top_thread_cpu_pct", "<", 50, True), ("gpu_busy_pct", "<", 70, True))),
    _r("sched.accept_pegged", "scheduling", "any", ("accept_queue", ">=", 1), 0.5,
       "{v:.0f} connections wait in the accept queue while only {runnable_threads:.1f} thread(s) want a core of the "
       "{allowed_cores:.0f} allowed (tree CPU {proc_cpu_of_allowed_pct:.0f} % of allowed): too few workers",
       "sched_workers", "measured", "benchmarks/wild pre-fork server, one sync worker, 8 clients, 50 ms of CPU each: "
       "accept queue 7, the worker runnable in every sample (95 % of a core alone, 40 % on a host busy with other "
       "work), tree 20-48 % of 2 cores; more workers would take the queued connections",
       when=(("runnable_threads", ">=", 0.8), ("runnable_per_core", "<", 0.75), ("proc_cpu_of_allowed_pct", "<", 70))),
    _r("sched.not.worker", "scheduling", "any", ("py_top_active_pct", ">=", 70), -0.5,
       "thread {py_top_thread} busy {v:.0f} % of the time: the workers are working", "", "ours",
       "queueing behind busy workers is a capacity limit, not scheduling (unless connections wait in the accept "
       "queue: then a worker is busy and the others are missing)", when=(("accept_queue", "<", 1, True),)),
    _r("sched.not.runnable_worker", "scheduling", "any", ("runnable_threads", ">=", 0.6), -0.4,
       "{v:.1f} threads want a core at any moment: requests wait behind a working thread, not for a timer", "",
       "measured", "the host_cpu demo on a host busy with other work: its GIL-bound thread at 40-56 % of a core but "
       "runnable 0.7 of the time, 1.6-4 requests waiting (scheduling 0.25-0.5); the scheduling demo's workers: "
       "runnable 0.1 (with connections in the accept queue the busy worker is one of too few: not against)",
       when=(("accept_queue", "<", 1, True),)),
    _r("sched.not.demand", "scheduling", "any", ("lat_service_share", ">=", 0.6), -0.5,
       "service demand is {v:.0%} of a request's time: requests are worked on, not held", "", "ours", LITTLE),
    _r("sched.not.short_wait", "scheduling", "any", ("queue_time_p50_s", "<", 0.02), -0.5,
       "median queue time {v:.3f} s: requests barely wait", "", "measured",
       "the demo's light load (5 req/s, queue time 5 ms) read \"1 waiting, none running\" for 11 s when "
       "evenly spaced arrivals phase-locked with the scrapes: a gauge is an instant, the queue-time "
       "histogram covers every request"),
    _r("sched.not.host", "scheduling", "any", ("host_cpu_busy_pct", ">=", 90), -0.25,
       "host CPU {v:.0f} % busy: no capacity is free", "", "ours", "other processes hold the cores (only when the "
       "target's threads want to run: a server holding requests on a timer is not held by a busy host; and not with "
       "connections in the accept queue: a second worker would take its share of the cores, whoever else runs)",
       when=(("runnable_threads", ">=", 0.5, True), ("accept_queue", "<", 1, True))),
    _r("sched.not.cpu", "scheduling", "any", ("proc_cpu_of_allowed_pct", ">=", 85), -0.5,
       "CPU {v:.0f} % of the allowed cores: no free capacity", "", "ours", "saturated, not mis-scheduled"),
    _r("sched.not.runnable", "scheduling", "any", ("runnable_per_core", ">=", 1.0), -0.5,
       "{v:.1f} runnable threads per allowed core: the cores are busy, not the scheduler", "", "measured",
       "TorchServe 0.12 frontend serving flat out: 2.3 runnable threads on 2 cores at CPU 63 % of allowed "
       "(the rest went to the worker it feeds) scored scheduling 0.49 against compute 0.55"),
    _r("sched.not.gpu", "scheduling", "any", ("gpu_busy_pct", ">=", 70), -0.5,
       "GPU busy {v:.0f} %: no free capacity", "", "measured",
       MEASURED_MATMUL + " (a saturated matmul reads SM 78, below DCGM's 0.8)"),
    _r("sched.not.tensor", "scheduling", "any", ("gpu_tensor_pct", ">=", 40), -0.5,
       "tensor cores {v:.0f} % active: no free capacity", "", "measured", MEASURED_MATMUL),
    _r("sched.not.kv", "scheduling", "any", ("kv_cache_pct", ">=", 95), -0.4,
       "KV cache {v:.0f} % full: memory, not the scheduler, holds requests", "", "vendor",
       "vLLM optimization guide: KV exhaustion causes preemption"),
    # ------------------------------------------------- 3a. compute: math units busy
    _r("compute.tensor", "compute", "gpu", ("gpu_tensor_pct", ">=", 40), 0.6,
       "tensor cores active {v:.0f} %", "compute_precision", "measured", MEASURED_MATMUL),
    _r("compute.sm", "compute", "gpu", ("gpu_sm_pct", ">=", 70), 0.5,
       "SMs active {v:.0f} % with DRAM at {gpu_dram_pct:.0f} % of peak", "compute_precision", "measured",
       MEASURED_MATMUL + " (a copy saturates SMs too, hence DRAM < 60)", when=(("gpu_dram_pct", "<", 60),)),
    _r("compute.legacy", "compute", "gpu", ("gpu_legacy_util_pct", ">=", 90), 0.4,
       "GPU utilisation {v:.0f} % (legacy NVML: a kernel ran, not which units)", "compute_precision", "vendor",
       "nvidia-smi utilization.gpu = % of time >= 1 kernel ran"),
    _r("compute.power", "compute", "gpu", ("gpu_power_pct", ">=", 95), 0.25,
       "GPU at {v:.0f} % of its power limit", "compute_throttle", "ours", "power-capped clocks"),
    _r("compute.not.idle_sm", "compute", "gpu", ("gpu_sm_pct", "<", 30), -0.5,
       "SMs active only {v:.0f} %", "", "vendor", "DCGM: SM_ACTIVE < 0.5 is likely ineffective use"),
    _r("compute.not.dram", "compute", "gpu", ("gpu_dram_pct", ">=", 70), -0.3,
       "DRAM {v:.0f} % of peak with tensor cores at {gpu_tensor_pct:.0f} %", "", "measured", MEASURED_COPY,
       when=(("gpu_tensor_pct", "<", 30),)),
    _r("compute.cores", "compute", "cpu", ("proc_cpu_of_allowed_pct", ">=", 80), 0.45,
       "CPU {v:.0f} % of the allowed cores", "compute_cpu", "ours", LOADED_MARGIN),
    _r("compute.threads", "compute", "cpu", ("busy_threads", ">=", 2), 0.3,
       "{v:.0f} threads each above 50 % of a core (intra-op parallel work)", "compute_cpu", "ours",
       LOADED_MARGIN, when=(("proc_cpu_of_allowed_pct", ">=", 60),)),
    _r("compute.runnable", "compute", "cpu", ("runnable_threads", ">=", 1.5), 0.35,
       "{v:.1f} threads runnable at once: the target wants that many cores of native work", "compute_cpu",
       "ours", "threads waiting for the GIL sleep (state S), so only native work keeps two runnable",
       when=(("proc_cpu_pct", ">=", 20),)),
    _r("compute.native_math", "compute", "cpu", ("native_math", ">=", 0.5), 0.7,
       "{v:.0%} of native samples in math kernels (GEMM/conv)", "compute_cpu", "measured",
       "py-spy --native names mkl_blas_*sgemm* under a CPU GEMM"),
    _r("compute.nogil", "compute", "cpu", ("py_top_gil_share", "<", 0.3), 0.4,
       "the busiest Python thread runs native code without the GIL ({v:.0%} of its samples hold it)",
       "compute_cpu", "vendor", "py-spy: active without owns_gil = inside an extension that released it "
       "(and the process must show CPU use: a short native burst in a mostly idle process is not a limit)",
       when=(("py_top_active_pct", ">=", 50), ("proc_cpu_pct", ">=", 20))),
    _r("compute.py_math", "compute", "cpu", ("py_op_math", ">=", 0.6), 0.5,
       "{v:.0%} of on-CPU Python samples in math ops (matmul/linear/conv: high arithmetic intensity)", "compute_cpu",
       "measured", MEASURED_OPS, when=(("proc_cpu_pct", ">=", 20),)),
    _r("compute.not.py_memory", "compute", "cpu", ("py_op_memory", ">=", 0.6), -0.5,
       "{v:.0%} of on-CPU Python samples in copies/gathers/elementwise ops (low arithmetic intensity)", "",
       "measured", MEASURED_OPS),
    _r("compute.not.churn", "compute", "cpu", ("minor_faults_per_cpu_s", ">=", 15000), -0.3,
       "{v:.0f} fresh pages touched per CPU-second: memory traffic, not math", "", "measured", MEASURED_FAULTS),
    _r("compute.not.native_mem", "compute", "cpu", ("native_memory", ">=", 0.5), -0.4,
       "{v:.0%} of native samples in copy/alloc code", "", "ours", "copies are memory-bound"),
    _r("compute.not.gil", "compute", "cpu", ("py_top_gil_share", ">=", 0.6), -0.4,
       "the busiest Python thread holds the GIL in {v:.0%} of its active samples", "", "vendor",
       "py-spy owns_gil", when=(("py_top_active_pct", ">=", 50),)),
    # ------------------------------------------------ 3b. memory_io: waiting on memory or transfers
    _r("mem.dram", "memory_io", "gpu", ("gpu_dram_pct", ">=", 60), 0.65,
       "DRAM bandwidth {v:.0f} % of peak with tensor cores at {gpu_tensor_pct:.0f} %", "mem_hbm", "measured",
       MEASURED_COPY + "; DCGM: ~0.8 is the practical maximum", when=(("gpu_tensor_pct", "<", 30),)),
    _r("mem.dram_peak", "memory_io", "gpu", ("gpu_dram_pct", ">=", 75), 0.45,
       "DRAM bandwidth at its practical peak (DCGM: ~80 % is the most it sustains)", "mem_hbm", "vendor",
       "DCGM: DRAM_ACTIVE ~0.8 is the practical maximum"),
    _r("mem.pcie", "memory_io", "gpu", ("gpu_pcie_link_pct", ">=", 10), 0.55,
       "PCIe at {v:.0f} % of the link while SMs are {gpu_sm_pct:.0f} % active", "mem_pcie", "measured",
       MEASURED_PCIE + " (10: pageable copies run at a fraction of pinned speed)",
       when=(("gpu_sm_pct", "<", 30),)),
    _r("mem.pcie_bytes", "memory_io", "gpu", ("gpu_pcie_bytes_per_s", ">=", 2e9), 0.45,
       "PCIe {v:B}/s while the GPU is {gpu_busy_pct:.0f} % busy", "mem_pcie", "measured",
       MEASURED_PCIE + " (2 GB/s: pageable copies staged by one CPU thread run far below pinned speed)",
       when=(("gpu_busy_pct", "<", 30),)),
    _r("mem.pcie_stream", "memory_io", "gpu", ("gpu_pcie_both_bytes_per_s", ">=", 1e9), 0.6,
       "PCIe {v:B}/s (both directions) in {gpu_pcie_duty:.0%} of samples while the GPU is {gpu_busy_pct:.0f} % "
       "busy: a steady copy stream", "mem_pcie", "ours",
       "pageable copies staged by one CPU thread move 1-3 GB/s (below the pinned-copy rules' 10 % of a link), "
       "and the staging thread is pegged: the copy duty, not the thread, is the limit",
       when=(("gpu_pcie_duty", ">=", 0.6), ("gpu_busy_pct", "<", 30))),
    _r("mem.kv", "memory_io", "any", ("kv_cache_pct", ">=", 90), 0.7,
       "KV cache {v:.0f} % full with {preemptions_per_min:.1f} preemptions/min", "mem_kv", "vendor",
       "vLLM optimization guide; research table: KV >= 0.9 and preemptions > ~1/min",
       when=(("preemptions_per_min", ">=", 1),)),
    _r("mem.legacy", "memory_io", "gpu", ("gpu_legacy_mem_pct", ">=", 60), 0.3,
       "memory controller busy {v:.0f} % (legacy NVML: time, not bandwidth)", "mem_hbm", "vendor",
       "nvidia-smi utilization.memory = % of time memory was read or written"),
    _r("mem.native", "memory_io", "cpu", ("native_memory", ">=", 0.4), 0.7,
       "{v:.0%} of native samples in copy/elementwise/alloc code", "mem_cpu_bw", "ours",
       "py-spy --native frames: memcpy, copy_, index/gather kernels, malloc"),
    _r("mem.major_faults", "memory_io", "any", ("major_faults_per_s", ">=", 100), 0.6,
       "{v:.0f} major page faults/s (reading pages from disk)", "mem_paging", "ours",
       "each major fault is a disk read; 100/s is a visible stall"),
    _r("mem.swap", "memory_io", "any", ("swap_bytes_per_s", ">=", 1048576), 0.6,
       "swapping {v:B}/s", "mem_paging", "ours", "any sustained swap traffic hurts latency"),
    _r("mem.alloc_churn", "memory_io", "cpu", ("minor_faults_per_cpu_s", ">=", 15000), 0.65,
       "{v:.0f} minor page faults per CPU-second (fresh 4 KiB pages: large tensors allocated and streamed)",
       "mem_cpu_bw", "measured", MEASURED_FAULTS, when=(("proc_cpu_pct", ">=", 30),)),
    _r("mem.py_streaming", "memory_io", "cpu", ("py_op_memory", ">=", 0.6), 0.65,
       "{v:.0%} of on-CPU Python samples in copies/gathers/elementwise ops: the cores stream memory (low arithmetic "
       "intensity)", "mem_cpu_bw", "measured", MEASURED_OPS + " (a CPU PMU's memory-bound stall counters would "
       "confirm it; the native burst names the kernels)", when=(("proc_cpu_pct", ">=", 20),)),
    _r("mem.not.py_math", "memory_io", "cpu", ("py_op_math", ">=", 0.6), -0.4,
       "{v:.0%} of on-CPU Python samples in math ops", "", "measured", MEASURED_OPS),
    _r("mem.not.math", "memory_io", "cpu", ("native_math", ">=", 0.6), -0.4,
       "{v:.0%} of native samples in math kernels", "", "measured", "py-spy --native: GEMM kernels"),
    # ----------------------------------------- 3c. host_cpu: the host (Python, GIL, launches) starves it
    _r("host.launch", "host_cpu", "gpu", ("gpu_graphics_pct", ">=", 15), 0.65,
       "graphics engine busy {v:.0f} % but SMs {gpu_sm_pct:.1f} %: tiny kernels, launch-bound", "host_launch",
       "measured", MEASURED_TINY + "; PCIe copies also keep SMs at 0, hence PCIe < 5 % of the link",
       when=(("gpu_sm_pct", "<", 5), ("gpu_pcie_link_pct", "<", 5, True))),
    _r("host.thread_gpu", "host_cpu", "gpu", ("top_thread_cpu_pct", ">=", 85), 0.5,
       "a thread is pegged at {v:.0f} % of a core while the GPU is {gpu_busy_pct:.0f} % busy", "host_gil",
       "vendor", "research table: SM < 0.5 and a thread >= 90 % of a core (85: loaded-machine margin); "
       "not while PCIe streams >= 1 GB/s (the pegged thread is staging pageable copies)",
       when=(("gpu_busy_pct", "<", 50), ("gpu_pcie_both_bytes_per_s", "<", 1e9, True))),
    _r("host.gil_held", "host_cpu", "any", ("py_gil_pct", ">=", 70), 0.55,
       "the GIL is held {v:.0f} % of the time", "host_gil", "vendor",
       "research table: GIL >= 80 % (70: py-spy samples miss short releases); a busy GPU excuses it",
       when=(("gpu_busy_pct", "<", 50, True),)),
    _r("host.sync", "host_cpu", "gpu", ("py_wait_gpu_sync", ">=", 0.3), 0.35,
       "threads in GPU syncs {v:.0%} of the time while the GPU is only {gpu_busy_pct:.0f} % busy",
       "host_launch", "measured", "a busy GPU also shows ~95 % in synchronize, hence GPU < 50",
       when=(("gpu_busy_pct", "<", 50),)),
    _r("host.gil_share", "host_cpu", "any", ("py_top_gil_share", ">=", 0.6), 0.6,
       "the busiest Python thread holds the GIL in {v:.0%} of its active samples (interpreter-bound)",
       "host_gil", "vendor", "py-spy owns_gil: the interpreter, not an extension, is running (active >= 40: "
       "a thread also waiting for the GIL is not on CPU)",
       when=(("py_top_active_pct", ">=", 40),)),
    _r("host.gil_busy", "host_cpu", "any", ("py_gil_pct", ">=", 45), 0.45,
       "the GIL is held {v:.0f} % of the time while the process uses {proc_cpu_pct:.0f} % of a core",
       "host_gil", "measured", "host_cpu demo here: GIL 53-62 % at 52-58 % of a core on a busy 2-core host; "
       "torch math/copy demos hold it < 5 %", when=(("proc_cpu_pct", ">=", 40), ("gpu_busy_pct", "<", 50, True))),
    _r("host.interpreter", "host_cpu", "cpu", ("native_interpreter", ">=", 0.5), 0.6,
       "{v:.0%} of native samples in the Python interpreter", "host_gil", "vendor",
       "py-spy --native: _PyEval_EvalFrame* frames"),
    _r("host.gil_wait", "host_cpu", "any", ("py_wait_gil", ">=", 0.2), 0.4,
       "threads wait for the GIL {v:.0%} of the time (contention)", "host_gil", "vendor",
       "py-spy --native: take_gil / PyGILState_Ensure"),
    _r("host.one_core", "host_cpu", "any", ("proc_cpu_pct", ">=", 80), 0.3,
       "the process uses one core's worth ({v:.0f} %) of {allowed_cores:.0f} allowed, with no two threads "
       "busy in parallel (the GIL's signature)", "host_gil", "ours",
       "threads sharing the GIL add up to ~100 % of one core however many there are",
       when=(("proc_cpu_of_allowed_pct", "<", 60), ("allowed_cores", ">=", 2), ("busy_threads", "<", 2),
             ("gpu_busy_pct", "<", 50, True))),
    _r("host.pegged", "host_cpu", "cpu", ("top_thread_cpu_pct", ">=", 85), 0.3,
       "thread pegged at {v:.0f} % of a core while the process uses {proc_cpu_of_allowed_pct:.0f} % of "
       "{allowed_cores:.0f} cores", "host_gil", "ours", "one busy thread and idle cores: the single-thread "
       "signature of Python; " + LOADED_MARGIN,
       when=(("proc_cpu_of_allowed_pct", "<", 70), ("allowed_cores", ">=", 2))),
    _r("host.not.accept", "host_cpu", "any", ("accept_queue", ">=", 1), -0.5,
       "{v:.0f} connections wait in the accept queue while the tree uses {proc_cpu_of_allowed_pct:.0f} % of its "
       "cores: workers are missing, not a faster host", "", "ours",
       "a full accept queue with idle cores is a worker count (scheduling), whatever one worker's thread does",
       when=(("proc_cpu_of_allowed_pct", "<", 70),)),
    _r("host.not.math", "host_cpu", "cpu", ("native_math", ">=", 0.5), -0.4,
       "{v:.0%} of native samples in math kernels", "", "measured", "py-spy --native: GEMM kernels"),
    _r("host.not.nogil", "host_cpu", "any", ("py_top_gil_share", "<", 0.3), -0.4,
       "the busiest Python thread runs without the GIL ({v:.0%})", "", "vendor", "py-spy owns_gil",
       when=(("py_top_active_pct", ">=", 50),)),
    _r("host.not.pcie", "host_cpu", "gpu", ("gpu_pcie_bytes_per_s", ">=", 2e9), -0.5,
       "PCIe {v:B}/s: the GPU waits on transfers (a busy copying thread is part of the transfer)", "",
       "measured", MEASURED_PCIE),
    _r("host.not.gpu_busy", "host_cpu", "gpu", ("gpu_busy_pct", ">=", 80), -0.5,
       "GPU busy {v:.0f} %: it is not starved", "", "vendor", "DCGM: SM_ACTIVE >= 0.8"),
    # ------------------------------------------------- 4. network: time goes to communication
    _r("net.waits", "network", "any", ("py_wait_network", ">=", 0.3), 0.5,
       "threads wait on sockets {v:.0%} of the time with {upstream_conns:.0f} upstream connections open",
       "net_upstream", "vendor", "py-spy --idle: socket/ssl/select frames are network waits (0.3: handler "
       "threads parked on results dilute the workers' socket waits)",
       when=(("upstream_conns", ">=", 1), ("proc_cpu_of_allowed_pct", "<", 50))),
    _r("net.upstream_idle_cpu", "network", "any", ("upstream_conns", ">=", 1), 0.25,
       "{v:.0f} upstream connections open, {inbound_conns:.0f} clients connected, CPU "
       "{proc_cpu_of_allowed_pct:.0f} % of allowed", "net_upstream", "ours",
       "clients wait while the process neither computes nor queues",
       when=(("inbound_conns", ">=", 1), ("proc_cpu_of_allowed_pct", "<", 20))),
    _r("net.latency", "network", "any", ("e2e_p50_s", ">=", 0.1), 0.35,
       "median request takes {v:.2f} s with no queue and CPU {proc_cpu_of_allowed_pct:.0f} % of allowed",
       "net_upstream", "ours", "latency neither queueing nor computing explains is spent waiting",
       when=(("requests_waiting", "<", 1), ("proc_cpu_of_allowed_pct", "<", 30), ("upstream_conns", ">=", 1))),
    _r("net.waiting_upstream", "network", "any", ("lat_waiting_share", ">=", 0.5), 0.5,
       "{v:.0%} of each request's {lat_residence_s:.2f} s is waiting while threads wait on sockets "
       "{py_wait_network:.0%} of the time with {upstream_conns:.0f} upstream connections", "net_upstream", "ours",
       LITTLE + "; waiting spent on upstream sockets is network time",
       when=(("upstream_conns", ">=", 1), ("py_wait_network", ">=", 0.3), ("proc_cpu_of_allowed_pct", "<", 50))),
    _r("net.upstream_sendq", "network", "any", ("upstream_send_q_bytes", ">=", 65536), 0.35,
       "{v:B} unacknowledged to upstreams (the peer or the path is slow)", "net_upstream", "vendor",
       "Linux: established Send-Q = bytes not yet acknowledged"),
    _r("net.slow_clients", "network", "any", ("inbound_send_q_bytes", ">=", 262144), 0.4,
       "{v:B} unacknowledged to clients (slow clients)", "net_slow_clients", "vendor",
       "Linux: established Send-Q = bytes not yet acknowledged"),
    _r("net.retrans", "network", "any", ("retrans_pct", ">=", 1), 0.45,
       "TCP retransmits {v:.1f} % of segments", "net_retrans", "ours", "research table: retrans > 1 %"),
    _r("net.overflows", "network", "any", ("listen_overflows_per_s", ">", 0), 0.4,
       "{v:.1f} SYNs/s dropped on a full accept queue", "net_backlog", "vendor",
       "Linux snmp_counter.rst: TcpExt ListenOverflows"),
    _r("net.not.fast", "network", "any", ("e2e_p50_s", "<", 0.05), -0.5,
       "median request takes only {v:.3f} s", "", "ours", "nothing waits long"),
    _r("net.not.demand", "network", "any", ("lat_service_share", ">=", 0.6), -0.5,
       "service demand is {v:.0%} of a request's time: requests are worked on, not waiting", "", "ours", LITTLE),
    _r("net.not.cpu", "network", "any", ("proc_cpu_of_allowed_pct", ">=", 80), -0.4,
       "CPU {v:.0f} % of allowed: busy, not waiting", "", "ours", "busy, not waiting"),
    _r("net.not.gpu", "network", "any", ("gpu_busy_pct", ">=", 80), -0.4,
       "GPU busy {v:.0f} %: busy, not waiting", "", "ours", "busy, not waiting"),
)
# fmt: on


def rules_for(category: str) -> tuple[Rule, ...]:
    """The rules that speak for or against one class."""
    return tuple(r for r in RULES if r.category == category)
