"""The MT-Bench judge client: https only (local http by opt-in), no redirect carries the key,
a whole-request deadline with bounded retries, and the key in no file or log.

Every server here is a local ``http.server`` on 127.0.0.1, shut down by its fixture.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_mt_bench import PREDICTIONS, FakeTrainer

from callbacks.judge_client import JudgeClient, JudgeError, check_judge_url
from callbacks.mt_bench import MTBenchWriter

SECRET = "sk-test-0123456789-SECRET"


class Server:
    """A local judge whose behaviour each test scripts (``reply(handler) -> None``)."""

    def __init__(self, reply) -> None:
        self.seen: list[dict] = []
        self.release = threading.Event()  # set at teardown: a stalled handler returns
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                outer.seen.append({"auth": self.headers.get("Authorization"),
                                   "body": self.rfile.read(length)})
                reply(self, outer)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1/chat/completions"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(handler, text: str, status: int = 200) -> None:
    payload = json.dumps({"choices": [{"message": {"content": text}}]}).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


@pytest.fixture()
def servers():
    made: list[Server] = []
    yield lambda reply: made.append(Server(reply)) or made[-1]
    for server in made:
        server.close()


def test_plain_http_needs_the_local_opt_in_and_a_loopback_host():
    with pytest.raises(ValueError, match=r"plain http would send the API key unencrypted.*"
                                         r"allow_insecure_local"):
        MTBenchWriter(judge_url="http://127.0.0.1:8000/v1/chat/completions")
    with pytest.raises(ValueError, match="only permits http to this machine"):
        check_judge_url("http://judge.example.com/v1", allow_insecure_local=True)
    with pytest.raises(ValueError, match="expected an https"):
        check_judge_url("ftp://judge.example.com/v1")
    assert check_judge_url("https://judge.example.com/v1") == "https://judge.example.com/v1"
    assert check_judge_url("http://localhost:1/v1", allow_insecure_local=True)


def test_a_redirect_to_another_host_never_receives_the_key(servers):
    other = servers(lambda h, s: answer(h, "stolen"))
    target = other.url.replace("127.0.0.1", "localhost")

    def redirect(handler, server):
        handler.send_response(307)
        handler.send_header("Location", target)
        handler.end_headers()

    first = servers(redirect)
    client = JudgeClient(first.url, SECRET, timeout=10, max_retries=2, retry_wait=0,
                         allow_insecure_local=True)
    with pytest.raises(JudgeError, match="redirects are not followed") as error:
        client.complete("gpt-4", "hi")
    assert SECRET not in str(error.value)
    assert len(first.seen) == 1 and first.seen[0]["auth"] == f"Bearer {SECRET}"
    assert other.seen == []  # not retried, not followed


def test_a_stalled_judge_hits_the_deadline_and_retries_are_bounded(servers):
    def stall(handler, server):
        server.release.wait(60)  # never answers within the test

    server = servers(stall)
    client = JudgeClient(server.url, None, timeout=0.3, max_retries=2, retry_wait=0,
                         allow_insecure_local=True)
    with pytest.raises(JudgeError, match=r"after 3 attempts: no complete answer within the "
                                         r"0.3 s deadline"):
        client.complete("gpt-4", "hi")
    assert len(server.seen) == 3


def test_transient_errors_are_retried_then_succeed(servers):
    def flaky(handler, server):
        if len(server.seen) <= 2:
            answer(handler, "busy", status=503)
        else:
            answer(handler, "Score 8/10 and 3/10")

    server = servers(flaky)
    client = JudgeClient(server.url, None, timeout=10, max_retries=2, retry_wait=0,
                         allow_insecure_local=True)
    assert client.complete("gpt-4", "hi") == "Score 8/10 and 3/10"
    assert len(server.seen) == 3


def test_a_client_error_is_not_retried(servers):
    server = servers(lambda h, s: answer(h, "no", status=404))
    client = JudgeClient(server.url, None, timeout=10, max_retries=2, retry_wait=0,
                         allow_insecure_local=True)
    with pytest.raises(JudgeError, match="judge answered HTTP 404"):
        client.complete("gpt-4", "hi")
    assert len(server.seen) == 1


def test_the_key_is_never_written_to_files_or_logs(servers, tmp_path, monkeypatch, caplog,
                                                   capsys):
    def echo_key(handler, server):  # a hostile judge echoing the Authorization header back
        answer(handler, f"your key is {handler.headers['Authorization']}: 9/10 vs 2/10")

    server = servers(echo_key)
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    other = tmp_path / "baseline.jsonl"
    other.write_text("\n".join(json.dumps({"question_id": q, "answer": "x"}) for q in (81, 82)))
    caplog.set_level(logging.DEBUG)
    writer = MTBenchWriter(output_dir=str(tmp_path / "out"), compare_with=str(other),
                           judge_url=server.url, api_key_env="JUDGE_KEY", timeout=10,
                           retry_wait=0, allow_insecure_local=True)
    writer.write_on_epoch_end(FakeTrainer(), None, PREDICTIONS, [])
    assert server.seen[0]["auth"] == f"Bearer {SECRET}"  # the key was used ...
    written = [p.read_text() for p in Path(tmp_path / "out").iterdir()]
    assert written and all(SECRET not in text for text in written)  # ... and never written
    assert "[redacted]" in (tmp_path / "out" / "judge_reviews.jsonl").read_text()
    captured = capsys.readouterr()
    assert SECRET not in caplog.text + captured.out + captured.err
