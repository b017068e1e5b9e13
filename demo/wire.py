"""demo/wire.py: what travels on the wire, shown from real traffic.

The handshake ladder   `openssl s_client -trace` replays a case's client
                       (same files, same checks); its records are drawn as
                       a ladder, client on the left, server on the right
                       (s_client_command, run_trace, parse_trace, draw_ladder,
                       trace_case), with the first fatal alert and who sent it
The relay              a relay in the middle keeps a copy of the bytes: under
                       TLS 1.2 the client's certificate crosses in clear,
                       under TLS 1.3 it does not (Relay, fetch_through_relay,
                       cleartext_case)

Reads the certificates folder; runs openssl; listens on 127.0.0.1 (port 0)
for the relay. Writes nothing.
"""

import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import namedtuple

from armour.certificate_fields import pem_blocks, pem_to_der
from demo.commands import fill
from demo.terminal import Result, screen, wrap


# --- the handshake ladder ------------------------------------------------
#
# `openssl s_client -trace` prints every TLS record it sends and receives.
# We replay the case's client with it (same files, same checks) and draw
# the messages as a ladder: client on the left, server on the right.

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
          44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
          47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
          51: "decrypt_error", 70: "protocol_version", 80: "internal_error",
          109: "missing_extension", 112: "unrecognized_name", 116: "certificate_required"}

NOTES = {
    ("<-", "ServerHello"): "the server picks the TLS version and the cipher",
    ("<-", "Certificate"): "the server's certificate chain",
    ("<-", "CertificateRequest"): "the server asks for a client certificate: mTLS",
    ("<-", "CertificateVerify"): "signed with the server's key: it owns that certificate",
    ("->", "Certificate"): "the client's certificate chain",
    ("->", "CertificateVerify"): "signed with the client's key: it owns that certificate",
    ("->", "ApplicationData"): "the HTTP request, encrypted",
    ("<-", "ApplicationData"): "the HTTP response, encrypted",
}

Step = namedtuple("Step", "direction message note")     # direction: "->" client to server

# A HelloRetryRequest is a ServerHello with this fixed random value (RFC 8446
# 4.1.3): the client's first hello carried no key share for a group the
# server accepts (server.py takes X25519, openssl's first share, so the demo
# shows none; a server offering only P-256 would ask).
HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
HRR_NOTE = "the server wants a key share for another group: send your hello again"


def s_client_command(client_args, version=None):
    """The openssl s_client command equivalent to a client.py argument list
    (-x509_strict: client.py verifies strictly too)."""
    command = ["openssl", "s_client", "-trace", "-ign_eof", "-verify_return_error", "-x509_strict"]
    if version:
        command.append("-tls1_2" if version == "1.2" else "-tls1_3")
    options = {"--cacert": "-CAfile", "--cert": "-cert", "--key": "-key"}
    it = iter(client_args)
    for arg in it:
        if arg in options:
            command += [options[arg], next(it)]
            if arg == "--cert" and count_certificates(command[-1]) > 1:
                command += ["-cert_chain", command[-1]]   # -cert sends only the first
        else:
            host, port = arg.split("//")[1].rstrip("/").rsplit(":", 1)
            check = "-verify_ip" if host[0].isdigit() else "-verify_hostname"
            command += ["-connect", f"{host}:{port}", "-servername", host, check, host]
    return command


def count_certificates(path):
    """How many PEM certificates a file holds (a chain file holds several)."""
    try:
        with open(path, "rb") as f:
            return sum(label == "CERTIFICATE" for label, _ in pem_blocks(f.read()))
    except OSError:
        return 0


