#!/usr/bin/env python3
"""mtls_demo.py: the mTLS story, run for real and explained.

Builds the certificates if they are missing (make), starts server.py as its
own process, then runs each case the way a student would type it: the exact
command, its real output, the line the server logged about it, and why it
happened. It ends with a table of what each case should do and what it did,
and exits 0 only if every case matched.

Run:   python3 mtls_demo.py                    the three basic cases
       python3 mtls_demo.py NAME [NAME ...]    these scenarios / exhibits, in that order
       python3 mtls_demo.py --all              every failure-gallery scenario (and successes)
       python3 mtls_demo.py --lesson --pause   the classroom path (six cases)
       python3 mtls_demo.py --mistakes         the mistakes gallery (mistakes/gallery.py)
       python3 mtls_demo.py --list             every name, one line each
       python3 mtls_demo.py --check --cacert CA [--cert C [--key K]] [URL]
       python3 mtls_demo.py --help             all options, with examples

Reads:  certs/ (made by the Makefile); runs server.py, client.py, curl and
        openssl as subprocesses, exactly as shown on screen, from the folder
        you run it in (so every printed command pastes as it is).

This file is the story: which cases to run (choose_plan), one case
(run_case), all of them and the closing table (run_plan), main. The pieces
it tells it with live in demo/ (see demo/__init__.py): the scenarios and
the lesson as data, the terminal, the servers, the wire views, the command
line and --check. The mistakes gallery (mistakes/gallery.py) is imported
only when an exhibit is asked for; it uses demo/ and never this file.
"""

import sys

# Before anything newer than Python 3.6 runs: one line, not a traceback.
if sys.version_info < (3, 9):
    sys.stderr.write("error: unsupported Python: mtls_demo.py needs Python 3.9+ (this is %d.%d) "
                     "-- run it with python3.9 or newer\n" % sys.version_info[:2])
    sys.exit(2)

# After the version check: the pieces the story is told with (demo/).
import difflib                 # noqa: E402
import importlib               # noqa: E402
import os                      # noqa: E402
import shlex                   # noqa: E402
import shutil                  # noqa: E402

from demo.cases import (CaseRun, curl_intro, fix_command, markdown_table,      # noqa: E402
                        observe_client, rerun_tls12, run_curl, run_shown, server_command,
                        skipped_case, summarize_log_line)
from demo.commands import (ROOT, DemoError, fill, program, run_guarded,      # noqa: E402
                           script, shown_path, shown_python)
from demo.options import parse_args                                           # noqa: E402
from demo.scenarios import (ARTICLE_CASES, DEMOS, LESSON, LESSON_INTRO,        # noqa: E402
                            SCENARIO_BY_NAME, SCENARIOS, STRICT_CHECKS)
from demo.servers import ServerProcess, ensure_certificates, set_make_run     # noqa: E402
from demo.terminal import (LESSON_TABLE_WIDTH, Pauser, Result, introduced,     # noqa: E402
                           print_table, screen, terminal_width)
from demo.wire import cleartext_case, trace_case                              # noqa: E402

GALLERY_FILE = os.path.join(ROOT, "mistakes", "gallery.py")


# --- which cases ---------------------------------------------------------
#
# Scenarios and demonstrations are data (demo/scenarios.py). Wrong code
# lives apart, in mistakes/, and is run through mistakes/gallery.py
# (EXHIBITS, run_exhibit): we import it only when an exhibit is asked for.

