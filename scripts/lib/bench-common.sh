# shellcheck shell=bash
# Several globals set here are read only by the sourcing scripts:
# shellcheck disable=SC2034
# bench-common.sh: shared by scripts/bench-vs-nginx and scripts/loadgen-vs-wrk.
# Sourced (not run) after `set -euo pipefail`; defines functions and
# constants only, apart from the CPU pinning defaults below.
#
# The sourcing script sets, before sourcing:
#   PROG       its name, for messages and the temp dir name
#   REPO_ROOT  the repository root (for the nginx config template)
# and then calls, in this order:
#   bench_need_nginx, bench_check_platform CLIENT   prerequisites (die with install hints)
#   bench_setup_tmp                                  temp dir TMP + cleanup traps
#   bench_setup_docroot                              DOCROOT and nginx prefix in TMP
# after which start_nginx / stop_server / cpu_ticks / parse_wrk ... may be used.
# cleanup (on exit) stops SRV_PID (+ SRV_PIDS), PERF_PID and CLIENT_PID when set.

TEMPLATE="$REPO_ROOT/servers/nginx/nginx.conf.template"

SERVER_CPU=0
CLIENT_CPU=1
KEEPALIVE_REQUESTS=1000000
START_TIMEOUT=10   # seconds to wait for "listening on" and then for /health
STOP_TIMEOUT=10    # seconds to wait for exit after SIGTERM
OTHER_LOAD_PCT=15   # busy% of a CPU beyond its benchmark process that gets a note

die() { echo "$PROG: error: $*" >&2; exit 1; }
warn() { echo "$PROG: warning: $*" >&2; }
note() { echo "$PROG: $*" >&2; }

need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }

# "10s" / "2m" / "1h" / "10" -> whole seconds (wrk's own -d syntax).
to_secs() {
    local d=$1
    [[ $d =~ ^([0-9]+)([smh]?)$ ]] || return 1
    local n=$((10#${BASH_REMATCH[1]}))
    case ${BASH_REMATCH[2]} in
        m) n=$((n * 60)) ;;
        h) n=$((n * 3600)) ;;
    esac
    ((n > 0)) || return 1
    echo "$n"
}

# ---------------------------------------------------------------- prerequisites

need_tool() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: install it with ${2:-apt-get install $1}"
}

bench_need_nginx() {
    # nginx lives in /usr/sbin, often not in a non-root PATH.
    [[ :$PATH: == *:/usr/sbin:* ]] || PATH="$PATH:/usr/sbin"
    need_tool nginx "'apt-get install nginx-light' (or 'apt-get install nginx')"
}

# Tools, CPUs and limits every benchmark needs; CLIENT names what runs on
# CLIENT_CPU (for the message when there are too few CPUs). Sets NCPU,
# CLK_TCK, HAVE_CURL and raises the fd limit.
bench_check_platform() {
    local client=$1
    need_tool taskset "'apt-get install util-linux'"
    need_tool getconf "'apt-get install libc-bin'"
    [[ -r $TEMPLATE ]] || die "nginx config template not found: $TEMPLATE"

    NCPU=$(getconf _NPROCESSORS_ONLN)
    ((NCPU >= 2)) || die "needs at least 2 CPUs (server on CPU $SERVER_CPU, $client on CPU $CLIENT_CPU); this machine has $NCPU"
    if ! taskset -c "$SERVER_CPU" true 2>/dev/null || ! taskset -c "$CLIENT_CPU" true 2>/dev/null; then
        die "cannot pin to CPUs $SERVER_CPU and $CLIENT_CPU (taskset failed; restricted cpuset?)"
    fi

    CLK_TCK=$(getconf CLK_TCK)
    [[ $CLK_TCK =~ ^[0-9]+$ && $CLK_TCK -gt 0 ]] || die "getconf CLK_TCK gave '$CLK_TCK'"

    HAVE_CURL=0
    command -v curl >/dev/null 2>&1 && HAVE_CURL=1

    # Raise the fd limit for wrk and the servers (400 connections and more).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# ---------------------------------------------------------------- cleanup

kill_quietly() { kill "-$1" "$2" 2>/dev/null || true; }

# Temp dir TMP (removed on exit) and the traps that stop whatever was started.
bench_setup_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$PROG.XXXXXX")
    SRV_PID=         # the server process we started (variant, or nginx master)
    SRV_PIDS=()      # all processes to measure/stop (nginx: master + workers)
    PERF_PID=
    CLIENT_PID=      # a load generator running in the background
    trap cleanup EXIT
    trap 'echo "$PROG: interrupted" >&2; exit 130' INT
    trap 'exit 143' TERM
}

