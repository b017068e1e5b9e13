"""Run every test module, a few at a time, and say how it went (make test).

Most tests wait on the network (a handshake, a deadline, a log line), so
running modules side by side in separate processes finishes the suite in
about half the time, even on two cores. The test PKI is built once, here,
and shared through MTLS_TEST_PKI (tests/support.py reads it).

Each module's own unittest output is printed whole when it ends; the last
lines sum them up:
    Ran 239 tests in 31.2s
    OK (skipped=3)
    239 passed, 0 failed, 3 skipped

Run:  python3 tests/run.py            (every module; what `make test` does)
      python3 tests/run.py -j 1       (one at a time)
      python3 tests/run.py test_trust test_facts
"""

import argparse
import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The slow modules first, so that they do not start last and finish alone.
SLOW_FIRST = ["test_hardening", "test_trust", "test_deploy", "test_demo", "test_mistakes",
              "test_client", "test_readme", "test_scenarios"]


def build_pki(folder):
    """Every certificate the tests use, made once with the project's Makefile."""
    done = subprocess.run(["make", "-C", ROOT, f"CERTS={folder}", "scenarios"],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        sys.exit("error: make scenarios failed, so no test can run:\n" + done.stdout + done.stderr)


def run_module(name, env):
    """Run one module with unittest; return (name, exit code, output, counts, seconds)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "unittest", "-v", f"tests.{name}"], cwd=ROOT,
                          env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    ran = re.search(r"^Ran (\d+) tests?", done.stdout, re.MULTILINE)
    skipped = re.search(r"skipped=(\d+)", done.stdout)
    bad = sum(int(n) for n in re.findall(r"(?:failures|errors|unexpected successes)=(\d+)",
                                         done.stdout.rsplit("\nRan ", 1)[-1]))
    total = int(ran.group(1)) if ran else 0
    if done.returncode != 0 and bad == 0:
        bad = 1                          # it crashed before unittest could count
    return name, done.returncode, done.stdout, (total, bad, int(skipped.group(1)) if skipped else 0), \
        time.monotonic() - started


def main(argv=None):
    p = argparse.ArgumentParser(description="Run the test modules side by side.")
    p.add_argument("modules", nargs="*", help="test modules (default: all of tests/test_*.py)")
    p.add_argument("-j", "--jobs", type=int, default=3, help="modules at once (default 3)")
    args = p.parse_args(argv)
    found = sorted(os.path.basename(f)[:-3] for f in glob.glob(os.path.join(ROOT, "tests", "test_*.py")))
    modules = args.modules or found
    unknown = [m for m in modules if m not in found]
    if unknown:
        print(f"error: bad option: no test module {unknown[0]!r} -- choose from {', '.join(found)}",
              file=sys.stderr)
        return 2
    modules.sort(key=lambda m: SLOW_FIRST.index(m) if m in SLOW_FIRST else len(SLOW_FIRST))

    started = time.monotonic()
    folder = tempfile.mkdtemp(prefix="mtls-test-")
    try:
        pki = os.path.join(folder, "certs")
        build_pki(pki)
        env = dict(os.environ, MTLS_TEST_PKI=pki)
        totals = [0, 0, 0]
        failed = []
        with concurrent.futures.ThreadPoolExecutor(max(args.jobs, 1)) as pool:
            for name, code, output, counts, seconds in pool.map(lambda m: run_module(m, env), modules):
                print(f"=== {name}: {counts[0]} tests, {seconds:.1f} s"
                      + ("" if code == 0 else "  FAILED"))
                print(output.rstrip(), flush=True)
                totals = [t + c for t, c in zip(totals, counts)]
                if code != 0:
                    failed.append(name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    total, bad, skipped = totals
    print(f"\nRan {total} tests in {time.monotonic() - started:.1f}s\n")
    if failed:
        print(f"FAILED (failures={bad}, modules: {', '.join(failed)})")
    else:
        print(f"OK (skipped={skipped})" if skipped else "OK")
    print(f"{total - bad - skipped} passed, {bad} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
