#!/usr/bin/env bash
# Start/stop the real services Hive's integration tests use: PostgreSQL,
# a private Docker daemon and a single-node Slurm cluster (with munge).
#
#   scripts/services.sh postgres|docker|slurm|all [...]   start (idempotent)
#   scripts/services.sh env                               print `export ...` lines
#   scripts/services.sh status                            show what is running
#   scripts/services.sh stop [postgres|docker|slurm|all]  stop (default: all)
#   scripts/services.sh purge                             stop all, delete the state dir
#
# All state (data, sockets, logs, pid files) lives under one directory:
#   HIVE_SERVICES_DIR   default /tmp/hive-services
# Other knobs (environment):
#   HIVE_PG_PORT            default 55432
#   HIVE_SLURMCTLD_PORT     default 56817
#   HIVE_SLURMD_PORT        default 56818
#   HIVE_SERVICES_WAIT      readiness timeout per check in seconds, default 60
#
# Must run as root for start/stop (apt-get, dockerd, chown to postgres).
# Progress goes to stderr; `env` writes only export lines to stdout, so
#   eval "$(scripts/services.sh env)"
# is safe.
set -euo pipefail

DIR="${HIVE_SERVICES_DIR:-/tmp/hive-services}"
PG_PORT="${HIVE_PG_PORT:-55432}"
SLURMCTLD_PORT="${HIVE_SLURMCTLD_PORT:-56817}"
SLURMD_PORT="${HIVE_SLURMD_PORT:-56818}"
WAIT="${HIVE_SERVICES_WAIT:-60}"

PG_USER=hive
PG_PASSWORD=hive
PG_DB=hive_test
PG_VERSION=15
PG_BIN="/usr/lib/postgresql/${PG_VERSION}/bin"

BUSYBOX_IMAGE="hive-test/busybox:latest"
PYTHON_IMAGE="hive-test/python:3.11"
# Bump to force a rebuild of the images on the next start.
IMAGE_STAMP="hive-services-image-v1"

SLURM_NODE=localhost

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

# ---------------------------------------------------------------- helpers --
log()  { printf '[hive-services] %s\n' "$*" >&2; }
die()  { printf '[hive-services] ERROR: %s\n' "$*" >&2; exit 1; }

# Show the tail of a log file on stderr (used in failure messages).
show_log() {
    local f="$1"
    if [[ -f "$f" ]]; then
        printf '[hive-services] ---- last lines of %s ----\n' "$f" >&2
        tail -n 25 "$f" >&2 || true
        printf '[hive-services] ----\n' >&2
    fi
}

need_root() {
    [[ "$(id -u)" == 0 ]] || die "must run as root (apt-get, daemons, chown); try: sudo $0 $*"
}

# wait_until TIMEOUT CMD...: retry CMD every 0.5 s until it succeeds or TIMEOUT s pass.
wait_until() {
    local timeout="$1"; shift
    local deadline=$((SECONDS + timeout))
    while true; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if ((SECONDS >= deadline)); then return 1; fi
        sleep 0.5
    done
}

# proc_alive PID: process exists and is not a zombie. (In some sandboxes
# PID 1 does not reap orphans, so a dead daemon lingers as a zombie that
# `kill -0` still reports as alive.)
proc_alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null || echo X)"
    [[ "$st" != Z && "$st" != X ]]
}

# pid_alive PIDFILE [COMM]: pid file exists, process is alive (and its
# /proc/PID/comm starts with COMM, to guard against recycled pids).
pid_alive() {
    local pf="$1" comm="${2:-}" pid
    [[ -s "$pf" ]] || return 1
    pid="$(head -n1 "$pf" | tr -dc '0-9')"
    [[ -n "$pid" ]] || return 1
    proc_alive "$pid" || return 1
    if [[ -n "$comm" ]]; then
        local actual
        actual="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
        [[ "$actual" == "$comm"* ]] || return 1
    fi
    return 0
}

# stop_pidfile PIDFILE COMM NAME: SIGTERM the process, wait up to 30 s, then SIGKILL.
stop_pidfile() {
    local pf="$1" comm="$2" name="$3" pid
    if ! pid_alive "$pf" "$comm"; then
        rm -f "$pf"
        return 0
    fi
    pid="$(head -n1 "$pf" | tr -dc '0-9')"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until 30 eval "! proc_alive $pid"; then
        log "$name did not exit after 30 s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$pf"
}