def parse_trace(output, version="1.3"):
    """Turn s_client -trace output (its stdout) into Steps, record by record."""
    steps = []
    for record in re.split(r"\n(?=(?:Sent|Received) Record\n)", output)[1:]:
        direction = "->" if record.startswith("Sent") else "<-"
        outer = re.search(r"^  Content Type = (\w+)", record, re.M)
        inner = re.search(r"^  Inner Content Type = (\w+)", record, re.M)
        kind = (inner or outer).group(1) if (inner or outer) else ""
        if kind == "ChangeCipherSpec":
            note = ("no meaning in TLS 1.3: sent for old middleboxes (RFC 8446 D.4)"
                    if version == "1.3" else "from here on, this side encrypts")
            steps.append(Step(direction, "ChangeCipherSpec", note))
        elif kind == "ApplicationData":
            data = Step(direction, "ApplicationData", NOTES[(direction, "ApplicationData")])
            if not steps or steps[-1] != data:          # one arrow for several records
                steps.append(data)
        for m in re.finditer(r"^ {4}(\w+), Length=(\d+)$", record, re.M):
            name, length = m.group(1), int(m.group(2))
            note = NOTES.get((direction, name), "")
            if name == "ServerHello" and server_random(record[m.end():]) == HRR_RANDOM:
                name, note = "HelloRetryRequest", HRR_NOTE
            if direction == "->" and name == "Certificate" and length <= 4:
                name, note = "Certificate (empty)", "the client has no certificate to send"
            steps.append(Step(direction, name, note))
        for m in re.finditer(r"^ +Level=(\w+)\(\d\), description=.*\((\d+)\)$", record, re.M):
            alert = ALERTS.get(int(m.group(2)), f"alert {m.group(2)}")
            steps.append(Step(direction, f"Alert {alert} ({m.group(1)})", ""))
    return mark_hello_retry(steps)


def server_random(text):
    """The 32-byte random of the first hello in s_client -trace text, in hex."""
    m = re.search(r"gmt_unix_time=0x(\w+)\s+random_bytes \(len=28\): (\w+)", text)
    return (m.group(1) + m.group(2)).lower() if m else None


def mark_hello_retry(steps):
    """A ServerHello that the client answers with a second ClientHello was a
    HelloRetryRequest (in case the trace printed no random to compare)."""
    for i, step in enumerate(steps):
        again = any(s.direction == "->" and s.message == "ClientHello" for s in steps[i + 1:])
        if step.direction == "<-" and step.message == "ServerHello" and again:
            steps[i] = Step("<-", "HelloRetryRequest", HRR_NOTE)
    return steps


