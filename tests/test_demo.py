"""mtls_demo.py as a student and an instructor meet it.

The command line (modes, names in the order given, refusals in one line),
output that fits 100 columns and wraps without cutting, printed commands
that paste from another folder, the handshake ladder, TLS 1.2 beside
TLS 1.3, the relay that finds a TLS 1.2 client certificate on the wire,
and the Markdown gallery table (whole in docs/lesson-notes.md, cut in the README).

Each demo run here is a real subprocess with real servers; the runs that
several tests read are made once per class.
"""

import argparse
import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

from tests.support import PYTHON, ROOT, RunningServer, path, pki, rolled_pki

import mtls_demo
from demo import cases, commands, options, scenarios, servers, terminal, wire

DEMO = os.path.join(ROOT, "mtls_demo.py")
ANSI = re.compile(r"\x1b\[")


def demo(*args, cwd=ROOT, env=None, timeout=90, stdin=subprocess.DEVNULL):
    """Run mtls_demo.py as a user would, at 100 columns, without colour."""
    environ = dict(os.environ, COLUMNS="100", NO_COLOR="1")
    environ.update(env or {})
    return subprocess.run([PYTHON, DEMO] + list(args), cwd=cwd, env=environ, stdin=stdin,
                          capture_output=True, text=True, timeout=timeout)


def unwrap(text):
    """Join our wrapped lines back: drop the '   |   ' and indentation of
    continuation lines and collapse all whitespace."""
    text = re.sub(r"\n {3}\| {3}", " ", text)
    return re.sub(r"\s+", " ", text)


def printed_commands(output, program):
    """The commands the demo printed ('$ ...' plus ' \\' continuations)
    whose first words end with `program`, as lists of words."""
    commands, current = [], None
    for line in output.splitlines():
        if current is not None:
            current += " " + line.strip()
        elif line.startswith("$ "):
            current = line[2:]
        if current is not None and not current.endswith(" \\"):
            words = shlex.split(current)
            if any(w.endswith(program) for w in words[:2]):
                commands.append(words)
            current = None
        elif current is not None:
            current = current[:-2]
    return commands


class LessonRunTest(unittest.TestCase):
    """python3 mtls_demo.py --lesson --pause, piped, at COLUMNS=100 under NO_COLOR."""

    @classmethod
    def setUpClass(cls):
        cls.done = demo("--lesson", "--pause", "--certs", pki())

    def test_lesson_runs_six_cases_in_teaching_order(self):
        self.assertEqual(self.done.returncode, 0, self.done.stdout[-3000:] + self.done.stderr)
        headings = re.findall(r"^== Case (\d) of 6: .* \(([a-z-]+)\)$", self.done.stdout, re.M)
        self.assertEqual([name for _, name in headings], [l.name for l in scenarios.LESSON])
        self.assertEqual([n for n, _ in headings], ["1", "2", "3", "4", "5", "6"])

    def test_each_case_ends_with_its_lines_of_what_you_just_saw(self):
        lines = self.done.stdout.splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("What you just saw: ")]
        self.assertEqual(len(starts), 6)
        for i, lesson in zip(starts, scenarios.LESSON):
            shown = lines[i:i + len(lesson.saw) + 1]
            self.assertEqual([line[19:] for line in shown[:-1]], list(lesson.saw))
            self.assertTrue(all(line.startswith(" " * 19) for line in shown[1:-1]), shown)
            self.assertFalse(shown[-1].startswith(" " * 19), "more lines than the lesson has")

    def case(self, name):
        """The part of the lesson's output about one case."""
        return unwrap(self.done.stdout.split(f"({name})\n", 1)[1].split("\n== ", 1)[0])

    def test_each_case_is_explained_once_by_its_summary(self):
        """In the lesson a case's summary is its explanation: no why: beside it."""
        self.assertNotRegex(self.done.stdout, r"(?m)^why: ")
        for name in ("other-ca", "expired-client"):
            self.assertIn("The alert does not say why; the server's log does.", self.case(name))

    def test_intro_is_three_lines_and_points_to_the_readme(self):
        intro = self.done.stdout.split("\n\n", 1)[1].split("\n\n== Case 1", 1)[0]
        self.assertLessEqual(len(intro.splitlines()), 3, intro)
        self.assertIn("README, section 2", intro)

    def test_the_walkthrough_is_not_named_and_next_is_said_once(self):
        self.assertNotIn("walkthrough", self.done.stdout)
        self.assertNotIn("Mutual TLS Authentication", self.done.stdout)
        if shutil.which("curl"):
            self.assertIn("The same request with curl, for comparison:", self.done.stdout)
        self.assertEqual(len(re.findall(r"(?m)^Next: ", self.done.stdout)), 1)
        shown = subprocess.run(["make", "-C", ROOT, "--no-print-directory", "-n", "demo"],
                               capture_output=True, text=True, timeout=30).stdout
        self.assertNotIn("Next:", shown, "make demo adds no second Next: line")

    def test_identity_by_san_not_cn_is_said_where_the_uri_is_shown(self):
        part = self.case("not-authorized")
        self.assertIn("uri:spiffe://example.org/other-client is not on the allow-list", part)
        self.assertIn("names a client by its subjectAltName when it has one", part)
        named = re.search(r"by its CN \(CN=other-client in (make inspect[^)]*)\) only when it "
                          r"has none", part)
        self.assertIsNotNone(named, part)
        # The command it names really lists that certificate.
        listed = subprocess.run(["make", "-C", ROOT, "--no-print-directory", "-s",
                                 *named.group(1).split()[1:], f"CERTS={pki()}"],
                                capture_output=True, text=True, timeout=60)
        self.assertIn(" CN=other-client by CN=my-ca", listed.stdout, listed.stderr)

    def test_the_expired_client_fix_renews_what_was_shown(self):
        """The openssl command printed after expired-client's summary, on its
        own '$ ' line: it pastes, and signs the client's key anew, by our CA,
        into a certificate that is in date (run for real on a copy of the PKI)."""
        why = scenarios.SCENARIO_BY_NAME["expired-client"].why
        self.assertNotIn("rm certs/client.crt", why)
        self.assertNotIn("openssl", why, "the command is on its own line, not in the prose")
        self.assertIn("{certs}/expired-client.crt", scenarios.SCENARIO_BY_NAME["expired-client"].client)
        part = self.done.stdout.split("(expired-client)\n", 1)[1].split("\n== ", 1)[0]
        (words,) = printed_commands(part, "openssl")
        self.assertEqual(words, cases.fix_command(scenarios.SCENARIO_BY_NAME["expired-client"],
                                                      pki()))
        words = cases.fix_command(scenarios.SCENARIO_BY_NAME["expired-client"], "certs")
        words[words.index("-extfile") + 1] = "openssl.cnf"
        command = shlex.join(words)
        with tempfile.TemporaryDirectory() as tmp:
            os.mkdir(os.path.join(tmp, "certs"))
            for name in ("ca.crt", "ca.key", "client.csr", "client.key"):
                shutil.copy(path(name), os.path.join(tmp, "certs", name))
            shutil.copy(os.path.join(ROOT, "openssl.cnf"), tmp)
            done = subprocess.run(shlex.split(command) + ["-CAcreateserial"], cwd=tmp,
                                  capture_output=True, text=True, timeout=30)
            self.assertEqual(done.returncode, 0, done.stderr)
            new = re.search(r"-out (\S+)", command).group(1)
            verify = subprocess.run(["openssl", "verify", "-purpose", "sslclient", "-CAfile",
                                     "certs/ca.crt", new], cwd=tmp, capture_output=True,
                                    text=True, timeout=30)
            self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
            keys = [subprocess.run(["openssl", kind, "-in", f, "-noout", "-pubkey"] if
                                   kind == "x509" else ["openssl", "pkey", "-in", f, "-pubout"],
                                   cwd=tmp, capture_output=True, text=True).stdout
                    for kind, f in (("x509", new), ("pkey", "certs/client.key"))]
            self.assertEqual(keys[0], keys[1], "the renewed certificate is for the same key")

    def test_no_line_is_wider_than_100_columns_and_no_colour(self):
        for line in self.done.stdout.splitlines():
            self.assertLessEqual(len(line), 100, line)
        self.assertIsNone(ANSI.search(self.done.stdout), "colour under NO_COLOR")

    def test_the_closing_table_fits_an_80_column_projector(self):
        """The lesson is projected: its table stays under 80 columns (issue 21)."""
        table = self.done.stdout.split("\ncase ", 1)[1].split("\n\n", 1)[0].splitlines()
        self.assertGreater(len(table), 12)
        self.assertLessEqual(max(len(line) for line in table), 79, "\n".join(table))

    def test_pause_without_a_terminal_says_so_once_and_does_not_hang(self):
        self.assertEqual(self.done.stdout.count("input is not a terminal"), 1)
        self.assertNotIn("press Enter", self.done.stdout)

    def test_certificate_build_is_one_line(self):
        self.assertEqual(len(re.findall(r"^Certificates: ", self.done.stdout, re.M)), 1)
        self.assertNotRegex(self.done.stdout, r"(?m)^   \| openssl ")


