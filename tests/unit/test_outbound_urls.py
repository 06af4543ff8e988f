"""artemis.outbound.check_url: which webhook URLs the sender refuses, and why. A dict-backed
resolver stands in for DNS; the literal-IP forms go through the real resolver."""

import socket

import pytest

from artemis.outbound import CheckedUrl, OutboundRefused, check_url, default_resolve

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"

NAMES: dict[str, list[str]] = {
    "hooks.example.com": [PUBLIC_V4],
    "dual.example.com": [PUBLIC_V4, PUBLIC_V6],
    "v6only.example.com": [PUBLIC_V6],
    "mixed.example.com": [PUBLIC_V4, "10.1.2.3"],
    "mixed-v6.example.com": [PUBLIC_V6, "fd00:ec2::254"],
    "metadata.example.com": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
    "loopback-and-private.test": ["127.0.0.1", "192.168.1.1"],
    "garbage.example.com": ["not-an-address"],
    "empty.example.com": [],
    "xn--bcher-kva.example": [PUBLIC_V4],  # bücher.example
}


def fake_resolve(host: str, port: int) -> list[str]:
    """DNS for the tests: the names above; an IP literal resolves to itself."""
    if host in NAMES:
        return list(NAMES[host])
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
    return [host]


def refusal(url: str, *, allow_loopback_http: bool = False) -> str:
    with pytest.raises(OutboundRefused) as caught:
        check_url(url, allow_loopback_http=allow_loopback_http, resolve=fake_resolve)
    return caught.value.code


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://hooks.example.com/",
            CheckedUrl("https", "hooks.example.com", 443, "/", (PUBLIC_V4,)),
        ),
        (
            "https://hooks.example.com",
            CheckedUrl("https", "hooks.example.com", 443, "/", (PUBLIC_V4,)),
        ),
        (
            "HTTPS://Hooks.Example.COM:8443/a/b?x=1&y=2",
            CheckedUrl("https", "hooks.example.com", 8443, "/a/b?x=1&y=2", (PUBLIC_V4,)),
        ),
        (
            "https://dual.example.com/h",
            CheckedUrl("https", "dual.example.com", 443, "/h", (PUBLIC_V4, PUBLIC_V6)),
        ),
        (
            "https://v6only.example.com/",
            CheckedUrl("https", "v6only.example.com", 443, "/", (PUBLIC_V6,)),
        ),
        (f"https://{PUBLIC_V4}/", CheckedUrl("https", PUBLIC_V4, 443, "/", (PUBLIC_V4,))),
        (f"https://[{PUBLIC_V6}]:444/", CheckedUrl("https", PUBLIC_V6, 444, "/", (PUBLIC_V6,))),
        (
            "https://bücher.example/hook",
            CheckedUrl("https", "xn--bcher-kva.example", 443, "/hook", (PUBLIC_V4,)),
        ),
        (
            "https://hooks.example.com/caf\u00e9",
            CheckedUrl("https", "hooks.example.com", 443, "/caf%C3%A9", (PUBLIC_V4,)),
        ),
        (
            "https://[2002:808:808::1]/",
            CheckedUrl("https", "2002:808:808::1", 443, "/", ("2002:808:808::1",)),
        ),
        (
            "https://[64:ff9b::808:808]/",
            CheckedUrl("https", "64:ff9b::808:808", 443, "/", ("64:ff9b::808:808",)),
        ),
    ],
)
def test_a_public_https_url_is_accepted_and_normalised(url: str, expected: CheckedUrl) -> None:
    assert check_url(url, allow_loopback_http=False, resolve=fake_resolve) == expected


@pytest.mark.parametrize(
    ("checked", "host_header"),
    [
        (CheckedUrl("https", "hooks.example.com", 443, "/", (PUBLIC_V4,)), "hooks.example.com"),
        (
            CheckedUrl("https", "hooks.example.com", 8443, "/", (PUBLIC_V4,)),
            "hooks.example.com:8443",
        ),
        (CheckedUrl("http", "localhost", 80, "/", ("127.0.0.1",)), "localhost"),
        (CheckedUrl("http", "localhost", 443, "/", ("127.0.0.1",)), "localhost:443"),
        (CheckedUrl("https", PUBLIC_V6, 443, "/", (PUBLIC_V6,)), f"[{PUBLIC_V6}]"),
        (CheckedUrl("https", PUBLIC_V6, 444, "/", (PUBLIC_V6,)), f"[{PUBLIC_V6}]:444"),
    ],
)
def test_the_host_header_carries_the_port_only_when_not_the_default(
    checked: CheckedUrl, host_header: str
) -> None:
    assert checked.host_header == host_header


