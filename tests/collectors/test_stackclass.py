"""Frame classification as a table: stacks (leaf first) as py-spy reports them, and their class."""

from __future__ import annotations

import pytest

from optitop.collectors.stackclass import (
    BREAKDOWN_CLASSES,
    OP_CLASSES,
    WAIT_CLASSES,
    Frame,
    breakdown_class,
    classify_op,
    classify_py_op,
    classify_wait,
    is_native_file,
)

STDLIB = "/usr/lib/python3.11/"
SITE = "/srv/venv/lib/python3.11/site-packages/"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBPY = "/usr/lib/libpython3.11.so.1.0"
TORCH_CPU = SITE + "torch/lib/libtorch_cpu.so"


def py(name: str, file: str, line: int = 1, code: str = "") -> Frame:
    return Frame(name=name, file=file, line=line, code=code)


def nat(name: str, lib: str = LIBC) -> Frame:
    return Frame(name=name, file=lib, native=True)


USER = "/app/server.py"
TS = SITE + "ts/"
#: TorchServe 0.12's Python worker between batches (file lines as in the 0.12.0 wheel).
TS_WAIT = [
    py("_retrieve_buffer", TS + "protocol/otf_message_handler.py", 181, "pkt = conn.recv(length)"),
    py("retrieve_msg", TS + "protocol/otf_message_handler.py", 33),
    py("TorchModelServiceWorker.handle_connection", TS + "model_service_worker.py", 179),
    py("TorchModelServiceWorker.run_server", TS + "model_service_worker.py", 268),
]