class SubsetRunTest(unittest.TestCase):
    """Named scenarios with --trace --tls1.2: order kept, 100 columns, nothing cut."""

    NAMES = ["wrong-hostname", "no-client-cert", "success", "expired-client"]

    @classmethod
    def setUpClass(cls):
        cls.done = demo(*cls.NAMES, "--trace", "--tls1.2", "--certs", pki())

    def test_every_case_and_its_tls12_rerun_behaved_as_expected(self):
        self.assertEqual(self.done.returncode, 0, self.done.stdout[-3000:] + self.done.stderr)
        self.assertIn("9 of 9 cases behaved as expected", self.done.stdout)   # 4 + 4 + relay

    def test_names_run_in_the_order_given(self):
        headings = re.findall(r"^== ([a-z-]+): ", self.done.stdout, re.M)
        self.assertEqual(headings, self.NAMES + ["cleartext-cert"])    # --tls1.2 adds the relay
        table = re.findall(r"^([a-z-]+) +\| ", self.done.stdout, re.M)
        self.assertEqual(table, ["case"] + self.NAMES + ["cleartext-cert"])

    def test_no_line_is_wider_than_100_columns(self):
        for line in self.done.stdout.splitlines():
            self.assertLessEqual(len(line), 100, line)

    def test_long_lines_are_wrapped_not_cut(self):
        text = unwrap(self.done.stdout)
        for name in self.NAMES:
            why = scenarios.SCENARIO_BY_NAME[name].why
            self.assertIn("why: " + re.sub(r"\s+", " ", why), text)
        # client.py's own long error line, joined back, is whole.
        self.assertIn("if it is in date, the server's CA (its --ca) or CRL has expired: see its "
                      "log", text)

    def test_expired_client_under_tls12_shows_curl_blaming_the_server(self):
        if not shutil.which("curl"):
            self.skipTest("curl not installed: apt-get install curl")
        part = self.done.stdout.split("== expired-client")[1]
        self.assertIn("(curl exit 60)", part)
        self.assertIn("files that alert under its own check of the server", unwrap(part))

    def test_tls12_runs_client_py_own_code_and_prints_its_line(self):
        """The TLS 1.2 rerun is client.py's code: the line it prints is the
        one client.py prints for handshake_failure, and the server logs it."""
        part = unwrap(self.done.stdout.split("== no-client-cert")[1].split("== success")[0])
        tls12 = part.split("with the client limited to TLS 1.2:")[1]
        self.assertIn("context.maximum_version = ssl.TLSVersion.TLSv1_2, prints: | error: "
                      "handshake failed: the server ended the handshake with handshake_failure",
                      tls12)
        self.assertIn("server log: rejected", tls12.split("Replay with openssl")[0])
        self.assertRegex(self.done.stdout, r"(?m)^  \+ TLS 1\.2 +\| client\.py: handshake failed +"
                                           r"\| client\.py: handshake failed +\|")

    def test_why_the_tls12_alert_differs_is_said_once_with_its_rfcs(self):
        """Once, after the output it explains (the first rerun's), and no stutter."""
        text = unwrap(self.done.stdout)
        self.assertEqual(text.count("TLS 1.2 has no certificate_required alert"), 1)
        self.assertIn("why: TLS 1.2 has no certificate_required alert", text)
        self.assertNotIn("Why the alerts differ", text)
        rerun = text.split("with the client limited to TLS 1.2:", 1)[1]
        self.assertLess(rerun.index("prints:"), rerun.index("no certificate_required alert"))
        self.assertIn("sends handshake_failure (RFC 5246 7.4.6)", text)
        self.assertIn("RFC 8446 6.2", text)

    def test_the_missing_certificate_alert_is_explained_where_it_happens(self):
        """TLS 1.2's handshake_failure for a missing certificate is explained after
        no-client-cert's rerun, never after another case's (issue 21: it followed
        expired-client's own explanation)."""
        parts = {name: unwrap(self.done.stdout.split(f"== {name}:", 1)[1].split("\n== ", 1)[0])
                 for name in self.NAMES}
        self.assertIn("TLS 1.2 has no certificate_required alert", parts["no-client-cert"])
        for name in ("wrong-hostname", "success", "expired-client"):
            self.assertNotIn("certificate_required", parts[name], name)

    def test_the_walkthrough_is_called_the_walkthrough_not_by_its_title(self):
        if not shutil.which("curl"):
            self.skipTest("curl not installed: apt-get install curl")
        text = unwrap(self.done.stdout)
        self.assertNotIn("Mutual TLS Authentication (mTLS) De-Mystified", text)
        self.assertIn("The walkthrough's curl command, for comparison:", text)
        self.assertNotIn("article", text.replace("certs/article", ""))

    def test_tls12_moves_the_rejection_into_the_handshake(self):
        part = unwrap(self.done.stdout.split("== no-client-cert")[1].split("== success")[0])
        self.assertIn("TLS 1.3: the client's handshake was complete; the server sent the alert "
                      "certificate_required afterwards", part)
        self.assertIn("TLS 1.2: the server sent the alert handshake_failure during the "
                      "handshake, which never completed", part)


