"""Webhooks cannot reach internal addresses, are signed the Standard Webhooks way, and one slow
receiver is cut at a total deadline (webapp/accounts/webhooks.py). Real local HTTP servers,
real sockets; only the DNS answer is played (webhooks.resolve) to stage a rebinding."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from standardwebhooks import Webhook

from webapp.accounts import webhooks
from webapp.accounts.notifications import validate_webhook_url

INTERNAL = ["http://127.0.0.1:8000/hook", "http://localhost:6379/", "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/", "http://10.0.0.1/", "http://[fd00::1]/", "http://0.0.0.0:8103/",
            "http://192.168.1.10/", "http://172.16.0.1/", "http://100.64.0.1/", "http://[::1]/",
            "http://224.0.0.1/", "http://[::127.0.0.1]/", "http://240.0.0.1/", "http://[fe80::1]/"]


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_addresses_are_refused_at_save_time(url):
    with pytest.raises(ValidationError) as err:
        validate_webhook_url(url)
    assert "public internet" in " ".join(err.value.messages)


def test_public_and_unresolvable_names_are_accepted_at_save_time():
    assert validate_webhook_url("https://203.0.113.9.nip.invalid/h") == "https://203.0.113.9.nip.invalid/h"
    assert validate_webhook_url("http://8.8.8.8/hook") == "http://8.8.8.8/hook"


def test_the_allowlist_lets_internal_receivers_through(settings):
    settings.TRAINYARD_WEBHOOK_ALLOWLIST = "10.1.0.0/16, hooks.internal, 127.0.0.1"
    assert validate_webhook_url("http://10.1.2.3/h") == "http://10.1.2.3/h"
    assert validate_webhook_url("http://127.0.0.1:9/h") == "http://127.0.0.1:9/h"
    with pytest.raises(ValidationError):
        validate_webhook_url("http://10.2.0.1/h")


@pytest.mark.parametrize("text,why", [("127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
                                      ("169.254.169.254", "link-local"), ("::ffff:169.254.169.254", "link-local"),
                                      ("2002:7f00:1::", "6to4"), ("2002:a00:1::1", "6to4"),
                                      ("2002:808:808::1", None),
                                      ("8.8.8.8", None), ("2001:4860:4860::8888", None)])
def test_why_internal(text, why):
    reason = webhooks.why_internal(ipaddress.ip_address(text))
    assert (reason is None) if why is None else (why in reason)


class Receiver(BaseHTTPRequestHandler):
    posts: list = []
    status = 204

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.posts.append((dict(self.headers), body.decode()))
        self.send_response(Receiver.status)
        if Receiver.status == 302:
            self.send_header("Location", "http://169.254.169.254/")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.posts, Receiver.status = [], 204
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_rebinding_is_caught_at_connect_time(receiver, monkeypatch, settings):
    """The name resolved to a public address when it was saved; at delivery it resolves to the
    loopback receiver: nothing is sent."""
    port = receiver.rsplit(":", 1)[1]
    url = f"http://hooks.example.test:{port}/h"
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: [ipaddress.ip_address("93.184.216.34")])
    assert validate_webhook_url(url) == url
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    with pytest.raises(webhooks.WebhookRefused, match="loopback"):
        webhooks.deliver(url, "{}", {})
    assert Receiver.posts == []


def test_a_name_with_one_internal_address_among_public_ones_is_refused(monkeypatch):
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: [ipaddress.ip_address("93.184.216.34"),
                                                                 ipaddress.ip_address("10.0.0.5")])
    with pytest.raises(webhooks.WebhookRefused, match="private"):
        webhooks.vetted_address("https://hooks.example.test/h")


def test_allowlisted_delivery_is_signed_and_verifies(receiver, settings):
    settings.TRAINYARD_WEBHOOK_ALLOWLIST = "127.0.0.1"
    secret = webhooks.new_secret()
    body = json.dumps({"event": "job.succeeded"})
    assert webhooks.deliver(receiver + "/h", body, webhooks.signature_headers(secret, "msg_1", body)) == 204
    headers, got = Receiver.posts[0]
    assert got == body and headers["Host"] == receiver.split("//")[1]
    assert Webhook(secret).verify(got, headers) == {"event": "job.succeeded"}
    with pytest.raises(Exception):
        Webhook(webhooks.new_secret()).verify(got, headers)


def test_standard_webhooks_published_example():
    """The example of the Standard Webhooks specification's reference libraries."""
    when = datetime.fromtimestamp(1614265330, timezone.utc)
    h = webhooks.signature_headers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                   '{"test": 2432232314}', when)
    assert h == {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
                 "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}


def test_redirects_are_not_followed(receiver, settings):
    settings.TRAINYARD_WEBHOOK_ALLOWLIST = "127.0.0.1"
    Receiver.status = 302
    with pytest.raises(ValueError, match="redirect"):
        webhooks.deliver(receiver + "/h", "{}", {})
    assert len(Receiver.posts) == 1


def test_network_errors_say_nothing_about_the_network(settings):
    """A closed port and a silent one read the same: webhooks are no port scanner."""
    settings.TRAINYARD_WEBHOOK_ALLOWLIST = "127.0.0.1"
    settings.TRAINYARD_WEBHOOK_TIMEOUT = 1
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    messages = []
    for port in (closed_port, silent.getsockname()[1]):
        with pytest.raises(webhooks.WebhookError) as err:
            webhooks.deliver(f"http://127.0.0.1:{port}/h", "{}", {})
        messages.append(str(err.value))
    silent.close()
    assert messages == [webhooks.NO_ANSWER, webhooks.NO_ANSWER]


def test_a_trickling_receiver_is_cut_at_the_total_deadline(settings):
    """One byte every 0.5 s keeps every single read under its timeout; the total deadline ends it."""
    settings.TRAINYARD_WEBHOOK_ALLOWLIST = "127.0.0.1"
    settings.TRAINYARD_WEBHOOK_TIMEOUT = 2
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    done = threading.Event()

    def trickle():
        conn, _ = server.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            if done.wait(0.5):
                break
            try:
                conn.send(bytes([byte]))
            except OSError:
                break
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    with pytest.raises(webhooks.WebhookError):
        webhooks.deliver(f"http://127.0.0.1:{server.getsockname()[1]}/h", "{}", {})
    done.set()
    server.close()


def test_a_refused_name_does_not_disclose_its_internal_address(monkeypatch):
    """Naming the address would let a user read the internal DNS zone through the message."""
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: [ipaddress.ip_address("10.2.3.4")])
    with pytest.raises(ValidationError) as err:
        validate_webhook_url("https://vault.corp.test/h")
    text = " ".join(err.value.messages)
    assert "private" in text and "10.2.3.4" not in text


