#!/usr/bin/env bash
# A Sieve cluster on this machine's loopback (SCALE.md): 3 nats-server 2.15.1 (JetStream,
# sync_interval: always), 3 shards holding every partition twice, and a router serving the
# public API. Every process is started in the background, its PID written under the state
# folder, and stopped by that PID.
#
#   deploy/cluster/local.sh up [-- ROUTER_FLAGS...]   start (the router on 127.0.0.1:7700)
#   deploy/cluster/local.sh add-shard NAME PARTITIONS  start one more shard (e.g. shard-4 0,5):
#                                                     the router finds it, no restart
#   deploy/cluster/local.sh down                      stop everything, keep the data
#   deploy/cluster/local.sh status                    which processes run
#   deploy/cluster/local.sh clean                     stop and delete the data
#
# Settings (environment):
#   SIEVE_CLUSTER_DIR   state: configs, data, logs, PIDs (default <repo>/target/local-cluster)
#   SIEVE_SERVER_BIN    the sieve-server binary (default: built with cargo build --release)
#   SIEVE_ROUTER_LISTEN the router's address (default 127.0.0.1:7700)
#   SIEVE_PARTITIONS    partitions of the log, fixed when the cluster is created (default 16)
#   SIEVE_NATS_PORT     first of the NATS client ports (default 4222; cluster ports +2000)
#   SIEVE_MODEL_TIER    flags of a model tier to start too (e.g. "--models-dir ../shared/models
#                       --models org/a,org/b"); the router then embeds and reranks through it
# Flags after `--` go to the router, e.g. `-- --demo --models-dir ../shared/models`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${SIEVE_CLUSTER_DIR:-$repo/target/local-cluster}"
listen="${SIEVE_ROUTER_LISTEN:-127.0.0.1:7700}"
partitions="${SIEVE_PARTITIONS:-16}"
nats_port="${SIEVE_NATS_PORT:-4222}"
shards=3

log() { printf 'local cluster: %s\n' "$*" >&2; }

# A process that exited but is not reaped yet (a zombie) counts as stopped.
alive() {
  local pid=$1 stat
  kill -0 "$pid" 2>/dev/null || return 1
  [[ -r "/proc/$pid/stat" ]] || return 0
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  [[ "${stat##*) }" != Z* ]]
}

running() { [[ -f "$1" ]] && alive "$(cat "$1")"; }

# Waits (at most $3 seconds) until the log $2 of the process with PID file $1 says it listens;
# prints the address.
await_listening() {
  local pidfile=$1 logfile=$2 limit=$3 waited=0 addr
  while (( waited < limit * 10 )); do
    addr="$(sed -n 's/^sieve-server listening on //p' "$logfile" 2>/dev/null | tail -n 1)"
    if [[ -n "$addr" ]]; then
      echo "$addr"
      return 0
    fi
    if ! running "$pidfile"; then
      log "$(basename "$logfile" .log) exited; its log ($logfile) ends with:"
      tail -n 20 "$logfile" >&2
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  log "$(basename "$logfile" .log) did not listen within ${limit} s (log: $logfile)"
  return 1
}

# Starts "$@" in the background with stdout+stderr to logs/$name.log and its PID in pids/.
spawn() {
  local name=$1
  shift
  if running "$state/pids/$name"; then
    log "$name already runs (PID $(cat "$state/pids/$name"))"
    return 0
  fi
  : >"$state/logs/$name.log"
  nohup "$@" >>"$state/logs/$name.log" 2>&1 &
  echo $! >"$state/pids/$name"
}

# The partitions shard $1 (0-based) holds: each partition on shards p mod 3 and (p + 1) mod 3.
held_by() {
  local s=$1 p list=()
  for ((p = 0; p < partitions; p++)); do
    if (( p % shards == s || (p + 1) % shards == s )); then list+=("$p"); fi
  done
  (IFS=,; echo "${list[*]}")
}

# The sieve-server binary: SIEVE_SERVER_BIN, else built here.
server_bin() {
  if [[ -n "${SIEVE_SERVER_BIN:-}" ]]; then
    echo "$SIEVE_SERVER_BIN"
    return
  fi
  log "building sieve-server (cargo build --release --bin sieve-server)"
  (cd "$repo" && cargo build --release --quiet --bin sieve-server)
  echo "$repo/target/release/sieve-server"
}

nats_urls() { echo "nats://127.0.0.1:$nats_port,nats://127.0.0.1:$((nats_port + 1)),nats://127.0.0.1:$((nats_port + 2))"; }

# Starts shard $2 of binary $1 holding partitions $3; it records its address in the cluster's
# shard status bucket, where the router finds it.
spawn_shard() {
  spawn "$2" "$1" --role shard --shard-name "$2" --shard-partitions "$3" \
    --partitions "$partitions" --nats "$(nats_urls)" --listen 127.0.0.1:0 \
    --data-dir "$state/shards/$2"
}

