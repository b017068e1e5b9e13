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
    ("        self.waiting_room = WaitingRoom(self, max_pending, continue_handshake)\n",
     "        self.socket = context.wrap_socket(self.socket, server_side=True)\n"
     "        self.waiting_room = WaitingRoom(self, max_pending, continue_handshake)\n"),
    ("        self.waiting_room.arrive(conn)\n",
     "        conn.step = continue_handshake        # accept() has done the handshake\n"
     "        self.pool.submit(conn)\n"),
]
ATTACK = "silence"
SERVER = []
ATTACKER = ("a TCP connection that sends nothing (nc localhost PORT); and, to test the "
            "log, a client with no certificate.")
WHY = ("The accepting thread is the only way in, and it is stuck in a handshake that "
       "never starts. server.py's accept() returns plain TCP; every connection waits in "
       "its waiting room (one selector, no thread) until its bytes arrive, each step of "
       "its handshake runs in a worker that never waits on the network, and every "
       "rejection is logged.")
FIX = ("accept plain TCP; let each handshake wait in a selector under a deadline, and run "
       "its steps, non-blocking, in worker threads (server.py: get_request, "
       "continue_handshake; armour/slow_clients.py: WaitingRoom)")
SEEN_IN = ['hashview/hashview#528 (Werkzeug wraps the listening socket)',
           'dpallot/simple-websocket-server#13, nesquena/hermes-webui#4727']

if __name__ == "__main__":
    import sys
    import gallery
    sys.exit(gallery.main_wrong(__file__))
