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
OPENSSL ?= openssl
# rsa (RSA-2048, as in the article) or ec (ECDSA P-256: smaller and faster).
# Unless given, it follows the existing CA key, so that `make scenarios`
# after `make certs KEY=ec` makes EC keys and EC-style certificates too.
ifeq ($(origin KEY),undefined)
KEY := $(if $(shell $(OPENSSL) pkey -in $(CERTS)/ca.key -noout -text 2>/dev/null | grep 'ASN1 OID'),ec,rsa)
endif
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
# One step at a time: `openssl ca` and -CAcreateserial keep serial numbers in
# files, and two of them running at once (make -j) could issue the same one.
.NOTPARALLEL:
.PHONY: have-openssl help certs scenarios article-certs crl run client demo inspect test bench clean

help: ## list the targets (this text)
	@echo "mTLS walkthrough. Start with: make certs && make run  (then: make client)"
	@echo
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
	  sed -E 's/^([^:]*):.*## (.*)/  make \1\t\2/' | expand -t 24
	@echo
	@echo "Settings: CERTS=$(CERTS) DAYS=$(DAYS) KEY=$(KEY) PORT=$(PORT) PYTHON=$(PYTHON)"

# --- the tutorial, one openssl step per file ----------------------------

# Every key rule needs this first: one clear line instead of "command not found".
have-openssl:
	@command -v $(OPENSSL) >/dev/null || { echo "error: '$(OPENSSL)' not found: the certificates are made with the openssl command -- install it (apt-get install openssl, brew install openssl) or pass OPENSSL=/path/to/openssl" >&2; exit 2; }

# Step 1: the certificate authority. A key, and a certificate for that key
# signed by itself (-x509). The article does both in one command with
# -keyout; we split them so each file has its own rule. -extensions v3_ca
# adds the CA extensions that strict verifiers require (see openssl.cnf).
$(CERTS)/ca.key: | have-openssl
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/ca.crt: $(CERTS)/ca.key $(CNF)
	$(OPENSSL) req -new -x509 -key $(CERTS)/ca.key -days $(DAYS) -subj '/CN=my-ca' -config $(CNF) -extensions v3_ca -out $@

# Step 2: the server's key, a signing request naming localhost, and the
# certificate the CA makes from it. -extensions server_$(KEY) adds the SAN
# (DNS:localhost, IP:127.0.0.1, IP:::1) and serverAuth.
$(CERTS)/server.key: | have-openssl
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/server.csr: $(CERTS)/server.key $(CNF)
	$(OPENSSL) req -new -key $(CERTS)/server.key -subj '/CN=localhost' -config $(CNF) -out $@

$(CERTS)/server.crt: $(CERTS)/server.csr $(CERTS)/ca.crt $(CERTS)/ca.key $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/server.csr -CA $(CERTS)/ca.crt -CAkey $(CERTS)/ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions server_$(KEY) -out $@

# Step 3: the same for the client, named my-client, with clientAuth only.
$(CERTS)/client.key: | have-openssl
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/client.csr: $(CERTS)/client.key $(CNF)
	$(OPENSSL) req -new -key $(CERTS)/client.key -subj '/CN=my-client' -config $(CNF) -out $@

$(CERTS)/client.crt: $(CERTS)/client.csr $(CERTS)/ca.crt $(CERTS)/ca.key $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/client.csr -CA $(CERTS)/ca.crt -CAkey $(CERTS)/ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions client -out $@

PKI := $(CERTS)/ca.crt $(CERTS)/server.crt $(CERTS)/client.crt

certs: $(PKI) ## build the CA, server and client certificates (in CERTS=certs)
	@echo "certificates are in $(CERTS)/. Next: make run   (and make client in a second terminal)"

# --- beyond the article: certificates for the failure gallery ------------
# `make scenarios` builds these next to the main ones. Each exists to make
# one real-world failure happen on purpose (python3 mtls_demo.py --all).

