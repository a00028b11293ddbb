"""Secrets never reach the screen, JSON, records, bundles or the exporter; what is not secret stays readable.

The table holds every shape the hostile-input review found (issue 20) and the common ones around them. Each
row names the secret that must go and the parts that must stay (flag names, hosts, ports, paths, user names).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from conftest import wait_for

from optitop.redact import REDACTED, is_secret_name, redact_arg_list, redact_cmdline, redact_json, redact_text

S = "Zq9xK2mW"  # a secret that no other word here contains

# (text, the secrets it holds, the parts that must stay)
TEXT_SHAPES = [
    (f"--metrics-url http://admin:{S}@127.0.0.1:8123/metrics", [S], ["http://admin:", "@127.0.0.1:8123/metrics"]),
    (f"redis://:{S}@cache:6379/0", [S], ["redis://:", "@cache:6379/0"]),
    (f"postgres://u:{S}@db.internal:5432/x", [S], ["postgres://u:", "@db.internal:5432/x"]),
    (f"https://h.example/metrics?token={S}", [S], ["https://h.example/metrics?token="]),
    (f"http://h/?api_key={S}&format=text", [S], ["http://h/?api_key=", "&format=text"]),
    (f"http://h/m?a=1&access_token={S}#top", [S], ["http://h/m?a=1&access_token=", "#top"]),
    (f"http://h/m?key={S}&sig={S}x&secret={S}y&password={S}z", [S], ["http://h/m?key=", "&sig=", "&secret="]),
    (f"https://s3/o?X-Amz-Signature={S}&X-Amz-Date=20240101", [S], ["X-Amz-Signature=", "&X-Amz-Date=20240101"]),
    (f'sh -c "vllm serve m --api-key {S} --port 8000"', [S], ["sh -c", "--api-key", "--port 8000"]),
    (f'--override \'{{"api_key": "{S}", "model": "llama"}}\'', [S], ['"api_key": "', '"model": "llama"']),
    (f"{{'hf_token': '{S}'}}", [S], ["'hf_token': '"]),
    (f"--token:{S} --port 1", [S], ["--token:", "--port 1"]),
    (f"--token={S} --port 1", [S], ["--token=", "--port 1"]),
    (f"--pass {S} --port 1", [S], ["--pass", "--port 1"]),
    (f"--password {S} --port 1", [S], ["--password", "--port 1"]),
    (f"--api-key {S} --model x/y", [S], ["--api-key", "--model x/y"]),
    (f"-H 'X-Api-Key: {S}' http://h:1/", [S], ["X-Api-Key:", "http://h:1/"]),
    (f"HF_TOKEN={S} OPENAI_API_KEY={S}2 python serve.py", [S], ["HF_TOKEN=", "OPENAI_API_KEY=", "python serve.py"]),
    (f"AWS_SECRET_ACCESS_KEY={S} DB_PASSWORD={S}", [S], ["AWS_SECRET_ACCESS_KEY=", "DB_PASSWORD="]),
    (f"apiKey: {S}\nclientSecret={S}", [S], ["apiKey:", "clientSecret="]),
    (f'os.environ["API_KEY"] = "{S}"', [S], ['os.environ["API_KEY"]']),
    (f"Authorization: Bearer {S}abcdef", [S], ["Authorization: Bearer"]),
    (f"curl -H 'Authorization: Basic {S}QWxhZGRpbjpvcGVu' http://h", [S], ["Authorization: Basic", "http://h"]),
    (f"got bearer {S}abcdefgh from the proxy", [S], ["got bearer", "from the proxy"]),
    (f"proxy admin:{S}@proxy.local:3128", [S], ["proxy admin:", "@proxy.local:3128"]),
    (f"https://ghp_{S}abcdefghijklmnop@github.com/o/r", [S], ["https://", "@github.com/o/r"]),
    ("token hf_" + S * 3, [S], ["token"]),
    ("key sk-" + S * 3, [S], ["key"]),
    ("key sk-ant-api03-" + S * 3, [S], ["key"]),
    ("AKIA" + "ABCDEFGHIJKLMNOP in the log", ["AKIAABCDEFGHIJKLMNOP"], ["in the log"]),
    ("slack xoxb-" + S + "-123456", [S], ["slack"]),
    ("jwt eyJ" + S + ".eyJ" + S + "." + S + "sig", [S], ["jwt"]),
    (f'vllm:num_requests_running{{key="{S}",model="m"}} 3', [S], ["vllm:num_requests_running", 'model="m"} 3']),
    (f"line one\n--api-key {S}\nline three --port 1", [S], ["line one\n--api-key ", "\nline three --port 1"]),
]


@pytest.mark.parametrize(("text", "secrets", "kept"), TEXT_SHAPES, ids=[t[0][:40] for t in TEXT_SHAPES])
def test_every_secret_shape_is_hidden_and_the_rest_stays(text, secrets, kept):
    out = redact_text(text)
    for secret in secrets:
        assert secret not in out, out
    for part in kept:
        assert part in out, out
    assert REDACTED in out
    assert redact_text(out) == out  # redacting twice changes nothing (the bundle redacts what is redacted)


# (argv, the secrets it holds, the parts of the joined cmdline that must stay)
ARGV_SHAPES = [
    (["serve", "--api-key", S], [S], ["serve --api-key"]),
    (["serve", "--api-key=" + S], [S], ["serve --api-key="]),
    (["serve", "--token:" + S], [S], ["--token:"]),
    (["serve", "--pass", S, "--port", "8000"], [S], ["--pass", "--port 8000"]),
    (["serve", "--hf-token", "hf_" + S * 3], [S], ["--hf-token"]),
    (["env", "HF_TOKEN=" + S, "python"], [S], ["env HF_TOKEN=", "python"]),
    (["sh", "-c", f"vllm serve m --api-key {S} --port 8000"], [S], ["sh -c vllm serve m --api-key", "--port 8000"]),
    (["bash", "-c", f"python -c 'import x' --token {S}"], [S], ["bash -c python -c 'import x' --token"]),
    (["app", f'{{"api_key": "{S}"}}'], [S], ['{"api_key": "']),
    (["python", "-c", f'import os; os.environ["API_KEY"]="{S}"'], [S], ['os.environ["API_KEY"]=']),
    (["app", "--db", f"postgres://u:{S}@h:5432/x"], [S], ["--db postgres://u:", "@h:5432/x"]),
    (["app", "--url", f"http://h:1/m?token={S}"], [S], ["--url http://h:1/m?token="]),
    (["app", "--header", f"Authorization: Bearer {S}abc"], [S], ["--header Authorization: Bearer"]),
    (["app", f"--password={S} with spaces"], [S, "with spaces"], ["app --password="]),
]


@pytest.mark.parametrize(("argv", "secrets", "kept"), ARGV_SHAPES, ids=[" ".join(a[0])[:40] for a in ARGV_SHAPES])
def test_every_secret_in_a_command_line_is_hidden(argv, secrets, kept):
    out = redact_cmdline(argv)
    for secret in secrets:
        assert secret not in out, out
    for part in kept:
        assert part in out, out
    assert len(redact_arg_list(argv)) == len(argv)  # one element per argument


@pytest.mark.parametrize(
    "argv",
    [
        ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "x/y", "--port", "8000"],
        ["vllm", "serve", "m", "--max-num-batched-tokens", "8192", "--tokenizer", "x/y", "--tokenizer-mode", "auto"],
        ["app", "--ssl-keyfile", "/etc/k.pem", "--api-key-file", "/run/key", "--no-auth", "--port", "1"],
        ["app", "--metrics-url", "http://127.0.0.1:8000/metrics?format=text", "--user", "me@example.com"],
        ["app", "--passes", "3", "--key-bits", "4096", "--pass-through", "--kv-cache-dtype", "fp8"],
        ["app", "--url", "http://user@host:80/x", "--at", "12:30"],
    ],
)
def test_ordinary_arguments_stay_as_they_are(argv):
    assert redact_arg_list(argv) == argv
    assert redact_text(" ".join(argv)) == " ".join(argv)


def test_secret_names_are_judged_by_their_last_word():
    for name in ("--api-key", "HF_TOKEN", "access_token", "X-Amz-Signature", "apiKey", "--pass", "sig", "DB_PASSWORD"):
        assert is_secret_name(name), name
    for name in ("--max-num-batched-tokens", "--tokenizer", "--token-file", "--keyfile", "--passes", "model", "port"):
        assert not is_secret_name(name), name


def test_json_values_are_redacted_by_key_and_by_shape():
    doc = {
        "api_key": S,
        "nested": [{"password": S, "port": 8000}],
        "args": ["--token", S, "--port", "1"],
        "url": f"http://a:{S}@h:1/m",
        "count": 3,
    }
    out = redact_json(doc)
    assert S not in repr(out)
    assert out["nested"][0]["port"] == 8000 and out["count"] == 3
    assert out["args"] == ["--token", REDACTED, "--port", "1"]
    assert out["url"] == f"http://a:{REDACTED}@h:1/m"


# -- end to end: a password-protected endpoint and a target whose cmdline holds a key ----------------------
PASSWORD = "Pw7hunter2x"
TOKEN = "Tok4query9y"
API_KEY = "Key9vllm3z"
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "metrics" / "vllm-v1-serving-metrics-doc-partial.prom"


def leaks(data: bytes | str) -> list[str]:
    """The secrets (or the Basic header that carries the password) found in ``data``."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    return [s for s in (PASSWORD, TOKEN, API_KEY, basic) if s in text]


