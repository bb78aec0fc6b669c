#!/usr/bin/env bash
# make e2e-picamera2: the project's own Picamera2 camera source (device/cameras/picamera2.py) against the REAL
# picamera2 library, on libcamera's 'virtual' camera playing real photos of people, in a Debian trixie chroot.
#
#   1. a trixie rootfs (libcamera 0.4 with the 'virtual' pipeline) built with debootstrap and cached under
#      $ROOTFS (reused when present; delete the folder to rebuild), following the recipe in
#      ../shared/recipes/picamera2-virtual beside the checkout (its shims are used from there, never copied here),
#   2. a venv there with picamera2 and what device/ needs (numpy, opencv-python-headless<5, onnxruntime, flask),
#   3. a snapshot of the COMMITTED device/ package and the default model (git archive $REF),
#   4. 640x480 JPEGs of FASSEG V2 test faces (../shared/data, never copied into the repo) as the camera's frames,
#   5. harness.py inside the chroot: the adapter's streams and colours, mirror, request release, then the daemon's
#      frame loop (onnx model, files sink) and the picamera2-overlay sink with the null preview.
# Prints one PASS/FAIL/SKIP line per check; exits 1 on any FAIL, 2 when it cannot run (not root, no debootstrap).
# Correctness only: the virtual camera runs unthrottled on a PC, so no timing here says anything about a Pi.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: deploy/e2e/picamera2/run.sh [--help]
Runs the Picamera2 camera source against the real picamera2 on libcamera's virtual camera (needs root).
Environment:
  HAIRMIRROR_PICAMERA2_ROOTFS  rootfs folder, built once and reused (default /var/tmp/hairmirror-picamera2-rootfs)
  HAIRMIRROR_E2E_REF           git revision whose device/ and model are tested (default HEAD)
  PICAMERA2_VERSION            picamera2 from PyPI (default 0.3.38, the version tests/device/test_picamera2_api.py reads)
  DEBIAN_MIRROR                debootstrap mirror (default http://deb.debian.org/debian)
  FRAMES                       how many photos the virtual camera plays (default 4)
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

REPO="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$REPO/deploy/e2e/picamera2"
RECIPE="$REPO/../shared/recipes/picamera2-virtual"
DATA="$REPO/../shared/data"
ROOT="${HAIRMIRROR_PICAMERA2_ROOTFS:-/var/tmp/hairmirror-picamera2-rootfs}"
REF="${HAIRMIRROR_E2E_REF:-HEAD}"
PICAMERA2_VERSION="${PICAMERA2_VERSION:-0.3.38}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FRAMES="${FRAMES:-4}"
# the recipe's package list (setup.sh): libcamera's Python bindings and picamera2's Debian-packaged dependencies
PACKAGES=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates,python3-libcamera,libcamera-ipa,python3-numpy,python3-prctl,python3-pil,python3-av,python3-piexif,python3-jsonschema,python3-libarchive-c,python3-tqdm
REQUIREMENTS=(numpy "opencv-python-headless<5" onnxruntime flask "picamera2==$PICAMERA2_VERSION")

say() { printf '== %s  [%s]\n' "$*" "$(date +%T)"; }
die() { echo "e2e-picamera2: $1" >&2; exit "${2:-1}"; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount): run as root, e.g. sudo make e2e-picamera2" 2
if ! command -v debootstrap >/dev/null; then
  say "debootstrap missing: apt-get install debootstrap"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; } \
    || die "debootstrap is missing and apt-get could not install it" 2
fi
for f in virtual_cam_patch.py memfd_allocator.py pykms.py; do
  [ -f "$RECIPE/$f" ] || die "recipe file $RECIPE/$f missing (../shared/recipes/picamera2-virtual beside the checkout)" 2
done
[ -d "$DATA/fasseg/V2/Test_RGB" ] || die "real photos missing: $DATA/fasseg/V2/Test_RGB (../shared/data)" 2
# device.segmenters.DEFAULT_MODEL: the first of the role's hairmirror_models (a test ties the two together)
DEFAULT_MODEL=models/$(git -C "$REPO" show "$REF:deploy/ansible/roles/hairmirror/defaults/main.yml" \
  | awk '/^hairmirror_models:/ {getline; sub(/^ *- */, ""); print; exit}')
git -C "$REPO" cat-file -e "$REF:$DEFAULT_MODEL" 2>/dev/null || die "$DEFAULT_MODEL is not committed at $REF" 2

CH=(chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8)
START=$(date +%s)

# ---- 1. the cached trixie rootfs ----
if [ ! -e "$ROOT/.debootstrap-done" ]; then
  say "1. debootstrap trixie into $ROOT (minutes; log: $ROOT.debootstrap.log)"
  rm -rf "$ROOT.partial"
  debootstrap --variant=minbase --include="$PACKAGES" trixie "$ROOT.partial" "$MIRROR" > "$ROOT.debootstrap.log" 2>&1 \
    || { tail -20 "$ROOT.debootstrap.log" >&2; die "debootstrap failed (log: $ROOT.debootstrap.log)"; }
  rm -rf "$ROOT"
  mv "$ROOT.partial" "$ROOT"
  touch "$ROOT/.debootstrap-done"
