#!/bin/bash
# The Docker incident's world, for tests/e2e/docker and examples/docker-incident.sh.
#
#   "internet" netns                     "Docker host": the world's own net, mount and PID namespace
#   198.51.100.1, python3 http.server  <-veth->  198.51.100.2, default route via .1
#   serving $DIR/www/file                        private dockerd (+ its containerd), busybox image
#
# `init` runs as PID 1 of `unshare --net --mount --pid --fork --mount-proc --propagation private`,
# so every process of the world dies with it. The other commands run inside the world (nsenter
# into PID 1's namespaces, or a script that sourced this file in the world). Nothing here may
# touch the host: `init` refuses to run in the network namespace it is told is the host's.
#
#   world.sh init DIR TAG HOST_NETNS   set up, touch DIR/ready, wait for EOF on stdin, tear down
#   world.sh dockerd DIR [FLAGS...]    start dockerd (and import the image once); wait until it answers
#   world.sh dockerd-stop DIR          stop dockerd and wait until it is gone
#   world.sh network-stop HOST_NETNS   what `network stop` does to forwarding: sysctl -w net.ipv4.ip_forward=0
#   world.sh sysctl HOST_NETNS KEY=VALUE
#   world.sh storm HOST_NETNS CGROUP SECONDS   writes of 0 to ip_forward from inside CGROUP
#   world.sh network-restarts DIR HOST_NETNS N   N restarts of network.service as on a CentOS
#                                      host with a hardening drop-in: 0.5 s each
#
# Paths: Debian's docker.io puts its client in /usr/bin/docker. Another client earlier in PATH
# (a Docker CE 28 CLI in /usr/local/bin, say) would speak a newer API and default to BuildKit,
# which bookworm's engine does not have: always the client that came with this dockerd.
set -euo pipefail

DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-/usr/bin/docker}
BUSYBOX=${BUSYBOX:-/bin/busybox}
IMAGE=busybox:e2e
INTERNET=198.51.100.1
HOST_ADDR=198.51.100.2
URL=http://$INTERNET/file

die() { echo "world: $*" >&2; exit 1; }

# Refuses to go on in the host's network namespace (given as `net:[INODE]`).
not_host_netns() {
  local here
  here=$(readlink /proc/self/ns/net)
  [ -n "$1" ] && [ "$here" != "$1" ] || die "in the host's network namespace $here; refusing"
}

# A sysctl write, only after proving this is not the host's network namespace.
world_sysctl() {
  not_host_netns "$1"
  sysctl -q -w "$2"
}

# The docker client that belongs to this dockerd, talking to this world's socket.
world_docker() {
  DOCKER_CONFIG=$DIR/client DOCKER_BUILDKIT=0 "$DOCKER" -H "unix://$DIR/docker.sock" "$@"
}

# N restarts of network.service, 0.5 s each, on a host whose sysctl drop-in says
# ip_forward=0: `network stop` runs `sysctl -w net.ipv4.ip_forward=0`, and `network start`
# applies the sysctl files again 200 ms later, which writes the 0 once more.
world_network_restarts() {
  not_host_netns "$1"
  local i
  echo "net.ipv4.ip_forward = 0" >"$DIR/99-hardening.conf"
  for i in $(seq "$2"); do
    sleep 0.3
    sysctl -q -w net.ipv4.ip_forward=0
    sleep 0.2
    sysctl -q -p "$DIR/99-hardening.conf"
  done
}

# Writes 0 to net.ipv4.ip_forward as fast as a shell can for SECONDS, from inside the cgroup2
# directory CGROUP (where a BPF hook may be attached). Prints how many writes it made.
world_storm() {
  not_host_netns "$1"
  echo 0 >"$2/cgroup.procs"
  local end n=0 i batch
  batch=$(seq 100)
  end=$(($(date +%s) + $3))
  while [ "$(date +%s)" -lt "$end" ]; do
    for i in $batch; do echo 0 >/proc/sys/net/ipv4/ip_forward || true; done
    n=$((n + 100))
  done
  echo "$n"
}

