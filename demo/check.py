"""demo/check.py: --check, your own certificates (and server) checked.

`--check` points the project at *your* files, and optionally your server:
    python3 mtls_demo.py --check --cacert CA [--cert CERT [--key KEY]] [URL]
CERT and KEY are what a client presents (curl's --cert/--key; no KEY when it
sits in CERT); CA is the CA that must vouch for them, and for the server
at URL. Each check prints one line, "ok   ...", "warn ..." or "FAIL ... --
fix"; the exit code is 0 when nothing failed, 1 when something did, 2 for
a missing file or option.

Fields (names, dates, extensions) are read by the project's one certificate
reader, armour/certificate_fields.py, and printed in the words `openssl x509
-text` uses for them (demo/certificates.py). Two engines verify, and each line says which:
`openssl verify` (the binary, with the OpenSSL it links) and Python's own
ssl in a real in-memory handshake (the OpenSSL *Python* links, which is the
one client.py, server.py and requests use). The two can differ on one
machine; where they do, Python's verdict is the one a Python program will meet.

Simplified: it checks one client certificate and one server, with the
checks people trip over most; it does not fetch CRLs or OCSP, and it
recognises a missing intermediate only when a file next to yours holds it.

Reading order: the report, reading files, the checks on a client
certificate (key, dates, chain, signature, purpose, identity, key size, CA
file), strict X.509 as Python sees it, the server at URL, then
check_certificates() (the entry point: mtls_demo.py --check calls it) and
run_checks() (every check, in the order a failing handshake meets them).

Reads the files named; writes only temporary copies (a PEM copy of a DER
file, a throw-away server certificate) in a folder it removes.
"""

import ipaddress
import os
import re
import shlex
import shutil
import socket
import ssl
import stat
import sys
import tempfile
import textwrap
import time
import urllib.parse

from armour.certificate_fields import (leaf_first_command, leaf_out_of_place, pem_blocks,
                                       pem_to_der)
from armour.own_files import looked_in
from demo.certificates import (CheckError, common_name, issued, issuer_of, read_certificate,
                               run_openssl)
from demo.commands import ROOT, run_guarded
from demo.terminal import screen

WARN_DAYS = 30          # warn when a certificate expires within this many days

class Report:
    """Prints one line per check, wrapped to the width; counts the verdicts."""

    MARKS = {"ok": ("ok  ", "32"), "warn": ("warn", "33"), "FAIL": ("FAIL", "31")}

    def __init__(self, width=None):
        self.width = width or report_width()
        self.counts = {"ok": 0, "warn": 0, "FAIL": 0}

    def line(self, verdict, check, text, fix=None, tools=()):
        """One check's verdict; `fix` follows ' -- '; `tools` are (tool, how) lines."""
        self.counts[verdict] += 1
        mark, colour = self.MARKS[verdict]
        body = f"{check}: {text}" + (f" -- {fix}" if fix else "")
        self.say(screen.paint(mark, colour) + " " + body, plain_length=len(mark) + 1)
        for tool, how in tools:
            self.say(f"{'':5}{tool + ':':11}{how}", indent=16)

    def say(self, text, indent=5, plain_length=None):
        """Print text wrapped to the width, never cut (long words are split)."""
        colour_extra = len(text) - len(strip_colour(text))
        lines = textwrap.wrap(strip_colour(text), self.width, subsequent_indent=" " * indent,
                              break_on_hyphens=False) or [""]
        if colour_extra:                              # re-paint the verdict mark only
            lines[0] = text[:colour_extra + (plain_length or 0)] + lines[0][plain_length or 0:]
        print("\n".join(lines), flush=True)

    def exit_code(self):
        """0 if no check failed, else 1."""
        return 1 if self.counts["FAIL"] else 0


def report_width():
    """100 columns, or more when the terminal says it is wider."""
    if sys.stdout.isatty():
        return max(100, shutil.get_terminal_size((100, 24)).columns)
    return 100


def strip_colour(text):
    """The text without ANSI colour codes."""
    return re.sub(r"\033\[[0-9;]*m", "", text)


# Reading files: PEM or DER, certificates or keys, with one clear line for
# each mistake a user can make (missing, a folder, unreadable, garbage).

def read_bytes(path, what, flag):
    """The contents of a file the user named, or a CheckError saying why not."""
    if os.path.isdir(path):
        raise CheckError("bad file", f"{what} {path!r} is a folder, not a file -- fix {flag}")
    if not os.path.exists(path):
        raise CheckError("missing file", f"{what} {path!r} not found{looked_in(path)} "
                         f"-- fix {flag}")
    # Looked at before open(): opening a named pipe no one writes to waits for ever.
    # And a pipe (<(cat ca.crt)) can be read only once, while the checks read
    # each file several times, openssl too: it would seem empty the second time.
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        regular = True                  # open() below says why it cannot be read
    if not regular:
        raise CheckError("bad file", f"{what} {path!r} is not a regular file (a pipe, such as "
                         f"<(cat ...), or a device), and --check reads each file more than "
                         f"once -- save it to a file and pass that to {flag}")
    try:
        with open(path, "rb") as f:
            data = f.read(10_000_001)
    except OSError as exc:
        raise CheckError("unreadable file", f"{what} {path!r}: {exc.strerror} -- check its "
                         f"permissions (ls -l {shlex.quote(path)})") from None
    if len(data) > 10_000_000:
        raise CheckError("bad file", f"{what} {path!r} is over 10 MB, too big for a "
                         f"certificate or key file -- fix {flag}")
    return data


def der_to_pem(path, kind):
    """Convert a DER certificate ('x509') or key ('pkey') to PEM text, or None."""
    passin = ["-passin", "pass:"] if kind == "pkey" else []       # never prompt
    code, out = run_openssl([kind, "-inform", "DER", "-in", path, "-outform", "PEM"] + passin)
    label = "CERTIFICATE" if kind == "x509" else "PRIVATE KEY"
    return out if code == 0 and f"-----BEGIN {label}" in out else None


def load_certificates(path, what, flag, report, tmp):
    """Read a certificate file (PEM or DER); report how it parsed.

    Returns (certs, pem_path, key_block): pem_path is the file itself, or a
    PEM copy in `tmp` when the file is DER; key_block is a private key found
    in the same PEM file, if any. Returns None when nothing in it is usable.
    """
    data = read_bytes(path, what, flag)
    blocks = pem_blocks(data)
    name = os.path.basename(path)
    if blocks:
        form, pems = "PEM", [b for label, b in blocks if label in ("CERTIFICATE", "TRUSTED CERTIFICATE")]
    else:
        form, pem = "DER", der_to_pem(path, "x509")
        pems = [pem] if pem else []
    if not pems:
        labels = sorted({label for label, _ in blocks})
        report.line("FAIL", f"parse {name}", *not_a_certificate(path, what, flag, labels, data))
        return None
    certs = [read_certificate(pem) for pem in pems]
    if None in certs:
        report.line("FAIL", f"parse {name}", f"{what} {path}: block {certs.index(None) + 1} is "
                    f"not a valid certificate (its DER cannot be read as X.509)",
                    f"get an intact copy of {path} from whoever issued it")
        return None
    pem_path = path
    key_block = next((b for label, b in blocks if label.endswith("PRIVATE KEY")), None)
    leaf = certs[0]
    summary = (f"{form}, {len(certs)} certificate{'s' * (len(certs) > 1)}"
               f"{', the first' if len(certs) > 1 else ''}: {leaf.subject or '(empty subject)'}, "
               f"issued by {leaf.issuer}"
               + (f", X.509 v{leaf.version} (no extensions)" if leaf.version == 1 else "")
               + (", and a private key" if key_block else ""))
    if form == "DER":
        pem_path = os.path.join(tempfile.mkdtemp(dir=tmp), name)    # same name, PEM inside
        with open(pem_path, "w") as f:
            f.write(pems[0])
        out = shlex.quote(os.path.splitext(path)[0] + ".pem")
        report.line("FAIL", f"parse {name}", summary + "; client.py, Python requests, Node and "
                    "nginx read only PEM (the later checks use a PEM copy)",
                    f"convert it: openssl x509 -inform DER -in {shlex.quote(path)} -out {out}",
                    tools=[("curl", f"--cert-type DER reads it as it is (for --cert, not --cacert)")]
                    if flag == "--cert" else ())
    else:
        report.line("ok", f"parse {name}", summary)
    return certs, pem_path, key_block


