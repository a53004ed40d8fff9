# shellcheck shell=bash
# scripts/stack.d/pki.sh — sourced by scripts/stack (not run on its own).
#
# The test PKI of a stack dir: a throw-away CA, the broker's, PostgreSQL's
# and a client's certificates, made with the openssl CLI (pki_ensure), and
# the SASL password of the Kafka user (kafka_password).

# --------------------------------------------------------------------------
# Test PKI (TLS certificates and the SASL password), per stack dir
# --------------------------------------------------------------------------

# Generated here, never checked in: a throw-away CA and certificates signed
# by it, so the tests can verify servers properly (sslmode=verify-full,
# ssl.endpoint.identification.algorithm=https) instead of switching checks
# off.  RSA 2048 keys in unencrypted PKCS#8 PEM (what `openssl genpkey`
# writes), which every client involved reads: Java (Kafka's PEM keystore
# and tools), librdkafka/OpenSSL, libpq and PostgreSQL.  Kafka 4.x accepts
# an unencrypted key in a file-based PEM keystore (ssl.keystore.type=PEM
# without ssl.key.password), so none is set.

# openssl with its messages collected in $PKI_LOG, shown on failure.
pki_openssl() {
    openssl "$@" 2>>"$PKI_LOG" || { show_tail "$PKI_LOG"; die "openssl $1 failed (log: $PKI_LOG)"; }
}

# A minimal openssl config for `req`, so the result does not depend on the
# distribution's openssl.cnf (whose default CA extensions would also clash
# with the ones given here).  $1: the extensions of a self-signed
# certificate (for the CA), or nothing for a certificate request.
pki_req_conf() {
    printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n'
    printf '[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n'
    printf 'subjectKeyIdentifier = hash\n'
}

# True when certificate $1 and key $2 exist, belong together, the
# certificate verifies against the current CA (a regenerated CA makes the
# old ones fail) and is valid for at least one more day.
pki_cert_ok() {
    local crt="$1" key="$2"
    [[ -s "$crt" && -s "$key" ]] || return 1
    openssl verify -CAfile "$PKI_DIR/ca.pem" "$crt" >/dev/null 2>&1 || return 1
    openssl x509 -in "$crt" -noout -checkend 86400 >/dev/null 2>&1 || return 1
    [[ "$(openssl x509 -in "$crt" -noout -pubkey 2>/dev/null)" == \
       "$(openssl pkey -in "$key" -pubout 2>/dev/null)" ]]
}

# Issue a certificate signed by the CA: key to $1, certificate to $2,
# subject CN $3, extended key usage $4, subjectAltName $5 (may be empty).
# Both are written next to their final names and then renamed, so an
# interrupted run leaves no half-written file under the final name (and a
# key without its certificate fails pki_cert_ok and is made again).
pki_issue() {
    local key="$1" crt="$2" cn="$3" eku="$4" san="$5"
    local tmp="$PKI_DIR/.issue.$$"
    (umask 077; pki_openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp.key")
    pki_openssl req -new -config <(pki_req_conf) -key "$tmp.key" -subj "/CN=$cn" -out "$tmp.csr"
    pki_openssl x509 -req -in "$tmp.csr" -CA "$PKI_DIR/ca.pem" -CAkey "$PKI_DIR/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 -out "$tmp.crt" \
        -extensions leaf -extfile <(
            printf '[leaf]\nbasicConstraints = critical,CA:FALSE\n'
            printf 'keyUsage = critical,digitalSignature,keyEncipherment\n'
            printf 'extendedKeyUsage = %s\n' "$eku"
            printf 'subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n'
            [[ -z "$san" ]] || printf 'subjectAltName = %s\n' "$san")
    chmod 644 "$tmp.crt"
    rm -f "$tmp.csr"
    mv "$tmp.key" "$key"
    mv "$tmp.crt" "$crt"
}

