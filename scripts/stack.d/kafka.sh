# shellcheck shell=bash
# scripts/stack.d/kafka.sh — sourced by scripts/stack (not run on its own).
#
# Kafka, setting up and starting: the jars (Maven), the broker count and
# per-broker layout of a stack dir (kafka_resolve_brokers, kafka_node),
# server.properties rendering, the KRaft storage format and kafka_start.
# Waiting, the SCRAM user and stopping are in kafka-control.sh.

# --------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------

# Fetch the Kafka jars (and all their dependencies) into one flat directory,
# only when that directory is not there yet.  They go to a temporary
# directory first and are moved into place at the end, so an interrupted
# download is never mistaken for a complete one.
ensure_kafka_jars() {
    [[ -f "$KAFKA_JARS/.complete" ]] && return 0
    ensure_java_maven
    mkdir -p "$JARS_ROOT"
    local tmp="$KAFKA_JARS.tmp.$$"
    rm -rf "$tmp"
    local mvn_log="$JARS_ROOT/kafka-$KAFKA_VERSION.mvn.log"
    say "downloading Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_JARS"
    say "  (first time only: ~55 MB, about a minute; Maven's output: $mvn_log) ..."
    # Maven's own output goes to a log (in -q mode it is only colour-reset
    # noise on success) and is shown when it fails.
    if ! mvn -B -Dstyle.color=never -f "$STACK_SRC/pom.xml" dependency:copy-dependencies \
            -DoutputDirectory="$tmp" -DincludeScope=runtime >"$mvn_log" 2>&1; then
        rm -rf "$tmp"
        show_tail "$mvn_log"
        die "mvn could not fetch the Kafka jars (log: $mvn_log)"
    fi
    touch "$tmp/.complete"
    rm -rf "$KAFKA_JARS"
    mv "$tmp" "$KAFKA_JARS"
    say "jars ready: $(du -sh "$KAFKA_JARS" | cut -f1) in $KAFKA_JARS"
}

