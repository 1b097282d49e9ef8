#!/usr/bin/env bash
# Installs (Debian packages) and starts what Imperium's tests and benchmarks talk to:
# PostgreSQL, RabbitMQ, ZooKeeper, nginx, Debian's real uWSGI with its python3, emperor and
# gevent plugins and its uwsgidecorators module, wrk, tmux.
# Idempotent: installs only what is missing and starts only what is down.
set -euo pipefail

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
[ -x /usr/bin/uwsgi-core ] || need_pkgs+=(uwsgi-core)
[ -e /usr/lib/uwsgi/plugins/python3_plugin.so ] || need_pkgs+=(uwsgi-plugin-python3)
[ -e /usr/lib/uwsgi/plugins/emperor_pg_plugin.so ] || need_pkgs+=(uwsgi-plugin-emperor-pg)
[ -e /usr/lib/uwsgi/plugins/gevent_python3_plugin.so ] || need_pkgs+=(uwsgi-plugin-gevent-python3)
# the uwsgidecorators module real uWSGI's apps import (twin tests of the spooler, mules, timers)
[ -e /usr/lib/python3/dist-packages/uwsgidecorators.py ] || need_pkgs+=(python3-uwsgidecorators)
[ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light)
have wrk || need_pkgs+=(wrk)
have ss || need_pkgs+=(iproute2)
# imperium top is tested in a real terminal
have tmux || need_pkgs+=(tmux)
have pg_ctlcluster || need_pkgs+=(postgresql)
have rabbitmqctl || need_pkgs+=(rabbitmq-server)
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || need_pkgs+=(zookeeperd)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-services: missing Debian packages: ${need_pkgs[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "install-services: installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

port_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 120); do port_up "$1" && return 0; sleep 0.5; done
  echo "install-services: $2 did not come up on port $1" >&2; return 1
}

if ! port_up 5432; then
  echo "install-services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  wait_port 5432 PostgreSQL
fi
if ! port_up 5672; then
  echo "install-services: starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  # a broker whose app was stopped (rabbitmqctl stop_app) is up but not listening
  for _ in $(seq 1 60); do port_up 5672 && break; rabbitmqctl start_app >/dev/null 2>&1 || true; sleep 1; done
  wait_port 5672 RabbitMQ
fi
if ! port_up 2181; then
  # the package does not start it here (no systemd): its own script does, with its config
  echo "install-services: starting ZooKeeper"
  setsid /usr/share/zookeeper/bin/zkServer.sh start >/dev/null
  wait_port 2181 ZooKeeper
fi
echo "install-services: PostgreSQL, RabbitMQ, ZooKeeper, nginx, uwsgi-core ready"