def load_gallery():
    """mistakes/gallery.py as a module."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    try:
        return importlib.import_module("mistakes.gallery")
    except Exception as exc:             # its own bug: one line, not a traceback
        raise DemoError("broken gallery", f"mistakes/gallery.py does not import ({exc!r})",
                        f"run {shown_python()} {shown_path(GALLERY_FILE)} to see why")


def list_names():
    """Print every scenario, demonstration and exhibit, one line each."""
    exhibits = [(e.name, e.title) for e in load_gallery().EXHIBITS]
    entries = [(s.name, s.title) for s in SCENARIOS] + list(DEMOS.items()) + exhibits
    width = max(len(name) for name, _ in entries)
    for name, title in entries:
        screen.say(title, f"{name:{width}}  ")
    return 0


def resolve_names(names):
    """Check each name; return [(kind, name)] in the order given, kind being
    'scenario', 'demo' or 'exhibit'."""
    plan, exhibits = [], None
    for name in names:
        if name in SCENARIO_BY_NAME:
            plan.append(("scenario", name))
        elif name in DEMOS:
            plan.append(("demo", name))
        else:
            exhibits = exhibits or [e.name for e in load_gallery().EXHIBITS]
            if name not in exhibits:
                known = list(SCENARIO_BY_NAME) + list(DEMOS) + exhibits
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise DemoError("unknown name", f"{name!r} is not a scenario or an exhibit",
                                f"{hint}see {program()} --list")
            plan.append(("exhibit", name))
    return plan


def choose_plan(args):
    """The cases to run, in order, as [(kind, name)]."""
    if args.mode == "all":
        return [("scenario", s.name) for s in SCENARIOS]
    if args.mode == "lesson":
        return [("scenario", lesson.name) for lesson in LESSON]
    if args.mode == "mistakes":
        return [("exhibit", e.name) for e in load_gallery().EXHIBITS]
    if args.names:
        return resolve_names(args.names)
    if args.markdown:
        return [("scenario", s.name) for s in SCENARIOS]
    return [("scenario", name) for name in ARTICLE_CASES]


# --- one case ------------------------------------------------------------
#
# The student's command and its real output, the server's log line about
# it, then why (the same request with curl, and the handshake drawn, when
# asked); the pieces are in demo/cases.py and demo/wire.py.

def explain(scenario, certs, lesson=None):
    """Say why a case went as it did: its why: line, or in the lesson the
    lesson's own summary (one explanation, not two); then its fix command."""
    if lesson is None:
        screen.why(scenario.why)
    else:
        label = "What you just saw: "
        for i, line in enumerate(lesson.saw):
            screen.say(line, label if i == 0 else " " * len(label), code="1" if i == 0 else None)
    command = fix_command(scenario, certs)
    if command:
        screen.command(command)


def run_case(scenario, server, certs, opts, lesson=None):
    """Run one scenario, print what happened and why (in the lesson, what
    you just saw); return a CaseRun."""
    server.wait_ready()
    server.show()
    server.forget_old_lines()
    words = script("client.py") + fill(scenario.client, certs, server.port)
    proc, server_lines = run_shown(words, server, scenario.server_says)
    if opts.curl and scenario.curl:
        curl_words = ["curl", "-sS"] + fill(scenario.curl, certs, server.port)
        screen.say(curl_intro(lesson is not None))
        run_curl(curl_words, server, scenario)
    if opts.trace or opts.raw_trace:
        trace_case(scenario, server, certs, "1.3", opts)
    observed = observe_client(proc)
    server_line = server_lines[-1]
    ok = observed == scenario.expect and scenario.server_says in server_line
    if ok:
        explain(scenario, certs, lesson)
    else:                   # the explanation of what should have happened would mislead
        screen.why(f"not what this case shows: it should end with the client saying "
                   f"'{scenario.expect}' and the server '{scenario.server_says}', so its "
                   f"explanation is left out. Read the messages above: they say what happened.")
    tls12 = rerun_tls12(scenario, server, certs, opts) if opts.tls12 else None

    result = Result(scenario.name,
                    (f"client: {scenario.expect}", f"server: {scenario.server_says}"),
                    (f"client: {observed}", f"server: {summarize_log_line(server_line)}"), ok)
    return CaseRun(result, words, proc, server_lines, tls12)


# --- every case, then the table ------------------------------------------