def run_trace(command):
    """Run s_client with one HTTP request (Connection: close, so it ends);
    return (parsed steps, raw output)."""
    version = "1.2" if "-tls1_2" in command else "1.3"
    request = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    try:
        done = subprocess.run(command, input=request, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return [], "(openssl s_client did not finish within 20 s)"
    return parse_trace(done.stdout, version), done.stdout + done.stderr


def first_fatal_alert(steps):
    """(who sent it, alert name) for the first fatal alert, or (None, None)."""
    for step in steps:
        if step.message.startswith("Alert ") and step.message.endswith("(fatal)"):
            return ("client" if step.direction == "->" else "server"), step.message.split()[1]
    return None, None


def handshake_done_at(steps):
    """Index after which the client has sent and received Finished (its
    handshake is complete), or None if that never happened."""
    sent = received = False
    for i, step in enumerate(steps):
        if step.message == "Finished":
            sent, received = sent or step.direction == "->", received or step.direction == "<-"
            if sent and received:
                return i
    return None


def describe_replay(steps, version):
    """One sentence: did the handshake complete, and who sent which alert when."""
    sender, alert = first_fatal_alert(steps)
    done = handshake_done_at(steps)
    if alert is None:
        return f"TLS {version}: the handshake completed and the request was answered."
    index = next(i for i, s in enumerate(steps) if s.message.startswith(f"Alert {alert}"))
    if done is None or index < done:
        return (f"TLS {version}: the {sender} sent the alert {alert} during the handshake, "
                f"which never completed.")
    return (f"TLS {version}: the client's handshake was complete; the {sender} sent the alert "
            f"{alert} afterwards, and the client met it at its first read.")


def draw_ladder(steps, width):
    """The steps as a client<->server ladder, notes on the right when there
    is room, else under each arrow. Returns the lines."""
    rungs = max([len(s.message) + 8 for s in steps] + [40])      # 40: the marker fits
    rungs = min(rungs, max(width - 4, 40))
    beside = width - rungs - 4 >= 26                    # room for notes on the right
    lines = ["client" + " " * (rungs - 10) + "server"]
    bar = "|" + " " * (rungs - 2) + "|"
    done = handshake_done_at(steps)
    failed = False
    for i, step in enumerate(steps):
        alert = step.message.startswith("Alert ")
        fatal = alert and step.message.endswith("(fatal)") and not failed
        fill_char = "=" if alert else "-"
        label = f" {step.message} "
        pad = rungs - 2 - len(label) - 2
        if step.direction == "->":
            arrow = "|" + fill_char * 2 + label + fill_char * max(pad - 1, 1) + ">|"
        else:
            arrow = "|<" + fill_char * max(pad - 1, 1) + label + fill_char * 2 + "|"
        note = step.note
        if fatal:
            failed = True
            note = f"sent by the {'client' if step.direction == '->' else 'server'}: the failure"
        elif alert:
            note = f"sent by the {'client' if step.direction == '->' else 'server'}"
        lines += attach_note(arrow, note, width, beside, bar)
        if i == done:
            text = " handshake complete (client's view) "
            lines.append("|" + text.center(rungs - 2, "~") + "|")
    if steps and not failed and done is None:
        lines.append("(the connection ended without a Finished from both sides)")
    return lines


def attach_note(arrow, note, width, beside, bar):
    """An arrow with its note: beside it, wrapped, or on lines under it."""
    if not note:
        return [arrow]
    if beside:
        return wrap(note, width, arrow + "  ", bar + "  ")
    return [arrow] + wrap(note, width, "|   ", "|   ")


def trace_case(scenario, server, certs, version, opts):
    """Replay one scenario with openssl s_client -trace; draw the ladder
    (--trace), print the raw output (--raw-trace), and say in one sentence
    where the handshake ended. Returns the steps."""
    command = s_client_command(fill(scenario.client, certs, server.port),
                               version if version == "1.2" else None)
    if shutil.which("openssl") is None:
        screen.say("(openssl is not installed: no replay; apt-get install openssl)")
        return []
    screen.say(f"Replay with openssl s_client (a second connection, made for this picture; "
               f"TLS {version}):")
    screen.command(command)
    steps, raw = run_trace(command)
    server.case_lines(scenario.server_says, timeout=2)     # this replay's log line
    if opts.raw_trace:
        screen.output(raw)
    if not steps:
        screen.say("(no messages: this openssl has no -trace; build it with enable-ssl-trace)")
        return steps
    if opts.trace:
        for line in draw_ladder(steps, screen.width - 3):
            screen.print("   " + line)
    screen.say(describe_replay(steps, version), "=> ", code="1")
    return steps


# --- the relay: what TLS 1.2 shows to the network ------------------------
#
# A TLS 1.2 client sends its Certificate before the handshake's keys are in
# use, so the certificate crosses the network in clear; TLS 1.3 encrypts
# every handshake message after ServerHello (RFC 8446, section 2). A relay
# in the middle that keeps a copy of the bytes proves it.

class Relay:
    """A loopback TCP relay: forwards one connection to localhost:port and
    keeps a copy of what each side sent (.sent: client's, .received: server's)."""

    def __init__(self, port):
        self.target, self.sent, self.received = port, bytearray(), bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._relay_one, daemon=True)
        self.thread.start()

    def _relay_one(self):
        self.listener.settimeout(10)
        try:
            near, _ = self.listener.accept()
            far = socket.create_connection(("localhost", self.target), timeout=10)
        except OSError:
            return
        finally:
            self.listener.close()
        copies = {near: (far, self.sent), far: (near, self.received)}
        deadline = time.monotonic() + 10
        while copies and time.monotonic() < deadline:
            for sock in select.select(list(copies), [], [], 0.5)[0]:
                other, copy = copies[sock]
                try:
                    data = sock.recv(65536)
                    other.sendall(data) if data else other.shutdown(socket.SHUT_WR)
                except OSError:
                    data = b""
                if data:
                    copy.extend(data)
                else:
                    del copies[sock]
        near.close()
        far.close()

    def join(self):
        """Wait (at most 10 s) until both sides have finished."""
        self.thread.join(10)


