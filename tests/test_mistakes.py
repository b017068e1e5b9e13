"""The mistakes gallery: each attack works against the wrong code, and fails against ours.

Every exhibit of mistakes/gallery.py is run once, for real (servers as
processes, real handshakes on loopback), with the test PKI. For each one
two tests read its Result: the attacker got what it came for from the
wrong code, and the project's server.py or client.py refused. Then the
gallery itself: its exit code, its words without colour, its width, and a
control run in which the "wrong" code is the right code, which must show
the attack failing (so a success is never by construction).
"""

import contextlib
import fcntl
import glob
import io
import os
import pty
import queue
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import unittest

from tests.support import PYTHON, ROOT, pki
from tests.test_demo import survivors

from mistakes import gallery

import client

SERVER_SIDE = ["cert-optional", "public-ca", "name-prefix", "cn-despite-san",
               "crl-not-checked", "trusted-header", "accept-loop"]
CLIENT_SIDE = ["no-hostname-check", "cert-none"]
PATIENCE = 1.0          # seconds a good client waits for the frozen server
# One exhibit per kind of attack, for the control run (a client, an impostor
# server, a forged header, a silent connection).
CONTROLS = ["cert-optional", "no-hostname-check", "trusted-header", "accept-loop"]


def run_exhibits(names, width=100):
    """Run exhibits in-process; return ({name: Result}, what they printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        results = {name: gallery.run_exhibit(name, pki(), width) for name in names}
    return results, out.getvalue()


def run_gallery(*args, env=None, timeout=60, python=sys.executable):
    """Run mistakes/gallery.py as a user would, output to a pipe, from
    another folder than the project's (paths must not depend on it)."""
    return subprocess.run([python, os.path.join(ROOT, "mistakes", "gallery.py")]
                          + list(args), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), cwd="/")


