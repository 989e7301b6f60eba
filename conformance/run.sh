#!/usr/bin/env bash
# Run the client-conformance suites (simple-salesforce via pytest, jsforce via node --test)
# against an already running Conflux server. This script never starts a server.
#
# Required environment: CONFLUX_HTTP_URL CONFLUX_HTTPS_URL CONFLUX_GRPC_ADDR CONFLUX_CA_FILE CONFLUX_USERNAME
# CONFLUX_PASSWORD CONFLUX_CLIENT_ID CONFLUX_CLIENT_SECRET CONFLUX_JWT_KEY_FILE
#
# Optional: PYTHON (interpreter for the venv, default python3, needs >= 3.10),
# CONFLUX_CONFORMANCE_VERBOSE=1 (stream the runners' output instead of summarising),
# CONFLUX_CONFORMANCE_SUITES="python node browser" (subset to run), CHROMIUM (the browser for
# the console suite, default /usr/bin/chromium; installed with apt-get when missing and possible),
# CONFLUX_SCREENSHOTS (where the console suite writes its screenshots).
#
# Installs are idempotent: conformance/python/.venv is (re)built and `npm ci` is re-run only
# when requirements.txt / package-lock.json (or the interpreter) changed.
# Exit status: 0 when every selected suite passed, 1 when a suite failed, 2 on set-up errors.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
verbose="${CONFLUX_CONFORMANCE_VERBOSE:-0}"
suites="${CONFLUX_CONFORMANCE_SUITES:-python node browser}"

die() { echo "conformance: $*" >&2; exit 2; }

missing=()
for var in CONFLUX_HTTP_URL CONFLUX_HTTPS_URL CONFLUX_GRPC_ADDR CONFLUX_CA_FILE CONFLUX_USERNAME CONFLUX_PASSWORD \
           CONFLUX_CLIENT_ID CONFLUX_CLIENT_SECRET CONFLUX_JWT_KEY_FILE; do
  [[ -n "${!var:-}" ]] || missing+=("$var")
done
if ((${#missing[@]})); then
  die "missing environment: ${missing[*]}
These suites need a running Conflux server; they never start one. Use \`cargo xtask conformance\`,
or start \`conflux serve --data \"\$(mktemp -d)\" --http 127.0.0.1:0 --https 127.0.0.1:0\` yourself
and export the CONFLUX_* variables for it."
fi
[[ -f "$CONFLUX_CA_FILE" ]] || die "CONFLUX_CA_FILE=$CONFLUX_CA_FILE is not a file"
[[ -f "$CONFLUX_JWT_KEY_FILE" ]] || die "CONFLUX_JWT_KEY_FILE=$CONFLUX_JWT_KEY_FILE is not a file"

logdir="$(mktemp -d "${TMPDIR:-/tmp}/conflux-conformance.XXXXXX")"
trap 'rm -rf "$logdir"' EXIT

sha() { sha256sum "$@" | cut -d' ' -f1; }

# Run a set-up step quietly; show its output only if it fails.
quiet() {
  local log="$logdir/setup.log"
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    die "set-up step failed: $*"
  fi
}

setup_python() {
  local py="${PYTHON:-python3}" venv="$here/python/.venv"
  command -v "$py" >/dev/null || die "$py not found (set PYTHON)"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "$py is older than 3.10"
  local want have=""
  want="$(sha "$here/python/requirements.txt") $("$py" -c 'import sys; print(sys.version)' | head -1)"
  [[ -f "$venv/.conflux-stamp" ]] && have="$(cat "$venv/.conflux-stamp")"
  if [[ "$want" != "$have" || ! -x "$venv/bin/python" ]]; then
    rm -rf "$venv"
    quiet "$py" -m venv "$venv"
    quiet "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
    printf '%s\n' "$want" >"$venv/.conflux-stamp"
  fi
}

# `npm ci` in DIR, again only when its lockfile or Node changed.
npm_install() {
  local dir="$1" want have=""
  want="$(sha "$dir/package-lock.json") $(node --version)"
  [[ -f "$dir/node_modules/.conflux-stamp" ]] && have="$(cat "$dir/node_modules/.conflux-stamp")"
  if [[ "$want" != "$have" ]]; then
    (cd "$dir" && quiet npm ci --silent --no-audit --no-fund) || exit 2
    printf '%s\n' "$want" >"$dir/node_modules/.conflux-stamp"
  fi
}

setup_node() {
  command -v node >/dev/null || die "node not found"
  command -v npm >/dev/null || die "npm not found"
  npm_install "$here/node"
}

setup_browser() {
  command -v node >/dev/null || die "node not found"
  local chromium="${CHROMIUM:-/usr/bin/chromium}"
  if [[ ! -x "$chromium" ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
      echo "conformance: installing Debian's chromium for the console suite (once)"
      quiet apt-get update -q
      quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
    fi
    [[ -x "$chromium" ]] || die "no Chromium at $chromium: install it (apt-get install -y chromium) or set CHROMIUM"
  fi
  export CHROMIUM="$chromium"
  npm_install "$here/browser"
}

# run_suite NAME DIR CMD...: run a test runner; summarise on success, dump the log on failure.
failed=()
run_suite() {
  local name="$1" dir="$2"; shift 2
  local log="$logdir/$name.log" status
  if [[ "$verbose" == 1 ]]; then
    (cd "$dir" && "$@") 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
  else
    (cd "$dir" && "$@") >"$log" 2>&1
    status=$?
  fi
  if ((status == 0)); then
    [[ "$verbose" == 1 ]] || echo "$name: $(summary "$name" "$log")"
  else
    [[ "$verbose" == 1 ]] || cat "$log"
    echo "$name: FAILED (exit $status)" >&2
    failed+=("$name")
  fi
}

summary() {
  case "$1" in
    simple-salesforce) grep -E '^[0-9]+ passed' "$2" | tail -1 ;;
    jsforce|console)
      local pass fail
      pass="$(grep -E '^# pass [0-9]+' "$2" | tail -1 | awk '{print $3}')"
      fail="$(grep -E '^# fail [0-9]+' "$2" | tail -1 | awk '{print $3}')"
      echo "${pass:-?} passed, ${fail:-?} failed"  # cancelled tests make node exit non-zero
      ;;
  esac
}

for suite in $suites; do
  case "$suite" in
    python) setup_python ;;
    node) setup_node ;;
    browser) setup_browser ;;
    *) die "unknown suite '$suite' (expected python, node and/or browser)" ;;
  esac
done

for suite in $suites; do
  case "$suite" in
    python) run_suite simple-salesforce "$here/python" "$here/python/.venv/bin/python" -m pytest -q ;;
    node) run_suite jsforce "$here/node" node --test --test-reporter=tap ;;
    browser) run_suite console "$here/browser" node --test --test-reporter=tap ;;
  esac
done

if ((${#failed[@]})); then
  echo "conformance: failed: ${failed[*]}" >&2
  exit 1
fi
