#!/usr/bin/env bash
# Install stt-bridge as a systemd service on a Raspberry Pi / Orange Pi (Raspberry Pi OS, Armbian, Debian)
# or any Debian-like box. Run as root from a clone:
#
#   sudo scripts/install.sh                 # the worker (microphone -> MQTT): the default
#   sudo scripts/install.sh --server        # the WebSocket server
#   sudo scripts/install.sh --worker --server
#   sudo scripts/install.sh --dry-run       # print what would be done, change nothing
#
# What it does, each step skipped when already done (running it again upgrades the code in place):
#   1. the Debian packages the service needs at run time (scripts/install-system-packages.sh)
#   2. a system user stt (group stt, and audio for the microphone)
#   3. a copy of this clone at PREFIX (default /opt/stt-bridge), with a venv at PREFIX/.venv and
#      `pip install PREFIX[worker]` (PREFIX[all] with --server)
#   4. /etc/stt-bridge/{worker,server}.env from config/*.env.example, only when absent (0640 root:stt: they
#      may hold STT_TOKEN, WS_TOKEN, MQTT_PASSWORD)
#   5. the unit(s) into /etc/systemd/system, then `systemctl daemon-reload` when systemd is running, and a
#      restart of a unit that is already running so that it picks up the new code
# It does not enable or start anything new: it prints the commands for that.
set -euo pipefail
# the installed tree must be readable by the service user whatever root's umask is
umask 022

PROG=$(basename "$0")
SRC=$(cd "$(dirname "$0")/.." && pwd -P)
PREFIX=/opt/stt-bridge
ETC_DIR=/etc/stt-bridge
UNIT_DIR=/etc/systemd/system
SERVICE_USER=stt
MARKER=.stt-bridge-install   # in PREFIX: says the directory is ours to refresh
# Debian's interpreter (the python3 package), not whatever python3 comes first in root's PATH: a pyenv or
# conda python under /root is not reachable by the service user, and the venv links to its interpreter
PYTHON=${PYTHON:-/usr/bin/python3}
worker=0 server=0 dry_run=0
ARGS=("$@")

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  cat <<EOF
Options:
  --worker        install stt-worker (the default when neither --worker nor --server is given)
  --server        install stt-server
  --prefix DIR    where the code and its venv go (default $PREFIX); the units name /opt/stt-bridge, so
                  another prefix gets its ExecStart= rewritten
  --dry-run       print the commands instead of running them
  -h, --help      this text
Environment:
  PYTHON          the interpreter for the venv (default /usr/bin/python3, Debian's; 3.11 or newer)
EOF
}