class EveryExhibit(unittest.TestCase):
    """Each exhibit, both halves: the wrong code lets the attacker in; ours keeps it out."""

    @classmethod
    def setUpClass(cls):
        gallery.PATIENCE = PATIENCE
        cls.results, cls.output = run_exhibits([e.name for e in gallery.EXHIBITS])

    def test_the_gallery_has_the_exhibits_of_the_issue(self):
        """Exhibits 1-7 of issue 10 (4 as two), and one more, each with a name and title."""
        self.assertEqual(sorted(SERVER_SIDE + CLIENT_SIDE),
                         sorted(e.name for e in gallery.EXHIBITS))
        for exhibit in gallery.EXHIBITS:
            self.assertTrue(exhibit.title)
            self.assertFalse(exhibit.name.startswith("-") or "://" in exhibit.name)
        # One namespace with the demo's scenarios (mtls_demo.py NAME runs either).
        from demo import scenarios
        clash = {s.name for s in scenarios.SCENARIOS} & {e.name for e in gallery.EXHIBITS}
        self.assertEqual(clash, set())

    def check_wrong_side(self, name, words):
        result = self.results[name]
        self.assertEqual(result._fields, ("name", "expected", "observed", "ok"))
        self.assertTrue(result.observed[0].startswith(words), result)
        self.assertTrue(result.ok, result)

    def check_right_side(self, name):
        result = self.results[name]
        word = gallery.FAILED if name == "accept-loop" else gallery.REFUSED
        self.assertTrue(result.observed[1].startswith(word + " ("), result)
        self.assertNotIn("ATTACKER", result.observed[1])

    # One pair of tests per exhibit, so a failure names the exhibit and the side.

    def test_cert_optional_lets_a_client_without_certificate_in(self):
        self.check_wrong_side("cert-optional", "ATTACKER GOT IN (as (no name))")

    def test_cert_optional_server_py_requires_a_certificate(self):
        self.check_right_side("cert-optional")
        self.assertIn("certificate required", self.results["cert-optional"].observed[1])

    def test_public_ca_lets_a_public_my_client_in(self):
        self.check_wrong_side("public-ca", "ATTACKER GOT IN (as my-client)")

    def test_public_ca_server_py_trusts_only_its_ca(self):
        self.check_right_side("public-ca")
        self.assertIn("unknown CA", self.results["public-ca"].observed[1])

    def test_name_prefix_lets_my_client_evil_in(self):
        self.check_wrong_side("name-prefix", "ATTACKER GOT IN (as my-client-evil)")

    def test_name_prefix_server_py_compares_exactly(self):
        self.check_right_side("name-prefix")
        self.assertIn("HTTP 403", self.results["name-prefix"].observed[1])

    def test_cn_despite_san_lets_a_spoofed_cn_in(self):
        self.check_wrong_side("cn-despite-san", "ATTACKER GOT IN (as my-client)")

    def test_cn_despite_san_server_py_reads_the_san(self):
        self.check_right_side("cn-despite-san")
        self.assertIn("HTTP 403", self.results["cn-despite-san"].observed[1])

    def test_crl_not_checked_lets_the_revoked_client_in(self):
        self.check_wrong_side("crl-not-checked", "ATTACKER GOT IN (as my-client)")

    def test_crl_not_checked_server_py_consults_the_crl(self):
        self.check_right_side("crl-not-checked")
        self.assertIn("certificate revoked", self.results["crl-not-checked"].observed[1])

    def test_no_hostname_check_sends_the_request_to_the_impostor(self):
        self.check_wrong_side("no-hostname-check", "ATTACKER GOT THE REQUEST (GET /)")
        self.assertIn("impostor | GET / HTTP/1.1", self.output)

    def test_no_hostname_check_client_py_refuses_the_name(self):
        self.check_right_side("no-hostname-check")
        self.assertIn("hostname mismatch", self.results["no-hostname-check"].observed[1])

    def test_cert_none_sends_the_request_to_a_self_signed_server(self):
        self.check_wrong_side("cert-none", "ATTACKER GOT THE REQUEST (GET /)")

    def test_cert_none_client_py_refuses_the_self_signed_server(self):
        self.check_right_side("cert-none")
        self.assertIn("server not trusted", self.results["cert-none"].observed[1])

    def test_trusted_header_makes_other_client_my_client(self):
        self.check_wrong_side("trusted-header", "ATTACKER GOT IN (as my-client)")

    def test_trusted_header_server_py_ignores_it_from_a_non_proxy(self):
        self.check_right_side("trusted-header")
        self.assertIn("HTTP 403", self.results["trusted-header"].observed[1])
        # The same header from the real proxy does get through: the refusal is
        # about who sent it, not a server that ignores the header altogether.
        story = self.output.split("== trusted-header: ", 1)[1].split("-- against server.py:")[1]
        self.assertRegex(story, r"proxied 127\.0\.0\.1:\d+: cn:my-client "
                                r"\(forwarded by cn:my-proxy\)")

    def test_accept_loop_freezes_and_loses_rejections(self):
        """The good client gave up after PATIENCE seconds; the rejection left no line."""
        self.check_wrong_side("accept-loop", "ATTACKER FROZE THE SERVER")
        observed = self.results["accept-loop"].observed[0]
        waited = float(re.search(r"\(([\d.]+) s wait", observed).group(1))
        self.assertGreaterEqual(waited, PATIENCE * 0.9)
        self.assertIn("unlogged", observed)

    def test_accept_loop_server_py_serves_while_a_connection_is_silent(self):
        """server.py served the good client well within its patience, and logged the rejection."""
        self.check_right_side("accept-loop")
        observed = self.results["accept-loop"].observed[1]
        served_ms = int(re.search(r"served in (\d+) ms", observed).group(1))
        self.assertLess(served_ms, PATIENCE * 1000 / 2)
        self.assertIn(", logged", observed)
        self.assertIn("rejected 127.0.0.1:", self.output)

    def test_accept_loop_says_the_attack_failed_not_refused(self):
        """Nothing is refused in the accept-loop exhibit: server.py served the
        good client, so its verdict is "attack failed (served in N ms, logged)",
        in the story and in the table, in plain words (NO_COLOR)."""
        story = self.output.split("== accept-loop: ", 1)[1]
        self.assertRegex(story, r"=> server\.py: attack failed \(served in \d+ ms, logged\)")
        self.assertNotIn("server.py: refused", story)
        result = self.results["accept-loop"]
        self.assertEqual(result.expected[1], "server.py: attack failed")
        self.assertRegex(result.observed[1], r"^attack failed \(served in \d+ ms, logged\)$")

    def test_each_exhibit_shows_a_diff_a_fix_and_both_sides(self):
        """The story has, per exhibit: the diff from the real file, the fix, both verdicts."""
        for exhibit in gallery.EXHIBITS:
            story = self.output.split(f"== {exhibit.name}: ", 1)[1].split("\n== ", 1)[0]
            self.assertIn(f"--- {exhibit.module.FILE}\n", story)
            self.assertIn("fix: ", story)
            self.assertRegex(story, r"=> the wrong (server|client): ATTACKER")
            word = "attack failed" if exhibit.name == "accept-loop" else "refused"
            self.assertRegex(story, rf"=> {re.escape(exhibit.module.FILE)}: {word}")

    def test_the_readme_draft_has_a_row_per_exhibit_and_quotes_this_run(self):
        """docs/mistakes.md: one row per exhibit, and each greeting it quotes
        is one the gallery printed."""
        with open(os.path.join(ROOT, "docs", "mistakes.md"), encoding="utf-8") as f:
            doc = f.read()
        rows = re.findall(r"^\| `([a-z-]+)` \|", doc, re.MULTILINE)
        self.assertEqual(rows, [e.name for e in gallery.EXHIBITS])
        greetings = re.findall(r"`(Hello, [^`]+)`", doc)
        self.assertGreaterEqual(len(greetings), 5)
        for greeting in greetings:
            self.assertIn("   | " + greeting + "\n", self.output)

    def test_output_fits_100_columns(self):
        """Projector rule: no line wider than the width asked for."""
        for line in self.output.splitlines():
            self.assertLessEqual(len(line), 100, line)

    def test_printed_commands_paste_each_option_beside_its_value(self):
        """Every '$ ' command wraps with ' \\' as mtls_demo.py's do: joined it is
        one shell command, and no line ends between an option and its value."""
        lines, commands = self.output.splitlines(), 0
        for i, line in enumerate(lines):
            if not line.startswith("$ "):
                continue
            group = [line]
            while group[-1].endswith(" \\"):
                group.append(lines[i + len(group)])
            commands += 1
            for part in group[:-1]:
                self.assertNotRegex(part, r" --[a-z-]+ \\$", group)
            for part in group[1:]:
                self.assertTrue(part.startswith("    "), group)
            words = shlex.split(" ".join(p[:-2] if p.endswith(" \\") else p for p in group)[2:])
            self.assertTrue(words[0] == "python3" or "=" in words[0], group)
        self.assertGreater(commands, 30)

    def test_a_diff_line_too_wide_is_marked_where_it_continues(self):
        """A long diff line is never re-wrapped into code: the cut ends with ' ...>',
        the rest follows after '>... ', and the two halves make the line."""
        lines = self.output.splitlines()
        cuts = [i for i, line in enumerate(lines) if line.endswith(" ...>")]
        for i in cuts:
            self.assertRegex(lines[i + 1], r"^   [-+ ]>\.\.\. ")
        out = io.StringIO()
        line = "-        context.verify_flags |= " + "ssl.VERIFY_SOMETHING_RATHER_LONG " * 4
        with contextlib.redirect_stdout(out):
            gallery.Output(60).diff([line])
        shown = out.getvalue().splitlines()
        self.assertTrue(all(len(part) <= 60 for part in shown), shown)
        self.assertTrue(all(p.startswith("   ->... ") for p in shown[1:]), shown)
        self.assertTrue(all(p.endswith(" ...>") for p in shown[:-1]), shown)
        halves = [p[3:] if i == 0 else p[9:] for i, p in enumerate(shown)]
        self.assertEqual("".join(h[:-5] if h.endswith(" ...>") else h for h in halves), line)