# other-ca: another, unrelated CA, and a client it vouches for. It even claims to be
#    my-client: the name means nothing without our CA's signature.
$(CERTS)/rogue-ca.key $(CERTS)/rogue-client.key: | have-openssl
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/rogue-ca.crt: $(CERTS)/rogue-ca.key $(CNF)
	$(OPENSSL) req -new -x509 -key $(CERTS)/rogue-ca.key -days $(DAYS) -subj '/CN=rogue-ca' -config $(CNF) -extensions v3_ca -out $@

$(CERTS)/rogue-client.csr: $(CERTS)/rogue-client.key $(CNF)
	$(OPENSSL) req -new -key $(CERTS)/rogue-client.key -subj '/CN=my-client' -config $(CNF) -out $@

$(CERTS)/rogue-client.crt: $(CERTS)/rogue-client.csr $(CERTS)/rogue-ca.crt $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/rogue-client.csr -CA $(CERTS)/rogue-ca.crt -CAkey $(CERTS)/rogue-ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions client -out $@

# The expired-* and revoked scenarios need `openssl ca`, which keeps a
# database of what it issued: it can back-date a certificate
# (-startdate/-enddate) and revoke one, then publish a CRL.
CA_DB := $(CERTS)/ca-db
CA    := CA_DIR=$(CA_DB) $(OPENSSL) ca -batch -notext -config ca.cnf -cert $(CERTS)/ca.crt -keyfile $(CERTS)/ca.key

$(CA_DB)/index.txt:
	mkdir -p $(CA_DB)
	$(OPENSSL) rand -hex 16 > $(CA_DB)/serial
	echo 1000 > $(CA_DB)/crlnumber
	touch $@

# expired-client, expired-server: same keys and names, dates in 2020.
$(CERTS)/expired-client.crt: $(CERTS)/client.csr $(CERTS)/ca.crt | $(CA_DB)/index.txt
	$(CA) -in $(CERTS)/client.csr -startdate 20200101000000Z -enddate 20200201000000Z -extfile $(CNF) -extensions client -out $@

$(CERTS)/expired-server.crt: $(CERTS)/server.csr $(CERTS)/ca.crt | $(CA_DB)/index.txt
	$(CA) -in $(CERTS)/server.csr -startdate 20200101000000Z -enddate 20200201000000Z -extfile $(CNF) -extensions server_$(KEY) -out $@

# wrong-hostname: a server certificate for www.example.com, not for localhost.
$(CERTS)/elsewhere-server.csr: $(CERTS)/server.key $(CNF)
	$(OPENSSL) req -new -key $(CERTS)/server.key -subj '/CN=www.example.com' -config $(CNF) -out $@

$(CERTS)/elsewhere-server.crt: $(CERTS)/elsewhere-server.csr $(CERTS)/ca.crt $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/elsewhere-server.csr -CA $(CERTS)/ca.crt -CAkey $(CERTS)/ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions server_elsewhere -out $@

# revoked: a client certificate that is issued, then revoked (as if its key
# had leaked), and the CRL that says so. Revoking twice is an error, so both
# steps live in this one rule. A CRL has an expiry of its own (nextUpdate):
# after DAYS days, `make crl` publishes a fresh one.
$(CERTS)/revoked-client.crt: $(CERTS)/client.csr $(CERTS)/ca.crt | $(CA_DB)/index.txt
	$(CA) -in $(CERTS)/client.csr -days $(DAYS) -extfile $(CNF) -extensions client -out $@
	$(CA) -revoke $@ -crl_reason keyCompromise

$(CERTS)/ca.crl: $(CERTS)/revoked-client.crt
	$(CA) -gencrl -crldays $(DAYS) -out $@

crl: $(CERTS)/revoked-client.crt ## publish a fresh CRL now (then kill -HUP the server)
	$(CA) -gencrl -crldays $(DAYS) -out $(CERTS)/ca.crl

