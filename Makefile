# Two commands do everything: `make demo` and `make test`. Each creates or
# reuses .venv and installs what it needs.
#
# llama-cpp-python is built from source with portable x86-64 flags: a native
# build crashes on CPUs with AMX, and AVX-512 is missing on others, so AVX2 is
# the common ground. The wheel is kept in a wheelhouse named after the flags
# (pip's own cache ignores CMAKE_ARGS), so only the first install pays the build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LLAMA_CPP_VERSION := 0.3.36
CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
WHEELHOUSE := $(HOME)/.cache/collab/wheels/llama-cpp-$(LLAMA_CPP_VERSION)-$(shell echo '$(CMAKE_ARGS)' | cksum | cut -d' ' -f1)
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt --find-links $(WHEELHOUSE)

.PHONY: demo test lint typecheck bench install install-dev clean chromium postgres native-llama

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip

$(WHEELHOUSE)/.built: | $(BIN)/python
	@echo "Building llama-cpp-python $(LLAMA_CPP_VERSION) once (about 5-10 minutes on 2 cores)..."
	CMAKE_ARGS='$(CMAKE_ARGS)' $(BIN)/python -m pip wheel --disable-pip-version-check -q \
		--no-deps --no-binary llama-cpp-python --no-cache-dir -w $(WHEELHOUSE) llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $@

$(VENV)/.installed: $(BIN)/python $(WHEELHOUSE)/.built pyproject.toml constraints.txt
	$(PIP) --no-index --force-reinstall --no-deps llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev,transformers,server,postgres]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/collab demo

# The web chat test drives Debian's chromium; install it where apt can.
chromium:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& apt-get install -y -q chromium >/dev/null; } || echo "no chromium: the browser test will skip"

# The replica tests run Debian's PostgreSQL in a temporary cluster; install it where apt can.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& apt-get install -y -q postgresql >/dev/null; } || echo "no PostgreSQL: the replica tests will skip"

test: install-dev chromium postgres
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check collab tests bench
	$(BIN)/ruff format --check collab tests bench

typecheck: install-dev
	$(BIN)/mypy collab

# llama.cpp's own tools, built once from the sources the llama-cpp-python release vendors,
# with the wheel's flags: bench/speculative.py compares collab with native speculation.
NATIVE_LLAMA := $(HOME)/.cache/collab/llama.cpp-$(LLAMA_CPP_VERSION)-$(shell echo '$(CMAKE_ARGS)' | cksum | cut -d' ' -f1)

native-llama: | $(BIN)/python
	@test -x $(NATIVE_LLAMA)/bin/llama-speculative-simple || { \
		echo "Building native llama.cpp tools once (about 5 minutes on 2 cores)..." && \
		tmp=$$(mktemp -d) && \
		$(BIN)/python -m pip download --disable-pip-version-check -q --no-deps \
			--no-binary :all: -d $$tmp llama-cpp-python==$(LLAMA_CPP_VERSION) && \
		tar -xzf $$tmp/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $$tmp && \
		cmake -S $$tmp/llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp -B $$tmp/build \
			$(CMAKE_ARGS) -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
			>$$tmp/cmake.log && \
		cmake --build $$tmp/build -j 2 --target llama-speculative-simple >>$$tmp/cmake.log && \
		mkdir -p $(NATIVE_LLAMA)/bin && cp $$tmp/build/bin/llama-speculative-simple $(NATIVE_LLAMA)/bin/ && \
		rm -rf $$tmp; } || echo "native llama.cpp could not be built: bench/speculative.py leaves it out"

bench: install-dev native-llama
	$(PIP) -e '.[dev,transformers,server,bench]'
	$(PIP) --no-deps bfcl-eval  # its data and AST checker only; its deps are every provider SDK
	$(BIN)/python bench/models.py
	$(BIN)/python bench/speculative.py --native $(NATIVE_LLAMA)/bin
	$(BIN)/python bench/colocated.py
	$(BIN)/python bench/cascade.py
	$(BIN)/python bench/bfcl.py
	$(BIN)/python bench/server.py
	$(BIN)/python bench/faults.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