add_shard() {
  local name=${1:-} held=${2:-} bin addr
  if [[ ! "$name" =~ ^[A-Za-z0-9_-]+$ || -z "$held" ]]; then
    log "usage: $0 add-shard NAME PARTITIONS (e.g. shard-4 0,5)"
    return 2
  fi
  if ! running "$state/pids/nats-1"; then
    log "the cluster is not up (start it with: $0 up)"
    return 1
  fi
  partitions="$(cat "$state/partitions")"
  bin="$(server_bin)"
  spawn_shard "$bin" "$name" "$held"
  addr="$(await_listening "$state/pids/$name" "$state/logs/$name.log" 120)"
  log "$name on $addr joins with partitions $held (the cluster's assignment decides after: sieve cluster shards)"
}

# Every process's name, in the order they stop: the router first (no new writes), then the
# model tier, the shards (those added too), then the log.
names() {
  local pidfile shard_names=()
  for pidfile in "$state"/pids/*; do
    [[ -e "$pidfile" ]] || continue
    case "$(basename "$pidfile")" in
      router | model | nats-1 | nats-2 | nats-3) ;;
      *) shard_names+=("$(basename "$pidfile")") ;;
    esac
  done
  echo router model shard-1 shard-2 shard-3 "${shard_names[@]}" nats-1 nats-2 nats-3
}

up() {
  local bin
  bin="$(server_bin)"
  local nats
  nats="$(bash "$here/nats-server.sh")"
  mkdir -p "$state"/{pids,logs,nats,shards}
  local urls=() routes=() i
  for i in 0 1 2; do
    urls+=("nats://127.0.0.1:$((nats_port + i))")
    routes+=("nats-route://127.0.0.1:$((nats_port + 2000 + i))")
  done
  for i in 0 1 2; do
    local name="nats-$((i + 1))"
    cat >"$state/nats/$name.conf" <<EOF
server_name: $name
listen: 127.0.0.1:$((nats_port + i))
jetstream {
  store_dir: "$state/nats/$name"
  sync_interval: always
}
cluster {
  name: sieve-local
  listen: 127.0.0.1:$((nats_port + 2000 + i))
  routes: [$(IFS=,; echo "${routes[*]}")]
}
EOF
    spawn "$name" "$nats" -c "$state/nats/$name.conf"
  done
  log "NATS: $(IFS=,; echo "${urls[*]}")"
  # An added shard counts partitions as the cluster does.
  echo "$partitions" >"$state/partitions"
  for i in 0 1 2; do
    spawn_shard "$bin" "shard-$((i + 1))" "$(held_by "$i")"
  done
  for i in 0 1 2; do
    local name="shard-$((i + 1))" addr
    addr="$(await_listening "$state/pids/$name" "$state/logs/$name.log" 120)"
    log "$name on $addr joins with partitions $(held_by "$i")"
  done
  local tier=()
  if [[ -n "${SIEVE_MODEL_TIER:-}" ]]; then
    # Word splitting is wanted: the variable holds flags.
    # shellcheck disable=SC2086
    spawn model "$bin" --role model --listen 127.0.0.1:0 $SIEVE_MODEL_TIER
    local model_addr
    model_addr="$(await_listening "$state/pids/model" "$state/logs/model.log" 180)"
    log "model tier on $model_addr"
    tier=(--models-url "http://$model_addr")
  fi
  # The router finds the shards in the cluster's shard status bucket, where each records its
  # address: a shard started later (same --nats, --partitions) joins without a router restart.
  spawn router "$bin" --role router --nats "$(nats_urls)" --partitions "$partitions" \
    --listen "$listen" "${tier[@]}" "$@"
  local addr
  addr="$(await_listening "$state/pids/router" "$state/logs/router.log" 180)"
  log "router on $addr (logs: $state/logs; stop with: $0 down)"
  echo "http://$addr"
}

down() {
  local pidfile name pid waited
  # shellcheck disable=SC2046
  for name in $(names); do
    pidfile="$state/pids/$name"
    if running "$pidfile"; then
      pid="$(cat "$pidfile")"
      kill -TERM "$pid"
      waited=0
      # A few seconds each (in-flight requests finish, stores flush).
      while alive "$pid" && (( waited < 400 )); do
        sleep 0.1
        waited=$((waited + 1))
      done
      if alive "$pid"; then
        log "$name (PID $pid) did not stop in 40 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
      log "stopped $name (PID $pid)"
    fi
    rm -f "$pidfile"
  done
}

status() {
  local name pidfile
  # shellcheck disable=SC2046
  for name in $(names); do
    pidfile="$state/pids/$name"
    if running "$pidfile"; then
      echo "$name running (PID $(cat "$pidfile"))"
    else
      echo "$name stopped"
    fi
  done
}

command="${1:-}"
shift || true
[[ "${1:-}" == "--" ]] && shift
case "$command" in
  up) up "$@" ;;
  add-shard) add_shard "$@" ;;
  down) down ;;
  status) status ;;
  clean) down && rm -rf "$state" && log "deleted $state" ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
