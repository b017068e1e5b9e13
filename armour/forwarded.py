"""forwarded.py: a client certificate forwarded by a proxy meets the checks a direct client meets.

Prevents: a proxy letting through a client we would refuse at the door.

Behind a proxy (--trust-proxy), a client's certificate arrives in a
header, and OpenSSL never sees it: the proxy verified it, or should have.
A proxy that forgot revocation (no ssl_crl), or resumed a session from
before the revocation or the expiry, would hand us a client we would
refuse at the door. So each forwarded certificate meets, on every request,
the checks OpenSSL makes on a direct client, in OpenSSL's order, with the
same verify codes (and so the same log line): issued by one of our --ca
(by name, and by key identifier when both carry one); none of the RFC
5280 rules VERIFY_X509_STRICT adds that show in the certificate itself
broken (an authorityKeyIdentifier, no pathLen or keyCertSign in a non-CA,
a subject or a critical subjectAltName, no empty subjectAltName); for
client authentication (by its extendedKeyUsage, keyUsage and nsCertType);
not revoked in the --crl of its CA (which must be current); and within
its dates and its CA's. Not repeated here: strict mode's checks of the
signature algorithm fields (78), of extensions in a v1 certificate (93)
and of explicit EC curve parameters (94), OpenSSL's refusal of an unknown
critical extension (34), and every check of our own CA certificates.

Its *signature* is not checked (Python's ssl verifies signatures only
inside a handshake); that stays the proxy's job. So whoever holds the
proxy's key has our CA's power over this backend: not only can it forward
any real client's certificate (a certificate is no secret), it can make
certificates no CA issued, with our CA's name and key identifier and a key
of its own, for any name ("Hello, admin"), or bring a revoked identity back
under a new serial number. Guard the proxy's key as the CA's key.
Also simplified: only the leaf arrives (nginx forwards no chain), so a
client issued by an intermediate CA needs that intermediate in --ca, and
--crl-chain cannot apply.

"""

import time
import urllib.parse

from armour.certificate_fields import (pem_to_ders, read_certificate, read_crl, read_pem,
                                       OID_CLIENT_AUTH)
from armour.refusals import describe_verify_code, format_address, printable, spell_all


def keep_forwarding_checks(context, crls):
    """Keep on the context what check_forwarded needs, read once per
    context: the CAs it trusts (--ca) and the CRLs it loaded (--crl)."""
    context.forward_cas, context.forward_crls = [], []
    for der in context.get_ca_certs(binary_form=True):
        try:
            context.forward_cas.append(read_certificate(der))
        except ValueError:
            pass                        # OpenSSL took it; we cannot name it: no issuer match
    for path in crls:
        for _, der in read_pem(path, "X509 CRL"):
            try:
                context.forward_crls.append(read_crl(der))
            except ValueError:
                pass                    # then its CA has no CRL here: code 3 refuses its clients


# The rules of RFC 5280 that VERIFY_X509_STRICT (server.py sets it) makes
# OpenSSL check on a client certificate issued by a CA, as OpenSSL 3.0
# words them (its verify message, which a direct client's log line quotes).
STRICT_MESSAGES = {
    80: "Path length invalid for non-CA cert",
    82: "Key usage keyCertSign invalid for non-CA cert",
    84: "Subject name empty",
    85: "Missing Authority Key Identifier",
    87: "Empty Subject Alternative Name extension",
    88: "Subject empty and Subject Alt Name extension not critical",
}


def strict_violation(info):
    """The verify code (STRICT_MESSAGES) for which VERIFY_X509_STRICT refuses
    this client certificate (not a CA, issued by one), or None; in OpenSSL's order."""
    if info["path_len"] is not None:                        # RFC 5280 4.2.1.9
        return 80
    if "keyCertSign" in (info["key_usage"] or ()):          # 4.2.1.3
        return 82
    if not info["subject"]:                                 # 4.1.2.6
        if not info["has_san"] or "cRLSign" in (info["key_usage"] or ()):
            return 84
        if not info["san_critical"]:
            return 88
    if info["has_san"] and info["san_count"] == 0:          # 4.2.1.6
        return 87
    if info["version"] >= 3 and not info["has_aki"]:        # 4.2.1.1
        return 85
    return None


