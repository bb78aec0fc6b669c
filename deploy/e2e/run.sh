#!/usr/bin/env bash
# Proof of the deploy path without a Pi (make e2e-deploy):
#   1. an arm64 Debian Bookworm rootfs from debootstrap, run under qemu-user (cached; rebuilt only when missing),
#   2. site.yml applied to a fresh copy of it through the community.general.chroot connection,
#   3. a second run that must change nothing,
#   4. the rootfs booted with systemd-nspawn: hairmirror.service (Type=notify, demo camera) must reach
#      `active`, i.e. it sent READY=1, and its page must answer,
#      (then: the watchdog restarts a frozen daemon, a stop is clean, a config error is not restarted),
#   5. a third run against the booted container (the role's own final check runs there), again changing nothing,
#   6. bench.yml against it with tiny budgets: the daemon stopped for the bench and started again, three results fetched.
# Needs root, debootstrap, qemu-user-static, binfmt-support, systemd-container (apt) and ansible in .venv.
# Timings are printed per step; everything runs under emulation, so they say nothing about a Pi's speed.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${HAIRMIRROR_E2E_CACHE:-/var/tmp/hairmirror-e2e}"
BASE="$CACHE/base-bookworm-arm64"
ROOT="$CACHE/rootfs"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
VENV_BIN="${VENV_BIN:-$REPO/.venv/bin}"
BOOT_TIMEOUT="${HAIRMIRROR_E2E_BOOT_TIMEOUT:-3600}"
LOG="$CACHE/logs"
PORT=18731  # hairmirror_web_port in deploy/e2e/vars.yml
NSPAWN_PID=""

say() { printf '\n== %s  [%s]\n' "$*" "$(date +%T)"; }
die() { echo "e2e-deploy: $*" >&2; exit 1; }
elapsed() { echo $(( $(date +%s) - $1 )); }
declare -A TIMES

[ "$(id -u)" = 0 ] || { echo "e2e-deploy: needs root (debootstrap, chroot, nspawn)" >&2; exit 2; }
for tool in debootstrap systemd-nspawn nsenter qemu-aarch64-static; do
  command -v "$tool" >/dev/null || { echo "e2e-deploy: $tool missing: apt-get install debootstrap \
qemu-user-static binfmt-support systemd-container" >&2; exit 2; }
done
[ -x "$VENV_BIN/ansible-playbook" ] || { echo "e2e-deploy: $VENV_BIN/ansible-playbook missing (make install)" >&2; exit 2; }
mkdir -p "$CACHE" "$LOG" "$CACHE/pip-cache" "$CACHE/apt-archives/partial"

cleanup() {
  if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    kill "$NSPAWN_PID" 2>/dev/null || true  # SIGTERM: nspawn asks the container's systemd to power off
    for _ in $(seq 45); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 2; done
    kill "$NSPAWN_PID" 2>/dev/null || true  # a second SIGTERM: terminate the container now
    for _ in $(seq 15); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 2; done
    kill -9 "$NSPAWN_PID" 2>/dev/null || true
  fi
  for m in var/cache/apt/archives root/.cache/pip dev/pts dev proc; do
    mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m"
  done
  return 0
}
trap cleanup EXIT

# ---- 0. arm64 binaries run through qemu-user (binfmt_misc, F flag: works inside chroots) ----
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi

# ---- 1. the cached base rootfs ----
say "1. arm64 Bookworm rootfs (cache: $BASE)"
t=$(date +%s)
if [ ! -e "$BASE/.complete" ]; then
  rm -rf "$BASE.tmp"
  debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,python3-apt,ca-certificates,systemd,systemd-sysv,dbus,iproute2 \
    bookworm "$BASE.tmp" "$MIRROR" > "$LOG/debootstrap.log" 2>&1 || { tail -20 "$LOG/debootstrap.log"; die "debootstrap failed"; }
  rm -rf "$BASE" && mv "$BASE.tmp" "$BASE" && touch "$BASE/.complete"
fi
TIMES[rootfs]=$(elapsed "$t")

