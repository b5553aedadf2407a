"""Which driver each concern uses, and which source decided.

Precedence: command line, then environment (a name override beats the
flag), then the config file's ``drivers`` section, then the default.
Nothing here imports a driver: names are checked against installed entry
points only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import distributions, entry_points

from ..config.model import Section
from ..config.values import FALSE_WORDS, TRUE_WORDS
from ..errors import DriverSelectionError
from .table import BY_KEY, CONCERNS, Concern


def parse_flag(variable: str, value: str) -> bool:
    """Strict boolean parsing of a feature flag's value."""
    text = value.strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise DriverSelectionError(
        f"{variable}={value!r} is not a boolean: use one of true/false, 1/0, yes/no, on/off"
    )


@dataclass(frozen=True)
class Choice:
    """The driver chosen for one concern and the source that chose it."""

    concern: Concern
    name: str
    source: str

    @property
    def is_default(self) -> bool:
        return self.source == "default"


def installed_drivers(concern: Concern) -> list[str]:
    """Driver names registered in the concern's entry-point namespace (nothing is imported)."""
    return sorted({ep.name for ep in entry_points(group=concern.namespace)})


def installed_driver_names() -> dict[str, list[str]]:
    """``installed_drivers`` for every concern, from one scan of the installed distributions."""
    by_namespace: dict[str, set[str]] = {concern.namespace: set() for concern in CONCERNS}
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group in by_namespace:
                by_namespace[ep.group].add(ep.name)
    return {concern.key: sorted(by_namespace[concern.namespace]) for concern in CONCERNS}


def _from_environment(concern: Concern, env: Mapping[str, str]) -> Choice | None:
    override = env.get(concern.override, "").strip()
    if override:
        return Choice(concern, override, f"environment ({concern.override}={override})")
    flag = env.get(concern.flag, "")
    # An empty variable (``FLAG=`` in a compose file) counts as unset.
    if flag.strip():
        optimized = parse_flag(concern.flag, flag)
        name = concern.optimized if optimized else concern.baseline
        return Choice(concern, name, f"environment ({concern.flag}={flag.strip()})")
    return None


def _from_file(concern: Concern, drivers: Section | None) -> Choice | None:
    if drivers is None or concern.key not in drivers.values:
        return None
    value = drivers.values[concern.key]
    if not isinstance(value, str) or not value.strip():
        raise DriverSelectionError(
            f"{drivers.where(concern.key)}: [drivers] {concern.key} must be one driver name, got {value!r}"
        )
    return Choice(concern, value.strip(), f"config file ({drivers.where(concern.key)})")


def choose_drivers(
    *,
    cli: Mapping[str, str] | None = None,
    env: Mapping[str, str],
    file_drivers: Section | None = None,
    check_installed: bool = True,
) -> dict[str, Choice]:
    """The choice for every concern, keyed by concern key.

    ``cli`` maps concern keys to names given with ``--driver CONCERN=NAME``.
    With ``check_installed`` every chosen name must be an installed driver.
    """
    cli = cli or {}
    available = installed_driver_names() if check_installed else {}
    unknown = sorted(set(cli) - set(BY_KEY))
    if unknown:
        raise DriverSelectionError(
            f"--driver: unknown concern {', '.join(unknown)}; concerns are {', '.join(BY_KEY)}"
        )
    choices: dict[str, Choice] = {}
    for concern in CONCERNS:
        choice = (
            (Choice(concern, cli[concern.key], f"command line (--driver {concern.key}={cli[concern.key]})")
             if cli.get(concern.key) else None)
            or _from_environment(concern, env)
            or _from_file(concern, file_drivers)
            or Choice(concern, concern.baseline, "default")
        )
        if check_installed:
            check_installed_driver(choice, available[concern.key])
        choices[concern.key] = choice
    return choices


def check_installed_driver(choice: Choice, available: list[str] | None = None) -> None:
    """Raise a clear error when the chosen name is not an installed driver."""
    concern = choice.concern
    if available is None:
        available = installed_drivers(concern)
    if choice.name in available:
        return
    if choice.name == concern.optimized:
        raise DriverSelectionError(
            f"{concern.title} driver '{choice.name}' (chosen by {choice.source}) is provided by the "
            f"distribution '{concern.optimized_distribution}', which is not installed. Install it "
            f"(pip install {concern.optimized_distribution}, or pip install -e {concern.optimized_path} "
            f"from a checkout), or unset {concern.flag} to use '{concern.baseline}'."
        )
    raise DriverSelectionError(
        f"unknown {concern.title} driver '{choice.name}' (chosen by {choice.source}); "
        f"available: {', '.join(available) or 'none'} (entry-point group '{concern.namespace}')"
    )