def allows_client_auth(info):
    """Whether OpenSSL's purpose check for a TLS client (X509_PURPOSE_SSL_CLIENT)
    passes: each of these extensions, when present, must allow it. (Not
    anyExtendedKeyUsage alone: OpenSSL refused it as the wrong purpose.)"""
    eku, usage, netscape = info["eku"], info["key_usage"], info["ns_cert_type"]
    return ((eku is None or OID_CLIENT_AUTH in eku)
            and (usage is None or "digitalSignature" in usage or "keyAgreement" in usage)
            and (netscape is None or "client" in netscape))


def check_forwarded(info, context, now):
    """The verify code (VERIFY_REASONS, STRICT_MESSAGES) for which OpenSSL
    would refuse a direct client with this certificate, or None if it would accept it."""
    issuers = [ca for ca in getattr(context, "forward_cas", ())
               if ca["subject"] == info["issuer"]
               and (None in (ca["ski"], info["aki"]) or ca["ski"] == info["aki"])]
    if not issuers:
        return 18 if info["issuer"] == info["subject"] else 20
    strict = None if info["ca"] else strict_violation(info)   # a CA is no client anyway
    if strict:
        return strict
    if not allows_client_auth(info):
        return 26
    crls = getattr(context, "forward_crls", ())
    if crls:                            # --crl given: the CA that issued it must have one here
        own = [crl for crl in crls if crl["issuer"] == info["issuer"]]
        if not own:
            return 3
        if all(crl["this_update"] > now for crl in own):
            return 11
        if all(crl["next_update"] is not None and crl["next_update"] < now for crl in own):
            return 12
        if any(info["serial"] in crl["revoked"] for crl in own):
            return 23
    if now < info["not_before"]:
        return 9
    if now > info["not_after"] or all(now > ca["not_after"] for ca in issuers):
        return 10
    return None


def read_forwarded_certificate(handler):
    """Behind a TLS-terminating proxy (--trust-proxy), the client's
    certificate arrives in a header: X-Client-Cert, the URL-encoded PEM
    (nginx: proxy_set_header X-Client-Cert $ssl_client_escaped_cert).
    We trust it only on this connection, authenticated as the proxy.
    Return (its fields, None), or (None, why the request is refused),
    having logged the refusal."""
    peer = format_address(handler.client_address)
    proxy = spell_all(handler.connection.ids)
    log = handler.server.log
    header = handler.headers.get_all("X-Client-Cert") or []
    if len(header) != 1 or not header[0].strip():
        what = (f"{len(header) or 'no'} X-Client-Cert headers" if len(header) != 1 else
                "an empty X-Client-Cert header")
        log(f"forbidden {peer}: the proxy {proxy} forwarded {what}")
        return None, "the proxy forwarded no single client certificate (X-Client-Cert)"
    try:
        ders = pem_to_ders(urllib.parse.unquote(header[0]).encode("ascii", "replace"))
        if not ders:
            raise ValueError("no -----BEGIN CERTIFICATE----- block in it")
        info = read_certificate(ders[0])
    except ValueError as exc:           # (binascii.Error, bad base64, is a ValueError)
        log(f"forbidden {peer}: the proxy {proxy} forwarded an X-Client-Cert "
            f"we cannot read ({printable(str(exc))})")
        return None, "the forwarded client certificate cannot be read"
    context = handler.server.context   # the latest files: a HUP applies to the next request
    code = check_forwarded(info, context, time.time())
    if code:
        reason = describe_verify_code(code, STRICT_MESSAGES.get(code, ""), context)
        log(f"rejected {peer}: {reason} (forwarded by {proxy})")
        return None, reason
    return info, None