# A fresh copy per run, so the first ansible run really starts from a bare system.
say "   fresh working copy: $ROOT"
t=$(date +%s)
rm -rf "$ROOT" && cp -a "$BASE" "$ROOT"
# What a flashed card has and a debootstrap lacks: the boot partition with its config.txt and cmdline.txt.
mkdir -p "$ROOT/boot/firmware" && cp "$REPO"/deploy/e2e/bootfs/{config.txt,cmdline.txt} "$ROOT/boot/firmware/"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
echo mirror-e2e > "$ROOT/etc/hostname"
# This machine reaches the registries through a TLS-inspecting proxy: trust its CA inside the rootfs too.
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -e "$crt" ] && cat "$crt" >> "$ROOT/etc/ssl/certs/ca-certificates.crt"
done
TIMES[copy]=$(elapsed "$t")

# ---- 2./3. ansible through the chroot connection (no /sys: onnxruntime crashes reading it under qemu) ----
mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev" && mount --bind /dev/pts "$ROOT/dev/pts"
mkdir -p "$ROOT/root/.cache/pip" && mount --bind "$CACHE/pip-cache" "$ROOT/root/.cache/pip"
mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives"

INVENTORY="$CACHE/inventory.yml"
cat > "$INVENTORY" <<EOF
hairmirror:
  hosts:
    rootfs:
      ansible_host: $ROOT
      ansible_connection: community.general.chroot
      ansible_python_interpreter: /usr/bin/python3
      ansible_become: false
EOF
# The playbook, code and models deployed are the last commit's (git archive): a checkout others are editing would
# change the wheel between runs, and the second run would rightly reinstall it.
SRC="$CACHE/src"
rm -rf "$SRC" && mkdir -p "$SRC" && git -C "$REPO" archive HEAD | tar -x -C "$SRC"
echo "   deploying commit $(git -C "$REPO" rev-parse --short HEAD)"
EXTRA=(-e "@$SRC/deploy/e2e/vars.yml" -e "hairmirror_source_dir=$SRC")
# the config's default model: the first of the role's hairmirror_models (tests tie it to device.segmenters)
DEFAULT_MODEL=models/$(awk '/^hairmirror_models:/ {getline; sub(/^ *- */, ""); print; exit}' \
  "$SRC/deploy/ansible/roles/hairmirror/defaults/main.yml")
if [ ! -f "$SRC/$DEFAULT_MODEL" ]; then
  echo "e2e-deploy: WARNING $DEFAULT_MODEL not exported yet: deploying the classical segmenter only" >&2
  EXTRA+=(-e '{"hairmirror_models": [], "hairmirror_segmenter_kind": "classical"}')
fi

playbook() {  # [BOOK=bench.yml] playbook NAME [extra args]: run site.yml (or BOOK), keep the log, check the recap
  local name=$1; shift
  local t; t=$(date +%s)
  (cd "$SRC/deploy/ansible" && env -u PIP_FIND_LINKS ANSIBLE_FORCE_COLOR=0 \
    "$VENV_BIN/ansible-playbook" -i "$INVENTORY" "${BOOK:-site.yml}" "${EXTRA[@]}" "$@") > "$LOG/$name.log" 2>&1 \
    || { tail -40 "$LOG/$name.log"; die "$name: ansible-playbook failed (log: $LOG/$name.log)"; }
  TIMES[$name]=$(elapsed "$t")
  RECAP=$(grep -A3 'PLAY RECAP' "$LOG/$name.log" | grep -E '^\S+\s+:' || true)
  echo "   $RECAP"
  echo "$RECAP" | grep -q 'failed=0' || die "$name: failures (log: $LOG/$name.log)"
}

say "2. site.yml, first run (chroot under qemu)"
playbook run1
say "3. site.yml, second run: must change nothing"
playbook run2
echo "$RECAP" | grep -q ' changed=0 ' || { grep -B2 -E '^changed:' "$LOG/run2.log" | head -40; die "second run changed something"; }
cleanup  # unmount before booting

