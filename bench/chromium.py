"""How this project starts Debian's Chromium headless: the flags shared by the browser benchmark
and the browser tests (no sandbox in a container; nothing that phones home or updates itself)."""

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
