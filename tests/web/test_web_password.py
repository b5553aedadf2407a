"""bcrypt compatibility with Ofelia's ``web-password-hash``, ``ofelia hash-password``, the web settings."""

from __future__ import annotations

import subprocess
import sys

import bcrypt
import pytest
from click.testing import CliRunner

from ofelia_core.cli import cli
from ofelia_core.errors import OfeliaError
from ofelia_core.web.password import check_hash, hash_password, verify_password
from ofelia_core.web.settings import WebSettings, parse_address

#: The known vector of Go's golang.org/x/crypto/bcrypt test suite (TestBcryptingIsCorrect):
#: a $2a$ hash made by Go for the password "allmine".
GO_HASH = "$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga"


def test_a_go_generated_2a_hash_verifies() -> None:
    check_hash(GO_HASH)
    assert verify_password("allmine", GO_HASH)
    assert not verify_password("allmine!", GO_HASH)
    assert not verify_password("", GO_HASH)


@pytest.mark.parametrize("prefix", ["2a", "2b", "2y"])
def test_each_prefix_of_the_same_hash_verifies(prefix: str) -> None:
    variant = f"${prefix}{GO_HASH[3:]}"
    check_hash(variant)
    assert verify_password("allmine", variant)


def test_hashes_made_here_are_2a_and_verify_both_ways() -> None:
    made = hash_password("pa55 wörd", cost=4)
    assert made.startswith("$2a$04$") and len(made) == 60
    assert verify_password("pa55 wörd", made)
    assert bcrypt.checkpw("pa55 wörd".encode(), made.encode())  # what any bcrypt (Go's too) checks
    generated_2a = bcrypt.hashpw(b"generated", bcrypt.gensalt(rounds=4, prefix=b"2a")).decode()
    assert verify_password("generated", generated_2a)


def test_passwords_bcrypt_cannot_read_whole_are_refused() -> None:
    with pytest.raises(ValueError, match="72"):
        hash_password("x" * 73, cost=4)
    with pytest.raises(ValueError, match="empty"):
        hash_password("", cost=4)
    assert not verify_password("x" * 73, GO_HASH)


@pytest.mark.parametrize("bad", ["", "plain-password", "$2a$10$short", "$1$saltsalt$//251epTQaKpm7/bnAD.Z.",
                                 "$2a$99$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga"])
def test_a_value_that_is_not_a_bcrypt_hash_names_the_key(bad: str) -> None:
    with pytest.raises(OfeliaError, match="web-password-hash is not a bcrypt hash") as error:
        check_hash(bad)
    if bad:
        assert bad not in str(error.value)  # the value itself is never shown


def test_hash_password_command_reads_stdin_and_prints_only_the_hash() -> None:
    result = CliRunner().invoke(cli, ["hash-password", "--stdin", "--cost", "4"], input="s3cret pass\n")
    assert result.exit_code == 0, result.output
    printed = result.stdout.strip()
    assert printed.startswith("$2a$04$") and verify_password("s3cret pass", printed)
    assert "s3cret" not in result.output


def test_hash_password_command_prompts_twice_without_echo() -> None:
    result = CliRunner().invoke(cli, ["hash-password", "--cost", "4"], input="typed-secret\ntyped-secret\n")
    assert result.exit_code == 0, result.output
    assert "typed-secret" not in result.output
    assert verify_password("typed-secret", result.stdout.strip().splitlines()[-1])
    mismatch = CliRunner().invoke(cli, ["hash-password", "--cost", "4"], input="one-secret\nother-one\n")
    assert "one-secret" not in mismatch.output and "other-one" not in mismatch.output


def test_hash_password_command_refuses_a_too_long_password() -> None:
    result = CliRunner().invoke(cli, ["hash-password", "--stdin"], input="y" * 80 + "\n")
    assert result.exit_code == 1 and "72" in result.output


@pytest.mark.slow
def test_hash_password_as_a_process_from_a_pipe() -> None:
    proc = subprocess.run([sys.executable, "-m", "ofelia_core", "hash-password", "--stdin", "--cost", "4"],
                          input="piped-secret\n", capture_output=True, text=True, check=True)
    assert verify_password("piped-secret", proc.stdout.strip())
    assert "piped-secret" not in proc.stdout + proc.stderr


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "host", "port", "loopback"), [
    ("127.0.0.1:8081", "127.0.0.1", 8081, True),
    (":8081", "", 8081, False),
    ("0.0.0.0:80", "0.0.0.0", 80, False),
    ("[::1]:9000", "::1", 9000, True),
    ("localhost:0", "localhost", 0, True),
    ("192.0.2.1:8081", "192.0.2.1", 8081, False),
])
def test_addresses(text: str, host: str, port: int, loopback: bool) -> None:
    address = parse_address(text, "web-address")
    assert (address.host, address.port, address.is_loopback) == (host, port, loopback)


@pytest.mark.parametrize("bad", ["8081", "host:", "host:http", "::1:8081", "[nope]:80", "h:70000"])
def test_bad_addresses_name_the_key(bad: str) -> None:
    with pytest.raises(OfeliaError, match=r"^web-address = "):
        parse_address(bad, "web-address")


def test_defaults_and_cli_precedence() -> None:
    settings = WebSettings.from_values({})
    assert not settings.enabled and settings.address.text == "127.0.0.1:8081" and settings.address.is_loopback
    assert settings.token_expiry_hours == 24 and settings.max_login_attempts == 5
    assert len(settings.secret_key) == 32  # random when web-secret-key is unset
    cli_wins = WebSettings.from_values({"web-address": ":9000"}, cli_enable=True, cli_address="127.0.0.1:9100")
    assert cli_wins.enabled and cli_wins.address.port == 9100
    assert WebSettings.from_values({"enable-web": "yes", "web-address": ":9000"}).address.host == ""


def test_auth_without_user_or_hash_is_an_error_naming_the_keys() -> None:
    with pytest.raises(OfeliaError, match="web-username and web-password-hash"):
        WebSettings.from_values({"enable-web": "true", "web-auth-enabled": "true"})
    with pytest.raises(OfeliaError, match="web-password-hash is not a bcrypt hash"):
        WebSettings.from_values({"enable-web": "true", "web-auth-enabled": "true", "web-username": "a",
                                 "web-password-hash": "plaintext"})
    with pytest.raises(OfeliaError, match="web-token-expiry"):
        WebSettings.from_values({"web-token-expiry": "0"})
    with pytest.raises(OfeliaError, match="enable-web"):
        WebSettings.from_values({"enable-web": "maybe"})