# ---- 4. boot it under a real systemd ----
say "4. boot with systemd-nspawn; waiting for hairmirror.service to become active (READY=1)"
t=$(date +%s)
# qemu makes onnxruntime crash on /sys's CPU topology (of the x86 host); hide it from the daemon only.
# This drop-in is the emulation's, not the role's: a Pi has its own /sys.
mkdir -p "$ROOT/etc/systemd/system/hairmirror.service.d"
printf '[Service]\nTemporaryFileSystem=/sys/devices/system/cpu:ro\n' > "$ROOT/etc/systemd/system/hairmirror.service.d/zz-e2e-qemu.conf"
systemd-nspawn -q --register=no --keep-unit -D "$ROOT" -b --console=pipe > "$LOG/nspawn.log" 2>&1 &
NSPAWN_PID=$!
LEADER=""
for _ in $(seq 120); do  # the container's PID 1, found through its pid namespace
  for p in $(pgrep -P "$NSPAWN_PID" 2>/dev/null) $(for c in $(pgrep -P "$NSPAWN_PID" 2>/dev/null); do pgrep -P "$c"; done); do
    if grep -qE '^NSpid:\s+[0-9]+\s+1$' "/proc/$p/status" 2>/dev/null; then LEADER=$p; break 2; fi
  done
  kill -0 "$NSPAWN_PID" 2>/dev/null || { tail -30 "$LOG/nspawn.log"; die "nspawn exited"; }
  sleep 1
done
[ -n "$LEADER" ] || die "no container init found under nspawn ($NSPAWN_PID)"
inside() { nsenter --target "$LEADER" --all --root --wd -- "$@"; }

state=""
for _ in $(seq "$((BOOT_TIMEOUT / 5))"); do
  state=$(inside systemctl is-active hairmirror.service 2>/dev/null || true)
  case "$state" in
    active) break ;;
    failed) break ;;
  esac
  kill -0 "$NSPAWN_PID" 2>/dev/null || { tail -30 "$LOG/nspawn.log"; die "container stopped"; }
  sleep 5
done
inside systemctl --no-pager status hairmirror.service > "$LOG/status.txt" 2>&1 || true
inside journalctl --no-pager -u hairmirror.service > "$LOG/journal.txt" 2>&1 || true
TIMES[boot_to_active]=$(elapsed "$t")
head -15 "$LOG/status.txt"  # not cat | head: under pipefail a cat cut short by head fails the script
[ "$state" = active ] || { tail -40 "$LOG/journal.txt"; die "hairmirror.service is '$state', not active"; }
inside systemctl show hairmirror.service -p Type -p ActiveState -p SubState -p NRestarts -p WatchdogUSec -p StatusText
code=$(curl -s -o "$LOG/page.html" -w '%{http_code}' "http://127.0.0.1:$PORT/" || true)
echo "   page from the host: HTTP $code, $(wc -c < "$LOG/page.html") bytes"
[ "$code" = 200 ] || die "the page did not answer (HTTP $code)"

# ---- 4b. the watchdog, with the unit's real WatchdogSec: a frozen frame loop is killed and restarted ----
wait_active() {  # wait_active LABEL: until the service is active again (or fail)
  local st=""
  for _ in $(seq "$((BOOT_TIMEOUT / 5))"); do
    st=$(inside systemctl is-active hairmirror.service 2>/dev/null || true)
    [ "$st" = active ] && return 0
    sleep 5
  done
  inside journalctl --no-pager -u hairmirror.service | tail -30
  die "$1: hairmirror.service is '$st', not active"
}
show() { inside systemctl show hairmirror.service -p "$1" --value; }
say "4b. watchdog: SIGSTOP the daemon; systemd must kill and restart it within WatchdogSec=$(show WatchdogUSec)"
t=$(date +%s)
pid=$(show MainPID); restarts=$(show NRestarts)
inside /bin/sh -c "kill -STOP $pid"  # the shell's kill: a minbase rootfs has no /bin/kill
for _ in $(seq "$((BOOT_TIMEOUT / 5))"); do
  [ "$(show NRestarts)" -gt "$restarts" ] && break
  sleep 5
done
[ "$(show NRestarts)" -gt "$restarts" ] || die "the watchdog did not restart a stopped daemon"
# the journal into a file first: `journalctl | grep -q` under pipefail fails when grep's early exit leaves
# journalctl a SIGPIPE (a journal longer than a pipe's buffer), and journald may write the line a moment late
watchdog_logged() {
  inside journalctl --no-pager -u hairmirror.service > "$LOG/journal-watchdog.log" && grep -q "Watchdog timeout" "$LOG/journal-watchdog.log"
}
logged=no
for _ in 1 2 3 4 5 6; do watchdog_logged && { logged=yes; break; }; sleep 5; done
[ "$logged" = yes ] || { tail -30 "$LOG/journal-watchdog.log"; die "restarted, but not by the watchdog (no 'Watchdog timeout' in the journal)"; }
TIMES[watchdog_kill]=$(elapsed "$t")
wait_active "after the watchdog restart"
[ "$(show MainPID)" != "$pid" ] || die "same MainPID after a watchdog restart"
TIMES[watchdog_back]=$(elapsed "$t")
echo "   killed by the watchdog and restarted: NRestarts $restarts -> $(show NRestarts), pid $pid -> $(show MainPID)"

