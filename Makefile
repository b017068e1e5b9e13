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
#   ca.srl      the serial number the CA last used (openssl -CAcreateserial)
#
# Start here: `make certs && make run`, then `make client` in a second terminal.
# Beyond the article: `make scenarios` (the failure gallery), `make p12`
# (the client certificate for a browser), `make proxy` (nginx in front of
# server.py), and the rotation targets (renew-server, crl, rollover-*),
# all explained in docs/deployment.md.

# --- settings you may override: make certs DAYS=30 KEY=ec CERTS=/tmp/pki -
CERTS   ?= certs
DAYS    ?= 365
OPENSSL ?= openssl
PYTHON  ?= python3
PORT    ?= 3000
# make proxy: nginx listens on PORT, server.py behind it on BACKEND_PORT
# (the port above PORT unless given: make proxy PORT=42020 puts it on 42021).
BACKEND_PORT ?= $(if $(call digits,$(PORT)),3001,$(shell expr $(PORT) + 1))
# nginx lives in /usr/sbin on Debian, off a normal user's PATH. (Not named
# NGINX: make exports command-line settings, and nginx reads a variable of
# that name from its environment, as sockets inherited from an old nginx.)
NGINX_BIN ?= $(or $(shell command -v nginx 2>/dev/null),$(wildcard /usr/sbin/nginx),nginx)
# nginx's log level in make proxy: warn shows warnings and errors only;
# NGINX_LOG=notice adds its start, reload and exit notices (the tests wait
# for them to know a reload happened); NGINX_LOG=info also says why each
# client certificate was refused ("client sent no required SSL certificate").
NGINX_LOG ?= warn
CNF     := openssl.cnf

# --- the settings, checked before any openssl step runs ------------------
# make splits file names at spaces, so a folder with a space in its name
# cannot be a target; and openssl would refuse DAYS=abc only halfway, after
# the CA key exists. So look first; `check-settings` (needed by every step
# that runs openssl) refuses in one line. The same for the folder: every file
# named here is relative to this one (make -f elsewhere/Makefile would stop
# half-way, a key made, openssl.cnf not found).
HERE := $(realpath $(dir $(lastword $(MAKEFILE_LIST))))
WRONG_FOLDER := $(filter-out $(HERE),$(realpath $(CURDIR)))
digits = $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst 8,,$(subst 9,,$(1)))))))))))
BAD_SETTING :=
ifneq ($(call digits,$(DAYS))$(filter 0%,$(DAYS)),)
BAD_SETTING := DAYS='$(DAYS)' is not a whole number of days above 0 -- e.g. make certs DAYS=30
endif
ifeq ($(strip $(DAYS)),)
BAD_SETTING := DAYS is empty: certificates need a lifetime in days -- e.g. make certs DAYS=30
endif
ifneq ($(words $(CERTS)),1)
BAD_SETTING := CERTS='$(CERTS)' $(if $(CERTS),has a space in it; make cannot handle one in a file name,is empty) -- name a folder without spaces, e.g. make certs CERTS=$(if $(strip $(CERTS)),$(subst $() ,_,$(strip $(CERTS))),certs)
override CERTS := certs-unused-because-the-setting-was-refused
endif

# rsa (RSA-2048, as in the article) or ec (ECDSA P-256: smaller and faster).
# Unless given, it follows the existing CA key, so that `make scenarios`
# after `make certs KEY=ec` makes EC keys and EC-style certificates too.
ifeq ($(origin KEY),undefined)
KEY := $(if $(shell $(OPENSSL) pkey -in $(CERTS)/ca.key -noout -text 2>/dev/null | grep 'ASN1 OID'),ec,rsa)
endif

# How to make a private key of type $(KEY) into the target file $@.
# umask 077 makes the file 0600 from the moment it exists: a private key
# must never be readable by other users, even briefly.
ifeq ($(KEY),ec)
GENKEY = umask 077 && $(OPENSSL) genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $@
else ifeq ($(KEY),rsa)
GENKEY = umask 077 && $(OPENSSL) genrsa -out $@ 2048
else
BAD_SETTING := KEY='$(KEY)' is not a key type we know -- use KEY=rsa or KEY=ec
endif

