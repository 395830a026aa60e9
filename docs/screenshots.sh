#!/usr/bin/env bash
# Look at the built site in a real headless browser: screenshots of the home page, one pipeline
# page and the CLI reference, served on the loopback interface (`make docs-screenshots`).
# Needs Chromium (Debian: apt-get install chromium); writes PNGs to ${1:-site-screenshots}.
set -euo pipefail
out=${1:-site-screenshots}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then echo "docs-screenshots: no Chromium on this machine (apt-get install chromium)" >&2; exit 2; fi
[ -f site/index.html ] || { echo "docs-screenshots: site/ is not built (make docs)" >&2; exit 2; }
mkdir -p "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory site >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$profile"' EXIT
profile=$(mktemp -d)
sleep 1
for page in "" pipelines/sts/ reference/cli/; do
  name=${page//\//_}; name=${name%_}; name=${name:-home}
  "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars --window-size=1280,1600 \
    --screenshot="$out/$name.png" "http://127.0.0.1:$port/$page" >/dev/null 2>&1
  echo "$out/$name.png"
done
