# shellcheck shell=bash disable=SC2034  # DEFAULT_REDIS_URL and PYTHON are used by the scripts that source this
# Shared steps of scripts/demo, scripts/test and .ci/run. Sourced, not run.
# Each step does nothing when its work is already done, and stops with an exact instruction when
# it cannot do the work itself (installing system packages needs root).

PUSHSVC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$PUSHSVC_ROOT/.venv"
DEFAULT_REDIS_URL="redis://127.0.0.1:6379/0"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# A URL fit for printing: its password replaced.
redacted() { printf '%s' "$1" | sed -E 's#//([^:/@]*):[^@/]*@#//\1:***@#'; }

_apt_updated=""
apt_install() {
  say "installing $* with apt-get"
  if [ -z "$_apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" </dev/null
}

# Sets PYTHON to a Python 3.11 or newer.
find_python() {
  local candidate
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON="$(command -v "$candidate")"
      return 0
    fi
  done
  die "pushsvc needs Python 3.11 or newer. Install it (Debian 12: apt-get install -y python3 python3-venv;
       Ubuntu 22.04: apt-get install -y python3.11 python3.11-venv), then run this again."
}

# Creates .venv with $PYTHON; installs the venv module from apt when Debian left it out.
ensure_venv() {
  [ -x "$VENV/bin/python" ] && return 0
  say "creating the virtualenv $VENV with $PYTHON"
  local output
  if output="$("$PYTHON" -m venv "$VENV" 2>&1)"; then
    return 0
  fi
  rm -rf "$VENV"  # a failed venv leaves a half-made folder that would pass the check above
  case "$output" in
    *ensurepip*) ;;
    *) die "could not create $VENV: $output" ;;
  esac
  local version package
  version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  package="python$version-venv"
  is_root || die "Python's venv module is missing. Run: sudo apt-get install -y $package (or python3-venv), then run this again."
  apt_install "$package" || apt_install python3-venv
  "$PYTHON" -m venv "$VENV" || { rm -rf "$VENV"; die "could not create $VENV"; }
}

# pip install -e '.[dev]' when pyproject.toml changed since the last install.
ensure_installed() {
  local stamp="$VENV/.pushsvc-installed"
  if [ -e "$stamp" ] && [ ! "$PUSHSVC_ROOT/pyproject.toml" -nt "$stamp" ] && [ -x "$VENV/bin/pushsvc" ]; then
    return 0
  fi
  say "installing pushsvc and its dependencies into .venv (a minute the first time)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "${PUSHSVC_ROOT}[dev]" </dev/null ||
    die "pip install -e '.[dev]' failed (see above)"
  touch "$stamp"
}

# True when a Redis server answers PING at the URL (an error reply such as NOAUTH counts: it is there).
redis_answers() {
  "$PYTHON" - "$1" <<'PY'
import socket, ssl, sys
from urllib.parse import urlsplit

url = urlsplit(sys.argv[1])
try:
    if url.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(2)
        sock.connect(url.path)
    else:
        sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=2)
        if url.scheme == "rediss":
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # only asking whether it is up
            sock = ctx.wrap_socket(sock)
    with sock:
        sock.sendall(b"PING\r\n")
        reply = sock.recv(64)
except OSError:
    sys.exit(1)
sys.exit(0 if reply[:1] in (b"+", b"-") else 1)
PY
}

# Makes sure Redis answers at the URL: starts a local one (installing it as root) when the URL is local.
ensure_redis() {
  local url="$1" shown host port
  shown="$(redacted "$url")"
  redis_answers "$url" && return 0
  read -r host port < <("$PYTHON" -c '
import sys; from urllib.parse import urlsplit
u = urlsplit(sys.argv[1]); print(u.hostname if u.scheme == "redis" else "-", u.port or 6379)' "$url")
  case "$host" in
    127.0.0.1 | localhost) ;;
    *) die "Redis does not answer at $shown. Start it, or set PUSHSVC_REDIS_URL to one that runs." ;;
  esac
  if ! command -v redis-server >/dev/null 2>&1; then
    is_root || die "Redis is not installed. Run: sudo apt-get install -y redis-server (or set PUSHSVC_REDIS_URL to a running Redis), then run this again."
    apt_install redis-server
    redis_answers "$url" && return 0  # the package may have started its own service
  fi
  local dir="$PUSHSVC_ROOT/var/redis"
  mkdir -p "$dir"
  say "starting Redis on 127.0.0.1:$port (data and log in $dir; stop it with: redis-cli -p $port shutdown)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --appendonly yes --appendfsync everysec \
    --dir "$dir" --logfile "$dir/redis.log"
  wait_until 10 redis_answers "$url" || die "Redis did not start; see $dir/redis.log"
}

# wait_until SECONDS COMMAND...: retries COMMAND every 0.2 s for up to SECONDS; false if it never succeeds.
wait_until() {
  local tries=$(($1 * 5))
  shift
  while ! "$@" >/dev/null 2>&1; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || return 1
    sleep 0.2
  done
}

# The browser tests drive Debian's Chromium; Playwright's own browser download is not used.
CHROMIUM="${PUSHSVC_CHROMIUM:-/usr/bin/chromium}"
# A CJK font too: without one the screenshots show Chinese as empty boxes.
ensure_chromium() {
  local missing=()
  [ -x "$CHROMIUM" ] || missing+=(chromium)
  [ -n "$(fc-list :lang=zh 2>/dev/null)" ] || missing+=(fonts-wqy-zenhei)
  [ ${#missing[@]} -eq 0 ] && return 0
  is_root || die "the browser tests need ${missing[*]}. Run: sudo apt-get install -y ${missing[*]}, then run this again."
  apt_install "${missing[@]}"
}