# Is something (anything) listening on 127.0.0.1:PORT?
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

APT_UPDATED=0
# apt_ensure PKG...: install the packages that are not installed yet.
apt_ensure() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
    mkdir -p "$DIR/logs"
    local apt_log="$DIR/logs/apt.log"
    # Keep package maintainer scripts from starting system-wide daemons
    # (docker, munge, slurm) on their default sockets/ports.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        if ! apt-get update -qq </dev/null >>"$apt_log" 2>&1; then
            ((made_policy)) && rm -f /usr/sbin/policy-rc.d
            show_log "$apt_log"; die "apt-get update failed"
        fi
        APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    local rc=0
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null >>"$apt_log" 2>&1 || rc=$?
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    if ((rc != 0)); then
        show_log "$apt_log"; die "apt-get install ${missing[*]} failed (rc=$rc), see $apt_log"
    fi
}

setup_dir() {
    mkdir -p "$DIR" "$DIR/logs"
    # Daemons running as other users (postgres) and munged's permission
    # checks need the directory to be traversable and not group/world-writable.
    chmod 755 "$DIR"
}

# ---------------------------------------------------------------- postgres --
PG_DIR="$DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_RUN="$PG_DIR/run"
PG_LOG="$DIR/logs/postgres.log"
PG_URL="postgresql+psycopg://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${PG_PORT}/${PG_DB}"
PG_PLAIN_URL="postgresql://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${PG_PORT}/${PG_DB}"

as_postgres() { runuser -u postgres -- "$@"; }