# not-authorized, spiffe-identity: a second, valid client whose identity is
# the URI spiffe://example.org/other-client.
$(CERTS)/other-client.key: | have-openssl
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/other-client.csr: $(CERTS)/other-client.key $(CNF)
	$(OPENSSL) req -new -key $(CERTS)/other-client.key -subj '/CN=other-client' -config $(CNF) -out $@

$(CERTS)/other-client.crt: $(CERTS)/other-client.csr $(CERTS)/ca.crt $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/other-client.csr -CA $(CERTS)/ca.crt -CAkey $(CERTS)/ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions client_spiffe -out $@

# chain-*: an intermediate CA between the root (my-ca) and the leaves, as
# public CAs do. A leaf alone does not reach the root; leaf + intermediate does.
$(CERTS)/int-ca.key: | have-openssl
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/int-ca.csr: $(CERTS)/int-ca.key $(CNF)
	$(OPENSSL) req -new -key $(CERTS)/int-ca.key -subj '/CN=my-intermediate-ca' -config $(CNF) -out $@

$(CERTS)/int-ca.crt: $(CERTS)/int-ca.csr $(CERTS)/ca.crt $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/int-ca.csr -CA $(CERTS)/ca.crt -CAkey $(CERTS)/ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions v3_intermediate -out $@

$(CERTS)/int-server.crt: $(CERTS)/server.csr $(CERTS)/int-ca.crt $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/server.csr -CA $(CERTS)/int-ca.crt -CAkey $(CERTS)/int-ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions server_$(KEY) -out $@

$(CERTS)/int-client.crt: $(CERTS)/client.csr $(CERTS)/int-ca.crt $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/client.csr -CA $(CERTS)/int-ca.crt -CAkey $(CERTS)/int-ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions client -out $@

# A chain file is the leaf followed by the intermediate that signed it.
$(CERTS)/%-chain.pem: $(CERTS)/%.crt $(CERTS)/int-ca.crt
	cat $^ > $@

# article-*: the article's commands, verbatim, in a folder of their own: v1
# leaves, and a CA without keyUsage. Strict verification (Python 3.13) refuses them.
ARTICLE := $(CERTS)/article

$(ARTICLE)/ca.crt:
	mkdir -p $(ARTICLE)
	cd $(ARTICLE) && umask 077 && $(OPENSSL) req -new -x509 -nodes -days 365 -subj '/CN=my-ca' -keyout ca.key -out ca.crt

$(ARTICLE)/%.key:
	mkdir -p $(ARTICLE)
	cd $(ARTICLE) && umask 077 && $(OPENSSL) genrsa -out $*.key 2048

$(ARTICLE)/server.csr: $(ARTICLE)/server.key
	cd $(ARTICLE) && $(OPENSSL) req -new -key server.key -subj '/CN=localhost' -out server.csr

$(ARTICLE)/client.csr: $(ARTICLE)/client.key
	cd $(ARTICLE) && $(OPENSSL) req -new -key client.key -subj '/CN=my-client' -out client.csr

$(ARTICLE)/%.crt: $(ARTICLE)/%.csr $(ARTICLE)/ca.crt
	cd $(ARTICLE) && $(OPENSSL) x509 -req -in $*.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -out $*.crt

ARTICLE_PKI := $(ARTICLE)/ca.crt $(ARTICLE)/server.crt $(ARTICLE)/client.crt
SCENARIO_PKI := $(CERTS)/rogue-client.crt $(CERTS)/expired-client.crt $(CERTS)/expired-server.crt \
	$(CERTS)/elsewhere-server.crt $(CERTS)/ca.crl $(CERTS)/other-client.crt \
	$(CERTS)/int-server-chain.pem $(CERTS)/int-client-chain.pem $(ARTICLE_PKI)

article-certs: $(ARTICLE_PKI) ## the article's own commands, verbatim, into certs/article/
	@echo "the article's certificates are in $(ARTICLE)/. Next: python3 mtls_demo.py article-server-strict"

