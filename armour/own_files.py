"""own_files.py: our own files checked before they fail a handshake, and reloaded.

Prevents: a server that starts and then refuses everyone, or prompts on a
terminal no one watches, or trusts a CA by accident. Each file is checked
at start, with one line saying what is wrong and the fix: missing or
unreadable files, an encrypted key, a key that is not the certificate's,
a CA certificate or client certificate passed as --cert, a --ca with no
CA in it, a CRL file that would trust a certificate or that holds a delta
CRL (a partial list), a CRL from a CA not in --ca in place of its own,
dates that will fail handshakes soon, a server certificate without
subjectAltName, a key file others can read. And kill -HUP re-reads them
all without a restart (ReloadingServer).
"""

import contextlib
import os
import shlex
import ssl
import stat
import sys
import time

from armour import ConfigError
from armour.certificate_fields import (der_hint, format_date, leaf_first_command,
                                       leaf_out_of_place, out_of_date, pem_labels,
                                       read_certificate, read_crl, read_pem, same_name,
                                       OID_ANY_EKU, OID_SERVER_AUTH)
from armour.refusals import printable

WARN_DAYS = 30             # warn when a certificate or CRL expires within this many days


def check_own_files(ca, cert, key, crls):
    """Fail with one clear line unless every file we were given is a readable file."""
    for path, what, flag in [(ca, "CA certificate", "--ca"), (cert, "server certificate", "--cert"),
                             (key, "server key", "--key")] + [(c, "CRL", "--crl") for c in crls]:
        check_readable(path, what, flag)


def check_readable(path, what, flag):
    """Fail with a clear message unless `path` is a readable file."""
    if os.path.isdir(path):
        raise ConfigError("bad file", f"{what} {path!r} is a folder, not a file", f"pass {flag} FILE")
    if not os.path.exists(path):
        made_by = "'make certs'" if flag in ("--ca", "--cert", "--key") else "'make crl'"
        raise ConfigError("missing file", f"{what} {path!r} not found{looked_in(path)}",
                          f"run {made_by} first, or pass {flag} FILE")
    if not os.path.isfile(path):       # a FIFO or a device: opening it could block for ever
        raise ConfigError("bad file", f"{what} {path!r} is not a regular file", f"pass {flag} FILE")
    if not os.access(path, os.R_OK):
        raise ConfigError("unreadable file", f"{what} {path!r} is not readable by this user",
                          "check its permissions")


def looked_in(path):
    """Where a relative path was looked for, " (looked in /the/current/folder)", or ""
    for an absolute one: run from another folder, 'certs/ca.crt' is not the project's."""
    return "" if os.path.isabs(path) else f" (looked in {os.getcwd()})"


def refuse_passphrase(key, role="server"):
    """Called by OpenSSL when a key is encrypted: refuse, rather than prompt
    (server.py and client.py both: neither may stop to ask a terminal)."""
    raise ConfigError("encrypted key", f"{role} key {key!r} is encrypted with a passphrase",
                      f"decrypt it with 'openssl pkey -in {key} -out {role}-plain.key' "
                      f"and pass that with --key")


@contextlib.contextmanager
def checking_own_certificate(cert, key):
    """Around load_cert_chain(cert, key): turn OpenSSL's complaint about the
    pair (or an unreadable file) into one line that says what to do."""
    try:
        yield
    except ssl.SSLError as exc:
        raise explain_load_error(exc, cert, key) from None
    except OSError as exc:                    # e.g. permission denied despite os.access
        raise ConfigError("unreadable file", f"cannot read {exc.filename or cert!r} "
                          f"({exc.strerror})", "check its permissions") from None


