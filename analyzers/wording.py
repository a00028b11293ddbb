"""The analyzer's words: what each signal is and where it comes from, what each class means, the fixes per
server, and what to say when a source is missing.

The rules (``analyzers/rules.py``) decide; this module says it. Both are data, kept apart so the thresholds
and weights can be read without a hundred lines of advice in between. ``docs/ANALYZER.md`` is generated from
both by ``scripts/gen_analyzer_doc.py``.
"""

from __future__ import annotations

#: What each signal is, in words (for counter-evidence lines and the generated documentation).
SIGNAL_LABELS: dict[str, str] = {
    "proc_cpu_pct": "process CPU % of one core",
    "proc_cpu_of_allowed_pct": "process CPU % of its allowed cores",
    "allowed_cores": "cores the target may run on",
    "top_thread_cpu_pct": "busiest thread's CPU % of one core",
    "busy_threads": "threads above 50 % of a core",
    "runnable_threads": "threads runnable (state R) per sample",
    "runnable_per_core": "runnable threads per allowed core",
    "major_faults_per_s": "major page faults/s",
    "minor_faults_per_s": "minor page faults/s",
    "minor_faults_per_cpu_s": "minor page faults per CPU-second",
    "e2e_p50_s": "median request latency (s)",
    "swap_bytes_per_s": "swap in+out bytes/s",
    "iowait_pct": "host iowait %",
    "host_cpu_busy_pct": "host CPU busy %",
    "py_top_thread": "busiest Python thread",
    "gpu_busy_pct": "GPU busy % (SM activity, or legacy utilisation)",
    "gpu_sm_pct": "GPU SM activity %",
    "gpu_tensor_pct": "GPU tensor-core activity %",
    "gpu_dram_pct": "GPU DRAM bandwidth % of peak",
    "gpu_graphics_pct": "GPU graphics-engine activity %",
    "gpu_legacy_util_pct": "GPU utilisation % (legacy NVML)",
    "gpu_legacy_mem_pct": "GPU memory-controller activity % (legacy NVML)",
    "gpu_pcie_link_pct": "PCIe traffic % of the link",
    "gpu_pcie_bytes_per_s": "PCIe bytes/s (busier direction)",
    "gpu_pcie_both_bytes_per_s": "PCIe bytes/s (both directions together)",
    "gpu_pcie_duty": "share of samples with PCIe traffic (copy duty)",
    "gpu_power_pct": "GPU power % of its limit",
    "requests_waiting": "requests waiting",
    "requests_running": "requests running",
    "requests_in_system": "requests running + waiting",
    "request_rate_per_s": "requests/s arriving",
    "batch_fill_pct": "running batch % of its maximum",
    "kv_cache_pct": "KV cache usage %",
    "preemptions_per_min": "preemptions/min",
    "queue_time_p50_s": "median queue time (s)",
    "accept_queue": "connections in the listen (accept) queue",
    "inbound_recv_q_bytes": "unread bytes on client connections",
    "inbound_conns": "client connections",
    "inbound_send_q_bytes": "unacknowledged bytes to clients",
    "upstream_conns": "connections to upstream services",
    "upstream_send_q_bytes": "unacknowledged bytes to upstreams",
    "retrans_pct": "TCP retransmissions %",
    "listen_overflows_per_s": "SYNs dropped on a full accept queue/s",
    "py_active_pct": "Python samples active %",
    "py_gil_pct": "Python samples holding the GIL %",
    "py_top_active_pct": "busiest Python thread active %",
    "py_top_gil_share": "share of the busiest Python thread's activity holding the GIL",
    "py_wait_network": "share of Python thread time waiting on sockets",
    "py_wait_loop": "share of Python thread time in an event loop's selector (any event)",
    "lat_residence_s": "seconds a request spends in the server",
    "lat_waiting_share": "share of a request's time spent waiting (residence − service demand)",
    "lat_service_share": "share of a request's time that is CPU/GPU service demand",
    "py_wait_gpu_sync": "share of Python thread time in GPU syncs",
    "py_wait_gil": "share of Python thread time waiting for the GIL",
    "py_parked": "share of Python thread time parked on queues/sleep",
    "py_wait_sleep": "share of Python thread time in sleep/timers",
    "py_op_math": "on-CPU Python samples in math ops (matmul/linear/conv)",
    "py_op_memory": "on-CPU Python samples in memory ops (copy/gather/elementwise/norm)",
    "py_op_interpreter": "on-CPU Python samples in plain Python",
    "native_math": "native samples in math kernels",
    "native_memory": "native samples in copy/elementwise/alloc code",
    "native_interpreter": "native samples in the interpreter",
}
#: Which source a signal comes from (missing sources lower the confidence of the rules they feed).
SIGNAL_SOURCES: dict[str, str] = {
    **{
        s: "process"
        for s in (
            "proc_cpu_pct",
            "proc_cpu_of_allowed_pct",
            "allowed_cores",
            "top_thread_cpu_pct",
            "busy_threads",
            "runnable_threads",
            "runnable_per_core",
            "major_faults_per_s",
            "minor_faults_per_s",
            "minor_faults_per_cpu_s",
        )
    },
    **{s: "system" for s in ("swap_bytes_per_s", "iowait_pct", "host_cpu_busy_pct")},
    **{s: "gpu" for s in SIGNAL_LABELS if s.startswith("gpu_")},
    **{
        s: "queue"
        for s in (
            "requests_waiting",
            "requests_running",
            "requests_in_system",
            "request_rate_per_s",
            "batch_fill_pct",
            "kv_cache_pct",
            "preemptions_per_min",
            "queue_time_p50_s",
            "e2e_p50_s",
        )
    },
    **{
        s: "sockets"
        for s in (
            "accept_queue",
            "inbound_recv_q_bytes",
            "inbound_conns",
            "inbound_send_q_bytes",
            "upstream_conns",
            "upstream_send_q_bytes",
            "retrans_pct",
            "listen_overflows_per_s",
        )
    },
    **{s: "pystacks" for s in SIGNAL_LABELS if s.startswith(("py_", "native_"))},
    # the decomposition divides by the server's completions: without its metrics there is none
    **{s: "queue" for s in SIGNAL_LABELS if s.startswith("lat_")},
}