@pytest.fixture
def guarded_endpoint() -> Iterator[str]:
    """A /metrics that answers only with the URL's user, password and token; yields that URL."""
    body = FIXTURE.read_bytes()
    want_auth = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            ok = self.headers.get("Authorization") == want_auth and self.path == f"/metrics?token={TOKEN}"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            if ok:
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://admin:{PASSWORD}@127.0.0.1:{server.server_address[1]}/metrics?token={TOKEN}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def shell_target() -> Iterator[int]:
    """``sh -c "… --api-key KEY"``: the whole command, key included, is one argv element of the target."""
    proc = subprocess.Popen(["sh", "-c", f"sleep 600; echo vllm serve --api-key {API_KEY}"], stdout=subprocess.DEVNULL)
    yield proc.pid
    for child in psutil.Process(proc.pid).children(recursive=True):
        child.kill()
    proc.kill()
    proc.wait(10)


def optitop(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "optitop", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/"
    )


def test_no_output_of_optitop_holds_the_url_password_token_or_the_targets_key(guarded_endpoint, shell_target, tmp_path):
    url, pid = guarded_endpoint, str(shell_target)
    shown = "http://admin:***@127.0.0.1:" + url.split("@127.0.0.1:")[1].replace(TOKEN, "***")
    record, bundle = tmp_path / "run.jsonl", tmp_path / "incident.tar.gz"
    runs = {
        "once": optitop("--pid", pid, "--once", "--json", "--duration", "2", "--metrics-url", url),
        "record": optitop("record", "--pid", pid, "-o", str(record), "--duration", "3", "--metrics-url", url),
        "bundle": optitop("bundle", "--pid", pid, "-o", str(bundle), "--sample", "3", "--metrics-url", url),
        "doctor": optitop("doctor", "--pid", pid, "--metrics-url", url),
    }
    exporter = optitop("export", "--pid", pid, "--listen", "127.0.0.1:0", "--interval", "0.5", "--metrics-url", url)
    try:
        assert exporter.stderr is not None
        line = exporter.stderr.readline()
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        exposition = str(
            wait_for(
                lambda: scrape(port, until='optitop_source_up{source="queue"} 1.0'),
                timeout_s=30,
                what="the exporter serving the queue's metrics",
            )
        )
    finally:
        exporter.kill()
        exporter.wait(10)
    assert "optitop_target_info" in exposition and not leaks(exposition) and not leaks(line)

    outputs = {name: proc.communicate(timeout=90) for name, proc in runs.items()}
    for name, (out, err) in outputs.items():
        assert runs[name].returncode == 0 or (name == "doctor" and runs[name].returncode == 1), f"{name}: {err}"
        assert not leaks(out) and not leaks(err), f"optitop {name} printed a secret: {leaks(out + err)}"

    doc = json.loads(outputs["once"][0])
    assert doc["metrics"]["queue"]["latest"]["source"].endswith(shown)  # it answered: the password was sent
    assert "--api-key ***" in doc["target"]["cmdline"]
    assert shown in outputs["doctor"][0]

    text = record.read_text()
    assert not leaks(text), f"the record file holds {leaks(text)}"
    assert shown in text and "--api-key ***" in text

    with tarfile.open(bundle) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert len(members) >= 6
    for name, data in members.items():
        assert not leaks(data), f"{name} holds {leaks(data)}"
    endpoints = next(data for name, data in members.items() if name.endswith("endpoints.txt"))
    assert shown.encode() in endpoints
    scrape_txt = next(data for name, data in members.items() if name.endswith("scrape.txt"))
    assert b"vllm:" in scrape_txt  # the bundle's own scrape authenticated too


