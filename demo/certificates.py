"""demo/certificates.py: reading a certificate's fields with the openssl binary.

Python's ssl has no public way to read a certificate that is not a
connected peer's, so the demo asks the openssl binary, which the project
requires anyway. (server.py reads the few fields it needs with its own
small DER reader, so that it runs without the binary.)

Cert               the fields --check and the demo read: names, dates,
                   version, key, extensions, signature
read_certificate   one PEM certificate's fields (openssl x509), or None
pem_blocks, pem_to_der
                   the PEM blocks in a file's bytes; one block as DER
common_name, issued, issuer_of
                   the CN of a name; which certificate could have signed which
run_openssl        run the binary, never prompting; CheckError when it is missing

Reads what it is given; writes nothing.
"""

import binascii
import re
import ssl
import subprocess
from collections import namedtuple


class CheckError(Exception):
    """A mistake in the command line or the files that stops every check:
    printed as one 'error: <label>: <what> -- <fix>' line, exit code 2."""

    def __init__(self, label, message):
        super().__init__(f"{label}: {message}")


Cert = namedtuple("Cert", "pem subject issuer not_before not_after version key_type key_bits "
                          "extensions public_key signature")


def run_openssl(args, input=None, timeout=15):
    """Run the openssl binary; return (exit code, stdout + stderr)."""
    try:
        # No terminal: openssl asks for a passphrase on /dev/tty, which would hang us.
        done = subprocess.run(["openssl"] + args, input=input or "", capture_output=True,
                              text=True, timeout=timeout, errors="replace", start_new_session=True)
    except FileNotFoundError:
        raise CheckError("missing tool", "the openssl command is not installed -- install it "
                         "(apt-get install openssl, brew install openssl)") from None
    except subprocess.TimeoutExpired:
        return 124, f"openssl {args[0]} took more than {timeout} s"
    return done.returncode, done.stdout + done.stderr


def pem_blocks(data):
    """The PEM blocks in a file, as (label, text of the block) pairs."""
    text = data.decode("ascii", "replace")
    return [(m.group(1), m.group(0) + "\n") for m in
            re.finditer(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", text, re.S)]


def pem_to_der(block):
    """The DER bytes of a PEM block (empty if the base64 is broken)."""
    body = "".join(block.strip().splitlines()[1:-1])
    try:
        return binascii.a2b_base64(body)
    except binascii.Error:
        return b""


def read_certificate(pem):
    """Read one PEM certificate's fields with the openssl binary (or None)."""
    code, out = run_openssl(
        ["x509", "-noout", "-subject", "-issuer", "-dates", "-pubkey", "-nameopt", "RFC2253",
         "-ext", "subjectAltName,extendedKeyUsage,basicConstraints,keyUsage,"
                 "subjectKeyIdentifier,authorityKeyIdentifier",
         "-text", "-certopt", "no_header,no_serial,no_validity,no_subject,"
         "no_issuer,no_extensions,no_sigdump,no_aux"], input=pem)
    if code != 0:
        return None
    fields, extensions, current = {}, {}, None
    for line in out.splitlines():
        key, eq, value = line.partition("=")
        if eq and key in ("subject", "issuer", "notBefore", "notAfter"):
            fields[key] = value.strip()
        elif line.startswith("X509v3 "):            # an extension's name, e.g.
            current = line[7:].split(":")[0]        # "X509v3 Key Usage: critical"
            extensions[current] = []
        elif line.startswith("    ") and not line.startswith("     ") and current:
            extensions[current] += [v.strip() for v in line.split(",")]
        else:
            current = None
    version = re.search(r"Version: (\d+)", out)
    key_type = re.search(r"Public Key Algorithm: (\S+)", out)
    bits = re.search(r"\((\d+) bit\)", out)
    signature = re.search(r"Signature Algorithm: (\S+)", out)
    return Cert(pem, fields.get("subject", ""), fields.get("issuer", ""),
                to_seconds(fields.get("notBefore")), to_seconds(fields.get("notAfter")),
                int(version.group(1)) if version else 3, key_type.group(1) if key_type else "?",
                int(bits.group(1)) if bits else None, extensions, public_key(out),
                signature.group(1) if signature else "?")


def public_key(openssl_output):
    """The PEM public key block in openssl's output ('' if none)."""
    m = re.search(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", openssl_output, re.S)
    return m.group(0) if m else ""


def to_seconds(openssl_date):
    """'Nov 28 00:02:55 2026 GMT' as seconds since the epoch (None if absent)."""
    try:
        return ssl.cert_time_to_seconds(openssl_date)
    except (TypeError, ValueError):
        return None


def common_name(dn):
    """The CN in an RFC 2253 name ('' if none)."""
    m = re.search(r"(?:^|,)CN=((?:[^,\\]|\\.)*)", dn)
    return m.group(1) if m else ""


def issued(issuer, cert):
    """Could `issuer` have signed `cert`? Its name matches, and so does its key
    identifier when both carry one (two CAs may share a name, not a key)."""
    aki = [v.replace("keyid:", "") for v in cert.extensions.get("Authority Key Identifier", [])]
    ski = issuer.extensions.get("Subject Key Identifier", [])
    return issuer.subject == cert.issuer and (not aki or not ski or aki[0] == ski[0])


def issuer_of(cert, candidates):
    """The certificate among candidates that issued cert (or None)."""
    return next((c for c in candidates if c is not cert and issued(c, cert)), None)
