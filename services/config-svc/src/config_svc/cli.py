"""``regflow-config``: manage registry integrations through config-svc's HTTP API.

A thin client: every command is one request (``registries add`` is a POST, and
so on), and what the API refuses is printed with the field it names. Passwords
are read from standard input (``--password-stdin``) or a hidden prompt, never
from the command line, where they would end up in shell history and ``ps``.

Exit status: 0 on success, 1 when the API refused the request, a registry
failed its connection test, or config-svc could not be reached.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Annotated, Any, NoReturn

import httpx
import typer

from regflow.events import Provider

DEFAULT_URL = "http://127.0.0.1:8081"
# Timeout of one API call (seconds); a connection test may take a while.
REQUEST_TIMEOUT = 60.0
# What `update` adds when the API refuses to move stored credentials.
MOVE_CREDENTIALS_HINT = (
    "a new --domain or --provider needs the password again: add --password-stdin "
    "or --prompt-password (and --username to change it), or --no-credentials to "
    "remove the stored ones"
)

app = typer.Typer(
    name="regflow-config",
    help="Manage regflow registry integrations (talks to config-svc).",
    no_args_is_help=True,
    add_completion=False,
)
registries = typer.Typer(
    help="The registry integrations of one account.", no_args_is_help=True
)
app.add_typer(registries, name="registries")

Url = Annotated[
    str,
    typer.Option("--url", envvar="REGFLOW_CONFIG_URL", help="config-svc base URL"),
]
Account = Annotated[
    str, typer.Option("--account", envvar="REGFLOW_ACCOUNT", help="Account id")
]
Name = Annotated[str, typer.Argument(help="Registry name")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password or token from standard input"
    ),
]
Username = Annotated[
    str | None, typer.Option("--username", help="Login user (or _json_key, AWS...)")
]
Domain = Annotated[
    str | None,
    typer.Option("--domain", help="Registry host[:port] (no scheme, no path)"),
]
Prefix = Annotated[
    str | None,
    typer.Option("--prefix", help="Repository prefix put before image names"),
]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _registries_path(account: str) -> str:
    return f"/v1/accounts/{account}/registries"


def _call(
    url: str,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    hints: Mapping[str, str] | None = None,
) -> Any:
    """One API call; the decoded JSON answer, or exit with the API's complaint.

    ``hints`` maps a field to a line printed after an error naming it, to say
    which option fixes it.
    """
    try:
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
            response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach config-svc at {url}: {exc}")
    if response.is_success:
        return response.json() if response.content else None
    _fail(_describe_error(response, hints or {}))


def _describe_error(response: httpx.Response, hints: Mapping[str, str]) -> str:
    """The API's error as one line per problem, with the field it names."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if isinstance(detail, list):
        lines = []
        for item in detail:
            loc = [str(p) for p in item.get("loc", ()) if p not in {"body", "path"}]
            where = ".".join(loc) or "request"
            lines.append(f"{where}: {item.get('msg', 'invalid')}")
            if where in hints:
                lines.append(f"hint: {hints[where]}")
        return "\n".join(lines)
    return str(detail)


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that have a value (the API keeps its defaults for the rest)."""
    return {key: value for key, value in fields.items() if value is not None}


def _read_password(*, from_stdin: bool, prompt: bool) -> str | None:
    """The password from stdin or a hidden prompt, or None if neither was asked."""
    if from_stdin:
        password = sys.stdin.read().rstrip("\r\n")
        if not password:
            _fail("--password-stdin: standard input was empty")
        return password
    if prompt:
        password = typer.prompt("Password", hide_input=True)
        return str(password)
    return None


def _print_registry(registry: dict[str, Any]) -> None:
    flags = [f for f in ("default", "caching") if registry.get(f"is_{f}")]
    rows = {
        "name": registry["name"],
        "provider": registry["provider"],
        "domain": registry["domain"],
        "repository prefix": registry.get("repository_prefix") or "-",
        "username": registry.get("username") or "-",
        "credentials": "stored" if registry.get("has_credentials") else "none",
        "flags": ", ".join(flags) or "-",
        "updated": registry.get("updated_at", "-"),
    }
    for label, value in rows.items():
        typer.echo(f"{label + ':':<19}{value}")


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


@registries.command("list")
def list_registries(
    url: Url = DEFAULT_URL, *, account: Account, as_json: AsJson = False
) -> None:
    """List the account's registries."""
    data = _call(url, "GET", _registries_path(account))
    if as_json:
        _print_json(data)
        return
    if not data["registries"]:
        typer.echo("no registries")
        return
    typer.echo(f"{'NAME':<24}{'PROVIDER':<12}{'DOMAIN':<32}FLAGS")
    for registry in data["registries"]:
        flags = [f for f in ("default", "caching") if registry[f"is_{f}"]]
        typer.echo(
            f"{registry['name']:<24}{registry['provider']:<12}"
            f"{registry['domain']:<32}{','.join(flags)}"
        )


@registries.command("add")
def add_registry(
    name: Name,
    url: Url = DEFAULT_URL,
    *,
    account: Account,
    provider: Annotated[Provider, typer.Option("--provider", help="Registry kind")],
    domain: Domain = None,
    prefix: Prefix = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    as_json: AsJson = False,
) -> None:
    """Connect a registry; with --username the password is asked for (hidden)."""
    password = _read_password(from_stdin=password_stdin, prompt=username is not None)
    body = _given(
        name=name,
        provider=provider.value,
        domain=domain,
        repository_prefix=prefix,
        username=username,
        password=password,
    )
    created = _call(url, "POST", _registries_path(account), body=body)
    if as_json:
        _print_json(created)
    else:
        _print_registry(created)


