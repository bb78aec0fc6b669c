# Hairmirror: `make run` and `make test` bootstrap .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# STAMP: everything (training, export, tests); RUN_STAMP: the daemon and its demo photos only (`make run`);
# DEPLOY_STAMP: the daemon and ansible, what `make bench-pi` needs on the controller (no torch).
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
DEPLOY_STAMP := $(VENV)/.installed-deploy
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint e2e e2e-deploy e2e-picamera2 bench browser clean help install install-deploy

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(PY)
	@echo "installing the daemon and its demo photos into $(VENV) (once; about a minute)"
	$(PIP) install -q -e '.[device,demo]'
	touch $(RUN_STAMP)

$(DEPLOY_STAMP): pyproject.toml $(RUN_STAMP)
	@echo "installing ansible and the wheel's build tools into $(VENV) (once)"
	$(PIP) install -q -e '.[device,demo,dev]'
	touch $(DEPLOY_STAMP)

$(STAMP): pyproject.toml $(DEPLOY_STAMP)
	@echo "installing training, export and the test tools into $(VENV) (once; a few minutes: torch is large)"
	# torch is pinned once, in pyproject.toml's [train] extra: torch==2.13.0 resolves to the CPU build on disk
	# (a bare `torch` pulls a multi-GB CUDA build)
	$(PIP) install -q -e '.[device,demo,train,dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with everything

install-deploy: $(DEPLOY_STAMP)  ## .venv with the daemon and ansible only (no torch): enough to provision mirrors and bench-pi

run: $(RUN_STAMP)  ## the daemon on the demo camera with the shipped model, page on http://127.0.0.1:8080 (HOST=, PORT= change it)
	$(PY) -m device --source demo --sink null --web $(HOST):$(PORT)

# The real picamera2 package's source, read (not imported) by the camera adapter's API test.
PICAMERA2_SRC := $(VENV)/picamera2-src/.done
$(PICAMERA2_SRC): $(STAMP)
	$(PIP) download -q --no-deps picamera2==0.3.38 -d $(VENV)/picamera2-src && touch $@

test: lint $(PICAMERA2_SRC) browser deploy-tools  ## lint, then the test suite (fast checks; slow ones are `make e2e`)
	$(PY) -m pytest -q

lint: $(STAMP)  ## ruff
	$(PY) -m ruff check device training export tests

# Chromium for the page's browser test; skipped (and the test says why) where it cannot be installed.
browser:  ## Debian's chromium and chromium-driver for the page's browser test (root; skipped otherwise)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "chromium not installed: the browser test will skip"; }

clean:  ## remove the venv and build output
	rm -rf $(VENV) build dist *.egg-info

.PHONY: robustness
robustness: $(STAMP)  ## the default model and the photo path under camera conditions (dim, noise, light, blur, JPEG, framing) -> docs/robustness.md
	$(PY) -m export robustness models/hair-mobile-unet-wide-lean-ctx.onnx --data celeb1k-val figaro-test \
	  --paths model photo-whole photo live-stretch live live-head --docs docs/robustness.md

.PHONY: recolour-gallery recolour-bench flicker
recolour-gallery: $(STAMP)  ## recolour metrics on Figaro Testing (dark/light hair) -> docs/training.md + docs/figures/recolour_gallery.png
	$(PY) -m export recolour-gallery --out docs/figures/recolour_gallery.png --docs docs/training.md

flicker: $(STAMP)  ## temporal stability of the shipped models (and the default) on moving sequences -> docs/experiments.md
	$(PY) -m export flicker models/hair-unet-226k.onnx models/hair-mobile-unet.onnx models/hair-mobile-unet-prior.onnx \
	  models/hair-mobile-unet-wide-lean-ctx.onnx --images 15 --frames 10 --smoothing 0 0.5 --docs docs/experiments.md

recolour-bench: $(STAMP)  ## recolours per second per mode at 640x480 (apply, overlay, whole-frame worst case) -> docs/training.md
	$(PY) -m device.recolour.bench --docs docs/training.md