# Run one of Kafka's command-line classes (tools, storage formatter) in a
# short-lived JVM: small heap, C1 only (faster start), quiet logging.
kafka_java() {
    local class="$1"; shift
    java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$STACK_SRC/log4j2-tools.properties" \
        -cp "$KAFKA_JARS/*" "$class" "$@"
}

# The broker count of this stack dir: 1 or 3.  It decides the data layout
# (kafka/ vs kafka-0/ kafka-1/ kafka-2/) and the formatted KRaft quorum, so
# it is remembered in $STACK_DIR/kafka.brokers at the first start and later
# commands (status, down, kafka-restart, ...) use it without being told.  A
# different PAYSTREAM_KAFKA_BROKERS for an existing dir is ignored with a
# warning ('reset' to change it).  A dir made before the file existed, with
# only kafka/, is a one-broker dir.
kafka_resolve_brokers() {
    local want="${PAYSTREAM_KAFKA_BROKERS:-}" stored=""
    if [[ -n "$want" && "$want" != 1 && "$want" != 3 ]]; then
        die "PAYSTREAM_KAFKA_BROKERS must be 1 or 3, not '$want'"
    fi
    if [[ -f "$KAFKA_BROKERS_FILE" ]]; then
        stored="$(cat "$KAFKA_BROKERS_FILE")"
        [[ "$stored" == 1 || "$stored" == 3 ]] || die "$KAFKA_BROKERS_FILE holds '$stored', not 1 or 3; 'reset' this stack dir"
    elif [[ -d "$STACK_DIR/kafka-0" ]]; then
        stored=3
    elif [[ -d "$STACK_DIR/kafka" ]]; then
        stored=1
    fi
    if [[ -n "$stored" ]]; then
        if [[ -n "$want" && "$want" != "$stored" ]]; then
            warn "this stack dir has $stored Kafka broker(s) (fixed when it was first started); PAYSTREAM_KAFKA_BROKERS=$want ignored ('reset' to change it)"
        fi
        KAFKA_BROKERS="$stored"
    else
        KAFKA_BROKERS="${want:-1}"
    fi

    local i addrs=() sasl=() ssl=()
    for ((i = 0; i < KAFKA_BROKERS; i++)); do
        addrs+=("$HOST:$((KAFKA_PORT + 2 * i))")
        sasl+=("$HOST:$((SECURE_PORT + 2 * i))")
        ssl+=("$HOST:$((SECURE_PORT + 1 + 2 * i))")
    done
    KAFKA_BOOTSTRAP="$(IFS=,; echo "${addrs[*]}")"
    KAFKA_SASL_SSL_BOOTSTRAP="$(IFS=,; echo "${sasl[*]}")"
    KAFKA_SSL_BOOTSTRAP="$(IFS=,; echo "${ssl[*]}")"

    # Three JVMs on a small machine: half the single broker's heap each.
    if [[ $KAFKA_BROKERS -eq 1 ]]; then
        KAFKA_HEAP="${PAYSTREAM_KAFKA_HEAP:--Xms256m -Xmx1g}"
    else
        KAFKA_HEAP="${PAYSTREAM_KAFKA_HEAP:--Xms128m -Xmx512m}"
    fi
}

# Record the broker count (see kafka_resolve_brokers) when the stack dir
# gets its first broker.
kafka_save_brokers() {
    mkdir -p "$STACK_DIR"
    [[ -f "$KAFKA_BROKERS_FILE" ]] || echo "$KAFKA_BROKERS" >"$KAFKA_BROKERS_FILE"
}

# Check a broker index given on the command line (0-based) and print it.
kafka_index() {
    local i="${1:-0}"
    if ! [[ "$i" =~ ^[0-9]+$ ]] || ((i >= KAFKA_BROKERS)); then
        die "no broker '$i' here: this stack has $KAFKA_BROKERS broker(s), numbered from 0"
    fi
    echo "$i"
}

# The directory of broker $1: kafka/ for the single broker (the layout from
# before there were three), kafka-I/ for broker I of three.
kafka_dir() {
    if [[ $KAFKA_BROKERS -eq 1 ]]; then
        echo "$STACK_DIR/kafka"
    else
        echo "$STACK_DIR/kafka-$1"
    fi
}

# The controller port of broker $1: the one recorded when its storage was
# formatted (it is part of the KRaft voter set written then), else the one
# the environment asks for.
kafka_cport() {
    local d; d="$(kafka_dir "$1")"
    if [[ -f "$d/controller.port" ]]; then
        cat "$d/controller.port"
    else
        echo $((CONTROLLER_PORT + 2 * $1))
    fi
}

# The controller.quorum.bootstrap.servers value: every controller.
kafka_controller_bootstrap() {
    local i list=()
    for ((i = 0; i < KAFKA_BROKERS; i++)); do
        list+=("$HOST:$(kafka_cport "$i")")
    done
    (IFS=,; echo "${list[*]}")
}

# Set the K_* variables for broker $1 (0-based): its name in messages, its
# files, node id and ports.  Every per-broker function below starts with
# this.
kafka_node() {
    local i="$1"
    if [[ $KAFKA_BROKERS -eq 1 ]]; then K_NAME=kafka; else K_NAME="kafka-$i"; fi
    K_DIR="$(kafka_dir "$i")"
    K_DATA="$K_DIR/data"
    K_PROPS="$K_DIR/server.properties"
    K_PID="$K_DIR/kafka.pid"
    K_LOG="$K_DIR/kafka.log"      # log4j2 server log
    K_OUT="$K_DIR/kafka.out"      # JVM stdout/stderr (crashes, OOM)
    K_ID=$((i + 1))
    K_PORT=$((KAFKA_PORT + 2 * i))
    K_CPORT="$(kafka_cport "$i")"
    K_ADDR="$HOST:$K_PORT"
    K_SASL_PORT=$((SECURE_PORT + 2 * i))    # SASL_SSL
    K_SSL_PORT=$((SECURE_PORT + 1 + 2 * i)) # SSL, client certificate required
}

# Broker $1's pid if it is alive and really is our Kafka (guards against a
# stale pid file whose number was reused by another process).
kafka_pid() {
    kafka_node "$1"
    [[ -f "$K_PID" ]] || return 1
    local pid
    pid="$(cat "$K_PID" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    echo "$pid"
}

# Render broker $1's server.properties in its directory (on every start, so
# port changes via env take effect).  One broker: integration/stack/
# server.properties.in with its @NAME@ placeholders replaced.  Three: the
# same, with the settings that server-cluster.properties.in overrides
# (node id, quorum, replication) commented out, and that file appended.
# The controller port is part of the KRaft voter set recorded when the
# storage is formatted, so it is remembered then and reused afterwards even
# if PAYSTREAM_KAFKA_CONTROLLER_PORT changes (`reset` to change it).
# The rendered file holds the SASL password (PLAIN's user list), hence 0600.
kafka_render_config() {
    kafka_node "$1"
    local wanted=$((CONTROLLER_PORT + 2 * $1))
    if [[ "$K_CPORT" != "$wanted" ]]; then
        warn "$K_NAME: controller port stays $K_CPORT (fixed when the storage was formatted; 'reset' to change it)"
    fi
    local pw; pw="$(kafka_password)"
    local base=(sed -e "s|@KAFKA_PORT@|$K_PORT|g"
                    -e "s|@CONTROLLER_PORT@|$K_CPORT|g"
                    -e "s|@SASL_SSL_PORT@|$K_SASL_PORT|g"
                    -e "s|@SSL_PORT@|$K_SSL_PORT|g"
                    -e "s|@PKI_DIR@|$PKI_DIR|g"
                    -e "s|@KAFKA_USER@|$KAFKA_USER|g"
                    -e "s|@KAFKA_PASSWORD@|$pw|g"
                    -e "s|@DATA_DIR@|$K_DATA|g"
                    "$STACK_SRC/server.properties.in")
    touch "$K_PROPS"
    chmod 600 "$K_PROPS"
    if [[ $KAFKA_BROKERS -eq 1 ]]; then
        "${base[@]}" >"$K_PROPS"
        return 0
    fi
    local over="$STACK_SRC/server-cluster.properties.in"
    {
        echo "# Rendered by scripts/stack for broker $1 (node.id $K_ID) of $KAFKA_BROKERS:"
        echo "# server.properties.in, with the settings that server-cluster.properties.in"
        echo "# overrides commented out, then server-cluster.properties.in."
        echo
        # First file: the override keys; second (stdin): the base, whose
        # lines with one of those keys become comments.
        "${base[@]}" | awk '
            FNR == NR { if ($0 ~ /^[a-z]/) { k = $0; sub(/=.*/, "", k); over[k] = 1 }; next }
            /^[a-z]/  { k = $0; sub(/=.*/, "", k)
                        if (k in over) { print "#" $0 "    <- 3 brokers: see the end of this file"; next } }
            { print }' "$over" -
        echo
        sed -e "s|@NODE_ID@|$K_ID|g" \
            -e "s|@CONTROLLER_BOOTSTRAP@|$(kafka_controller_bootstrap)|g" "$over"
    } >"$K_PROPS"
}