@registries.command("show")
def show_registry(
    name: Name, url: Url = DEFAULT_URL, *, account: Account, as_json: AsJson = False
) -> None:
    """Show one registry (never its password)."""
    registry = _call(url, "GET", f"{_registries_path(account)}/{name}")
    if as_json:
        _print_json(registry)
    else:
        _print_registry(registry)


@registries.command("update")
def update_registry(
    name: Name,
    url: Url = DEFAULT_URL,
    *,
    account: Account,
    provider: Annotated[
        Provider | None, typer.Option("--provider", help="Registry kind")
    ] = None,
    domain: Domain = None,
    prefix: Prefix = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    prompt_password: Annotated[
        bool, typer.Option("--prompt-password", help="Ask for a new password (hidden)")
    ] = False,
    no_credentials: Annotated[
        bool, typer.Option("--no-credentials", help="Remove the stored credentials")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Change some fields; an empty --prefix removes the prefix.

    A new --domain or --provider for a registry with stored credentials needs
    the password again (--password-stdin or --prompt-password), or
    --no-credentials: stored credentials never follow a registry to another host.
    """
    body: dict[str, Any] = {}
    if provider is not None:
        body["provider"] = provider.value
    if domain is not None:
        body["domain"] = domain
    if prefix is not None:
        body["repository_prefix"] = prefix
    if no_credentials:
        if username is not None or password_stdin or prompt_password:
            _fail("--no-credentials cannot be combined with new credentials")
        body["username"] = None
        body["password"] = None
    if username is not None:
        body["username"] = username
    password = _read_password(from_stdin=password_stdin, prompt=prompt_password)
    if password is not None:
        body["password"] = password
    if not body:
        _fail("nothing to change: give at least one option")
    # Only the API knows whether credentials are stored; when it refuses to
    # move them, say which options give the password again.
    moves = provider is not None or domain is not None
    hints = {"password": MOVE_CREDENTIALS_HINT} if moves and password is None else {}
    path = f"{_registries_path(account)}/{name}"
    updated = _call(url, "PATCH", path, body=body, hints=hints)
    if as_json:
        _print_json(updated)
    else:
        _print_registry(updated)


@registries.command("remove")
def remove_registry(
    name: Name,
    url: Url = DEFAULT_URL,
    *,
    account: Account,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
) -> None:
    """Disconnect a registry."""
    if not yes:
        typer.confirm(f"Remove registry {name!r} from account {account!r}?", abort=True)
    _call(url, "DELETE", f"{_registries_path(account)}/{name}")
    typer.echo(f"removed {name}")


@registries.command("test")
def check_registry(
    name: Annotated[
        str | None, typer.Argument(help="Saved registry; omit to test unsaved settings")
    ] = None,
    url: Url = DEFAULT_URL,
    *,
    account: Account,
    provider: Annotated[
        Provider | None, typer.Option("--provider", help="Unsaved: registry kind")
    ] = None,
    domain: Domain = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    as_json: AsJson = False,
) -> None:
    """Check that a registry answers and accepts the credentials."""
    if name is not None:
        if provider is not None or domain is not None or username is not None:
            _fail("give a registry name or unsaved settings, not both")
        result = _call(url, "POST", f"{_registries_path(account)}/{name}/test")
    else:
        if provider is None:
            _fail("give a registry name, or --provider (and --domain) to test")
        password = _read_password(
            from_stdin=password_stdin, prompt=username is not None
        )
        body = _given(
            provider=provider.value, domain=domain, username=username, password=password
        )
        result = _call(url, "POST", f"{_registries_path(account)}/test", body=body)
    if as_json:
        _print_json(result)
    elif result["ok"]:
        typer.echo("ok: the registry accepted the connection")
    else:
        status = result.get("status_code")
        typer.echo(
            f"failed ({result['reason']}"
            f"{f', HTTP {status}' if status is not None else ''}): {result['message']}"
        )
    if not result["ok"]:
        raise typer.Exit(1)


def _select(url: str, account: str, flag: str, name: str | None) -> None:
    result = _call(
        url, "PUT", f"{_registries_path(account)}/{flag}", body={"name": name}
    )
    typer.echo(f"{flag} registry: {result[f'{flag}_registry'] or 'none'}")


@registries.command("set-default")
def set_default(
    name: Annotated[str | None, typer.Argument(help="Registry name")] = None,
    url: Url = DEFAULT_URL,
    *,
    account: Account,
    clear: Annotated[bool, typer.Option("--clear", help="Leave no default")] = False,
) -> None:
    """Choose where pushes that name no registry go."""
    if (name is None) == (not clear):
        _fail("give a registry name or --clear")
    _select(url, account, "default", name)


@registries.command("set-caching")
def set_caching(
    name: Annotated[str | None, typer.Argument(help="Registry name")] = None,
    url: Url = DEFAULT_URL,
    *,
    account: Account,
    clear: Annotated[
        bool, typer.Option("--clear", help="Leave no caching registry")
    ] = False,
) -> None:
    """Choose the registry build caches use (not Docker Hub)."""
    if (name is None) == (not clear):
        _fail("give a registry name or --clear")
    _select(url, account, "caching", name)


if __name__ == "__main__":
    app()
