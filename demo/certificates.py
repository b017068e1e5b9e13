"""demo/certificates.py: the certificates --check and the demo look at.

Python's ssl has no public way to read a certificate that is not a
connected peer's, so the fields come from the project's one certificate
reader, armour/certificate_fields.py (a small DER reader), in the words
`openssl x509 -text` uses for them.

Cert               the fields --check and the demo read: names, dates,
                   version, key, extensions, signature
read_certificate   one PEM certificate's fields, or None
common_name, issued, issuer_of
                   the CN of a name; which certificate could have signed which
run_openssl        run the binary, never prompting; CheckError when it is missing

Reads what it is given; writes nothing.
"""

import re
import subprocess
from collections import namedtuple

from armour.certificate_fields import describe_certificate, pem_to_der


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


def read_certificate(pem):
    """One PEM certificate's fields, read by armour/certificate_fields.py (or None)."""
    try:
        fields = describe_certificate(pem_to_der(pem))
    except ValueError:
        return None
    return Cert(pem, fields["subject"], fields["issuer"], fields["not_before"],
                fields["not_after"], fields["version"], fields["key_type"], fields["key_bits"],
                fields["extensions"], fields["public_key"], fields["signature"])


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