def explain_load_error(exc, cert, key):
    """Turn OpenSSL's complaint about a certificate/key pair into a ConfigError."""
    reason = getattr(exc, "reason", None) or str(exc)
    if reason == "KEY_VALUES_MISMATCH":
        return ConfigError("wrong key", f"{key!r} is not the private key of {cert!r}",
                           "pass the key that was made with that certificate")
    if "CERTIFICATE" not in pem_labels(cert):
        return ConfigError("bad file", f"server certificate {cert!r} is not a PEM certificate "
                           f"(no '-----BEGIN CERTIFICATE-----' line)" + der_hint(cert),
                           "pass --cert certs/server.crt")
    if not any(label.endswith("PRIVATE KEY") for label in pem_labels(key)):
        return ConfigError("bad file", f"server key {key!r} is not a PEM private key (no "
                           f"'-----BEGIN ... PRIVATE KEY-----' line)", "pass --key certs/server.key")
    return ConfigError("bad file", f"cannot load certificate {cert!r} with key {key!r} ({reason})",
                       "both must be PEM files, e.g. from 'make certs'")


@contextlib.contextmanager
def checking_client_ca(context, ca):
    """Around load_verify_locations(cafile=ca): refuse a file that holds no
    CA certificate, which would start a server that refuses everyone."""
    try:
        yield
    except ssl.SSLError:
        raise ConfigError("bad file", f"CA certificate {ca!r} holds no PEM certificate"
                          + der_hint(ca), "pass the CA's certificate, e.g. --ca certs/ca.crt") from None
    if context.cert_store_stats()["x509_ca"] == 0:
        raise ConfigError("bad file", f"{ca!r} holds no CA certificate (none has "
                          f"basicConstraints CA:TRUE), so no client could ever get in",
                          "pass the certificate of the CA that signs your clients, e.g. --ca certs/ca.crt")


def load_crl(context, path):
    """Add the revocation list in `path`, and nothing else.

    load_verify_locations() loads *every* certificate in a file as trusted,
    CRL or not: a CRL file with another CA's certificate appended would make
    that CA trusted. So we read the file first, refuse anything but CRLs, and
    check the trust store before and after."""
    labels = pem_labels(path)
    if not labels:
        raise ConfigError("bad file", f"CRL {path!r} is not a PEM CRL" + der_hint(path, "crl"),
                          "make one with 'openssl ca -gencrl' (make crl)")
    others = sorted(set(labels) - {"X509 CRL"})
    if others:
        raise ConfigError("bad file", f"CRL file {path!r} also holds {', '.join(others)} "
                          f"blocks; a certificate loaded from it would be trusted like --ca",
                          "pass a file with only CRLs (-----BEGIN X509 CRL-----), one --crl each")
    refuse_partial_crls(path)
    before = context.cert_store_stats()
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise ConfigError("bad file", f"CRL {path!r} cannot be read as a CRL",
                          "make a fresh one with 'openssl ca -gencrl' (make crl)") from None
    after = context.cert_store_stats()
    if (after["x509"], after["x509_ca"]) != (before["x509"], before["x509_ca"]):
        raise ConfigError("bad file", f"loading CRL {path!r} added a trusted certificate",
                          "pass a file with only CRLs")


def refuse_partial_crls(path):
    """Refuse a delta CRL or an indirect CRL (RFC 5280 5.2.4, 5.2.5): OpenSSL,
    as Python's ssl sets it up, applies neither (ssl.VerifyFlags has no
    X509_V_FLAG_USE_DELTAS). It takes a delta for a complete list, the newer
    one: an empty delta beside the base CRL let a revoked client in. It
    skips an indirect CRL: every client of that CA was refused, "no CRL"."""
    for _, der in read_pem(path, "X509 CRL"):
        try:
            crl = read_crl(der)
        except ValueError:
            continue                    # OpenSSL will say it cannot read it
        if crl["delta"]:
            kind, effect = ("a delta CRL (deltaCRLIndicator)",
                            "OpenSSL would take it for the whole list and let revoked clients in")
        elif crl["indirect"]:
            kind, effect = ("an indirect CRL (issuingDistributionPoint indirectCRL)",
                            "OpenSSL would skip it and refuse every client of that CA")
        else:
            continue
        raise ConfigError("bad file", f"CRL file {path!r} holds {kind} from "
                          f"{printable(crl['issuer_cn'] or '(no CN)')}: server.py does not "
                          f"apply those ({effect})",
                          "pass the CA's full (base) CRL, e.g. from 'openssl ca -gencrl'")


