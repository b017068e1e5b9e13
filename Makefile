# Makefile: the mTLS walkthrough as a transcript.
#
# Each certificate file has one rule that runs one `openssl` step, in the
# order of the tutorial, and lists the files it is built from. So `make certs`
# echoes the tutorial's commands as it runs them, and a second `make certs`
# does nothing. Every file lands in $(CERTS):
#
#   ca.key      the CA's private key               (0600, never leaves here)
#   ca.crt      the CA's self-signed certificate   (both sides trust this)
#   server.key  the server's private key           (0600)
#   server.csr  the server's signing request       (CN=localhost)
#   server.crt  the server's certificate, signed by the CA
#   client.key  the client's private key           (0600)
#   client.csr  the client's signing request       (CN=my-client)
#   client.crt  the client's certificate, signed by the CA
#   ca.srl      the CA's next serial number (openssl -CAcreateserial)
#
# Start here: `make certs && make run`, then `make client` in a second terminal.

# --- settings you may override: make certs DAYS=30 KEY=ec CERTS=/tmp/pki -
CERTS   ?= certs
DAYS    ?= 365
# rsa (RSA-2048, as in the article) or ec (ECDSA P-256: smaller and faster)
KEY     ?= rsa
OPENSSL ?= openssl
PYTHON  ?= python3
PORT    ?= 3000
CNF     := openssl.cnf

# How to make a private key of type $(KEY) into the target file $@.
# umask 077 makes the file 0600 from the moment it exists: a private key
# must never be readable by other users, even briefly.
ifeq ($(KEY),ec)
GENKEY = umask 077 && $(OPENSSL) genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $@
else ifeq ($(KEY),rsa)
GENKEY = umask 077 && $(OPENSSL) genrsa -out $@ 2048
else
$(error KEY=$(KEY) is not a key type we know: use KEY=rsa or KEY=ec)
endif

.DEFAULT_GOAL := help
.PHONY: help certs run client demo inspect test clean

help: ## list the targets (this text)
	@echo "mTLS walkthrough. Start with: make certs && make run  (then: make client)"
	@echo
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
	  sed -E 's/^([^:]*):.*## (.*)/  make \1\t\2/' | expand -t 24
	@echo
	@echo "Settings: CERTS=$(CERTS) DAYS=$(DAYS) KEY=$(KEY) PORT=$(PORT) PYTHON=$(PYTHON)"

# --- the tutorial, one openssl step per file ----------------------------

# Step 1: the certificate authority. A key, and a certificate for that key
# signed by itself (-x509). The article does both in one command with
# -keyout; we split them so each file has its own rule. -extensions v3_ca
# adds the CA extensions that strict verifiers require (see openssl.cnf).
$(CERTS)/ca.key:
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/ca.crt: $(CERTS)/ca.key $(CNF)
	$(OPENSSL) req -new -x509 -key $(CERTS)/ca.key -days $(DAYS) -subj '/CN=my-ca' -config $(CNF) -extensions v3_ca -out $@

# Step 2: the server's key, a signing request naming localhost, and the
# certificate the CA makes from it. -extensions server_$(KEY) adds the SAN
# (DNS:localhost, IP:127.0.0.1, IP:::1) and serverAuth.
$(CERTS)/server.key:
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/server.csr: $(CERTS)/server.key $(CNF)
	$(OPENSSL) req -new -key $(CERTS)/server.key -subj '/CN=localhost' -config $(CNF) -out $@

$(CERTS)/server.crt: $(CERTS)/server.csr $(CERTS)/ca.crt $(CERTS)/ca.key $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/server.csr -CA $(CERTS)/ca.crt -CAkey $(CERTS)/ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions server_$(KEY) -out $@

# Step 3: the same for the client, named my-client, with clientAuth only.
$(CERTS)/client.key:
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/client.csr: $(CERTS)/client.key $(CNF)
	$(OPENSSL) req -new -key $(CERTS)/client.key -subj '/CN=my-client' -config $(CNF) -out $@

$(CERTS)/client.crt: $(CERTS)/client.csr $(CERTS)/ca.crt $(CERTS)/ca.key $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/client.csr -CA $(CERTS)/ca.crt -CAkey $(CERTS)/ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions client -out $@

PKI := $(CERTS)/ca.crt $(CERTS)/server.crt $(CERTS)/client.crt

certs: $(PKI) ## build the CA, server and client certificates (in CERTS=certs)
	@echo "certificates are in $(CERTS)/. Next: make run   (and make client in a second terminal)"

# --- using them ----------------------------------------------------------

run: $(PKI) ## serve https://localhost:3000/ (PORT=...), client certificate required (Ctrl-C stops)
	$(PYTHON) server.py --port $(PORT) --ca $(CERTS)/ca.crt --cert $(CERTS)/server.crt --key $(CERTS)/server.key

client: $(PKI) ## make the successful mTLS request to the running server
	$(PYTHON) client.py --cacert $(CERTS)/ca.crt --cert $(CERTS)/client.crt --key $(CERTS)/client.key https://localhost:$(PORT)/
	@echo "That was mTLS working. Next: make demo   (every failure case, explained)"

demo: ## run the story: the success and each failure, explained
	$(PYTHON) mtls_demo.py --certs $(CERTS)
	@echo "Next: make inspect   (what is inside each certificate)"

inspect: $(PKI) ## print each certificate as openssl sees it
	for crt in $(PKI); do echo "=== $$crt"; $(OPENSSL) x509 -in $$crt -text -noout; done
	@echo "Next: make test   (the proof)"

test: ## run the test suite (real handshakes on 127.0.0.1)
	$(PYTHON) -m unittest discover -s tests -t . -v
	@echo "All tests passed. Next: make demo"

clean: ## delete the certificates folder
	rm -rf $(CERTS)
	@echo "removed $(CERTS)/. Next: make certs"