# The settings given on the command line, repeated in the "Next:" hints so
# that the next command works on the same files and port.
given = $(if $(filter command line,$(origin $(1))),$(1)=$(value $(1)))
# (With a space in front, as it follows a target name: make run$(AGAIN).)
AGAIN := $(if $(strip $(call given,CERTS) $(call given,PORT)), $(strip $(call given,CERTS) $(call given,PORT)))
# Certificates already here before this run: make keeps them whatever KEY
# or DAYS says, so `make certs` must say so.
PKI := $(CERTS)/ca.crt $(CERTS)/server.crt $(CERTS)/client.crt
KEPT := $(wildcard $(PKI))
NEW_SETTINGS := $(strip $(call given,KEY) $(call given,DAYS))
SAY_KEPT := $(and $(NEW_SETTINGS),$(filter 3,$(words $(KEPT))),$(if $(filter clean,$(MAKECMDGOALS)),,yes))
KEPT_NOTE = $(CERTS)/ already held these certificates, so they were kept: $(NEW_SETTINGS) \
	applies to new files only.\nTo rebuild them: make clean certs$(AGAIN) $(NEW_SETTINGS)

.DEFAULT_GOAL := help
# One step at a time: `openssl ca` and -CAcreateserial keep serial numbers in
# files, and two of them running at once (make -j) could issue the same one.
.NOTPARALLEL:
.PHONY: check-folder check-settings have-openssl help certs scenarios article-certs crl run client demo inspect test \
	bench clean p12 proxy proxy-ports nginx-conf have-nginx renew-server ca-2 rollover-phase1 rollover-phase2 \
	rollover-phase3

# Lines longer than 100 columns (a long CERTS path) wrap under the
# description column: read on a projector, never cut.
WRAP = awk '{ s = $$0; while (length(s) > 100) { i = 100; while (i > 25 && substr(s, i, 1) != " ") i--; \
	if (i <= 25) i = 100; print substr(s, 1, i - 1); s = sprintf("%24s%s", "", substr(s, i + 1)) } print s }'

help: ## list the targets (this text)
	@echo "mTLS walkthrough. Start with: make certs && make run  (then: make client)"
	@echo
	@grep -E '^[a-z][a-zA-Z0-9_-]*:.*## ' $(MAKEFILE_LIST) | \
	  sed -E 's/^([^:]*):.*## (.*)/  make \1\t\2/' | expand -t 24 | \
	  sed -e 's|\$$(PORT)|$(PORT)|g' -e 's|\$$(CERTS)|$(CERTS)|g' | $(WRAP)
	@echo
	@echo "Settings: CERTS=$(CERTS) DAYS=$(DAYS) KEY=$(KEY) PORT=$(PORT) BACKEND_PORT=$(BACKEND_PORT) NGINX_LOG=$(NGINX_LOG) PYTHON=$(PYTHON)" | $(WRAP)

# --- the tutorial, one openssl step per file ----------------------------

# Every key rule needs these first: one clear line instead of openssl's
# error halfway, or "command not found". check-folder alone comes first in
# the targets that run the project's programs (make test, demo, bench) or
# delete its folders (make clean): from elsewhere, Python would say only
# "can't open file", and clean would remove that folder's certs/.
check-folder:
	@$(if $(WRONG_FOLDER),echo "error: wrong folder: make runs in the project's folder (its paths are relative to it) -- make -C $(HERE) $(MAKECMDGOALS)" >&2; exit 2,:)

check-settings: check-folder
	@$(if $(BAD_SETTING),echo "error: bad setting: $(BAD_SETTING)" >&2; exit 2,:)

have-openssl: check-settings
	@command -v $(OPENSSL) >/dev/null || { echo "error: missing tool: '$(OPENSSL)' not found, and the certificates are made with the openssl command -- install it (apt-get install openssl, brew install openssl) or pass OPENSSL=/path/to/openssl" >&2; exit 2; }

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

# (PKI, the three certificates, is defined with the settings above.)
certs: $(PKI) ## build the CA, server and client certificates into $(CERTS)/
	@$(if $(SAY_KEPT),printf '$(KEPT_NOTE)\n',:)
	@echo "certificates are in $(CERTS)/."
	@echo "Next: make run$(AGAIN)   (and make client$(AGAIN) in a second terminal)"

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

$(CA_DB)/index.txt: | check-settings
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

# revoked: a client certificate that is issued, then revoked because its key
# leaked, and the CRL that says so. It has a key of its own: a leaked key is
# never used again, and every certificate for it is revoked (revoking only
# one of them would leave the thief the others). Revoking twice is an
# error, so both steps live in this one rule. A CRL has an expiry of its own
# (nextUpdate): after DAYS days, `make crl` publishes a fresh one.
$(CERTS)/revoked-client.key: | have-openssl
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/revoked-client.csr: $(CERTS)/revoked-client.key $(CNF)
	$(OPENSSL) req -new -key $(CERTS)/revoked-client.key -subj '/CN=my-client' -config $(CNF) -out $@

