#!/usr/bin/env bash
# Installs a checkgate gate from its provisioned bundle: steps 4-7 of docs/deploy-pi.md in one go.
#
#   sudo deploy/install-gate.sh BUNDLE_DIR            # the folder made by `checkgate provision gate ID`
#   deploy/install-gate.sh BUNDLE_DIR --dry-run       # print what it would do, change nothing
#
# Run it from the checkout in /opt/checkgate (where the systemd unit expects it), after the
# OS steps of the guide (UART, camera). Idempotent: run it again after an update or with a
# rotated bundle. It stops at the first failure and says which step failed (except the broker
# log-in check: a gate works offline, so that one only warns).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: install-gate.sh BUNDLE_DIR [--dry-run]" >&2; exit 2; }
[ $# -ge 1 ] || usage
bundle=$1
dry=0
[ "${2:-}" = "--dry-run" ] && dry=1
[ $# -le 2 ] || usage

say() { printf '\n== %s\n' "$*"; }
run() {
  printf '+ %s\n' "$*"
  [ "$dry" = 1 ] || "$@"
}

if [ ! -f "$bundle/gate.yaml" ] || [ ! -f "$bundle/ca.crt" ]; then
  echo "install-gate: $bundle is not a gate bundle (no gate.yaml / ca.crt); make one on the server with" \
       "\`checkgate provision gate ID --out DIR\`" >&2
  exit 2
fi
if [ "$dry" = 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-gate: run as root (sudo)" >&2
  exit 2
fi
if [ "$(pwd)" != /opt/checkgate ]; then
  echo "install-gate: note: the unit runs /opt/checkgate/.venv/bin/checkgate; this checkout is $(pwd)" >&2
fi

files=(gate.yaml ca.crt control.pub.pem)
[ -f "$bundle/gate.crt" ] && files+=(gate.crt gate.key)
for f in "${files[@]}"; do
  [ -f "$bundle/$f" ] || { echo "install-gate: $bundle/$f is missing: the bundle is incomplete" >&2; exit 2; }
done

say "1/6 packages and the virtualenv"
run ./scripts/setup
# the volunteer screen speaks zh-CN: without a CJK font the kiosk shows empty boxes
run env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
  fonts-noto-cjk
# gpiozero's backend for the Pi 4 and Pi 5 GPIO (gate.pin_factory: lgpio)
run .venv/bin/pip install --quiet lgpio

say "2/6 the checkgate user"
getent passwd checkgate >/dev/null \
  || run useradd --system --home-dir /var/lib/checkgate --shell /usr/sbin/nologin checkgate
# the unit starts only if every supplementary group exists (gpio is missing off the Pi)
for group in dialout gpio video audio; do
  getent group "$group" >/dev/null || run groupadd --system "$group"
done
run usermod -aG dialout,gpio,video,audio checkgate

say "3/6 stable device names"
run install -m 0644 deploy/udev/99-checkgate.rules /etc/udev/rules.d/99-checkgate.rules
run udevadm control --reload
run udevadm trigger

say "4/6 the gate's bundle"
run install -d -m 0750 -o root -g checkgate /etc/checkgate
for f in "${files[@]}"; do
  run install -m 0640 -o root -g checkgate "$bundle/$f" "/etc/checkgate/$f"
done

say "5/6 checks: the config, then the log-in to the broker"
run runuser -u checkgate -- .venv/bin/checkgate edge run --validate-config --config /etc/checkgate/gate.yaml
# the gate works offline, so an unreachable broker is a warning, not a reason to stop here
run runuser -u checkgate -- .venv/bin/checkgate provision check --config /etc/checkgate/gate.yaml \
  || echo "install-gate: WARNING: no log-in to the broker yet (see above); the gate will decide offline" \
          "and send its events once it gets through" >&2
# voice prompts (zh-CN and en) are generated once here with espeak-ng, into the data folder
run install -d -m 0750 -o checkgate -g checkgate /var/lib/checkgate
run runuser -u checkgate -- .venv/bin/checkgate edge voices --config /etc/checkgate/gate.yaml \
  || echo "install-gate: WARNING: voice prompts not generated (is espeak-ng installed?)" >&2

say "6/6 the service"
run install -m 0644 deploy/systemd/checkgate-edge.service /etc/systemd/system/checkgate-edge.service
run systemctl daemon-reload
run systemctl enable --now checkgate-edge
# scripts/setup installs Mosquitto for the demo; a gate does not run a broker
if systemctl is-enabled --quiet mosquitto 2>/dev/null; then
  run systemctl disable --now mosquitto
fi

say "done"
echo "Check: systemctl status checkgate-edge; journalctl -u checkgate-edge -f;"
echo "the volunteer screen shows thermometer, camera and uplink; the dashboard lists the gate online."
