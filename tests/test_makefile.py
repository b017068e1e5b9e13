"""The Makefile's own messages, proven: every setting checked, every hint true.

Each test runs the real `make` into a temporary folder, as a user would, and
checks what it printed and what it left on disk. Rules (issue #12, and the
Makefile items of #11):
  - a bad setting (DAYS, KEY, CERTS with a space) is refused in one line of
    the project's error format, before any openssl step runs;
  - settings that cannot change existing certificates say so, with the
    command that rebuilds them, and that command works when pasted;
  - "Next:" hints keep the CERTS= and PORT= the user gave;
  - `make help` shows this run's port and folder, fits in 100 columns, and
    agrees with the README on the bench's duration;
  - the revoked client has a key of its own;
  - the .p12 password never appears on a command line.
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from tests.support import ROOT

# The one error format of conventions.md: error: <label>: <what and why> -- <fix>
ERROR_LINE = re.compile(r"^error: [a-z][a-z ]*: .+ -- .+$")


def make(*args, cwd=ROOT):
    """Run make on the project's Makefile; return CompletedProcess."""
    return subprocess.run(["make", "--no-print-directory", "-C", ROOT] + list(args),
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def key_type(path):
    """'ec' or 'rsa', as openssl reads the key file."""
    text = subprocess.run(["openssl", "pkey", "-in", path, "-noout", "-text"],
                          capture_output=True, text=True, timeout=30).stdout
    return "ec" if "ASN1 OID" in text else "rsa"


class MakefileTests(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mtls-make-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.certs = os.path.join(self.tmp, "certs")

    def assertRefused(self, done, label, *quoted):
        """make failed with exit 2, and its one error line has the project's format."""
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        errors = [l for l in done.stderr.splitlines() if l.startswith("error:")]
        self.assertEqual(len(errors), 1, done.stderr)
        self.assertRegex(errors[0], ERROR_LINE)
        self.assertTrue(errors[0].startswith(f"error: {label}: "), errors[0])
        for text in quoted:
            self.assertIn(text, errors[0])
        self.assertNotIn("error: error:", done.stderr)
        return errors[0]

    def test_make_from_another_folder_is_refused_before_any_openssl_step(self):
        """make -f path/Makefile run elsewhere stops in one line naming make -C,
        before it writes a key (its paths, openssl.cnf too, are the project's)."""
        done = subprocess.run(["make", "-f", os.path.join(ROOT, "Makefile"), "certs",
                               f"CERTS={self.certs}"], capture_output=True, text=True,
                              timeout=120, cwd=self.tmp, stdin=subprocess.DEVNULL)
        self.assertRefused(done, "wrong folder", "make runs in the project's folder",
                           f"-- make -C {os.path.realpath(ROOT)} certs")
        self.assertFalse(os.path.exists(self.certs), os.listdir(self.tmp))

    def test_every_target_that_runs_the_project_is_refused_from_another_folder(self):
        """make -f path/Makefile test (demo, bench, run, client, clean) elsewhere stops in
        one line naming make -C and the target: not Python's "can't open file", and
        clean does not delete that folder's certs/."""
        os.mkdir(self.certs)
        with open(os.path.join(self.certs, "mine.crt"), "w") as f:
            f.write("a file of the user's, not ours\n")
        for target in ["test", "demo", "bench", "run", "client", "clean"]:
            with self.subTest(target=target):
                done = subprocess.run(["make", "-f", os.path.join(ROOT, "Makefile"), target],
                                      capture_output=True, text=True, timeout=120,
                                      cwd=self.tmp, stdin=subprocess.DEVNULL)
                self.assertRefused(done, "wrong folder", "make runs in the project's folder",
                                   f"-- make -C {os.path.realpath(ROOT)} {target}")
                self.assertNotIn("can't open file", done.stderr)
                self.assertEqual(os.listdir(self.tmp), ["certs"])
                self.assertEqual(os.listdir(self.certs), ["mine.crt"])

    # --- settings checked first ------------------------------------------

    def test_bad_days_refused_before_any_openssl_step(self):
        """DAYS that is not a whole number above 0 is refused in one line; no stray ca.key."""
        for days in ["abc", "0", "-5", "3.5", "030", "1e3"]:
            with self.subTest(DAYS=days):
                done = make("certs", f"CERTS={self.certs}", f"DAYS={days}")
                line = self.assertRefused(done, "bad setting", f"DAYS='{days}'")
                self.assertIn("make certs DAYS=30", line)
                self.assertNotIn("openssl", done.stdout)
                self.assertFalse(os.path.exists(self.certs), os.listdir(self.tmp))

    def test_certs_folder_with_a_space_refused(self):
        """CERTS with a space is refused in one line, with a spelling that works."""
        spaced = os.path.join(self.tmp, "dir with space")
        done = make("certs", f"CERTS={spaced}")
        line = self.assertRefused(done, "bad setting", f"CERTS='{spaced}'", "space")
        self.assertIn(f"CERTS={self.tmp}/dir_with_space", line)
        self.assertEqual(os.listdir(self.tmp), [])
        self.assertNotIn("warning", done.stderr)

    def test_unknown_key_type_refused(self):
        """KEY other than rsa or ec is refused in one line before any key is made."""
        done = make("certs", f"CERTS={self.certs}", "KEY=dsa")
        self.assertRefused(done, "bad setting", "KEY='dsa'", "KEY=rsa or KEY=ec")
        self.assertFalse(os.path.exists(self.certs))

    def test_missing_openssl_is_one_line(self):
        """An openssl that is not there: one line naming it and how to install it."""
        done = make("certs", f"CERTS={self.certs}", "OPENSSL=/nonexistent/openssl")
        self.assertRefused(done, "missing tool", "'/nonexistent/openssl'", "apt-get install openssl")

    def test_every_error_in_the_makefile_has_the_one_format(self):
        """Each error line the Makefile can print reads error: <label>: <what> -- <fix>."""
        with open(os.path.join(ROOT, "Makefile")) as f:
            text = f.read()
        messages = [m for m in re.findall(r'echo "(error: [^"]*)"', text)
                    if "$(BAD_SETTING)" not in m]
        messages += ["error: bad setting: " + m
                     for m in re.findall(r"BAD_SETTING := (.*)", text)]
        self.assertGreaterEqual(len(messages), 5)
        for message in messages:
            with self.subTest(message=message[:60]):
                self.assertRegex(message, ERROR_LINE)
        self.assertNotIn("$(error", text)     # make's own format: "Makefile:12: *** ...  Stop."

    def test_missing_nginx_is_one_line_before_anything_is_made(self):
        """make proxy without nginx: one line naming it and the package, and no files made."""
        done = make("proxy", f"CERTS={self.certs}", "NGINX_BIN=/nonexistent/nginx")
        self.assertRefused(done, "missing tool", "'/nonexistent/nginx'", "apt-get install nginx-light")
        self.assertFalse(os.path.exists(self.certs))

    # --- certificates that exist are kept, and that is said ----------------

    def test_new_settings_over_existing_certificates_are_reported_with_the_rebuild(self):
        """make certs KEY=... DAYS=... over existing certificates says they were kept, and the pasted fix rebuilds them."""
        self.assertEqual(make("certs", f"CERTS={self.certs}", "KEY=ec").returncode, 0)
        with open(f"{self.certs}/ca.crt") as f:
            before = f.read()
        done = make("certs", f"CERTS={self.certs}", "KEY=rsa", "DAYS=30")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn(f"{self.certs}/ already held these certificates, so they were kept: "
                      "KEY=rsa DAYS=30", done.stdout)
        with open(f"{self.certs}/ca.crt") as f:
            self.assertEqual(f.read(), before)
        fix = re.search(r"To rebuild them: (make .*)", done.stdout).group(1)
        self.assertEqual(fix, f"make clean certs CERTS={self.certs} KEY=rsa DAYS=30")
        # Pasted as printed: the certificates are rebuilt with the new settings.
        rebuilt = subprocess.run(fix, shell=True, cwd=ROOT, capture_output=True, text=True,
                                 timeout=120)
        self.assertEqual(rebuilt.returncode, 0, rebuilt.stderr)
        self.assertNotIn("kept", rebuilt.stdout)
        self.assertEqual(key_type(f"{self.certs}/ca.key"), "rsa")
        days = subprocess.run(["openssl", "x509", "-in", f"{self.certs}/ca.crt", "-noout",
                               "-checkend", str(31 * 86400)], capture_output=True, text=True)
        self.assertNotEqual(days.returncode, 0, "the rebuilt CA does not expire in 30 days")

    def test_no_note_when_no_setting_was_given(self):
        """A plain second make certs does nothing and says nothing about kept settings."""
        self.assertEqual(make("certs", f"CERTS={self.certs}", "KEY=ec").returncode, 0)
        done = make("certs", f"CERTS={self.certs}")
        self.assertNotIn("kept", done.stdout)
        self.assertNotIn("openssl", done.stdout)

    # --- hints -----------------------------------------------------------

    def test_next_hints_keep_certs_and_port(self):
        """"Next:" hints repeat the CERTS= and PORT= given, and add none that were not."""
        done = make("certs", f"CERTS={self.certs}", "PORT=4444", "KEY=ec")
        self.assertIn(f"Next: make run CERTS={self.certs} PORT=4444", done.stdout)
        self.assertIn(f"make client CERTS={self.certs} PORT=4444", done.stdout)
        done = make("clean", f"CERTS={self.certs}")
        self.assertIn(f"Next: make certs CERTS={self.certs}", done.stdout)
        # Given only in the environment: the next command inherits it anyway.
        env_done = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "certs"],
                                  env=dict(os.environ, CERTS=self.certs, KEY="ec"),
                                  capture_output=True, text=True, timeout=120)
        self.assertIn("Next: make run   (and make client in a second terminal)", env_done.stdout)

    def test_help_shows_this_runs_port_and_folder(self):
        """make help names the PORT and CERTS of this run, not https://localhost:3000/ or certs/article/."""
        done = make("help", f"CERTS={self.certs}", "PORT=4444")
        self.assertIn("https://localhost:4444/", done.stdout)
        self.assertIn(f"{self.certs}/article/", done.stdout)    # wrapped, not cut
        self.assertNotIn("localhost:3000", done.stdout)
        self.assertNotIn(" certs/article", done.stdout)
        for line in done.stdout.splitlines():
            self.assertLessEqual(len(line), 100, line)

    def test_the_port_chosen_reaches_the_demo_and_the_proxys_backend(self):
        """make demo PORT=N runs the demo on N; the demo hints carry PORT; make proxy
        PORT=N puts server.py on N+1 (unless BACKEND_PORT is given), and make help
        lists BACKEND_PORT among the settings (issue 21)."""
        demo = make("-n", "demo", f"CERTS={self.certs}", "PORT=42001").stdout
        self.assertRegex(demo, r"mtls_demo\.py --lesson --certs \S+ --port 42001\n")
        scenarios = make("-n", "scenarios", f"CERTS={self.certs}", "PORT=42001").stdout
        self.assertIn(f"mtls_demo.py --certs {self.certs} --port 42001 --all", scenarios)
        help_text = make("help", "PORT=42020").stdout
        self.assertIn("PORT=42020 BACKEND_PORT=42021", help_text)
        self.assertIn("BACKEND_PORT=3001", make("help").stdout)
        if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
            proxy = make("-n", "proxy", f"CERTS={self.certs}", "PORT=42020").stdout
            self.assertIn("server.py --host 127.0.0.1 --port 42021 ", proxy)
            proxy = make("-n", "proxy", f"CERTS={self.certs}", "PORT=42020",
                         "BACKEND_PORT=5000").stdout
            self.assertIn("server.py --host 127.0.0.1 --port 5000 ", proxy)

    def test_make_proxy_says_what_nginx_logs_at_the_level_given(self):
        """make proxy NGINX_LOG=info said nginx "logs only warnings and errors"."""
        if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
            self.skipTest("nginx not installed: apt-get install nginx-light")
        said = make("-n", "proxy", f"CERTS={self.certs}", "PORT=42020").stdout
        self.assertIn("(mTLS; it logs only warnings and errors)", said)
        said = make("-n", "proxy", f"CERTS={self.certs}", "PORT=42020", "NGINX_LOG=info").stdout
        self.assertIn("https://localhost:42020/ (mTLS; its log level: info)", said)
        self.assertNotIn("only warnings", said)

    def test_inspect_shows_the_main_certificates_and_counts_the_scenario_ones(self):
        """After the demo made the scenario certificates, make inspect lists the
        main ones and sums the others up in one line; ALL=1 lists them all."""
        make("scenarios", f"CERTS={self.certs}", "KEY=ec")
        lines = make("inspect", f"CERTS={self.certs}").stdout.splitlines()
        rows = [l.split()[0] for l in lines if l.startswith(self.certs)]
        self.assertEqual(rows, [f"{self.certs}/{n}.crt" for n in ("ca", "server", "client")])
        self.assertIn(f"(and 13 more certificates, for the failure cases and the exhibits: make "
                      f"inspect ALL=1 CERTS={self.certs} lists them too)", lines)
        every = make("inspect", f"CERTS={self.certs}", "ALL=1").stdout.splitlines()
        self.assertEqual(len([l for l in every if l.startswith(self.certs)]), 16)

    def test_help_and_readme_agree_on_the_bench_duration(self):
        """make help says the bench takes about 45 s, and the README says nothing else."""
        done = make("help")
        bench = [l for l in done.stdout.splitlines() if "make bench" in l]
        self.assertEqual(len(bench), 1)
        self.assertIn("about 45 s", bench[0])
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        # Every duration the README gives near "bench" (about 45 s, ~1 min, 2 minutes...).
        durations = re.findall(r"bench[^\n]{0,120}?((?:about|~) ?\d+ ?(?:s|min|minutes?|seconds?)\b)",
                               readme, re.I)
        for duration in durations:
            self.assertEqual(duration, "about 45 s")

    # --- what the files are ---------------------------------------------

    def test_revoked_client_has_a_key_of_its_own(self):
        """revoked-client.crt is for revoked-client.key (0600), not for client.key, and the CRL lists it."""
        done = make(f"CERTS={self.certs}", "KEY=ec", f"{self.certs}/ca.crl", "certs")
        self.assertEqual(done.returncode, 0, done.stderr)
        key = f"{self.certs}/revoked-client.key"
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)

        def public(args):
            return subprocess.run(["openssl"] + args + ["-pubout"], capture_output=True,
                                  text=True, timeout=30).stdout
        cert_key = subprocess.run(["openssl", "x509", "-in", f"{self.certs}/revoked-client.crt",
                                   "-noout", "-pubkey"], capture_output=True, text=True).stdout
        self.assertEqual(cert_key, public(["pkey", "-in", key]))
        self.assertNotEqual(cert_key, public(["pkey", "-in", f"{self.certs}/client.key"]))
        serial = subprocess.run(["openssl", "x509", "-in", f"{self.certs}/revoked-client.crt",
                                 "-noout", "-serial"], capture_output=True, text=True)
        crl = subprocess.run(["openssl", "crl", "-in", f"{self.certs}/ca.crl", "-noout", "-text"],
                             capture_output=True, text=True)
        self.assertIn(serial.stdout.strip().split("=")[1], crl.stdout.replace(":", "").upper())

    def test_p12_password_is_never_on_a_command_line(self):
        """The .p12 password is read from a 0600 file (-passout file:), never given as pass:."""
        with open(os.path.join(ROOT, "Makefile")) as f:
            text = f.read()
        self.assertNotRegex(text, r"-pass(in|out) pass:")
        self.assertIn("-passout file:", text)
        done = make("p12", f"CERTS={self.certs}", "KEY=ec")
        self.assertEqual(done.returncode, 0, done.stderr)
        for name in ("p12.pass", "client.p12", "client-legacy.p12"):
            self.assertEqual(os.stat(f"{self.certs}/{name}").st_mode & 0o777, 0o600, name)

    def test_second_run_of_each_new_target_does_nothing(self):
        """make p12, the proxy certificate and ca-2 run their openssl steps once, not twice."""
        targets = ["p12", f"{self.certs}/proxy.crt", "ca-2"]
        first = make(f"CERTS={self.certs}", "KEY=ec", *targets)
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertIn("openssl", first.stdout)
        again = make(f"CERTS={self.certs}", *targets)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertNotRegex(again.stdout, r"(?m)^(umask 077 && )?openssl ")

    def test_rotation_targets_replace_files_whole(self):
        """renew-server and each rollover phase write a new file, then mv it in place (never half a file)."""
        self.assertEqual(make(f"CERTS={self.certs}", "KEY=ec", "certs", "ca-2").returncode, 0)
        for target in ["renew-server", "rollover-phase1", "rollover-phase2", "rollover-phase3",
                       "crl"]:
            with self.subTest(target=target):
                done = make(target, f"CERTS={self.certs}")
                self.assertEqual(done.returncode, 0, done.stderr)
                self.assertRegex(done.stdout, r"(?m)^mv \S+\.new ")
                self.assertIn("kill -HUP", done.stdout)
        with open(f"{self.certs}/trust.pem") as f, open(f"{self.certs}/ca-2.crt") as g:
            self.assertEqual(f.read(), g.read())
        issuer = subprocess.run(["openssl", "x509", "-in", f"{self.certs}/server.crt", "-noout",
                                 "-issuer"], capture_output=True, text=True).stdout
        self.assertIn("my-ca-2", issuer)

    def test_renew_server_never_makes_a_ca(self):
        """make renew-server ISSUER=ca-2 before make ca-2 is refused; it does not create a CA."""
        self.assertEqual(make("certs", f"CERTS={self.certs}", "KEY=ec").returncode, 0)
        done = make("renew-server", f"CERTS={self.certs}", "ISSUER=ca-2")
        self.assertRefused(done, "missing file", f"{self.certs}/ca-2.key", "make ca-2")
        self.assertFalse(os.path.exists(f"{self.certs}/ca-2.crt"))


if __name__ == "__main__":
    unittest.main()
