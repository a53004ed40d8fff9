#!/bin/sh
# Test PKI for docker-compose.yml (local use only): a CA, the broker's certificate for
# the SASL_SSL listener, and the SASL password of user `paystream`. Runs in the `pki`
# service (alpine) and writes to the `pki` volume; existing files are kept, so the
# password and certificates survive restarts. Production brings its own PKI and secrets.
set -eu
apk add --no-cache openssl >/dev/null
cd /pki
if [ ! -f ca.pem ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=paystream compose CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
fi
if [ ! -f broker.pem ]; then
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kafka" -keyout broker.key -out broker.csr 2>/dev/null
  printf 'subjectAltName=DNS:kafka,DNS:localhost,IP:127.0.0.1\n' > broker.ext
  openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile broker.ext -out broker.crt 2>/dev/null
  # Kafka's PEM keystore: the unencrypted PKCS#8 key, then the certificate.
  openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.pk8
  cat broker.pk8 broker.crt > broker.pem
  rm -f broker.csr broker.ext broker.pk8
fi
if [ ! -f kafka-password ]; then
  printf 'pw-%s' "$(openssl rand -hex 16)" > kafka-password
fi
chmod 0644 ca.pem broker.pem kafka-password
echo "pki: CA, broker certificate and SASL password ready in the pki volume"