class CommandLineTest(unittest.TestCase):
    """One command line: modes exclude each other, and nothing is silently ignored."""

    def refused(self, *args):
        done = demo(*args, timeout=30)
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        lines = done.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertRegex(lines[0], r"^error: [a-z .0-9-]+: .+ -- .+")
        self.assertNotIn("Traceback", done.stderr)
        self.assertEqual(done.stdout, "")
        return lines[0]

    def test_list_or_all_with_a_name_is_refused(self):
        self.assertIn("--list takes no NAME (got 'success')", self.refused("--list", "success"))
        self.assertIn("--all takes no NAME", self.refused("--all", "expired-client"))
        self.assertIn("--lesson takes no NAME", self.refused("success", "--lesson"))

    def test_options_are_not_names_and_urls_belong_to_check(self):
        self.assertIn("bad option", self.refused("--no-such-option"))
        self.assertIn("only --check takes", self.refused("https://localhost:3000/"))
        self.assertIn("belongs to --check", self.refused("--cacert", "x.crt", "success"))
        self.assertIn("two modes", self.refused("--all", "--lesson"))
        self.assertIn("unknown name: 'expird-client'", self.refused("expird-client"))
        self.assertIn("'abc' is not a width to read in -- use a number of columns, at least 20",
                      self.refused("--list", "--width", "abc"))

    def test_check_is_wired(self):
        """mtls_demo.py --check runs demo/check.py's checks (one line each, a summary)."""
        done = demo("--check", "--cacert", path("ca.crt"), timeout=30)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertRegex(done.stdout, r"(?m)^summary: 0 FAIL, \d+ warn, [1-9]\d* ok$")

    def test_list_names_every_scenario_once(self):
        done = demo("--list")
        self.assertEqual(done.returncode, 0)
        listed = [line.split()[0] for line in done.stdout.splitlines() if line and line[0] != "("]
        self.assertEqual(listed[:len(scenarios.SCENARIOS)], [s.name for s in scenarios.SCENARIOS])
        self.assertIn("cleartext-cert", listed)

    def test_help_documents_the_whole_command_line(self):
        done = demo("--help")
        for word in ["--lesson", "--pause", "--mistakes", "--check", "--tls1.2", "--trace",
                     "--raw-trace", "--markdown", "--width", "--list", "examples:"]:
            self.assertIn(word, done.stdout)

    def test_old_python_says_needs_3_9_in_one_line(self):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() \
            if shutil.which("pyenv") else ""
        olds = [os.path.join(root, "versions", v, "bin", "python3") for v in
                (sorted(os.listdir(os.path.join(root, "versions"))) if root and
                 os.path.isdir(os.path.join(root, "versions")) else [])
                if re.match(r"3\.[678]\.", v)]
        olds = [p for p in olds if os.path.exists(p)]
        if not olds:
            self.skipTest("no Python 3.6-3.8 installed (pyenv install 3.8)")
        for old in olds:
            done = subprocess.run([old, DEMO, "--list"], capture_output=True, text=True, timeout=30)
            self.assertEqual(done.returncode, 2, old)
            self.assertEqual(done.stderr, "error: unsupported Python: mtls_demo.py needs Python "
                             f"3.9+ (this is {os.path.basename(os.path.dirname(os.path.dirname(old)))[:3]}) "
                             "-- run it with python3.9 or newer\n")


