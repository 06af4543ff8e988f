"""Deploy ids: minting from a time and a sha, and the id and sha patterns."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from artemis.deploy_ids import DEPLOY_ID_RE, SHA_RE, is_deploy_id, is_sha, mint_deploy_id


def test_mint_deploy_id_spec_example() -> None:
    now = datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)
    assert mint_deploy_id(now, "abc1234def5678") == "20260420-141522-abc1234"


@pytest.mark.parametrize(
    ("sha", "suffix"),
    [
        ("abc", "abc"),
        ("a", "a"),
        ("abc1234", "abc1234"),
        ("abc12345", "abc1234"),
        ("A-b-C-d-", "A-b-C-d"),
    ],
)
def test_mint_deploy_id_keeps_a_short_sha_whole(sha: str, suffix: str) -> None:
    now = datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)
    assert mint_deploy_id(now, sha) == f"20260420-141522-{suffix}"


def test_mint_deploy_id_converts_an_aware_time_to_utc() -> None:
    local = datetime(2026, 4, 20, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))
    assert mint_deploy_id(local, "abc1234") == "20260421-045959-abc1234"


def test_mint_deploy_id_takes_a_naive_time_as_utc() -> None:
    assert mint_deploy_id(datetime(2026, 1, 2, 3, 4, 5), "f00") == "20260102-030405-f00"


def test_mint_deploy_id_pads_small_years() -> None:
    assert mint_deploy_id(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "x") == "09990102-030405-x"


@pytest.mark.parametrize("sha", ["", "abc/def", "abc def", "abc.def", "a" * 65, "abc\n", "é"])
def test_mint_deploy_id_refuses_a_bad_sha(sha: str) -> None:
    with pytest.raises(ValueError, match="sha"):
        mint_deploy_id(datetime(2026, 4, 20, tzinfo=UTC), sha)


@given(
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30)),
    st.from_regex(SHA_RE, fullmatch=True),
)
def test_minted_ids_match_the_deploy_id_pattern(now: datetime, sha: str) -> None:
    minted = mint_deploy_id(now, sha)
    assert is_deploy_id(minted)
    assert minted.endswith("-" + sha[:7])
    assert "/" not in minted


@given(
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30)),
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30)),
)
def test_minted_ids_sort_in_time_order(a: datetime, b: datetime) -> None:
    a, b = a.replace(microsecond=0), b.replace(microsecond=0)
    assume(a != b)
    first, second = sorted([a, b])
    assert mint_deploy_id(first, "abc1234") < mint_deploy_id(second, "abc1234")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("20260420-141522-abc1234", True),
        ("20260420-141522-a", True),
        ("20260420-141522-" + "a" * 64, True),
        ("20260420-141522-" + "a" * 65, False),
        ("20260420-141522-", False),
        ("20260420-141522-abc/123", False),
        ("20260420-141522-abc_123", False),
        ("2026042-141522-abc1234", False),
        ("20260420-14152-abc1234", False),
        ("20260420141522-abc1234", False),
        ("20260420-141522-abc1234\n", False),
        ("\uff12" * 8 + "-141522-abc1234", False),  # full-width digits are not \d here
        ("", False),
        ("../20260420-141522-abc1234", False),
    ],
)
def test_deploy_id_pattern(value: str, ok: bool) -> None:
    assert is_deploy_id(value) is ok
    assert (DEPLOY_ID_RE.match(value) is not None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc1234", True),
        ("a", True),
        ("A-Z-0-9", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("abc/1", False),
        ("abc.1", False),
        ("abc_1", False),
        ("abc 1", False),
        ("abc\n", False),
        ("é", False),
    ],
)
def test_sha_pattern(value: str, ok: bool) -> None:
    assert is_sha(value) is ok
    assert (SHA_RE.match(value) is not None) is ok
