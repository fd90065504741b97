"""The MT-Bench judge's HTTP client (appendix D): a paid API key and a remote endpoint.

What it guarantees:

* the key is sent only to the configured host: a redirect is never followed (urllib would
  otherwise re-send the request, headers included, wherever ``Location`` points), and
  environment proxies are bypassed for a local endpoint;
* ``https`` is required; plain ``http`` only with ``allow_insecure_local=True`` *and* a
  loopback host (``localhost``, ``127.0.0.0/8``, ``::1``), e.g. a judge served on the machine;
* every attempt ends within ``timeout`` seconds of wall clock, whatever the server does (a
  server that trickles bytes cannot hold it longer: the attempt runs in a worker thread that is
  abandoned at the deadline), and at most ``max_retries`` further attempts follow, only for
  transient failures (connection errors, timeouts, HTTP 429 and 5xx);
* the key never reaches a file or a log: it is redacted from anything the judge sends back
  and from every error text before the caller records it.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

REDACTED = "[redacted]"


class JudgeError(RuntimeError):
    """A judge request that failed (the message never contains the API key)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        raise JudgeError(
            f"the judge answered HTTP {code} redirecting to {urllib.parse.urlsplit(newurl).netloc}"
            f"{urllib.parse.urlsplit(newurl).path}; redirects are not followed, so the API key "
            "only ever goes to the configured host (set judge_url to the final address)"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_judge_url(url: str, allow_insecure_local: bool = False) -> str:
    """Validate ``judge_url`` (see the module docstring); returns it unchanged."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host:
        if allow_insecure_local and _is_loopback(host):
            return url
        if allow_insecure_local:
            raise ValueError(
                f"judge_url {url!r}: allow_insecure_local only permits http to this machine "
                "(localhost, 127.0.0.1, ::1); a remote judge must use https"
            )
        raise ValueError(
            f"judge_url {url!r}: plain http would send the API key unencrypted; use https, or "
            "for a judge served on this machine set allow_insecure_local: true"
        )
    raise ValueError(f"judge_url {url!r}: expected an https:// (or local http://) URL")


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced."""
    return text.replace(secret, REDACTED) if secret else text


class JudgeClient:
    """POSTs chat-completion requests to one endpoint (see the module docstring).

    Args:
        url: the endpoint (checked by :func:`check_judge_url`).
        api_key: sent as ``Authorization: Bearer``; None sends no key.
        timeout: wall-clock seconds for one attempt, connection and reading included.
        max_retries: further attempts after a transient failure.
        retry_wait: seconds before the first retry (doubled for each further one).
        allow_insecure_local: allow ``http`` to a loopback host.
    """

    def __init__(self, url: str, api_key: str | None, timeout: float = 120.0,
                 max_retries: int = 2, retry_wait: float = 2.0,
                 allow_insecure_local: bool = False) -> None:
        if timeout <= 0 or max_retries < 0 or retry_wait < 0:
            raise ValueError("judge timeout must be > 0, max_retries and retry_wait >= 0")
        self.url = check_judge_url(url, allow_insecure_local)
        self.api_key, self.timeout = api_key, timeout
        self.max_retries, self.retry_wait = max_retries, retry_wait
        handlers: list[Any] = [_NoRedirect()]
        if _is_loopback(urllib.parse.urlsplit(url).hostname or ""):
            handlers.append(urllib.request.ProxyHandler({}))  # local means local
        self._opener = urllib.request.build_opener(*handlers)

    def complete(self, model: str, prompt: str) -> str:
        """The judge's reply to one user message (key redacted); raises :class:`JudgeError`."""
        body = json.dumps({"model": model, "temperature": 0,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        wait = self.retry_wait
        for attempt in range(self.max_retries + 1):
            try:
                reply = self._attempt(body)
                return redact(str(reply["choices"][0]["message"]["content"]), self.api_key)
            except _Transient as error:
                if attempt == self.max_retries:
                    raise JudgeError(
                        f"judge failed after {attempt + 1} attempts: "
                        f"{redact(str(error), self.api_key)}") from None
                time.sleep(wait)
                wait *= 2
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise JudgeError(f"unexpected judge reply ({type(error).__name__}: "
                                 f"{redact(str(error), self.api_key)[:200]})") from None
        raise AssertionError("unreachable")

    def _attempt(self, body: bytes) -> Any:
        """One request under the wall-clock deadline."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    outcome["reply"] = json.loads(response.read())
            except BaseException as error:  # noqa: BLE001  (handed to the caller's thread)
                outcome["error"] = error

        worker = threading.Thread(target=run, name="judge-request", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():  # abandoned; its socket timeout ends it later
            raise _Transient(f"no complete answer within the {self.timeout:g} s deadline")
        error = outcome.get("error")
        if error is None:
            return outcome["reply"]
        if isinstance(error, JudgeError):
            raise error
        if isinstance(error, urllib.error.HTTPError):
            if error.code == 429 or error.code >= 500:
                raise _Transient(f"HTTP {error.code} {error.reason}")
            raise JudgeError(f"judge answered HTTP {error.code} {error.reason}")
        if isinstance(error, urllib.error.URLError | TimeoutError | ConnectionError | OSError):
            raise _Transient(f"{type(error).__name__}: {error}")
        raise error


class _Transient(Exception):
    """A failure worth retrying."""
