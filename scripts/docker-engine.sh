#!/usr/bin/env bash
# The test suite's own Docker engine: start | stop | status | env
#
# Runs Debian's dockerd with its own socket, data root, exec root, pid file,
# config file and containerd, all under $OFELIA_TEST_ENGINE_DIR
# (default /var/lib/ofelia-test-engine), so it never touches an engine the
# machine already runs (/var/run/docker.sock) and tests may stop, restart or
# put it in a swarm freely.
#
#   scripts/docker-engine.sh start    # install if needed, start, build the test image
#   eval "$(scripts/docker-engine.sh env)"
#   scripts/docker-engine.sh status   # exit 0 when running, 1 when not
#   scripts/docker-engine.sh stop     # remove containers, then stop
#
# Environment: OFELIA_TEST_ENGINE_DIR, OFELIA_TEST_ENGINE_TIMEOUT (seconds to
# wait for the engine, default 180), OFELIA_TEST_ENGINE_STORAGE_DRIVER (force
# overlay2 or vfs).
set -euo pipefail

DIR="${OFELIA_TEST_ENGINE_DIR:-/var/lib/ofelia-test-engine}"
SOCK="$DIR/docker.sock"
DOCKERD_PID="$DIR/docker.pid"
DOCKERD_LOG="$DIR/dockerd.log"
CTR_DIR="$DIR/containerd"
CTR_SOCK="$CTR_DIR/containerd.sock"
CTR_PID="$DIR/containerd.pid"
CTR_LOG="$DIR/containerd.log"
LOCK="$DIR/engine.lock"
RUNTIME_NAME="ofelia-runc"
RUNTIME="$DIR/bin/runc-nocap"
IMAGE_REPO="ofelia-test/busybox"
IMAGE_TAG="latest"
# dockerd removes a stale sandbox record at start for every container created with
# the default network mode since its last start (about 0.1 s each with
# --bridge=none): after a long session a start can take a minute.
TIMEOUT="${OFELIA_TEST_ENGINE_TIMEOUT:-180}"
PACKAGES=(docker.io busybox-static curl jq)

# Progress goes to stderr so `env` (and command substitution) only sees the export line.
say() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- processes ----------------------------------------------------------------

# alive PIDFILE NAME: the pid file names a live process called NAME.
# A zombie (state Z) is dead: a daemon that was just killed lingers as one.
alive() {
    local pidfile=$1 name=$2 pid state comm
    # The daemon removes its pid file as it exits: a read may race with that.
    pid=$(tr -dc '0-9' 2>/dev/null <"$pidfile") || return 1
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name" ]] || return 1
    running "$pid"
}

pid_of() { tr -dc '0-9' 2>/dev/null <"$1" || true; }

