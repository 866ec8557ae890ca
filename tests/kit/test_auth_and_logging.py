"""Internal credentials and log masking."""

import logging

import pytest

from kit.auth import TOKEN_LIFETIME_SECONDS, mint_internal_token, verify_internal_token
from kit.errors import Unauthorized
from kit.logging import MaskingFilter, mask_identifiers


def test_a_minted_token_names_its_client_and_scopes() -> None:
    caller = verify_internal_token("s3cret", mint_internal_token("s3cret", "his-dev", {"billing:read"}))
    assert caller.subject == "his-dev" and caller.scopes == {"billing:read"}


@pytest.mark.parametrize(
    "token",
    [
        mint_internal_token("another-secret", "his-dev", set()),  # signed with the wrong secret
        mint_internal_token("s3cret", "his-dev", set(), now=0),  # long expired
        "pf1.e30.AAAA",
        "not-a-token",
    ],
)
def test_forged_expired_or_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        verify_internal_token("s3cret", token)


def test_tokens_expire_after_their_lifetime() -> None:
    token = mint_internal_token("s3cret", "x", set(), now=1_000_000)
    verify_internal_token("s3cret", token, now=1_000_000 + TOKEN_LIFETIME_SECONDS - 1)
    with pytest.raises(Unauthorized):
        verify_internal_token("s3cret", token, now=1_000_000 + TOKEN_LIFETIME_SECONDS + 1)


def test_identity_and_phone_numbers_are_masked() -> None:
    text = "patient 11010519491231002X phone 13800138000 visit 42"
    assert mask_identifiers(text) == "patient 110105********002X phone 138****8000 visit 42"


def test_log_records_are_masked_before_formatting() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "lookup %s", ("440524188001010014",), None)
    MaskingFilter().filter(record)
    assert record.getMessage() == "lookup 440524********0014"
