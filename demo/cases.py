"""demo/cases.py: the pieces of one case, around mtls_demo.py's run_case.

server_command, observe_client, summarize_log_line, fix_command
             a scenario's server options; what the client and the server
             said, in a word; the command a why: line ends with
run_shown    print a command, run it, print its output and the server's log
curl_intro, run_curl, skipped_case
             the same request with curl; a case this OpenSSL cannot show
rerun_tls12  the same case with the client limited to TLS 1.2: client.py's
             own code, openssl s_client -tls1_2 and curl --tls-max 1.2
markdown_table
             README.md's failure-gallery table, from real runs (--markdown)

Runs client.py's code (as a library), curl and openssl; writes nothing.
"""

import os
import re
import ssl
import sys
from collections import namedtuple

from demo.commands import ROOT, fill, run, shown_path
from demo.scenarios import FIX_COMMANDS, SCENARIO_BY_NAME
from demo.terminal import Result, introduced, screen
from demo.wire import first_fatal_alert, trace_case


# --- one case: its server, its client, what each said --------------------

# What run_case returns: the table's Result, the client's command and run,
# the server's log lines about it, and the TLS 1.2 rerun's Result (or None).
CaseRun = namedtuple("CaseRun", "result client_words client server_lines tls12")


def server_command(scenario, certs):
    """server.py's options for a scenario: our usual files, with the
    scenario's own options put in their place (every option takes a value)."""
    options = {"--ca": f"{certs}/ca.crt", "--cert": f"{certs}/server.crt",
               "--key": f"{certs}/server.key"}
    extra = fill(scenario.server, certs)
    options.update(zip(extra[::2], extra[1::2]))
    return [word for pair in options.items() for word in pair]


def observe_client(proc):
    """What client.py's run amounts to: "ok", or the label after "error:"."""
    if proc.returncode == 0:
        return "ok"
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if last.startswith("error: "):
        return last[len("error: "):].split(":", 1)[0]
    return f"exit {proc.returncode}"


def summarize_log_line(line):
    """The gist of a server log line, without the client's address and the
    parenthesis: "accepted as cn:my-client", or the reason for a refusal."""
    what, _, rest = line.partition(" ")
    if what not in ("accepted", "rejected", "forbidden"):
        return line
    if what == "accepted":
        return "accepted as " + rest.split(" as ", 1)[-1]
    reason = re.sub(r" \([^()]*\)", "", rest.split(": ", 1)[-1])
    return f"forbidden: {reason}" if what == "forbidden" else reason


def fix_command(scenario, certs):
    """The command a case's why: ends with, as words that paste, or None."""
    words = FIX_COMMANDS.get(scenario.name)
    cnf = shown_path(os.path.join(ROOT, "openssl.cnf"))
    return [w.format(certs=certs, cnf=cnf) for w in words] if words else None


def curl_intro(lesson=False):
    """The line before a curl command. The README names the walkthrough in
    full; here it is just "the walkthrough", and the lesson does not need it."""
    if lesson:
        return "The same request with curl, for comparison:"
    return "The walkthrough's curl command, for comparison:"


def run_shown(words, server, phrase, exit_label="exit"):
    """Print a command, run it, print its output, its exit code and the
    server's log lines about it (read up to `phrase`); return (run, lines)."""
    screen.command(words)
    done = run(words, timeout=30)
    screen.output(done.stdout + done.stderr)
    screen.print(f"   ({exit_label} {done.returncode})")
    lines = server.case_lines(phrase)
    for line in lines:
        screen.say(line, "server log: ")
    return done, lines


def run_curl(words, server, scenario):
    """Run a curl command, print it, its output and the server's log line;
    return curl's run."""
    done, lines = run_shown(words, server, scenario.server_says, "curl exit")
    if done.returncode == 60 and lines[-1].startswith("accepted"):
        screen.why("curl checks the server's name itself, after the handshake has completed: "
                   "so server.py logged 'accepted', and then curl hung up without a request.")
    return done


def skipped_case(scenario):
    """A Result for a scenario this OpenSSL cannot show, and one line saying why."""
    screen.say(f"skipped: this case needs the strict RFC 5280 checks of OpenSSL 3.0 or newer, "
               f"and this Python uses {ssl.OPENSSL_VERSION}.")
    return Result(scenario.name, ("needs OpenSSL 3.0+", ""), ("skipped", ""), None)


# --- TLS 1.2 -------------------------------------------------------------
#
# client.py always offers TLS 1.3. To show the same case under TLS 1.2 we
# run client.py's own code (make_client_context, fetch) with its context
# limited to TLS 1.2, and print the one line client.py would print; then the
# two real tools that can be limited to it: openssl s_client -tls1_2 (whose
# trace shows where the alert came) and curl --tls-max 1.2.

# Said after the first case it explains: the first about a missing client
# certificate only, the second about any case the server refuses.
TLS12_NO_CERTIFICATE = ("TLS 1.2 has no certificate_required alert (TLS 1.3 added it, RFC 8446 "
                        "6.2), so a TLS 1.2 server that gets no client certificate sends "
                        "handshake_failure (RFC 5246 7.4.6).")
