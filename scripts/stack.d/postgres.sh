# shellcheck shell=bash
# scripts/stack.d/postgres.sh — sourced by scripts/stack (not run on its own).
#
# PostgreSQL: a private cluster from Debian's packages (installed when
# missing), run as the postgres user when root, with TLS from the test PKI:
# pg_up (initdb, configuration, start, database), pg_down, pg_ssl, pg_state.

# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

# The PostgreSQL binaries: those matching an existing cluster's major
# version, else the newest installed.
pg_bin() {
    if [[ -f "$PG_DATA/PG_VERSION" ]]; then
        local v; v="$(cat "$PG_DATA/PG_VERSION")"
        if [[ -x "/usr/lib/postgresql/$v/bin/postgres" ]]; then
            echo "/usr/lib/postgresql/$v/bin"; return 0
        fi
    fi
    local newest
    # shellcheck disable=SC2012  # plain version-numbered directory names
    newest="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    [[ -n "$newest" && -x "$newest/initdb" ]] || return 1
    echo "$newest"
}

# PostgreSQL refuses to run as root: as root, run its commands as the
# `postgres` user; as anyone else, as oneself.
pg_as() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

ensure_postgres_installed() {
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        apt_install postgresql
    fi
    PG_BIN="$(pg_bin)" || die "PostgreSQL binaries not found under /usr/lib/postgresql after installing"
}

# As root, the postgres user must be able to reach $PG_DIR.  With the default
# under /root (mode 700) it cannot, so each directory on the way that blocks
# it gets search-only ("x") permission: an ACL for the postgres user alone
# when setfacl exists, else o+x.  Neither lets anyone list or read /root.
# Walked top-down, because a directory can only be tested once its parents
# are passable.
pg_grant_traverse() {
    [[ $EUID -eq 0 ]] || return 0
    runuser -u postgres -- test -x "$PG_DIR" 2>/dev/null && return 0
    local d="" part
    local -a parts
    IFS=/ read -r -a parts <<<"${PG_DIR#/}"
    for part in "${parts[@]}"; do
        d="$d/$part"
        runuser -u postgres -- test -x "$d" 2>/dev/null && continue
        if command -v setfacl >/dev/null; then
            say "letting the postgres user traverse $d (setfacl -m u:postgres:x)"
            setfacl -m u:postgres:x "$d"
        else
            say "letting other users traverse (not list) $d (chmod o+x), so postgres can reach $PG_DIR"
            chmod o+x "$d"
        fi
    done
    runuser -u postgres -- test -x "$PG_DIR" \
        || die "the postgres user cannot reach $PG_DIR; set PAYSTREAM_STACK_DIR to a directory it can reach"
}

pg_running() {
    [[ -f "$PG_DATA/PG_VERSION" ]] || return 1
    local bin; bin="$(pg_bin)" || return 1
    pg_as "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_up() {
    ensure_postgres_installed
    mkdir -p "$STACK_DIR"
    if [[ $EUID -eq 0 ]]; then
        install -d -o postgres -g postgres -m 700 "$PG_DIR"
        pg_grant_traverse
    else
        install -d -m 700 "$PG_DIR"
    fi
    # PostgreSQL only reads a key file owned by its own user (or root) with
    # no group/other access; as root it runs as `postgres` (see pg_as), so
    # the key is handed over to that user.  It can reach pki/: the stack dir
    # is on the path pg_grant_traverse opened, and pki/ itself is 755.
    pki_ensure
    chmod 600 "$PKI_DIR/postgres.key"
    [[ $EUID -ne 0 ]] || chown postgres:postgres "$PKI_DIR/postgres.key"

    # A private cluster, created once.  trust auth on 127.0.0.1 only: a
    # throw-away local stack, no passwords to plumb through tests.
    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
        say "creating PostgreSQL cluster in $PG_DATA ..."
        pg_as "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 \
            --locale=C.UTF-8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
            || { show_tail "$PG_DIR/initdb.log"; die "initdb failed (log: $PG_DIR/initdb.log)"; }
        # Appended settings win over the defaults above them.  fsync=off:
        # this data is disposable and tests write a lot; durability against
        # an OS crash is not worth the slowdown.  (synchronous_commit stays
        # on, so a killed *server* loses no acknowledged commit.)
        pg_as tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# ---- paystream local stack (scripts/stack) ----
listen_addresses = '$HOST'
unix_socket_directories = '$PG_DIR'
fsync = off
full_page_writes = off
max_connections = 200
log_min_messages = warning
EOF
    fi

    if pg_running; then
        say "postgres already running"
    else
        if port_open "$PG_PORT"; then
            die "port $PG_PORT is already taken by another process; stop it or set PAYSTREAM_PG_PORT"
        fi
        say "starting postgres on $HOST:$PG_PORT ..."
        # The port is given at each start (not written in the config) so
        # PAYSTREAM_PG_PORT can change between runs; so is TLS, so that
        # clusters created before it was added get it too.  TLS is offered,
        # not required: pg_hba.conf's `host` lines (trust) match TCP with
        # and without it, so plain connections keep working.  pg_ctl hands
        # -o to a shell, hence the quoted paths.  setsid: see kafka_start.
        # track_commit_timestamp: the benchmark (integration/bench) measures latency to
        # the commit of each ledger row with pg_xact_commit_timestamp().
        local opts="-p $PG_PORT -c ssl=on -c track_commit_timestamp=on"
        opts+=" -c ssl_cert_file='$PKI_DIR/postgres.crt' -c ssl_key_file='$PKI_DIR/postgres.key'"
        if ! pg_as setsid -w "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" \
                -o "$opts" -w -t "$TIMEOUT" start >/dev/null; then
            show_tail "$PG_LOG"
            die "postgres did not start (log: $PG_LOG)"
        fi
    fi

    # Ready means: accepts a connection on the TCP port we advertise.
    local deadline=$((SECONDS + TIMEOUT))
    until "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT"; do
        ((SECONDS < deadline)) || { show_tail "$PG_LOG"; die "postgres does not answer on $HOST:$PG_PORT (log: $PG_LOG)"; }
        sleep 0.5
    done

    if [[ "$("$PG_BIN/psql" -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
        say "creating database $PG_DB"
        "$PG_BIN/createdb" -h "$HOST" -p "$PG_PORT" -U postgres "$PG_DB"
    fi
    say "postgres is up"
}

pg_down() {
    if ! pg_running; then
        say "postgres not running"
        return 0
    fi
    say "stopping postgres ..."
    # fast: roll back open transactions and disconnect clients, then a clean
    # shutdown checkpoint (no crash recovery at the next start).
    pg_as "$(pg_bin)/pg_ctl" -D "$PG_DATA" stop -m fast -w -t 60 >/dev/null
    say "postgres stopped"
}

# The server's `ssl` setting ("on"/"off"), empty when it does not answer.
pg_ssl() {
    local bin; bin="$(pg_bin)" || return 0
    "$bin/psql" -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -tAXc 'SHOW ssl' 2>/dev/null || true
}

pg_state() {
    if pg_running; then
        if port_open "$PG_PORT"; then echo running; else echo "running (not on port $PG_PORT)"; fi
    else
        echo stopped
    fi
}
