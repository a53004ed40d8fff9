# shellcheck shell=bash
# scripts/stack.d/common.sh — sourced by scripts/stack (not run on its own).
#
# Settings shared by every part (locations, ports, file names, all taken
# from the PAYSTREAM_* environment described in scripts/stack's header) and
# small helpers: messages (say/warn/die), port_open, timings, show_tail,
# apt_install and ensure_java_maven.  Needs REPO_ROOT, set by scripts/stack.

# --------------------------------------------------------------------------
# Locations and settings
# --------------------------------------------------------------------------

STACK_SRC="$REPO_ROOT/integration/stack"          # pom.xml, templates
REGISTRY_RUN="$REPO_ROOT/integration/registry/run"

STACK_DIR="${PAYSTREAM_STACK_DIR:-$HOME/.cache/paystream-stack}"
JARS_ROOT="${PAYSTREAM_JARS_DIR:-$HOME/.cache/paystream-jars}"
KAFKA_PORT="${PAYSTREAM_KAFKA_PORT:-19092}"
[[ "$KAFKA_PORT" =~ ^[0-9]+$ ]] || { echo "stack: PAYSTREAM_KAFKA_PORT must be a port number, not '$KAFKA_PORT'" >&2; exit 1; }
# Derived from the broker port, so that moving PAYSTREAM_KAFKA_PORT (a second
# stack next to the default one) moves the controller along with it.
CONTROLLER_PORT="${PAYSTREAM_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
[[ "$CONTROLLER_PORT" =~ ^[0-9]+$ ]] || { echo "stack: PAYSTREAM_KAFKA_CONTROLLER_PORT must be a port number, not '$CONTROLLER_PORT'" >&2; exit 1; }
# The same for the secure listeners (not part of the KRaft voter set, so
# unlike the controller port it can change between starts).
SECURE_PORT="${PAYSTREAM_KAFKA_SECURE_PORT:-$((KAFKA_PORT + 100))}"
[[ "$SECURE_PORT" =~ ^[0-9]+$ ]] || { echo "stack: PAYSTREAM_KAFKA_SECURE_PORT must be a port number, not '$SECURE_PORT'" >&2; exit 1; }
PG_PORT="${PAYSTREAM_PG_PORT:-15432}"
REGISTRY_PORT="${PAYSTREAM_REGISTRY_PORT:-18081}"
REGISTRY_TLS_PORT="${PAYSTREAM_REGISTRY_TLS_PORT:-$((REGISTRY_PORT + 1))}"
TIMEOUT="${PAYSTREAM_STACK_TIMEOUT:-180}"
HOST=127.0.0.1
PG_DB=paystream

# The Kafka version is read from the pom so that there is one place to bump.
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$STACK_SRC/pom.xml" | head -n1)"
[[ -n "$KAFKA_VERSION" ]] || { echo "stack: cannot read <kafka.version> from $STACK_SRC/pom.xml" >&2; exit 1; }
KAFKA_JARS="$JARS_ROOT/kafka-$KAFKA_VERSION"

# The broker count of this stack dir (see kafka_resolve_brokers, which also
# sets KAFKA_BOOTSTRAP and KAFKA_HEAP; the per-broker paths and ports are
# set by kafka_node).
KAFKA_BROKERS_FILE="$STACK_DIR/kafka.brokers"
KAFKA_BROKERS=1
KAFKA_BOOTSTRAP=""
KAFKA_SASL_SSL_BOOTSTRAP=""
KAFKA_SSL_BOOTSTRAP=""
KAFKA_HEAP=""

# The test PKI and the SASL credentials (see pki_ensure).
PKI_DIR="$STACK_DIR/pki"
PKI_LOG="$PKI_DIR/openssl.log"
KAFKA_USER=paystream
KAFKA_PASSWORD_FILE="$PKI_DIR/kafka-password"

PG_DIR="$STACK_DIR/postgres"              # owned by the postgres user
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"

ENV_FILE="$STACK_DIR/stack.env"

DATABASE_URL="postgres://postgres@$HOST:$PG_PORT/$PG_DB"
REGISTRY_URL="http://$HOST:$REGISTRY_PORT"

# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

say()  { printf 'stack: %s\n' "$*" >&2; }
warn() { printf 'stack: WARNING: %s\n' "$*" >&2; }
die()  { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1.  Uses bash's
# /dev/tcp so no extra tool (nc, ss) is needed.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Wall-clock time with microseconds (bash 5's EPOCHREALTIME, no fork), and
# the seconds between two such times with one decimal, for the fault
# injection commands' timings.
now() { local t="$EPOCHREALTIME"; echo "${t/,/.}"; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Show the last lines of a log file, indented, to explain a failure.
show_tail() {
    local f="$1"
    [[ -r "$f" ]] || return 0
    printf '  --- last lines of %s ---\n' "$f" >&2
    tail -n 25 "$f" | sed 's/^/  | /' >&2
}

# apt-get with one `apt-get update` per run of this script (package lists on
# a fresh machine are often empty or stale).  Needs root (or sudo).
APT_UPDATED=0
apt_install() {
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $*"
        sudo=(sudo)
    fi
    if [[ $APT_UPDATED -eq 0 ]]; then
        say "apt-get update ..."
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $* ..."
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Java runs Kafka, Maven fetches its jars.
ensure_java_maven() {
    local missing=()
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn  >/dev/null || missing+=(maven)
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}"
    fi
}