pg_running() {
    [[ -f "$PG_DATA/PG_VERSION" ]] || return 1
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

# Cheap check usable without runuser (env/status): postmaster pid alive.
pg_alive() { pid_alive "$PG_DATA/postmaster.pid" postgres; }

pg_psql_admin() {
    as_postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$PG_PORT" -U postgres -d postgres
}

start_postgres() {
    local t0=$SECONDS
    log "postgres: ensuring packages (postgresql ${PG_VERSION})"
    [[ -x "$PG_BIN/postgres" ]] || apt_ensure postgresql
    [[ -x "$PG_BIN/postgres" ]] || die "postgres: $PG_BIN/postgres missing after installing postgresql (not Debian 12?)"
    id postgres >/dev/null 2>&1 || die "postgres: system user 'postgres' missing (postgresql package broken?)"
    mkdir -p "$PG_DIR" "$PG_RUN"
    chown postgres:postgres "$PG_DIR" "$PG_RUN"
    chmod 755 "$PG_DIR"
    as_postgres test -x "$DIR" || die "postgres: user 'postgres' cannot enter $DIR (choose a HIVE_SERVICES_DIR whose parents are world-traversable)"

    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
        log "postgres: initdb $PG_DATA"
        rm -rf "$PG_DATA"
        mkdir -p "$PG_DATA"; chown postgres:postgres "$PG_DATA"; chmod 700 "$PG_DATA"
        if ! as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
                --auth-local=peer --auth-host=scram-sha-256 >"$DIR/logs/initdb.log" 2>&1 </dev/null; then
            show_log "$DIR/logs/initdb.log"; die "postgres: initdb failed"
        fi
    fi
    # (Re)write our settings every start; they are read at server start.
    cat >"$PG_DATA/postgresql.auto.conf" <<EOF
# Written by scripts/services.sh -- regenerated on every start.
listen_addresses = '127.0.0.1'
port = ${PG_PORT}
unix_socket_directories = '${PG_RUN}'
max_connections = 100
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    chown postgres:postgres "$PG_DATA/postgresql.auto.conf"

    if pg_running; then
        log "postgres: already running on 127.0.0.1:${PG_PORT}"
    else
        if port_in_use "$PG_PORT"; then
            die "postgres: port 127.0.0.1:${PG_PORT} is already used by another process (set HIVE_PG_PORT)"
        fi
        rm -f "$PG_DATA/postmaster.pid"
        log "postgres: starting on 127.0.0.1:${PG_PORT} (log $PG_LOG)"
        touch "$PG_LOG"; chown postgres:postgres "$PG_LOG"
        if ! as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT" start >/dev/null 2>&1 </dev/null 9>&-; then
            show_log "$PG_LOG"; die "postgres: server did not start within ${WAIT}s"
        fi
    fi

    log "postgres: ensuring role '${PG_USER}' and database '${PG_DB}'"
    pg_psql_admin <<EOF || die "postgres: creating role/database failed"
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${PG_USER}') THEN
    CREATE ROLE ${PG_USER} LOGIN CREATEDB PASSWORD '${PG_PASSWORD}';
  ELSE
    ALTER ROLE ${PG_USER} LOGIN CREATEDB PASSWORD '${PG_PASSWORD}';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE ${PG_DB} OWNER ${PG_USER}'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '${PG_DB}')\gexec
EOF

    log "postgres: readiness check (TCP login as ${PG_USER})"
    if ! wait_until "$WAIT" env PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -At "$PG_PLAIN_URL" -c 'select 1'; then
        show_log "$PG_LOG"; die "postgres: cannot log in as ${PG_USER} at 127.0.0.1:${PG_PORT} within ${WAIT}s"
    fi
    log "postgres: ready in $((SECONDS - t0))s -> HIVE_TEST_PG_URL=${PG_URL}"
}

stop_postgres() {
    if pg_running; then
        log "stopping postgres"
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 </dev/null \
            || log "postgres: pg_ctl stop failed, see $PG_LOG"
    fi
}

# ------------------------------------------------------------------ docker --
DK_SOCK="$DIR/docker.sock"
DK_HOST="unix://$DK_SOCK"
DK_DATA="$DIR/docker-data"
DK_EXEC="$DIR/docker-exec"
DK_PID="$DIR/docker.pid"
DK_LOG="$DIR/logs/dockerd.log"
ROOTFS="$DIR/rootfs"

dk() { DOCKER_HOST="$DK_HOST" docker "$@" </dev/null; }

docker_running() {
    pid_alive "$DK_PID" dockerd && [[ -S "$DK_SOCK" ]]
}

# Copy host files (resolving symlinks) into a rootfs at the same path.
copy_into_rootfs() {
    local root="$1"; shift
    local f
    for f in "$@"; do
        mkdir -p "$root$(dirname "$f")"
        cp -L "$f" "$root$f"
    done
}

# A merged-/usr skeleton with busybox applets, passwd/group and /tmp.
make_skeleton() {
    local root="$1"
    rm -rf "$root"
    mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{etc,tmp,root,proc,sys,dev,home,var/tmp}
    ln -s usr/bin "$root/bin"; ln -s usr/sbin "$root/sbin"
    ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
    chmod 1777 "$root/tmp" "$root/var/tmp"
    cp /bin/busybox "$root/usr/bin/busybox"
    chroot "$root" /usr/bin/busybox --install -s
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
}

# docker import ROOT IMAGE: import the directory as an image (no registry needed).
import_rootfs() {
    local root="$1" image="$2"
    tar --numeric-owner -C "$root" -c . | DOCKER_HOST="$DK_HOST" docker import \
        -m "$IMAGE_STAMP" \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'WORKDIR /' \
        -c "CMD [\"$3\"]" \
        - "$image" >/dev/null
}

image_current() {
    [[ "$(dk image inspect -f '{{.Comment}}' "$1" 2>/dev/null || true)" == "$IMAGE_STAMP" ]]
}

build_busybox_image() {
    if image_current "$BUSYBOX_IMAGE"; then
        log "docker: image $BUSYBOX_IMAGE present"
        return 0
    fi
    log "docker: building $BUSYBOX_IMAGE (busybox-static rootfs + docker import)"
    local root="$ROOTFS/busybox"
    make_skeleton "$root"
    import_rootfs "$root" "$BUSYBOX_IMAGE" sh || die "docker: import of $BUSYBOX_IMAGE failed"
}

# hive-test/python:3.11 = busybox skeleton + the host's Debian python3.11
# (/usr/bin/python3.11 + /usr/lib/python3.11) + every shared library that
# `ldd` lists for the interpreter and its lib-dynload extension modules.
# Offline, takes a few seconds, and uses the same 3.11 as Debian 12.
build_python_image() {
    if image_current "$PYTHON_IMAGE"; then
        log "docker: image $PYTHON_IMAGE present"
        return 0
    fi
    log "docker: building $PYTHON_IMAGE (host /usr/bin/python3.11 + stdlib + ldd libs, docker import)"
    local root="$ROOTFS/python" py=/usr/bin/python3.11 stdlib=/usr/lib/python3.11
    [[ -x "$py" && -d "$stdlib" ]] || die "docker: $py / $stdlib missing after installing python3.11"
    make_skeleton "$root"
    cp -L "$py" "$root/usr/bin/python3.11"
    ln -s python3.11 "$root/usr/bin/python3"
    ln -s python3 "$root/usr/bin/python"
    tar -C / -c \
        --exclude='usr/lib/python3.11/test' \
        --exclude='usr/lib/python3.11/idlelib' \
        --exclude='usr/lib/python3.11/turtledemo' \
        --exclude='usr/lib/python3.11/tkinter' \
        --exclude='usr/lib/python3.11/site-packages' \
        --exclude='usr/lib/python3.11/dist-packages' \
        --exclude='usr/lib/python3.11/lib-dynload/_test*' \
        --exclude='usr/lib/python3.11/lib-dynload/_tkinter*' \
        "${stdlib#/}" | tar -C "$root" -x
    # Shared libraries (incl. the dynamic loader) for python and its extension modules.
    local libs
    libs="$( { ldd "$py"; for so in "$root$stdlib"/lib-dynload/*.so; do ldd "$so" 2>/dev/null || true; done; } \
             | awk '/not found/ {next} { for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u )"
    # shellcheck disable=SC2086
    copy_into_rootfs "$root" $libs
    mkdir -p "$root/usr/share"
    if [[ -d /usr/share/zoneinfo ]]; then cp -a /usr/share/zoneinfo "$root/usr/share/"; fi
    if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then copy_into_rootfs "$root" /etc/ssl/certs/ca-certificates.crt; fi
    # Sanity check before importing: stdlib imports work inside the rootfs.
    if ! chroot "$root" /usr/bin/python3 -c 'import json, sqlite3, ssl, hashlib, ctypes, decimal, zlib, lzma, bz2, subprocess, multiprocessing, asyncio' \
            >"$DIR/logs/python-rootfs.log" 2>&1; then
        show_log "$DIR/logs/python-rootfs.log"; die "docker: python rootfs self-check failed"
    fi
    import_rootfs "$root" "$PYTHON_IMAGE" python3 || die "docker: import of $PYTHON_IMAGE failed"
}

start_docker() {
    local t0=$SECONDS
    log "docker: ensuring packages (docker.io, busybox-static, python3.11)"
    local pkgs=(busybox-static python3.11)
    command -v dockerd >/dev/null || pkgs+=(docker.io)
    apt_ensure "${pkgs[@]}"
    # The docker.io CLI is used if no other `docker` is on PATH.
    command -v docker >/dev/null || die "docker: no docker CLI after installing docker.io"

    if ((${#DK_SOCK} > 100)); then
        die "docker: socket path $DK_SOCK is too long for a unix socket; use a shorter HIVE_SERVICES_DIR"
    fi
    mkdir -p "$DK_DATA" "$DK_EXEC"
    if docker_running && wait_until 10 dk info; then
        log "docker: dockerd already running ($DK_HOST)"
    else
        if pid_alive "$DK_PID" dockerd; then
            stop_pidfile "$DK_PID" dockerd dockerd
        fi
        # A containerd left behind by a dockerd that died: stop it, and drop
        # its pid file (dockerd would otherwise wait on a zombie pid and
        # time out with "timeout waiting for containerd to start").
        stop_pidfile "$DK_EXEC/containerd/containerd.pid" containerd "stale containerd"
        rm -f "$DK_PID" "$DK_SOCK"
        log "docker: starting dockerd ($DK_HOST, data-root $DK_DATA, log $DK_LOG)"
        # Sandbox quirks: no iptables/bridge needed (containers use network
        # mode none); --bridge=none also makes `none` the default network.
        setsid -f dockerd \
            --host "$DK_HOST" \
            --data-root "$DK_DATA" \
            --exec-root "$DK_EXEC" \
            --pidfile "$DK_PID" \
            --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
            --userland-proxy=false \
            --log-level=warn \
            </dev/null >>"$DK_LOG" 2>&1 9>&-
        if ! wait_until "$WAIT" dk info; then
            show_log "$DK_LOG"; die "docker: dockerd did not answer 'docker info' within ${WAIT}s"
        fi
    fi

    build_busybox_image
    build_python_image

    log "docker: readiness check (docker run --network none $PYTHON_IMAGE python3)"
    local out
    out="$(timeout "$WAIT" env DOCKER_HOST="$DK_HOST" docker run --rm --network none "$PYTHON_IMAGE" \
            python3 -c 'print(1)' </dev/null 2>&1)" || true
    if [[ "$out" != "1" ]]; then
        printf '%s\n' "$out" >&2
        show_log "$DK_LOG"; die "docker: test container did not print 1"
    fi
    out="$(timeout "$WAIT" env DOCKER_HOST="$DK_HOST" docker run --rm --network none "$BUSYBOX_IMAGE" \
            echo ok </dev/null 2>&1)" || true
    [[ "$out" == "ok" ]] || { printf '%s\n' "$out" >&2; die "docker: busybox test container did not print ok"; }
    log "docker: ready in $((SECONDS - t0))s -> DOCKER_HOST=$DK_HOST"
}

stop_docker() {
    if pid_alive "$DK_PID" dockerd; then
        # Remove leftover test containers first so the shutdown is quick.
        local ids
        ids="$(dk ps -aq 2>/dev/null || true)"
        # shellcheck disable=SC2086
        [[ -z "$ids" ]] || dk rm -f $ids >/dev/null 2>&1 || true
    fi
    stop_pidfile "$DK_PID" dockerd dockerd
    rm -f "$DK_SOCK"
    # dockerd bind-mounts its data-root (and container/netns mounts can
    # outlive a crashed daemon); unmount what is left under our dirs.
    unmount_under "$DK_DATA"
    unmount_under "$DK_EXEC"
}

# unmount_under PATH: lazily unmount every mount at or below PATH, deepest first.
unmount_under() {
    local base="$1" m
    [[ -d "$base" ]] || return 0
    awk -v b="$base" '$2 == b || index($2, b "/") == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || log "could not unmount $m"; done
}

# ------------------------------------------------------------------- slurm --
MUNGE_DIR="$DIR/munge"
MUNGE_KEY="$MUNGE_DIR/munge.key"
MUNGE_SOCK="$MUNGE_DIR/munge.socket"
MUNGE_PID="$MUNGE_DIR/munged.pid"
MUNGE_LOG="$DIR/logs/munged.log"
SL_DIR="$DIR/slurm"
SL_CONF="$SL_DIR/slurm.conf"
SL_CTLD_PID="$SL_DIR/run/slurmctld.pid"
SL_D_PID="$SL_DIR/run/slurmd.pid"
SL_CTLD_LOG="$DIR/logs/slurmctld.log"
SL_D_LOG="$DIR/logs/slurmd.log"

munge_running() { pid_alive "$MUNGE_PID" munged && [[ -S "$MUNGE_SOCK" ]]; }
slurmctld_running() { pid_alive "$SL_CTLD_PID" slurmctld; }
slurmd_running() { pid_alive "$SL_D_PID" slurmd; }

start_munge() {
    mkdir -p "$MUNGE_DIR"
    chmod 755 "$MUNGE_DIR"   # munged requires the socket dir to be world-executable
    if [[ ! -s "$MUNGE_KEY" ]]; then
        log "slurm: generating munge key"
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
    chmod 400 "$MUNGE_KEY"
    if munge_running; then
        log "slurm: munged already running"
    else
        stop_pidfile "$MUNGE_PID" munged munged
        rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
        log "slurm: starting munged (socket $MUNGE_SOCK)"
        if ! munged --socket="$MUNGE_SOCK" --key-file="$MUNGE_KEY" --pid-file="$MUNGE_PID" \
                --log-file="$MUNGE_LOG" --seed-file="$MUNGE_DIR/munged.seed" </dev/null >>"$MUNGE_LOG" 2>&1 9>&-; then
            show_log "$MUNGE_LOG"; die "slurm: munged failed to start"
        fi
    fi
    if ! wait_until "$WAIT" bash -c "munge -n --socket='$MUNGE_SOCK' | unmunge --socket='$MUNGE_SOCK'"; then
        show_log "$MUNGE_LOG"; die "slurm: munge credential round trip failed within ${WAIT}s"
    fi
}

write_slurm_conf() {
    # Real CPUs/topology/memory of this machine, as slurmd itself detects them.
    local hw
    hw="$(slurmd -C 2>/dev/null | head -n1 | sed -E 's/^NodeName=[^ ]+ *//')"
    [[ "$hw" == *CPUs=* && "$hw" == *RealMemory=* ]] || hw="CPUs=$(nproc) RealMemory=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)"
    mkdir -p "$SL_DIR"/{state,spool,run}
    local tmp="$SL_CONF.tmp"
    cat >"$tmp" <<EOF
# Written by scripts/services.sh -- single-node test cluster on 127.0.0.1.
ClusterName=hive
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=${MUNGE_SOCK}
CredType=cred/munge
StateSaveLocation=${SL_DIR}/state
SlurmdSpoolDir=${SL_DIR}/spool
SlurmctldPidFile=${SL_CTLD_PID}
SlurmdPidFile=${SL_D_PID}
SlurmctldLogFile=${SL_CTLD_LOG}
SlurmdLogFile=${SL_D_LOG}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=${SLURM_NODE} NodeAddr=127.0.0.1 ${hw} State=UNKNOWN
PartitionName=debug Nodes=${SLURM_NODE} Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$tmp" "$SL_CONF"
}

node_state() { SLURM_CONF="$SL_CONF" sinfo -h -n "$SLURM_NODE" -o '%T' </dev/null 2>/dev/null | head -n1; }

start_slurm() {
    local t0=$SECONDS
    log "slurm: ensuring packages (slurm-wlm, munge)"
    local pkgs=()
    for b in slurmctld slurmd sinfo srun sbatch; do command -v "$b" >/dev/null || { pkgs+=(slurm-wlm); break; }; done
    command -v munged >/dev/null || pkgs+=(munge)
    ((${#pkgs[@]} == 0)) || apt_ensure "${pkgs[@]}"

    start_munge

    if slurmctld_running && slurmd_running; then
        log "slurm: slurmctld and slurmd already running (SLURM_CONF=$SL_CONF)"
    else
        stop_pidfile "$SL_D_PID" slurmd slurmd
        stop_pidfile "$SL_CTLD_PID" slurmctld slurmctld
        for p in "$SLURMCTLD_PORT" "$SLURMD_PORT"; do
            port_in_use "$p" && die "slurm: port 127.0.0.1:$p is already in use (set HIVE_SLURMCTLD_PORT / HIVE_SLURMD_PORT)"
        done
        log "slurm: writing $SL_CONF"
        write_slurm_conf
        log "slurm: starting slurmctld (log $SL_CTLD_LOG)"
        if ! SLURM_CONF="$SL_CONF" slurmctld -f "$SL_CONF" </dev/null >>"$SL_CTLD_LOG" 2>&1 9>&-; then
            show_log "$SL_CTLD_LOG"; die "slurm: slurmctld failed to start"
        fi
        if ! wait_until "$WAIT" env SLURM_CONF="$SL_CONF" scontrol ping; then
            show_log "$SL_CTLD_LOG"; die "slurm: slurmctld did not answer 'scontrol ping' within ${WAIT}s"
        fi
        log "slurm: starting slurmd -N $SLURM_NODE (log $SL_D_LOG)"
        if ! SLURM_CONF="$SL_CONF" slurmd -f "$SL_CONF" -N "$SLURM_NODE" </dev/null >>"$SL_D_LOG" 2>&1 9>&-; then
            show_log "$SL_D_LOG"; die "slurm: slurmd failed to start"
        fi
    fi

    log "slurm: readiness check (node idle, srun, sbatch)"
    local deadline=$((SECONDS + WAIT)) st=""
    while true; do
        st="$(node_state || true)"
        case "$st" in
            idle|mixed|allocated) break ;;
            down*|drain*|fail*)
                SLURM_CONF="$SL_CONF" scontrol update NodeName="$SLURM_NODE" State=RESUME </dev/null >/dev/null 2>&1 || true ;;
        esac
        if ((SECONDS >= deadline)); then
            show_log "$SL_CTLD_LOG"; show_log "$SL_D_LOG"
            die "slurm: node $SLURM_NODE not idle within ${WAIT}s (state: '${st:-unknown}')"
        fi
        sleep 0.5
    done
    if ! (cd "$SL_DIR" && timeout "$WAIT" env SLURM_CONF="$SL_CONF" srun -N1 -n1 true </dev/null >/dev/null 2>"$DIR/logs/srun-check.log"); then
        show_log "$DIR/logs/srun-check.log"; show_log "$SL_D_LOG"; die "slurm: 'srun -N1 -n1 true' failed"
    fi
    # (sbatch --wait polls with a back-off of up to 10 s; poll ourselves.)
    local out="$SL_DIR/check.out" jobid
    rm -f "$out"
    jobid="$(cd "$SL_DIR" && SLURM_CONF="$SL_CONF" timeout "$WAIT" sbatch --parsable -o "$out" --wrap 'echo hi' \
            </dev/null 2>"$DIR/logs/sbatch-check.log")" \
        || { show_log "$DIR/logs/sbatch-check.log"; show_log "$SL_CTLD_LOG"; die "slurm: sbatch --wrap 'echo hi' was rejected"; }
    if ! wait_until "$WAIT" eval "[[ \"\$(cat '$out' 2>/dev/null)\" == hi ]]"; then
        SLURM_CONF="$SL_CONF" scontrol show job "${jobid%%;*}" </dev/null >&2 2>/dev/null || true
        show_log "$SL_D_LOG"; die "slurm: batch job ${jobid%%;*} (echo hi) did not complete within ${WAIT}s"
    fi
    log "slurm: ready in $((SECONDS - t0))s -> SLURM_CONF=$SL_CONF"
}

stop_slurm() {
    stop_pidfile "$SL_D_PID" slurmd slurmd
    stop_pidfile "$SL_CTLD_PID" slurmctld slurmctld
    stop_pidfile "$MUNGE_PID" munged munged
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
}

# --------------------------------------------------------------- commands --
print_env() {
    local any=0
    if [[ -d "$DIR" ]]; then
        if pg_alive; then
            printf 'export HIVE_TEST_PG_URL=%q\n' "$PG_URL"; any=1
        fi
        if docker_running; then
            printf 'export DOCKER_HOST=%q\n' "$DK_HOST"; any=1
        fi
        if slurmctld_running && slurmd_running; then
            printf 'export SLURM_CONF=%q\n' "$SL_CONF"; any=1
        fi
    fi
    if ((any)); then
        printf 'export HIVE_SERVICES_DIR=%q\n' "$DIR"
    else
        printf '# hive-services: nothing running under %s\n' "$DIR"
    fi
}

print_status() {
    local s
    if pg_alive; then s=running; else s=stopped; fi
    printf 'postgres  %-8s 127.0.0.1:%s  log %s\n' "$s" "$PG_PORT" "$PG_LOG"
    if docker_running; then s=running; else s=stopped; fi
    printf 'docker    %-8s %s  log %s\n' "$s" "$DK_HOST" "$DK_LOG"
    if slurmctld_running && slurmd_running && munge_running; then s=running; else s=stopped; fi
    printf 'slurm     %-8s %s  logs %s %s\n' "$s" "$SL_CONF" "$SL_CTLD_LOG" "$SL_D_LOG"
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

with_lock() {
    setup_dir
    exec 9>"$DIR/.lock"
    if ! flock -w 600 9; then die "another services.sh holds $DIR/.lock"; fi
}

main() {
    (($# > 0)) || usage
    local cmd="$1"; shift
    case "$cmd" in
        env) print_env ;;
        status) print_status ;;
        stop)
            need_root "$cmd"
            [[ -d "$DIR" ]] || { log "nothing to stop ($DIR does not exist)"; return 0; }
            with_lock
            local what=("$@"); ((${#what[@]})) || what=(all)
            for s in "${what[@]}"; do
                case "$s" in
                    postgres) stop_postgres ;;
                    docker) stop_docker ;;
                    slurm) stop_slurm ;;
                    all) stop_slurm; stop_docker; stop_postgres ;;
                    *) die "unknown service '$s' (postgres|docker|slurm|all)" ;;
                esac
            done
            log "stopped" ;;
        purge)
            need_root "$cmd"
            if [[ -d "$DIR" ]]; then
                with_lock
                stop_slurm; stop_docker; stop_postgres
                log "removing $DIR"
                rm -rf "$DIR"
            fi ;;
        postgres|docker|slurm|all)
            need_root "$cmd"
            with_lock
            local s
            for s in "$cmd" "$@"; do
                case "$s" in
                    postgres) start_postgres ;;
                    docker) start_docker ;;
                    slurm) start_slurm ;;
                    all) start_postgres; start_docker; start_slurm ;;
                    *) die "unknown service '$s' (postgres|docker|slurm|all)" ;;
                esac
            done
            log "done; use: eval \"\$($0 env)\"" ;;
        -h|--help|help) usage ;;
        *) usage ;;
    esac
}

main "$@"