WAIT_TABLE: list[tuple[str, list[Frame], str]] = [
    # -- network ------------------------------------------------------------------------------------------
    ("socket.recv in user code", [py("handle", USER, 11, "data = conn.recv(4096)")], "network"),
    ("sendall", [py("reply", USER, 20, "self.sock.sendall(payload)")], "network"),
    ("accept loop", [py("serve", USER, 5, "conn, addr = srv.accept()")], "network"),
    ("socket.py wrapper", [py("SocketIO.readinto", STDLIB + "socket.py", 706), py("h", USER)], "network"),
    ("ssl read", [py("SSLSocket.read", STDLIB + "ssl.py", 1134), py("h", USER)], "network"),
    # an event loop parked in its selector waits for any event: "loop", which the analyzer judges with the sockets
    ("selector idle (asyncio loop)", [py("EpollSelector.select", STDLIB + "selectors.py", 468)], "loop"),
    (
        "asyncio loop over native epoll_wait",
        [
            nat("epoll_wait"),
            py("EpollSelector.select", STDLIB + "selectors.py", 468),
            py("BaseEventLoop._run_once", STDLIB + "asyncio/base_events.py", 1898),
        ],
        "loop",
    ),  # fmt: skip
    (
        "socketserver.serve_forever (prometheus-client's metrics thread)",
        [
            py("_PollLikeSelector.select", STDLIB + "selectors.py", 415),
            py("BaseServer.serve_forever", STDLIB + "socketserver.py", 233),
        ],
        "loop",
    ),  # fmt: skip
    (
        "a coroutine blocking the loop in recv is a network wait (the loop's frames are deeper)",
        [
            py("handle", USER, 11, "data = conn.recv(4096)"),
            py("Task.__step", STDLIB + "asyncio/tasks.py", 267),
            py("Handle._run", STDLIB + "asyncio/events.py", 84),
            py("BaseEventLoop._run_once", STDLIB + "asyncio/base_events.py", 1922),
        ],
        "network",
    ),  # fmt: skip
    ("http.client response", [py("HTTPResponse.begin", STDLIB + "http/client.py", 318)], "network"),
    ("requests (short names)", [py("Session.send", "requests/sessions.py", 701)], "network"),
    ("urllib3 pool", [py("HTTPConnectionPool.urlopen", SITE + "urllib3/connectionpool.py", 715)], "network"),
    (
        "grpc waits in a Condition: still network",
        [py("Condition.wait", STDLIB + "threading.py", 327), py("_wait_once", SITE + "grpc/_common.py", 116)],
        "network",
    ),
    (
        "asyncio transport",
        [py("_SelectorSocketTransport._read_ready", STDLIB + "asyncio/selector_events.py")],
        "network",
    ),
    ("native recv", [nat("__libc_recv"), py("handle", USER, 11)], "network"),
    ("native epoll_wait", [nat("epoll_wait"), py("run", USER)], "network"),
    ("native SSL_read", [nat("SSL_read", "/usr/lib/libssl.so.3"), py("h", USER)], "network"),
    # -- queue --------------------------------------------------------------------------------------------
    (
        "queue.get",
        [py("Condition.wait", STDLIB + "threading.py", 327), py("Queue.get", STDLIB + "queue.py", 171)],
        "queue",
    ),
    ("Event.wait", [py("Event.wait", STDLIB + "threading.py", 622), py("worker", USER)], "queue"),
    ("Thread.join", [py("Thread._wait_for_tstate_lock", STDLIB + "threading.py", 1132)], "queue"),
    ("lock.acquire in user code", [py("critical", USER, 9, "with_lock = self._lock.acquire(timeout=1)")], "queue"),
    ("SimpleQueue.get (a C call)", [py("loop", USER, 30, "item = self.inbox.get()")], "queue"),
    (
        "multiprocessing queue reads a pipe: queue, not io",
        [
            py("Connection._recv", STDLIB + "multiprocessing/connection.py", 395, "chunk = read(handle, remaining)"),
            py("Queue.get", STDLIB + "multiprocessing/queues.py", 103),
        ],
        "queue",
    ),
    ("future.result", [py("Future.result", STDLIB + "concurrent/futures/_base.py", 451)], "queue"),
    ("native lock", [nat("PyThread_acquire_lock_timed", LIBPY), py("Thread.join", STDLIB + "x.py")], "queue"),
    ("native condvar", [nat("pthread_cond_timedwait"), py("w", USER)], "queue"),
    # -- a server waiting for its next request is queue, whatever it reads ------------------------------
    (
        "TorchServe worker waits for the frontend (as py-spy showed it on TorchServe 0.12)",
        TS_WAIT,
        "queue",
    ),
    ("TorchServe worker, native recv leaf", [nat("__libc_recv"), *TS_WAIT], "queue"),
    ("TorchServe worker, short py-spy paths", [py("_retrieve_buffer", "ts/protocol/otf_message_handler.py")], "queue"),
    ("TorchServe worker waking for the GIL is a GIL wait", [nat("take_gil", LIBPY), *TS_WAIT], "gil"),
    (
        "a user function named _retrieve_buffer is still network",
        [py("_retrieve_buffer", USER, 9, "conn.recv(n)")],
        "network",
    ),
    (
        "vLLM v1 engine core input thread waits on ZMQ",
        [
            py("Socket.recv_multipart", SITE + "zmq/sugar/socket.py", 808),
            py("EngineCoreProc.process_input_sockets", SITE + "vllm/v1/engine/core.py", 1005),
            py("Thread.run", STDLIB + "threading.py", 982),
        ],
        "queue",
    ),
    # -- gpu sync -----------------------------------------------------------------------------------------
    ("torch.cuda.synchronize", [py("synchronize", SITE + "torch/cuda/__init__.py", 985), py("step", USER)], "gpu_sync"),
    ("Event.synchronize", [py("Event.synchronize", SITE + "torch/cuda/streams.py", 224)], "gpu_sync"),
    ("loss.item()", [py("step", USER, 40, "total += loss.item()")], "gpu_sync"),
    ("logits.cpu()", [py("decode", USER, 41, "out = logits.argmax(-1).cpu()")], "gpu_sync"),
    ("tolist()", [py("decode", USER, 42, "ids = out.tolist()")], "gpu_sync"),
    ("native cudaStreamSynchronize", [nat("cudaStreamSynchronize", "libcudart.so.12"), py("s", USER)], "gpu_sync"),
    ("native cuCtxSynchronize", [nat("cuCtxSynchronize", "libcuda.so.1"), nat("cudaDeviceSynchronize")], "gpu_sync"),
    ("native cuEventSynchronize", [nat("cuEventSynchronize", "libcuda.so.1"), py("s", USER)], "gpu_sync"),
    # -- sleep, io, gc, gil -------------------------------------------------------------------------------
    ("time.sleep", [py("backoff", USER, 7, "time.sleep(0.5)")], "sleep"),
    ("from time import sleep", [py("backoff", USER, 7, "sleep(delay)")], "sleep"),
    ("native nanosleep", [nat("clock_nanosleep"), py("b", USER)], "sleep"),
    ("file read", [py("load", USER, 3, "blob = fh.read()")], "io"),
    ("os.write", [py("dump", USER, 3, "os.write(fd, buf)")], "io"),
    ("open()", [py("cfg", USER, 3, "with open(path) as fh:")], "io"),
    ("native read", [nat("__libc_read"), py("load", USER)], "io"),
    ("gc.collect()", [py("tick", USER, 3, "gc.collect()")], "gc"),
    ("native gc", [nat("gc_collect_main", LIBPY), py("alloc", USER)], "gc"),
    ("take_gil", [nat("take_gil", LIBPY), nat("PyEval_RestoreThread", LIBPY), py("h", USER)], "gil"),
    (
        "futex under take_gil is a GIL wait, not a lock",
        [nat("futex_wait"), nat("pthread_cond_timedwait"), nat("take_gil", LIBPY), py("h", USER)],
        "gil",
    ),
    ("PyGILState_Ensure", [nat("PyGILState_Ensure", LIBPY), nat("callback", "libfoo.so")], "gil"),
    # -- nothing ------------------------------------------------------------------------------------------
    ("pure Python compute", [py("score", USER, 12, "acc += w * x")], ""),
    ("dict.get is not a wait when no code is known", [py("lookup", USER, 12)], ""),
    ("empty stack", [], ""),
]