def check_order(path, loaded, report, tmp):
    """A chain file written CA first (root or intermediate, then the leaf):
    OpenSSL takes the first certificate for the client's own. Say so, with
    the command that puts the leaf first; the later checks use a copy in the
    right order. Returns `loaded`, or the same for that copy."""
    certs, pem_path, key_block = loaded
    index = leaf_out_of_place([pem_to_der(c.pem) for c in certs])
    if index is None:
        return loaded
    leaf, name = certs[index], os.path.basename(path)
    fixed = os.path.splitext(path)[0] + "-fixed.pem"
    report.line("FAIL", "order", f"{name} starts with the CA certificate {certs[0].subject}; "
                f"its leaf, {leaf.subject or '(empty subject)'}, is certificate {index + 1} of "
                f"{len(certs)}: OpenSSL takes the first certificate for yours, so the key "
                f"seems not to match and every peer refuses it (the later checks use a copy "
                f"with the leaf first)", f"put the leaf first: "
                f"{leaf_first_command(path, index, fixed)}, then use {fixed}")
    ordered = [leaf] + [c for c in reversed(certs) if c is not leaf]
    copy = write_pems(ordered, os.path.join(tempfile.mkdtemp(dir=tmp), name))
    if key_block:
        with open(copy, "a") as f:
            f.write(key_block)
    return ordered, copy, key_block


def not_a_certificate(path, what, flag, labels, data):
    """(why, fix) for a file that holds no certificate."""
    if any("PRIVATE KEY" in label for label in labels):
        return (f"{path} holds a private key, not a certificate",
                f"pass the certificate with {flag} (and the key with --key)")
    if "CERTIFICATE REQUEST" in labels or "NEW CERTIFICATE REQUEST" in labels:
        return (f"{path} holds a certificate signing request (CSR), not a certificate",
                f"have the CA sign it (openssl x509 -req -in {shlex.quote(path)} -CA ca.crt "
                f"-CAkey ca.key ...), then pass the result with {flag}")
    if path.lower().endswith((".p12", ".pfx")):
        return (f"{path} looks like a PKCS#12 bundle",
                f"extract the certificate: openssl pkcs12 -in {shlex.quote(path)} -clcerts -nokeys "
                f"-out cert.pem (and the key: -nocerts -noenc -out key.pem)")
    found = f"PEM blocks {', '.join(labels)}" if labels else (
        "no PEM block, and it is not a DER certificate" if data.strip() else "nothing (empty)")
    return (f"{path} is not a certificate: it holds {found}",
            f"fix {flag}: a certificate file starts with -----BEGIN CERTIFICATE-----")


def describe_key_type(key_type, bits):
    """'RSA 2048-bit', 'EC 256-bit' (from openssl's algorithm names)."""
    kind = {"rsaEncryption": "RSA", "id-ecPublicKey": "EC", "ED25519": "Ed25519",
            "ED448": "Ed448", "dsaEncryption": "DSA"}.get(key_type, key_type)
    return f"{kind} {bits}-bit" if bits else kind


