"""Classify stack frames: what a thread waits on, and which kind of native kernel a sample is in.

Pure functions over plain frames (no py-spy, no I/O), so the rules can be tested as a table and reused on
recorded stacks. The rules are data: ordered tuples of (class, pattern); the first match wins.

Python-only stacks do not show C calls: a thread blocked in ``sock.recv(...)`` has the Python frame that
*calls* ``recv`` as its leaf. So besides function and file names, the rules look at the source text of
the leaf line (``Frame.code``), which the collector reads from the target's own files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Wait classes, in the order the sample reports them; "active" and "other" complete the breakdown.
#: "loop" is a thread parked in an event loop's selector (asyncio, uvloop, tornado, a zmq poller, socketserver):
#: waiting for *any* event — a client, a timer, an upstream reply — so the stack alone cannot say which; the
#: analyzer decides from the sockets (upstreams with traffic, slow clients) whether it counts as network.
WAIT_CLASSES: tuple[str, ...] = ("network", "loop", "queue", "gpu_sync", "sleep", "io", "gc", "gil")
#: Every class of the per-thread and process-wide breakdown.
BREAKDOWN_CLASSES: tuple[str, ...] = ("active", *WAIT_CLASSES, "other")
#: Op classes of the CPU op mix read from Python frames (no native burst needed): an arithmetic-intensity view.
PY_OP_CLASSES: tuple[str, ...] = ("math", "memory", "interpreter")
#: Native op classes of the op mix.
OP_CLASSES: tuple[str, ...] = ("math", "memory", "alloc", "interpreter", "other")
#: Classes that count as a wait even when the thread is on CPU (CUDA syncs spin; GIL handoffs spin).
ACTIVE_WAITS: frozenset[str] = frozenset({"gpu_sync", "gil"})
#: How far from the leaf the library rules look (deeper frames are frameworks and event loops).
STACK_DEPTH = 12


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame.

    Attributes:
        name: the function name as py-spy reports it (``Queue.get``, ``mkl_blas_sgemm``).
        file: the file (Python) or library (native) name; may be empty.
        line: the line number, or None when unknown.
        native: True for a native (C/C++) frame.
        code: the source text of ``line`` when known (leaf Python frames only), else "".
    """

    name: str
    file: str = ""
    line: int | None = None
    native: bool = False
    code: str = ""

    def label(self) -> str:
        """``func (file:line)``, the way py-spy prints a frame."""
        if not self.file:
            return self.name
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{self.name} ({where})"


def is_native_file(file: str) -> bool:
    """True when a frame's file is not Python source (a shared library, a C/C++ file, or nothing)."""
    if file.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    return not file.endswith((".py", ".pyw", ".pyx"))


# -- rules ---------------------------------------------------------------------------------------------------
def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


#: Native frames between the leaf and the first Python frame; checked first, class by class (a futex under
#: take_gil is a GIL wait, not a lock wait).
NATIVE_WAIT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("gil", _re(r"\btake_gil\b|PyGILState_Ensure|PyEval_RestoreThread|PyEval_AcquireThread")),
    (
        "gpu_sync",
        _re(r"cuda(Stream|Device|Event)Synchronize|cu(Stream|Event|Ctx)Synchronize|cudaMemcpy(?!Async)\b"),
    ),
    ("gc", _re(r"gc_collect|collect_generations|_PyGC_Collect|collect_with_callback")),
    ("sleep", _re(r"nanosleep|\bpysleep\b|\btime_sleep\b|\busleep\b")),
    (
        "network",
        _re(
            r"^(__libc_|__)?(recv|recvfrom|recvmsg|send|sendto|sendmsg|accept4?|connect|epoll_p?wait|p?poll"
            r"|p?select6?)$|SSL_(read|write|do_handshake)|sock_(recv|send|accept|connect)|select_epoll_poll"
        ),
    ),
    ("queue", _re(r"sem_(timed|clock)?wait|pthread_cond_(timed|clock)?wait|PyThread_acquire_lock|acquire_timed")),
    ("io", _re(r"^(__libc_|__)?(read|write|pread64|pwrite64|readv|writev|fsync|fdatasync|openat?)$|_io_FileIO")),
)

