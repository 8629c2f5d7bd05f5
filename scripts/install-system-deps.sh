#!/usr/bin/env bash
# Debian packages the tests drive for real: chromium (site tests), rclone (training data),
# Java, Maven and npm (the site's HTML and accessibility checkers), and the real node's
# runtime and image tools.
set -euo pipefail
need=()
if ! command -v chromium >/dev/null 2>&1; then
  if grep -qi '^ID=ubuntu' /etc/os-release 2>/dev/null; then
    # Ubuntu has no chromium deb (only a stub that installs the snap, not /usr/bin/chromium);
    # GitHub's ubuntu-24.04 runners ship Chromium at /usr/bin/chromium already.
    echo "warning: no chromium on PATH; on Ubuntu link a Chromium or Chrome to /usr/bin/chromium" >&2
  else
    need+=(chromium)
  fi
fi
command -v rclone >/dev/null 2>&1 || need+=(rclone)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)  # actionlint checks run: scripts with it
# The site's checkers: the Nu Html Checker runs on Java, axe-core comes from npm.
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
# The catalog sync's tests serve real repositories with git's own CGI, git http-backend.
[ -x /usr/lib/git-core/git-http-backend ] || need+=(git)
# The dev cluster's real node: runc + CNI plugins run its pods, iptables carries kube-proxy's
# Services, podman + debootstrap build its images without a Docker engine. The names are the
# same on Ubuntu 24.04, where Docker's containerd.io (GitHub's runners) already provides runc.
# No containerd package: the node runs a pinned containerd 2.x built from the Go module proxy
# (tools/containerd); Debian's 1.6 is too old for the kubelet, and its package would start a
# host-wide containerd service the node does not use.
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}" >&2
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
