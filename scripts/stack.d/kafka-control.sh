# shellcheck shell=bash
# scripts/stack.d/kafka-control.sh — sourced by scripts/stack (not run on its own).
#
# Kafka, running brokers: waiting until they answer (kafka_wait) and until
# replicas are in sync (kafka_wait_isr), the SASL user's SCRAM credentials,
# the warning about servers started without the secure endpoints
# (check_secure, which looks at PostgreSQL too), stopping (kafka_term/
# kafka_reap, kafka_stop, kafka_stop_all) and kafka_state.  Setting up and
# starting are in kafka.sh.

# Die with the logs of broker $1 if its JVM is gone.
kafka_check_alive() {
    kafka_pid "$1" >/dev/null && return 0
    kafka_node "$1"
    show_tail "$K_OUT"; show_tail "$K_LOG"
    die "$K_NAME exited during start-up (log: $K_LOG, $K_OUT)"
}

# Wait until the brokers given by index (all when none are given) answer:
# first their ports, then a real request: BrokerApiVersionsCommand, sent
# to these brokers only, must list each of them as registered and unfenced
# (which needs a broker that has joined the KRaft cluster and caught up).
# Fails with a pointer to the log.
kafka_wait() {
    local idx=("$@") i n=0 addrs=()
    if [[ ${#idx[@]} -eq 0 ]]; then
        for ((i = 0; i < KAFKA_BROKERS; i++)); do idx+=("$i"); done
    fi
    for i in "${idx[@]}"; do kafka_node "$i"; addrs+=("$K_ADDR"); done
    local boot; boot="$(IFS=,; echo "${addrs[*]}")"
    local deadline=$((SECONDS + TIMEOUT))
    say "waiting for kafka on $boot (timeout ${TIMEOUT}s) ..."
    for i in "${idx[@]}"; do
        kafka_node "$i"
        until port_open "$K_PORT"; do
            kafka_check_alive "$i"
            kafka_node "$i"
            ((SECONDS < deadline)) || { show_tail "$K_LOG"; die "$K_NAME did not open port $K_PORT within ${TIMEOUT}s (log: $K_LOG)"; }
            n=$((n + 1)); ((n % 20 == 0)) && say "  still waiting for the port of $K_NAME ($((SECONDS - deadline + TIMEOUT))s) ..."
            sleep 0.5
        done
    done
    local out missing
    while :; do
        out="$(kafka_java org.apache.kafka.tools.BrokerApiVersionsCommand \
                --bootstrap-server "$boot" 2>/dev/null)" || out=""
        missing=""
        for i in "${idx[@]}"; do
            kafka_node "$i"
            grep -Eq "^[^ ]+ \(id: $K_ID rack: .*isFenced: false\)" <<<"$out" || missing+=" $K_NAME"
        done
        [[ -z "$missing" ]] && break
        for i in "${idx[@]}"; do kafka_check_alive "$i"; done
        if ((SECONDS >= deadline)); then
            for i in "${idx[@]}"; do kafka_node "$i"; show_tail "$K_LOG"; done
            die "not ready after ${TIMEOUT}s:$missing (ports open, but not answering as unfenced brokers)"
        fi
        say "  port open, broker not ready yet:$missing ..."
        sleep 1
    done
    say "kafka is up"
}

# With several brokers, wait until no partition is under-replicated, i.e.
# a broker that was away is back in the ISR of all its partitions (then one
# more broker may go away without acks=all producers failing).  One broker:
# nothing to wait for.  PAYSTREAM_KAFKA_WAIT_ISR=0 skips it.
# Sets ISR_WAITED=1 when it did wait.
ISR_WAITED=0
kafka_wait_isr() {
    ISR_WAITED=0
    [[ $KAFKA_BROKERS -gt 1 && "${PAYSTREAM_KAFKA_WAIT_ISR:-1}" != 0 ]] || return 0
    ISR_WAITED=1
    local deadline=$((SECONDS + TIMEOUT)) out
    say "waiting until all replicas are in sync (no under-replicated partitions) ..."
    while :; do
        if out="$(kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
                --describe --under-replicated-partitions 2>&1)" && [[ -z "$out" ]]; then
            break
        fi
        if ((SECONDS >= deadline)); then
            printf '%s\n' "$out" | head -n 10 | sed 's/^/  | /' >&2
            die "partitions still under-replicated after ${TIMEOUT}s"
        fi
        sleep 1
    done
    say "all replicas in sync"
}

# The SCRAM credentials (SCRAM-SHA-256 and -512) of the SASL user, set on
# every `up`: they live in the cluster metadata, not in server.properties,
# so a dir formatted before they existed gets them too, and after `reset`
# (new password, new metadata) they are set again.  Setting them again is
# harmless (new salt, same password).  Sent through the PLAINTEXT listener,
# which needs no credentials.  One request per mechanism: Kafka 4.3 refuses
# both for one user in a single request ("A user credential cannot be
# altered twice in the same request").  The password goes to the tool in a
# 0600 properties file (`--add-config-file`, where a value is `password=..`
# without the brackets --add-config wants), not on its command line, and is
# masked in the output shown on failure.
kafka_scram_user() {
    local pw cfg out mech
    pw="$(kafka_password)"
    cfg="$PKI_DIR/.scram.$$.properties"
    for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
        (umask 077; printf '%s=password=%s\n' "$mech" "$pw" >"$cfg")
        if ! out="$(kafka_java kafka.admin.ConfigCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
                --alter --entity-type users --entity-name "$KAFKA_USER" --add-config-file "$cfg" 2>&1)"; then
            rm -f "$cfg"
            printf '%s\n' "${out//"$pw"/<password>}" | tail -n 15 | sed 's/^/  | /' >&2
            die "could not set the $mech credentials of Kafka user $KAFKA_USER"
        fi
    done
    rm -f "$cfg"
    say "SCRAM-SHA-256/512 credentials of Kafka user $KAFKA_USER set"
}

# A broker or PostgreSQL that was already running when `up` was called keeps
# the configuration it was started with: one started by an older version
# of this script has no secure endpoints.  Not restarted behind the tests'
# back; a warning says how.
check_secure() {
    local i
    for ((i = 0; i < KAFKA_BROKERS; i++)); do
        kafka_node "$i"
        if ! port_open "$K_SASL_PORT" || ! port_open "$K_SSL_PORT"; then
            warn "$K_NAME does not listen on $HOST:$K_SASL_PORT (SASL_SSL) / $K_SSL_PORT (SSL): started before they were configured, or with another PAYSTREAM_KAFKA_SECURE_PORT? 'scripts/stack kafka-restart $i' restarts it with them"
        fi
    done
    if [[ "$(pg_ssl)" != on ]]; then
        warn "postgres runs without TLS (started before scripts/stack enabled it): 'scripts/stack pg-restart' restarts it with TLS"
    fi
}

# SIGTERM lets Kafka shut down cleanly (controlled shutdown: leadership
# moves to the other brokers first; flush; close the metadata log, which
# avoids a long log recovery at the next start).  kafka_term sends it to
# broker $1 and sets TERM_PID (empty when it was not running); kafka_reap
# waits for that pid to exit, and only if it hangs past 60 s falls back to
# SIGKILL.  Two halves so that `down` can signal all brokers at once.
TERM_PID=""
kafka_term() {
    TERM_PID=""
    local pid
    if ! pid="$(kafka_pid "$1")"; then
        kafka_node "$1"
        rm -f "$K_PID"
        say "$K_NAME not running"
        return 0
    fi
    kafka_node "$1"
    say "stopping $K_NAME (pid $pid) ..."
    kill -TERM "$pid" 2>/dev/null || true
    TERM_PID="$pid"
}

kafka_reap() {
    local pid="$2" i
    [[ -n "$pid" ]] || return 0
    kafka_node "$1"
    # Polled every 0.2 s: the fault injection commands report this time.
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        ((i > 0 && i % 50 == 0)) && say "  $K_NAME still shutting down ($((i / 5))s) ..."
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$K_NAME did not stop within 60s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$K_PID"
    say "$K_NAME stopped"
}

kafka_stop() {
    kafka_term "$1"
    kafka_reap "$1" "$TERM_PID"
}

# All brokers at once: stopped one after the other, the last ones would
# wait on a controller quorum that is already gone.
kafka_stop_all() {
    local i pids=()
    for ((i = 0; i < KAFKA_BROKERS; i++)); do
        kafka_term "$i"
        pids[i]="$TERM_PID"
    done
    for ((i = 0; i < KAFKA_BROKERS; i++)); do
        kafka_reap "$i" "${pids[i]}"
    done
}

kafka_state() {
    if kafka_pid "$1" >/dev/null; then
        if port_open "$K_PORT"; then echo running; else echo "starting (pid alive, port closed)"; fi
    else
        echo stopped
    fi
}