#: Serving frameworks' frames that wait for the next request from their own frontend: whatever the leaf
#: reads (a socket, a pipe), the worker is idle for want of work, so the wait is a queue wait, not a network
#: one. Checked before every other rule except a GIL or GPU-sync spin at the native leaf. Same layout as
#: STACK_RULES: (class, file pattern, function pattern) over the frames near the leaf.
WORK_WAIT_RULES: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    # TorchServe: the Python backend worker reads its next batch from the Java frontend over a Unix socket
    # (model_service_worker.handle_connection -> retrieve_msg -> _retrieve_int -> _retrieve_buffer -> recv).
    ("queue", _re(r"(^|/)ts/protocol/otf_message_handler\.py$"), _re(r"(^|\.)_?retrieve_\w+$")),
    # vLLM v1: the engine core's input thread waits on ZMQ for the API server's next request.
    ("queue", _re(r"(^|/)vllm/v1/engine/core\.py$"), _re(r"(^|\.)process_input_sockets?$")),
)

#: Event loops parked in their selector, waiting for whatever comes next. Checked before the native leaf (an
#: epoll_wait under a selector is the loop's wait, not a socket read) and before the network libraries (asyncio's
#: selector_events, selectors.py). Same layout as STACK_RULES, but only the LOOP_DEPTH leaf-most Python frames are
#: looked at: a coroutine that blocks the loop in a socket call has the loop's frames deeper down, and that is a
#: real network wait.
LOOP_RULES: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    ("loop", _re(r"(^|/)selectors\.py$"), _re(r"(^|\.)select$")),
    ("loop", _re(r"(^|/)socketserver\.py$"), _re(r"(^|\.)serve_forever$")),
    ("loop", _re(r"(^|/)(uvloop|tornado|twisted/internet|gevent)/"), _re(r"(^|\.)(run_forever|start|poll|doPoll)$")),
    ("loop", _re(r"(^|/)zmq/(sugar/poll|asyncio|eventloop)"), _re(r"(^|\.)poll$")),
)
LOOP_DEPTH = 2

#: Libraries near the leaf that decide the class whatever the leaf is (grpc waits in Condition.wait, a
#: multiprocessing queue reads a pipe).
STACK_RULES: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    ("gpu_sync", _re(r"(^|/)torch/cuda/(__init__|streams)\.py$"), _re(r"synchronize")),
    ("queue", _re(r"(^|/)multiprocessing/(connection|queues|synchronize|pool|managers)\.py$"), _re(r"")),
    (
        # socketserver is not here: it sits under every handler thread of a server, whatever the handler waits on
        "network",
        _re(
            r"(^|/)(urllib3|requests|grpc|aiohttp|httpx|httpcore|websockets|zmq)/|(^|/)http/client\.py$"
            r"|(^|/)(ssl|socket|selectors)\.py$|(^|/)asyncio/(selector_events|streams|transports)\.py$"
        ),
        _re(r""),
    ),
    ("queue", _re(r"(^|/)queue\.py$|(^|/)concurrent/futures/"), _re(r"")),
)

#: The leaf Python frame's function (file pattern, name pattern).
LEAF_RULES: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    (
        "queue",
        _re(r"(^|/)threading\.py$"),
        _re(r"(Condition|Event|Semaphore|Barrier)\.(wait|acquire)|Thread\.join|_wait_for_tstate_lock"),
    ),
    ("gc", _re(r""), _re(r"^gc\.collect$")),
)

#: The source text of the leaf Python line: C calls that block without a Python frame of their own.
CODE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("gpu_sync", _re(r"\.(item|cpu|tolist|numpy)\(\s*\)|cuda\.synchronize\(|\.synchronize\(")),
    ("sleep", _re(r"\bsleep\(")),
    ("gc", _re(r"\bgc\.collect\(")),
    (
        "network",
        _re(
            r"\.(recv|recv_into|recvfrom|recvfrom_into|recvmsg|send|sendall|sendto|sendmsg|accept|connect"
            r"|connect_ex)\(|\bselect\.(select|poll|epoll)\b|\.poll\(|\bcreate_connection\(|\burlopen\("
            r"|\bgetaddrinfo\("
        ),
    ),
    ("queue", _re(r"\.(acquire|wait|join|get|put)\(")),
    ("io", _re(r"\.(read|readline|readlines|readinto|write|writelines|flush)\(|\bopen\(|\bos\.(read|write|fsync)\(")),
)