def test_resolving_counts_against_the_total_deadline(receiver, monkeypatch, settings):
    """A name whose DNS answer comes after the deadline is not delivered to, even though the
    answer (an allowed receiver) would be accepted."""
    settings.TRAINYARD_WEBHOOK_ALLOWLIST = "127.0.0.0/8"
    settings.TRAINYARD_WEBHOOK_TIMEOUT = 1
    answered = threading.Event()

    def slow_dns(host, port):
        time.sleep(2)
        answered.set()
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(webhooks, "resolve", slow_dns)
    port = receiver.rsplit(":", 1)[1]
    with pytest.raises(webhooks.WebhookError) as err:
        webhooks.deliver(f"http://slow-dns.example.test:{port}/h", "{}", {})
    assert str(err.value) == webhooks.NO_ANSWER
    answered.wait(5)  # the abandoned lookup finishes; still nothing was sent
    assert Receiver.posts == []


def test_the_answers_body_is_not_read(settings):
    """Only the status counts: a receiver streaming an endless body is not read into memory
    (the delivery returns as soon as the status line and headers are in)."""
    settings.TRAINYARD_WEBHOOK_ALLOWLIST = "127.0.0.1"
    settings.TRAINYARD_WEBHOOK_TIMEOUT = 2
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    done = threading.Event()

    def endless():
        conn, _ = server.accept()
        conn.recv(65536)
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
            while not done.wait(0.05):  # a body that never ends (well within memory here)
                conn.sendall(b"x" * 65536)
        except OSError:
            pass  # the sender closed the connection
        conn.close()

    threading.Thread(target=endless, daemon=True).start()
    assert webhooks.deliver(f"http://127.0.0.1:{server.getsockname()[1]}/h", "{}", {}) == 200
    done.set()
    server.close()