$(CERTS)/revoked-client.crt: $(CERTS)/revoked-client.csr $(CERTS)/ca.crt | $(CA_DB)/index.txt
	$(CA) -in $(CERTS)/revoked-client.csr -days $(DAYS) -extfile $(CNF) -extensions client -out $@
	$(CA) -revoke $@ -crl_reason keyCompromise

$(CERTS)/ca.crl: $(CERTS)/revoked-client.crt
	$(CA) -gencrl -crldays $(DAYS) -out $@

# A fresh CRL goes to a new name first and then replaces the old one in one
# step (mv), so a server reloading at that moment never reads half a file.
# During a CA rollover (once `make ca-2` has run) the new CA's CRL too.
crl: $(CERTS)/revoked-client.crt ## publish fresh CRLs now (then kill -HUP the server)
	$(CA) -gencrl -crldays $(DAYS) -out $(CERTS)/ca.crl.new
	mv $(CERTS)/ca.crl.new $(CERTS)/ca.crl
	$(if $(wildcard $(CERTS)/ca-2.crt),$(CA2) -gencrl -crldays $(DAYS) -out $(CERTS)/ca-2.crl.new)
	$(if $(wildcard $(CERTS)/ca-2.crt),mv $(CERTS)/ca-2.crl.new $(CERTS)/ca-2.crl)
	$(JOIN_CRLS)
	@$(call RELOAD_PROXY,   (the server reads CRLs at start and on HUP only))

# Every CA's CRL in one file, crls.pem: nginx's ssl_crl takes one file, and
# server.py behind it reads the same one, so that the new CA's CRL, joined
# in by `make ca-2`, reaches both at their next reload.
JOIN_CRLS = cat $(CERTS)/ca.crl$(if $(wildcard $(CERTS)/ca-2.crl), $(CERTS)/ca-2.crl) > $(CERTS)/crls.pem.new && \
	mv $(CERTS)/crls.pem.new $(CERTS)/crls.pem

$(CERTS)/crls.pem: $(CERTS)/ca.crl
	$(JOIN_CRLS)

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

$(ARTICLE)/ca.crt: | have-openssl
	mkdir -p $(ARTICLE)
	cd $(ARTICLE) && umask 077 && $(OPENSSL) req -new -x509 -nodes -days 365 -subj '/CN=my-ca' -keyout ca.key -out ca.crt

$(ARTICLE)/%.key: | have-openssl
	mkdir -p $(ARTICLE)
	cd $(ARTICLE) && umask 077 && $(OPENSSL) genrsa -out $*.key 2048

$(ARTICLE)/server.csr: $(ARTICLE)/server.key
	cd $(ARTICLE) && $(OPENSSL) req -new -key server.key -subj '/CN=localhost' -out server.csr

$(ARTICLE)/client.csr: $(ARTICLE)/client.key
	cd $(ARTICLE) && $(OPENSSL) req -new -key client.key -subj '/CN=my-client' -out client.csr

$(ARTICLE)/%.crt: $(ARTICLE)/%.csr $(ARTICLE)/ca.crt
	cd $(ARTICLE) && $(OPENSSL) x509 -req -in $*.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -out $*.crt

# The demo, as the hints spell it: with --certs and --port when CERTS and
# PORT were given.
DEMO := $(PYTHON) mtls_demo.py$(if $(call given,CERTS), --certs $(CERTS))$(if $(call given,PORT), --port $(PORT))

ARTICLE_PKI := $(ARTICLE)/ca.crt $(ARTICLE)/server.crt $(ARTICLE)/client.crt
SCENARIO_PKI := $(CERTS)/rogue-client.crt $(CERTS)/expired-client.crt $(CERTS)/expired-server.crt \
	$(CERTS)/elsewhere-server.crt $(CERTS)/ca.crl $(CERTS)/other-client.crt \
	$(CERTS)/int-server-chain.pem $(CERTS)/int-client-chain.pem $(ARTICLE_PKI)

article-certs: $(ARTICLE_PKI) ## the article's own commands, verbatim, into $(CERTS)/article/
	@echo "the article's certificates are in $(ARTICLE)/. Next: $(DEMO) article-server-strict"

scenarios: $(PKI) $(SCENARIO_PKI) ## certificates for every failure scenario (mtls_demo.py --all)
	@echo "scenario certificates are in $(CERTS)/. Next: $(DEMO) --all"