# --- hook_url_invalid -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://",
        "https:///path",
        "https://:443/",
        "https://user:pass@hooks.example.com/",
        "https://user@hooks.example.com/",
        "https://@hooks.example.com/",
        "https://hooks.example.com@10.0.0.1/",
        "https://hooks.example.com/#frag",
        "https://hooks.example.com/#",
        "https://hooks.example.com/" + "a" * 2048,
        "https://hooks.example.com/a b",
        "https://hooks.example.com/\t",
        "https://hooks.example.com/a\nb",
        "https://hooks.example.com/a\rb",
        "https://hooks.example.com/\x00",
        "https://hooks.example.com/\x7f",
        "https://hooks.example.com/\u0085",
        "https://hooks.example.com/\u00a0",
        " https://hooks.example.com/",
        "https://hooks.example.com:65536/",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com:0/",
        "https://hooks.example.com:-1/",
        "https://hooks.example.com:port/",
        "https://[::1/",
        "https://[not-v6]/",
        "https://[fe80::1%25eth0]/",
        "https://hooks%2eexample.com/",
        "https://hooks_example.com\\@evil/",
        "https://a..example.com/",
        "https://" + "a" * 64 + ".example.com/",
        "https://" + ".".join(["a" * 60] * 5) + "/",
        "https://\u2488.example/",  # ⒈ — no IDNA encoding
        "https://.\u00e9/",
    ],
)
def test_a_malformed_url_is_hook_url_invalid(url: str) -> None:
    assert refusal(url) == "hook_url_invalid"


def test_a_url_at_the_length_limit_is_accepted_and_one_over_is_invalid() -> None:
    base = "https://hooks.example.com/"
    at_limit = base + "a" * (2048 - len(base))
    assert check_url(at_limit, allow_loopback_http=False, resolve=fake_resolve).port == 443
    assert refusal(at_limit + "a") == "hook_url_invalid"


# --- hook_url_scheme --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allow_loopback_http"),
    [
        ("ftp://hooks.example.com/", False),
        ("file:///etc/passwd", False),
        ("gopher://hooks.example.com/", False),
        ("javascript:alert(1)", False),
        ("hooks.example.com/path", False),
        ("//hooks.example.com/path", False),
        ("ws://hooks.example.com/", False),
        ("http://hooks.example.com/", False),
        ("http://hooks.example.com/", True),  # http to a public host: never
        ("http://localhost/", False),
        ("http://127.0.0.1:8080/", False),
        ("HTTP://localhost/", False),
    ],
)
def test_anything_but_https_is_hook_url_scheme(url: str, allow_loopback_http: bool) -> None:
    assert refusal(url, allow_loopback_http=allow_loopback_http) == "hook_url_scheme"


# --- hook_url_unresolvable --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://nowhere.invalid/", "https://empty.example.com/", "https://no-such-name.test/h"],
)
def test_a_host_that_does_not_resolve_is_hook_url_unresolvable(url: str) -> None:
    assert refusal(url) == "hook_url_unresolvable"


# --- hook_url_forbidden_address ---------------------------------------------------------------

FORBIDDEN = [
    # private IPv4
    "https://10.0.0.1/",
    "https://10.255.255.255/",
    "https://172.16.0.1/",
    "https://172.31.255.254/",
    "https://192.168.0.1/",
    # loopback, unspecified, this-network
    "https://127.0.0.1/",
    "https://127.1.2.3/",
    "https://0.0.0.0/",
    "https://0.1.2.3/",
    "https://[::1]/",
    "https://[::]/",
    # link-local, the metadata services
    "https://169.254.169.254/latest/meta-data/",
    "https://169.254.0.1/",
    "https://[fe80::1]/",
    "https://[fd00:ec2::254]/",
    "https://metadata.example.com/",
    # unique-local, site-local
    "https://[fc00::1]/",
    "https://[fdff::1]/",
    "https://[fec0::1]/",
    # shared address space (CGNAT), benchmarking, documentation, reserved, multicast, broadcast
    "https://100.64.0.1/",
    "https://100.127.255.254/",
    "https://198.18.0.1/",
    "https://192.0.2.1/",
    "https://203.0.113.1/",
    "https://[2001:db8::1]/",
    "https://240.0.0.1/",
    "https://255.255.255.255/",
    "https://224.0.0.1/",
    "https://239.255.255.250/",
    "https://[ff02::1]/",
    "https://[ff0e::1]/",
    # IPv6 forms embedding a forbidden IPv4 address
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[::ffff:a9fe:a9fe]/",
    "https://[::ffff:169.254.169.254]/",
    "https://[::ffff:10.0.0.1]/",
    "https://[64:ff9b::a9fe:a9fe]/",
    "https://[64:ff9b::7f00:1]/",
    "https://[64:ff9b::a00:1]/",
    "https://[64:ff9b:1::a9fe:a9fe]/",
    "https://[2002:a9fe:a9fe::1]/",
    "https://[2002:7f00:1::1]/",
    "https://[2002:a00:1::]/",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "https://[::a9fe:a9fe]/",  # IPv4-compatible (deprecated)
    "https://[::127.0.0.1]/",
    # one private answer among public ones refuses the name
    "https://mixed.example.com/",
    "https://mixed-v6.example.com/",
    "https://garbage.example.com/",
]


