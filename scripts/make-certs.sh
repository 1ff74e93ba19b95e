#!/usr/bin/env bash
# A home certificate authority and a server certificate for stt-server's TLS, in one command (openssl):
#
#   scripts/make-certs.sh                              # this machine: its hostname, localhost, 127.0.0.1
#   scripts/make-certs.sh jetson jetson.lan 192.168.1.20
#   scripts/make-certs.sh --dir /etc/stt-bridge/tls jetson.lan
#
# Writes into DIR (default /etc/stt-bridge/tls as root, ./stt-certs otherwise):
#   ca.pem, ca.key           the CA: made once and kept (run again to re-issue the server certificate
#                            for other names; every worker that trusts ca.pem goes on trusting it)
#   server.pem, server.key   the server's certificate (signed by the CA) and key: made again each run
# Names and addresses become the certificate's subjectAltNames: a client must reach the server by one of
# them (WS_URL=wss://<one of them>:9000/stt). Then prints the variables to set on each side.
set -euo pipefail
umask 077

PROG=$(basename "$0")
CA_DAYS=3650     # ten years: the CA is what every client is told to trust, so it should rarely change
SERVER_DAYS=825  # the longest validity Apple's clients accept for a server certificate
SERVICE_GROUP=stt

usage() { sed -n '2,13s/^# \{0,1\}//p' "$0"; exit "${1:-0}"; }

if [ "$(id -u)" -eq 0 ]; then DIR=/etc/stt-bridge/tls; else DIR=./stt-certs; fi
names=()
while [ $# -gt 0 ]; do
    case "$1" in
        -d|--dir) [ $# -ge 2 ] || usage 2; DIR=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) echo "$PROG: unknown option $1" >&2; usage 2 ;;
        *) names+=("$1"); shift ;;
    esac
done
command -v openssl >/dev/null || { echo "$PROG: openssl is not installed (apt install openssl)" >&2; exit 1; }
if [ ${#names[@]} -eq 0 ]; then
    names=("$(hostname)" localhost 127.0.0.1)
fi

# subjectAltName: IP: for addresses (v4 and v6), DNS: for names; duplicates dropped
san=""
seen=" "
for n in "${names[@]}"; do
    case "$seen" in *" $n "*) continue ;; esac
    seen="$seen$n "
    if [[ $n =~ ^[0-9]+(\.[0-9]+){3}$ || $n == *:* ]]; then entry="IP:$n"; else entry="DNS:$n"; fi
    san="${san:+$san,}$entry"
done

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
cd "$DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -s ca.pem ] && [ -s ca.key ]; then
    echo "$PROG: keeping the CA in $DIR/ca.pem"
else
    cat >"$work/ca.ext" <<'EOF'
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -new -key ca.key -subj "/CN=stt-bridge home CA $(hostname) $(date +%Y-%m-%d)" -out "$work/ca.csr"
    openssl x509 -req -in "$work/ca.csr" -signkey ca.key -days "$CA_DAYS" -sha256 -extfile "$work/ca.ext" \
        -out ca.pem 2>/dev/null
    chmod 600 ca.key
    chmod 644 ca.pem
    echo "$PROG: made a new CA in $DIR/ca.pem"
fi

cat >"$work/server.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = $san
EOF
openssl ecparam -name prime256v1 -genkey -noout -out "$work/server.key"
openssl req -new -key "$work/server.key" -subj "/CN=${names[0]}" -out "$work/server.csr"
openssl x509 -req -in "$work/server.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
    -days "$SERVER_DAYS" -sha256 -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null
openssl verify -CAfile ca.pem "$work/server.pem" >/dev/null
# replaced together, so that a server restarted meanwhile never reads a key of another certificate
mv -f "$work/server.key" server.key
mv -f "$work/server.pem" server.pem
chmod 644 server.pem
chmod 600 server.key
if [ "$(id -u)" -eq 0 ] && getent group "$SERVICE_GROUP" >/dev/null; then
    # the server runs as the stt user: it reads its key through the group, nobody else can
    chgrp "$SERVICE_GROUP" server.key
    chmod 640 server.key
fi
chmod 755 "$DIR"

host=${names[0]}
cat <<EOF
$PROG: server certificate for $san in $DIR/server.pem (valid $SERVER_DAYS days)

On the server (server.env):
  TLS_CERT_FILE=$DIR/server.pem
  TLS_KEY_FILE=$DIR/server.key

On each worker (worker.env), with $DIR/ca.pem copied to it:
  WS_URL=wss://$host:9000/stt
  WS_CA_FILE=/etc/stt-bridge/tls/ca.pem

Browsers (the live page at https://$host:9000/) trust the server once ca.pem is imported as an
authority. The Wyoming listener is TLS too: Home Assistant's Wyoming integration speaks plain TCP only,
so for it set WYOMING_TLS=0 (and keep that port on a trusted network). Keep ca.key private: whoever has
it can make certificates every worker trusts.
EOF
