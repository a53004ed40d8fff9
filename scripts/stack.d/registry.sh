# shellcheck shell=bash
# scripts/stack.d/registry.sh — sourced by scripts/stack (not run on its own).
#
# The schema registry: started through integration/registry/run (developed
# separately) when that script exists, with the stack's settings in its
# environment: registry_up, registry_down, registry_state.

# --------------------------------------------------------------------------
# Schema registry (integration/registry/run, maintained separately)
# --------------------------------------------------------------------------

registry_available() { [[ -f "$REGISTRY_RUN" && -x "$REGISTRY_RUN" ]]; }

# The registry script gets the stack's settings through the environment.
registry_run() {
    PAYSTREAM_STACK_DIR="$STACK_DIR" \
    PAYSTREAM_JARS_DIR="$JARS_ROOT" \
    PAYSTREAM_REGISTRY_PORT="$REGISTRY_PORT" \
    PAYSTREAM_REGISTRY_TLS_PORT="$REGISTRY_TLS_PORT" \
    PAYSTREAM_REGISTRY_TLS_CERT="$PKI_DIR/registry.crt" \
    PAYSTREAM_REGISTRY_TLS_KEY="$PKI_DIR/registry.key" \
    PAYSTREAM_KAFKA_BOOTSTRAP="$KAFKA_BOOTSTRAP" \
    PAYSTREAM_DATABASE_URL="$DATABASE_URL" \
        "$REGISTRY_RUN" "$@"
}

# `run up` prints the registry's base URL as the last line of its stdout
# (progress goes to stderr).  That URL (for Apicurio it ends in
# /apis/ccompat/v7, the Confluent-compatible API) is what clients need, so
# it replaces the plain http://host:port default when present.
REGISTRY_UP=0
registry_up() {
    if ! registry_available; then
        warn "$REGISTRY_RUN not found (or not executable): schema registry skipped"
        return 0
    fi
    say "starting schema registry (integration/registry/run up) ..."
    local out url
    out="$(registry_run up)" || die "integration/registry/run up failed"
    url="$(printf '%s\n' "$out" | tail -n1)"
    [[ "$url" =~ ^https?:// ]] && REGISTRY_URL="$url"
    REGISTRY_UP=1
}

registry_down() {
    registry_available || return 0
    say "stopping schema registry ..."
    registry_run down || warn "integration/registry/run down failed"
}

# `run status` prints "running|starting|stopped <url> ..." and exits 0 only
# when running.  Sets REGISTRY_STATE (and REGISTRY_URL from its output);
# called directly, not in $(...), so the variables reach the caller.
REGISTRY_STATE=stopped
registry_state() {
    if ! registry_available; then
        REGISTRY_STATE="not installed (integration/registry/run missing)"
        return 0
    fi
    local out rc=0 url
    out="$(registry_run status 2>/dev/null)" || rc=$?
    url="$(printf '%s\n' "$out" | awk 'NR == 1 {print $2}')"
    [[ "$url" =~ ^https?:// ]] && REGISTRY_URL="$url"
    if [[ $rc -eq 0 ]]; then
        REGISTRY_STATE=running
    elif [[ "$out" == starting* ]]; then
        REGISTRY_STATE=starting
    else
        REGISTRY_STATE=stopped
    fi
}