# Format the KRaft storage once, for all brokers together.
#
# One broker: `--standalone` makes it the only voter of a dynamic quorum
# (Kafka 4.x's way for a single combined node).
#
# Three brokers: a dynamic quorum whose three voters are given up front with
# `--initial-controllers id@host:port:directory-id,...`; every node is
# formatted with the same cluster id and the same list, and gets its own
# directory id from it.  (Kafka 4.x's way for a fixed multi-node quorum; the
# alternative, --standalone on one node plus `kafka-metadata-quorum
# add-controller` for the others, needs the cluster running in between.)
# All three are formatted in one go, before any starts, so a half-formatted
# cluster can only come from outside interference: that is an error.
#
# meta.properties in a data dir marks it formatted.
kafka_format() {
    local i formatted=0
    for ((i = 0; i < KAFKA_BROKERS; i++)); do
        kafka_node "$i"
        [[ -f "$K_DATA/meta.properties" ]] && formatted=$((formatted + 1))
    done
    [[ $formatted -eq $KAFKA_BROKERS ]] && return 0
    if [[ $formatted -gt 0 ]]; then
        die "only $formatted of $KAFKA_BROKERS Kafka brokers have formatted storage in $STACK_DIR; 'reset' this stack dir"
    fi

    local cid
    cid="$(kafka_java kafka.tools.StorageTool random-uuid)"
    local quorum=(--standalone)
    if [[ $KAFKA_BROKERS -gt 1 ]]; then
        local voters=() dirid
        for ((i = 0; i < KAFKA_BROKERS; i++)); do
            kafka_node "$i"
            dirid="$(kafka_java kafka.tools.StorageTool random-uuid)"
            voters+=("$K_ID@$HOST:$K_CPORT:$dirid")
        done
        quorum=(--initial-controllers "$(IFS=,; echo "${voters[*]}")")
    fi
    for ((i = 0; i < KAFKA_BROKERS; i++)); do
        kafka_node "$i"
        mkdir -p "$K_DATA"
        kafka_render_config "$i"
        say "formatting Kafka storage in $K_DATA (cluster id $cid) ..."
        kafka_java kafka.tools.StorageTool format "${quorum[@]}" \
            --config "$K_PROPS" --cluster-id "$cid" >>"$K_OUT" 2>&1 \
            || { show_tail "$K_OUT"; die "formatting the Kafka storage failed (log: $K_OUT)"; }
        echo >>"$K_OUT"     # the formatter's last line has no newline
        echo "$K_CPORT" >"$K_DIR/controller.port"
    done
}

