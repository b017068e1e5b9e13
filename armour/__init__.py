"""armour: what defends server.py's mTLS lesson, one module per failure it prevents.

server.py tells the story (the TLS context, the handshake, who the client
is, the response). These modules keep that story standing when clients,
files or operators go wrong. None of them imports server.py; what they need
(the server object, a log function) is passed in.

slow_clients.py        a silent, slow or idle client tying the server up: the
                       waiting room (one selector), the workers, the deadlines,
                       plain HTTP on the TLS port, closing so the alert arrives
bad_requests.py        a request that is too big, smuggled, or served after
                       its connection's checks went stale (the handler's base)
refusals.py            a refusal nobody can understand, or a flood of them:
                       one plain line per refused client, counts in a flood
certificate_fields.py  reading a certificate Python's ssl will not read for
                       us (ours, a CRL, a forwarded one, the ones --check is
                       given): the one DER reader
own_files.py           starting with our own files wrong (missing, encrypted,
                       wrong certificate, a CRL that trusts a CA, expiry
                       ahead) and reloading them without a restart
key_exchange.py        a costly or missing key-exchange group, and TLS 1.2
                       ciphers without forward secrecy
openssl_config.py      groups.cnf read too late: server.py calls it first,
                       before anything imports ssl
forwarded.py           a proxy's forwarded certificate let through unchecked
keylog.py              TLS secrets written to a file someone else can read
command_line.py        a mistyped option or identity: the one ArgumentParser
                       (client.py, server.py, the demo), typed identities
client_errors.py       a client failure that says only "SSL error": why
                       client.py's request failed, and the fix
"""


class ConfigError(Exception):
    """A problem the person starting the server can fix (file, port, ...):
    a short label, what is wrong, and the fix."""

    def __init__(self, label, what, fix):
        super().__init__(f"{label}: {what} -- {fix}")
        self.label, self.what, self.fix = label, what, fix