#: What each class means in a line (the docs and the pane's help).
CLASS_SUMMARY: dict[str, str] = {
    "idle": "no work arriving: requests, CPU and GPU near zero",
    "scheduling": "requests wait while capacity is free (admission, batch timers, too few workers)",
    "compute": "the math units (tensor cores/SMs, or the CPU cores in math kernels) are the limit",
    "memory_io": "memory bandwidth, host<->device transfers, KV-cache pressure or paging are the limit",
    "host_cpu": "the host side (Python, the GIL, kernel launches, syncs) cannot feed the work",
    "network": "time goes to sockets: upstream calls, slow clients, retransmits, dropped connections",
    "none": "work flows, nothing saturates, nothing queues",
    "unknown": "too little data yet to judge",
}

#: Fixes per evidence, per server. ``*`` is the generic text, used only when nothing more specific is
#: known; ``pytorch`` covers plain PyTorch and home-grown services seen running torch. Each text leads
#: with the action (a narrow pane clips the tail), then says why.
FIXES: dict[str, dict[str, str]] = {
    "idle": {
        "*": "Check the client, load balancer routing and health checks: no work is arriving",
    },
    "sched_admission": {
        "vllm": "Raise --max-num-seqs and --max-num-batched-tokens: requests wait while KV cache and GPU have room",
        "tgi": "Raise --max-batch-prefill-tokens / --max-batch-total-tokens (and --max-concurrent-requests if "
        "it rejects); lower --waiting-served-ratio to admit sooner",
        "triton": "Lower dynamic_batching { max_queue_delay_microseconds }, raise max/preferred batch size: "
        "queued requests are batched late",
        "sglang": "Lower --schedule-conservativeness (token usage < 0.9 with a queue: the scheduler is too "
        "cautious); raise --max-running-requests",
        "pytorch": "Batch waiting requests together (dynamic batching with a short max-wait) instead of one "
        "forward pass per request",
        "*": "Admit more per step: raise the max batch / max concurrent sequences, or use continuous batching",
    },
    "sched_timer": {
        "triton": "Shorten dynamic_batching { max_queue_delay_microseconds }: requests wait for the batch "
        "timer while the GPU is free",
        "torchserve": "Lower maxBatchDelay (or raise the worker count): requests wait for the batch timer",
        "*": "Shorten the batcher's timeout / max-wait, or run a partial batch when capacity is free: requests "
        "wait for a timer or a full batch",
    },
    "sched_workers": {
        "triton": "Raise instance_group { count }: more model instances take requests",
        "torchserve": "Raise minWorkers/maxWorkers (or default_workers_per_model)",
        "*": "Add workers (e.g. uvicorn/gunicorn --workers) or replicas: requests sit in the kernel while the "
        "CPU is free",
    },
    "compute_precision": {
        "vllm": "FP8 weights (--quantization fp8) and --kv-cache-dtype fp8, --tensor-parallel-size N; "
        "--enable-chunked-prefill to mix prefill with decode",
        "tgi": "Quantise (--quantize fp8/awq) or shard across more GPUs (--num-shard)",
        "triton": "Build the engine with FP16/FP8 (TensorRT); add instances on more GPUs",
        "sglang": "FP8 (--quantization fp8), --tp-size N, or --chunked-prefill-size to balance prefill",
        "pytorch": "bf16/fp16 (torch.autocast) and torch.compile to fuse kernels; batch for efficiency; more "
        "GPUs if already there",
        "*": "Lower precision (bf16/fp16/fp8), fuse kernels, or add accelerators: the math units are full",
    },
    "compute_throttle": {
        "*": "Check power and cooling (nvidia-smi -q -d PERFORMANCE,POWER): the GPU is power/thermal limited",
    },
    "compute_cpu": {
        "pytorch": "bf16/int8 (torch.ao.quantization) or torch.compile, torch.set_num_threads = physical "
        "cores, batch inputs, or a GPU: CPU math saturates the cores",
        "*": "Quantise the model, allow more cores (taskset/cgroup), or move the math to an accelerator: CPU "
        "math saturates the cores",
    },
    "mem_kv": {
        "vllm": "Raise --gpu-memory-utilization, lower --max-num-seqs / --max-num-batched-tokens, "
        "--kv-cache-dtype fp8, or more tensor parallelism: the KV cache is full and requests are preempted",
        "sglang": "Raise --mem-fraction-static or --schedule-conservativeness, lower --max-running-requests: "
        "the KV pool is full (retractions)",
        "tgi": "Lower --max-batch-total-tokens / --max-concurrent-requests, or shard across more GPUs",
        "*": "Admit fewer concurrent sequences, quantise the KV cache, or add memory: the KV cache is full",
    },
    "mem_hbm": {
        "vllm": "Larger batches if KV allows (--max-num-seqs), weight quantisation (AWQ/GPTQ/FP8), "
        "--kv-cache-dtype fp8: decode is bandwidth-bound",
        "pytorch": "Fuse elementwise ops (torch.compile), keep bf16/fp16, avoid .contiguous()/clone() copies, "
        "batch more so weights are reused",
        "*": "Bigger batches (reuse each weight read), quantised weights, fewer copies, fused kernels: GPU "
        "memory bandwidth is the limit",
    },
    "mem_pcie": {
        "vllm": "Drop --cpu-offload-gb / swap-space offload: host<->GPU transfers dominate",
        "pytorch": "Keep tensors on the GPU; pin_memory=True and .to(device, non_blocking=True); batch "
        "transfers; DataLoader(pin_memory=True, num_workers>0)",
        "*": "Keep data on the device, pinned memory + async copies, batch transfers, check the PCIe link "
        "generation/width",
    },
    "mem_paging": {
        "*": "Add RAM or shrink the resident set (smaller model, fewer workers); check the container memory "
        "limit: the process is paging",
    },
    "mem_cpu_bw": {
        "pytorch": "In-place ops and views instead of clone()/.contiguous(), reuse buffers, bf16, torch.compile "
        "to fuse elementwise ops: CPU time goes to moving memory",
        "*": "Avoid copies, reuse buffers, use smaller dtypes: CPU time goes to moving memory",
    },
    "host_gil": {
        "vllm": "Raise --api-server-count (parallel tokenisation/detokenisation): the API server's Python is the limit",
        "sglang": "Raise --tokenizer-worker-num, or --skip-tokenizer-init with pre-tokenised input",
        "pytorch": "Move tokenisation/pre-processing off the serving thread (fast tokenizers in batch, a "
        "process pool, DataLoader workers); batch requests: Python holds the GIL",
        "*": "More worker processes (threads do not scale past the GIL), batch per-item work, move hot loops to "
        "native code: the interpreter is the limit",
    },
    "host_launch": {
        "vllm": "Keep CUDA graphs on (no --enforce-eager); raise the batch so kernels are not tiny",
        "pytorch": "CUDA Graphs (torch.compile(mode='reduce-overhead')), fuse small ops, drop .item()/.cpu() "
        "syncs from the loop, larger batches: launch-bound",
        "*": "Fewer, larger kernels (fusion, CUDA graphs) and no per-step syncs: the GPU waits on the host",
    },
    "net_upstream": {
        "*": "Co-locate the services (or a Unix socket), pooled keep-alive connections, batch or parallelise "
        "the calls; check the upstream's own latency",
    },
    "net_slow_clients": {
        "*": "Stream or compress responses, or put a buffering proxy in front: clients read slowly",
    },
    "net_retrans": {
        "*": "Check the network path (NIC errors, MTU, congestion): packets are being retransmitted",
    },
    "net_backlog": {
        "*": "Raise the listen backlog and net.core.somaxconn, add workers: connections are dropped on a full "
        "accept queue",
    },
    "none": {
        "*": "Raise the load until a class appears; record runs before/after each change to compare",
    },
}

#: What to say when a source is absent, and which classes it would have sharpened.
MISSING_HINTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "process": ("no process samples yet", ("idle", "compute", "host_cpu", "memory_io")),
    "system": ("no host CPU/swap counters", ("memory_io",)),
    "gpu": ("no GPU counters", ("compute", "memory_io", "host_cpu")),
    "queue": ("no queue metrics: pass --metrics-url (or --log for server logs)", ("scheduling", "idle")),
    "sockets": ("no socket queues", ("network", "scheduling", "idle")),
    "pystacks": (
        # The static hint is shown only when the session gave no reason: what ptrace needs depends on who optitop
        # runs as (root without CAP_SYS_PTRACE, Yama scope 3, an LSM), which doctor checks on this machine.
        "no Python stacks: py-spy needs ptrace (`optitop doctor --pid PID` says what this machine lacks)",
        ("host_cpu", "network", "scheduling", "compute"),
    ),
}


def fix_text(key: str, server: str | None) -> str:
    """The fix for ``key`` worded for ``server`` (generic when the server has no specific text)."""
    table = FIXES.get(key, {})
    return table.get(server or "*") or table.get("*", "")
