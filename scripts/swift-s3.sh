#!/usr/bin/env bash
# swift-s3.sh start|stop|status DIR PORT
#
# The S3-compatible server of hubcache's Swift tests (test/storage-swift.test.ts). CI:
#   HUBCACHE_TEST_SWIFT_ENDPOINT=$(bash scripts/swift-s3.sh start "$DIR" 8090)
#   export HUBCACHE_TEST_SWIFT_ENDPOINT; ...; bash scripts/swift-s3.sh stop "$DIR" 8090
#
# Single-node OpenStack Swift (Debian bookworm packages) with the s3api and
# tempauth middlewares, bound to 127.0.0.1 only, all state under DIR.
#   S3 endpoint : http://127.0.0.1:PORT   (path-style, region us-east-1)
#   credentials : access key "test:tester", secret "testing"
# Backend ports: object PORT+1, container PORT+2, account PORT+3, memcached PORT+4.
# No systemd, no /etc/swift changes. Every process is started with setsid so it
# has its own process group; stop kills exactly those groups (pid files in DIR/run).
set -euo pipefail
# eventlet otherwise imports dnspython+httpx (greendns): ~0.7 s extra per python process
export EVENTLET_NO_GREENDNS=yes

usage() { echo "usage: $0 start|stop|status DIR PORT" >&2; exit 2; }
[ $# -ge 2 ] || usage
CMD=$1
DIR=$(mkdir -p "$2" && cd "$2" && pwd)
PORT=${3:-8090}
OBJ_PORT=$((PORT + 1)); CONT_PORT=$((PORT + 2)); ACCT_PORT=$((PORT + 3)); MC_PORT=$((PORT + 4))
ETC=$DIR/etc; RUN=$DIR/run; LOG=$DIR/log; DEV=$DIR/node
SERVICES=(memcached account container object proxy)
RUNAS=$(id -un)

log() { echo "swift-s3: $*" >&2; }

install_pkgs() {
  local missing=0
  for b in swift-proxy-server swift-object-server swift-container-server \
           swift-account-server swift-ring-builder memcached curl; do
    command -v "$b" >/dev/null 2>&1 || missing=1
  done
  [ $missing = 0 ] && return 0
  log "installing swift + memcached from apt"
  local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  # policy-rc.d 101 stops the package scripts from starting the system memcached
  # (harmless without systemd, but be explicit); removed afterwards if we made it.
  local made_policy=0
  if [ "$(id -u)" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  local t0=$SECONDS
  # apt lists may be empty on a fresh machine
  if ! apt-cache show swift-proxy >/dev/null 2>&1; then $sudo apt-get update -qq; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    swift swift-proxy swift-account swift-container swift-object memcached curl >"$DIR/apt-install.log" 2>&1 \
    || { [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; tail -20 "$DIR/apt-install.log" >&2; return 1; }
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "installed in $((SECONDS - t0))s"
}

alive() { local f=$RUN/$1.pid; [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

healthy() { curl -fsS -m 2 "http://127.0.0.1:$PORT/healthcheck" >/dev/null 2>&1; }

write_configs() {
  mkdir -p "$ETC" "$RUN" "$LOG" "$DEV/sdb1"
  cat > "$ETC/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = hubcache-test
swift_hash_path_prefix = hubcache-test
[storage-policy:0]
name = gold
default = yes
EOF
  local t p
  for t in object:$OBJ_PORT container:$CONT_PORT account:$ACCT_PORT; do
    local n=${t%%:*}; p=${t##*:}
    cat > "$ETC/$n-server.conf" <<EOF
[DEFAULT]
devices = $DEV
mount_check = false
disable_fallocate = true
bind_ip = 127.0.0.1
bind_port = $p
workers = 0
user = $RUNAS
swift_dir = $ETC
log_level = WARNING
[pipeline:main]
pipeline = $n-server
[app:$n-server]
use = egg:swift#$n
[$n-replicator]
[$n-updater]
[$n-auditor]
EOF
  done
  cat > "$ETC/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PORT
workers = 0
user = $RUNAS
swift_dir = $ETC
log_level = WARNING
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MC_PORT
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
EOF
  # rings embed the backend ports: rebuild only when they change
  local stamp="$OBJ_PORT $CONT_PORT $ACCT_PORT"
  if [ "$(cat "$ETC/rings.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -s "$ETC/object.ring.gz" ]; then
    rm -f "$ETC"/*.builder "$ETC"/*.ring.gz; rm -rf "$ETC/backups"
    # one python process instead of 9 swift-ring-builder calls (~0.5 s each)
    /usr/bin/python3 - "$ETC" "$OBJ_PORT" "$CONT_PORT" "$ACCT_PORT" <<'PY' || { log "ring build failed"; return 1; }
import sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for name, port in zip(('object', 'container', 'account'), map(int, sys.argv[2:5])):
    b = RingBuilder(10, 1, 1)  # part_power 10, 1 replica, min_part_hours 1
    b.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port,
               'device': 'sdb1', 'weight': 1})
    b.rebalance()
    b.get_ring().save('%s/%s.ring.gz' % (etc, name))
    b.save('%s/%s.builder' % (etc, name))
PY
    echo "$stamp" > "$ETC/rings.stamp"
  fi
}

spawn() { # name cmd...
  local name=$1; shift
  setsid "$@" </dev/null >"$LOG/$name.log" 2>&1 &
  echo $! > "$RUN/$name.pid"
}

stop_all() {
  local s pid any=0
  for s in proxy object container account memcached; do
    [ -s "$RUN/$s.pid" ] || continue
    pid=$(cat "$RUN/$s.pid")
    # only the process group that we created (pgid == pid thanks to setsid)
    if kill -0 "$pid" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; any=1; fi
  done
  for _ in $(seq 50); do
    local left=0
    for s in "${SERVICES[@]}"; do alive "$s" && left=1; done
    [ $left = 0 ] && break; sleep 0.1
  done
  for s in "${SERVICES[@]}"; do
    if alive "$s"; then pid=$(cat "$RUN/$s.pid"); kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$RUN/$s.pid"
  done
  [ $any = 1 ] && log "stopped" || true
}

start() {
  if healthy && alive proxy; then echo "http://127.0.0.1:$PORT"; return 0; fi
  install_pkgs
  stop_all   # clean up stale / partial instances of this DIR
  if curl -s -m 1 -o /dev/null "http://127.0.0.1:$PORT/"; then log "port $PORT is in use by someone else"; return 1; fi
  write_configs
  local t0; t0=$(date +%s.%N)
  spawn memcached memcached -u "$RUNAS" -l 127.0.0.1 -p "$MC_PORT" -U 0 -m 64
  spawn account   swift-account-server   "$ETC/account-server.conf"   -v
  spawn container swift-container-server "$ETC/container-server.conf" -v
  spawn object    swift-object-server    "$ETC/object-server.conf"    -v
  spawn proxy     swift-proxy-server     "$ETC/proxy-server.conf"     -v
  # healthcheck answers once the proxy is up; then wait until the backends answer too
  local i
  for i in $(seq 300); do
    for s in "${SERVICES[@]}"; do
      alive "$s" || { log "$s died:"; tail -20 "$LOG/$s.log" >&2; stop_all; return 1; }
    done
    if healthy && curl -s -m 2 -o /dev/null "http://127.0.0.1:$ACCT_PORT/" \
       && curl -s -m 2 -o /dev/null "http://127.0.0.1:$CONT_PORT/" \
       && curl -s -m 2 -o /dev/null "http://127.0.0.1:$OBJ_PORT/"; then
      log "up in $(awk -v a="$t0" -v b="$(date +%s.%N)" "BEGIN{printf \"%.2f\", b-a}")s (state in $DIR)"
      echo "http://127.0.0.1:$PORT"
      return 0
    fi
    sleep 0.1
  done
  log "timed out waiting for swift"; for s in "${SERVICES[@]}"; do tail -5 "$LOG/$s.log" >&2; done
  stop_all; return 1
}

case $CMD in
  start) start ;;
  stop) stop_all ;;
  status) if healthy && alive proxy; then echo "http://127.0.0.1:$PORT"; else echo "down"; exit 1; fi ;;
  *) usage ;;
esac