TLS12_VERDICT = ("Under TLS 1.2 the server's verdict on the client's certificate arrives inside "
                 "the handshake, before the client sends its request.")


def fetch_tls12(scenario, server, certs):
    """Run client.py's code for a case, its context limited to TLS 1.2;
    return (the line client.py would print, its outcome as observe_client says it)."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import client                                   # the project's client, as a library
    args = client.parse_args(fill(scenario.client, certs, server.port))
    try:
        context = client.make_client_context(args.cacert, args.cert, args.key)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        status, body = client.fetch(args.url, context, args.timeout)
    except client.Failure as failure:
        return f"error: {failure.label}: {failure.message}", failure.label
    if not 200 <= status < 300:
        line = client.http_error(status, body)
        return line, line[len("error: "):].split(":", 1)[0]
    return body.rstrip("\n"), "ok"


# What client.py says under TLS 1.2 where it differs from TLS 1.3.
TLS12_CLIENT = {"no-client-cert": "handshake failed"}


def rerun_tls12(scenario, server, certs, opts):
    """Replay a case with the client limited to TLS 1.2; print where the
    handshake ended and what curl says. Return a Result for the table."""
    screen.print()
    screen.say("The same case, with the client limited to TLS 1.2:", code="1")
    screen.say("client.py's own code (make_client_context, then fetch), its context limited "
               "with context.maximum_version = ssl.TLSVersion.TLSv1_2, prints:")
    server.forget_old_lines()
    line, said = fetch_tls12(scenario, server, certs)
    screen.output(line)
    for log in server.case_lines(scenario.server_says):
        screen.say(log, "server log: ")
    steps = trace_case(scenario, server, certs, "1.2", opts)
    sender, alert = first_fatal_alert(steps)
    observed = [f"client.py: {said}", f"alert: {sender} sends {alert}" if alert else "alert: none"]
    if opts.curl:
        words = ["curl", "-sS", "--tls-max", "1.2"] + fill(scenario.client, certs, server.port)
        done = run_curl(words, server, scenario)
        said = re.search(r"alert ([a-z ]+?)(?:,|$)", done.stderr, re.M)
        observed.append(f"curl: exit {done.returncode}"
                        + (f", alert {said.group(1).replace(' ', '_')}" if said else ""))
        expired = scenario.tls12[1] == "certificate_expired" and sender == "server"
        if expired and done.returncode == 60:
            screen.why("curl exits 60 and says it failed to verify the legitimacy of the "
                       "server, but the server's certificate was fine: the server sent "
                       "certificate_expired about the client's certificate, and curl files "
                       "that alert under its own check of the server. Trust the server's log.")
    said = []                                   # after the output it explains, once each
    if scenario.tls12[1] == "handshake_failure" and "tls12-no-cert" not in introduced:
        introduced.add("tls12-no-cert")
        said.append(TLS12_NO_CERTIFICATE)
    if scenario.tls12[0] == "server" and "tls12-verdict" not in introduced:
        introduced.add("tls12-verdict")
        said.append(TLS12_VERDICT)
    if said:
        screen.why(" ".join(said))
    want_sender, want_alert, want_exit = scenario.tls12
    expected = [f"client.py: {TLS12_CLIENT.get(scenario.name, scenario.expect)}",
                f"alert: {want_sender} sends {want_alert}" if want_alert else "alert: none"]
    if opts.curl:       # curl names the alert only when it exits 35 (a TLS error)
        named = f", alert {want_alert}" if want_exit == 35 else ""
        expected.append(f"curl: exit {want_exit}{named}")
    ok = observed == expected
    return Result("  + TLS 1.2", tuple(expected), tuple(observed), ok)


# --- the Markdown table --------------------------------------------------
#
# The README's failure-gallery table is this function's output, from real
# runs (--markdown), so the README cannot quote a message the code does not
# print: tests/test_demo.py compares the two.

MARKDOWN_HEADER = ["scenario", "what the student does", "client.py says", "server logs",
                   "cause", "fix"]


def client_says(proc):
    """client.py's outcome in a short cell: its greeting, or its error label and exit code."""
    if proc.returncode == 0:
        return f"`{(proc.stdout.strip().splitlines() or [''])[0]}`"
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if last.startswith("error: "):
        last = "error: " + last[len("error: "):].split(":", 1)[0]
    return f"`{last}` (exit {proc.returncode})"


def server_logs(lines):
    """The server's verdict in a short cell: the log line, with '...' for
    the client's address and for a closing parenthesis."""
    line = lines[-1]
    line = re.sub(r"^(\w+) \S+:\d+", r"\1 ...", line)
    line = re.sub(r" \([^()]*\)", " (...)", line)
    return f"`{line}`"


def markdown_table(runs):
    """The gallery table as Markdown lines, one row per CaseRun."""
    lines = ["| " + " | ".join(MARKDOWN_HEADER) + " |", "|" + "---|" * len(MARKDOWN_HEADER)]
    for run_ in runs:
        s = SCENARIO_BY_NAME[run_.result.name]
        cells = [f"`{s.name}`", s.does, client_says(run_.client), server_logs(run_.server_lines),
                 s.cause, s.fix]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