# --- deployment: a browser, a reverse proxy, rotation ---------------------
# Each is explained, with what to type and what you then see, in
# docs/deployment.md.

# The browser: a PKCS#12 (.p12) file holds the client certificate, its key
# and our CA certificate, under a password; browsers and OS keychains import
# it. The password is made at random, once, into p12.pass (0600): `cat` it
# when the import asks. To choose your own, write it there before `make p12`:
#   (umask 077; echo 'your password' > certs/p12.pass)
# openssl reads it with -passout file:, never from the command line, where
# `ps` would show it to every user of the machine.
$(CERTS)/p12.pass: | have-openssl
	@mkdir -p $(@D)
	umask 077 && $(OPENSSL) rand -base64 12 > $@

# The modern file: AES-256-CBC with PBKDF2 and a SHA-256 MAC (OpenSSL 3's
# defaults), but 600,000 iterations, not 2,048: each guess at the password
# costs that many hashes (OWASP's figure for PBKDF2-HMAC-SHA256), which
# matters once you choose the password yourself. -iter sets both the
# encryption's and the MAC's. About 0.5 s here. Chromium imports it
# (tests/test_deploy.py).
$(CERTS)/client.p12: $(CERTS)/client.crt $(CERTS)/client.key $(CERTS)/ca.crt $(CERTS)/p12.pass
	umask 077 && $(OPENSSL) pkcs12 -export -name my-client -in $(CERTS)/client.crt -inkey $(CERTS)/client.key -certfile $(CERTS)/ca.crt -passout file:$(CERTS)/p12.pass -iter 600000 -out $@

# The same for older importers, which call the modern file's password
# "wrong": 3DES with a SHA-1 MAC. Weaker; use it only where the modern file
# is refused. It keeps OpenSSL's 2,048 iterations: it exists only for
# importers we cannot test here, and a count they were not made for would be
# one more way to fail. What protects it is the random password (96 bits:
# no iteration count adds to that); with a password of your own, prefer the
# modern file.
# (openssl's -legacy would mean RC2-40, which OpenSSL 3 cannot even read
# back without its legacy provider.)
$(CERTS)/client-legacy.p12: $(CERTS)/client.crt $(CERTS)/client.key $(CERTS)/ca.crt $(CERTS)/p12.pass
	umask 077 && $(OPENSSL) pkcs12 -export -name my-client -in $(CERTS)/client.crt -inkey $(CERTS)/client.key -certfile $(CERTS)/ca.crt -passout file:$(CERTS)/p12.pass -certpbe PBE-SHA1-3DES -keypbe PBE-SHA1-3DES -macalg sha1 -out $@

p12: $(CERTS)/client.p12 $(CERTS)/client-legacy.p12 ## client.p12 for a browser (and client-legacy.p12 for old importers)
	@echo "$(CERTS)/client.p12 (and client-legacy.p12): my-client's certificate, key and CA."
	@echo "Their password is in $(CERTS)/p12.pass (cat it when the import asks)."
	@echo "Next: openssl pkcs12 -info -noout -in $(CERTS)/client.p12 -passin file:$(CERTS)/p12.pass"
	@echo "      then import it into your browser (docs/deployment.md)"

# The reverse proxy: nginx ends the client's mTLS and passes the client's
# certificate on to server.py in the X-Client-Cert header. server.py must
# believe that header only from nginx, so nginx proves who it is: the hop
# from nginx to server.py is mTLS too, with nginx's own client certificate.
$(CERTS)/proxy.key: | have-openssl
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/proxy.csr: $(CERTS)/proxy.key $(CNF)
	$(OPENSSL) req -new -key $(CERTS)/proxy.key -subj '/CN=my-proxy' -config $(CNF) -out $@

$(CERTS)/proxy.crt: $(CERTS)/proxy.csr $(CERTS)/ca.crt $(CERTS)/ca.key $(CNF)
	$(OPENSSL) x509 -req -in $(CERTS)/proxy.csr -CA $(CERTS)/ca.crt -CAkey $(CERTS)/ca.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions client -out $@

# nginx's config and working files live beside the certificates folder:
# nothing under /etc, /var or /run, and no root needed.
NGINX_DIR := $(patsubst %/,%,$(CERTS))-nginx

have-nginx: check-settings
	@command -v $(NGINX_BIN) >/dev/null || { echo "error: missing tool: '$(NGINX_BIN)' not found, and make proxy runs nginx -- install it (apt-get install nginx-light) or pass NGINX_BIN=/path/to/nginx" >&2; exit 2; }

