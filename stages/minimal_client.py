import pathlib
import ssl
import urllib.request

CERTS = pathlib.Path(__file__).resolve().parent.parent / "certs"   # made by `make certs`
if not (CERTS / "client.crt").exists():
    raise SystemExit(f"error: {CERTS / 'client.crt'} not found -- run 'make certs' first")

context = ssl.create_default_context(cafile=CERTS / "ca.crt")       # trust our CA for the server
context.load_cert_chain(CERTS / "client.crt", CERTS / "client.key")  # and show our certificate
try:                       # a silent server is given up on after 10 s
    with urllib.request.urlopen("https://localhost:3000/", context=context, timeout=10) as response:
        print(response.read().decode(), end="")
except OSError as exc:     # no server, a refused certificate, ...: one line, not a traceback
    raise SystemExit(f"error: GET https://localhost:3000/ failed: {getattr(exc, 'reason', exc)}")
except KeyboardInterrupt:  # Ctrl-C stops it
    raise SystemExit("error: GET https://localhost:3000/ interrupted (Ctrl-C)")
