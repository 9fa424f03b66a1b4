#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (never a downloaded browser build). Install it (and a CJK font) when
# missing and we can; otherwise the browser tests skip themselves with a reason.
set -u
# Chinese pages need a CJK font, or every character renders as a box in screenshots.
if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi "CJK"; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser tests…"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk) >/tmp/scrm-chromium.log 2>&1; then
    exit 0
  fi
  echo "warning: could not install chromium (see /tmp/scrm-chromium.log); browser tests will be skipped" >&2
else
  echo "warning: /usr/bin/chromium is missing; install Debian's chromium package to run the browser tests" >&2
fi
exit 0