def scrape(port: int, until: str) -> str:
    """The exporter's page once it holds ``until`` ("" before)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return ""
    return text if until in text else ""


async def test_the_picker_header_and_queue_pane_show_no_secret(guarded_endpoint, shell_target):
    from optitop.candidates import find_candidates
    from optitop.config import Options
    from optitop.runtime import live_runtime
    from optitop.tui.app import OptitopApp
    from optitop.tui.picker import PickerApp

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tui"))
    from tuiscreen import wait_for_screen

    pid = shell_target
    picker = PickerApp(find_candidates(sample_s=0.05, limit=100_000))  # a busy machine has many
    async with picker.run_test(size=(160, 30)) as pilot:
        await pilot.press(*str(pid))
        text = await wait_for_screen(pilot, lambda t: str(pid) in t and "--api-key" in t, timeout_s=30)
        assert "--api-key ***" in text and not leaks(text), text

    options = Options(interval_s=0.3, metrics_urls=(guarded_endpoint,))
    live = live_runtime(pid, options)
    app = OptitopApp(live, options)
    port = guarded_endpoint.split("@127.0.0.1:")[1].split("/")[0]
    try:
        async with app.run_test(size=(200, 50)) as pilot:
            shown = f"admin:***@127.0.0.1:{port}"
            text = await wait_for_screen(pilot, lambda t: shown in t and "--api-key" in t, timeout_s=30)
            assert "--api-key ***" in text and not leaks(text), text
    finally:
        live.stop()


def test_a_status_reason_is_redacted_where_the_store_takes_it():
    """Every reason (a collector's error, one that could not be built, a replayed one) passes the store."""
    from optitop.model import SourceState, SourceStatus, TargetInfo
    from optitop.store import Store

    store = Store(TargetInfo(pid=1, name="x", cmdline="x", username="u", create_time_s=0.0, host="h"))
    reason = f"URLError: cannot open http://admin:{PASSWORD}@h:1/metrics?token={TOKEN}"
    store.set_status(SourceStatus("queue", SourceState.ERROR, reason, failures=1))
    got = store.statuses()["queue"].reason
    assert not leaks(got) and got == "URLError: cannot open http://admin:***@h:1/metrics?token=***"
