#!/usr/bin/env bash
# The GRPO queue's Redis on the head node, reachable from every node of the cluster. (Without
# services.redis_url a job starts a private Redis bound to 127.0.0.1: one machine only.)
# Idempotent: a running server is kept. Writes the URL for the job config to ~/.aurora/redis_url:
#   services.redis_url='file:~/.aurora/redis_url' (read on the head; the password stays off command lines)
# appendfsync always: a record Redis has acknowledged is on disk, so a killed Redis loses none
# (with the default everysec the fault suite lost acknowledged records to a SIGKILL).
set -euo pipefail
port=${AURORA_REDIS_PORT:-6390}
dir=~/.aurora/redis
mkdir -p "$dir"
chmod 700 ~/.aurora
# The head's first address, or AURORA_REDIS_BIND; refused unless private as Python's ipaddress
# defines it (RFC 1918, loopback, link-local, IPv6 unique-local, the reserved test networks):
# Redis must not face the internet, password or not.
ip=${AURORA_REDIS_BIND:-$(hostname -I | awk '{print $1}')}
if ! python3 -c 'import ipaddress, sys; sys.exit(not ipaddress.ip_address(sys.argv[1]).is_private)' "$ip" 2>/dev/null
then
  echo "start_redis.sh: $ip is not a private address; refusing to open Redis on it (set AURORA_REDIS_BIND" \
       "to the cluster's private address)" >&2
  exit 1
fi
if [ ! -s "$dir/redis.conf" ]; then
  (umask 077; cat > "$dir/redis.conf" <<CONF
bind $ip
port $port
requirepass $(openssl rand -hex 24)
dir $dir
appendonly yes
appendfsync always
logfile $dir/redis.log
pidfile $dir/redis.pid
daemonize yes
CONF
  )
fi
password=$(awk '$1 == "requirepass" {print $2}' "$dir/redis.conf")
answers() { REDISCLI_AUTH=$password redis-cli -h "$ip" -p "$port" ping >/dev/null 2>&1; }
if ! answers; then
  redis-server "$dir/redis.conf"
  # The URL is written only once the server answers: a job started right after this script
  # must find it serving.
  tries=0
  until answers; do
    tries=$((tries + 1))
    if [ "$tries" -ge 50 ]; then
      echo "start_redis.sh: redis-server did not answer on $ip:$port within 10 s; see $dir/redis.log" >&2
      exit 1
    fi
    sleep 0.2
  done
fi
(umask 077; echo "redis://:$password@$ip:$port/0" > ~/.aurora/redis_url)
