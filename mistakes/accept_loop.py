#!/usr/bin/env python3
"""accept-loop: the TLS handshake runs inside accept(), on the server's only accepting thread.

The pattern many tutorials show (and Werkzeug's development server uses)
wraps the *listening* socket:
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
Then accept() does each client's handshake before it returns, on the one
thread that accepts, with no timeout. One TCP connection that sends
nothing freezes the whole server. A handshake that fails raises out of
accept(), and socketserver drops it without a word: no log line.

Attack this wrong server by hand:
    python3 mistakes/accept_loop.py --port 3001 &
    nc localhost 3001          (send nothing; leave it open)
    python3 client.py --cacert certs/ca.crt --cert certs/client.crt \\
        --key certs/client.key --timeout 5 https://localhost:3001/
"""

TITLE = "The handshake inside accept() (a wrapped listening socket)"
FILE = "server.py"
EDITS = [
    ("        super().__init__(address, GreetingHandler)\n",
     "        super().__init__(address, GreetingHandler)\n"
     "        self.socket = context.wrap_socket(self.socket, server_side=True)\n"),
    ("    peer = format_address(address)\n"
     "    sock.settimeout(max(deadline - time.monotonic(), 0.001))\n",
     "    peer = format_address(address)\n"
     "    tls = sock                            # accept() has done the handshake\n"
     "    tls.ids = identities_of(read_certificate(tls.getpeercert(binary_form=True)))\n"
     "    tls.name, tls.proxy, tls.refusal = greeting_name(tls.ids), False, None\n"
     "    tls.born = time.monotonic()\n"
     "    server.log(f\"accepted {peer} as {spell_all(tls.ids)}\")\n"
     "    return tls\n"
     "    sock.settimeout(max(deadline - time.monotonic(), 0.001))\n"),
]
ATTACK = "silence"
SERVER = []
ATTACKER = ("a TCP connection that sends nothing (nc localhost PORT); and, to test the "
            "log, a client with no certificate.")
WHY = ("The accepting thread is the only way in, and it is stuck in a handshake that "
       "never starts. server.py's accept() returns plain TCP; a silent connection waits "
       "in its waiting room (no thread) until --handshake-timeout, and each handshake "
       "runs in a worker thread that logs every rejection.")
FIX = ("accept plain TCP, and do each handshake in a worker thread under a deadline "
       "(server.py: get_request, WaitingRoom, handshake)")
SEEN_IN = ['hashview/hashview#528 (Werkzeug wraps the listening socket)',
           'dpallot/simple-websocket-server#13, nesquena/hermes-webui#4727']

if __name__ == "__main__":
    import sys
    import gallery
    sys.exit(gallery.main_wrong(__file__))