die() { echo "$PROG: $*" >&2; exit 1; }
say() { echo "==> $*"; }
# run a command, or with --dry-run only show it
run() {
  if [ "$dry_run" -eq 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

while [ $# -gt 0 ]; do
  case $1 in
    --worker) worker=1 ;;
    --server) server=1 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift ;;
    --prefix=*) PREFIX=${1#--prefix=} ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[ "$worker" -eq 0 ] && [ "$server" -eq 0 ] && worker=1

roles=()
[ "$worker" -eq 1 ] && roles+=(worker)
[ "$server" -eq 1 ] && roles+=(server)
extra=worker
[ "$server" -eq 1 ] && extra=all

# ---- checks ----------------------------------------------------------------------------------------------
case $PREFIX in
  /*) ;;
  *) die "--prefix must be an absolute path, got '$PREFIX'" ;;
esac
PREFIX=${PREFIX%/}
case $PREFIX in
  ''|/bin|/boot|/dev|/etc|/home|/lib|/opt|/proc|/root|/run|/sbin|/sys|/tmp|/usr|/usr/*bin|/usr/lib|/var)
    die "refusing --prefix '${PREFIX:-/}': it gets emptied on upgrade; use a directory of its own" ;;
esac
if ! grep -qs '^name = "stt-bridge"' "$SRC/pyproject.toml"; then
  die "run me from an stt-bridge clone (no stt-bridge pyproject.toml in $SRC)"
fi
if [ "$(id -u)" -ne 0 ] && [ "$dry_run" -eq 0 ]; then
  die "run as root (sudo $0${ARGS[*]:+ ${ARGS[*]}}): it creates a user and writes $PREFIX, $ETC_DIR and $UNIT_DIR"
fi
# compare real paths: a PREFIX that is a symlink to this clone is "in place", and the refresh below empties
# PREFIX, so it must neither hold this clone nor sit inside it
PREFIX_REAL=$PREFIX
[ -d "$PREFIX" ] && PREFIX_REAL=$(cd "$PREFIX" && pwd -P)
case $SRC/ in
  "$PREFIX_REAL"/) ;;
  "$PREFIX_REAL"/*) die "this clone ($SRC) is inside --prefix $PREFIX: clone elsewhere or install in place" ;;
esac
case $PREFIX_REAL/ in
  "$SRC"/?*) die "--prefix $PREFIX is inside this clone ($SRC)" ;;
esac

# ---- 1. Debian packages ----------------------------------------------------------------------------------
packages=(python3 python3-venv ca-certificates)
# libportaudio2: sounddevice's audio I/O; alsa-utils: arecord -l to find AUDIO_DEVICE. Not libasound2-plugins:
# the worker opens a microphone at its own rate and resamples it itself (soxr), and PortAudio's device scan
# opens every PCM that package defines, its a52 and lavrate ones pulling libavcodec and its codecs into the
# daemon (+17 MB RSS, bench/RESULTS.md "Idle worker"). A microphone held by PulseAudio or PipeWire needs
# their ALSA plugin (libasound2-plugins, pipewire-alsa) and AUDIO_DEVICE=pulse or pipewire.
[ "$worker" -eq 1 ] && packages+=(libportaudio2 alsa-utils)
say "Debian packages: ${packages[*]}"
run bash "$SRC/scripts/install-system-packages.sh" "${packages[@]}"
if [ "$dry_run" -eq 0 ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "stt-bridge needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1) (Debian 12 / Raspberry Pi OS bookworm or newer)"
fi

# ---- 2. user ---------------------------------------------------------------------------------------------
if id -u "$SERVICE_USER" > /dev/null 2>&1; then
  say "user $SERVICE_USER exists"
else
  say "creating system user $SERVICE_USER"
  run useradd --system --user-group --home-dir /var/lib/stt-bridge --no-create-home \
    --shell /usr/sbin/nologin --comment "stt-bridge speech-to-text" "$SERVICE_USER"
fi
# the unit adds audio too (SupplementaryGroups=); membership also lets `sudo -u stt arecord -l` see the cards
if getent group audio > /dev/null && ! id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx audio; then
  run usermod --append --groups audio "$SERVICE_USER"
fi

# ---- 3. code and venv ------------------------------------------------------------------------------------
if [ "$SRC" = "$PREFIX_REAL" ]; then
  say "installing from $SRC in place"
else
  if [ -d "$PREFIX" ] && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ] && [ ! -e "$PREFIX/$MARKER" ]; then
    die "$PREFIX exists and was not made by $PROG (no $MARKER): move it away or pick another --prefix"
  fi
  say "copying $SRC to $PREFIX (its .venv is kept)"
  run install -d -m 0755 "$PREFIX"
  # everything but the venv goes, so that a file deleted upstream does not linger in the installed package
  run find "$PREFIX" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
  if [ "$dry_run" -eq 1 ]; then
    echo "+ tar -C $SRC -c . (without .git, .venv, caches) | tar -C $PREFIX -x"
  else
    # local secrets (config/*.env, .env) stay behind: the services read /etc/stt-bridge
    tar -C "$SRC" -c --exclude=./.git --exclude=./.venv --exclude='__pycache__' --exclude='*.pyc' \
      --exclude=./.pytest_cache --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./bench/out \
      --exclude='./config/*.env' --exclude=./.env . \
      | tar -C "$PREFIX" -x --no-same-owner
    find "$PREFIX" -mindepth 1 -maxdepth 1 ! -name .venv -exec chown -R root:root {} + \
      -exec chmod -R u+rwX,go+rX,go-w {} +
  fi
  run touch "$PREFIX/$MARKER"
fi
if [ -x "$PREFIX/.venv/bin/python" ]; then
  say "venv $PREFIX/.venv exists"
else
  say "creating venv $PREFIX/.venv"
  run "$PYTHON" -m venv "$PREFIX/.venv"
fi
say "pip install '${PREFIX}[${extra}]'"
run "$PREFIX/.venv/bin/python" -m pip install --quiet --upgrade pip
# --upgrade: the project (a local directory) is rebuilt every time; its dependencies only when they must
run "$PREFIX/.venv/bin/python" -m pip install --upgrade "${PREFIX}[${extra}]"

# ---- 4. configuration ------------------------------------------------------------------------------------
run install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC_DIR"
for role in "${roles[@]}"; do
  env_file=$ETC_DIR/$role.env
  example=$SRC/config/$role.env.example
  if [ -e "$env_file" ]; then
    say "$env_file exists: kept (compare with $example after an upgrade)"
  elif [ -f "$example" ]; then
    say "$env_file from $example"
    run install -m 0640 -o root -g "$SERVICE_USER" "$example" "$env_file"
  else
    say "$env_file: no $example, writing an empty one (every variable has a default)"
    if [ "$dry_run" -eq 0 ]; then
      printf '# stt-%s configuration (see the project README); every variable has a default\n' "$role" > "$env_file"
      chown "root:$SERVICE_USER" "$env_file"
      chmod 0640 "$env_file"
    fi
  fi
done

# ---- 5. systemd units ------------------------------------------------------------------------------------
for role in "${roles[@]}"; do
  unit=stt-$role.service
  say "$UNIT_DIR/$unit"
  if [ "$PREFIX" = /opt/stt-bridge ]; then
    run install -m 0644 "$SRC/systemd/$unit" "$UNIT_DIR/$unit"
  elif [ "$dry_run" -eq 1 ]; then
    echo "+ sed 's#/opt/stt-bridge/#$PREFIX/#' $SRC/systemd/$unit > $UNIT_DIR/$unit"
  else
    sed "s#/opt/stt-bridge/#$PREFIX/#g" "$SRC/systemd/$unit" > "$UNIT_DIR/$unit"
    chmod 0644 "$UNIT_DIR/$unit"
  fi
done

if [ -d /run/systemd/system ]; then
  run systemctl daemon-reload
  for role in "${roles[@]}"; do
    # a unit that is running now gets the new code; one that is stopped stays stopped
    run systemctl try-restart "stt-$role.service"
  done
  systemd_running=1
else
  systemd_running=0
fi

echo
say "installed: ${roles[*]} in $PREFIX"
echo "Next steps:"
for role in "${roles[@]}"; do
  echo "  edit $ETC_DIR/$role.env (every line is optional; see the comments in it)"
done
[ "$worker" -eq 1 ] && echo "  arecord -l                    # pick the microphone for AUDIO_DEVICE"
[ "$systemd_running" -eq 0 ] && echo "  systemctl daemon-reload       # systemd is not running here now; run this once it is"
for role in "${roles[@]}"; do
  echo "  systemctl enable --now stt-$role"
  echo "  journalctl -u stt-$role -f"
done
[ "$server" -eq 1 ] && echo "  curl -s localhost:9000/health"
exit 0