# running PID: the process exists and is not a zombie (whatever its name: right
# after a launch it may still be setsid or nohup, about to exec the daemon).
running() {
    local state
    state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# find_daemon NAME MARK: the pid of a live NAME whose command line contains MARK
# (a path of ours), for a pid file that was lost or overwritten. Never matches
# another engine's daemon: MARK is under $DIR.
find_daemon() {
    local name=$1 mark=$2 f pid
    for f in /proc/[0-9]*/comm; do
        pid=${f#/proc/}
        pid=${pid%/comm}
        [[ $(cat "$f" 2>/dev/null) == "$name" ]] || continue
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$mark" || continue
        running "$pid" && { echo "$pid"; return 0; }
    done
    return 1
}

# clean_pidfile PIDFILE NAME MARK: remove a pid file unless it names a live NAME;
# rewrite it when our daemon runs under another pid.
clean_pidfile() {
    local pidfile=$1 name=$2 mark=$3 pid
    if [[ -e $pidfile ]] && ! alive "$pidfile" "$name"; then
        say "removing stale $name pid file $pidfile"
        rm -f "$pidfile"
    fi
    if [[ ! -e $pidfile ]] && pid=$(find_daemon "$name" "$mark"); then
        say "found $name running as pid $pid"
        echo "$pid" >"$pidfile"
    fi
}

# stop_process PIDFILE NAME SECONDS: SIGTERM, wait, SIGKILL as a last resort.
stop_process() {
    local pidfile=$1 name=$2 wait_s=$3 mark=$4 pid i
    clean_pidfile "$pidfile" "$name" "$mark"
    if ! alive "$pidfile" "$name"; then
        rm -f "$pidfile"
        return 0
    fi
    pid=$(pid_of "$pidfile")
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
        alive "$pidfile" "$name" || break
        sleep 0.1
    done
    if alive "$pidfile" "$name"; then
        say "$name did not stop within ${wait_s}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$pidfile"
}

api() { curl -sf --max-time "${API_TIMEOUT:-5}" --unix-socket "$SOCK" "$@"; }

engine_answers() { [[ -S $SOCK ]] && [[ $(api http://d/_ping 2>/dev/null) == OK ]]; }

# --- install ------------------------------------------------------------------

ensure_packages() {
    local missing=() pkg status
    for pkg in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$DIR/apt.log" 2>&1 || { tail -n 20 "$DIR/apt.log" >&2; die "apt-get update failed"; }
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >>"$DIR/apt.log" 2>&1 \
        || { tail -n 20 "$DIR/apt.log" >&2; die "apt-get install failed"; }
}

# runc wrapper: this sandbox's capability bounding set lacks CAP_SYS_RESOURCE, so
# runc fails to apply it to privileged containers and `exec --privileged`
# ("unable to apply caps"). Drop it from the bundle's config.json and the exec's
# --process JSON, then hand over to the real runc.
write_runtime() {
    mkdir -p "$DIR/bin"
    local tmp="$RUNTIME.tmp.$$"
    cat >"$tmp" <<'EOF'
#!/bin/sh
strip_cap() {
    [ -f "$1" ] && grep -q CAP_SYS_RESOURCE "$1" || return 0
    jq -c 'walk(if type == "array" then map(select(. != "CAP_SYS_RESOURCE")) else . end)' "$1" >"$1.nocap" \
        && mv "$1.nocap" "$1"
}
prev=""
for arg in "$@"; do
    case "$prev" in
        --bundle|-b) strip_cap "$arg/config.json" ;;
        --process|-p) strip_cap "$arg" ;;
    esac
    case "$arg" in
        --bundle=*) strip_cap "${arg#--bundle=}/config.json" ;;
        --process=*) strip_cap "${arg#--process=}" ;;
    esac
    prev="$arg"
done
exec /usr/bin/runc "$@"
EOF
    chmod 755 "$tmp"
    mv -f "$tmp" "$RUNTIME"
}

# --- start --------------------------------------------------------------------

start_containerd() {
    clean_pidfile "$CTR_PID" containerd "$CTR_DIR/config.toml"
    if alive "$CTR_PID" containerd && [[ -S $CTR_SOCK ]]; then
        return 0
    fi
    # Our own containerd: dockerd would otherwise adopt any /run/containerd/containerd.sock
    # it finds (the system's, even a stale file) and two engines would share it.
    mkdir -p "$CTR_DIR"
    cat >"$CTR_DIR/config.toml" <<EOF
version = 2
root = "$CTR_DIR/root"
state = "$CTR_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTR_DIR/opt"
EOF
    say "starting containerd (log $CTR_LOG)"
    # 9>&-: the daemons must not inherit (and hold) the lock.
    setsid nohup containerd --config "$CTR_DIR/config.toml" >>"$CTR_LOG" 2>&1 </dev/null 9>&- &
    local launched=$! i
    echo "$launched" >"$CTR_PID"
    for ((i = 0; i < TIMEOUT * 10; i++)); do
        [[ -S $CTR_SOCK ]] && return 0
        running "$launched" || break
        sleep 0.1
    done
    tail -n 20 "$CTR_LOG" >&2 || true
    die "containerd did not create $CTR_SOCK (log $CTR_LOG)"
}

# After dockerd was killed its containers may still run (their shims outlive it);
# a restarting dockerd would give each 10 s to stop. Kill them now, as a restart
# without live-restore would anyway.
kill_orphan_tasks() {
    command -v ctr >/dev/null || return 0
    local tasks task
    tasks=$(ctr --address "$CTR_SOCK" --namespace moby tasks list --quiet 2>/dev/null) || return 0
    [[ -n $tasks ]] || return 0
    say "killing $(wc -w <<<"$tasks") container(s) left running by the previous dockerd"
    for task in $tasks; do
        ctr --address "$CTR_SOCK" --namespace moby tasks kill --signal SIGKILL --all "$task" >/dev/null 2>&1 || true
    done
}

# launch_dockerd DRIVER: start dockerd; succeed when it answers /_ping.
launch_dockerd() {
    local driver=$1 i
    [[ -f $DIR/daemon.json ]] || echo '{}' >"$DIR/daemon.json"
    say "starting dockerd (storage $driver, socket $SOCK, log $DOCKERD_LOG)"
    echo "--- $(date -Is) start (storage $driver)" >>"$DOCKERD_LOG"
    local log_start
    log_start=$(($(stat -c %s "$DOCKERD_LOG") + 1))
    # --config-file: never read the machine's /etc/docker/daemon.json.
    setsid nohup dockerd \
        --host "unix://$SOCK" \
        --data-root "$DIR/data" \
        --exec-root "$DIR/exec" \
        --pidfile "$DOCKERD_PID" \
        --config-file "$DIR/daemon.json" \
        --containerd "$CTR_SOCK" \
        --storage-driver "$driver" \
        --exec-opt native.cgroupdriver=cgroupfs \
        --iptables=false --ip6tables=false --ip-forward=false --bridge=none \
        --add-runtime "$RUNTIME_NAME=$RUNTIME" --default-runtime "$RUNTIME_NAME" \
        >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    local launched=$! stale started=$SECONDS
    local next_note=$((SECONDS + 10))
    while ((SECONDS - started < TIMEOUT)); do
        if engine_answers; then
            echo "$driver" >"$DIR/storage-driver"
            return 0
        fi
        if ((SECONDS >= next_note)); then
            next_note=$((SECONDS + 10))
            stale=$(tail -c +"$log_start" "$DOCKERD_LOG" | grep -c 'Removing stale sandbox' || true)
            say "still waiting for dockerd after $((SECONDS - started)) s (stale sandboxes removed so far: $stale)"
        fi
        # Exited early (bad storage driver, ...): no point waiting for the timeout.
        running "$launched" || return 1
        sleep 0.1
    done
    say "dockerd did not answer on $SOCK within ${TIMEOUT}s; last lines of $DOCKERD_LOG:"
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    kill -TERM "$launched" 2>/dev/null || true
    exit 1
}

start_dockerd() {
    clean_pidfile "$DOCKERD_PID" dockerd "$DOCKERD_PID"
    if alive "$DOCKERD_PID" dockerd; then
        # Running but not answering yet (another start is mid-way, or it is stuck).
        local i
        for ((i = 0; i < TIMEOUT * 10; i++)); do
            engine_answers && return 0
            alive "$DOCKERD_PID" dockerd || break
            sleep 0.1
        done
        engine_answers && return 0
        die "dockerd (pid $(pid_of "$DOCKERD_PID")) runs but does not answer on $SOCK; run '$0 stop' first"
    fi
    kill_orphan_tasks
    local drivers
    if [[ -n ${OFELIA_TEST_ENGINE_STORAGE_DRIVER:-} ]]; then
        drivers=("$OFELIA_TEST_ENGINE_STORAGE_DRIVER")
    elif [[ -s $DIR/storage-driver ]]; then
        drivers=("$(cat "$DIR/storage-driver")")  # keep what this data root was made with
    else
        drivers=(overlay2 vfs)
    fi
    local driver
    for driver in "${drivers[@]}"; do
        launch_dockerd "$driver" && return 0
        say "dockerd exited with storage driver $driver"
        rm -f "$DOCKERD_PID"
    done
    say "last lines of $DOCKERD_LOG:"
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    die "dockerd failed to start"
}

# A registry-free image: static busybox, its applets, root and nobody.
ensure_image() {
    if api "http://d/images/$IMAGE_REPO:$IMAGE_TAG/json" >/dev/null 2>&1; then
        return 0
    fi
    say "building $IMAGE_REPO:$IMAGE_TAG from busybox-static"
    local root applet
    root=$(mktemp -d)
    mkdir -p "$root"/{bin,etc,root,tmp,home,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/sh' >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
    # The import's progress stream reports errors inside a 200 answer: check by inspecting after.
    tar --numeric-owner --owner=0 --group=0 -C "$root" -c . \
        | API_TIMEOUT=120 api -X POST -H 'Content-Type: application/x-tar' --data-binary @- \
            "http://d/images/create?fromSrc=-&repo=${IMAGE_REPO//\//%2F}&tag=$IMAGE_TAG&changes=CMD%20%5B%22%2Fbin%2Fsh%22%5D" \
            >"$DIR/import.log" 2>&1 || true
    rm -rf "$root"
    api "http://d/images/$IMAGE_REPO:$IMAGE_TAG/json" >/dev/null 2>&1 \
        || { cat "$DIR/import.log" >&2; die "could not import $IMAGE_REPO:$IMAGE_TAG"; }
}

lock() {
    mkdir -p "$DIR"
    exec 9>"$LOCK"
    if ! flock -n 9; then
        say "waiting for another $(basename "$0") call (lock $LOCK)"
        flock -w 600 9 || die "timed out waiting for lock $LOCK"
    fi
}

# dockerd bind-mounts its data root onto itself and leaves the mount behind when
# it dies or fails to start; drop it once nothing uses it so $DIR can be removed.
release_data_root() {
    if mountpoint -q "$DIR/data" 2>/dev/null && ! alive "$DOCKERD_PID" dockerd; then
        umount -R "$DIR/data" 2>/dev/null || umount -l "$DIR/data" 2>/dev/null || true
    fi
}

# A failed start leaves nothing running behind it.
on_start_failure() {
    local rc=$?
    ((rc == 0)) && return 0
    if ! engine_answers; then
        stop_process "$DOCKERD_PID" dockerd 10 "$DOCKERD_PID"
        stop_process "$CTR_PID" containerd 10 "$CTR_DIR/config.toml"
        release_data_root
    fi
    exit "$rc"
}

cmd_start() {
    lock
    ensure_packages
    trap on_start_failure EXIT
    if engine_answers; then
        clean_pidfile "$CTR_PID" containerd "$CTR_DIR/config.toml"
        clean_pidfile "$DOCKERD_PID" dockerd "$DOCKERD_PID"
        say "already running (socket $SOCK)"
    else
        write_runtime
        start_containerd
        start_dockerd
        say "running (pid $(pid_of "$DOCKERD_PID"), socket $SOCK)"
    fi
    trap - EXIT
    ensure_image
    say "image $IMAGE_REPO:$IMAGE_TAG ready"
}

cmd_stop() {
    lock
    if engine_answers; then
        # Removing containers first makes shutdown fast: dockerd otherwise stops each one in turn.
        local ids id
        ids=$(api 'http://d/containers/json?all=1' | jq -r '.[].Id' 2>/dev/null || true)
        if [[ -n $ids ]]; then
            say "removing $(wc -w <<<"$ids") container(s)"
            for id in $ids; do
                API_TIMEOUT=30 api -X DELETE "http://d/containers/$id?force=1&v=1" >/dev/null 2>&1 &
            done
            wait
        fi
    fi
    stop_process "$DOCKERD_PID" dockerd 30 "$DOCKERD_PID"
    stop_process "$CTR_PID" containerd 15 "$CTR_DIR/config.toml"
    release_data_root
    say "stopped"
}

cmd_status() {
    if engine_answers; then
        local pid
        if alive "$DOCKERD_PID" dockerd; then
            pid=$(pid_of "$DOCKERD_PID")
        else
            pid=$(find_daemon dockerd "$DOCKERD_PID") || pid="?"
        fi
        echo "running (pid $pid, socket $SOCK)"
        return 0
    fi
    if alive "$DOCKERD_PID" dockerd; then
        echo "not running: dockerd (pid $(pid_of "$DOCKERD_PID")) does not answer on $SOCK"
    else
        echo "not running (socket $SOCK)"
    fi
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) printf 'export DOCKER_HOST=unix://%s\n' "$SOCK" ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac
