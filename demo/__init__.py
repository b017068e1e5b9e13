"""demo/: the pieces mtls_demo.py tells its story with.

mtls_demo.py (next to this folder) is the demo itself: which cases to run,
one case, the closing table, main. What it is told with lives here, each
module named for what it holds, in the order the demo needs them:

  scenarios.py     the failure-gallery scenarios and the lesson, as data
  terminal.py      the one Screen (wrapped, never cut; colour only on a
                   terminal), commands that paste, Pauser, the closing table
  commands.py      paths and commands as a user types them; running them
  certificates.py  the certificates --check looks at (fields: armour/certificate_fields.py)
  servers.py       the one ServerProcess (server.py in its own process), the
                   certificates the cases need (make), CA-rollover refusal
  wire.py          the handshake ladder (openssl s_client -trace) and the
                   relay that shows TLS 1.2's client certificate in clear
  cases.py         the pieces of one case: curl beside client.py, the
                   TLS 1.2 rerun, README.md's failure-gallery table
  options.py       mtls_demo.py's command line
  check.py         mtls_demo.py --check: your own certificates and server

Imports go one way: mtls_demo.py and mistakes/gallery.py import from here,
nothing here imports them (the gallery module is handed to
servers.ensure_certificates, never imported by it).
"""