def load_key(path, report, tmp, key_block=None, cert_path=None):
    """Read a private key (PEM or DER; or the one inside the cert file);
    report how it parsed. Returns (pem_path, key type, bits, public key) or None."""
    if path is None:
        if key_block is None:
            report.line("FAIL", "parse key", f"no --key given, and {cert_path} holds no "
                        f"private key", "pass the key too: --key client.key")
            return None
        data, path, where = key_block.encode(), cert_path, "the private key in it: "
    else:
        data, where = read_bytes(path, "private key", "--key"), ""
    name = os.path.basename(path)
    blocks = pem_blocks(data)
    labels = sorted({label for label, _ in blocks})
    # PEM says so in its label or header; DER (PKCS#8) by its encryption OID,
    # PKCS#5 PBES (1.2.840.113549.1.5) or PKCS#12 PBE (1.2.840.113549.1.12.1).
    if ("ENCRYPTED PRIVATE KEY" in labels or b"Proc-Type: 4,ENCRYPTED" in data
            or (not blocks and (b"\x2a\x86\x48\x86\xf7\x0d\x01\x05" in data[:64]
                                or b"\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x01" in data[:64]))):
        plain = shlex.quote(os.path.splitext(path)[0] + "-plain.key")
        form = "PEM" if blocks else "DER"
        report.line("FAIL", f"parse {name}", f"{where}{form}, encrypted with a passphrase; "
                    f"client.py never prompts for one", f"decrypt a copy (keep it 0600): "
                    f"openssl pkey {'' if blocks else '-inform DER '}-in {shlex.quote(path)} "
                    f"-out {plain}",
                    tools=[("curl", "--key KEY --pass PASSPHRASE"),
                           ("Node", "tls options {key, passphrase}"),
                           ("nginx", "proxy_ssl_password_file FILE; (one passphrase a line)"),
                           ("requests", "cannot use an encrypted key: decrypt it as above")])
        return None
    if blocks:
        form = "PEM"
        pem = next((b for label, b in blocks if label.endswith("PRIVATE KEY")), None)
    else:
        form, pem = "DER", der_to_pem(path, "pkey")
    if pem is None:
        if "CERTIFICATE" in labels:
            why, fix = f"{path} holds a certificate, not a private key", "pass the key with --key"
        else:
            why = f"{path} is not a private key: it holds " + (
                f"PEM blocks {', '.join(labels)}" if labels else "no PEM block, and it is not a DER key")
            fix = "fix --key: a key file starts with -----BEGIN PRIVATE KEY----- (or RSA/EC ...)"
        report.line("FAIL", f"parse {name}", why, fix)
        return None
    code, out = run_openssl(["pkey", "-pubout", "-text_pub"], input=pem)
    if code != 0:
        report.line("FAIL", f"parse {name}", f"{where}openssl pkey cannot read it "
                    f"({last_error_line(out)})", "get an intact copy of the key")
        return None
    text = out.split("-----END PUBLIC KEY-----")[-1]
    key_type = "rsaEncryption" if "Modulus" in text else ("id-ecPublicKey" if "ASN1 OID" in text
                                                           else (text.split() or ["?"])[0].upper())
    bits = re.search(r"\((\d+) bit\)", out)
    bits = int(bits.group(1)) if bits else None
    pem_path = os.path.join(tempfile.mkdtemp(dir=tmp), name)
    with open(os.open(pem_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(pem)
    what = f"{where}{form}, {describe_key_type(key_type, bits)} private key, not encrypted"
    mode = os.stat(path).st_mode & 0o777
    if form == "DER":
        out_path = shlex.quote(os.path.splitext(path)[0] + ".pem")
        report.line("FAIL", f"parse {name}", what + "; client.py, requests, Node and nginx read "
                    "only PEM (the later checks use a PEM copy)",
                    f"convert it: (umask 077; openssl pkey -inform DER -in {shlex.quote(path)} "
                    f"-out {out_path})", tools=[("curl", "--key-type DER reads it as it is")])
    elif mode & 0o077:
        report.line("warn", f"parse {name}", f"{what}, but readable by other users "
                    f"(mode {mode:04o})", f"chmod 600 {shlex.quote(path)}")
    else:
        report.line("ok", f"parse {name}", what)
    return pem_path, key_type, bits, public_key(out)


def public_key(openssl_output):
    """The PEM public key block in openssl's output ('' if none)."""
    m = re.search(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", openssl_output, re.S)
    return m.group(0) if m else ""


def last_error_line(output):
    """The gist of an openssl error: its last line that says something."""
    lines = [l for l in output.strip().splitlines() if l.strip()]
    return (lines[-1].split(":")[-1] if lines and "error:" in lines[-1] else
            lines[-1] if lines else "no output").strip()


# The checks on a client certificate. Each takes what the files gave and
# prints its line(s).

def check_key_match(cert_path, key_path, cert, key_info, report):
    """Does the key belong to the certificate? Python's ssl and openssl both say."""
    # Python: load_cert_chain checks the pair, in a context we then throw away.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert_path, key_path)
        python = "Python ssl loads the pair"
    except ssl.SSLError as exc:
        python = f"Python ssl: {exc.reason or exc}"
        if exc.reason in LOAD_HINTS and exc.reason != "KEY_VALUES_MISMATCH":
            python = f"Python ssl will not load the pair, {exc.reason}: {LOAD_HINTS[exc.reason]}"
    # openssl: the public key openssl derives from the key (pkey -pubout) equals
    # the certificate's (its SubjectPublicKeyInfo, in the PEM x509 -pubkey prints).
    same = bool(cert.public_key) and cert.public_key == key_info[3]
    openssl_says = "openssl: same public key" if same else "openssl: the public keys differ"
    if same and "KEY_VALUES_MISMATCH" not in python:
        report.line("ok", "key match", f"the key belongs to the certificate ({python}; "
                    f"{openssl_says}, {describe_key_type(key_info[1], key_info[2])})")
        return True
    report.line("FAIL", "key match", f"the key is not the certificate's ({python}; {openssl_says})",
                "find the key the CSR was made with: its 'openssl pkey -pubout -in KEY' "
                "must equal 'openssl x509 -noout -pubkey -in CERT'")
    return False


def check_dates(path, cert, role, report, renew=None, now=None):
    """notBefore/notAfter of one certificate, with the days left; `renew`
    is the command that renews it, when we know one."""
    now = now or time.time()
    subject = cert.subject or "empty subject"       # a SPIFFE SVID's: its name is a URI SAN
    label = (cert.subject or "(empty subject)") if path == "server" else \
        f"{os.path.basename(path)} ({subject})"
    end = time.strftime("%Y-%m-%d", time.gmtime(cert.not_after))
    days = int((cert.not_after - now) // 86400)
    renew = "renew it" + (f": {renew}" if renew else f": a new certificate for the same key from "
                                                    f"{cert.issuer}")
    if cert.not_before and cert.not_before > now:
        start = time.strftime("%Y-%m-%d %H:%M", time.gmtime(cert.not_before))
        report.line("FAIL", f"dates {role}", f"{label} is not valid before {start} UTC",
                    "check this machine's clock (date -u); if it is right, wait or reissue")
    elif days < 0:
        report.line("FAIL", f"dates {role}", f"{label} expired on {end}, {-days} days ago", renew)
    elif days < WARN_DAYS:
        report.line("warn", f"dates {role}", f"{label} expires on {end}, in {days} days", renew)
    else:
        report.line("ok", f"dates {role}", f"{label} valid until {end} ({days} days left)")


def renew_command(cert_path, key_path, ca_path, cas):
    """The openssl command that renews a certificate for the same key, when
    the CA's key sits next to the CA file (ca.crt -> ca.key), else None.
    A CA renewed this way keeps its name and key: what it signed stays valid."""
    ca_key = os.path.splitext(ca_path)[0] + ".key"
    q = shlex.quote
    new = q(os.path.splitext(cert_path)[0] + "-renewed.crt")
    if cert_path == ca_path:            # a CA renews itself: its own key signs
        key = ca_key if os.path.exists(ca_key) else "CA.key"
        return f"openssl x509 -in {q(ca_path)} -key {q(key)} -days 3650 -out {new}"
    if not key_path or not os.path.exists(ca_key):
        return None
    return (f"openssl x509 -x509toreq -in {q(cert_path)} -key {q(key_path)} -copy_extensions "
            f"copyall | openssl x509 -req -CA {q(ca_path)} -CAkey {q(ca_key)} -copy_extensions "
            f"copyall -days 365 -out {new}")


def path_in_file(certs):
    """Follow issuers from the leaf through the cert file: the certificates in
    chain order, ending where the file has no issuer for the last one."""
    path = [certs[0]]
    while path[-1].subject != path[-1].issuer:
        nxt = issuer_of(path[-1], certs)
        if nxt is None or nxt in path:
            break
        path.append(nxt)
    return path


def nearby_files(folders, skip):
    """The PEM blocks of each certificate-like file (*.crt, *.pem, *.cer) next
    to the user's: (path, blocks) pairs, at most 500 files a folder, 1 MB each."""
    for folder in dict.fromkeys(folders):
        try:
            names = sorted(os.listdir(folder))[:500]
        except OSError:
            continue
        for name in names:
            full = os.path.join(folder, name)
            if not name.endswith((".crt", ".pem", ".cer")) or os.path.abspath(full) in skip:
                continue
            try:
                with open(full, "rb") as f:
                    yield full, pem_blocks(f.read(1 << 20))
            except OSError:
                continue


def find_nearby(issuer, folders, skip):
    """Look for the issuer's certificate in the files next to the user's:
    a missing intermediate is usually there. Returns (path, certificate)."""
    cn = common_name(issuer)
    for full, blocks in nearby_files(folders, skip):
        for label, block in blocks:
            # A cheap filter first: the CN's bytes appear in the DER as they are.
            if label != "CERTIFICATE" or cn.encode() not in pem_to_der(block):
                continue
            found = read_certificate(block)
            if found and found.subject == issuer:
                return full, found
    return None, None


def find_chain_file(leaf, folders, skip):
    """A file next to the user's that starts with the same leaf and holds more
    (trustme's and certbot's chain/fullchain files): (path, its certificates)."""
    der = pem_to_der(leaf.pem)
    for full, blocks in nearby_files(folders, skip):
        pems = [b for label, b in blocks if label == "CERTIFICATE"]
        if len(pems) > 1 and pem_to_der(pems[0]) == der:
            certs = [read_certificate(p) for p in pems]
            if None not in certs:
                return full, certs
    return None, None


def chains_to(ca_path, certs, tmp):
    """Does certs[0] chain to the CA file, the rest of `certs` helping as
    intermediates? (openssl verify, dates and strict rules aside: the chain
    check judges those.)"""
    args = ["verify", "-no_check_time", "-CAfile", ca_path]
    if certs[1:]:
        args += ["-untrusted", write_pems(certs[1:], os.path.join(tmp, "nearby-rest.pem"))]
    code, _ = run_openssl(args + [write_pems(certs[:1], os.path.join(tmp, "nearby-first.pem"))])
    return code == 0


def write_pems(certs, path):
    """Write certificates into one PEM file; return its path."""
    with open(path, "w") as f:
        f.write("".join(c.pem for c in certs))
    return path


def check_completeness(cert_path, certs, cas, ca_path, report, key=None, tmp=None):
    """The cert file must hold the leaf and every intermediate up to (not
    necessarily including) a CA in the CA file. Returns what it learned:
    ("complete" | "incomplete" | "other-ca" | "unknown", the file holding the issuer);
    for "other-ca", (the file, the other root CA's certificate)."""
    name = os.path.basename(cert_path)
    path = path_in_file(certs)
    top = path[-1]
    unused = [c for c in certs if c not in path]
    extra = (f"; it also holds {len(unused)} certificate(s) not in this chain "
             f"({', '.join(c.subject for c in unused)}): remove them") if unused else ""
    in_ca = any(issued(c, top) for c in cas) or any(c.pem == top.pem for c in cas)
    if in_ca:
        steps = " -> ".join(c.subject for c in path)
        anchor = ("" if top.subject == top.issuer else
                  f" -> {top.issuer} (in {os.path.basename(ca_path)})")
        report.line("warn" if unused else "ok", "complete chain",
                    f"{name} holds {steps}{anchor}{extra}")
        return "complete", None
    if top.subject == top.issuer:               # the file holds its own root: another CA
        return "other-ca", (cert_path, top, None)
    folders = [os.path.dirname(cert_path) or ".", os.path.dirname(ca_path) or "."]
    skip = {os.path.abspath(cert_path), os.path.abspath(ca_path)}
    q, ca_name = shlex.quote, os.path.basename(ca_path)
    # trustme and certbot write the leaf alone and, beside it, a file with the
    # leaf followed by its intermediates: that file is the one to present.
    chain_path, chain_certs = find_chain_file(certs[0], folders, skip)
    if chain_path and chains_to(ca_path, chain_certs, tmp):
        steps = " -> ".join(c.subject for c in path_in_file(chain_certs))
        report.line("FAIL", "complete chain", f"{name} holds only {top.subject}, issued by "
                    f"{top.issuer}, which {ca_name} does not hold; {chain_path} next to it holds "
                    f"the whole chain ({steps}, which chains to {ca_name})",
                    f"use {chain_path} as the certificate:",
                    tools=chain_fix_tools(chain_path, key or "KEY"))
        return "incomplete", chain_path
    # Otherwise climb: the issuer's certificate, then its issuer's, from the
    # files nearby, until one is issued by a CA in the CA file.
    found, current = [], top
    for _ in range(8):                          # a deeper chain than this is not a real one
        if any(issued(c, current) for c in cas) or current.subject == current.issuer:
            break
        found_path, issuer = find_nearby(current.issuer, folders, skip)
        if issuer is None or any(issuer.pem == c.pem for _, c in found):
            break
        found.append((found_path, issuer))
        current = issuer
    if not found:
        report.line("FAIL", "complete chain", f"{name} ends at {top.subject}, issued by "
                    f"{top.issuer}, which is neither in {name} nor in {ca_name} "
                    f"(and in no file next to them)",
                    f"if {top.issuer} is an intermediate CA, append its certificate: "
                    f"cat {q(cert_path)} INTERMEDIATE.crt > chain.pem and use chain.pem; "
                    f"if it is another root CA, this certificate is from the wrong CA (see chain)")
        return "unknown", None
    names = " and ".join(f"{c.subject} (in {p})" for p, c in found)
    if current.subject == current.issuer and not any(c.pem == current.pem for c in cas):
        # Not a gap in the file but another CA: the chain check says it, with the
        # chain to send too when that CA's intermediates were found.
        chain = os.path.splitext(cert_path)[0] + "-chain.pem"
        send = chain_command(cert_path, found[:-1], chain) if found[:-1] else None
        return "other-ca", (found[-1][0], current, send and (send, chain))
    if not chains_to(ca_path, [c for _, c in found], tmp):
        report.line("FAIL", "complete chain", f"{name} ends at {top.subject}; the issuers found "
                    f"next to it, {names}, do not chain to {ca_name} (the next one, "
                    f"{current.issuer}, is in no file here)",
                    f"ask whoever issued {name} for its whole chain, leaf first, and use that "
                    f"file as the certificate")
        return "unknown", None
    chain = os.path.splitext(cert_path)[0] + "-chain.pem"
    how = chain_command(cert_path, found, chain)
    report.line("FAIL", "complete chain", f"{name} is incomplete: it ends at {top.subject}, issued "
                f"by the intermediate CA {names}, which chains to {ca_name}; a peer that trusts "
                f"only the root cannot link them",
                f"send the chain: {how}, then use it as the certificate:",
                tools=chain_fix_tools(chain, key or "KEY"))
    return "incomplete", found[0][0]


def chain_command(cert_path, found, chain):
    """The shell command that writes the leaf's file, then each intermediate
    found nearby, into `chain`: `cat` for a file that holds only what the
    chain needs; for one that holds more, `openssl x509 -in` when it is the
    file's first certificate, else `awk` picks out its block."""
    q = shlex.quote
    wanted = {pem_to_der(c.pem) for _, c in found}
    parts, seen = [f"cat {q(cert_path)}"], set()
    for file, cert in found:
        if file in seen:
            continue
        seen.add(file)
        with open(file, "rb") as f:
            ders = [pem_to_der(b) for label, b in pem_blocks(f.read(1 << 20))
                    if label == "CERTIFICATE"]
        if set(ders) <= wanted:
            parts[0] += f" {q(file)}"           # the whole file belongs in the chain
        elif ders and ders[0] == pem_to_der(cert.pem):
            parts.append(f"openssl x509 -in {q(file)}")
        else:                                   # the k-th certificate block of the file
            k = ders.index(pem_to_der(cert.pem)) + 1
            parts.append(f"awk '/BEGIN CERTIFICATE/{{n++}} n=={k}; "
                         f"/END CERTIFICATE/ && n=={k}{{exit}}' {q(file)}")
    if len(parts) == 1:
        return f"{parts[0]} > {q(chain)}"
    return f"({'; '.join(parts)}) > {q(chain)}"


def chain_fix_tools(chain, key="KEY"):
    """How each tool presents a chain file (leaf first, then intermediates)."""
    return [("curl", f"--cert {chain} --key {key}"),
            ("client.py", f"--cert {chain} --key {key}"),
            ("requests", f"requests.get(url, cert=({chain!r}, {key!r}))"),
            ("Node", f"https.request(url, {{cert: fs.readFileSync({chain!r}), "
                     f"key: fs.readFileSync({key!r})}})"),
            ("nginx", f"proxy_ssl_certificate {chain}; proxy_ssl_certificate_key {key};")]


# `openssl verify` error codes we explain (X509_V_ERR_*, see `man openssl-verify`).
VERIFY_HINTS = {
    2: "see complete chain", 20: "see complete chain", 21: "see complete chain",
    18: "it is self-signed: have the CA sign it",
    19: "the chain ends at a root CA that the CA file does not hold: another CA issued it",
    7: "the signature does not match the CA's key, so another CA with the same name signed "
       "it: use the CA file that really issued this certificate",
    9: "see dates", 10: "see dates", 26: "see purpose",
    66: "see key size", 67: "see key size", 68: "see signature",
}


# What Python's ssl says when it will not even load a certificate and key
# (SSL_CTX_use_certificate at the security level), and the check that explains it.
LOAD_HINTS = {"CA_MD_TOO_WEAK": "see signature", "EE_KEY_TOO_SMALL": "see key size",
              "CA_KEY_TOO_SMALL": "see key size", "KEY_VALUES_MISMATCH": "see key match"}


# Strict-only verify errors (OpenSSL 3.0, X509_V_ERR_* 85-91) and the
# openssl.cnf line that avoids each; 92, the CA without keyUsage, has its own check.
STRICT_FIXES = {
    85: "authorityKeyIdentifier = keyid:always",
    86: "subjectKeyIdentifier = hash",
    89: "basicConstraints = critical, CA:TRUE",
    90: "authorityKeyIdentifier not marked critical",
    88: "its subjectAltName marked critical (an empty subject needs it, RFC 5280 4.2.1.6): "
        "subjectAltName = critical, URI:...",
    91: "subjectKeyIdentifier not marked critical",
}


def verify_hint(code, depth=None, subject=None):
    """Where to look, or what to change, for an openssl verify error code."""
    if code in VERIFY_HINTS:
        return VERIFY_HINTS[code]
    if code in STRICT_FIXES and depth is not None:
        which = "certificate" if depth == 0 else "CA certificate"
        where = "" if code == 88 else " (see openssl.cnf)"
        return f"reissue the {which} {subject or '(empty subject)'} with {STRICT_FIXES[code]}{where}"
    if code in STRICT_FIXES:
        return "see chain, which names the certificate"
    return "see CA"


def openssl_verify(leaf, rest, ca_path, purpose, tmp, strict=True):
    """Run `openssl verify` on a leaf (+ untrusted intermediates); return
    (command shown to the user, None if OK else (code, depth, subject, message))."""
    leaf_path = write_pems([leaf], os.path.join(tmp, "verify-leaf.pem"))
    args = ["verify"] + (["-x509_strict"] if strict else []) + ["-purpose", purpose, "-CAfile", ca_path]
    if rest:
        args += ["-untrusted", write_pems(rest, os.path.join(tmp, "verify-rest.pem"))]
    shown = "openssl verify" + (" -x509_strict" if strict else "") + f" -purpose {purpose}"
    code, out = run_openssl(args + [leaf_path])
    if code == 0:
        return shown, None
    m = re.search(r"^(.*)\nerror (\d+) at (\d+) depth lookup: (.*)$", out, re.M)
    if not m:
        return shown, (0, 0, "?", last_error_line(out))
    return shown, (int(m.group(2)), int(m.group(3)), m.group(1).strip(), m.group(4).strip())


def check_chain(cert_path, certs, ca_path, completeness, report, tmp, role="client", key=None):
    """openssl verify -x509_strict -purpose sslclient (or sslserver)."""
    name = os.path.basename(cert_path)
    purpose = "sslclient" if role == "client" else "sslserver"
    shown, error = openssl_verify(certs[0], certs[1:], ca_path, purpose, tmp)
    if error is None:
        report.line("ok", "chain", f"{name} verifies against {os.path.basename(ca_path)} "
                    f"({shown}: OK)")
        return True
    code, depth, subject, message = error
    said = f"{shown}: error {code} at depth {depth} ({subject or 'empty subject'}): {message}"
    state, found = completeness
    if state == "no-ca":
        report.line("FAIL", "chain", said, f"{os.path.basename(ca_path)} holds no CA "
                    f"certificate: see CA")
        return False
    if code in (2, 20, 21) and state == "other-ca":
        other_path, other_root, send = found
        report.line("FAIL", "chain", f"{said}. {name} was issued under another CA, "
                    f"{other_root.subject} (in {other_path}), not by the CA in "
                    f"{os.path.basename(ca_path)}: a peer that trusts that CA refuses it (unknown_ca)",
                    f"get a certificate signed by the CA the peer trusts, or (if you run the "
                    f"peer) add {other_path} to the CAs it trusts"
                    + (f" and send the chain: {send[0]}, then use it as the certificate:"
                       if send else ""),
                    tools=chain_fix_tools(send[1], key or "KEY") if send else ())
        return False
    hint = verify_hint(code, depth, subject)
    if code not in VERIFY_HINTS:            # a strict-only failure? ask again without -x509_strict
        _, lax = openssl_verify(certs[0], certs[1:], ca_path, purpose, tmp, strict=False)
        if lax is None:
            said += "; without -x509_strict openssl verify accepts it: only strict verifiers refuse it"
    report.line("FAIL", "chain", said, hint)
    return False


def is_weak_signature(algorithm):
    """SHA-1 or MD5 (or older): collisions can be made, so a signature can be forged."""
    return bool(re.search(r"(?i)sha1|md[245]", algorithm))


def check_signature(cert_path, chain, ca_path, key_path, cas, report):
    """How each certificate of the chain is signed: not with SHA-1 or MD5.
    A self-signed root's own signature is never checked by anyone, so it does not count."""
    signed = [c for c in chain if c.subject != c.issuer]
    weak = [c for c in signed if is_weak_signature(c.signature)]
    if not weak:
        report.line("ok", "signature", ", ".join(f"{c.subject} signed with {c.signature}"
                                                 for c in signed)
                    or "only self-signed certificates")
        return True
    # OpenSSL 3 refuses SHA-1 signatures from security level 1 up (CA_MD_TOO_WEAK);
    # `openssl verify` checks no security level by default, so the chain check can say OK.
    renew = renew_command(cert_path, key_path, ca_path, cas) if weak[0] is chain[0] else None
    fix = (f"have the CA re-sign it with SHA-256: {renew.replace(' -days ', ' -sha256 -days ')}"
           if renew else f"have {weak[0].issuer} re-sign it with SHA-256 (openssl x509 -req "
           f"... -sha256, or openssl ca -md sha256), keeping its key and extensions")
    report.line("FAIL", "signature", "; ".join(f"{c.subject} is signed with {c.signature}"
                                               for c in weak)
                + ": SHA-1 and MD5 signatures can be forged, and OpenSSL 3 refuses them from "
                "security level 1 up (Python's ssl and curl: ca md too weak, CA_MD_TOO_WEAK), "
                "though openssl verify without -auth_level 1 accepts them", fix)
    return False


def check_purpose(cert, report, role="client", label="purpose"):
    """extendedKeyUsage (and keyUsage, basicConstraints) against the role."""
    want = "TLS Web Client Authentication" if role == "client" else "TLS Web Server Authentication"
    short = "clientAuth" if role == "client" else "serverAuth"
    other = "serverAuth" if role == "client" else "clientAuth"
    eku = cert.extensions.get("Extended Key Usage")
    ku = cert.extensions.get("Key Usage")
    basic = cert.extensions.get("Basic Constraints", [])
    if "CA:TRUE" in basic:
        report.line("FAIL", label, f"{cert.subject} is a CA certificate (CA:TRUE), not a "
                    f"{role} certificate", f"pass the {role}'s own certificate, issued by this CA")
        return
    ku_text = f", keyUsage {', '.join(ku)}" if ku else ""
    if ku is not None and "Digital Signature" not in ku:
        report.line("FAIL", label, f"keyUsage {', '.join(ku)} lacks digitalSignature, which "
                    f"a TLS {role} key needs to sign the handshake", f"reissue it with "
                    f"keyUsage = critical, digitalSignature")
    elif eku is None:
        other_role = "server" if role == "client" else "client"
        report.line("warn", label, f"no extendedKeyUsage{ku_text}: a certificate without one "
                    f"is valid for every purpose, as a {role} and also as a {other_role}; "
                    f"whoever holds its key can use it for both",
                    f"reissue it with extendedKeyUsage = {short}")
    elif want in eku or "Any Extended Key Usage" in eku:
        report.line("ok", label, f"extendedKeyUsage {', '.join(eku)}{ku_text}: fits a {role} "
                    f"certificate")
    else:
        this_is = " (a server certificate)" if "TLS Web Server Authentication" in eku else (
            " (a client certificate)" if "TLS Web Client Authentication" in eku else "")
        report.line("FAIL", label, f"extendedKeyUsage says {', '.join(eku)} only{this_is}, "
                    f"not {short}: a peer checking the purpose refuses it (as "
                    f"unsupported_certificate)", f"use a {role} certificate, with "
                    f"extendedKeyUsage = {short} (not {other}): issue one per role")


def identities(cert):
    """A certificate's identities as server.py spells them: typed SAN
    entries, or the CN when there is no SAN at all."""
    san = cert.extensions.get("Subject Alternative Name")
    if not san:
        cn = common_name(cert.subject)
        return [f"cn:{cn}"] if cn else []
    kinds = {"DNS": "dns", "URI": "uri", "IP Address": "ip", "email": "email"}
    result = []
    for entry in san:
        kind, _, value = entry.partition(":")
        if kind == "IP Address" and is_ip(value):  # openssl writes ::1 as 0:0:0:0:0:0:0:1
            value = str(ipaddress.ip_address(value))
        if kind in kinds:
            result.append(f"{kinds[kind]}:{value}")
    return result


def check_identity(cert, report):
    """What a server sees this client as (and --allow matches)."""
    names = identities(cert)
    if not names:
        report.line("warn", "identity", "no subjectAltName and no CN: a server has no name to "
                    "know this client by", "reissue it with a CN or a subjectAltName")
        return
    source = "its subjectAltName" if not names[0].startswith("cn:") else \
        "its CN, as it has no subjectAltName"
    uris = [n for n in names if n.startswith("uri:")]
    if len(uris) > 1:
        report.line("warn", "identity", f"{len(uris)} URI SANs ({', '.join(uris)}): not a valid "
                    f"SPIFFE identity, and server.py refuses it", "keep one URI SAN")
        return
    report.line("ok", "identity", f"a server knows this client as {', '.join(names)} (from "
                f"{source}; server.py's log and --allow use this spelling)")


def check_key_size(certs, key_info, report, role="client"):
    """RSA keys under 2048 bits are weak, and refused at OpenSSL's security level 2."""
    weak = []
    if key_info and key_info[1] == "rsaEncryption" and (key_info[2] or 0) < 2048:
        weak.append(f"the key ({key_info[2]} bits)")
    weak += [f"{c.subject}'s key ({c.key_bits} bits)" for c in certs[1 if key_info else 0:]
             if c.key_type == "rsaEncryption" and (c.key_bits or 0) < 2048]
    if weak:
        report.line("FAIL", "key size", f"RSA under 2048 bits: {', '.join(dict.fromkeys(weak))}; "
                    f"such keys can be factored, and OpenSSL at security level 2 (Debian, "
                    f"Ubuntu, Python's default ciphers) refuses them",
                    "make a new key and have the CA certify it: openssl genpkey -algorithm EC "
                    "-pkeyopt ec_paramgen_curve:P-256 -out new.key (or -algorithm RSA "
                    "-pkeyopt rsa_keygen_bits:2048), then a CSR: openssl req -new -key new.key "
                    "-subj '/CN=NAME' -out new.csr")
    else:
        kinds = [describe_key_type(key_info[1], key_info[2])] if key_info else []
        kinds += [describe_key_type(c.key_type, c.key_bits) for c in certs]
        report.line("ok", "key size", ", ".join(dict.fromkeys(kinds)) + ": strong enough")


def check_ca_file(ca_path, cas, relevant, report, v1_leaf=False):
    """The CA file must hold CA certificates, with the extensions a strict
    verifier wants. `relevant` are the ones that issued the user's chain (all
    of them when unknown); a big bundle gets one line, naming its problems."""
    name = os.path.basename(ca_path)
    if len(relevant) > 3:
        bad = [ca.subject for ca in relevant if ca_problem(ca, ca_path)]
        if not bad:
            report.line("ok", "CA", f"{name}: all {len(relevant)} certificates are CAs with "
                        f"keyUsage keyCertSign")
        else:
            report.line("warn", "CA", f"{name}: {len(bad)} of {len(relevant)} certificates lack "
                        f"CA:TRUE or keyUsage keyCertSign ({'; '.join(bad[:3])}"
                        f"{'; ...' if len(bad) > 3 else ''}): strict verifiers refuse chains "
                        f"through them (pass --cert to check the CA your certificate uses)")
        return
    for ca in relevant:
        problem = ca_problem(ca, ca_path, v1_leaf)
        if problem:
            report.line("FAIL", "CA", f"{ca.subject} in {name} {problem[0]}", problem[1])
        else:
            report.line("ok", "CA", f"{ca.subject} in {name}: basicConstraints "
                        f"{', '.join(ca.extensions['Basic Constraints'])}, keyUsage "
                        f"{', '.join(ca.extensions['Key Usage'])}")


def can_anchor(cert):
    """Could this certificate end a chain as its CA? CA:TRUE, or self-signed
    without basicConstraints (a v1 root, or a CA that lacks the extension:
    the CA check says what strict verifiers make of it). A leaf cannot."""
    basic = cert.extensions.get("Basic Constraints")
    return "CA:TRUE" in basic if basic is not None else cert.subject == cert.issuer


def ca_problem(ca, ca_path, v1_leaf=False):
    """(why, fix) if a CA certificate would not vouch for anyone under strict rules, else None."""
    basic = ca.extensions.get("Basic Constraints")
    ku = ca.extensions.get("Key Usage")
    if not can_anchor(ca):
        return ("is not a CA (no basicConstraints CA:TRUE): it cannot vouch for anyone",
                "pass the CA's certificate with --cacert (the issuer of your certificates)")
    no_basic = basic is None and ca.version > 1     # a v1 root has no extensions at all
    if not no_basic and ku is not None and "Certificate Sign" in ku:
        return None
    key = os.path.splitext(ca_path)[0] + ".key"
    key = key if os.path.exists(key) else "CA.key"
    subj = "/" + "/".join(p.replace("/", "\\/") for p in reversed(re.split(r"(?<!\\),", ca.subject)))
    have = "no keyUsage" if ku is None else f"keyUsage {', '.join(ku)} without keyCertSign"
    if no_basic:
        have = "no basicConstraints" + ("" if ku is None else f" (only keyUsage {', '.join(ku)})")
    # openssl x509 -x509_strict says "invalid CA certificate" (error 79) for a
    # self-signed v3 CA without basicConstraints; lenient verifiers accept it.
    return (f"has {have}: strict verifiers (Python 3.13's ssl.create_default_context(), "
            f"anything with VERIFY_X509_STRICT) refuse every chain through it"
            + (" as an invalid CA certificate" if no_basic else "")
            + ("; this, not the v1 leaf, is what strict checks reject" if v1_leaf else ""),
            f"reissue the CA with the same key and name, so existing certificates stay valid: "
            f"openssl req -x509 -new -key {shlex.quote(key)} -subj {shlex.quote(subj)} -days 3650 "
            + ("-addext 'basicConstraints=critical,CA:TRUE' " if no_basic else "")
            + "-addext 'keyUsage=critical,keyCertSign,cRLSign' -out ca-new.crt")


# Strict X.509 as Python sees it: a real handshake, in memory. The server
# context demands a client certificate and trusts CA, with the flags
# Python 3.13's ssl.create_default_context() sets; the client presents
# CERT/KEY. A throw-away certificate stands in for the server's own. (Not
# the other way round: a client context checks what it is shown as a
# *server* certificate, and refuses a good clientAuth-only certificate with
# "unsuitable certificate purpose".)

def strict_flags():
    """VERIFY_X509_STRICT, plus VERIFY_X509_PARTIAL_CHAIN where this Python has it (3.10+)."""
    return ssl.VERIFY_X509_STRICT | getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)


def make_throwaway_server(tmp):
    """A self-signed EC certificate for localhost, valid one day: our stand-in server."""
    key, crt = os.path.join(tmp, "stand-in.key"), os.path.join(tmp, "stand-in.crt")
    code, out = run_openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                             "-nodes", "-keyout", key, "-out", crt, "-days", "1",
                             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"])
    return (crt, key) if code == 0 else None


def handshake_in_memory(server_context, client_context):
    """Run a TLS handshake between two contexts through MemoryBIOs (no
    sockets); return the exception each side raised (None if it finished)."""
    c2s, s2c = ssl.MemoryBIO(), ssl.MemoryBIO()        # bytes client -> server, and back
    server = server_context.wrap_bio(c2s, s2c, server_side=True)
    client = client_context.wrap_bio(s2c, c2s, server_hostname="localhost")
    errors = {}
    for _ in range(10):                       # TLS 1.3 needs 2 flights each way, 1.2 needs 3
        for side, end in (("client", client), ("server", server)):
            if side in errors:
                continue
            try:
                end.do_handshake()
                errors[side] = None           # finished
            except ssl.SSLWantReadError:
                pass                          # waits for the other side's bytes
            except (ssl.SSLError, OSError) as exc:
                errors[side] = exc
        if len(errors) == 2 or errors.get("server"):
            break
    return errors.get("client"), errors.get("server")


def check_strict(cert_path, key_path, ca_path, report, tmp, chain_state=None):
    """Python's own ssl, strict: does a server that trusts CA accept CERT/KEY?
    `chain_state` is what check_completeness learned (another CA: see chain)."""
    flags = "VERIFY_X509_STRICT" + (" | VERIFY_X509_PARTIAL_CHAIN" if hasattr(
        ssl, "VERIFY_X509_PARTIAL_CHAIN") else " (this Python has no VERIFY_X509_PARTIAL_CHAIN)")
    engine = f"Python {sys.version_info[0]}.{sys.version_info[1]} ssl, {ssl.OPENSSL_VERSION}, {flags}"
    stand_in = make_throwaway_server(tmp)
    if stand_in is None:
        report.line("warn", "strict", f"could not make a stand-in server certificate with "
                    f"openssl req, so no in-memory handshake ({engine})")
        return None
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*stand_in)
    server_context.verify_mode = ssl.CERT_REQUIRED        # demand a client certificate
    server_context.verify_flags |= strict_flags()
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(cafile=stand_in[0])
    try:
        server_context.load_verify_locations(cafile=ca_path)
        client_context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        report.line("FAIL", "strict", f"Python's ssl cannot load the files: {exc.reason or exc} "
                    f"({engine})", LOAD_HINTS.get(exc.reason, "see the checks above for the cause"))
        return False
    client_error, server_error = handshake_in_memory(server_context, client_context)
    if server_error is None and client_error is None:
        report.line("ok", "strict", f"an in-memory handshake with a strict server that trusts "
                    f"{os.path.basename(ca_path)} accepts this client ({engine})")
        return True
    error = server_error or client_error
    why = getattr(error, "verify_message", None) or getattr(error, "reason", None) or str(error)
    code = getattr(error, "verify_code", None)
    hint = verify_hint(code) if code else "see the checks above"
    if hint == "see complete chain" and chain_state == "other-ca":
        hint = "see chain"                  # no gap in the file: the issuer is another CA
    report.line("FAIL", "strict", f"a strict server that trusts {os.path.basename(ca_path)} "
                f"refuses this client in an in-memory handshake: {why}"
                + (f" (verify error {code})" if code else "") + f" ({engine})", hint)
    return False


# With a URL: what the server really sends, checked as a server
# certificate, then a real request with client.py's own code.

def parse_url(url):
    """(host, port) of an https:// URL, or a CheckError."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        raise CheckError("bad URL", f"{url!r}: {exc} -- try https://localhost:3000/") from None
    if parts.scheme != "https" or not parts.hostname:
        raise CheckError("bad URL", f"{url!r} is not an https:// URL -- try "
                         f"https://{parts.netloc or 'localhost:3000'}/")
    return parts.hostname, port


def is_ip(host):
    """True if host is an IP address rather than a DNS name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def why_no_chain(host, port, output):
    """(why, fix) when openssl s_client got no certificate from host:port."""
    try:
        socket.getaddrinfo(host, port)
    except socket.gaierror:
        return f"cannot resolve {host!r}", "fix the URL's host name"
    if "errno=111" in output:                   # ECONNREFUSED
        return f"nothing listens on {host}:{port}", "start the server, or fix the URL's port"
    return (f"openssl s_client got no certificate from {host}:{port}: {last_error_line(output)}",
            "is it a TLS server, and the right port?")


def fetch_server_chain(host, port, cert_path, key_path, chain_length=1):
    """Ask `openssl s_client -showcerts` what the server sends: its chain,
    and whether (and for which CA names) it requests a client certificate."""
    connect = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    args = ["s_client", "-connect", connect, "-showcerts", "-nameopt", "RFC2253"]
    args += ["-noservername"] if is_ip(host) else ["-servername", host]
    if cert_path and key_path:                 # so that the server logs an ordinary client
        args += ["-cert", cert_path, "-key", key_path]
        if chain_length > 1:                   # -cert sends only the file's first certificate
            args += ["-cert_chain", cert_path]
    code, out = run_openssl(args, input="", timeout=15)
    chain = [b for label, b in pem_blocks(out.encode()) if label == "CERTIFICATE"]
    names = []
    if "Acceptable client certificate CA names" in out:
        for line in out.split("Acceptable client certificate CA names\n", 1)[1].splitlines():
            if line.startswith(("Requested Signature", "Client Certificate Types", "---")):
                break
            names.append(line.strip())
    requests_cert = "Requested Signature Algorithms" in out
    return chain, names, requests_cert, out


def covers_host(cert, host):
    """Does the certificate's subjectAltName cover `host`? (a CN does not count)"""
    san = cert.extensions.get("Subject Alternative Name") or []
    if is_ip(host):
        want = ipaddress.ip_address(host)
        for entry in san:
            if entry.startswith("IP Address:"):
                try:
                    if ipaddress.ip_address(entry[len("IP Address:"):]) == want:
                        return True
                except ValueError:
                    pass
        return False
    host = host.lower().rstrip(".")
    for entry in san:
        if not entry.startswith("DNS:"):
            continue
        name = entry[4:].lower().rstrip(".")
        if name == host:
            return True
        # A wildcard stands for exactly one whole left-most label (RFC 6125 6.4.3).
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def check_server(url, ca_path, display_ca, client_certs, cert_path, key_path, report, tmp):
    """The server at URL: its chain, the CA names it requests, its name, and a request."""
    host, port = parse_url(url)
    pems, names, requests_cert, out = fetch_server_chain(host, port, cert_path, key_path,
                                                         len(client_certs))
    if not pems and cert_path and "error setting certificate" in out:
        # s_client would not load our certificate (a SHA-1 signature, a small key):
        # that is our side's fault, found above; look at the server without it.
        m = re.search(r"error:[0-9A-F]+:[^:]*:[^:]*:([^:]+):", out)
        reason = m.group(1) if m else last_error_line(out)
        report.line("warn", "server", f"openssl s_client would not present your certificate "
                    f"({reason}, {LOAD_HINTS.get(reason.upper().replace(' ', '_'), 'see above')})"
                    f": the server is looked at without one")
        pems, names, requests_cert, out = fetch_server_chain(host, port, None, None)
    if not pems:
        report.line("FAIL", "server", *why_no_chain(host, port, out))
        return
    chain = [c for c in (read_certificate(p) for p in pems) if c]
    leaf = chain[0]
    steps = " <- ".join(f"{c.subject}" for c in chain)
    report.line("ok", "server sends", f"{len(chain)} certificate{'s' * (len(chain) > 1)}: {steps} "
                f"(the last one issued by {chain[-1].issuer}; from openssl s_client -showcerts)")
    if not requests_cert:
        report.line("warn", "server asks", f"{host}:{port} did not request a client certificate "
                    f"in this handshake: it is not doing mTLS here")
    elif names:
        # A server that names CAs accepts certificates issued (at some depth) by one of them.
        ours = {c.issuer for c in client_certs} | {c.subject for c in client_certs}
        fits = not client_certs or any(n in ours for n in names)
        report.line("ok" if fits else "FAIL", "server asks", f"a client certificate from: "
                    f"{', '.join(names)} (Acceptable client certificate CA names)" + (
                    "" if fits else f"; yours was issued by {client_certs[-1].issuer}"),
                    None if fits else f"get a client certificate from {names[0]}")
    else:
        report.line("ok", "server asks", "a client certificate, naming no CA (a Python server "
                    "cannot send CA names): clients and browsers must choose the right one "
                    "themselves")
    check_dates("server", leaf, "server", report)
    check_purpose(leaf, report, role="server", label="server purpose")
    if covers_host(leaf, host):
        report.line("ok", "hostname", f"the subjectAltName of {leaf.subject} covers {host}")
    else:
        san = ", ".join(leaf.extensions.get("Subject Alternative Name") or []) or "none"
        cn_note = (f"; its CN matches, but a CN alone does not count: RFC 6125 deprecates it, "
                   f"and Python with hostname_checks_common_name = False refuses it"
                   if common_name(leaf.subject).lower() == host.lower() else "")
        report.line("FAIL", "hostname", f"the server certificate's subjectAltName ({san}) does not "
                    f"cover {host}{cn_note}", f"connect with a name it lists, or reissue it with "
                    f"subjectAltName = {'IP' if is_ip(host) else 'DNS'}:{host}")
    shown, error = openssl_verify(leaf, chain[1:], ca_path, "sslserver", tmp)
    if error is None:
        report.line("ok", "server chain", f"verifies against {os.path.basename(ca_path)} ({shown}: OK)")
    else:
        code, depth, subject, message = error
        said = f"{shown}: error {code} at depth {depth} ({subject}): {message}"
        if code == 19:
            report.line("FAIL", "server chain", f"{said}: the server's chain ends at "
                        f"{chain[-1].subject}, a root CA that {os.path.basename(display_ca)} does "
                        f"not hold", f"if {chain[-1].subject} is the CA you mean to trust, trust it "
                        f"(and not {os.path.basename(display_ca)}):",
                        tools=trust_ca_tools("SERVER-CA.crt"))
        elif code in (2, 20, 21):
            report.line("FAIL", "server chain", f"{said}. Either the server sends its leaf "
                        f"without the intermediate CA that issued it (it must send leaf + "
                        f"intermediates, one chain file as its certificate), or "
                        f"{chain[-1].issuer} is not the CA you trust", "the server's operator "
                        "must serve the chain file; or, if the server belongs to another CA, "
                        "trust that CA instead")
        else:
            report.line("FAIL", "server chain", said, verify_hint(code, depth, subject))
    check_request(url, ca_path, cert_path, key_path, report)


def trust_ca_tools(ca):
    """How each tool trusts a CA for the server's certificate."""
    return [("curl", f"--cacert {ca}"), ("client.py", f"--cacert {ca}"),
            ("requests", f"requests.get(url, verify={ca!r})"),
            ("Node", f"https.request(url, {{ca: fs.readFileSync({ca!r})}})"),
            ("nginx", f"proxy_ssl_trusted_certificate {ca}; proxy_ssl_verify on;")]


def check_request(url, ca_path, cert_path, key_path, report):
    """A real request, with client.py's make_client_context and fetch."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import client                                # client.py, next to this file
    try:
        context = client.make_client_context(ca_path, cert_path, key_path)
        status, body = client.fetch(url, context, timeout=10.0)
    except client.Failure as failure:
        what, _, fix = failure.message.partition(" -- ")
        # A file Python's ssl will not load: the check that found why says the fix.
        reason = next((r for r in LOAD_HINTS if r in what), None)
        report.line("FAIL", "request", f"client.py (make_client_context, fetch) says: "
                    f"{failure.label}: {what}", LOAD_HINTS[reason] if reason else fix or None)
        return
    text = " ".join(body.split())[:60]
    if 200 <= status < 300:
        report.line("ok", "request", f"client.py (make_client_context, fetch): HTTP {status}, "
                    f"{text!r}")
    elif status == 403:
        report.line("FAIL", "request", f"client.py: HTTP 403 {text!r}: the server authenticated "
                    f"this client but does not allow it", "ask its operator to allow the identity "
                    "shown above (server.py: --allow)")
    else:
        report.line("FAIL", "request", f"client.py: HTTP {status} {text!r}", "see the server's log")


def check_certificates(cacert, cert, key, url, width=None):
    """Check a user's CA, certificate and key (and the server at url):
    one line per check; return 0 if nothing failed, 1 if something did,
    2 for a mistake that stops every check (a missing file, say)."""
    report = Report(width)

    def check_all():
        with tempfile.TemporaryDirectory(prefix="mtls-check-") as tmp:
            run_checks(cacert, cert, key, url, report, tmp)
        c = report.counts
        report.say(f"summary: {c['FAIL']} FAIL, {c['warn']} warn, {c['ok']} ok")
        return report.exit_code()
    return run_guarded(check_all, CheckError,
                       "error: interrupted: stopped by Ctrl-C -- run it again to retry")


def run_checks(cacert, cert, key, url, report, tmp):
    """Every check, in the order a failing handshake would meet them."""
    if not cacert:
        raise CheckError("bad option", "--check needs --cacert CA, the CA that issued the "
                         "certificates -- e.g. --check --cacert certs/ca.crt")
    if key and not cert:
        raise CheckError("bad option", "--key needs --cert -- pass both, e.g. --cert "
                         "certs/client.crt --key certs/client.key")
    for path, what, flag in ((cacert, "CA certificate", "--cacert"), (cert, "certificate", "--cert"),
                             (key, "private key", "--key")):
        if path:
            read_bytes(path, what, flag)        # every file mistake first, as one line
    if url:
        parse_url(url)
    _, version = run_openssl(["version"])
    report.say(f"Checking with the openssl binary ({version.split(' (')[0].strip()}) and "
               f"Python {sys.version.split()[0]}'s ssl ({ssl.OPENSSL_VERSION}).")
    loaded_ca = load_certificates(cacert, "CA", "--cacert", report, tmp)
    cas, ca_pem = (loaded_ca[0], loaded_ca[1]) if loaded_ca else ([], None)
    loaded = load_certificates(cert, "certificate", "--cert", report, tmp) if cert else None
    key_info = None
    if loaded:
        loaded = check_order(cert, loaded, report, tmp)
        key_info = load_key(key, report, tmp, key_block=loaded[2], cert_path=cert)
    # The key file the printed fixes name: --key, or the cert file when the key is in it.
    key_for_fix = key or (cert if loaded and loaded[2] else None)
    # The CA certificates that issued the chain in the cert file (all, if none did).
    anchors = [c for c in cas if loaded and any(issued(c, x) for x in loaded[0])]
    if ca_pem:
        check_ca_file(cacert, cas, anchors or cas, report,
                      v1_leaf=bool(loaded) and loaded[0][0].version == 1)
    if loaded:
        certs, cert_pem, _ = loaded
        if key_info and not check_key_match(cert_pem, key_info[0], certs[0], key_info, report):
            key_info = None                 # a handshake with the wrong key proves nothing
        for c in path_in_file(certs):
            renew = (renew_command(cert, key_for_fix, cacert, cas) if c is certs[0] and key_info
                     else None)
            check_dates(cert, c, "client" if c is certs[0] else "intermediate", report, renew)
    if ca_pem and len(anchors or cas) <= 3:
        for ca in anchors or cas:
            check_dates(cacert, ca, "CA", report, renew_command(cacert, None, cacert, cas)
                        if len(cas) == 1 else None)
    elif ca_pem:                            # a bundle: one line, naming what is out of date
        late = [ca.subject for ca in cas if (ca.not_after or 0) < time.time() + WARN_DAYS * 86400]
        report.line("warn" if late else "ok", "dates CA", f"{os.path.basename(cacert)}: " + (
            f"{len(late)} of {len(cas)} certificates expired or expire within {WARN_DAYS} days "
            f"({'; '.join(late[:3])}{'; ...' if len(late) > 3 else ''}): harmless unless your "
            f"chain needs one of them" if late else
            f"all {len(cas)} certificates are valid for {WARN_DAYS} days or more"))
    if loaded and ca_pem:
        certs, cert_pem, _ = loaded
        # A leaf passed as --cacert vouches for nobody: the CA check has said so,
        # and a chain "complete" up to it, or a handshake that trusts it, means nothing.
        real_cas = [c for c in cas if can_anchor(c)]
        completeness = (check_completeness(cert, certs, real_cas, cacert, report, key_for_fix,
                                           tmp) if real_cas else ("no-ca", None))
        check_chain(cert, certs, ca_pem, completeness, report, tmp, key=key_for_fix)
        check_signature(cert, path_in_file(certs), cacert, key_for_fix, cas, report)
        if key_info and real_cas:
            check_strict(cert_pem, key_info[0], ca_pem, report, tmp, completeness[0])
        check_purpose(certs[0], report)
        check_identity(certs[0], report)
        check_key_size(path_in_file(certs), key_info, report)
    if url and ca_pem:
        report.say(f"The server at {url}:")
        chain = path_in_file(loaded[0]) if loaded else []
        cert_pem, key_pem = (loaded[1], key_info[0]) if loaded and key_info else (None, None)
        check_server(url, ca_pem, cacert, chain, cert_pem, key_pem, report, tmp)


