"""command_line.py: the one ArgumentParser, and the values our options take.

Prevents: a mistyped option or value ending in a traceback, or in a usage
screen a user must decode. Every usage error is one line, "error: bad
option: what -- fix", exit code 2; an unknown option gets the one meant
(--cert for --certs). Also: typed identities for --allow and --trust-proxy
(cn:my-client, uri:spiffe://...), timeouts, counts, and the address to
listen on.
"""

import argparse
import difflib
import errno
import ipaddress
import math
import re
import socket

from armour import ConfigError

EXIT_USAGE = 2             # the exit code of every usage error

# A client's identities, as --allow and the log spell them (see server.py).
IDENTITY_TYPES = ("cn", "dns", "uri", "ip", "email")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line, like every other error here,
    and a guess at the option meant when one is unknown. The one parser of
    the project: server.py, client.py, mtls_demo.py and the gallery use it."""

    def error(self, message):
        typo = self.unknown_option(message)
        if typo:
            message = f"{typo[0]} -- {typo[1]} (see {self.prog} --help)"
        elif " -- " not in message:             # a message that names its fix keeps it
            message += f" -- see {self.prog} --help"
        self.exit(EXIT_USAGE, f"error: bad option: {message}\n")

    def unknown_option(self, message):
        """For "unrecognized arguments: --certs URL": the first unknown option
        and what to type instead, as (what, fix): --cert for --certs, --cacert
        for curl's -cacert. (argparse took the typo's value for the URL, and
        named the real URL as the unknown argument.) None if none is unknown."""
        if not message.startswith("unrecognized arguments: "):
            return None
        words = message[len("unrecognized arguments: "):].split()
        typo = next((w.split("=", 1)[0] for w in words if w.startswith("-") and len(w) > 1), None)
        if typo is None:
            return None
        known = [o for o in self._option_string_actions if o.startswith("--")]
        bare = {o.lstrip("-"): o for o in known}
        close = difflib.get_close_matches(typo.lstrip("-"), list(bare), n=1, cutoff=0.6)
        if not close:
            return f"unknown option {typo!r}", f"use one of {', '.join(known)}"
        return f"unknown option {typo!r}", f"did you mean {bare[close[0]]}?"


def seconds(text):
    """Read a timeout from the command line: seconds, more than 0, at most a day."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 86400:                      # also false for nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds more than 0 "
                                         f"(and at most 86400), e.g. 10")
    return value


def count(text):
    """Read a count from the command line: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def port(text):
    """Read a TCP port from the command line: 0 (any free port) to 65535."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port -- use 1-65535 "
                                         f"(or 0 for any free port)")
    return int(text)


def parse_identity(text):
    """Read a typed identity from the command line (--allow, --trust-proxy):
    "cn:my-client" -> ("cn", "my-client"). Any other spelling is refused,
    with the right one in the message."""
    kind, sep, value = text.partition(":")
    if sep and kind in IDENTITY_TYPES and value and value == value.strip():
        if kind == "ip":
            try:
                value = str(ipaddress.ip_address(value))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not an IP address -- write e.g. "
                                                 f"ip:10.0.0.1 or ip:::1") from None
        return kind, value
    raise argparse.ArgumentTypeError(f"{text!r} is not a typed identity -- write "
                                     f"{suggest_identity(text)} (types: {', '.join(IDENTITY_TYPES)})")


def suggest_identity(text):
    """The typed spelling a user most likely meant, from a name copied out of
    a log, a greeting, openssl x509 -subject or openssl x509 -ext."""
    text = text.strip()
    if not text:
        return "cn:NAME (an empty name matches nothing)"
    match = re.search(r"(?:^|[/,=\s])CN\s*=\s*([^,/]+)", text, re.IGNORECASE)
    if match:
        return "cn:" + match.group(1).strip()
    kind, sep, value = text.partition(":")
    if sep and kind in IDENTITY_TYPES and not value.strip():
        return f"{kind}:NAME (an empty name matches nothing)"
    aliases = {"dns": "dns", "uri": "uri", "ip": "ip", "ip address": "ip", "email": "email", "cn": "cn"}
    if sep and kind.strip().lower() in aliases and "//" not in kind + sep + value[:2]:
        return f"{aliases[kind.strip().lower()]}:{value.strip()}"
    if "://" in text:
        return "uri:" + text
    return "cn:" + text


def resolve(host, port):
    """The address to listen on for `host`, as (address, port): IPv4 first.

    "localhost" often resolves to ::1 before 127.0.0.1. A client that finds
    nothing on ::1 falls back to 127.0.0.1, but https://127.0.0.1/ has no
    fallback, so we listen on IPv4 when we can (--host ::1 for IPv6)."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError("bad option", f"cannot resolve --host {host!r} ({why})",
                          "try --host 127.0.0.1") from None
    info.sort(key=lambda entry: entry[0] != socket.AF_INET)
    return info[0][4][:2]


def explain_listen_error(exc, host, port):
    """Say why we cannot listen on host:port, and what to do about it."""
    if exc.errno == errno.EADDRINUSE:
        return (f"port in use: something already listens on {host} port {port} (another "
                f"server?) -- stop it, or pass --port N (make run PORT=N; 0 = any free port)")
    if exc.errno == errno.EACCES:
        return f"port not allowed: cannot listen on port {port} ({exc.strerror}) -- use a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"bad option: {host!r} is not an address of this machine -- pass --host localhost"
    return f"cannot listen: {host}:{port} ({exc.strerror or exc}) -- pass another --host or --port"
