"""``fraudlens users ...`` and ``fraudlens tokens ...``: who may use the service.

Users and tokens live in the store's database; whoever can run these commands against it
administers the service. Passwords are read from a prompt that does not echo or from
standard input (``--password-stdin``), never from the command line, where they would
land in the shell's history and the process list.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fraudlens._time import utcnow
from fraudlens.cli._common import (
    DbOpt,
    cli_errors,
    console,
    db_option,
    existing_database,
    fraudlens_command,
)
from fraudlens.config import get_settings
from fraudlens.errors import DataError

if TYPE_CHECKING:
    from fraudlens.auth import Authenticator

__all__ = ["local_analyst", "tokens_app", "users_app"]

users_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
tokens_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input instead of a prompt.",
    ),
]


@contextmanager
def _auth(db: str | None, *, create: bool) -> Iterator[Authenticator]:
    """An authenticator over the store; ``create`` makes (and migrates) an empty database,
    otherwise a SQLite file that does not exist is an error."""
    from fraudlens.auth import Authenticator
    from fraudlens.store import normalise_url, open_store

    url = normalise_url(db or get_settings().database_url)
    if not create:
        existing_database(url)
    with open_store(url) as store:
        store.require_schema(upgrade_empty=create)
        yield Authenticator(store)


def _read_password(stdin: bool, *, confirm: bool) -> str:
    if stdin:
        from fraudlens.auth import MAX_PASSWORD_CHARS

        # No further than a password can be long (and its line break): standard input
        # without a line break (/dev/zero, a binary file) had been read whole into memory.
        try:
            line = sys.stdin.readline(MAX_PASSWORD_CHARS + 2)
            # (a byte that is not UTF-8, where standard input keeps it as a lone surrogate)
            byte = next((ord(ch) - 0xDC00 for ch in line if "\udc80" <= ch <= "\udcff"), None)
        except UnicodeDecodeError as exc:
            line, byte = "", exc.object[exc.start]
        if byte is not None:
            raise DataError(
                f"--password-stdin: the password is not UTF-8 text (byte 0x{byte:02X})",
                column="password",
            )
        if not line:
            raise DataError("--password-stdin: standard input is empty", column="password")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise DataError(
            "no terminal to prompt for the password: pipe it in with --password-stdin",
            column="password",
        )
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))


def _when(ts: datetime | None) -> str:
    return "—" if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@users_app.command("add")
@cli_errors
def users_add(
    username: Annotated[str, typer.Argument(help="User name (a-z, 0-9, . _ @ -).")],
    role: Annotated[
        str,
        typer.Option(
            help="analyst (reviews risk events), admin, or service (a machine: API tokens "
            "only, no password)."
        ),
    ] = "analyst",
    password_stdin: PasswordStdin = False,
    db: DbOpt = None,
) -> None:
    """Add a user. Analysts and admins get a password (prompted, not echoed); service
    accounts get API tokens with `fraudlens tokens create`."""
    from fraudlens.auth import ROLES, normalise_username

    # The name and role are checked before the password is asked for (twice), not after.
    normalise_username(username)
    if role not in ROLES:
        raise DataError(f"role {role!r} is not one of {', '.join(ROLES)}", column="role")
    wants_password = role != "service" or password_stdin  # a service account refuses one
    password = _read_password(password_stdin, confirm=True) if wants_password else None
    with _auth(db, create=True) as auth:
        user = auth.create_user(username, role, password)
    console.print(f"added {user.role} {user.username!r}")
    if user.role == "service":
        db_words, note = db_option(db)
        console.print(
            f"give it a token{note}: {fraudlens_command()} tokens create {user.username}{db_words}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )


@users_app.command("list")
@cli_errors
def users_list(db: DbOpt = None) -> None:
    """List users with their role and state."""
    with _auth(db, create=False) as auth:
        users = auth.users()
    if not users:
        db_words, note = db_option(db)
        console.print(
            f"no users yet: add one with `{fraudlens_command()} users add NAME --role analyst"
            f"{db_words}`{note}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        return
    table = Table("user", "role", "state", "signs in with", "created")
    for u in users:
        table.add_row(
            u.username,
            u.role,
            f"disabled {_when(u.disabled_at)}" if u.disabled else "active",
            "password" if u.has_password else "API tokens",
            _when(u.created_at),
        )
    console.print(table)


@users_app.command("disable")
@cli_errors
def users_disable(
    username: Annotated[str, typer.Argument(help="User to disable.")],
    db: DbOpt = None,
) -> None:
    """Disable a user: sign-in refused, open sessions ended, API tokens refused."""
    with _auth(db, create=False) as auth:
        user = auth.disable_user(username)
    console.print(f"disabled {user.username!r} (sessions ended; tokens refused)")


@users_app.command("enable")
@cli_errors
def users_enable(
    username: Annotated[str, typer.Argument(help="User to enable again.")],
    db: DbOpt = None,
) -> None:
    """Enable a disabled user again."""
    with _auth(db, create=False) as auth:
        user = auth.enable_user(username)
    console.print(f"enabled {user.username!r}")


@users_app.command("password")
@cli_errors
def users_password(
    username: Annotated[str, typer.Argument(help="User whose password to set.")],
    password_stdin: PasswordStdin = False,
    db: DbOpt = None,
) -> None:
    """Set a new password for an analyst or admin."""
    password = _read_password(password_stdin, confirm=True)
    with _auth(db, create=False) as auth:
        auth.set_password(username, password)
    console.print(f"password of {username.strip().lower()!r} changed")


@tokens_app.command("create")
@cli_errors
def tokens_create(
    username: Annotated[str, typer.Argument(help="User the token acts for (its role applies).")],
    name: Annotated[str, typer.Option(help="A label to tell tokens apart.")] = "default",
    expires_days: Annotated[
        float | None,
        # At most 100 years: inf or 1e9 days used to end in an OverflowError traceback.
        typer.Option(min=0.001, max=36_500, help="Expire after this many days [default: never]."),
    ] = None,
    db: DbOpt = None,
) -> None:
    """Create an API token and print it once on standard output (send it as
    `Authorization: Bearer TOKEN`). Only its SHA-256 digest is stored."""
    expires = timedelta(days=expires_days) if expires_days is not None else None
    with _auth(db, create=False) as auth:
        value, token = auth.create_token(username, name=name, expires_in=expires)
    console.print(
        f"token {token.id} ({token.name!r}) for {token.username!r}, expires "
        f"{_when(token.expires_at) if token.expires_at else 'never'}; it is shown only now:"
    )
    # The value alone on stdout, so `TOKEN=$(fraudlens tokens create svc)` works.
    typer.echo(value)


@tokens_app.command("revoke")
@cli_errors
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id (see `fraudlens tokens list`).")],
    db: DbOpt = None,
) -> None:
    """Revoke a token (a running service stops accepting it within seconds)."""
    with _auth(db, create=False) as auth:
        token = auth.revoke_token(token_id)
    console.print(f"revoked token {token.id} ({token.name!r}) of {token.username!r}")


@tokens_app.command("list")
@cli_errors
def tokens_list(
    user: Annotated[
        str | None, typer.Option("--user", help="Only this user's tokens.", show_default=False)
    ] = None,
    db: DbOpt = None,
) -> None:
    """List API tokens (never their values: only their first characters)."""
    with _auth(db, create=False) as auth:
        tokens = auth.tokens(user)
    if not tokens:
        console.print("no API tokens")
        return
    now = utcnow()
    table = Table("id", "user", "name", "starts with", "created", "expires", "last used", "state")
    for t in tokens:
        if t.revoked_at is not None:
            state = f"revoked {_when(t.revoked_at)}"
        elif not t.active(now):
            state = "expired"
        else:
            state = "active"
        table.add_row(
            str(t.id),
            t.username,
            t.name,
            f"{t.prefix}…",
            _when(t.created_at),
            _when(t.expires_at) if t.expires_at else "never",
            _when(t.last_used_at),
            state,
        )
    console.print(table)


def local_analyst(db: str, username: str = "analyst") -> tuple[str, str]:
    """Make sure a local analyst exists in ``db`` and give it a new random password.

    Used by the quickstart, so the review page can be tried with a sign-in.

    Returns
    -------
    (str, str)
        The user name and the password (shown once; only its Argon2 hash is stored).
    """
    import secrets

    password = secrets.token_urlsafe(12)  # 16 characters, 96 random bits
    with _auth(db, create=True) as auth:
        if auth.store.get_user(username) is None:
            auth.create_user(username, "analyst", password)
        else:
            auth.enable_user(username)
            auth.set_password(username, password)
    return username, password