@pytest.mark.parametrize(("frames", "expected"), [(f, e) for _, f, e in WAIT_TABLE], ids=[n for n, _, _ in WAIT_TABLE])
def test_wait_classes(frames: list[Frame], expected: str) -> None:
    assert classify_wait(frames) == expected


SAMPLE_TABLE: list[tuple[str, list[Frame], bool, str]] = [
    ("on CPU in Python", [py("score", USER, 12, "acc += w * x")], True, "active"),
    ("on CPU in a matmul line", [py("fwd", USER, 3, "y = x @ w")], True, "active"),
    (
        "a CUDA sync spins on CPU: still a GPU wait",
        [py("synchronize", SITE + "torch/cuda/__init__.py")],
        True,
        "gpu_sync",
    ),
    ("on CPU with a recv leaf: it is receiving, count active", [py("h", USER, 1, "conn.recv(1)")], True, "active"),
    ("idle in recv", [py("h", USER, 1, "conn.recv(1)")], False, "network"),
    ("idle, cause unknown", [py("score", USER, 12, "acc += 1")], False, "other"),
]


@pytest.mark.parametrize(
    ("frames", "active", "expected"),
    [(f, a, e) for _, f, a, e in SAMPLE_TABLE],
    ids=[n for n, _, _, _ in SAMPLE_TABLE],
)
def test_sample_classes(frames: list[Frame], active: bool, expected: str) -> None:
    assert breakdown_class(classify_wait(frames), active) == expected