BENCH_MODELS = $(if $(wildcard models/*.onnx),models)
BENCH_GPU := $(shell command -v nvidia-smi 2>/dev/null)
.PHONY: bench-full bench-readme
# GPU rows (onnxruntime CUDA, PyTorch CUDA) only where nvidia-smi is; elsewhere the table says so in one line.
bench: $(STAMP)  ## (< 3 min) models/: FPS, paired speed-ups, threads/spinning, pipeline, Pi projection, the default's stages, the paced Pi daemon -> out/bench.json, .png, out/stages.json, out/paced.json
# The device bench measures and prints (as on a Pi); export.bench_report merges, plots and writes the docs' block.
ifeq ($(BENCH_GPU),)
	$(PY) -m device.bench $(BENCH_MODELS) --out out/bench.json
	$(PY) -m export.bench_report out/bench.json --quiet --plot out/bench.png
else
	$(PY) -m device.bench $(BENCH_MODELS) --quiet --out out/bench-ort.json
	$(PY) -m export.bench_torch $(BENCH_MODELS) --runtimes torch-cuda --quiet --out out/bench-torch.json
	$(PY) -m export.bench_report out/bench-ort.json out/bench-torch.json --out out/bench.json --plot out/bench.png
endif
	$(PY) -m device.bench.stages --json out/stages.json
	$(PY) -m device.bench.paced --json out/paced.json

bench-full: $(STAMP)  ## everything: + random-weight unet-31m/1.8m, pipeline of every model at two sizes, PyTorch rows -> out/bench-full.*
	$(PY) -m export.random_models --variants unet-31m unet-1.8m --out-dir out/random-models
	$(PY) -m device.bench $(BENCH_MODELS) out/random-models --full --quiet --out out/bench-full-ort.json
	$(PY) -m export.bench_torch $(BENCH_MODELS) out/random-models --quiet --out out/bench-full-torch.json
	$(PY) -m export.bench_report out/bench-full-ort.json out/bench-full-torch.json --out out/bench-full.json \
	  --plot out/bench-full.png

# PI="pi4.json pi5.json": a Pi's own results (hairmirror-bench --out there) merged in: its measured columns fill.
# PI_STAGES / PI_PACED: a Pi's stage profile and paced daemon (python -m device.bench.stages / .paced --json there),
# each a table of its own after this machine's. PI_DIR: the three as `make bench-pi` fetches them (out/pi/HOST).
PI_DIR ?=
PI ?= $(if $(PI_DIR),$(PI_DIR)/bench.json)
PI_STAGES ?= $(if $(PI_DIR),$(PI_DIR)/stages.json)
PI_PACED ?= $(if $(PI_DIR),$(PI_DIR)/paced.json)
bench-readme: $(STAMP)  ## docs/bench.md's generated blocks and its figure from out/bench.json, out/stages.json and out/paced.json (after `make bench`); PI_DIR=out/pi/HOST (or PI=, PI_STAGES=, PI_PACED=) adds a Pi's
	$(PY) -m export.bench_report out/bench.json $(PI) --quiet --docs docs/bench.md --plot docs/figures/bench_iou_fps.png
	$(PY) -m device.bench.stages --from out/stages.json $(PI_STAGES) --docs docs/bench.md > /dev/null
	$(PY) -m device.bench.paced --from out/paced.json $(PI_PACED) --docs docs/bench.md > /dev/null

# The mirrors of an ansible inventory (INVENTORY: a path from deploy/ansible, or absolute; inventory.yml by default):
# the same three measurements on each, the daemon stopped meanwhile; results in out/pi/HOST/ for
# `make bench-readme PI_DIR=out/pi/HOST`.
INVENTORY ?= inventory.yml
.PHONY: bench-pi
bench-pi: $(DEPLOY_STAMP)  ## the bench on each mirror of deploy/ansible/inventory.yml (INVENTORY=...; bench.yml, mirrors provisioned with the demo extra) -> out/pi/HOST/*.json
	@cd deploy/ansible && [ -e "$(INVENTORY)" ] || { echo "bench-pi: no inventory $(INVENTORY) in deploy/ansible: \
	  cp inventory.example.yml inventory.yml there and list your mirrors (README, Deploy)" >&2; exit 2; }
	cd deploy/ansible && $(abspath $(VENV))/bin/ansible-playbook -i $(INVENTORY) bench.yml

.PHONY: e2e-models
e2e-models: $(STAMP)  ## the shipped models' eval.* metadata against a full evaluation on Figaro Testing + FASSEG V2 Test
	$(PY) -m pytest -q -m slow tests/export/test_shipped_models.py

.PHONY: deploy-tools
# mtools, dosfstools and fdisk for the flash script's tests; skipped (and the tests say why) where not installable.
deploy-tools:  ## mtools, dosfstools, fdisk for the flash script's tests (root; skipped otherwise)
	@command -v mcopy >/dev/null && command -v mkfs.fat >/dev/null && command -v sfdisk >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mtools dosfstools fdisk >/dev/null) \
	    || echo "mtools/dosfstools/fdisk not installed: the flash tests will skip"; }

e2e: e2e-models e2e-deploy e2e-picamera2 e2e-soak  ## (slow, root) every end-to-end check below, one after another

e2e-deploy: $(STAMP)  ## (slow, root) arm64 rootfs under qemu: site.yml twice (2nd changes nothing), nspawn boot, service active + page, bench.yml
	@command -v debootstrap >/dev/null && command -v qemu-aarch64-static >/dev/null && command -v systemd-nspawn >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static binfmt-support systemd-container curl >/dev/null)
	deploy/e2e/run.sh

# The daemon on the demo camera with web clients hammering the page, stream, snapshot, colour and photo API.
MINUTES ?= 15
SEGMENTER ?= onnx
.PHONY: e2e-soak
e2e-soak: $(RUN_STAMP)  ## (slow) soak for MINUTES (default 15; 60 for the documented hour), SEGMENTER=classical for the fallback mode: frames, RSS growth, errors, p99
	$(PY) deploy/e2e/soak.py --minutes $(MINUTES) --segmenter $(SEGMENTER) --json out/soak.json

# No .venv needed: everything runs in a trixie chroot. run.sh says why and exits 2 when not root; it installs
# debootstrap with apt-get when missing (and exits 2 if it cannot).
e2e-picamera2:  ## (slow, root) the Picamera2 camera source against the real picamera2 on libcamera's virtual camera (trixie chroot), then the daemon loop
	deploy/e2e/picamera2/run.sh

.PHONY: classical-figures classical-bench baselines
classical-figures: $(STAMP)  ## classical pipeline on the anime portraits: full galleries in out/classical, docs figures in docs/figures
	$(PY) -m export classical-figures gallery --faces both --out out/classical
	$(PY) -m export classical-figures gallery --faces json --every 3 --cell-height 104 --format jpg --out docs/figures
	$(PY) -m export classical-figures hsv Hazama-Rei --out docs/figures

classical-bench: $(STAMP)  ## FPS of the classical pipeline at 256x256 on FASSEG V2 Test faces (prints wall and CPU time)
	$(PY) -m device.classical bench --size 256 --frames 300

baselines: $(STAMP)  ## IoU/F1 of the classical pipeline and the per-pixel forest on Figaro Testing + FASSEG V2 Test (minutes)
	$(PY) -m export classical-baseline --json out/classical/metrics.json
	$(PY) -m training baseline forest --out out/forest
	mkdir -p training/figures && cp out/forest/forest-precision-recall.png out/forest/forest-importances.png training/figures/

# The training data of the mirror's models, with the usual weights (celeb1k, the mirror's view, twice an epoch),
# and the int8 calibration: shared by the targets below.
MIRROR_DATA = --data figaro-train fasseg-v2-train fasseg-v3-train celeb1k-train
MIRROR_MIX = $(MIRROR_DATA) --repeat fasseg-v2-train=3 fasseg-v3-train=2 celeb1k-train=2
INT8_CALIB = --calib 200 --calib-data figaro-train fasseg-v3-train celeb1k-train

# The checkpoint the default starts from (the default until 2026-12-07): mobile-unet-wide-lean-ctx at 288x288,
# 3 epochs from the committed checkpoint $(MS2_CHECKPOINT) (`make ms2-model` remakes it) on the usual mix plus half
# of celeb1k-train's views with no hair in them (each photo's largest hair-free square, labelled all "no hair", not
# distilled), flips only, a low peak lr, BatchNorm statistics kept, distilled from that checkpoint's own masks
# averaged over its mirror image and a finer view (288 and 352 px): a third round of that self-distillation
# (models/README.md, twenty-third session); about 25 min on 2 CPU cores. Resumable.
CTX_ARGS = --variant mobile-unet-wide-lean-ctx --size 288 --augment mirror-cloth --threads 2
CTX_CHECKPOINT = models/checkpoints/mobile-unet-wide-lean-ctx-288.pt
CELEB4_CHECKPOINT = models/checkpoints/mobile-unet-wide-lean-ctx-celeb4-288.pt
FINISH_CHECKPOINT = models/checkpoints/mobile-unet-wide-lean-ctx-finish-288.pt
MS_CHECKPOINT = models/checkpoints/mobile-unet-wide-lean-ctx-ms-288.pt
MS2_CHECKPOINT = models/checkpoints/mobile-unet-wide-lean-ctx-ms2-288.pt
SCENERY_CHECKPOINT = models/checkpoints/mobile-unet-wide-lean-ctx-scenery-288.pt
FAR_CHECKPOINT = models/checkpoints/mobile-unet-wide-lean-ctx-far-288.pt
MIRROR_MIX4 = $(MIRROR_DATA) --repeat fasseg-v2-train=3 fasseg-v3-train=2 celeb1k-train=4
SCENERY_MIX = $(MIRROR_DATA) celeb1k-train-scenery --repeat fasseg-v2-train=3 fasseg-v3-train=2 celeb1k-train=4 \
  celeb1k-train-scenery=0.5 --teacher-skip celeb1k-train-scenery --freeze-bn
# A finish: 3 epochs on clean photos (FINISH_AUGMENT: flips only) at peak lr 1e-4, distilled from the starting
# checkpoint's own masks
FINISH_AUGMENT = flips
FINISH_OPTS = --variant mobile-unet-wide-lean-ctx --size 288 --augment $(FINISH_AUGMENT) --threads 2 \
  --epochs 3 --lr 1e-4 --teacher-flip --alpha 0.5
FINISH_ARGS = $(FINISH_OPTS) $(MIRROR_MIX4)
.PHONY: scenery-model
scenery-model: $(STAMP)  ## (slow) retrain models/checkpoints/mobile-unet-wide-lean-ctx-scenery-288.pt, where default-model starts
	$(PY) -m training prune $(FINISH_OPTS) $(SCENERY_MIX) --teacher $(MS2_CHECKPOINT) --teacher-sizes 288 352 \
	  --init $(MS2_CHECKPOINT) --out runs/scenery-celebh
	$(PY) -m training slim runs/scenery-celebh/best.pt --out $(SCENERY_CHECKPOINT)

# The shipped default model, from ../shared/data: the same finish once more, from and distilled from
# $(SCENERY_CHECKPOINT) (`make scenery-model` remakes it), with the head further back on a wall on a third of the
# photos (--augment flips-far-third): the mirror as it stands in a room (models/README.md, twenty-fourth and
# twenty-fifth sessions); its last epoch; about 25 min on 2 CPU cores. That run, chosen on celeb1k-val, is the
# held-out twin ($(HELDOUT_TWIN)); the shipped file is the same run again with celeb1k-val's photos as well
# (--refit; models/README.md, twenty-ninth session; 30 min more), whose figures on celeb1k-val are the twin's.
# Exported with its evaluation, then int8, then the card. Resumable.
HELDOUT_TWIN = models/heldout/hair-mobile-unet-wide-lean-ctx.onnx
REFIT_MIX = $(MIRROR_DATA) celeb1k-train-scenery celeb1k-val celeb1k-val-scenery --repeat fasseg-v2-train=3 \
  fasseg-v3-train=2 celeb1k-train=4 celeb1k-train-scenery=0.5 celeb1k-val=4 celeb1k-val-scenery=0.5 \
  --teacher-skip celeb1k-train-scenery celeb1k-val-scenery --freeze-bn --refit
.PHONY: default-model
default-model: FINISH_AUGMENT = flips-far-third
default-model: $(STAMP)  ## (slow) retrain models/hair-mobile-unet-wide-lean-ctx.onnx (+ .int8.onnx) from ../shared/data
	$(PY) -m training prune $(FINISH_OPTS) $(SCENERY_MIX) --teacher $(SCENERY_CHECKPOINT) --teacher-sizes 288 352 \
	  --init $(SCENERY_CHECKPOINT) --out runs/far-third
	$(PY) -m training slim runs/far-third/last.pt --out $(FAR_CHECKPOINT)
	$(PY) -m export onnx runs/far-third/last.pt --out $(HELDOUT_TWIN) --eval
	$(PY) -m training prune $(FINISH_OPTS) $(REFIT_MIX) --teacher $(SCENERY_CHECKPOINT) --teacher-sizes 288 352 \
	  --init $(SCENERY_CHECKPOINT) --out runs/refit
	$(PY) -m export onnx runs/refit/last.pt --out models/hair-mobile-unet-wide-lean-ctx.onnx --eval \
	  --heldout-twin $(HELDOUT_TWIN)
	$(PY) -m export int8 models/hair-mobile-unet-wide-lean-ctx.onnx \
	  --out models/hair-mobile-unet-wide-lean-ctx.int8.onnx $(INT8_CALIB)
	$(PY) -m export card models

# The checkpoint scenery-model starts from (the default until 2026-12-06): a second round of the finish below, from
# the committed checkpoint $(MS_CHECKPOINT) (`make ms-model` remakes it), distilled from its own masks at 288 and
# 352 px (models/README.md, twelfth session); about 30 min on 2 CPU cores.
.PHONY: ms2-model
ms2-model: $(STAMP)  ## (slow) retrain models/checkpoints/mobile-unet-wide-lean-ctx-ms2-288.pt, where scenery-model starts
	$(PY) -m training prune $(FINISH_ARGS) --teacher $(MS_CHECKPOINT) --teacher-sizes 288 352 --init $(MS_CHECKPOINT) \
	  --out runs/ms2
	$(PY) -m training slim runs/ms2/best.pt --out $(MS2_CHECKPOINT)

# The checkpoint ms2-model starts from: the first round of the same finish, from the committed checkpoint
# $(FINISH_CHECKPOINT) (`make finish-model` remakes it); about 30 min on 2 CPU cores.
.PHONY: ms-model
ms-model: $(STAMP)  ## (slow) retrain models/checkpoints/mobile-unet-wide-lean-ctx-ms-288.pt, where ms2-model starts
	$(PY) -m training prune $(FINISH_ARGS) --teacher $(FINISH_CHECKPOINT) --teacher-sizes 288 352 \
	  --init $(FINISH_CHECKPOINT) --out runs/ms-0.5
	$(PY) -m training slim runs/ms-0.5/best.pt --out $(MS_CHECKPOINT)

# The checkpoint ms-model starts from (the default of the eleventh session): a finish of the committed checkpoint
# $(CELEB4_CHECKPOINT) (`make celeb4-model` remakes it), distilled from its flip-averaged masks at 288 px; about 20 min.
.PHONY: finish-model
finish-model: $(STAMP)  ## (slow) retrain models/checkpoints/mobile-unet-wide-lean-ctx-finish-288.pt, where ms-model starts
	$(PY) -m training prune $(FINISH_ARGS) --teacher $(CELEB4_CHECKPOINT) --init $(CELEB4_CHECKPOINT) \
	  --out runs/finish-distil-0.5
	$(PY) -m training slim runs/finish-distil-0.5/best.pt --out $(FINISH_CHECKPOINT)

# The checkpoint finish-model starts from (a default before it, 2026-12-05, sixth session), from the committed
# checkpoint models/checkpoints/mobile-unet-wide-lean-ctx-288.pt (`make ctx-model` remakes it), with the mirror's own
# view weighted up (celeb1k-train four times an epoch instead of twice), distilled from that checkpoint's own
# flip-averaged masks; about 50 min on 2 CPU cores.
.PHONY: celeb4-model
celeb4-model: $(STAMP)  ## (slow) retrain models/checkpoints/mobile-unet-wide-lean-ctx-celeb4-288.pt, where finish-model starts
	$(PY) -m training prune $(CTX_ARGS) $(MIRROR_MIX4) \
	  --epochs 10 --lr 3e-4 --teacher $(CTX_CHECKPOINT) --teacher-flip --alpha 0.5 --init $(CTX_CHECKPOINT) \
	  --out runs/ctx-celeb4
	$(PY) -m training slim runs/ctx-celeb4/best.pt --out $(CELEB4_CHECKPOINT)

# The checkpoint celeb4-model starts from (the default before that, 2026-12-05), from the committed checkpoint
# models/checkpoints/mobile-unet-wide-lean-288-cloth.pt (`make lean-model` remakes it): 14 epochs with GlobalContext
# added (hats of real cloth, mirror-cloth), then 10 epochs distilled from that run's own flip-averaged masks; about
# 75 min on 2 CPU cores.
.PHONY: ctx-model
ctx-model: $(STAMP)  ## (slow) retrain models/checkpoints/mobile-unet-wide-lean-ctx-288.pt, where celeb4-model starts
	$(PY) -m training train $(CTX_ARGS) $(MIRROR_MIX) \
	  --epochs 14 --lr 5e-4 --init models/checkpoints/mobile-unet-wide-lean-288-cloth.pt --out runs/ctx-288
	$(PY) -m training prune $(CTX_ARGS) $(MIRROR_MIX) \
	  --epochs 10 --lr 3e-4 --teacher runs/ctx-288/best.pt --teacher-flip --alpha 0.5 --init runs/ctx-288/best.pt \
	  --out runs/ctx-288-distil
	$(PY) -m training slim runs/ctx-288-distil/best.pt --out $(CTX_CHECKPOINT)

# The previous default, hair-mobile-unet-wide-lean.onnx (288x288), and the checkpoint the default starts from:
# two runs of 14 epochs from models/checkpoints/mobile-unet-wide-lean-288.pt (`make checkpoints` remakes it), glasses
# and aged skin on the faces (mirror-faces), then hats made of real cloth (mirror-cloth); about 65 min.
LEAN_RUN_ARGS = --variant mobile-unet-wide-lean $(MIRROR_MIX) --size 288 --epochs 14 --lr 5e-4 --threads 2
.PHONY: lean-model
lean-model: $(STAMP)  ## (slow) retrain models/hair-mobile-unet-wide-lean.onnx (+ .int8.onnx), the previous default
	$(PY) -m training train $(LEAN_RUN_ARGS) --augment mirror-faces \
	  --init models/checkpoints/mobile-unet-wide-lean-288.pt --out runs/lean-288-faces
	$(PY) -m training train $(LEAN_RUN_ARGS) --augment mirror-cloth --init runs/lean-288-faces/best.pt \
	  --out runs/lean-288-cloth
	$(PY) -m training slim runs/lean-288-cloth/best.pt --out models/checkpoints/mobile-unet-wide-lean-288-cloth.pt
	$(PY) -m export onnx runs/lean-288-cloth/best.pt --out models/hair-mobile-unet-wide-lean.onnx --eval
	$(PY) -m export int8 models/hair-mobile-unet-wide-lean.onnx --out models/hair-mobile-unet-wide-lean.int8.onnx \
	  $(INT8_CALIB)

# The default before that, hair-mobile-unet-wide.onnx (224x224): 30 epochs at 192, then 25 at 224 with hats (~1.6 h).
WIDE_RUN_ARGS = --variant mobile-unet-wide $(MIRROR_MIX)
.PHONY: wide-model
wide-model: $(STAMP)  ## (slow) retrain models/hair-mobile-unet-wide.onnx (+ .int8.onnx), an earlier default
	$(PY) -m training train $(WIDE_RUN_ARGS) --size 192 --lr 2e-3 --augment mirror --out runs/mirror-wide-192
	$(PY) -m training train $(WIDE_RUN_ARGS) --size 224 --epochs 25 --augment mirror-hats \
	  --init runs/mirror-wide-192/best.pt --out runs/mirror-hats-224-ft
	$(PY) -m export onnx runs/mirror-hats-224-ft/best.pt --out models/hair-mobile-unet-wide.onnx --eval
	$(PY) -m export int8 models/hair-mobile-unet-wide.onnx --out models/hair-mobile-unet-wide.int8.onnx $(INT8_CALIB)

# Checkpoints later sessions start from (--init) instead of retraining (about 2.7 h on 2 CPU cores; resumable):
# mobile-unet-wide at 224 with hats in one stage, then mobile-unet-wide-lean at 288 from its encoder.
.PHONY: checkpoints
checkpoints: $(STAMP)  ## (slow) models/checkpoints/mobile-unet-wide-224-c3.pt and -lean-288.pt from ../shared/data
	$(PY) -m training train --variant mobile-unet-wide $(MIRROR_DATA) --repeat fasseg-v2-train=3 fasseg-v3-train=1 \
	  celeb1k-train=3 --size 224 --epochs 32 --lr 2e-3 --augment mirror-hats --threads 2 --out runs/wide-224-c3
	$(PY) -m training slim runs/wide-224-c3/best.pt --out models/checkpoints/mobile-unet-wide-224-c3.pt
	$(PY) -m training train --variant mobile-unet-wide-lean $(MIRROR_MIX) --size 288 --epochs 28 --lr 2e-3 \
	  --augment mirror-hats \
	  --init runs/wide-224-c3/best.pt --threads 2 --out runs/lean-288
	$(PY) -m training slim runs/lean-288/best.pt --out models/checkpoints/mobile-unet-wide-lean-288.pt