def fetch_through_relay(port, certs, version):
    """Make one mTLS request via a Relay to localhost:port, with the client
    limited to one TLS version; return (the relay, the response's status line)."""
    relay = Relay(port)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(os.path.join(certs, "ca.crt"))
    context.load_cert_chain(os.path.join(certs, "client.crt"), os.path.join(certs, "client.key"))
    context.minimum_version = context.maximum_version = version
    status = ""
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                reply = b""
                while len(reply) < 65536:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
                status = reply.split(b"\r\n", 1)[0].decode("ascii", "replace")
    except (OSError, ssl.SSLError) as exc:
        status = f"failed: {exc}"
    relay.join()
    return relay, status


def certificate_der(path):
    """The DER bytes of the first certificate in a PEM file (what goes on the wire)."""
    with open(path, "rb") as f:
        return next(pem_to_der(block) for label, block in pem_blocks(f.read())
                    if label == "CERTIFICATE")


def hex_lines(data, start, count=2):
    """`count` lines of a hex dump of data from `start`, 16 bytes a line."""
    lines = []
    for offset in range(start, min(start + 16 * count, len(data)), 16):
        chunk = data[offset:offset + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:06x}  {chunk.hex(' '):47}  {text}")
    return lines


def cleartext_case(server, certs):
    """Find the client certificate's bytes in what the client sent, under
    TLS 1.2 and TLS 1.3; print it; return a Result."""
    server.wait_ready()
    server.show()
    der = certificate_der(os.path.join(certs, "client.crt"))
    screen.say(f"A relay on 127.0.0.1 passes one connection through to the server and keeps a "
               f"copy of the bytes, as anyone on the network path could. The client sends "
               f"{certs}/client.crt ({len(der)} bytes in DER, the form TLS sends); we look for "
               f"those bytes in what the client sent.")
    found = {}
    for version, name in ((ssl.TLSVersion.TLSv1_2, "1.2"), (ssl.TLSVersion.TLSv1_3, "1.3")):
        server.forget_old_lines()
        relay, status = fetch_through_relay(server.port, certs, version)
        server.case_lines("accepted")
        sent = bytes(relay.sent)
        where = sent.find(der)
        found[name] = where >= 0
        if where >= 0:
            screen.say(f"TLS {name}: the response was {status!r}. The client sent {len(sent)} "
                       f"bytes; the certificate is among them, byte for byte, at offset {where}. "
                       f"Its name, readable:")
            name_at = sent.find(b"my-client", where)
            screen.output("\n".join(hex_lines(sent, max(name_at - 8, where))))
        else:
            also = "nor is the text 'my-client'" if b"my-client" not in sent else \
                "but the text 'my-client' is"
            screen.say(f"TLS {name}: the response was {status!r}. The client sent {len(sent)} "
                       f"bytes; the certificate is not among them, {also}.")
    screen.why("TLS 1.2 turns encryption on only at the end of the handshake (ChangeCipherSpec, "
               "then Finished), and the client sends its Certificate before that: whoever "
               "watches the network learns who connects. TLS 1.3 encrypts every handshake "
               "message after ServerHello, the client's certificate included.")
    observed = (f"TLS 1.2: {'seen' if found['1.2'] else 'not seen'}",
                f"TLS 1.3: {'seen' if found['1.3'] else 'not seen'}")
    return Result("cleartext-cert", ("TLS 1.2: seen", "TLS 1.3: not seen"), observed,
                  found == {"1.2": True, "1.3": False})