OP_TABLE: list[tuple[str, list[Frame], str | None]] = [
    ("MKL sgemm kernel", [nat("mkl_blas_def_sgemm_kernel_0_zen", TORCH_CPU), py("fwd", USER)], "math"),
    (
        "OpenMP spin under the MKL driver: math",
        [
            nat("0x7f922041e02a", SITE + "torch/lib/libgomp.so.1"),
            nat("GOMP_parallel", SITE + "torch/lib/libgomp.so.1"),
            nat("mkl_blas_sgemm_omp_driver_v1", TORCH_CPU),
        ],
        "math",
    ),
    ("MKL pack-copy inside a GEMM: math", [nat("mkl_blas_def_sgemm_scopy_down16_bdz", TORCH_CPU)], "math"),
    ("oneDNN conv", [nat("dnnl::impl::cpu::x64::jit_avx2_convolution_fwd_t::execute", TORCH_CPU)], "math"),
    ("oneDNN eltwise is memory", [nat("dnnl::impl::cpu::x64::jit_uni_eltwise_fwd_t::execute", TORCH_CPU)], "memory"),
    ("cuBLAS", [nat("cublasLtMatmul", "libcublasLt.so.12")], "math"),
    ("openblas", [nat("sgemm_kernel_HASWELL", "libopenblas.so.0")], "math"),
    (
        "torch vectorized add loop",
        [
            nat(
                "c10::function_ref<void (char**, long const*, long, long)>::callback_fn<at::native::AVX2::"
                "VectorizedLoop2d<at::native::(anonymous namespace)::add_kernel(at::TensorIteratorBase&, "
                "c10::Scalar const&)::{lambda()#1}::operator()() const::{lambda(float, float)#1}>>",
                TORCH_CPU,
            ),
            nat("at::TensorIteratorBase::serial_for_each", TORCH_CPU),
        ],
        "memory",
    ),
    (
        "torch copy_",
        [nat("at::native::AVX2::direct_copy_kernel", TORCH_CPU), nat("at::native::copy_", TORCH_CPU)],
        "memory",
    ),
    ("libc memmove", [nat("__memmove_avx_unaligned_erms"), nat("at::native::cat", TORCH_CPU)], "memory"),
    ("embedding / index_select", [nat("at::native::index_select_out_cpu_", TORCH_CPU)], "memory"),
    ("gather", [nat("at::native::gather_out", TORCH_CPU)], "memory"),
    ("reduction", [nat("at::native::(anonymous namespace)::sum_kernel_impl", TORCH_CPU)], "memory"),
    ("malloc", [nat("_int_malloc"), nat("malloc")], "alloc"),
    ("free", [nat("free"), nat("at::TensorImpl::~TensorImpl", TORCH_CPU)], "alloc"),
    ("CUDA caching allocator", [nat("c10::cuda::CUDACachingAllocator::Native::malloc", "libc10_cuda.so")], "alloc"),
    ("eval loop", [nat("_PyEval_EvalFrameDefault", LIBPY), py("f", USER)], "interpreter"),
    ("dict lookup in CPython", [nat("_PyDict_GetItem_KnownHash", LIBPY)], "interpreter"),
    ("unresolved address only", [nat("0x7f59caca3f16")], "other"),
    ("Python leaf: no native frame", [py("f", USER)], None),
    ("no frames", [], None),
]


@pytest.mark.parametrize(("frames", "expected"), [(f, e) for _, f, e in OP_TABLE], ids=[n for n, _, _ in OP_TABLE])
def test_op_classes(frames: list[Frame], expected: str | None) -> None:
    assert classify_op(frames) == expected


def test_every_class_is_reachable() -> None:
    """Each wait and op class appears in the tables above, so no rule is dead."""
    assert {e for _, _, e in WAIT_TABLE} - {""} == set(WAIT_CLASSES)
    assert {e for _, _, e in OP_TABLE} - {None} == set(OP_CLASSES)
    assert BREAKDOWN_CLASSES[0] == "active" and BREAKDOWN_CLASSES[-1] == "other"


