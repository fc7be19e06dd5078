"""The client verbs of `plotline`: register, login, logout, whoami, keys create|list|revoke
(content.py has publish, ls, rm, gc and upload; cliutil.py what all verbs share).

Each verb talks to one server (`--url`, default from ~/.plotline/config) through `Session`.
Results go to stdout; notes and errors go to stderr. A failure prints one line,
`plotline: <detail>`, and exits 1; never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from . import config
from .cliutil import UsageError, Verbs, say, url_flag, when
from .session import Session


def _password(args: argparse.Namespace, confirm: bool = False) -> str:
    if args.password is not None:
        return args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise UsageError("no password: use --password-stdin (or --password), "
                         "or run in a terminal to be asked")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != password:
        raise UsageError("the passwords do not match")
    return password


def _username(args: argparse.Namespace, saved: str | None) -> str:
    if args.username or saved:
        return args.username or saved
    if not sys.stdin.isatty() or args.password_stdin:
        raise UsageError("give the USERNAME")
    return input("Username: ").strip()


# --- the verbs ---------------------------------------------------------------------------

def cmd_register(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        user = s.register(args.username, _password(args, confirm=True), args.email)
        say(f"Registered {user['username']} at {s.root_url}.")
        if user.get("verified") is False:
            say(f"Follow the link sent to {user.get('email')} before logging in.")
        say(f"Log in with: plotline login {user['username']}{url_flag(args)}")


def cmd_login(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        username = _username(args, s.username)
        answer = s.login(username, _password(args))
        minutes = int(answer.get("expires_in", 0)) // 60
        say(f"Logged in to {s.root_url} as {username}; token saved in "
             f"{config.credentials_file(s.root_url)} (valid for {minutes} min).")


def cmd_logout(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        where = config.credentials_file(s.root_url)
        if s.logout():
            say(f"Logged out of {s.root_url}; forgot its saved credentials in {where}.")
        else:
            say(f"No saved credentials for {s.root_url}.")


def cmd_whoami(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        me = s.whoami()
    print(json.dumps(me, indent=2) if args.json else me["username"])


def cmd_keys_create(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        key = s.create_key(args.name, save=args.save)
        say(f"Created API key {key['id']} ({key['name']}). This is the only time its secret "
             "is shown; store it now:")
        print(key["key"], flush=True)
        if args.save:
            say(f"Saved in {config.credentials_file(s.root_url)}; later commands for "
                 f"{s.root_url} use it.")


def cmd_keys_list(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        keys = s.keys()
    if args.json:
        print(json.dumps(keys, indent=2))
        return
    if not keys:
        say("No API keys.")
        return
    width = max(len(k["id"]) for k in keys)
    print(f"{'ID':<{width}}  {'CREATED':<16}  NAME")
    for k in sorted(keys, key=lambda k: k.get("created") or 0):
        print(f"{k['id']:<{width}}  {when(k.get('created')):<16}  {k['name']}")


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        s.revoke_key(args.id)
    say(f"Revoked API key {args.id}.")


# --- the parsers -------------------------------------------------------------------------

def add_account_commands(verb: Verbs) -> None:
    """Register the account verbs (register, login, logout, whoami, keys)."""
    url = verb.url
    password = argparse.ArgumentParser(add_help=False)
    group = password.add_mutually_exclusive_group()
    group.add_argument("--password", metavar="PASSWORD",
                       help="the password (other local users can see it in the process "
                       "list: prefer the prompt or --password-stdin)")
    group.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")
    prompt = " Without a password option, asks for it when run in a terminal."

    p = verb("register", cmd_register, "create an account on a multi-user server",
             "Create an account on a Plotline server started with -m (multi-user). It does "
             "not log in; run `plotline login` next." + prompt, [url, password])
    p.add_argument("username", metavar="USERNAME",
                   help="3-32 characters: lowercase letters, digits, '_' and '-'")
    p.add_argument("--email", help="email address (required when the server verifies them)")

    p = verb("login", cmd_login, "log in and save the token for later commands",
             "Log in to a Plotline server. The access token is saved in "
             "$PLOTLINE_HOME/servers.cfg (mode 600), so later commands need no login until "
             "it expires." + prompt, [url, password])
    p.add_argument("username", metavar="USERNAME", nargs="?",
                   help="default: the user last logged in to this server")

    verb("logout", cmd_logout, "end the login on the server and forget its saved credentials",
         "Forget the token, API key and username saved for a server. A forgotten API key "
         "stays valid on the server until revoked (`plotline keys revoke`).", [url])

    p = verb("whoami", cmd_whoami, "print who the server thinks you are",
             "Print the username the server sees for the saved (or no) credentials.", [url])
    p.add_argument("--json", action="store_true", help="print the whole profile as JSON")

    keys = verb.sub.add_parser("keys", help="create, list or revoke API keys",
                          description="Manage your API keys: long-lived credentials for "
                          "scripts, sent as 'Authorization: Bearer <key>'.")
    keys.set_defaults(func=lambda args: keys.print_help() or 2)
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")

    p = verb("create", cmd_keys_create, "create an API key and print its secret once",
             "Create an API key and print its secret on stdout. The server stores only a "
             "hash: the secret is never shown again.", [url], keys_sub)
    p.add_argument("name", metavar="NAME", nargs="?", default="default",
                   help="a label to recognise the key by (default: %(default)s)")
    p.add_argument("--save", action="store_true",
                   help="also save the key in $PLOTLINE_HOME/servers.cfg for later commands")

    p = verb("list", cmd_keys_list, "list your API keys (never their secrets)",
             "List your API keys: id, creation time and name.", [url], keys_sub)
    p.add_argument("--json", action="store_true", help="print them as JSON")

    p = verb("revoke", cmd_keys_revoke, "revoke an API key",
             "Revoke an API key; every service refuses it within a second.", [url], keys_sub)
    p.add_argument("id", metavar="ID", help="the key's id (as `keys list` shows) or the key")