# shellcheck disable=SC2317  # invoked through trap
cleanup() {
    local rc=$? p i
    trap - EXIT INT TERM
    [[ -n $PERF_PID ]] && kill_quietly TERM "$PERF_PID"
    [[ -n $CLIENT_PID ]] && kill_quietly TERM "$CLIENT_PID"
    if [[ -n $SRV_PID ]]; then
        kill_quietly TERM "$SRV_PID"
        for ((i = 0; i < 30; i++)); do
            kill -0 "$SRV_PID" 2>/dev/null || break
            sleep 0.1
        done
        for p in "$SRV_PID" "${SRV_PIDS[@]}"; do
            if kill -0 "$p" 2>/dev/null; then
                warn "process $p still running after SIGTERM; sending SIGKILL"
                kill_quietly KILL "$p"
            fi
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}

# ---------------------------------------------------------------- helpers

# A free TCP port on 127.0.0.1 for nginx (asked of the kernel, or probed).
free_port() {
    local p
    if command -v python3 >/dev/null 2>&1 &&
        p=$(timeout 5 python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null) &&
        [[ $p =~ ^[0-9]+$ ]]; then
        echo "$p"
        return 0
    fi
    for ((p = 18080; p < 18580; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# HTTP status code of GET 127.0.0.1:$1$2 (000 if no answer).
http_status() {
    local port=$1 path=$2 line
    if ((HAVE_CURL)); then
        curl -s --noproxy '*' -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path" 2>/dev/null || echo 000
        return 0
    fi
    # shellcheck disable=SC2016  # $1/$2 expand in the inner bash
    line=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
        IFS= read -r -t 2 line <&3 && printf "%s" "$line"' _ "$port" "$path" 2>/dev/null) || true
    if [[ $line =~ ^HTTP/1\.[01]\ ([0-9]{3}) ]]; then echo "${BASH_REMATCH[1]}"; else echo 000; fi
}

# Sum of utime and stime (clock ticks) over the given pids: prints "USER SYS".
cpu_ticks() {
    local u=0 s=0 p stat rest fields
    for p in "$@"; do
        stat=$(<"/proc/$p/stat") || return 1
        rest=${stat##*) }            # drop "pid (comm) ", comm may hold spaces
        read -r -a fields <<<"$rest" # fields[0] is field 3 (state)
        u=$((u + fields[11]))        # field 14: utime
        s=$((s + fields[12]))        # field 15: stime
    done
    echo "$u $s"
}

# CPU time (ms, user + sys) of the shell's reaped children, from a `times` dump.
child_cpu_ms() {
    awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, p, "m"); sub(/s$/, "", p[2]); t += p[1] * 60000 + p[2] * 1000 }
        printf "%d\n", t
    }' "$1"
}

# "BUSY TOTAL" jiffies of one CPU from /proc/stat.
cpu_busy() {
    local cpu=$1 name rest idle total v
    while read -r name rest; do
        [[ $name == "cpu$cpu" ]] || continue
        read -r -a v <<<"$rest"
        # user nice system idle iowait irq softirq steal (guest is in user)
        total=$((v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]))
        idle=$((v[3] + v[4]))
        echo "$((total - idle)) $total"
        return 0
    done </proc/stat
    echo "0 0"
}

now_ns() { date +%s%N; }

# Show a server's stderr: all of it if short, else its head (where a panic
# message is) and its tail.
tail_file() {
    local f=$1 n
    [[ -s $f ]] || return 0
    n=$(wc -l <"$f")
    echo "---- $f:" >&2
    if ((n <= 20)); then
        cat "$f" >&2
    else
        head -n 6 "$f" >&2
        echo "   [... $((n - 16)) lines ...]" >&2
        tail -n 10 "$f" >&2
    fi
    echo "----" >&2
}

# Warn if any thread of the measured processes may run outside SERVER_CPU.
check_affinity() {
    local p t allowed
    for p in "${SRV_PIDS[@]}"; do
        for t in /proc/"$p"/task/*; do
            allowed=$(awk '/^Cpus_allowed_list:/ {print $2}' "$t/status" 2>/dev/null) || continue
            if [[ -n $allowed && $allowed != "$SERVER_CPU" ]]; then
                warn "$CUR_LABEL: thread ${t##*/} of pid $p may run on CPUs $allowed (expected $SERVER_CPU)"
                return 0
            fi
        done
    done
}