else
  say "1. reusing the rootfs $ROOT (rm -rf it to rebuild)"
fi
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"  # the host's CA bundle, for pip
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

# ---- 2. the venv: picamera2 and what device/ needs (pip skips what is already there) ----
say "2. venv /opt/venv: ${REQUIREMENTS[*]}"
[ -x "$ROOT/opt/venv/bin/python" ] || "${CH[@]}" python3 -m venv --system-site-packages /opt/venv
MODEL_ARGS=(--model "/opt/hairmirror/$DEFAULT_MODEL")
"${CH[@]}" /opt/venv/bin/pip install -q --disable-pip-version-check "${REQUIREMENTS[@]}" || {
  # onnxruntime is the only one without a guaranteed wheel for trixie's Python 3.13: retry without it
  echo "e2e-picamera2: pip could not install all of them; retrying without onnxruntime" >&2
  NO_ORT=(); for r in "${REQUIREMENTS[@]}"; do [ "$r" = onnxruntime ] || NO_ORT+=("$r"); done
  "${CH[@]}" /opt/venv/bin/pip install -q --disable-pip-version-check "${NO_ORT[@]}" \
    || die "pip install failed in the rootfs venv"
}
if ! "${CH[@]}" /opt/venv/bin/python -c "import onnxruntime" 2>/dev/null; then
  PYV=$("${CH[@]}" /opt/venv/bin/python -c "import sys; print('%d.%d' % sys.version_info[:2])")
  MODEL_ARGS=(--no-model "onnxruntime has no wheel for this rootfs' Python $PYV: camera checks only")
fi
"${CH[@]}" /opt/venv/bin/python -c "
import sys, importlib.metadata as m
v = [f'{p} {m.version(p)}' for p in ('numpy', 'opencv-python-headless', 'onnxruntime', 'flask', 'picamera2')
     if any(d.metadata['Name'].lower() == p for d in m.distributions())]
print('   python', sys.version.split()[0], '|', ' | '.join(v))"
echo "   $("${CH[@]}" dpkg-query -W -f '${Package} ${Version}' libcamera0.4 2>/dev/null || echo 'libcamera: ?')"

# ---- 3. the virtual camera: only the image camera (so it is camera 0), playing real photos ----
say "3. virtual camera: $FRAMES FASSEG V2 test faces as 640x480 JPEGs in /opt/frames"
mkdir -p "$ROOT/usr/share/libcamera/pipeline/virtual"
cp "$HERE/virtual.yaml" "$ROOT/usr/share/libcamera/pipeline/virtual/virtual.yaml"
rm -rf "${ROOT:?}/opt/frames" "${ROOT:?}/opt/photos"
mkdir -p "$ROOT/opt/frames" "$ROOT/opt/photos"   # frames/: JPEGs only, anything else hides the camera
mapfile -t PHOTOS < <(find "$DATA/fasseg/V2/Test_RGB" -name '*.png' | sort -V | head -n "$FRAMES")
cp "${PHOTOS[@]}" "$ROOT/opt/photos/"
"${CH[@]}" /opt/venv/bin/python -c "
from pathlib import Path
from PIL import Image
for i, src in enumerate(sorted(Path('/opt/photos').glob('*.png'))):
    img = Image.open(src).convert('RGB')
    s = max(640 / img.width, 480 / img.height)  # fill 640x480 and crop the rest: faces stay faces
    img = img.resize((round(img.width * s), round(img.height * s)), Image.LANCZOS)
    x, y = (img.width - 640) // 2, (img.height - 480) // 2
    img.crop((x, y, x + 640, y + 480)).save(f'/opt/frames/{i:04d}-fasseg-{src.stem}.jpg', quality=95)
"
rm -rf "${ROOT:?}/opt/photos"
find "$ROOT/opt/frames" -type f -printf '   %f\n' | sort

# ---- 4. the code under test: committed device/ and the shipped model; the harness and the recipe's shims ----
say "4. device/ and $DEFAULT_MODEL from git $REF ($(git -C "$REPO" rev-parse --short "$REF"))"
rm -rf "${ROOT:?}/opt/hairmirror" "${ROOT:?}/opt/harness"
mkdir -p "$ROOT/opt/hairmirror" "$ROOT/opt/harness"
git -C "$REPO" archive "$REF" device "$DEFAULT_MODEL" | tar -x -C "$ROOT/opt/hairmirror"
cp "$RECIPE/virtual_cam_patch.py" "$RECIPE/memfd_allocator.py" "$RECIPE/pykms.py" "$HERE/harness.py" "$ROOT/opt/harness/"

# ---- 5. the harness ----
say "5. harness (inside the chroot)"
if ! mountpoint -q "$ROOT/proc"; then
  mount -t proc proc "$ROOT/proc"
  trap 'umount "$ROOT/proc"' EXIT
fi
set +e
"${CH[@]}" LIBCAMERA_LOG_LEVELS='*:WARN' /opt/venv/bin/python /opt/harness/harness.py "${MODEL_ARGS[@]}" 2>&1
rc=$?
set -e
say "done in $(( $(date +%s) - START )) s, harness exit code $rc"
exit "$rc"