class Keyboard(io.StringIO):
    """Lines typed at a terminal: what --pause reads when someone presses Enter."""

    def isatty(self):
        return True


class NewcomerTest(unittest.TestCase):
    """The first hour (issue 21): a rotated folder, a failed case, the port chosen,
    a typo'd option, and the lesson's pause before each case."""

    def test_a_rotated_folder_is_refused_untouched_with_the_way_back_to_the_lesson(self):
        """After make ca-2 and rollover-phase1..3 every case would fail for that
        reason: one line says so, nothing is added to the folder, and the
        command it suggests runs the lesson on a folder of its own."""
        rolled = rolled_pki()
        before = sorted(os.listdir(rolled))
        done = demo("success", "--no-curl", "--certs", rolled)
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertIn(f"error: certificates rotated: {rolled}/server.crt is signed by my-ca-2, "
                      f"not by {rolled}/ca.crt (my-ca)", done.stderr)
        self.assertEqual(sorted(os.listdir(rolled)), before, "make added nothing to it")
        command = re.search(r"own \(it builds the certificates\): (.*?); or", done.stderr).group(1)
        words = shlex.split(command)
        self.assertEqual(words[2:], ["success", "--no-curl", "--certs", f"{rolled}-lesson"])
        again = demo(*words[2:])
        self.assertEqual(again.returncode, 0, again.stdout[-2000:] + again.stderr)
        self.assertIn("1 of 1 cases behaved as expected", again.stdout)

    def test_the_mistakes_gallery_refuses_a_rotated_folder_too(self):
        """mistakes/gallery.py gave '2 of 9' after the rollover; now the same one line."""
        rolled = rolled_pki()
        done = subprocess.run([PYTHON, os.path.join(ROOT, "mistakes", "gallery.py"), "cert-none",
                               "--certs", rolled], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        self.assertIn("error: certificates rotated: ", done.stderr)
        self.assertIn(f"python3 mistakes/gallery.py cert-none --certs {rolled}-lesson;",
                      done.stderr)
        self.assertNotIn("exhibits as expected", done.stdout)

    def test_a_case_that_fails_is_not_followed_by_the_explanation_of_success(self):
        """success against a rotated folder's server (signed by my-ca-2) fails with
        'server not trusted': its why: would explain a success that did not happen."""
        rolled = rolled_pki()
        scenario = scenarios.SCENARIO_BY_NAME["success"]
        server = servers.ServerProcess(cases.server_command(scenario, rolled))
        opts = argparse.Namespace(curl=False, trace=False, raw_trace=False, tls12=False)
        screen = terminal.screen
        out, saved = io.StringIO(), (screen.width, screen.colour, screen.quiet)
        screen.setup(100)
        try:
            with contextlib.redirect_stdout(out):
                case = mtls_demo.run_case(scenario, server, rolled, opts)
        finally:
            server.stop()
            screen.setup(*saved)
        text = unwrap(out.getvalue())
        self.assertFalse(case.result.ok)
        self.assertIn("error: server not trusted", text)
        self.assertIn("why: not what this case shows", text)
        self.assertNotIn(scenario.why[:60], text)

    def test_the_port_chosen_is_the_port_served_and_a_taken_one_gives_way(self):
        """--port N (make demo passes PORT): the commands show N and the make run
        that serves them; a port already taken (make run) gives way to a free one."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            taken.listen()
            busy = demo("success", "--no-curl", "--certs", pki(), "--port", str(port))
        self.assertEqual(busy.returncode, 0, busy.stdout + busy.stderr)
        self.assertIn(f"Port {port} is taken (by your own make run, perhaps), so the demo used "
                      f"a free one.", busy.stdout)
        done = demo("success", "--no-curl", "--certs", pki(), "--port", str(port))
        if "is taken" in done.stdout:
            self.skipTest(f"port {port} was taken again meanwhile")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        (server,) = printed_commands(done.stdout, "server.py")
        self.assertEqual(server[server.index("--port") + 1], str(port))
        self.assertIn(f"(or start one with make run CERTS={pki()} PORT={port}):", unwrap(done.stdout))

    def test_the_lesson_shows_port_3000_unless_it_is_taken(self):
        """The projected lesson names make run's port, not a random one (issue 21)."""
        self.assertEqual(options.parse_args(["--lesson"]).port, 3000)
        self.assertEqual(options.parse_args(["success"]).port, 0)
        self.assertEqual(options.parse_args(["--lesson", "--port", "42001"]).port, 42001)

    def test_a_mistyped_option_gets_the_option_meant(self):
        done = demo("--lessons", "--pasue")
        self.assertEqual(done.returncode, 2)
        self.assertIn("unknown option '--lessons' -- did you mean --lesson?", done.stderr)

    def test_the_lesson_pause_shows_the_setup_and_the_question_before_the_case_runs(self):
        """--lesson --pause at a terminal: each case's heading, its setup and the
        question to the class come first; Enter runs it, then its result."""
        out, saved = io.StringIO(), sys.stdin
        sys.stdin = Keyboard("\n" * 6)
        try:
            with contextlib.redirect_stdout(out):
                code = mtls_demo.main(["--lesson", "--pause", "--no-curl", "--certs", pki(),
                                       "--width", "100"])
        finally:
            sys.stdin = saved
        self.assertEqual(code, 0, out.getvalue()[-2000:])
        cases = out.getvalue().split("\n== Case ")[1:]
        self.assertEqual(len(cases), 6)
        for part, lesson in zip(cases, scenarios.LESSON):
            order = [part.index("Setup: "), part.index("Ask the class: "),
                     part.index("-- press Enter to run it (Ctrl-C stops) --"),
                     part.index("client.py "), part.index("What you just saw: ")]
            self.assertEqual(order, sorted(order), part)
            self.assertIn(lesson.ask[1:], unwrap(part))


class PasteTest(unittest.TestCase):
    """A printed command pastes: run it from the same folder, get the same result."""

    def test_printed_client_command_pastes_from_another_folder(self):
        folder = os.path.dirname(pki())                    # certs/ is right below it
        done = demo("success", "--no-curl", "--certs", pki(), cwd=folder)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        (command,) = printed_commands(done.stdout, "client.py")
        self.assertIn("certs/client.crt", command, "a path relative to where the user stands")
        with RunningServer() as srv:
            command[-1] = re.sub(r":\d+/", f":{srv.port}/", command[-1])
            pasted = subprocess.run(shlex.join(command), shell=True, cwd=folder,
                                    capture_output=True, text=True, timeout=30)
        self.assertEqual((pasted.returncode, pasted.stdout), (0, "Hello, my-client\n"),
                         pasted.stderr)

    def test_printed_server_and_client_commands_paste_after_the_demo(self):
        """The server command shows the port it really got, so pasting it and
        then the client command, once the demo has stopped its server, works."""
        done = demo("success", "--no-curl", "--certs", pki())
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        (server,) = printed_commands(done.stdout, "server.py")
        (client,) = printed_commands(done.stdout, "client.py")
        port = server[server.index("--port") + 1]
        self.assertNotEqual(port, "0")
        self.assertTrue(client[-1].endswith(f":{port}/"), (server, client))
        self.assertEqual(done.stdout.count("It stops its servers when it ends"), 1)
        server[0] = PYTHON
        proc = subprocess.Popen(server, cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stderr.readline()
            if "address already in use" in first.lower():
                self.skipTest(f"port {port} was taken again meanwhile")
            self.assertIn(f"serving https://localhost:{port}/", first)
            pasted = subprocess.run(shlex.join(client), shell=True, cwd=ROOT,
                                    capture_output=True, text=True, timeout=30)
            self.assertEqual((pasted.returncode, pasted.stdout), (0, "Hello, my-client\n"),
                             pasted.stderr)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            proc.stderr.close()

    def test_server_that_does_not_start_gives_one_error_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            certs = os.path.join(tmp, "certs")
            shutil.copytree(pki(), certs)
            shutil.copy(os.path.join(certs, "client.key"), os.path.join(certs, "server.key"))
            for name in ("server.csr", "server.crt"):          # newer than the key: make keeps them
                os.utime(os.path.join(certs, name))
            done = demo("success", "--no-curl", "--certs", certs)
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertRegex(done.stderr, r"^error: server did not start: ")
        self.assertEqual(done.stderr.count("error:"), 1, "no doubled prefix")

    def test_without_curl_it_says_so_once(self):
        with tempfile.TemporaryDirectory() as tmp:
            for tool in ("make", "openssl", "sh", "grep", "sed", "python3"):
                if shutil.which(tool):
                    os.symlink(shutil.which(tool), os.path.join(tmp, tool))
            done = demo("success", "no-cacert", "--certs", pki(), env={"PATH": tmp})
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertEqual(done.stdout.count("curl is not installed"), 1)
        self.assertNotIn("$ curl", done.stdout)


@unittest.skipUnless(shutil.which("openssl"), "openssl not installed: apt-get install openssl")
class LadderTest(unittest.TestCase):
    """--trace draws the real message sequence of an s_client replay."""

    def replay(self, name, version=None):
        scenario = scenarios.SCENARIO_BY_NAME[name]
        with RunningServer() as srv:
            command = wire.s_client_command(commands.fill(scenario.client, pki(), srv.port),
                                                 version)
            steps, raw = wire.run_trace(command)
        if not steps:
            self.skipTest("this openssl was built without -trace")
        return steps, wire.draw_ladder(steps, 96)

    def test_success_shows_the_certificate_request_and_the_client_proof(self):
        steps, ladder = self.replay("success")
        pairs = [(s.direction, s.message) for s in steps]
        for step in [("->", "ClientHello"), ("<-", "ServerHello"), ("<-", "CertificateRequest"),
                     ("->", "Certificate"), ("->", "CertificateVerify"), ("->", "Finished")]:
            self.assertIn(step, pairs)
        self.assertLess(pairs.index(("<-", "CertificateRequest")),
                        pairs.index(("->", "CertificateVerify")))
        self.assertTrue(any("handshake complete" in line for line in ladder))
        self.assertFalse(any("the failure" in line for line in ladder))
        self.assertTrue(all(len(line) <= 96 for line in ladder))

    def test_a_hello_retry_request_is_labelled_as_one(self):
        """Imported as a module (as here), server.py offers one group: P-256 with an EC
        certificate (or on Python < 3.11), and openssl's first key share is X25519, so the
        server's first reply is a HelloRetryRequest, not a ServerHello. With X25519: one
        ClientHello, one ServerHello. (server.py run as a program offers X25519 always.)"""
        import server
        group = server.make_server_context(*(os.path.join(pki(), name) for name in
                                             ("ca.crt", "server.crt", "server.key"))).groups
        steps, ladder = self.replay("success")
        pairs = [(s.direction, s.message) for s in steps]
        hellos = [p for p in pairs if p[1] in ("ClientHello", "ServerHello", "HelloRetryRequest")]
        if group == "X25519":
            self.assertEqual(hellos, [("->", "ClientHello"), ("<-", "ServerHello")])
            return
        self.assertEqual(hellos, [("->", "ClientHello"), ("<-", "HelloRetryRequest"),
                                  ("->", "ClientHello"), ("<-", "ServerHello")])
        self.assertTrue(any("HelloRetryRequest --|  the server wants a key share for another"
                            in line for line in ladder), ladder)
        self.assertEqual(sum("the server picks the TLS version" in line for line in ladder), 1)

    def test_hello_retry_request_is_found_by_its_random_alone(self):
        """The fixed random of RFC 8446 4.1.3 names a HelloRetryRequest even
        when no second ClientHello follows (a trace cut short)."""
        record = ("Received Record\n  Content Type = Handshake (22)\n    ServerHello, Length=84\n"
                  "      Random:\n        gmt_unix_time=0xCF21AD74\n        random_bytes "
                  "(len=28): E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C\n")
        other = record.replace("0xCF21AD74", "0xCF21AD75")
        self.assertEqual([s.message for s in wire.parse_trace("x\n" + record)],
                         ["HelloRetryRequest"])
        self.assertEqual([s.message for s in wire.parse_trace("x\n" + other)],
                         ["ServerHello"])

    def test_no_client_cert_tls13_alert_sent_by_server_after_the_handshake(self):
        steps, ladder = self.replay("no-client-cert")
        self.assertIn(("<-", "CertificateRequest"), [(s.direction, s.message) for s in steps])
        self.assertIn(("->", "Certificate (empty)"), [(s.direction, s.message) for s in steps])
        (alert,) = [line for line in ladder if "certificate_required" in line]
        self.assertRegex(alert, r"^\|<=+ Alert certificate_required \(fatal\) =+\|  "
                                r"sent by the server: the failure$")
        done = [i for i, line in enumerate(ladder) if "handshake complete" in line]
        self.assertTrue(done and done[0] < ladder.index(alert), "TLS 1.3: late")

    def test_no_client_cert_tls12_alert_inside_the_handshake(self):
        steps, ladder = self.replay("no-client-cert", "1.2")
        self.assertIn(("<-", "ServerHelloDone"), [(s.direction, s.message) for s in steps])
        self.assertEqual(wire.first_fatal_alert(steps), ("server", "handshake_failure"))
        self.assertFalse(any("handshake complete" in line for line in ladder))
        self.assertIn("during the handshake", wire.describe_replay(steps, "1.2"))

    def test_client_side_alert_is_marked_as_sent_by_the_client(self):
        steps, ladder = self.replay("no-cacert")
        self.assertEqual(wire.first_fatal_alert(steps), ("client", "unknown_ca"))
        self.assertTrue(any(line.startswith("|==") and "sent by the client: the failure" in line
                            for line in ladder))


class Tls12OutcomesTest(unittest.TestCase):
    """Each scenario's `tls12` data is what s_client -tls1_2 and curl --tls-max 1.2 meet."""

    def test_every_scenario_under_tls12(self):
        if not shutil.which("openssl"):
            self.skipTest("openssl not installed: apt-get install openssl")
        from tests.test_scenarios import start_server
        curl = shutil.which("curl")
        for scenario in scenarios.SCENARIOS:
            if scenario.strict and not scenarios.STRICT_CHECKS:
                continue
            with start_server(scenario) as srv:
                args = commands.fill(scenario.client, pki(), srv.port)
                steps, raw = wire.run_trace(wire.s_client_command(args, "1.2"))
                if curl:
                    done = subprocess.run(["curl", "-sS", "--tls-max", "1.2"] + args,
                                          capture_output=True, text=True, timeout=30)
            sender, alert, curl_exit = scenario.tls12
            self.assertEqual(wire.first_fatal_alert(steps), (sender, alert), scenario.name)
            if alert:
                self.assertIn("during the handshake", wire.describe_replay(steps, "1.2"))
            if curl:        # curl's wording changes between versions: exit code and alert only
                self.assertEqual(done.returncode, curl_exit, f"{scenario.name}: {done.stderr}")
                if curl_exit == 35:
                    self.assertIn(alert.replace("_", " "), done.stderr, scenario.name)


class RelayTest(unittest.TestCase):
    """TLS 1.2 sends the client certificate in clear; TLS 1.3 encrypts it."""

    def test_certificate_bytes_visible_under_tls12_only(self):
        der = wire.certificate_der(path("client.crt"))
        with RunningServer() as srv:
            seen = {}
            for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                relay, status = wire.fetch_through_relay(srv.port, pki(), version)
                self.assertEqual(status, "HTTP/1.1 200 OK", version)
                self.assertGreater(len(relay.received), 1000, "the relay saw the server's flight")
                seen[version] = der in bytes(relay.sent)
        self.assertEqual(seen, {ssl.TLSVersion.TLSv1_2: True, ssl.TLSVersion.TLSv1_3: False})


class WrapTest(unittest.TestCase):
    """wrap() and wrap_command() never drop a character, and commands still parse."""

    def test_wrap_keeps_every_character(self):
        text = "word " * 40 + "x" * 130 + " tail"
        lines = terminal.wrap(text, 50)     # textwrap, breaking long words
        self.assertTrue(all(len(line) <= 50 for line in lines))
        self.assertEqual("".join(lines).replace(" ", ""), text.replace(" ", ""))

    def test_wrapped_command_is_the_same_command(self):
        words = ["python3", "client.py", "--cacert", "my certs/ca.crt", "--cert", "c.crt",
                 "--key", "c.key", "https://localhost:3000/"]
        lines = terminal.wrap_command(terminal.pair_options([shlex.quote(w) for w in words]), 30)
        self.assertTrue(all(len(line) <= 30 for line in lines), lines)
        self.assertTrue(all(line.endswith(" \\") for line in lines[:-1]))
        joined = " ".join(line[:-2] if line.endswith(" \\") else line for line in lines)
        self.assertEqual(shlex.split(joined[2:]), words)

    def test_lesson_summaries_fit_100_columns_unwrapped(self):
        for lesson in scenarios.LESSON:
            for line in lesson.saw:
                self.assertLessEqual(len("What you just saw: " + line), 100, line)


class MarkdownTest(unittest.TestCase):
    """--markdown prints the gallery table from real runs; the README includes it."""

    def test_markdown_rows_come_from_real_runs(self):
        done = demo("--markdown", "success", "no-client-cert", "--certs", pki())
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.splitlines()
        self.assertEqual(lines[0], "| " + " | ".join(cases.MARKDOWN_HEADER) + " |")
        self.assertEqual(len(lines), 4, done.stdout)
        self.assertIn("| `Hello, my-client` |", lines[2])
        self.assertIn("`error: certificate required` (exit 5)", lines[3])
        self.assertIn("`rejected ...: no client certificate (...)`", lines[3])

    @classmethod
    def gallery_run(cls):
        """The table --markdown prints for every scenario (run once for the class)."""
        if not hasattr(cls, "_gallery"):
            done = demo("--markdown", "--certs", pki(), timeout=120)
            if done.returncode != 0:
                raise AssertionError(done.stderr)
            cls._gallery = done.stdout.splitlines()
        return cls._gallery

    @staticmethod
    def table_in(name, header):
        """The Markdown table of file NAME (from the project folder) that starts at HEADER."""
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            lines = f.read().splitlines()
        if header not in lines:
            raise AssertionError(f"{name} has no table with the header {header}")
        table = []
        for line in lines[lines.index(header):]:
            if not line.startswith("|"):
                break
            table.append(line)
        return table

    def test_lesson_notes_gallery_table_matches_the_code(self):
        header = "| " + " | ".join(cases.MARKDOWN_HEADER) + " |"
        self.assertEqual(self.table_in(os.path.join("docs", "lesson-notes.md"), header),
                         self.gallery_run(),
                         "docs/lesson-notes.md's gallery table differs from: "
                         "python3 mtls_demo.py --markdown")

    def test_readme_gallery_is_the_full_table_cut_for_the_projector(self):
        """README section 7: scenario, client.py's words (no exit code), cause; 100 columns."""
        names = list(cases.MARKDOWN_HEADER)
        keep = [names.index("scenario"), names.index("client.py says"), names.index("cause")]
        cut = []
        for line in self.gallery_run():
            if set(line) <= set("|-"):                   # the header's underline
                cut.append("|---" * len(keep) + "|")
                continue
            cells = line[2:-2].split(" | ")
            cells = [cells[k] for k in keep]
            cells[1] = re.sub(r" \(exit \d+\)$", "", cells[1])
            cut.append("| " + " | ".join(cells) + " |")
        readme = self.table_in("README.md", cut[0])
        self.assertEqual(readme, cut, "README's gallery table is not the cut of: "
                         "python3 mtls_demo.py --markdown")
        self.assertLessEqual(max(len(line) for line in readme), 100)



def group_members(pgid):
    """Processes of a process group that are still alive: [(pid, command line)]."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue                        # not a process, or gone meanwhile
        if fields[2] == str(pgid) and fields[0] != "Z":
            found.append((int(entry), command))
    return found


def survivors(pgid, seconds=10):
    """The group's processes still alive after waiting at most `seconds` for them to end."""
    deadline = time.monotonic() + seconds
    while True:
        left = group_members(pgid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)                    # polling a bounded wait, not synchronisation


@unittest.skipUnless(os.path.isdir("/proc/self"), "needs /proc (Linux) to find the servers")
class PipeClosedEarlyTest(unittest.TestCase):
    """`mtls_demo.py ... | head -1`: the demo stops, and so does every server.py it started."""

    def test_no_server_survives_a_reader_that_stops_after_one_line(self):
        with RunningServer() as running:
            url = f"https://localhost:{running.port}/"
            modes = [["--lesson"], ["--all"], ["--mistakes"], ["--trace", "no-client-cert"],
                     ["--tls1.2", "no-client-cert"], ["success"],
                     ["--check", "--cacert", path("ca.crt"), "--cert", path("client.crt"),
                      "--key", path("client.key"), url]]
            for args in modes:
                with self.subTest(args=args):
                    proc = subprocess.Popen(
                        [PYTHON, DEMO] + args + (["--certs", pki()] if args[0] != "--check"
                                                 else []),
                        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, start_new_session=True,
                        env=dict(os.environ, COLUMNS="100", NO_COLOR="1"))
                    try:
                        first = proc.stdout.readline()       # head -1
                        proc.stdout.close()
                        _, err = proc.communicate(timeout=60)
                    finally:
                        if proc.poll() is None:
                            os.killpg(proc.pid, signal.SIGKILL)
                            proc.wait()
                    self.assertTrue(first, err)
                    self.assertNotIn(b"Traceback", err)
                    left = survivors(proc.pid)
                    for pid, _ in left:
                        os.kill(pid, signal.SIGKILL)
                    self.assertEqual(left, [], "still running after the demo ended")


class HelpWidthTest(unittest.TestCase):
    """--help fits the terminal it is shown in (COLUMNS), 80 as well as 100."""

    def test_help_fits_80_and_100_columns(self):
        for columns in (80, 100):
            done = demo("--help", env={"COLUMNS": str(columns)}, timeout=30)
            self.assertEqual(done.returncode, 0, done.stderr)
            for line in done.stdout.splitlines():
                self.assertLessEqual(len(line), columns, line)
            self.assertIn("--lesson [--pause]", done.stdout)
            self.assertIn("three basic cases", done.stdout)
            self.assertNotIn("article", done.stdout)

    def test_help_lists_each_mode_once(self):
        done = demo("--help", timeout=30)
        for mode in ("--all", "--lesson", "--mistakes", "--list", "--check"):
            listed = re.findall(rf"(?m)^  {mode}\b", done.stdout)
            self.assertEqual(len(listed), 1, f"{mode}: {done.stdout}")
        self.assertEqual(done.stdout.count("modes ("), 1, done.stdout)
        self.assertIn("three basic cases", done.stdout)


class TableTest(unittest.TestCase):
    """The closing table: each line of a cell starts beside the same line of the others."""

    def test_a_forbidden_client_keeps_the_word_forbidden_beside_server(self):
        """The not-authorized row: the observed cell says "server: forbidden: ...",
        and no line of it is "server:" alone."""
        line = ("forbidden 127.0.0.1:42478: uri:spiffe://example.org/other-client is not on the "
                "allow-list (--allow)")
        self.assertEqual(cases.summarize_log_line(line), "forbidden: uri:spiffe://example.org/"
                         "other-client is not on the allow-list")
        terminal.screen.setup(100)
        row = terminal.Result("not-authorized", ("client: HTTP 403 Forbidden",
                                                  "server: forbidden"),
                               ("client: HTTP 403 Forbidden",
                                "server: " + cases.summarize_log_line(line)), True)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            terminal.print_table([row])
        observed = [line.split(" | ")[2].strip() for line in out.getvalue().strip().splitlines()
                    if line.count(" | ") >= 2][1:]
        self.assertNotIn("server:", observed)
        self.assertTrue(any(cell.startswith("server: forbidden") for cell in observed), observed)

    def test_a_wrapped_first_line_does_not_push_the_second_out_of_its_row(self):
        terminal.screen.setup(100)
        out = io.StringIO()
        row = terminal.Result("accept-loop", ("wrong: ATTACKER FROZE THE SERVER",
                                               "server.py: attack failed"),
                               ("ATTACKER FROZE THE SERVER (3.0 s wait, unlogged) " * 2,
                                "attack failed (served in 8 ms, logged)"), True)
        with contextlib.redirect_stdout(out):
            terminal.print_table([row])
        lines = out.getvalue().strip("\n").splitlines()
        second = next(line for line in lines if "server.py: attack failed" in line)
        self.assertIn("| attack failed (served in 8 ms, logged)", second)
        self.assertTrue(all(len(line) <= 100 for line in lines), lines)


    def test_table_cells_wrap_between_words_never_inside_one(self):
        """uri:spiffe://example.org/other-client was cut 'uri:spiffe://e | xample.org/...'
        (issue 21): whole when its column can hold it, else broken after a '/' only."""
        row = terminal.Result("client-chain-leaf-only", ("client: HTTP 403 Forbidden",
                                                          "server: forbidden"),
                               ("client: HTTP 403 Forbidden", "server: forbidden: "
                                "uri:spiffe://example.org/other-client is not on the allow-list"),
                               True)
        words = ["client:", "HTTP", "403", "Forbidden", "server:", "forbidden", "forbidden:",
                 "is", "not", "on", "the", "allow-list"]
        for width, whole in ((100, True), (80, False)):
            terminal.screen.setup(width)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                terminal.print_table([row])
            lines = out.getvalue().strip("\n").splitlines()
            bars = [i for i, c in enumerate(lines[0]) if c == "|"]     # the header's columns
            cells = [line[bars[0] + 1:bars[2]].replace("|", " ") for line in lines[1:]]
            pieces = [p for cell in cells for p in cell.split()]
            uri = [p for p in pieces if p not in words]
            self.assertEqual("".join(uri), "uri:spiffe://example.org/other-client", lines)
            if whole:
                self.assertEqual(len(uri), 1, lines)
            self.assertTrue(all(p.endswith("/") for p in uri[:-1]), lines)
            self.assertTrue(set(words) <= set(pieces), lines)
            self.assertTrue(all(len(line) <= width for line in lines), lines)


class MakefileTargetsTest(unittest.TestCase):
    """make demo runs the lesson; make inspect is one echoed command and aligned columns."""

    def make(self, *args):
        done = subprocess.run(["make", "-C", ROOT, "--no-print-directory", f"CERTS={pki()}"]
                              + list(args), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        return done.stdout

    def test_make_demo_runs_the_lesson(self):
        shown = self.make("-n", "demo")
        self.assertRegex(shown, r"(?m)^\S*python\S* mtls_demo\.py --lesson --certs ")
        self.assertIn("the lesson", self.make("help"))

    def test_make_inspect_echoes_one_line_and_aligns_every_name(self):
        lines = self.make("inspect", "ALL=1").splitlines()
        self.assertTrue(lines[0].startswith("for crt in "), lines[0])
        rows = [line for line in lines[1:] if line.startswith(pki())]
        self.assertGreater(len(rows), 10)
        self.assertEqual(len(rows) + 2, len(lines), "one echoed line, the rows, Next:")
        starts = {len(re.match(r"\S+ +", row).group(0)) for row in rows}
        longest = max(len(row.split()[0]) for row in rows)
        self.assertEqual(starts, {longest + 1})
        self.assertTrue(all(re.search(r" by .+, until .+, EKU: ", row) for row in rows), rows)


class LayoutTest(unittest.TestCase):
    """Imports go one way (issue 20): mtls_demo.py uses demo/ and the gallery, never back."""

    def test_demo_modules_and_the_gallery_never_import_mtls_demo(self):
        """Every module in demo/ and mistakes/gallery.py import without mtls_demo.py
        (the gallery once took pair_options from it while it took EXHIBITS back)."""
        code = ("import importlib, pkgutil, sys, demo\n"
                "for m in pkgutil.iter_modules(demo.__path__):\n"
                "    importlib.import_module('demo.' + m.name)\n"
                "import mistakes.gallery\n"
                "print(sorted(n for n in sys.modules if n.startswith('mtls_demo')))\n")
        done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "[]")


if __name__ == "__main__":
    unittest.main()