#: Native op classes, tried in order on each native frame from the leaf up; the leaf-most match wins.
OP_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("memory", _re(r"(?i)eltwise|reorder")),
    (
        "math",
        _re(
            r"(?i)gemm|gemv|conv(?!ert)|matmul|\bbmm|addmm|blas|mkl|dnnl|mkldnn|onednn|openblas|cublas|xnnpack"
            r"|fbgemm|\bdot\b|\bmm_|_mm\b"
        ),
    ),
    (
        "memory",
        _re(
            r"(?i)copy|memcpy|memmove|memset|elementwise|vectorized_?loop|basic_loop|cpu_kernel|unary|binary"
            r"|reduce|reduction|sum_kernel|index_select|gather|scatter|embedding|\bcat\b|cat_|fill|add_kernel"
            r"|mul_kernel|where_kernel|softmax|layer_norm|transpose|contiguous"
        ),
    ),
    (
        "alloc",
        _re(
            r"(?i)malloc|calloc|realloc|\bc?free\b|_int_free|memalign|CachingAllocator|alloc_cpu|free_cpu"
            r"|\bmmap|munmap|\bbrk\b|operator new|operator delete|DefaultCPUAllocator|tcmalloc|jemalloc|PyMem_"
        ),
    ),
    ("interpreter", _re(r"^_?Py[A-Z_]|EvalFrame|vectorcall|^_?PyObject|^(long|dict|list|tuple|unicode)_")),
)


# -- classification ------------------------------------------------------------------------------------------
def leaf_native(frames: Sequence[Frame]) -> tuple[Frame, ...]:
    """The native frames from the leaf up to the first Python frame (empty for Python-only stacks)."""
    out = []
    for frame in frames:
        if not frame.native:
            break
        out.append(frame)
    return tuple(out)


def leaf_python(frames: Sequence[Frame]) -> Frame | None:
    """The leaf-most Python frame, or None."""
    return next((f for f in frames if not f.native), None)


def classify_wait(frames: Sequence[Frame]) -> str:
    """The wait class of one stack (frames leaf first), or "" when nothing marks it as a wait.

    A GIL or GPU-sync spin at the native leaf decides first, then a server's known wait for its next
    request (WORK_WAIT_RULES), then an event loop parked in its selector (LOOP_RULES), then the other native
    leaf frames (they are the truth when present), then libraries near the leaf, then the leaf Python
    function, then the source text of its line.
    """
    natives = leaf_native(frames)
    near = [f for f in frames[:STACK_DEPTH] if not f.native]
    spin = _first_native(natives, ACTIVE_WAITS)
    if spin:
        return spin
    for cls, file_re, name_re in WORK_WAIT_RULES:
        if any(file_re.search(f.file) and name_re.search(f.name) for f in near):
            return cls
    for cls, file_re, name_re in LOOP_RULES:
        if any(file_re.search(f.file) and name_re.search(f.name) for f in near[:LOOP_DEPTH]):
            return cls
    native = _first_native(natives, WAIT_CLASSES)
    if native:
        return native
    for cls, file_re, name_re in STACK_RULES:
        if any(file_re.search(f.file) and name_re.search(f.name) for f in near):
            return cls
    leaf = leaf_python(frames)
    if leaf is None:
        return ""
    for cls, file_re, name_re in LEAF_RULES:
        if file_re.search(leaf.file) and name_re.search(leaf.name):
            return cls
    for cls, code_re in CODE_RULES:
        if leaf.code and code_re.search(leaf.code):
            return cls
    return ""


def _first_native(natives: Sequence[Frame], classes: Sequence[str] | frozenset[str]) -> str:
    """The first of NATIVE_WAIT_RULES (in its order) among ``classes`` that matches a native leaf frame."""
    for cls, pattern in NATIVE_WAIT_RULES:
        if cls in classes and any(pattern.search(f.name) for f in natives):
            return cls
    return ""