# Wait (bounded) for GET /health to answer 200.
# Bounded by a deadline, not a count: one probe may take up to 2 s.
wait_health() {
    local port=$1 pid=$2 end
    end=$(($(now_ns) + START_TIMEOUT * 1000000000))
    LAST_HEALTH=none
    while (($(now_ns) < end)); do
        LAST_HEALTH=$(http_status "$port" /health)
        [[ $LAST_HEALTH == 200 ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- servers

# DOCROOT (one index.html) and the nginx prefix, inside TMP.
bench_setup_docroot() {
    NGINX_PREFIX="$TMP/nginx"
    DOCROOT="$TMP/www"
    mkdir -p "$DOCROOT"
    printf '<!doctype html>\n<html><head><title>bench</title></head><body><p>Hello, World!</p></body></html>\n' >"$DOCROOT/index.html"
    # mktemp -d makes 0700 dirs; let non-root nginx workers read the docroot.
    chmod 755 "$TMP" "$DOCROOT"
    chmod 644 "$DOCROOT/index.html"
}

CUR_LABEL=
LAST_HEALTH=
SRV_PORT=
SRV_OUT=
SRV_ERR=
SRV_CMD=

NGINX_USER=
[[ $EUID -eq 0 ]] && NGINX_USER='user root;'
# When set: worker_connections (and worker_rlimit_nofile) are raised to at
# least NGINX_MIN_CONNECTIONS if the template has fewer, and worker_rlimit_nofile
# is lowered to NGINX_MAX_NOFILE (e.g. the hard limit, which an unprivileged
# nginx can't exceed: it logs a setrlimit alert otherwise).
NGINX_MIN_CONNECTIONS=
NGINX_MAX_NOFILE=

write_nginx_conf() {
    local port=$1
    mkdir -p "$NGINX_PREFIX"
    sed -e "s|@PREFIX@|$NGINX_PREFIX|g" \
        -e "s|@PORT@|$port|g" \
        -e "s|@ROOT@|$DOCROOT|g" \
        -e "s|@WORKERS@|1|g" \
        -e "s|@USER@|$NGINX_USER|g" \
        "$TEMPLATE" >"$NGINX_PREFIX/nginx.conf"
    if [[ -n $NGINX_MIN_CONNECTIONS$NGINX_MAX_NOFILE ]]; then
        awk -v min="$NGINX_MIN_CONNECTIONS" -v max="$NGINX_MAX_NOFILE" '
            min != "" && $1 == "worker_connections" && $2 + 0 < min + 0 { sub(/[0-9]+;/, min ";") }
            min != "" && $1 == "worker_rlimit_nofile" && $2 + 0 < min + 100 { sub(/[0-9]+;/, min + 100 ";") }
            max != "" && $1 == "worker_rlimit_nofile" && $2 + 0 > max + 0 { sub(/[0-9]+;/, max ";") }
            { print }' "$NGINX_PREFIX/nginx.conf" >"$NGINX_PREFIX/nginx.conf.tmp" &&
            mv "$NGINX_PREFIX/nginx.conf.tmp" "$NGINX_PREFIX/nginx.conf"
    fi
    if grep -q '@[A-Z_]*@' "$NGINX_PREFIX/nginx.conf"; then
        echo "unsubstituted placeholder in $NGINX_PREFIX/nginx.conf:" >&2
        grep -n '@[A-Z_]*@' "$NGINX_PREFIX/nginx.conf" >&2
        return 1
    fi
}

NGINX_ARGS=()
start_nginx() {
    local port i kids kids_arr
    port=$(free_port) || { echo "no free TCP port found" >&2; return 1; }
    write_nginx_conf "$port" || return 1
    NGINX_ARGS=(-p "$NGINX_PREFIX/" -c "$NGINX_PREFIX/nginx.conf" -e "$NGINX_PREFIX/error.log" -g 'daemon off;')
    SRV_OUT="$TMP/nginx.$CUR_CONNS.out"
    SRV_ERR="$TMP/nginx.$CUR_CONNS.err"
    if ! timeout 10 nginx -t "${NGINX_ARGS[@]}" >"$SRV_ERR" 2>&1; then
        echo "nginx -t rejected $NGINX_PREFIX/nginx.conf" >&2
        return 1
    fi
    printf -v SRV_CMD '%q ' taskset -c "$SERVER_CPU" nginx "${NGINX_ARGS[@]}"
    taskset -c "$SERVER_CPU" nginx "${NGINX_ARGS[@]}" >"$SRV_OUT" 2>"$SRV_ERR" </dev/null &
    SRV_PID=$!
    SRV_PIDS=("$SRV_PID")
    SRV_PORT=$port
    if ! wait_health "$port" "$SRV_PID"; then
        return 1
    fi
    # The worker(s): children of the master.
    for ((i = 0; i < 50; i++)); do
        kids=$(cat /proc/"$SRV_PID"/task/*/children 2>/dev/null) || true
        [[ -n ${kids// /} ]] && break
        sleep 0.1
    done
    read -r -a kids_arr <<<"$kids"
    ((${#kids_arr[@]})) || { echo "nginx master $SRV_PID has no worker processes" >&2; return 1; }
    SRV_PIDS+=("${kids_arr[@]}")
}

# stop_server: SIGTERM, bounded wait, exit status must be 0.
stop_server() {
    local rc=0 i p
    [[ -n $SRV_PID ]] || return 0
    if ! kill -0 "$SRV_PID" 2>/dev/null; then
        wait "$SRV_PID" 2>/dev/null || rc=$?
        warn "$CUR_LABEL (pid $SRV_PID) had already exited (status $rc)"
        SRV_PID=
        SRV_PIDS=()
        return 1
    fi
    kill_quietly TERM "$SRV_PID"
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SRV_PID" 2>/dev/null; then
        warn "$CUR_LABEL (pid $SRV_PID) still running ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
        for p in "${SRV_PIDS[@]}"; do kill_quietly KILL "$p"; done
        wait "$SRV_PID" 2>/dev/null || true
        rc=1
    else
        wait "$SRV_PID" 2>/dev/null || rc=$?
        if ((rc != 0)); then
            warn "$CUR_LABEL (pid $SRV_PID) exited with status $rc after SIGTERM (expected 0)"
            tail_file "$SRV_ERR"
        fi
    fi
    # nginx workers exit with the master; make sure.
    for p in "${SRV_PIDS[@]}"; do
        for ((i = 0; i < 20; i++)); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$p" 2>/dev/null && { warn "pid $p outlived its server; killing it"; kill_quietly KILL "$p"; }
    done
    SRV_PID=
    SRV_PIDS=()
    return "$rc"
}

# ---------------------------------------------------------------- measuring

# parse_wrk FILE -> "REQUESTS RPS P50_MS P99_MS ERRORS" (n/a when missing).
parse_wrk() {
    awk '
        function ms(v,   n, u) {
            n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
            if (u == "us") return n / 1000
            if (u == "ms") return n
            if (u == "s")  return n * 1000
            if (u == "m")  return n * 60000
            if (u == "h")  return n * 3600000
            return -1
        }
        / requests in / { req = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Latency Distribution/ { dist = 1; next }
        dist && $1 == "50%" { p50 = ms($2) }
        dist && $1 == "99%" { p99 = ms($2) }
        /Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) errs += $i + 0 }
        /Non-2xx or 3xx responses:/ { errs += $NF }
        END {
            printf "%s %s %s %s %d\n", (req == "" ? "n/a" : req), (rps == "" ? "n/a" : rps),
                (p50 == "" || p50 < 0 ? "n/a" : sprintf("%.3f", p50)),
                (p99 == "" || p99 < 0 ? "n/a" : sprintf("%.3f", p99)), errs
        }' "$1"
}

# Other load on the two CPUs makes every number noisy: say so up front.
check_idle() {
    local s0 c0 s1 c1 cpu pct
    s0=$(cpu_busy "$SERVER_CPU") c0=$(cpu_busy "$CLIENT_CPU")
    sleep 1
    s1=$(cpu_busy "$SERVER_CPU") c1=$(cpu_busy "$CLIENT_CPU")
    for cpu in "$SERVER_CPU $s0 $s1" "$CLIENT_CPU $c0 $c1"; do
        # "CPU BUSY0 TOTAL0 BUSY1 TOTAL1" -> busy percent over the second
        pct=$(awk '{ t = $5 - $3; print (t > 0 ? int(100 * ($4 - $2) / t) : 0) }' <<<"$cpu")
        if ((pct >= 10)); then
            warn "CPU ${cpu%% *} was ${pct}% busy before the benchmark started; other load will skew the results"
        fi
    done
}