# The config: deploy/nginx.conf.in with this run's folders and ports, then
# checked by nginx itself (-t).
nginx-conf: have-nginx $(PKI) $(CERTS)/proxy.crt $(CERTS)/trust.pem $(CERTS)/crls.pem deploy/nginx.conf.in
	mkdir -p $(NGINX_DIR)
	sed -e 's|@CERTS@|$(abspath $(CERTS))|g' -e 's|@NGINX_DIR@|$(abspath $(NGINX_DIR))|g' -e 's|@PORT@|$(PORT)|g' -e 's|@BACKEND_PORT@|$(BACKEND_PORT)|g' -e 's|@NGINX_LOG@|$(NGINX_LOG)|g' deploy/nginx.conf.in > $(NGINX_DIR)/nginx.conf
	$(NGINX_BIN) -t -q -e stderr -p $(abspath $(NGINX_DIR))/ -c nginx.conf

# server.py and nginx run in the background, and the shell waits for nginx.
# A script's background job ignores Ctrl-C, so the EXIT trap stops server.py
# (once, and waits for it) when nginx ends, however it ends. The shell waits
# with `wait`, which a signal interrupts: so Ctrl-C, or `kill <pid of make>`
# (make passes SIGTERM on to this shell only), stops nginx too (with nginx
# in the foreground, the shell would wait for it, and make for the shell).
# server.py's pid goes into backend.pid (nginx writes its own, nginx.pid),
# for the rotation targets.
# Both sides check what nginx checks: the CAs in trust.pem, the CRLs in
# crls.pem; server.py checks each forwarded certificate against them too.
# Both ports free, or one line (and a running proxy's config left untouched).
proxy-ports: have-nginx
	@$(PYTHON) -c 'import socket, sys; [socket.create_server(("127.0.0.1", int(p))).close() for p in sys.argv[1:]]' $(PORT) $(BACKEND_PORT) 2>/dev/null || { echo "error: port in use: port $(PORT) or $(BACKEND_PORT) on 127.0.0.1 is taken (make run or make proxy running?) -- stop it, or pass PORT=N" >&2; exit 2; }

proxy: proxy-ports nginx-conf ## nginx on https://localhost:$(PORT)/ (mTLS), server.py behind it
	@echo "nginx: https://localhost:$(PORT)/ (mTLS; $(if $(filter warn,$(NGINX_LOG)),it logs only warnings and errors,its log level: $(NGINX_LOG))), server.py behind it on port $(BACKEND_PORT). Ctrl-C stops both." | $(WRAP)
	$(PYTHON) server.py --host 127.0.0.1 --port $(BACKEND_PORT) --ca $(CERTS)/trust.pem --crl $(CERTS)/crls.pem --cert $(CERTS)/server.crt --key $(CERTS)/server.key --trust-proxy cn:my-proxy & \
	backend=$$!; echo $$backend > $(NGINX_DIR)/backend.pid; \
	trap 'kill $$backend 2>/dev/null; wait $$backend; rm -f $(NGINX_DIR)/backend.pid' EXIT; \
	$(NGINX_BIN) -e stderr -p $(abspath $(NGINX_DIR))/ -c nginx.conf & \
	nginx=$$!; trap 'kill $$nginx 2>/dev/null; wait $$nginx; exit 130' INT TERM; wait $$nginx

# Behind `make proxy`, the rotation targets (renew-server, crl,
# rollover-phase1..3) reload it themselves once their new files are in
# place: nginx first, with `nginx -s reload` and the same -p and -c it was
# started with (they name the config, which names nginx.pid), then
# server.py, with kill -HUP. Each phase is built so that either order
# works (tried): both sides trust every certificate in use before one is shown.
# Both reloads are asynchronous: the signal is sent, and each side reads the
# new files a moment later, keeping the old ones if a new one is broken.
# Without a running proxy (its nginx.pid names no live process: a pid file
# left by one that was killed is removed), it says what to HUP by hand:
# $(call RELOAD_PROXY,what follows "Next: kill -HUP <server pid>").
RELOAD_PROXY = if [ -f $(NGINX_DIR)/nginx.pid ] && kill -0 $$(cat $(NGINX_DIR)/nginx.pid) 2>/dev/null; then \
	$(NGINX_BIN) -e stderr -p $(abspath $(NGINX_DIR))/ -c nginx.conf -s reload && \
	kill -HUP $$(cat $(NGINX_DIR)/backend.pid) && \
	echo "make proxy is running: reloaded nginx, then server.py (nothing to HUP by hand)"; \
	else rm -f $(NGINX_DIR)/nginx.pid $(NGINX_DIR)/backend.pid; \
	echo "Next: kill -HUP <server pid>$(1)"; fi