world_init() {
  not_host_netns "$HOST_NETNS"
  echo "$TAG" >"$DIR/tag"
  echo "$HOST_NETNS" >"$DIR/host-netns"
  mkdir -p "$DIR/data" "$DIR/exec" "$DIR/client" "$DIR/www" "$DIR/rootfs/bin"

  # dockerd writes fixed paths besides its roots (/run/docker/libnetwork, /etc/docker), and
  # `ip netns` keeps its handles in /run/netns: private tmpfs mounts for all of them.
  local resolv
  resolv=$(readlink -f /etc/resolv.conf)
  mount -t tmpfs -o mode=0755 fwdguard-e2e /run
  mount -t tmpfs -o mode=0755 fwdguard-e2e /etc/docker
  # Containers copy the host's resolv.conf: give them one that names only the fake internet.
  echo "nameserver $INTERNET" >"$DIR/resolv.conf"
  mkdir -p "$(dirname "$resolv")"
  [ -e "$resolv" ] || : >"$resolv"
  mount --bind "$DIR/resolv.conf" "$resolv"
  # overlay2 wants an upper layer it supports: a tmpfs, whatever the host's /tmp is.
  mount -t tmpfs -o mode=0710 fwdguard-e2e "$DIR/data"

  ip link set lo up
  ip netns add internet
  ip link add fg-host type veth peer name fg-inet netns internet
  ip addr add "$HOST_ADDR/24" dev fg-host
  ip link set fg-host up
  ip -n internet link set lo up
  ip -n internet addr add "$INTERNET/24" dev fg-inet
  ip -n internet link set fg-inet up
  ip route add default via "$INTERNET"

  echo "fwdguard e2e payload $TAG" >"$DIR/www/file"
  ip netns exec internet /usr/bin/python3 -m http.server --bind "$INTERNET" --directory "$DIR/www" 80 \
    >"$DIR/http.log" 2>&1 &
  local i
  for i in $(seq 100); do
    timeout 1 "$BUSYBOX" wget -q -O /dev/null "$URL" 2>/dev/null && break
    [ "$i" = 100 ] && die "the http server on $INTERNET did not answer: $(cat "$DIR/http.log")"
    sleep 0.1
  done

  # A rootfs of busybox and its applets, for `docker import` (no registry here).
  cp "$BUSYBOX" "$DIR/rootfs/bin/busybox"
  for i in $("$BUSYBOX" --list); do
    [ "$i" = busybox ] || ln -s busybox "$DIR/rootfs/bin/$i"
  done
  mkdir -p "$DIR/rootfs/tmp" "$DIR/rootfs/etc" "$DIR/rootfs/proc" "$DIR/rootfs/sys" "$DIR/rootfs/dev"

  touch "$DIR/ready"
}

world_dockerd() {
  # dockerd writes forwarding as it starts (--ip-forward=true): never in the host's namespace.
  not_host_netns "$(cat "$DIR/host-netns")"
  [ ! -e "$DIR/dockerd.pid" ] || die "dockerd is already running"
  echo '{}' >"$DIR/daemon.json"
  echo "=== dockerd $*" >>"$DIR/dockerd.log"
  # A relative cgroup parent: the containers' cgroups go under our own, named after this world,
  # and are removed at teardown (cgroup directories are not namespaced). The cgroupfs driver
  # always: on a cgroup2 host dockerd would pick systemd's, which wants a slice and D-Bus
  # under the /run this world hides.
  "$DOCKERD" --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$DIR/dockerd.pid" \
    -H "unix://$DIR/docker.sock" --config-file "$DIR/daemon.json" \
    --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "$(cat "$DIR/tag")" \
    --storage-driver overlay2 "$@" >>"$DIR/dockerd.log" 2>&1 &
  local pid=$! i
  for i in $(seq 300); do
    world_docker version >/dev/null 2>&1 && break
    [ -d "/proc/$pid" ] && [ "$i" != 300 ] || die "dockerd did not come up; its log:
$(cat "$DIR/dockerd.log")"
    sleep 0.1
  done
  local versions
  versions=$(world_docker version --format '{{.Client.Version}} {{.Server.Version}}')
  [ "${versions% *}" = "${versions#* }" ] || die "client and engine differ: $versions"
  if ! world_docker image inspect "$IMAGE" >/dev/null 2>&1; then
    tar -C "$DIR/rootfs" -c . | world_docker import - "$IMAGE" >/dev/null
  fi
}

# A process that is gone, or a zombie nobody has reaped yet (PID 1 reaps at teardown).
gone() {
  [ ! -e "/proc/$1/stat" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" = Z ]
}

world_dockerd_stop() {
  [ -e "$DIR/dockerd.pid" ] || return 0
  local pid i
  pid=$(cat "$DIR/dockerd.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 200); do
    gone "$pid" && break
    sleep 0.1
  done
  gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
  rm -f "$DIR/dockerd.pid"
}

# Removes the cgroup directories the containers got (deepest first).
world_cgroups_remove() {
  local tag
  tag=$(cat "$DIR/tag" 2>/dev/null) || return 0
  find /sys/fs/cgroup -mindepth 1 -type d -name "$tag" -prune -print 2>/dev/null |
    while read -r d; do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
}

world_down() {
  world_dockerd_stop
  # Containers whose shims outlived dockerd, and the http server.
  pkill -TERM -P 1 2>/dev/null || true
  ip netns del internet 2>/dev/null || true
  world_cgroups_remove
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  cmd=${1:?usage: world.sh init|dockerd|dockerd-stop|network-stop|network-restarts|storm|sysctl ...}
  shift
  case $cmd in
    init)
      DIR=$1 TAG=$2 HOST_NETNS=$3
      world_init
      # The test holds our stdin: its end (or the test's) is the signal to tear down.
      read -r _ || true
      world_down
      ;;
    dockerd) DIR=$1; shift; world_dockerd "$@" ;;
    dockerd-stop) DIR=$1; world_dockerd_stop ;;
    network-stop) world_sysctl "$1" net.ipv4.ip_forward=0 ;;
    sysctl) world_sysctl "$1" "$2" ;;
    network-restarts) DIR=$1; world_network_restarts "$2" "$3" ;;
    storm) world_storm "$1" "$2" "$3" ;;
    *) die "unknown command $cmd" ;;
  esac
fi