def run_plan(plan, args):
    """Run the planned cases, print the table; return the exit code."""
    certs = shown_path(args.certs)
    kinds = {kind for kind, _ in plan}
    names = [name for _, name in plan]
    article_only = kinds == {"scenario"} and set(names) <= set(ARTICLE_CASES)
    ensure_certificates(certs, "certs" if article_only or kinds == {"demo"} else "scenarios",
                        args.verbose, load_gallery() if "exhibit" in kinds else None)
    args.no_curl = args.no_curl or args.markdown          # the table has no curl column
    args.curl = not args.no_curl and shutil.which("curl") is not None
    if not args.no_curl and not args.curl:
        screen.say("note: curl is not installed, so the curl commands are left out "
                   "(apt-get install curl; --no-curl hides this note).")
    if args.tls12 and shutil.which("openssl") is None:
        screen.say("note: openssl is not installed, so the TLS 1.2 replay shows curl only.")

    if args.mode == "lesson":
        screen.print()
        screen.say(LESSON_INTRO.format(certs=certs))
    results, runs, pauser = [], [], Pauser(args.pause)
    lessons = {lesson.name: lesson for lesson in LESSON}
    # Start every server the plan needs at once: they boot in parallel.
    # Inside the try, with nothing printed before it: a pipe closed early
    # (| head) or a Ctrl-C must still reach the finally that stops them.
    # With --port N, the first server listens on N, the next on N+1, ...
    servers = {}
    set_make_run(certs, args.port)
    try:
        for kind, name in plan:
            options = tuple(server_command(SCENARIO_BY_NAME[name], certs)) if kind == "scenario" \
                else tuple(server_command(SCENARIO_BY_NAME["success"], certs))
            if kind != "exhibit" and options not in servers:
                port = args.port + len(servers) if args.port else 0
                servers[options] = ServerProcess(options, port)
        for number, (kind, name) in enumerate(plan, 1):
            if number > 1 and args.mode != "lesson":
                pauser.wait(f"for case {number} of {len(plan)}")
            if kind == "exhibit":
                gallery = load_gallery()
                result = gallery.run_exhibit(name, os.path.abspath(args.certs), width=screen.width)
                results.append(Result(*result))
                continue
            if kind == "demo":
                screen.heading(f"{name}: {DEMOS[name]}")
                server = servers[tuple(server_command(SCENARIO_BY_NAME["success"], certs))]
                results.append(cleartext_case(server, certs))
                continue
            scenario = SCENARIO_BY_NAME[name]
            if args.mode == "lesson":        # what is about to happen, then the question
                lesson = lessons[name]
                screen.heading(f"Case {number} of {len(plan)}: {lesson.heading} ({name})")
                screen.say(lesson.setup[0].upper() + lesson.setup[1:], "Setup: ")
                screen.say(lesson.ask[0].upper() + lesson.ask[1:], "Ask the class: ", code="1")
                pauser.wait("to run it")
            else:
                screen.heading(f"{name}: {scenario.title}")
            if scenario.strict and not STRICT_CHECKS:
                results.append(skipped_case(scenario))
                continue
            case = run_case(scenario, servers[tuple(server_command(scenario, certs))], certs,
                            args, lessons[name] if args.mode == "lesson" else None)
            runs.append(case)
            results += [case.result] + ([case.tls12] if case.tls12 else [])
    finally:
        for server in servers.values():
            server.stop()
    if args.markdown:
        screen.quiet = False
        for line in markdown_table(runs):
            print(line)
        return 0 if all(r.ok is not False for r in results) else 1
    print_table(results, LESSON_TABLE_WIDTH if args.mode == "lesson" else None)
    matched = sum(r.ok is True for r in results)
    skipped = sum(r.ok is None for r in results)
    counted = len(results) - skipped
    screen.print()
    screen.say(f"{matched} of {counted} cases behaved as expected."
               + (f" {skipped} skipped (see above)." if skipped else ""))
    if args.mode == "lesson":
        default = os.path.abspath(args.certs) == os.path.join(ROOT, "certs")
        p = program() + ("" if default else f" --certs {shlex.quote(certs)}") + \
            (f" --port {args.port}" if args.port else "")
        screen.say(f"Next: {p} --all (every scenario), --trace NAME (the handshake, drawn), "
                   f"--tls1.2 NAME (the same under TLS 1.2).")
    return 0 if matched == counted else 1


# --- main ----------------------------------------------------------------

def run_mode(args):
    """Run what the command line asked for; return the exit code."""
    if args.mode == "list":
        return list_names()
    if args.mode == "check":
        from demo.check import check_certificates       # only --check needs it
        return check_certificates(args.cacert, args.cert, args.key,
                                  args.urls[0] if args.urls else None, width=screen.width)
    plan = choose_plan(args)
    others = [name for kind, name in plan if kind != "scenario"]
    if args.markdown and others:
        raise DemoError("bad option", f"--markdown makes the failure-gallery table, of "
                        f"scenarios only, and {others[0]!r} is not one",
                        f"leave it out: {program()} --markdown "
                        + " ".join(n for k, n in plan if k == "scenario"))
    # --tls1.2 shows both differences: the verdict inside the handshake
    # (each case's rerun), and the client certificate in clear (the relay).
    if args.tls12 and not args.markdown and ("demo", "cleartext-cert") not in plan:
        plan.append(("demo", "cleartext-cert"))
    return run_plan(plan, args)


def main(argv=None):
    """Run the chosen cases and print the table; exit 0 if all matched."""
    args = parse_args(argv)
    introduced.clear()
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")      # see no-color.org
    screen.setup(args.width or terminal_width(), colour, quiet=args.markdown)
    return run_guarded(lambda: run_mode(args), DemoError,
                       "\ninterrupted: stopped by Ctrl-C; the demo's servers are stopped")


if __name__ == "__main__":
    sys.exit(main())