@pytest.mark.parametrize("url", FORBIDDEN)
def test_a_non_public_address_is_hook_url_forbidden_address(url: str) -> None:
    assert refusal(url) == "hook_url_forbidden_address"


@pytest.mark.parametrize(
    "url",
    [
        u
        for u in FORBIDDEN
        if u not in {"https://127.0.0.1/", "https://127.1.2.3/", "https://[::1]/"}
    ],
)
def test_allowing_loopback_admits_no_other_non_public_address(url: str) -> None:
    assert refusal(url, allow_loopback_http=True) == "hook_url_forbidden_address"


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/", "http://169.254.169.254/", "http://loopback-and-private.test/",
     "http://[::ffff:127.0.0.1]/"],
)  # fmt: skip
def test_http_to_a_non_loopback_private_address_is_forbidden_even_when_loopback_is_allowed(
    url: str,
) -> None:
    assert refusal(url, allow_loopback_http=True) == "hook_url_forbidden_address"


# --- the local dev stack's loopback allowance -------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://localhost/", CheckedUrl("http", "localhost", 80, "/", ("127.0.0.1", "::1"))),
        (
            "http://localhost:9000/h",
            CheckedUrl("http", "localhost", 9000, "/h", ("127.0.0.1", "::1")),
        ),
        ("http://127.0.0.1:8080/", CheckedUrl("http", "127.0.0.1", 8080, "/", ("127.0.0.1",))),
        ("http://[::1]:8080/", CheckedUrl("http", "::1", 8080, "/", ("::1",))),
        ("https://127.0.0.1/", CheckedUrl("https", "127.0.0.1", 443, "/", ("127.0.0.1",))),
        ("https://localhost/", CheckedUrl("https", "localhost", 443, "/", ("127.0.0.1", "::1"))),
    ],
)
def test_loopback_is_accepted_when_allowed(url: str, expected: CheckedUrl) -> None:
    assert check_url(url, allow_loopback_http=True, resolve=fake_resolve) == expected


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://localhost/", "hook_url_scheme"),
        ("https://localhost/", "hook_url_forbidden_address"),
        ("https://127.0.0.1/", "hook_url_forbidden_address"),
    ],
)
def test_loopback_is_refused_when_not_allowed(url: str, code: str) -> None:
    assert refusal(url, allow_loopback_http=False) == code


# --- literal forms, through the real resolver -------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://2130706433/",  # 127.0.0.1 in decimal
        "https://0x7f.1/",
        "https://0x7f000001/",
        "https://017700000001/",  # octal
        "https://0177.0.0.1/",
        "https://127.1/",
        "https://0/",
        "https://2852039166/",  # 169.254.169.254 in decimal
        "https://0xa9fea9fe/",
        "https://0xa9.0xfe.0xa9.0xfe/",
        "https://0251.0376.0251.0376/",
        "https://167772161/",  # 10.0.0.1
        "https://[::ffff:169.254.169.254]/",
        "https://[::ffff:a9fe:a9fe]/",
    ],
)
def test_a_literal_ip_in_any_form_is_judged_by_the_address_it_resolves_to(url: str) -> None:
    with pytest.raises(OutboundRefused) as caught:
        check_url(url, allow_loopback_http=False)
    assert caught.value.code == "hook_url_forbidden_address"


@pytest.mark.parametrize(
    ("host", "address"), [("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1")]
)
def test_the_default_resolver_turns_numeric_forms_into_addresses(host: str, address: str) -> None:
    assert default_resolve(host, 443) == [address]


def test_the_default_resolver_reports_a_name_that_does_not_resolve() -> None:
    with pytest.raises(socket.gaierror):
        default_resolve("no-such-host.invalid", 443)
