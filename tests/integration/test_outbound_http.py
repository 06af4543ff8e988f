"""artemis.outbound.post against real HTTP(S) servers on 127.0.0.1: the body and Host header
arrive as sent, to the address the check saw; a redirect is not followed; a long answer is cut;
every wait is bounded; a name that resolves privately at send time is refused then."""

import contextlib
import datetime
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from artemis.outbound import MAX_RESPONSE_BYTES, USER_AGENT, check_url, post

HUGE = 10 * 1024 * 1024


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: records each request, then answers as `mode` says."""

    mode: str = "ok"
    location: str = ""
    seen: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def url(self, host: str = "127.0.0.1", scheme: str = "http", path: str = "/hook") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


def handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.seen.append(Seen(self.path, dict(self.headers.items()), body))
            with contextlib.suppress(OSError):  # the sender hung up: it was told to
                self.answer()

        def answer(self) -> None:
            mode = receiver.mode
            if mode == "silent":
                receiver.release.wait(30)
                return
            if mode == "trickle-headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                while not receiver.release.wait(0.2):
                    self.wfile.write(b"X")
                    self.wfile.flush()
                return
            if mode == "trickle-body":
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                while not receiver.release.wait(0.2):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                return
            if mode == "bad-headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Token: hunter2\r\nnot a header hunter2\r\n"
                                 b"Content-Length: 2\r\n\r\nok")  # fmt: skip
                return
            if mode == "huge":
                self.send_response(200)
                self.send_header("Content-Length", str(HUGE))
                self.end_headers()
                chunk = b"x" * 65536
                for _ in range(HUGE // len(chunk)):
                    self.wfile.write(chunk)
                return
            status, extra = {
                "ok": (200, {}),
                "error": (500, {}),
                "redirect": (302, {"Location": receiver.location}),
            }[mode]
            reply = b"thanks" if mode == "ok" else b"no"
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    return Handler


@pytest.fixture
def start() -> Iterator[Callable[..., Receiver]]:
    """`start(mode=..., tls=None)`: a running receiver, stopped when the test ends."""
    running: list[tuple[Receiver, threading.Thread]] = []

    def make(mode: str = "ok", tls: ssl.SSLContext | None = None) -> Receiver:
        receiver = Receiver(mode)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(receiver))
        server.daemon_threads = True
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: receiver.sni.append(name)
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        receiver.server = server
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        running.append((receiver, thread))
        return receiver

    yield make
    for receiver, thread in running:
        receiver.release.set()
        assert receiver.server is not None
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(5)


def resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """DNS for the tests: the names in `table`; any other name does not resolve."""

    def resolve(host: str, port: int) -> list[str]:
        if host[0].isdigit():
            return [host]  # an IPv4 literal
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    return resolve


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- plain answers ----------------------------------------------------------------------------


def test_a_delivery_arrives_with_its_exact_body_and_headers(start: Callable[..., Receiver]) -> None:
    receiver = start("ok")
    body = b'{"event":"deploy.published","n":1}\x00\xff'
    delivery = post(
        receiver.url(path="/hook?x=1"), body,
        {"Content-Type": "application/json", "X-Artemis-Signature": "t=1,v1=ab",
         "Host": "evil.example", "User-Agent": "spoofed"},
        allow_loopback_http=True,
    )  # fmt: skip
    assert (delivery.status, delivery.error, delivery.ok) == (200, None, True)
    assert delivery.response_excerpt == b"thanks"
    assert delivery.duration_ms >= 0
    [seen] = receiver.seen
    assert seen.body == body
    assert seen.path == "/hook?x=1"
    assert seen.headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert seen.headers["User-Agent"] == USER_AGENT
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Artemis-Signature"] == "t=1,v1=ab"
    assert seen.headers["Content-Length"] == str(len(body))


def test_a_server_error_is_a_status_and_not_ok(start: Callable[..., Receiver]) -> None:
    receiver = start("error")
    delivery = post(receiver.url(), b"{}", {}, allow_loopback_http=True)
    assert (delivery.status, delivery.error, delivery.ok) == (500, None, False)
    assert delivery.response_excerpt == b"no"
    assert len(receiver.seen) == 1


@pytest.mark.parametrize("mode", ["ok", "error"])
def test_nothing_is_retried(start: Callable[..., Receiver], mode: str) -> None:
    receiver = start(mode)
    post(receiver.url(), b"{}", {}, allow_loopback_http=True)
    assert len(receiver.seen) == 1


def test_a_redirect_is_a_status_and_never_followed(start: Callable[..., Receiver]) -> None:
    elsewhere = start("ok")
    receiver = start("redirect")
    receiver.location = elsewhere.url()
    delivery = post(receiver.url(), b"{}", {}, allow_loopback_http=True)
    assert (delivery.status, delivery.error, delivery.ok) == (302, None, False)
    assert len(receiver.seen) == 1
    assert elsewhere.seen == []


# --- bounds -----------------------------------------------------------------------------------


def test_a_huge_answer_is_cut_at_the_limit_and_post_returns_promptly(
    start: Callable[..., Receiver],
) -> None:
    receiver = start("huge")
    began = time.monotonic()
    delivery = post(receiver.url(), b"{}", {}, allow_loopback_http=True, timeout=5.0)
    assert time.monotonic() - began < 3
    assert delivery.status == 200
    assert len(delivery.response_excerpt) == MAX_RESPONSE_BYTES


def test_the_response_limit_is_the_callers(start: Callable[..., Receiver]) -> None:
    receiver = start("huge")
    delivery = post(receiver.url(), b"{}", {}, allow_loopback_http=True, max_response_bytes=10)
    assert delivery.response_excerpt == b"x" * 10


@pytest.mark.parametrize("mode", ["silent", "trickle-headers"])
def test_a_server_that_never_answers_times_out(start: Callable[..., Receiver], mode: str) -> None:
    receiver = start(mode)
    began = time.monotonic()
    delivery = post(receiver.url(), b"{}", {}, allow_loopback_http=True, timeout=1.0)
    elapsed = time.monotonic() - began
    assert (delivery.status, delivery.error) == (None, "timeout")
    assert 0.9 < elapsed < 3
    assert len(receiver.seen) == 1


def test_a_trickled_body_is_cut_at_the_deadline_and_the_answer_kept(
    start: Callable[..., Receiver],
) -> None:
    receiver = start("trickle-body")
    began = time.monotonic()
    delivery = post(receiver.url(), b"{}", {}, allow_loopback_http=True, timeout=1.0)
    assert time.monotonic() - began < 3
    assert (delivery.status, delivery.error, delivery.ok) == (200, None, True)
    assert 0 < len(delivery.response_excerpt) < 20


def test_what_the_receiver_sends_is_never_logged(
    start: Callable[..., Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = start("bad-headers")
    delivery = post(receiver.url(), b"{}", {}, allow_loopback_http=True)
    assert delivery.status == 200
    assert "hunter2" not in caplog.text


def test_a_closed_port_is_connect_failed() -> None:
    delivery = post(f"http://127.0.0.1:{closed_port()}/", b"{}", {}, allow_loopback_http=True)
    assert (delivery.status, delivery.error, delivery.ok) == (None, "connect_failed", False)
    assert delivery.response_excerpt == b""


# --- the check at send time and the pinned address ------------------------------------------


def test_a_name_rebound_to_a_private_address_is_refused_at_send_time(
    start: Callable[..., Receiver],
) -> None:
    receiver = start("ok")
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    url = receiver.url(host="hooks.test", scheme="https")
    assert check_url(url, allow_loopback_http=False, resolve=rebinding).addresses == (
        "93.184.216.34",
    )  # accepted when the subscription is made
    delivery = post(url, b"{}", {}, allow_loopback_http=False, resolve=rebinding)
    assert delivery.status is None
    assert delivery.error is not None and delivery.error.startswith("refused:")
    assert delivery.error == "refused:hook_url_forbidden_address"
    assert receiver.seen == []


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://hooks.test/", "refused:hook_url_scheme"),
        ("http://hooks.test/", "refused:hook_url_scheme"),
        ("https://user@hooks.test/", "refused:hook_url_invalid"),
        ("https://nowhere.invalid/", "refused:hook_url_unresolvable"),
        ("https://169.254.169.254/", "refused:hook_url_forbidden_address"),
    ],
)
def test_a_refused_url_is_a_delivery_error_not_an_exception(url: str, error: str) -> None:
    table = {"hooks.test": ["93.184.216.34"]}
    delivery = post(url, b"{}", {}, allow_loopback_http=False, resolve=resolver(table))
    assert (delivery.status, delivery.error, delivery.response_excerpt) == (None, error, b"")


def test_the_checked_address_is_the_one_connected_to(start: Callable[..., Receiver]) -> None:
    receiver = start("ok")
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return {"hooks.test": ["127.0.0.1"]}[host]

    delivery = post(receiver.url(host="hooks.test"), b"ping", {}, allow_loopback_http=True,
                    resolve=resolve)  # fmt: skip
    assert delivery.status == 200
    assert calls == ["hooks.test"]  # one resolution: no second look-up when connecting
    [seen] = receiver.seen
    assert seen.headers["Host"] == f"hooks.test:{receiver.port}"
    assert seen.body == b"ping"


# --- TLS: the name is sent and verified while the pinned address is dialled -----------------


@dataclass(frozen=True)
class Pki:
    trust: ssl.SSLContext  # a client context trusting only the test CA
    server: Callable[[], ssl.SSLContext]  # a new server context with the hooks.test certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "artemis test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    folder: Path = tmp_path_factory.mktemp("pki")
    cert_file, key_file = folder / "leaf.pem", folder / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                         serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip

    def server() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        return ctx

    trust = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return Pki(trust, server)


LOCAL = resolver({"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})


def test_tls_sends_the_name_and_verifies_the_certificate_against_it(
    start: Callable[..., Receiver], pki: Pki
) -> None:
    receiver = start("ok", tls=pki.server())
    delivery = post(receiver.url(host="hooks.test", scheme="https"), b"secure", {},
                    allow_loopback_http=True, resolve=LOCAL, tls_context=pki.trust)  # fmt: skip
    assert (delivery.status, delivery.error) == (200, None)
    assert receiver.sni == ["hooks.test"]
    [seen] = receiver.seen
    assert seen.headers["Host"] == f"hooks.test:{receiver.port}"
    assert seen.body == b"secure"


def test_a_certificate_for_another_name_is_tls_failed(
    start: Callable[..., Receiver], pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = start("ok", tls=pki.server())
    delivery = post(receiver.url(host="other.test", scheme="https"), b"{}", {},
                    allow_loopback_http=True, resolve=LOCAL, tls_context=pki.trust)  # fmt: skip
    assert (delivery.status, delivery.error) == (None, "tls_failed")
    assert receiver.seen == []
    assert "hooks.test" not in caplog.text  # the receiver's certificate is not logged


def test_a_certificate_from_an_untrusted_issuer_is_tls_failed(
    start: Callable[..., Receiver], pki: Pki
) -> None:
    receiver = start("ok", tls=pki.server())
    delivery = post(receiver.url(host="hooks.test", scheme="https"), b"{}", {},
                    allow_loopback_http=True, resolve=LOCAL)  # fmt: skip
    assert (delivery.status, delivery.error) == (None, "tls_failed")
    assert receiver.seen == []
