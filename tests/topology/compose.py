"""docker-compose.yml read as compose reads it: the app's environment, with `${VAR:-x}`
defaults filled in and `${VAR:?…}` (required) values supplied by the caller."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: str, given: dict[str, str]) -> str:
    """One value as compose fills it in from `given` (the .env file); a required
    variable missing from it is an error, as it is for `docker compose up`."""

    def fill(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        if name in given and (given[name] or not op.startswith(":")):
            return given[name]
        if op.endswith("?"):
            raise KeyError(f"{name} is required: {arg}")
        return arg if op.endswith("-") else ""

    return VARIABLE.sub(fill, value.replace("$$", "\0")).replace("\0", "$")


def app_environment(given: dict[str, str]) -> dict[str, str]:
    """The environment compose gives the web and worker containers."""
    environment = load_compose()["services"]["web"]["environment"]
    return {name: interpolate(str(value), given) for name, value in environment.items()}


def resolve(given: dict[str, str]) -> Any:
    """The whole file with every value filled in, as `docker compose config` shows it."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return interpolate(node, given) if isinstance(node, str) else node

    return walk(load_compose())
