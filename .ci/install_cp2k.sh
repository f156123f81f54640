#!/usr/bin/env bash
# Optional system package for the real-DFT labelling tests (tests/label/test_cp2k.py):
# CP2K with cp2k_shell, GTH pseudopotentials and MOLOPT basis sets (Debian/Ubuntu packages).
# Those tests skip with a reason where CP2K is absent, so a failure here is not fatal to CI.
set -euo pipefail
if command -v cp2k_shell >/dev/null 2>&1 && [ -e /usr/share/cp2k/BASIS_MOLOPT ]; then
    echo "cp2k already installed: $(command -v cp2k_shell)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get: install CP2K yourself (cp2k_shell on PATH) to run the CP2K tests"
    exit 1
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "not root and no passwordless sudo: cannot apt-get install cp2k"; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q cp2k cp2k-data
command -v cp2k_shell
