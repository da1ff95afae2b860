# Two commands matter: `make serve` (build the site and serve it on http://127.0.0.1:8000/) and `make test`.
# Stamp files make repeated runs fast: nothing is reinstalled or rebuilt unless its inputs changed.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
SITE   := dist/site
PORT   ?= 8000
BENCH_ARGS ?=
HOST   ?= 127.0.0.1
# Root needs no sudo (CI, containers); anyone else does for apt-get.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
SITE_STAMP := $(SITE)/manifest.json
SITE_INPUTS := $(shell find web py_src build/vendor -type f -not -path '*/__pycache__/*' 2>/dev/null) \
               build/build_site.py serve.py pyproject.toml

.PHONY: all venv node_modules site package serve browser-deps test bench train train-fer2013 gpu-pack clean distclean

all: site

venv: $(VENV_STAMP)
$(VENV_STAMP): pyproject.toml
	@# Debian ships venv's ensurepip separately (python3-venv).
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv; }
	[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -e '.[train,test]'
	touch $@

node_modules: $(NODE_STAMP)
$(NODE_STAMP): package.json package-lock.json
	npm ci
	touch $@

# The site build is standard-library Python only (no venv needed).
site: $(SITE_STAMP)
$(SITE_STAMP): $(NODE_STAMP) $(SITE_INPUTS)
	$(PYTHON) build/build_site.py --out $(SITE)

# The npm package (dist/emotion-lens-<version>.tgz): the engine, its runtime files and its types, from the site.
package: site
	$(PYTHON) build/build_package.py --site $(SITE) --out dist/package --pack-to dist

# serve.py is standard-library only too: serving needs neither torch nor the test tools.
serve: site
	$(PYTHON) serve.py --dir $(SITE) --host $(HOST) --port $(PORT)

# Debian's browsers (no browser download): Chromium (Playwright drives it), Firefox ESR (WebDriver BiDi) and WebKitGTK
# (its WebKitWebDriver and MiniBrowser, in an Xvfb X server); ffmpeg makes the fake webcam videos.
BROWSER_PACKAGES := chromium chromium-driver ffmpeg firefox-esr webkit2gtk-driver xvfb
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || ! command -v ffmpeg >/dev/null 2>&1 || [ ! -x /usr/bin/firefox-esr ] || \
	    [ ! -x /usr/bin/WebKitWebDriver ] || [ ! -x /usr/bin/Xvfb ]; then \
	  echo "installing $(BROWSER_PACKAGES) with apt-get"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $(BROWSER_PACKAGES); \
	fi

test: venv node_modules site browser-deps
	$(VPY) -m pytest -q

# Speed, bytes and memory (prints figures; not a test): 3 fresh browsers each at full CPU, under the phone-class proxy
# (the whole browser held to half a core by ../shared/tools/phone-cpu), and under the proxy on a 20 Mbit/s, 40 ms link.
PHONE_ARGS ?= --cpu-cores 0.5
bench: venv node_modules site browser-deps
	$(VPY) build/bench_browser.py --site $(SITE) --no-build --camera-seconds 60 $(BENCH_ARGS)
	$(VPY) build/bench_browser.py --site $(SITE) --no-build --camera-seconds 60 $(PHONE_ARGS) $(BENCH_ARGS)
	$(VPY) build/bench_browser.py --site $(SITE) --no-build --camera-seconds 5 --baseline-seconds 0 $(PHONE_ARGS) \
	    --link 20mbit,40ms $(BENCH_ARGS)

# Training is build-time only and not part of `make test`. DATASETS points at the folder holding ferplus.zip /
# fer2013.zip; RUNS keeps checkpoints: an interrupted command continues where it stopped when run again.
# The shipped models' recipe (docs/accuracy.md): a 25-epoch FER+ run and a 50-epoch FER+ run from its weights (one
# student at 48 px, no teacher; about 2.5 h on 2 CPU cores), then, from that backbone, a 56-epoch FER+ restart and the
# FER-2013 model (both ran on a GPU lease, build/gpu_lease.sh, about 7 min; here ~1.5 h each); then the FER+ restart's
# stages in the one-stage-deeper lite0s6-48 (1 + 48 epochs, ~1 h here; the later --student wins), the teacher of the
# last step: the restart's weights distilled from it for 100 epochs, the teacher seeing each augmented batch (~1.5 h
# here). `make train` ships that FER+ model, `make train-fer2013` the FER-2013 one. To redo only the last FER+ step:
# `--init-from checkpoints/ferplus48gpu --teacher-from checkpoints/ferplus48deep/student` (committed fp16 weights).
DATASETS ?= ../shared/datasets
RUNS     ?= runs
RECIPE_ARGS ?= --student lite0s5-48 --teachers 0 --no-distill --batch-size 128 --augment wide --class-weight-power 0 \
               --val-split official
# The last step of each dataset: the 0.78 M student distilled from earlier runs' models (--teacher-from).
DISTILL_ARGS ?= --student lite0s5-48 --batch-size 128 --augment wide --class-weight-power 0 --val-split official \
                --label-smoothing 0 --lr 1e-3 --warmup-epochs 0
# FER+: the distillation recipe is chosen on FER2013Valid (ferplus48ckd), then refit with the same arguments on
# FER2013Train + FER2013Valid (--val-split none, the last epoch kept): that refit ships.
FERPLUS_KD_ARGS = --init-from $(RUNS)/ferplus48gpu --teacher-from $(RUNS)/ferplus48deep/student $(DISTILL_ARGS) --student-epochs 100
train: venv
	$(VPY) -m model_export.run --dataset ferplus --data $(DATASETS)/ferplus.zip --out $(RUNS)/ferplus48 $(RECIPE_ARGS) \
	    --warmup-epochs 0 --student-epochs 25 --lr 3e-3 --label-smoothing 0 --stages student,report
	$(VPY) -m model_export.run --dataset ferplus --data $(DATASETS)/ferplus.zip --out $(RUNS)/ferplus48long \
	    --init-from $(RUNS)/ferplus48 $(RECIPE_ARGS) --warmup-epochs 1 --student-epochs 50 --lr 2e-3 --label-smoothing 0 \
	    --stages student,report
	$(VPY) -m model_export.run --dataset ferplus --data $(DATASETS)/ferplus.zip --out $(RUNS)/ferplus48gpu \
	    --init-from $(RUNS)/ferplus48long $(RECIPE_ARGS) --warmup-epochs 0 --student-epochs 56 --lr 1.5e-3 --label-smoothing 0 \
	    --ship web/models
	$(VPY) -m model_export.run --dataset ferplus --data $(DATASETS)/ferplus.zip --out $(RUNS)/ferplus48deep \
	    --init-from $(RUNS)/ferplus48gpu $(RECIPE_ARGS) --student lite0s6-48 --warmup-epochs 1 --student-epochs 48 --lr 1.5e-3 \
	    --label-smoothing 0 --stages student,report
	$(VPY) -m model_export.run --dataset ferplus --data $(DATASETS)/ferplus.zip --out $(RUNS)/ferplus48ckd $(FERPLUS_KD_ARGS) \
	    --stages student,report
	$(VPY) -m model_export.run --dataset ferplus --data $(DATASETS)/ferplus.zip --out $(RUNS)/ferplus48refit $(FERPLUS_KD_ARGS) \
	    --val-split none --ship web/models

# FER-2013 from the FER+ backbone: the classifier rows of the emotions both datasets share carry over by name.
# Without a FER+ run here, it starts from the committed checkpoint (checkpoints/README.md).
$(RUNS)/ferplus48long/student/best.pt:
	$(VPY) -m model_export.checkpoint unpack checkpoints/ferplus48long.student.pt $(RUNS)/ferplus48long/student
# FER-2013: four models fine-tuned on FER-2013 labels from three FER+ models (two augmentations, one
# deeper cut; ~1-1.5 h each here) form the teacher ensemble of the shipped model, the first of them distilled from
# all four for 98 epochs, each augmented batch through every teacher (~2 h here). Its graph averages four views of
# each face (face and mirror, as cropped and zoomed 1.1x): +0.9 points on PublicTest over face and mirror alone.
FER2013_ARGS ?= --dataset fer2013-zip --data $(DATASETS)/fer2013.zip $(RECIPE_ARGS) --warmup-epochs 1 --lr 1.5e-3 \
                --label-smoothing 0.1
FER2013_TEACHERS = $(RUNS)/fer2013-48gpu $(RUNS)/fer2013-48deep $(RUNS)/fer2013-48fromgpu $(RUNS)/fer2013-48wide
train-fer2013: venv $(RUNS)/ferplus48long/student/best.pt
	$(VPY) -m model_export.run $(FER2013_ARGS) --out $(RUNS)/fer2013-48gpu --init-from $(RUNS)/ferplus48long \
	    --augment geometric --student-epochs 56 --stages student,report
	$(VPY) -m model_export.run $(FER2013_ARGS) --out $(RUNS)/fer2013-48deep --init-from checkpoints/ferplus48deep \
	    --student lite0s6-48 --augment geometric --student-epochs 30 --stages student
	$(VPY) -m model_export.run $(FER2013_ARGS) --out $(RUNS)/fer2013-48fromgpu --init-from checkpoints/ferplus48gpu \
	    --augment geometric --student-epochs 30 --stages student
	$(VPY) -m model_export.run $(FER2013_ARGS) --out $(RUNS)/fer2013-48wide --init-from $(RUNS)/ferplus48long \
	    --student-epochs 56 --stages student
	$(VPY) -m model_export.run --dataset fer2013-zip --data $(DATASETS)/fer2013.zip --out $(RUNS)/fer2013-48ckd \
	    --init-from $(RUNS)/fer2013-48gpu --teacher-from $(addsuffix /student,$(FER2013_TEACHERS)) $(DISTILL_ARGS) \
	    --student-epochs 98 --tta-zooms 1.0 1.1 --ship web/models

# What a GPU lease carries (build/gpu_lease.sh; the machine has no dataset and no PyPI): both datasets at JPEG q90
# without their test splits (26 + 33 MB) and the start weights in fp16, in the git-ignored packed/ folder.
gpu-pack: venv $(RUNS)/ferplus48long/student/best.pt
	$(VPY) -m model_export.pack --dataset ferplus --data $(DATASETS)/ferplus.zip --out packed/ferplus-q90.npz --quality 90 --test exclude
	$(VPY) -m model_export.pack --dataset fer2013-zip --data $(DATASETS)/fer2013.zip --out packed/fer2013-q90.npz --quality 90 --test exclude
	$(VPY) -m model_export.checkpoint init $(RUNS)/ferplus48long packed/init/ferplus48long
	$(VPY) -m model_export.checkpoint init imagenet:lite0s5-48 packed/init/imagenet

clean:
	rm -rf dist .pytest_cache .cache/e2e-fixtures
	find . -name __pycache__ -type d -not -path './node_modules/*' -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules
