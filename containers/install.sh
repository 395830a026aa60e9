#!/bin/sh
# The one install step of containers/ephys.def and containers/ephys-gpu.def: a venv at
# $EPHYS_VENV (default /opt/ephys) holding ephys from the source copied into the image.
#   sh install.sh SRC_DIR EXTRAS [PYTHON]
# EXTRAS: "cpu" (tensorflow-cpu from PyPI) or "" (reuse the base image's TensorFlow: the GPU
# image sets EPHYS_VENV_FLAGS=--system-site-packages so the venv sees it).
# PIP_CERT may name a CA bundle for a TLS-intercepting proxy at build time.
set -eu
src=$1
extras=$2
python=${3:-python3}
venv=${EPHYS_VENV:-/opt/ephys}
# shellcheck disable=SC2086
"$python" -m venv ${EPHYS_VENV_FLAGS:-} "$venv"
"$venv/bin/python" -m pip install --no-cache-dir --quiet --upgrade pip
if [ -n "$extras" ]; then
    "$venv/bin/python" -m pip install --no-cache-dir --quiet "$src[$extras]"
else
    "$venv/bin/python" -m pip install --no-cache-dir --quiet "$src"
fi
"$venv/bin/ephys" --version