# Rotation. A running server re-reads its files on `kill -HUP <pid>` and
# keeps the old ones if the new ones fail to load. Each target below writes
# a new file under a temporary name, then renames it (mv, atomic): whoever
# reads it at that moment gets the old file or the new one, never half.
ISSUER ?= ca

# It renews from a CA that exists; it never makes one (ISSUER=ca-2 before
# `make ca-2` would otherwise create a CA no client trusts yet).
renew-server: $(CERTS)/server.csr | check-settings ## a new server certificate, same key; then kill -HUP the server
	@test -f $(CERTS)/$(ISSUER).key || { echo "error: missing file: $(CERTS)/$(ISSUER).key not found, so CA '$(ISSUER)' cannot sign -- use ISSUER=ca (or ISSUER=ca-2 after make ca-2)" >&2; exit 2; }
	$(OPENSSL) x509 -req -in $(CERTS)/server.csr -CA $(CERTS)/$(ISSUER).crt -CAkey $(CERTS)/$(ISSUER).key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions server_$(KEY) -out $(CERTS)/server.crt.new
	mv $(CERTS)/server.crt.new $(CERTS)/server.crt
	@$(call RELOAD_PROXY,   (new connections get the new certificate))

# CA rollover. The new CA has a name of its own (CN=my-ca-2): two CAs of one
# name would make every verifier try the wrong key. Each side trusts the
# CAs in trust.pem, a file of its own, not the CA's certificate: then a
# rollover changes only what is in it, and a HUP applies it.
CA2_DB := $(CERTS)/ca-2-db
CA2    := CA_DIR=$(CA2_DB) $(OPENSSL) ca -batch -notext -config ca.cnf -cert $(CERTS)/ca-2.crt -keyfile $(CERTS)/ca-2.key

$(CERTS)/ca-2.key: | have-openssl
	@mkdir -p $(@D)
	$(GENKEY)

$(CERTS)/ca-2.crt: $(CERTS)/ca-2.key $(CNF)
	$(OPENSSL) req -new -x509 -key $(CERTS)/ca-2.key -days $(DAYS) -subj '/CN=my-ca-2' -config $(CNF) -extensions v3_ca -out $@

$(CA2_DB)/index.txt: | check-settings
	mkdir -p $(CA2_DB)
	$(OPENSSL) rand -hex 16 > $(CA2_DB)/serial
	echo 1000 > $(CA2_DB)/crlnumber
	touch $@

# The new CA's first CRL, empty: a server checking CRLs (--crl) refuses a
# client whose CA has none, so it must be there before phase 2. If `make
# proxy` made crls.pem, it goes in beside the old CA's, read at phase 1's reload.
$(CERTS)/ca-2.crl: $(CERTS)/ca-2.crt | $(CA2_DB)/index.txt
	$(CA2) -gencrl -crldays $(DAYS) -out $@
	$(if $(wildcard $(CERTS)/crls.pem),cat $(CERTS)/ca.crl $@ > $(CERTS)/crls.pem.new)
	$(if $(wildcard $(CERTS)/crls.pem),mv $(CERTS)/crls.pem.new $(CERTS)/crls.pem)

$(CERTS)/trust.pem: | $(CERTS)/ca.crt
	cp $(CERTS)/ca.crt $@

ca-2: $(CERTS)/ca-2.crt $(CERTS)/ca-2.crl $(CERTS)/ca.crl $(CERTS)/trust.pem ## before a rollover: the new CA my-ca-2, its CRL, and trust.pem
	@echo "Next: serve with$(if $(call given,PORT), --port $(PORT)) --ca $(CERTS)/trust.pem --crl $(CERTS)/ca.crl --crl $(CERTS)/ca-2.crl"
	@echo "      (make proxy does so already, with crls.pem: nothing to restart)"
	@echo "      then: make rollover-phase1$(AGAIN)"

# Phase 1 never makes the new CA either: `make ca-2` comes first, and then a
# restart of the server with --crl certs/ca-2.crl (a HUP re-reads files, it
# cannot add one). Made here, silently, the CA's CRL would be read by no
# server, which then refuses every client reissued in phase 2.
rollover-phase1: | check-settings ## rollover 1/3: trust.pem = old + new CA; then kill -HUP, clients too
	@test -f $(CERTS)/ca-2.crt -a -f $(CERTS)/ca-2.crl || { echo "error: out of order: the new CA $(CERTS)/ca-2.crt and its CRL are not made yet, and servers must be started with --ca $(CERTS)/trust.pem --crl $(CERTS)/ca-2.crl before phase 1 (a HUP cannot add a file) -- run make ca-2$(AGAIN) first, and restart the server as it says" >&2; exit 2; }
	cat $(CERTS)/ca.crt $(CERTS)/ca-2.crt > $(CERTS)/trust.pem.new
	mv $(CERTS)/trust.pem.new $(CERTS)/trust.pem
	@$(call RELOAD_PROXY,; then give $(CERTS)/trust.pem to every client.)
	@echo "      Once all have it: make rollover-phase2$(AGAIN)"