# Create whatever part of $PKI_DIR is missing or no longer valid (see the
# header).  Cheap when all is there (a few openssl checks), so every start
# of a part calls it.  The directory is world-traversable (PostgreSQL runs
# as another user when this script runs as root); the keys and the
# password are 0600.
pki_ensure() {
    command -v openssl >/dev/null || apt_install openssl
    mkdir -p "$STACK_DIR"
    install -d -m 755 "$PKI_DIR"

    if [[ ! -s "$PKI_DIR/ca.pem" || ! -s "$PKI_DIR/ca.key" ]] \
            || ! openssl x509 -in "$PKI_DIR/ca.pem" -noout -checkend $((30 * 86400)) >/dev/null 2>&1; then
        say "creating the test CA in $PKI_DIR ..."
        (umask 077; pki_openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI_DIR/ca.key.tmp")
        pki_openssl req -x509 -new -config <(pki_req_conf) -extensions ca \
            -key "$PKI_DIR/ca.key.tmp" -subj "/CN=paystream test CA" \
            -days 3650 -sha256 -out "$PKI_DIR/ca.pem.tmp"
        chmod 644 "$PKI_DIR/ca.pem.tmp"
        mv "$PKI_DIR/ca.key.tmp" "$PKI_DIR/ca.key"
        mv "$PKI_DIR/ca.pem.tmp" "$PKI_DIR/ca.pem"
    fi

    # The broker's key and certificate are kept apart (to check them like
    # the others) and joined into broker.pem, the PEM keystore Kafka reads:
    # key first, then certificate.
    if ! pki_cert_ok "$PKI_DIR/broker.crt" "$PKI_DIR/broker.key"; then
        say "issuing the Kafka broker certificate ..."
        pki_issue "$PKI_DIR/broker.key" "$PKI_DIR/broker.crt" "paystream test kafka broker" \
            serverAuth,clientAuth "IP:127.0.0.1,DNS:localhost"
        rm -f "$PKI_DIR/broker.pem"
    fi
    if [[ ! -s "$PKI_DIR/broker.pem" ]]; then
        (umask 077; cat "$PKI_DIR/broker.key" "$PKI_DIR/broker.crt" >"$PKI_DIR/broker.pem.tmp")
        mv "$PKI_DIR/broker.pem.tmp" "$PKI_DIR/broker.pem"
    fi
    if ! pki_cert_ok "$PKI_DIR/postgres.crt" "$PKI_DIR/postgres.key"; then
        say "issuing the PostgreSQL server certificate ..."
        pki_issue "$PKI_DIR/postgres.key" "$PKI_DIR/postgres.crt" "paystream test postgres" \
            serverAuth "IP:127.0.0.1,DNS:localhost"
    fi
    if ! pki_cert_ok "$PKI_DIR/registry.crt" "$PKI_DIR/registry.key"; then
        say "issuing the schema registry's HTTPS certificate ..."
        pki_issue "$PKI_DIR/registry.key" "$PKI_DIR/registry.crt" "paystream test registry" \
            serverAuth "IP:127.0.0.1,DNS:localhost"
    fi
    if ! pki_cert_ok "$PKI_DIR/client.crt" "$PKI_DIR/client.key"; then
        say "issuing the client certificate (CN paystream) ..."
        pki_issue "$PKI_DIR/client.key" "$PKI_DIR/client.crt" paystream clientAuth ""
    fi

    # Generated once: it is also stored (as SCRAM credentials) in Kafka's
    # metadata, see kafka_scram_user.
    if [[ ! -s "$KAFKA_PASSWORD_FILE" ]]; then
        say "generating the SASL password of Kafka user $KAFKA_USER ($KAFKA_PASSWORD_FILE)"
        (umask 077; printf 'pw-%s' "$(openssl rand -hex 16)" >"$KAFKA_PASSWORD_FILE.tmp")
        mv "$KAFKA_PASSWORD_FILE.tmp" "$KAFKA_PASSWORD_FILE"
    fi
}

# The SASL password.  It goes into server.properties through sed and into a
# JAAS string in double quotes, so it is limited to characters that need no
# escaping in either (a generated one always is).
kafka_password() {
    local pw
    pw="$(cat "$KAFKA_PASSWORD_FILE")" || die "cannot read $KAFKA_PASSWORD_FILE"
    [[ "$pw" =~ ^[A-Za-z0-9._+-]+$ ]] \
        || die "$KAFKA_PASSWORD_FILE must hold only letters, digits and ._+- (delete it to get a new one)"
    printf '%s' "$pw"
}