say "4c. SIGTERM (systemctl stop): the daemon stops cleanly with exit 0 within TimeoutStopSec"
t=$(date +%s)
inside systemctl stop hairmirror.service
status=$(show ExecMainStatus); result=$(show Result)
TIMES[stop]=$(elapsed "$t")
echo "   stopped in ${TIMES[stop]} s: ExecMainStatus=$status Result=$result"
[ "$status" = 0 ] && [ "$result" = success ] || die "stop was not clean (exit $status, result $result)"
inside systemctl start --no-block hairmirror.service
wait_active "after a clean restart"

say "4d. a config error (exit 2): the unit fails once and is not restarted (RestartPreventExitStatus=2)"
t=$(date +%s)
restarts=$(show NRestarts)
inside cp -p /etc/hairmirror/config.toml /etc/hairmirror/config.toml.e2e
inside /bin/sh -c 'printf "\nno_such_key = 1\n" >> /etc/hairmirror/config.toml'
inside systemctl restart --no-block hairmirror.service
for _ in $(seq "$((BOOT_TIMEOUT / 5))"); do
  [ "$(inside systemctl is-active hairmirror.service 2>/dev/null || true)" = failed ] && break
  sleep 5
done
sleep 20  # past RestartSec (the role's 5 s): a restart would have begun by now
state=$(inside systemctl is-active hairmirror.service 2>/dev/null || true)
status=$(show ExecMainStatus); after=$(show NRestarts)
inside mv /etc/hairmirror/config.toml.e2e /etc/hairmirror/config.toml
TIMES[config_error]=$(elapsed "$t")
echo "   bad config: '$state', ExecMainStatus=$status, NRestarts $restarts -> $after"
[ "$state" = failed ] && [ "$status" = 2 ] && [ "$after" = "$restarts" ] \
  || { inside journalctl --no-pager -u hairmirror.service | tail -20; die "a config error was restarted or did not exit 2"; }
inside systemctl reset-failed hairmirror.service
inside systemctl start --no-block hairmirror.service
wait_active "after the config was mended"

# ---- 5. the playbook against the running system: the role's own check, and still nothing to change ----
say "5. site.yml against the booted container (role's final check runs): must change nothing"
export HAIRMIRROR_E2E_PID="$LEADER"
playbook run3 -e ansible_chroot_exe="$SRC/deploy/e2e/nsenter-into"
echo "$RECAP" | grep -q ' changed=0 ' || die "third run changed something"
grep -q 'Check that the page answers' "$LOG/run3.log" && grep -A3 'Check that the page answers' "$LOG/run3.log" | grep -q '^ok:' \
  || die "the role's final check did not run or did not pass on the booted container"

# ---- 6. bench.yml against the running system: the daemon stopped meanwhile and started again, results fetched ----
say "6. bench.yml against the booted container (tiny budgets): three results fetched, the daemon active again"
BENCH_OUT="$LOG/bench"
rm -rf "$BENCH_OUT"
pid=$(show MainPID)
BOOK=bench.yml playbook bench -e ansible_chroot_exe="$SRC/deploy/e2e/nsenter-into" -e "@$SRC/deploy/e2e/bench-vars.yml" \
  -e "hairmirror_bench_fetch_dir=$BENCH_OUT"
"$VENV_BIN/python" "$SRC/deploy/e2e/check_bench.py" "$BENCH_OUT/rootfs" || die "bench.yml's results (log: $LOG/bench.log)"
wait_active "after the bench"
[ "$(show MainPID)" != "$pid" ] || die "the daemon kept running through the bench (same MainPID $pid)"
echo "   the daemon was stopped for the bench and started again: pid $pid -> $(show MainPID)"

say "e2e-deploy passed"
for k in rootfs copy run1 run2 boot_to_active watchdog_kill watchdog_back stop config_error run3 bench; do printf '   %-15s %6s s\n' "$k" "${TIMES[$k]:-?}"; done
echo "   logs: $LOG"
