"""demo/options.py: mtls_demo.py's command line, designed once.

make_parser    the options, grouped: modes (one at a time), the files for
               --check, the modifiers of a run of cases; --help ends with
               worked examples, wrapped to the terminal
parse_args     read the command line and refuse, in one line, what does
               not fit (two modes, a NAME with --all, a URL without --check...)

The parser is client.py's ArgumentParser: usage errors in the project's one
error format, and "did you mean --trace?" for an unknown option.
Reads only the command line.
"""

import argparse
import os
import re
import shlex
import sys

from demo.commands import ROOT, program, shown_path
from demo.terminal import pair_options, terminal_width, wrap, wrap_command


# --- the command line ----------------------------------------------------

EXAMPLES = """\
names: scenarios, demonstrations and exhibits share one namespace (--list
shows them); they never start with "-" and never contain "://". A
positional argument with "://" is a URL and belongs to --check.

examples:
{examples}"""


EXAMPLE_LINES = [
    ("", "the three basic cases"),
    ("expired-client revoked", "two scenarios, in this order"),
    ("--lesson --pause", "teach: Enter between cases"),
    ("--trace no-client-cert", "the handshake, as a ladder"),
    ("--tls1.2 expired-client", "the same under TLS 1.2"),
    ("cleartext-cert", "TLS 1.2 shows the certificate"),
    ("--all --width 80", "every scenario, 80 columns"),
    ("--markdown > gallery.md", "the README's gallery table"),
]


def examples(width=100):
    """The worked examples of --help: comments beside the commands when they
    fit in `width` columns, else above them (a long interpreter path)."""
    p, lines = program(), []
    for args, comment in EXAMPLE_LINES:
        command = f"  {p} {args}".rstrip()
        if len(p) + 2 + 26 + 4 + len(comment) <= width:
            lines.append(f"{command:{len(p) + 2 + 26}}  # {comment}")
        else:
            lines += [f"  # {comment}", command]
    certs = shown_path(os.path.join(ROOT, "certs"))
    words = shlex.split(p) + ["--check", "--cacert", f"{certs}/ca.crt", "--cert",
                              f"{certs}/client.crt", "--key", f"{certs}/client.key",
                              "https://localhost:3000/"]
    lines.append("  # check your own files, and a running server")
    lines += wrap_command(pair_options([shlex.quote(w) for w in words]), width, "  ", "      ")
    return "\n".join(lines) + "\n"


def fit_help(text, width):
    """Wrap the lines of --help's text that are wider than `width`, each
    continuing under its description (the text after its first gap of two
    spaces or more)."""
    out = []
    for line in text.splitlines():
        gap = re.match(r"(\s*\S.*?\s{2,})(\S.*)", line) or re.match(r"(\s*)(.*)", line)
        if len(line) <= width:
            out.append(line)
            continue
        out += wrap(gap.group(2), width, gap.group(1), " " * len(gap.group(1)))
    return "\n".join(out) + "\n"


def usage_line(width):
    """The usage line, its parts carried over under the first when one line
    does not fit `width`."""
    parts = ("[NAME ...]", "[--all|--lesson|--mistakes|--list|--check]", "[modifiers]")
    indent = " " * len("usage: " + program())
    if len(indent) + 1 + max(map(len, parts)) > width:      # a long interpreter path
        indent = "   "
    lines = ["%(prog)s"]
    for part in parts:
        shown = lines[-1].replace("%(prog)s", program())
        if len(f"usage: {shown} {part}") > width and lines[-1] != "%(prog)s":
            lines.append(indent)
        lines[-1] += " " + part
    return "\n".join(lines)


def usage_parser():
    """client.py's ArgumentParser: usage errors in the one error format, and
    "did you mean --trace?" for an unknown option."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import client                                   # the project's client, as a library
    return client.ArgumentParser


def tcp_port(text):
    """client.py's reading of a TCP port (0: any free one), one error format."""
    usage_parser()                                  # puts the project on sys.path
    from armour.command_line import port
    return port(text)


def columns(text):
    """A width in columns: a whole number, at least 20."""
    if not text.isdigit() or int(text) < 20:
        raise argparse.ArgumentTypeError(f"{text!r} is not a width to read in -- use a number "
                                         f"of columns, at least 20, e.g. 80")
    return int(text)