# Phases 2 and 3 never make the new CA (they would issue from a CA nobody
# trusts yet): each checks that the phase before it is done, or says so.
rollover-phase2: $(CERTS)/server.csr $(CERTS)/client.csr | check-settings ## rollover 2/3: reissue server, client (and proxy) from the new CA; kill -HUP
	@test -f $(CERTS)/ca-2.crt && $(OPENSSL) verify -CAfile $(CERTS)/trust.pem $(CERTS)/ca-2.crt >/dev/null 2>&1 || { echo "error: out of order: $(CERTS)/trust.pem does not hold my-ca-2 yet, so every side would refuse what phase 2 issues -- run make ca-2 and make rollover-phase1 first" >&2; exit 2; }
	$(OPENSSL) x509 -req -in $(CERTS)/server.csr -CA $(CERTS)/ca-2.crt -CAkey $(CERTS)/ca-2.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions server_$(KEY) -out $(CERTS)/server.crt.new
	$(OPENSSL) x509 -req -in $(CERTS)/client.csr -CA $(CERTS)/ca-2.crt -CAkey $(CERTS)/ca-2.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions client -out $(CERTS)/client.crt.new
	$(if $(wildcard $(CERTS)/proxy.csr),$(OPENSSL) x509 -req -in $(CERTS)/proxy.csr -CA $(CERTS)/ca-2.crt -CAkey $(CERTS)/ca-2.key -CAcreateserial -days $(DAYS) -extfile $(CNF) -extensions client -out $(CERTS)/proxy.crt.new)
	mv $(CERTS)/server.crt.new $(CERTS)/server.crt
	mv $(CERTS)/client.crt.new $(CERTS)/client.crt
	$(if $(wildcard $(CERTS)/proxy.csr),mv $(CERTS)/proxy.crt.new $(CERTS)/proxy.crt)
	@$(call RELOAD_PROXY,; then give each client its new certificate.)
	@echo "      Once all have it: make rollover-phase3$(AGAIN)"

rollover-phase3: | check-settings ## rollover 3/3: trust.pem = new CA only; then kill -HUP, clients too
	@test -f $(CERTS)/ca-2.crt && $(OPENSSL) verify -CAfile $(CERTS)/ca-2.crt $(CERTS)/server.crt >/dev/null 2>&1 || { echo "error: out of order: $(CERTS)/server.crt is not issued by my-ca-2 yet, so trusting my-ca-2 alone would refuse it -- run make rollover-phase2 first" >&2; exit 2; }
	cp $(CERTS)/ca-2.crt $(CERTS)/trust.pem.new
	mv $(CERTS)/trust.pem.new $(CERTS)/trust.pem
	@$(call RELOAD_PROXY,; then give $(CERTS)/trust.pem to every client.)
	@echo "      From now on, renew with: make renew-server ISSUER=ca-2$(AGAIN)"

# --- using them ----------------------------------------------------------

# The CAs each side trusts: ca.crt, or trust.pem once a rollover (or make
# proxy) has made it, so that make run and make client work at every phase.
TRUST = $(if $(wildcard $(CERTS)/trust.pem),$(CERTS)/trust.pem,$(CERTS)/ca.crt)

run: $(PKI) ## serve https://localhost:$(PORT)/, client certificate required (Ctrl-C stops)
	$(PYTHON) server.py --port $(PORT) --ca $(TRUST) --cert $(CERTS)/server.crt --key $(CERTS)/server.key

client: $(PKI) ## make the successful mTLS request to the running server
	$(PYTHON) client.py --cacert $(TRUST) --cert $(CERTS)/client.crt --key $(CERTS)/client.key https://localhost:$(PORT)/
	@echo "That was mTLS working. Next: make demo$(AGAIN)   (the lesson: success and failures, explained)"

# Its servers listen on PORT and PORT+1 (a free port where one is taken,
# by make run say), so that its commands paste as make run would serve them.
demo: | check-folder ## run the lesson: the success and five failures, each explained
	$(PYTHON) mtls_demo.py --lesson --certs $(CERTS) --port $(PORT)

