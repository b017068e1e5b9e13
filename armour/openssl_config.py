"""openssl_config.py: have OpenSSL read groups.cnf, before anything imports ssl.

Prevents: the server offering a costly key-exchange group (see
key_exchange.py). OpenSSL reads its config file once, when ssl or hashlib
is first imported, and Python's ssl cannot set a list of groups before
3.15: so server.py, run as a program, calls read_groups_conf() before any
other import. A module must not change the settings of the program that
imports it, so only the entry point does; and never over an OPENSSL_CONF
already set (a distribution's crypto policy, FIPS). This module imports
no ssl itself.
"""

import os
import sys

# server.py's folder, where groups.cnf lies.
GROUPS_CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "groups.cnf")


def read_groups_conf():
    """Load ssl with OPENSSL_CONF=groups.cnf, unless a user's OPENSSL_CONF
    decides or ssl is loaded already; return the file that decides, or None."""
    chosen = os.environ.get("OPENSSL_CONF")
    if not chosen and os.path.isfile(GROUPS_CONF) and not {"_ssl", "_hashlib"} & set(sys.modules):
        chosen = os.environ["OPENSSL_CONF"] = GROUPS_CONF
        import ssl  # noqa: F401  (reads groups.cnf, once)
        del os.environ["OPENSSL_CONF"]      # read: programs we start are not affected
    return chosen