def make_parser():
    """The demo's options (designed once: see EXAMPLES and the README)."""
    width = terminal_width()
    p = usage_parser()(prog=program(), allow_abbrev=False,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage=usage_line(width),
                       description="Run mutual TLS for real: success and failures, explained.",
                       epilog=fit_help(EXAMPLES.format(examples=examples(width)), width))
    p.add_argument("names", nargs="*", metavar="NAME", help="scenarios, demonstrations or exhibits "
                   "to run, in this order (see --list)")
    mode = p.add_argument_group("modes (one at a time)", "with none: the three basic cases "
                                "(success, no-cacert, no-client-cert)")
    mode.add_argument("--all", action="store_true", help="run every scenario of the failure "
                      "gallery: each failure, and the successes beside them")
    mode.add_argument("--lesson", action="store_true", help="the classroom path: six cases in "
                      "teaching order, each with what you just saw (--lesson [--pause])")
    mode.add_argument("--mistakes", action="store_true", help="run every mistakes-gallery exhibit")
    mode.add_argument("--list", action="store_true", help="list every name and exit")
    mode.add_argument("--check", action="store_true", help="check your own certificates "
                      "(--cacert, --cert, --key) and, given a URL, a server")
    check = p.add_argument_group("files for --check")
    check.add_argument("--cacert", metavar="CA", help="the CA certificate you trust")
    check.add_argument("--cert", metavar="CERT", help="your client certificate")
    check.add_argument("--key", metavar="KEY", help="its private key (leave it out when the "
                       "key sits in the CERT file)")
    mod = p.add_argument_group("modifiers (with a run of cases)")
    mod.add_argument("--tls1.2", dest="tls12", action="store_true",
                     help="rerun each case with client.py's code limited to TLS 1.2, "
                          "beside openssl s_client and curl; then show the client "
                          "certificate in clear (cleartext-cert)")
    mod.add_argument("--trace", action="store_true",
                     help="draw each handshake as a ladder, from openssl s_client -trace")
    mod.add_argument("--raw-trace", action="store_true", help="print s_client -trace's raw output")
    mod.add_argument("--verbose", action="store_true",
                     help="show every openssl command that builds the certificates")
    mod.add_argument("--markdown", action="store_true", help="print only the gallery table, "
                     "as Markdown, from real runs (every scenario unless NAMEs are given)")
    mod.add_argument("--certs", default=os.path.join(ROOT, "certs"), metavar="DIR",
                     help="certificates folder (default: certs/ next to this script)")
    mod.add_argument("--port", type=tcp_port, metavar="N",
                     help="the demo's servers listen on N, N+1, ... (make demo passes PORT); "
                          "a port that is taken gives way to a free one (default: 3000 for "
                          "--lesson, so the projected commands name make run's port; else "
                          "free ones)")
    mod.add_argument("--no-curl", action="store_true", help="do not run the curl commands")
    mod.add_argument("--width", type=columns, metavar="N",
                     help="wrap output at N columns (default: the terminal's, else 100)")
    mod.add_argument("--pause", action="store_true", help="wait for Enter between cases")
    return p


MODES = ("all", "lesson", "mistakes", "list", "check")
RUN_MODIFIERS = ("tls12", "trace", "raw_trace", "verbose", "markdown", "no_curl", "pause", "port")


def option(dest):
    """An option's spelling on the command line, from its argparse dest."""
    return "--tls1.2" if dest == "tls12" else "--" + dest.replace("_", "-")


def parse_args(argv):
    """Read the command line and refuse, in one line, what does not fit."""
    p = make_parser()
    args = p.parse_intermixed_args(argv)
    modes = [m for m in MODES if getattr(args, m)]
    urls = [n for n in args.names if "://" in n]
    names = [n for n in args.names if "://" not in n]
    if len(modes) > 1:
        p.error(f"{option(modes[0])} and {option(modes[1])} are two modes; choose one")
    mode = modes[0] if modes else None
    if mode in ("all", "lesson", "mistakes", "list") and names:
        p.error(f"{option(mode)} takes no NAME (got {names[0]!r}); to run just that, "
                f"leave out {option(mode)}: {program()} {shlex.join(names)}")
    if urls and mode != "check":
        p.error(f"{urls[0]!r} is a URL, which only --check takes: {program()} --check "
                f"--cacert CA {urls[0]}")
    if mode == "check":
        if names:
            p.error(f"--check takes no NAME (got {names[0]!r}), only an optional URL")
        if len(urls) > 1:
            p.error(f"--check takes one URL (got {len(urls)})")
        if not args.cacert:
            p.error("--check needs --cacert CA: the CA certificate you trust")
        if args.key and not args.cert:      # --cert alone is fine: the key may sit in its file
            p.error("--key needs --cert: pass both, e.g. --cert certs/client.crt "
                    "--key certs/client.key")
    for dest in ("cacert", "cert", "key"):
        if getattr(args, dest) and mode != "check":
            p.error(f"{option(dest)} belongs to --check (the demo's cases use files from --certs)")
    for dest in RUN_MODIFIERS:
        if getattr(args, dest) and mode in ("list", "check"):
            p.error(f"{option(dest)} does not apply to {option(mode)}")
        scenario_only = dest not in ("verbose", "no_curl", "pause")
        if getattr(args, dest) and mode == "mistakes" and scenario_only:
            p.error(f"{option(dest)} applies to scenarios, not to --mistakes")
    if args.port is None:
        args.port = 3000 if mode == "lesson" else 0
    if not 0 <= args.port <= 65000:                 # room for N+1, ... above it
        p.error(f"--port {args.port} is not a port for the demo's servers: use 1-65000, "
                f"e.g. --port 3000")
    if args.width is not None and args.width < 60:
        p.error(f"--width {args.width} is too narrow: use 60 or more")
    args.mode, args.urls = mode, urls
    args.names = names
    return args