def check_server_certificate(cert):
    """Refuse, at start, a --cert that no client would accept as a server:
    a CA certificate, or a certificate for client authentication only.
    Return the type of its key: "rsa", "ec" or "other"."""
    blocks = read_pem(cert, "CERTIFICATE")
    try:
        info = read_certificate(blocks[0][1])
    except (IndexError, ValueError):
        return None                     # OpenSSL will say what is wrong with it
    misplaced = leaf_out_of_place([der for _, der in blocks])
    if misplaced is not None:           # a chain written CA first: ours must come first
        fixed = os.path.splitext(cert)[0] + "-fixed.crt"
        leaf = read_certificate(blocks[misplaced][1])
        raise ConfigError("wrong order", f"{cert!r} starts with a CA certificate "
                          f"({printable(info['cn'] or '(no CN)')}); the server's own "
                          f"certificate ({printable(leaf['cn'] or '(no CN)')}) is certificate "
                          f"{misplaced + 1} of {len(blocks)}, and OpenSSL takes the first one "
                          f"for ours", f"put it first: "
                          f"{leaf_first_command(cert, misplaced, fixed)}, then pass --cert {fixed}")
    if info["ca"]:
        raise ConfigError("wrong certificate", f"{cert!r} is a CA certificate (basicConstraints "
                          f"CA:TRUE), not a server certificate", "pass --cert certs/server.crt")
    eku = info["eku"]
    if eku is not None and OID_SERVER_AUTH not in eku and OID_ANY_EKU not in eku:
        raise ConfigError("wrong certificate", f"{cert!r} is not for TLS servers (its "
                          f"extendedKeyUsage lacks serverAuth: a client certificate?)",
                          "pass --cert certs/server.crt")
    return info["key"]


def warn_if_no_san(cert):
    """A warning when the server certificate has no subjectAltName, or None:
    clients that follow RFC 9525 (client.py among them) match the host name
    against the SAN only, and refuse a certificate that names it in the CN alone."""
    try:
        info = read_certificate(read_pem(cert, "CERTIFICATE")[0][1])
    except (IndexError, ValueError):
        return None                         # make_server_context has said what is wrong
    if info["has_san"]:
        return None
    name = info["cn"] or "localhost"
    return (f"warning: server certificate {cert!r} ({printable(info['cn'] or '(no CN)')}) has no "
            f"subjectAltName: clients that ignore the CN, as RFC 9525 asks (client.py among them), "
            f"refuse it with 'hostname mismatch' -- reissue it with subjectAltName = "
            f"DNS:{printable(name)} (as make certs does)")