# Start broker $1 in the background, unless it is already running.
# Does not wait for it: kafka_wait does, so that several brokers and
# PostgreSQL can start while the JVMs boot.
kafka_start() {
    local i="$1" pid
    kafka_node "$i"
    if pid="$(kafka_pid "$i")"; then
        say "$K_NAME already running (pid $pid)"
        return 0
    fi
    rm -f "$K_PID"
    for p in "$K_PORT" "$K_CPORT" "$K_SASL_PORT" "$K_SSL_PORT"; do
        if port_open "$p"; then
            die "port $p ($K_NAME) is already taken by another process; stop it or set PAYSTREAM_KAFKA_PORT / PAYSTREAM_KAFKA_CONTROLLER_PORT / PAYSTREAM_KAFKA_SECURE_PORT"
        fi
    done
    pki_ensure              # the keystore and the password in the config
    ensure_kafka_jars
    kafka_save_brokers
    mkdir -p "$K_DIR"
    kafka_render_config "$i"
    kafka_format
    kafka_node "$i"         # kafka_format went through all brokers

    say "starting $K_NAME $KAFKA_VERSION on $K_ADDR ..."
    # setsid: own session, so the broker survives the shell (and terminal or
    # CI step) that started it and gets no SIGHUP/SIGINT meant for it; nohup
    # for good measure.  The inner bash writes its own pid and then execs
    # java, so the pid file holds the JVM's pid.
    # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
    # shellcheck disable=SC2086  # KAFKA_HEAP is a list of flags
    setsid bash -c 'echo $$ >"$1"; shift; exec nohup "$@"' _ "$K_PID" \
        java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
            -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
            -Dkafka.logs.dir="$K_DIR" \
            -Dlog4j2.configurationFile="$STACK_SRC/log4j2-server.properties" \
            -cp "$KAFKA_JARS/*" kafka.Kafka "$K_PROPS" \
        </dev/null >>"$K_OUT" 2>&1 &
    # Give the inner bash a moment to write the pid file.
    for _ in 1 2 3 4 5 6 7 8 9 10; do [[ -s "$K_PID" ]] && break; sleep 0.2; done
}
