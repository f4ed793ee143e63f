#!/usr/bin/env bash
# Runs ONE Apache Cassandra 5.0 node on 127.0.0.1 for inboxd development and
# tests, without Docker: the jars come from Maven Central (via mvn and the
# pom.xml beside this script) and CassandraDaemon runs as a plain java process.
#
#   cassandra.sh start    start the node (idempotent), wait until CQL answers
#   cassandra.sh stop     stop the node started by this script
#   cassandra.sh status   exit 0 when running and answering CQL, 1 otherwise
#   cassandra.sh wipe     stop and delete the state dir (data, logs), keep jars
#   cassandra.sh fetch    only download the jars into the cache
#
# See README.md beside this file for the environment variables.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

CASSANDRA_VERSION="${INBOXD_CASSANDRA_VERSION:-5.0.9}"
CACHE_DIR="${INBOXD_CASSANDRA_HOME:-${HOME}/.cache/inboxd/cassandra}"
STATE_DIR="${INBOXD_CASSANDRA_STATE:-${CACHE_DIR}/state}"
# Java gets these paths in system properties and a file:// URL: make them absolute.
[[ "${CACHE_DIR}" == /* ]] || CACHE_DIR="${PWD}/${CACHE_DIR}"
[[ "${STATE_DIR}" == /* ]] || STATE_DIR="${PWD}/${STATE_DIR}"
LIB_DIR="${CACHE_DIR}/lib"
HOST="127.0.0.1"
PORT="${INBOXD_CASSANDRA_PORT:-9042}"
STORAGE_PORT="${INBOXD_CASSANDRA_STORAGE_PORT:-7000}"
HEAP="${INBOXD_CASSANDRA_HEAP:-1G}"
START_TIMEOUT="${INBOXD_CASSANDRA_START_TIMEOUT:-180}"
STOP_TIMEOUT=30

CONF_DIR="${STATE_DIR}/conf"
DATA_DIR="${STATE_DIR}/data"
LOG_DIR="${STATE_DIR}/logs"
PID_FILE="${STATE_DIR}/cassandra.pid"
OUT_LOG="${LOG_DIR}/stdout.log"
MARKER="${LIB_DIR}/.complete"
JAVA17_DEFAULT="/usr/lib/jvm/java-17-openjdk-amd64"

log() { echo "cassandra: $*" >&2; }
die() { log "$*"; exit 1; }

for v in PORT STORAGE_PORT START_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "INBOXD_CASSANDRA_${v} must be a number, got '${!v}'"
done
[[ "${HEAP}" =~ ^[0-9]+[mMgG]$ ]] || die "INBOXD_CASSANDRA_HEAP must look like 512M or 1G, got '${HEAP}'"

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# --- process helpers ---------------------------------------------------------

# Prints the PID from the pid file when that process is alive and is the
# CassandraDaemon started with this state dir (guards against PID reuse).
running_pid() {
  [[ -f "${PID_FILE}" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' <"${PID_FILE}")"
  [[ -n "${pid}" ]] || return 1
  kill -0 "${pid}" 2>/dev/null || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null || true)"
  [[ "${cmdline}" == *org.apache.cassandra.service.CassandraDaemon* ]] || return 1
  [[ "${cmdline}" == *"-Dcassandra.storagedir=${DATA_DIR} "* ]] || return 1
  echo "${pid}"
}

port_open() {
  (exec 3<>"/dev/tcp/${HOST}/${PORT}") 2>/dev/null
}

cql_version() {
  python3 "${SCRIPT_DIR}/cqlping.py" --host "${HOST}" --port "${PORT}" --timeout 5 2>/dev/null
}

show_logs() {
  local f
  for f in "${OUT_LOG}" "${LOG_DIR}/system.log"; do
    if [[ -s "${f}" ]]; then
      log "last 40 lines of ${f}:"
      tail -n 40 "${f}" >&2
    fi
  done
}

# Sends TERM, waits up to STOP_TIMEOUT seconds, then KILL.
kill_pid() {
  local pid="$1" i
  kill -TERM "${pid}" 2>/dev/null || return 0
  for ((i = 0; i < STOP_TIMEOUT * 4; i++)); do
    kill -0 "${pid}" 2>/dev/null || return 0
    sleep 0.25
  done
  log "pid ${pid} still alive after ${STOP_TIMEOUT}s, sending KILL"
  kill -KILL "${pid}" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    kill -0 "${pid}" 2>/dev/null || return 0
    sleep 0.25
  done
  die "pid ${pid} survived KILL"
}

# Serialises start/stop/wipe of one state dir.
take_lock() {
  mkdir -p "${STATE_DIR}"
  exec 9>"${STATE_DIR}/.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w "$((START_TIMEOUT + 60))" 9 || die "another cassandra.sh holds ${STATE_DIR}/.lock"
  fi
}

# --- prerequisites -----------------------------------------------------------

java_major() {
  local v
  v="$("$1" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
  [[ -n "${v}" ]] || return 1
  if [[ "${v}" == 1.* ]]; then v="${v#1.}"; fi
  echo "${v%%[.+-]*}"
}

# Sets JAVA_BIN and JAVA_HOME_USED to a Java 17 runtime.
find_java() {
  local candidates=() c major
  if [[ -n "${INBOXD_CASSANDRA_JAVA_HOME:-}" ]]; then
    candidates=("${INBOXD_CASSANDRA_JAVA_HOME}")
  else
    [[ -n "${JAVA_HOME:-}" ]] && candidates+=("${JAVA_HOME}")
    [[ -d "${JAVA17_DEFAULT}" ]] && candidates+=("${JAVA17_DEFAULT}")
    if command -v java >/dev/null 2>&1; then
      c="$(readlink -f "$(command -v java)")"
      candidates+=("${c%/bin/java}")
    fi
  fi
  local tried=""
  for c in "${candidates[@]}"; do
    [[ -x "${c}/bin/java" ]] || { tried+=" ${c}(no bin/java)"; continue; }
    major="$(java_major "${c}/bin/java" || echo unknown)"
    if [[ "${major}" == 17 ]]; then
      JAVA_BIN="${c}/bin/java"
      JAVA_HOME_USED="${c}"
      [[ -z "${tried}" ]] || log "skipped${tried}; using Java 17 at ${c}"
      return 0
    fi
    tried+=" ${c}(Java ${major})"
  done
  if [[ "${tried}" =~ Java\ (2[4-9]|[3-9][0-9]) ]]; then
    log "Java 24 and newer cannot run Cassandra 5.0 (it calls System.setSecurityManager)."
  fi
  die "no Java 17 found (tried:${tried:- nothing}). Install it (apt-get install -y openjdk-17-jdk-headless) or set INBOXD_CASSANDRA_JAVA_HOME / JAVA_HOME to a Java 17 JDK."
}

lib_complete() {
  [[ -f "${MARKER}" ]] && [[ "$(cat "${MARKER}")" == "${CASSANDRA_VERSION}" ]] &&
    compgen -G "${LIB_DIR}/cassandra-all-${CASSANDRA_VERSION}.jar" >/dev/null
}

fetch_jars() {
  if lib_complete; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 ||
    die "mvn (Maven) is needed once to download Cassandra's jars: apt-get install -y maven (or https://maven.apache.org/install.html), then run again."
  mkdir -p "${CACHE_DIR}"
  local tmp="${LIB_DIR}.tmp.$$"
  rm -rf "${tmp}"
  log "downloading cassandra-all ${CASSANDRA_VERSION} and its dependencies with Maven into ${LIB_DIR} (first run only)..."
  local t0=${SECONDS}
  # The sed strips the colour resets that Maven 3.8 prints even with -q.
  if ! JAVA_HOME="${JAVA_HOME_USED}" mvn -q -B -Dstyle.color=never -f "${SCRIPT_DIR}/pom.xml" \
    -Dcassandra.version="${CASSANDRA_VERSION}" \
    dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="${tmp}" 2>&1 |
    sed -e 's/\x1b\[[0-9;]*m//g' -e '/^$/d' >&2; then
    rm -rf "${tmp}"
    die "Maven could not fetch org.apache.cassandra:cassandra-all:${CASSANDRA_VERSION} (see the output above)"
  fi
  compgen -G "${tmp}/cassandra-all-${CASSANDRA_VERSION}.jar" >/dev/null ||
    { rm -rf "${tmp}"; die "cassandra-all-${CASSANDRA_VERSION}.jar missing after download"; }
  rm -rf "${LIB_DIR}"
  mv "${tmp}" "${LIB_DIR}"
  echo "${CASSANDRA_VERSION}" >"${MARKER}"
  log "fetched $(find "${LIB_DIR}" -name '*.jar' | wc -l) jars ($(du -sh "${LIB_DIR}" | cut -f1)) in $((SECONDS - t0))s"
}

write_config() {
  mkdir -p "${CONF_DIR}" "${DATA_DIR}" "${LOG_DIR}" "${STATE_DIR}/triggers"
  sed -e "s/^native_transport_port:.*/native_transport_port: ${PORT}/" \
    -e "s/^storage_port:.*/storage_port: ${STORAGE_PORT}/" \
    -e "s/- seeds: .*/- seeds: \"${HOST}:${STORAGE_PORT}\"/" \
    "${SCRIPT_DIR}/cassandra.yaml" >"${CONF_DIR}/cassandra.yaml"
  cp "${SCRIPT_DIR}/logback.xml" "${CONF_DIR}/logback.xml"
}

# JVM flags from Cassandra's conf/jvm-server.options and jvm17-server.options.
java_args() {
  local jamm
  jamm="$(find "${LIB_DIR}" -maxdepth 1 -name 'jamm-*.jar' | sort | tail -n 1)"
  [[ -n "${jamm}" ]] || die "jamm jar missing in ${LIB_DIR}; delete that folder and run start again"
  JAVA_ARGS=(
    "-Xms${HEAP}" "-Xmx${HEAP}" -Xss256k
    -XX:+UseG1GC -XX:MaxGCPauseMillis=300 -XX:+ParallelRefProcEnabled
    -XX:+PerfDisableSharedMem -XX:+ExitOnOutOfMemoryError
    "-javaagent:${jamm}"
    -Djava.net.preferIPv4Stack=true
    -Djdk.attach.allowAttachSelf=true
    -Dio.netty.tryReflectionSetAccessible=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED
    "-Dcassandra.config=file://${CONF_DIR}/cassandra.yaml"
    "-Dlogback.configurationFile=${CONF_DIR}/logback.xml"
    "-Dcassandra.storagedir=${DATA_DIR}"
    "-Dcassandra.logdir=${LOG_DIR}"
    "-Dcassandra.triggers_dir=${STATE_DIR}/triggers"
    -Dcassandra-foreground=yes
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.initial_token=0
    -Dcassandra.unsafesystem=true
    -cp "${LIB_DIR}/*"
    org.apache.cassandra.service.CassandraDaemon
  )
}

# --- commands ----------------------------------------------------------------

cmd_start() {
  take_lock
  local pid version
  if pid="$(running_pid)"; then
    if version="$(cql_version)"; then
      echo "cassandra: up at ${HOST}:${PORT} (release ${version}, pid ${pid})"
      return 0
    fi
    log "pid ${pid} is running but CQL does not answer yet; waiting for it"
    wait_ready "${pid}"
    return
  fi
  rm -f "${PID_FILE}"
  if port_open; then
    die "${HOST}:${PORT} is already in use by a process this script did not start; stop it or set INBOXD_CASSANDRA_PORT"
  fi

  find_java
  command -v python3 >/dev/null 2>&1 || die "python3 is needed for the CQL readiness check (cqlping.py)"
  fetch_jars
  write_config
  java_args

  : >"${OUT_LOG}"
  # setsid: own session, so the node outlives the calling shell and its
  # Ctrl-C. The inner bash writes its own PID and then execs java (same PID).
  local launcher=()
  if command -v setsid >/dev/null 2>&1; then launcher=(setsid); fi
  STARTED_AT=${SECONDS}
  # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
  "${launcher[@]}" bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "${PID_FILE}" \
    "${JAVA_BIN}" "${JAVA_ARGS[@]}" >"${OUT_LOG}" 2>&1 </dev/null 9>&- &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s "${PID_FILE}" ]] && break
    sleep 0.1
  done
  [[ -s "${PID_FILE}" ]] || die "java did not start (no pid file); see ${OUT_LOG}"
  pid="$(tr -dc '0-9' <"${PID_FILE}")"
  log "started pid ${pid} (Java 17 at ${JAVA_HOME_USED}, heap ${HEAP}, state ${STATE_DIR}); waiting up to ${START_TIMEOUT}s for CQL on ${HOST}:${PORT}"
  wait_ready "${pid}"
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT)) version
  : "${STARTED_AT:=${SECONDS}}"
  while ((SECONDS < deadline)); do
    if ! kill -0 "${pid}" 2>/dev/null; then
      rm -f "${PID_FILE}"
      show_logs
      die "process ${pid} exited during start-up"
    fi
    if port_open && version="$(cql_version)"; then
      echo "cassandra: up at ${HOST}:${PORT} (release ${version}, pid ${pid}) after $((SECONDS - STARTED_AT))s"
      return 0
    fi
    sleep 1
  done
  show_logs
  log "CQL did not answer on ${HOST}:${PORT} within ${START_TIMEOUT}s; stopping pid ${pid}"
  kill_pid "${pid}"
  rm -f "${PID_FILE}"
  exit 1
}

cmd_stop() {
  [[ -d "${STATE_DIR}" ]] || { log "not running"; return 0; }
  take_lock
  local pid
  if pid="$(running_pid)"; then
    log "stopping pid ${pid}"
    kill_pid "${pid}"
    log "stopped"
  else
    log "not running"
  fi
  rm -f "${PID_FILE}"
}

cmd_status() {
  local pid version
  if pid="$(running_pid)"; then
    if version="$(cql_version)"; then
      echo "cassandra: running at ${HOST}:${PORT} (release ${version}, pid ${pid})"
      return 0
    fi
    echo "cassandra: pid ${pid} alive but CQL not answering on ${HOST}:${PORT} (starting?)"
    return 1
  fi
  echo "cassandra: not running (would listen on ${HOST}:${PORT})"
  return 1
}

cmd_wipe() {
  cmd_stop
  if [[ -d "${STATE_DIR}" ]]; then
    rm -rf "${STATE_DIR}"
    log "deleted ${STATE_DIR} (jar cache ${LIB_DIR} kept)"
  fi
}

cmd_fetch() {
  find_java
  fetch_jars
  log "jars ready in ${LIB_DIR}"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  wipe) cmd_wipe ;;
  fetch) cmd_fetch ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