def date_warnings(ca, cert, crls, warn_days, now=None):
    """Warnings, one line each, for files that will make handshakes fail:
    certificates (ours, our chain, the CAs) and CRLs that are out of date
    or expire within `warn_days` days."""
    now = time.time() if now is None else now
    soon = now + warn_days * 86400
    pid = os.getpid()
    checks = [(cert, "server certificate", "every client refuses this server",
               f"renew it, then kill -HUP {pid}"),
              (ca, "CA certificate", "every client certificate it signed is refused",
               f"renew the CA (same key), then kill -HUP {pid}")]
    warnings = []
    for path, what, consequence, fix in checks:
        for _, der in read_pem(path, "CERTIFICATE"):
            try:
                info = read_certificate(der)
            except ValueError:
                continue
            name = f"{what} {path!r} ({printable(info['cn'] or '(no CN)')})"
            late = out_of_date(info, now)
            if late:
                warnings.append(f"warning: {name} {late}: {consequence} -- {fix}")
            elif info["not_after"] < soon:
                days = int((info["not_after"] - now) // 86400)
                warnings.append(f"warning: {name} expires in {days} days, on "
                                f"{format_date(info['not_after'])} -- {fix}")
    for path in crls:
        for _, der in read_pem(path, "X509 CRL"):
            try:
                crl = read_crl(der)
            except ValueError:
                continue
            name = f"CRL {path!r} (from {printable(crl['issuer_cn'] or '(no CN)')})"
            fix = f"publish a fresh CRL (make crl), then kill -HUP {pid}"
            if crl["next_update"] is not None and crl["next_update"] < now:
                warnings.append(f"warning: {name} expired on {format_date(crl['next_update'])} "
                                f"(its nextUpdate): every client is refused -- {fix}")
            elif crl["this_update"] > now:
                warnings.append(f"warning: {name} is not valid until "
                                f"{format_date(crl['this_update'])}: every client is refused "
                                f"-- check this machine's clock")
            elif crl["next_update"] is not None and crl["next_update"] < soon:
                days = int((crl["next_update"] - now) // 86400)
                warnings.append(f"warning: {name} expires in {days} days, on "
                                f"{format_date(crl['next_update'])} -- {fix}")
    return warnings


def signed_by(crl, ca):
    """Did the CA (read_certificate's fields) sign this CRL (read_crl's)? Its
    name, and its key identifier where both have one (a renewed CA may keep
    its name with a new key)."""
    if not same_name(crl["issuer"], ca["subject"]):
        return False
    return crl["aki"] is None or ca["ski"] is None or crl["aki"] == ca["ski"]


def crl_issuer_warnings(ca, crls):
    """Warnings, one line each, for a CRL from a CA that is not in --ca, when a
    CA in --ca has no CRL: most likely the wrong CA's CRL, and then every client
    that CA signed is refused, "no CRL". It is right only for an intermediate
    CA that clients send in their chain, which we cannot know at start. (A CRL
    beside the CA's own is no mistake: in a rollover, crls.pem holds both CAs'
    CRLs while trust.pem holds one.)"""
    cas, found = [], []
    for _, der in read_pem(ca, "CERTIFICATE"):
        with contextlib.suppress(ValueError):
            cas.append(read_certificate(der))
    for path in crls:
        for _, der in read_pem(path, "X509 CRL"):
            with contextlib.suppress(ValueError):
                found.append((path, read_crl(der)))
    bare = [c for c in cas if c["ca"] and not any(signed_by(crl, c) for _, crl in found)]
    if not bare:
        return []
    names = ", ".join(printable(c["cn"] or "(no CN)") for c in bare)
    there = f"the CA there, {names}, has" if len(bare) == 1 else f"the CAs there, {names}, have"
    warnings = []
    for path, crl in found:
        if any(signed_by(crl, c) for c in cas):
            continue
        issuer = printable(crl["issuer_cn"] or "(no CN)")
        source = f"{issuer}, which is not a CA in --ca {ca!r}"
        if any(same_name(crl["issuer"], c["subject"]) for c in cas):    # a renewed CA?
            source = (f"a CA named {issuer} but with another key than the {issuer} in --ca "
                      f"{ca!r} (its authorityKeyIdentifier differs), so not a CA in --ca")
        warnings.append(f"warning: CRL {path!r} is from {source}; {there} no CRL, so every "
                        f"client certificate {names} signed is refused ('no CRL for a CA in the "
                        f"client's chain'), and this CRL is used only if clients send {issuer} "
                        f"as an intermediate -- pass the CRL of the CA in --ca (make crl makes "
                        f"certs/ca.crl)")
    return warnings


def warn_if_key_exposed(key):
    """A warning when the private key file is readable by group or others, or None
    (server.py and client.py both; a pipe, <(cat key), is no file others can open)."""
    try:
        st = os.stat(key)
    except OSError:
        return None                         # loading it has said what is wrong
    mode = st.st_mode & 0o777
    if stat.S_ISREG(st.st_mode) and mode & 0o077:
        return (f"warning: {key} has mode {mode:04o}, readable by other users "
                f"-- chmod 600 {shlex.quote(key)}")
    return None


def raise_open_file_limit(needed):
    """Raise the soft limit on open files to the hard limit, so that the
    waiting room and the workers fit; return a warning if they do not."""
    try:
        import resource             # Unix only
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        return (f"warning: only {soft} open files allowed (ulimit -n), {needed} wanted for "
                f"--max-pending and --max-connections -- raise it with ulimit -n {needed}")
    return None


def terminal_open():
    """Is standard input still a terminal we can ask (closed: EIO)?"""
    try:
        os.tcgetpgrp(sys.stdin.fileno())
        return True
    except (OSError, ValueError, AttributeError):
        return False


class ReloadingServer:
    """What server.py's MTLSServer does to re-read its files: on kill -HUP,
    and quietly every session_lifetime seconds. It uses, on the server:
    context, log, reload_context (a function returning a fresh context, or
    None), reload_requested, context_born and session_lifetime."""

    started_on_terminal = False      # set by server.py's main (see hang_up)

    # Live reload. `kill -HUP PID` asks for it; a rotated certificate or a
    # fresh CRL then takes effect for new connections, without a restart. A
    # connection already open gets one more answer, then must reconnect (see
    # GreetingHandler.parse_request). Every session_lifetime seconds, the
    # same happens quietly (renew_sessions): it re-reads the files too.

    def request_reload(self):
        """Note that a reload is wanted. The SIGHUP handler calls this: a
        signal can interrupt the main thread anywhere, even halfway through a
        log write, so the handler only sets a flag (as nginx does)."""
        self.reload_requested = True

    def hang_up(self, signum=None, frame=None):
        """The SIGHUP handler. kill -HUP asks for a reload; but the same
        signal comes when the terminal the server was started in is closed,
        and a server nobody sees would keep the port: then stop, as Ctrl-C
        does (SystemExit out of serve_forever, which cleans up)."""
        if self.started_on_terminal and not terminal_open():
            sys.exit(0)
        self.request_reload()

    def service_actions(self):
        """Called by serve_forever() after every poll (at least each 0.5 s):
        a safe moment for a reload that a signal asked for, or a renewal."""
        if self.reload_requested:
            self.reload_requested = False
            self.reload()
        elif time.monotonic() - self.context_born > self.session_lifetime:
            self.renew_sessions()

    def renew_sessions(self):
        """Build a fresh TLS context from the same files, quietly. Session
        tickets and cached sessions belong to the context that issued them,
        so none older than session_lifetime can be resumed: a client whose
        intermediate CA expired, or whose certificate was revoked, meets every
        check again at its next full handshake."""
        self.context_born = time.monotonic()
        if self.reload_context is not None:
            try:
                self.context = self.reload_context()
            except Exception as exc:       # keep serving; say so, and try again later
                self.log(f"could not renew the TLS context (sessions stay valid longer): "
                         f"{getattr(exc, 'what', exc)}")

    def reload(self):
        """Re-read certificate, key, CA and CRL; keep the old ones if that fails."""
        if self.reload_context is None:
            self.log("reload ignored: this server was started without a way to reload")
            return
        try:
            self.context = self.reload_context()   # one assignment: atomic for other threads
            self.context_born = time.monotonic()
            self.log("reloaded certificates: new connections use them")
        except ConfigError as exc:
            self.log(f"reload failed, still serving with the previous certificates: {exc.what} "
                     f"-- fix the file on disk, then kill -HUP {os.getpid()} again")
        except Exception as exc:     # whatever it was, a reload must not stop a running server
            self.log(f"reload failed, still serving with the previous certificates: {exc!r}")
