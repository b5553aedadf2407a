"""bcrypt password hashes, compatible with Ofelia's ``web-password-hash``.

Go's ``golang.org/x/crypto/bcrypt`` writes ``$2a$`` hashes; the ``bcrypt``
package verifies those as well as its own ``$2b$`` and PHP's ``$2y$``.
:func:`hash_password` writes ``$2a$`` so a hash made here also works in Ofelia.
bcrypt reads at most 72 bytes of a password; longer ones are refused rather
than silently cut.
"""

from __future__ import annotations

import re

import bcrypt

from ..errors import OfeliaError

#: Ofelia's fork hashes with cost 12.
DEFAULT_COST = 12
MAX_PASSWORD_BYTES = 72
_HASH = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")


def check_hash(hashed: str, key: str = "web-password-hash") -> None:
    """Raise an error naming ``key`` unless ``hashed`` is a bcrypt hash (the value is never shown)."""
    match = _HASH.match(hashed)
    if match is None or not 4 <= int(match.group(1)) <= 31:
        raise OfeliaError(
            f"{key} is not a bcrypt hash (expected $2a$, $2b$ or $2y$, a cost and 53 characters); "
            "make one with: ofelia hash-password"
        )


def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    """A ``$2a$`` bcrypt hash of ``password``; ``ValueError`` when it is empty or longer than 72 bytes."""
    data = password.encode()
    if not data:
        raise ValueError("the password is empty")
    if len(data) > MAX_PASSWORD_BYTES:
        raise ValueError(f"the password is {len(data)} bytes long; bcrypt reads at most {MAX_PASSWORD_BYTES}")
    if not 4 <= cost <= 31:
        raise ValueError(f"the cost must be from 4 to 31, got {cost}")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds=cost, prefix=b"2a")).decode()


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed``. A password over 72 bytes never matches."""
    data = password.encode()
    if len(data) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(data, hashed.encode())
    except ValueError:  # not a bcrypt hash
        return False