class WrongCodeStaysApart(unittest.TestCase):
    """The wrong code is a few lines, made from the real files, reachable only here."""

    def test_each_diff_is_a_few_lines(self):
        """A diff that grew means server.py or client.py moved under an exhibit."""
        for exhibit in gallery.EXHIBITS:
            changed = [l for l in gallery.wrong_diff(exhibit)
                       if l[:1] in "+-" and not l.startswith(("+++", "---"))]
            self.assertTrue(1 <= len(changed) <= 8, (exhibit.name, changed))

    def test_the_wrong_settings_are_not_in_server_py_or_client_py(self):
        """No option of the real tools can turn these on: the code is not there."""
        armour = sorted(glob.glob(os.path.join(ROOT, "armour", "*.py")))
        self.assertTrue(armour)                 # what server.py and client.py run with
        server = client = ""
        for path in [os.path.join(ROOT, "server.py")] + armour:
            with open(path) as f:
                server += f.read()
        for path in [os.path.join(ROOT, "client.py")] + armour:
            with open(path) as f:
                client += f.read()
        for text in ("CERT_OPTIONAL", "CERT_NONE", "load_default_certs", "check_hostname = False"):
            self.assertNotIn(text, server)
        for text in ("CERT_NONE", "CERT_OPTIONAL", "check_hostname = False"):
            self.assertNotIn(text, client)

    def test_an_edit_that_no_longer_matches_stops_the_exhibit(self):
        """If server.py changes under an exhibit, it says so instead of lying; exit 1."""
        module = gallery.find_exhibit("cert-optional").module
        saved = module.EDITS
        module.EDITS = [("    this line is not in server.py\n", "")]
        try:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = gallery.main(["--certs", pki(), "cert-optional"])
        finally:
            module.EDITS = saved
        self.assertEqual(code, 1)
        self.assertIn("error: exhibit failed: server.py changed: mistakes/cert_optional.py "
                      "replaces 'this line is not in server.py', found 0 times instead of once "
                      "-- update its EDITS", " ".join(out.getvalue().split()))

    def test_client_messages_quote_paths_as_the_command_shows_them(self):
        """The attacker's client runs from the project folder with the paths as
        printed: its messages quote 'ca.cnf', not an absolute path."""
        with self.assertRaises(gallery.ExhibitError) as caught:
            gallery.run_client(client, ["--cacert", "ca.cnf", "https://localhost:1/"])
        self.assertIn("CA certificate 'ca.cnf' holds no PEM certificate", str(caught.exception))
        self.assertNotIn(ROOT, str(caught.exception))

    def test_a_client_that_cannot_even_try_is_no_refusal(self):
        """A missing file (exit 2) is the exhibit failing, never "refused"."""
        module = gallery.find_exhibit("cert-optional").module
        saved = module.CLIENT
        module.CLIENT = ["--cacert", "{certs}/no-such-ca.crt", "{url}"]
        try:
            results, output = run_exhibits(["cert-optional"])
        finally:
            module.CLIENT = saved
        self.assertFalse(results["cert-optional"].ok)
        self.assertEqual(results["cert-optional"].observed[0], "error: exhibit failed")
        self.assertIn("error: exhibit failed: the client could not make its request: "
                      "error: missing file:", " ".join(output.split()))

    def test_control_without_the_mistake_every_attack_fails(self):
        """The control experiment: with the mistake left out, the same attacks are
        refused on both sides, and the gallery reports the exhibits as not shown.
        So "ATTACKER GOT IN" comes from the mistake, not from how we judge."""
        gallery.PATIENCE = PATIENCE
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            results = [gallery.run_exhibit(name, pki(), control=True) for name in CONTROLS]
        for result in results:
            self.assertFalse(result.ok, result)
            word = "attack failed" if result.name == "accept-loop" else "refused"
            self.assertTrue(result.observed[0].startswith(word + " ("), result)
            self.assertTrue(result.observed[1].startswith(word + " ("), result)

    def test_extra_certificates_are_made_once_with_private_keys(self):
        """The exhibits' own certificates: keys 0600, and a second run makes nothing."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            gallery.ensure_certificates(pki(), gallery.Output())
        self.assertEqual(out.getvalue(), "")
        for key in ("public-ca.key", "public-client.key", "evil-client.key", "impostor-server.key"):
            self.assertEqual(os.stat(os.path.join(pki(), key)).st_mode & 0o777, 0o600, key)

    def test_missing_certificates_are_one_line_and_verbose_commands_paste(self):
        """A fresh folder: one "Certificates:" line; with verbose, each openssl
        command on a '$ ' line whose continuations end with ' \\' (no ':' lines),
        and the joined command is the one that ran (it makes the file again)."""
        with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
            for name in os.listdir(pki()):
                if os.path.isfile(os.path.join(pki(), name)) and not name.startswith(
                        ("public-", "evil-", "spoofed-", "impostor-", "my-proxy", "selfsigned-")):
                    shutil.copy2(os.path.join(pki(), name), tmp)
            os.makedirs(os.path.join(tmp, "article"))
            for name in os.listdir(os.path.join(pki(), "article")):
                shutil.copy2(os.path.join(pki(), "article", name), os.path.join(tmp, "article"))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                gallery.ensure_certificates(tmp, gallery.Output(100))
            lines = out.getvalue().splitlines()
            self.assertTrue(lines[0].startswith("Certificates: built the extra certificates "))
            self.assertTrue(all(line.startswith("  ") for line in lines[1:]), lines)
            self.assertIn("--verbose shows them", out.getvalue())
            os.remove(os.path.join(tmp, "my-proxy.crt"))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                gallery.ensure_certificates(tmp, gallery.Output(60), verbose=True)
            lines = out.getvalue().splitlines()
            self.assertFalse([line for line in lines if line.lstrip().startswith(":")], lines)
            command = [line for line in lines if line.startswith("$ ") or line.startswith("    ")]
            self.assertGreater(len(command), 1, "wrapped at 60 columns")
            self.assertTrue(all(line.endswith(" \\") for line in command[:-1]), command)
            joined = " ".join(line.rstrip(" \\").strip() for line in command)[2:]
            os.remove(os.path.join(tmp, "my-proxy.crt"))
            done = subprocess.run(joined, shell=True, cwd=ROOT, capture_output=True, text=True,
                                  timeout=30)
            self.assertEqual(done.returncode, 0, done.stderr)
            self.assertTrue(os.path.exists(os.path.join(tmp, "my-proxy.crt")))


class GalleryCommandLine(unittest.TestCase):
    """mistakes/gallery.py as a user runs it."""

    def test_exit_0_and_plain_words_in_a_pipe_under_no_color(self):
        done = run_gallery("--certs", pki(), "cert-optional", "name-prefix", env={"NO_COLOR": "1"})
        self.assertEqual(done.returncode, 0, done.stdout[-2000:] + done.stderr)
        self.assertNotIn("\033[", done.stdout)
        self.assertIn("=> the wrong server: ATTACKER GOT IN: as (no name)", done.stdout)
        self.assertIn("=> server.py: refused: certificate required", done.stdout)
        self.assertIn("2 of 2 exhibits as expected", done.stdout)

    def test_colour_on_a_terminal_only_without_no_color(self):
        """On a tty the attacker's success is red; with NO_COLOR the same words, no colour."""
        for no_color, expect_colour in (("", True), ("1", False)):
            env = dict(os.environ, NO_COLOR=no_color) if no_color else \
                {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
            primary, secondary = pty.openpty()
            # A terminal 120 columns wide (a new pty may report 0 x 0).
            fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "mistakes", "gallery.py"),
                                     "--certs", pki(), "cert-none"],
                                    stdout=secondary, stderr=subprocess.DEVNULL, env=env)
            os.close(secondary)
            chunks = []
            while True:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:          # the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(primary)
            self.assertEqual(proc.wait(timeout=30), 0)
            text = b"".join(chunks).decode()
            self.assertIn("ATTACKER GOT THE REQUEST", text)
            self.assertEqual("\033[1;31mATTACKER GOT THE REQUEST\033[0m" in text, expect_colour)

    def test_list_and_unknown_names(self):
        done = run_gallery("--list")
        self.assertEqual(done.returncode, 0)
        self.assertEqual(len(done.stdout.splitlines()), len(gallery.EXHIBITS))
        done = run_gallery("no-such-mistake")
        self.assertEqual(done.returncode, 2)
        self.assertRegex(done.stderr, r"^error: bad option: unknown exhibit 'no-such-mistake': "
                                      r"choose from cert-optional, .* "
                                      r"-- see mistakes/gallery.py --help\n$")
        done = run_gallery("--lsit")            # client.py's parser: the option meant
        self.assertEqual(done.returncode, 2)
        self.assertIn("unknown option '--lsit' -- did you mean --list?", done.stderr)
        done = run_gallery("--cert", "x")       # was taken for --certs, and ran into x/
        self.assertEqual(done.returncode, 2)
        self.assertIn("unknown option '--cert' -- did you mean --certs?", done.stderr)

    def test_a_wrong_server_file_runs_by_hand(self):
        """python3 mistakes/NAME.py takes server.py's options (here --help) and says what it is."""
        done = subprocess.run([sys.executable, os.path.join(ROOT, "mistakes", "crl_not_checked.py"),
                               "--help"], capture_output=True, text=True, timeout=30, cwd="/")
        self.assertEqual(done.returncode, 0)
        self.assertIn("--crl FILE", done.stdout)
        self.assertIn("warning: this is server.py with the mistake of mistakes/crl_not_checked.py",
                      done.stderr)

    def test_old_python_names_gallery_py(self):
        """On Python 3.8 and older: one line naming mistakes/gallery.py, exit 2."""
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() \
            if shutil.which("pyenv") else ""
        versions = os.path.join(root, "versions")
        olds = [v for v in (sorted(os.listdir(versions)) if root and os.path.isdir(versions)
                            else []) if re.match(r"3\.[678]\.", v)]
        if not olds:
            self.skipTest("no Python 3.6-3.8 installed (pyenv install 3.8)")
        for version in olds:
            done = run_gallery("--list", python=os.path.join(versions, version, "bin", "python3"))
            self.assertEqual(done.returncode, 2, done.stderr)
            self.assertEqual(done.stderr, "error: unsupported Python: mistakes/gallery.py needs "
                             f"Python 3.9+ (this is {version[:3]}) -- run it with python3.9 or "
                             "newer\n")


