#!/bin/bash
# See the incident: `network stop` sets net.ipv4.ip_forward=0 on a Docker host, and then
# `docker build` downloads nothing. Runs the same steps without fwdguard and with it, side by
# side, with a real Docker engine, in private namespaces: nothing on this host is touched.
#
#   sudo examples/docker-incident.sh [PATH/TO/fwdguard]
#
# Needs root, Debian's docker.io and busybox-static, python3, iproute2 (what .ci/run installs).
# Without a path it uses target/release/fwdguard, building it first if it is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
world=$here/../tests/e2e/docker/world.sh

if [ "${1:-}" != --inside ]; then
  [ "$(id -u)" = 0 ] || { echo "run as root: the demo makes private namespaces" >&2; exit 1; }
  bin=${1:-$here/../target/release/fwdguard}
  if [ -z "${1:-}" ] && [ ! -x "$bin" ]; then
    (cd "$here/.." && cargo build --release --locked --quiet)
  fi
  [ -x "$bin" ] || { echo "no fwdguard binary at $bin" >&2; exit 1; }
  bin=$(readlink -f "$bin")
  knobs() { cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding | tr '\n' ' '; }
  before=$(knobs)
  dir=$(mktemp -d /tmp/fwdguard-demo.XXXXXX)
  trap 'rm -rf "$dir"' EXIT
  rc=0
  unshare --net --mount --pid --fork --mount-proc --propagation private -- \
    bash "$0" --inside "$dir" "$bin" "$(readlink /proc/self/ns/net)" || rc=$?
  [ "$(knobs)" = "$before" ] || { echo "the host's forwarding knobs changed: $before -> $(knobs)" >&2; exit 1; }
  exit "$rc"
fi

# Inside: PID 1 of the world's PID namespace; everything started here dies with it.
DIR=$2 BIN=$3 HOST_NETNS=$4
TAG=fwdguard-demo-${DIR##*.}
# shellcheck source=../tests/e2e/docker/world.sh
. "$world"
trap world_down EXIT
trap 'exit 130' INT TERM
echo "Setting up: an \"internet\" serving $URL, a Docker host routed to it,"
echo "a private dockerd ($("$DOCKERD" --version | cut -d, -f1)) and a busybox image. The host is not touched."
world_init
world_dockerd
payload=$(cat "$DIR/www/file")

# One side of the comparison: network stop, then a container and two builds. Fills
# run_$1, and_$1, or_$1, warn_$1 with what a user would see.
steps() {
  local side=$1 out run
  world_sysctl "$HOST_NETNS" net.ipv4.ip_forward=0
  echo "  \$ sysctl -w net.ipv4.ip_forward=0    # what 'systemctl restart network' runs"
  out=$DIR/$side
  if world_docker run --init --rm --pull never "$IMAGE" timeout 2 wget -q -O - "$URL" \
    >"$out.run" 2>"$out.run.err" && [ "$(cat "$out.run")" = "$payload" ]; then
    run=downloaded
  else
    run="download FAILED"
  fi
  printf -v "run_$side" '%s' "$run"
  echo "  \$ docker run busybox wget $URL"
  echo "      -> $run"
  local kind
  for kind in and or; do
    mkdir -p "$DIR/ctx-$side-$kind"
    local step="RUN timeout 2 wget -q -O /file $URL && echo downloaded"
    [ "$kind" = and ] || step="RUN timeout 2 wget -q -O /file $URL || true"
    printf 'FROM %s\n%s\n' "$IMAGE" "$step" >"$DIR/ctx-$side-$kind/Dockerfile"
    local result
    # --no-cache: the layer built without the file would be reused otherwise.
    if world_docker build --no-cache -t "demo:$side-$kind" "$DIR/ctx-$side-$kind" >"$out.$kind" 2>&1; then
      if [ "$(world_docker run --rm "demo:$side-$kind" cat /file 2>/dev/null)" = "$payload" ]; then
        result="built, /file in the image"
      else
        result="built, /file MISSING from the image"
      fi
    else
      result="build FAILED ($(grep -o 'returned a non-zero code: [0-9]*' "$out.$kind"))"
    fi
    printf -v "${kind}_$side" '%s' "$result"
    echo "  \$ docker build    # ${step}"
    echo "      -> $result"
  done
  local run_warning build_warning
  run_warning=$(grep -m1 'IPv4 forwarding is disabled' "$out.run.err" || true)
  build_warning=$(cat "$out.and" "$out.or" | grep -m1 'IPv4 forwarding is disabled' || true)
  printf -v "warn_$side" '%s' "$run_warning$build_warning"
  echo "  Docker's warning, docker run (stderr):   ${run_warning:-(none)}"
  echo "  Docker's warning, docker build (stdout): ${build_warning:-(none)}"
}

echo
echo "== Without fwdguard"
steps without

echo
echo "== With fwdguard (action restore)"
printf '[[guard]]\nkey = "net.ipv4.conf.all.forwarding"\nvalue = "1"\naction = "restore"\n' \
  >"$DIR/fwdguard.toml"
"$BIN" run -c "$DIR/fwdguard.toml" 2>"$DIR/fwdguard.log" &
# Forwarding is still 0 from the first part: fwdguard fixes it before it is ready.
for i in $(seq 100); do
  [ "$(cat /proc/sys/net/ipv4/conf/all/forwarding)" = 1 ] && break
  [ "$i" != 100 ] || { cat "$DIR/fwdguard.log"; exit 1; }
  sleep 0.05
done
echo "  \$ fwdguard run -c fwdguard.toml &    # forwarding is still 0 from above"
steps with
sleep 0.1
echo "  fwdguard said:"
grep -v ' INFO ' "$DIR/fwdguard.log" | sed 's/^[0-9T:.Z-]* */    /; s/ message_id=.*//'

echo
printf '%-32s %-46s %s\n' "" "without fwdguard" "with fwdguard"
printf '%-32s %-46s %s\n' "docker run ... wget" "$run_without" "$run_with"
printf '%-32s %-46s %s\n' "docker build, RUN wget && ..." "$and_without" "$and_with"
printf '%-32s %-46s %s\n' "docker build, RUN wget || true" "$or_without" "$or_with"
printf '%-32s %-46s %s\n' "Docker warned" \
  "$([ -z "$warn_without" ] && echo no || echo yes)" \
  "$([ -z "$warn_with" ] && echo no || echo yes)"
echo
ok="built, /file in the image"
if [ "$and_with" = "$ok" ] && [ "$or_with" = "$ok" ] && [ "$run_with" = downloaded ] &&
  [ -z "$warn_with" ] && { [ "$and_without" != "$ok" ] || [ "$or_without" != "$ok" ]; }; then
  echo "Verdict: without fwdguard the build failed or shipped an image without its file; with fwdguard every build got its file."
else
  echo "Verdict: unexpected results; see above."
  exit 1
fi