@pytest.mark.parametrize(
    ("file", "native"),
    [
        ("/app/server.py", False),
        ("threading.py", False),
        ("<frozen importlib._bootstrap>", False),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", True),
        ("", True),
        ("aten/src/ATen/native/Copy.cpp", True),
    ],
)
def test_native_files(file: str, native: bool) -> None:
    assert is_native_file(file) is native


def test_frame_label_is_pyspy_style() -> None:
    assert Frame("Queue.get", "queue.py", 171).label() == "Queue.get (queue.py:171)"
    assert Frame("memcpy", "libc.so.6", None, native=True).label() == "memcpy (libc.so.6)"


def test_a_server_handler_parked_on_a_condition_waits_on_a_queue_not_the_network() -> None:
    """Seen on the demo: socketserver handler threads waiting for their batch's result were called 'network'."""
    frames = [
        Frame("Condition.wait", "/usr/lib/python3.11/threading.py", 327, False),
        Frame("result", "/srv/app/batching.py", 88, False),
        Frame("do_POST", "/srv/app/server.py", 40, False),
        Frame("handle_one_request", "/usr/lib/python3.11/http/server.py", 424, False),
        Frame("handle", "/usr/lib/python3.11/http/server.py", 436, False),
        Frame("__init__", "/usr/lib/python3.11/socketserver.py", 755, False),
        Frame("finish_request", "/usr/lib/python3.11/socketserver.py", 362, False),
        Frame("process_request_thread", "/usr/lib/python3.11/socketserver.py", 691, False),
    ]
    assert classify_wait(frames) == "queue"


NN = SITE + "torch/nn/modules/"
#: On-CPU stacks (leaf first) and the op class their Python frames name: the CPU op mix without a native burst.
PY_OP_TABLE: list[tuple[str, list[Frame], str]] = [
    ("copy_ in user code", [py("main", USER, 40, "c.copy_(a)")], "memory"),
    ("in-place mul_", [py("main", USER, 41, "c.mul_(1.0001)")], "memory"),
    ("index_select gather", [py("main", USER, 43, "torch.index_select(table, 0, idx, out=gathered)")], "memory"),
    ("torch.cat", [py("collate", USER, 9, "batch = torch.cat(parts)")], "memory"),
    ("matmul operator", [py("step", USER, 12, "y = x @ w")], "math"),
    ("torch.matmul", [py("step", USER, 12, "y = torch.matmul(x, w)")], "math"),
    ("einsum", [py("attn", USER, 30, "s = torch.einsum('bhqd,bhkd->bhqk', q, k)")], "math"),
    (
        "Linear.forward's F.linear",
        [
            py("Linear.forward", NN + "linear.py", 125, "return F.linear(input, self.weight, self.bias)"),
            py("MLP.forward", USER, 20),
        ],
        "math",
    ),  # fmt: skip
    ("GELU.forward", [py("GELU.forward", NN + "activation.py", 734, "return F.gelu(input)")], "memory"),
    (
        "a module's dispatch, no op on the line: the nearest forward decides",
        [
            py("Module._call_impl", NN + "module.py", 1750, "return forward_call(*args, **kwargs)"),
            py("LayerNorm.forward", NN + "normalization.py", 217),
        ],
        "memory",
    ),  # fmt: skip
    ("plain Python", [py("tokenize", USER, 5, "out.append(word.lower())")], "interpreter"),
    ("a decorator's name is not an op", [py("matmul_cache_key", USER, 5, "return hash(key)")], "interpreter"),
    ("only native frames: no Python frame to read", [nat("memcpy")], ""),
]


@pytest.mark.parametrize(
    ("frames", "expected"), [(f, e) for _, f, e in PY_OP_TABLE], ids=[n for n, _, _ in PY_OP_TABLE]
)
def test_python_frames_name_the_op_class(frames: list[Frame], expected: str) -> None:
    assert classify_py_op(frames) == expected
