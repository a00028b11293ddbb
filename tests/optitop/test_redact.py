"""Secrets never reach the screen, JSON or records."""

from __future__ import annotations

import pytest

from optitop.redact import redact_arg_list, redact_cmdline, redact_text


@pytest.mark.parametrize(
    ("argv", "hidden"),
    [
        (["serve", "--api-key", "s3cr3t"], "s3cr3t"),
        (["serve", "--api-key=s3cr3t"], "s3cr3t"),
        (["serve", "--token=abc123xyz"], "abc123xyz"),
        (["serve", "--hf-token", "hf_abcdefghijklmnopqrstuv"], "hf_abcdefghijklmnopqrstuv"),
        (["env", "HF_TOKEN=abcdef"], "abcdef"),
        (["env", "OPENAI_API_KEY=sk-live-1"], "sk-live-1"),
        (["app", "password=hunter2"], "hunter2"),
        (["app", "--db", "postgres://user:pa55w0rd@db:5432/x"], "pa55w0rd"),
        (["app", "--header", "Authorization: Bearer abcdefghijk123"], "abcdefghijk123"),
        (["app", "sk-abcdefghijklmnopqrstuvwx"], "sk-abcdefghijklmnopqrstuvwx"),
    ],
)
def test_secrets_are_redacted(argv, hidden):
    out = redact_cmdline(argv)
    assert hidden not in out
    assert "***" in out


def test_ordinary_arguments_are_kept():
    argv = ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "x/y", "--port", "8000"]
    assert redact_arg_list(argv) == argv
    assert redact_text("http://127.0.0.1:8000/metrics") == "http://127.0.0.1:8000/metrics"