@unittest.skipUnless(os.path.isdir("/proc/self"), "needs /proc (Linux) to find the servers")
class ThroughTheDemo(unittest.TestCase):
    """An exhibit run by mtls_demo.py: its heading once, and Ctrl-C an interruption."""

    def test_ctrl_c_during_the_frozen_server_wait_is_an_interruption(self):
        """A real SIGINT to the demo's process group once the gallery says the
        good client is waiting for the frozen server: 'interrupted:', exit 130,
        no 'exhibit failed' and no NO row, and no server left running."""
        proc = subprocess.Popen([PYTHON, os.path.join(ROOT, "mtls_demo.py"), "accept-loop",
                                 "--certs", pki()], cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True,
                                env=dict(os.environ, COLUMNS="100", NO_COLOR="1"))
        lines = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout] + [
            lines.put(None)], daemon=True)
        reader.start()
        seen = []
        try:
            while True:
                line = lines.get(timeout=60)
                self.assertIsNotNone(line, "".join(seen))
                seen.append(line)
                if line.startswith("A good client comes next, and waits at most"):
                    break
            os.killpg(proc.pid, signal.SIGINT)
            err = proc.stderr.read()
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(10)
        proc.stdout.close()
        proc.stderr.close()
        while True:
            line = lines.get(timeout=10)
            if line is None:
                break
            seen.append(line)
        output = "".join(seen)
        self.assertEqual(code, 130, output + err)
        self.assertRegex(err.strip(), r"^interrupted: ")
        self.assertNotIn("error:", err)
        self.assertNotIn("exhibit failed", output)
        self.assertNotRegex(output, r"\| NO\b")
        self.assertEqual(len(re.findall(r"^== accept-loop", output, re.M)), 1, output)
        self.assertEqual(survivors(proc.pid), [])


if __name__ == "__main__":
    unittest.main()