scenarios: $(PKI) $(SCENARIO_PKI) ## certificates for every failure scenario (mtls_demo.py --all)
	@echo "scenario certificates are in $(CERTS)/. Next: python3 mtls_demo.py --all"

# --- using them ----------------------------------------------------------

run: $(PKI) ## serve https://localhost:3000/ (PORT=...), client certificate required (Ctrl-C stops)
	$(PYTHON) server.py --port $(PORT) --ca $(CERTS)/ca.crt --cert $(CERTS)/server.crt --key $(CERTS)/server.key

client: $(PKI) ## make the successful mTLS request to the running server
	$(PYTHON) client.py --cacert $(CERTS)/ca.crt --cert $(CERTS)/client.crt --key $(CERTS)/client.key https://localhost:$(PORT)/
	@echo "That was mTLS working. Next: make demo   (every failure case, explained)"

demo: ## run the story: the success and each failure, explained
	$(PYTHON) mtls_demo.py --certs $(CERTS)
	@echo "Next: python3 mtls_demo.py --all   (every scenario), then make inspect"

# make inspect: one line per certificate: its file, who it names (subject),
# who signed it (issuer), when it expires (notAfter), and what it may be
# used for (extendedKeyUsage; none on a CA, or on the article's v1 leaves).
# One shell loop, echoed once, runs one openssl command per certificate.
# make inspect FULL=1: every certificate in full (openssl x509 -text), one
# echoed command each. Scenario certificates are included once they exist.
SCENARIO_CRTS := $(addprefix $(CERTS)/,rogue-ca.crt rogue-client.crt expired-client.crt \
	expired-server.crt elsewhere-server.crt revoked-client.crt other-client.crt \
	int-ca.crt int-server.crt int-client.crt) $(ARTICLE_PKI)
INSPECT = $(PKI) $(wildcard $(SCENARIO_CRTS))
define full_text
	@echo "=== $(1) (full)"
	$(OPENSSL) x509 -in $(1) -noout -text

endef
inspect: $(PKI) ## one line per certificate (FULL=1: each in full)
ifeq ($(FULL),)
	for crt in $(CERTS)/*.crt $(ARTICLE)/*.crt; do \
	  [ -f "$$crt" ] || continue; \
	  printf '%-26s ' "$$crt"; \
	  $(OPENSSL) x509 -in "$$crt" -noout -nameopt RFC2253 -subject -issuer -enddate \
	    -ext extendedKeyUsage 2>/dev/null | awk ' \
	    /^subject=/  { s = substr($$0, 9) } \
	    /^issuer=/   { i = substr($$0, 8) } \
	    /^notAfter=/ { split(substr($$0, 10), d, " "); n = d[1] " " d[2] " " d[4] } \
	    /Authentication/ { gsub(/TLS Web Server Authentication/, "serverAuth"); \
	                       gsub(/TLS Web Client Authentication/, "clientAuth"); \
	                       gsub(/^ +/, ""); e = $$0 } \
	    END { printf "%s by %s, until %s, EKU: %s\n", s, i, n, (e == "" ? "none" : e) }'; \
	done
	@echo "Next: make inspect FULL=1   (every field), then make test   (the proof)"
else
	$(foreach crt,$(INSPECT),$(call full_text,$(crt)))
	@echo "Next: make test   (the proof)"
endif

test: ## run the test suite (real handshakes on 127.0.0.1)
	$(PYTHON) -m unittest discover -s tests -t . -v
	@echo "All tests passed. Next: make demo"

bench: ## time server.py against openssl s_server: one table, bench/results.json (~1 min)
	$(PYTHON) bench/bench.py
	@echo "Next: read the Performance section of README.md for what the numbers mean"

clean: ## delete the certificates folder
	rm -rf $(CERTS)
	@echo "removed $(CERTS)/. Next: make certs"
