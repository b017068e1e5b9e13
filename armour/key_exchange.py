"""key_exchange.py: which key-exchange groups and TLS 1.2 ciphers the server offers.

Prevents: a costly key exchange (a ClientHello asking for a finite-field
group, ffdhe8192, costs the server ~100 ms of CPU) and TLS 1.2 ciphers
without forward secrecy.

A TLS handshake agrees on a key through a key exchange (Diffie-Hellman) on
a "group": an elliptic curve such as X25519 or P-256, or a finite field
(ffdhe2048...). Python's ssl can set only one group (set_ecdh_curve)
before 3.15, so server.py, run as a program, points OpenSSL at groups.cnf
before ssl is imported (openssl_config.py); `groups_from` below is the
config file that decided, or None.
"""

import os
import ssl

from armour.openssl_config import GROUPS_CONF

# The key-exchange groups we offer, in our order of preference: the same
# list as groups.cnf (which says why these three). Where neither that file
# nor set_groups() can be used, one group by our key's type (see
# set_key_exchange_groups).
KEY_EXCHANGE_GROUPS = "X25519:P-256:P-384"
ONE_GROUP = {"rsa": "X25519", "ec": "prime256v1"}
GROUP_NAMES = {"X25519": "X25519", "prime256v1": "P-256", "secp384r1": "P-384",
               "secp521r1": "P-521", "ffdhe2048": "ffdhe2048"}     # Python's name: TLS's

# TLS 1.2 ciphers: ECDHE key exchange (forward secrecy) with AEAD encryption
# only, as in Mozilla's "intermediate" profile. TLS 1.3's cipher suites are
# all AEAD; its key exchange is chosen by the groups (KEY_EXCHANGE_GROUPS).
TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
])


def set_key_exchange_groups(context, key_type, groups_from):
    """Offer X25519, P-256 and P-384 for the key exchange, and no finite-field group.

    A file the user named with OPENSSL_CONF decides, if there is one. Else
    Python 3.15's set_groups() sets them; before it, groups.cnf does, for the
    whole process (see the top of server.py). Where a file decides,
    set_ecdh_curve() must not be called: it would replace that list with one
    group. Left with neither (server.py imported as a module, before 3.15),
    we set the one group Python can, by our key's type; Python 3.9 and 3.10
    cannot set X25519, so there it is P-256. A client without that one group
    then cannot connect."""
    context.groups = KEY_EXCHANGE_GROUPS.replace(":", ", ")   # for the log
    if groups_from and groups_from != GROUPS_CONF:
        context.groups = f"the groups OPENSSL_CONF={groups_from} allows"
    elif hasattr(context, "set_groups"):
        context.set_groups(KEY_EXCHANGE_GROUPS)
    elif not groups_from:
        group = ONE_GROUP.get(key_type, "prime256v1")
        try:
            context.set_ecdh_curve(group)
        except (ssl.SSLError, ValueError):        # before 3.11, Python names EC curves only
            group = "prime256v1"
            context.set_ecdh_curve(group)
        context.groups = GROUP_NAMES[group]


def describe_groups(context, groups_from):
    """Log lines: which key-exchange groups the server really accepts.

    Python cannot list them, so we try: for each group, a TLS 1.3 client
    that offers only it, talking to our context through memory buffers (no
    network), which the server either answers or refuses. About 5 ms, at
    start only. It shows whether groups.cnf (or the user's OPENSSL_CONF) took
    effect, and catches a finite-field group left open."""
    accepted, refused, untested = [], [], []
    for name, tls_name in GROUP_NAMES.items():
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)    # it never reads our answer
        client.minimum_version = ssl.TLSVersion.TLSv1_3
        try:
            client.set_ecdh_curve(name)
        except (ssl.SSLError, ValueError):        # Python 3.9 and 3.10: EC curves only
            untested.append(tls_name)
            continue
        to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
        hello, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        try:
            client.wrap_bio(to_client, hello, server_hostname="probe").do_handshake()
        except ssl.SSLWantReadError:               # the ClientHello is written
            to_server.write(hello.read())
        try:
            context.wrap_bio(to_server, out, server_side=True).do_handshake()
        except ssl.SSLWantReadError:               # answered: waits for the client's certificate
            accepted.append(tls_name)
        except ssl.SSLError:                       # no group in common
            refused.append(tls_name)
    source = (f"OPENSSL_CONF={groups_from}" if groups_from and groups_from != GROUPS_CONF
              else "set_groups()" if hasattr(context, "set_groups")
              else "groups.cnf" if groups_from else "one group: groups.cnf not read")
    line = f"key-exchange groups ({source}): {', '.join(accepted) or 'none'}"
    line += f"; refused: {', '.join(refused)}" if refused else ""
    line += f"; untested (Python < 3.11): {', '.join(untested)}" if untested else ""
    lines = [line]
    if not os.path.isfile(GROUPS_CONF):
        lines.append(f"warning: {GROUPS_CONF} not found: a client that cannot use "
                     f"{', '.join(accepted) or 'that group'} cannot connect -- copy groups.cnf "
                     f"beside server.py")
    if "ffdhe2048" in accepted:
        lines.append(f"warning: a finite-field group is accepted: one ClientHello asking for "
                     f"ffdhe8192 costs ~100 ms of CPU -- set 'Groups = {KEY_EXCHANGE_GROUPS}' "
                     f"in the system_default section of {groups_from}")
    return lines
