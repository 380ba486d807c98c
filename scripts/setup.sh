#!/usr/bin/env bash
# Installs everything Earshot needs on Debian, then builds. Run it as yourself: only apt-get runs as
# root (through sudo when you are not root), so the build, the test virtualenv and the LM in your cache
# belong to the user who then runs scripts/test.sh. Safe to run again: apt and pip skip what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6 for Linux: https://swift.org/install)" >&2; exit 1; }

PACKAGES=(
  # build: the C libraries the pipeline stages link against
  pkg-config libasound2-dev libsndfile1-dev libopenblas-dev libfftw3-dev libsamplerate0-dev
  # tests and benchmarks: ALSA tools, sclite (sctk), sox, the reference recogniser pocketsphinx
  alsa-utils sctk sox pocketsphinx pocketsphinx-en-us pocketsphinx-testdata sphinxbase-utils
  # benchmarks: peak memory (/usr/bin/time) and the daemon's system calls (bench/daemon-syscalls.sh);
  # tests: a listening socket's queue length (ss)
  time strace iproute2
  # corpus synthesis: the text-to-speech engines and their voices
  espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts fortunes fortunes-min
  # ... and the nine non-English human voices of the accented supplement (corpus/accented.py)
  festvox-itapc16k festvox-italp16k festvox-czech-dita festvox-czech-krb festvox-czech-machac
  festvox-czech-ph festvox-suopuhe-lj festvox-suopuhe-mv festvox-hi-nsk
  # (the Hindi voice loads only with festival-hi's phone set and lexicon: a Recommends, which
  # --no-install-recommends leaves out)
  festival-hi
  python3-venv
  # earshotd's tests: systemd-analyze verifies the units in systemd/
  systemd
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
    echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    echo "setup: run this script as root once, or install sudo" >&2
    exit 1
  fi
  # env: sudo resets the environment, and apt must not stop to ask questions.
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# A test-only virtualenv holding the independent numeric references (NumPy/SciPy/librosa).
# Nothing at run time uses Python.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r scripts/test-requirements.txt

# The general English trigram as ARPA for the beam search (--lm): converted from pocketsphinx-en-us's
# binary, which Debian's sphinx_lm_convert cannot convert. 112 MB, about 15 s; kept in the user cache
# beside the corpus (derived, regenerable, shared by every checkout, never committed).
LM_BIN=/usr/share/pocketsphinx/model/en-us/en-us.lm.bin
# (The same folder earshot transcribe looks in: $XDG_CACHE_HOME or ~/.cache. With EARSHOT_LM_DIR
# elsewhere, point transcribe at it with EARSHOT_LM=$EARSHOT_LM_DIR/en-us.eslm.)
LM_ARPA=${EARSHOT_LM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/earshot/lm}/en-us.arpa
if [ ! -s "$LM_ARPA" ] || [ "$LM_BIN" -nt "$LM_ARPA" ]; then
  echo "setup: converting $LM_BIN to $LM_ARPA"
  "$PY" scripts/pocketsphinx-lm.py "$LM_BIN" "$LM_ARPA"
fi

swift build -c release

# The same LM in Earshot's binary format (earshot lm compile): 51 MB, loads in about 0.1 s instead of
# 2 s. earshot transcribe uses it by default when present.
LM_ESLM=${LM_ARPA%.arpa}.eslm
if [ ! -s "$LM_ESLM" ] || [ "$LM_ARPA" -nt "$LM_ESLM" ]; then
  .build/release/earshot lm compile "$LM_ARPA" --out "$LM_ESLM"
fi
echo "setup: done; run scripts/test.sh to run the test suite"