def breakdown_class(wait: str, active: bool) -> str:
    """The breakdown class of one sample whose stack's wait class (``classify_wait``) is ``wait``: "active",
    a wait class, or "other" (idle, cause unknown).

    An active thread counts as active unless it spins in a GPU sync or a GIL handoff; an idle thread
    counts as its wait class, or "other" when the stack says nothing. The stacks collector caches each
    stack's wait class, so this takes the class, not the frames.
    """
    if active:
        return wait if wait in ACTIVE_WAITS else "active"
    return wait or "other"


def classify_op(frames: Sequence[Frame]) -> str | None:
    """The native op class of one stack: the leaf-most native frame that matches a rule.

    Returns None when the stack has no native frames (a Python-only sample says nothing about kernels),
    "other" when native frames exist but none matches.
    """
    natives = leaf_native(frames)
    if not natives:
        return None
    for frame in natives:
        for cls, pattern in OP_RULES:
            if pattern.search(frame.name):
                return cls
    return "other"


# -- the op mix from Python frames ---------------------------------------------------------------------------
#: The leaf line's source text: the tensor op a thread is running when py-spy catches it on CPU. Math ops reuse
#: each byte many times (high arithmetic intensity: compute-bound on a CPU); copies, gathers, elementwise ops,
#: norms and softmax touch each byte once or twice (low intensity: memory-bound). Tried in order, first match wins.
PY_OP_CODE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "math",
        _re(
            r"\b(matmul|mm|bmm|addmm|addbmm|baddbmm|einsum|linear|bilinear|conv[123]d|conv_transpose[123]d|tensordot"
            r"|scaled_dot_product_attention|chain_matmul|inner|outer|kron)\(|[\w\])]\s*@\s*[\w(]"
        ),
    ),
    (
        "memory",
        _re(
            r"\.(copy_|to|cat|clone|contiguous|index_select|index_copy_?|index_add_?|gather|scatter_?|scatter_add_?"
            r"|take|masked_fill_?|masked_select|mul_?|add_?|sub_?|div_?|addcmul_?|addcdiv_?|lerp_?|fill_|zero_|exp_?"
            r"|log_?|sqrt_?|rsqrt_?|pow_?|clamp_?|where|sum|mean|permute|transpose|repeat|expand|flip|roll|sort"
            r"|topk|cumsum|softmax|log_softmax|tanh_?|sigmoid_?|relu_?)\("
            r"|\b(cat|stack|concat|index_select|gather|scatter|embedding|embedding_bag|softmax|log_softmax|layer_norm"
            r"|group_norm|batch_norm|rms_norm|dropout|gelu|relu|silu|where|empty_like|zeros_like|ones_like)\("
        ),
    ),
)
#: nn.Module forwards near the leaf, when the leaf line names no op: the module's class says what it computes.
PY_OP_MODULE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "math",
        _re(r"^(Linear|LazyLinear|Bilinear|Conv[123]d|ConvTranspose[123]d|MultiheadAttention|\w*Attention)\.forward$"),
    ),
    (
        "memory",
        _re(
            r"^(LayerNorm|GroupNorm|BatchNorm[123]d|RMSNorm|InstanceNorm[123]d|Embedding|EmbeddingBag|Dropout\w*"
            r"|GELU|ReLU|SiLU|Tanh|Sigmoid|Softmax|LogSoftmax|Identity|Flatten|Unflatten)\.forward$"
        ),
    ),
)


def classify_py_op(frames: Sequence[Frame]) -> str:
    """The op class of one on-CPU stack from its Python frames: "math", "memory" or "interpreter" ("" with none).

    The leaf Python line's source names the tensor op when there is one (``c.copy_(a)``, ``x @ w``); else the
    nearest nn.Module ``forward`` says what the layer computes; else the thread runs plain Python (interpreter).
    Without a native burst this cannot see inside a fused kernel, and a custom module named like a built-in one
    is taken at its name: the mix is evidence, weighed with the CPU counters, not a verdict on its own.
    """
    leaf = leaf_python(frames)
    if leaf is None:
        return ""
    if leaf.code:
        for cls, code_re in PY_OP_CODE_RULES:
            if code_re.search(leaf.code):
                return cls
    for frame in frames[:STACK_DEPTH]:
        if frame.native:
            continue
        short = frame.name.rsplit(".", 2)
        name = ".".join(short[-2:])
        for cls, name_re in PY_OP_MODULE_RULES:
            if name_re.search(name):
                return cls
    return "interpreter"