# make inspect: one line per certificate: its file, who it names (subject),
# who signed it (issuer), when it expires (notAfter), and what it may be
# used for (extendedKeyUsage; none on a CA, or on the article's v1 leaves).
# One shell loop, echoed once, runs one openssl command per certificate;
# INSPECT_AWK (below, passed in the environment) turns its output into the
# line, and INSPECT_WIDTH is the longest file name, for the columns.
# make inspect FULL=1: every certificate in full (openssl x509 -text), one
# echoed command each. Scenario certificates are included once they exist.
SCENARIO_CRTS := $(addprefix $(CERTS)/,rogue-ca.crt rogue-client.crt expired-client.crt \
	expired-server.crt elsewhere-server.crt revoked-client.crt other-client.crt \
	int-ca.crt int-server.crt int-client.crt) $(ARTICLE_PKI)
INSPECT = $(PKI) $(wildcard $(SCENARIO_CRTS))
# Without ALL=1, the main certificates only (those of make certs, and of the
# rotation and proxy targets once made); the scenario ones, once made, are
# counted in one line.
SCENARIOS_HERE = $(wildcard $(SCENARIO_CRTS))
# The main certificates: make certs', and the rollover's and the proxy's once made.
INSPECT_MAIN = $(PKI) $(wildcard $(CERTS)/ca-2.crt $(CERTS)/proxy.crt)
OTHERS_HERE = $(filter-out $(INSPECT_MAIN),$(sort $(wildcard $(CERTS)/*.crt) $(SCENARIOS_HERE)))
INSPECT_LIST = $(if $(ALL),$(CERTS)/*.crt $(ARTICLE)/*.crt,$(INSPECT_MAIN))
define full_text
	@echo "=== $(1) (full)"
	$(OPENSSL) x509 -in $(1) -noout -text

endef
export INSPECT_AWK := \
	/^subject=/  { s = substr($$0, 9) } \
	/^issuer=/   { i = substr($$0, 8) } \
	/^notAfter=/ { split(substr($$0, 10), d, " "); n = d[1] " " d[2] " " d[4] } \
	/Authentication/ { gsub(/TLS Web Server Authentication/, "serverAuth"); \
	                   gsub(/TLS Web Client Authentication/, "clientAuth"); \
	                   gsub(/^ +/, ""); e = $$0 } \
	END { printf "%s by %s, until %s, EKU: %s\n", s, i, n, (e == "" ? "none" : e) }
INSPECT_WIDTH = $(shell printf '%s\n' $(if $(ALL),$(wildcard $(CERTS)/*.crt $(ARTICLE)/*.crt),$(INSPECT_LIST)) | awk 'length > w { w = length } END { print w }')
INSPECT_AGAIN := $(if $(call given,CERTS), CERTS=$(CERTS))
inspect: $(PKI) ## one line per main certificate (ALL=1: the scenarios' too; FULL=1: each in full)
ifeq ($(FULL),)
	for crt in $(INSPECT_LIST); do [ -f "$$crt" ] || continue; printf '%-$(INSPECT_WIDTH)s ' "$$crt"; $(OPENSSL) x509 -in "$$crt" -noout -nameopt RFC2253 -subject -issuer -enddate -ext extendedKeyUsage 2>/dev/null | awk "$$INSPECT_AWK"; done
	@$(if $(and $(OTHERS_HERE),$(if $(ALL),,yes)),echo "(and $(words $(OTHERS_HERE)) more certificates, for the failure cases and the exhibits: make inspect ALL=1$(INSPECT_AGAIN) lists them too)",:)
	@echo "Next: make inspect FULL=1$(INSPECT_AGAIN)   (every field), then make test   (the proof)"
else
	$(foreach crt,$(INSPECT),$(call full_text,$(crt)))
	@echo "Next: make test   (the proof)"
endif

test: | check-folder ## run the test suite (real handshakes on 127.0.0.1)
	$(PYTHON) tests/run.py
	@echo "All tests passed. Next: make demo$(AGAIN)"

bench: | check-folder ## server.py against openssl s_server and Node: bench/results.json (about 45 s)
	$(PYTHON) bench/bench.py
	@echo "Next: read docs/performance.md for what the numbers mean"

clean: | check-folder ## delete the certificates folder (and make proxy's nginx folder)
	rm -rf $(CERTS) $(NGINX_DIR)
	@echo "removed $(CERTS)/. Next: make certs$(AGAIN)"
