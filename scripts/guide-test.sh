#!/usr/bin/env bash
# The user guide (docs/guide, mdBook): run every command block it shows, build it, check its
# links. A guide whose commands no longer work, or whose links point nowhere, fails CI.
#
# Blocks, by their info string:
#   sh,tested          run (bash -euo pipefail) in order, chapter after chapter, in one scratch
#                      directory; must exit 0
#   sh,tested,exit=N   the same, must exit N (a page that shows a failure)
#   …,expect=TEXT      and its output must contain TEXT (the step a failure names)
#   sh,ci              a script CI runs as such: each command must appear in .ci/run or
#                      scripts/test.sh (it is not run twice here)
#   any other sh/bash/console block is an error: the guide shows no command that is not tested.
#
# The environment the blocks run in: a real cosmian_vm_agent (simulated TEE) on swtpm with a
# simulated measured boot and IMA log, on loopback; COSMIAN_VM_URL, TOKEN and TPM set as the
# guide's introduction describes; `cosmian_vm` on the PATH is the real binary with
# --allow-insecure-tls --insecure-sim-root ARK added (the only simulated part is the TEE).
#
# Environment: BIN (the binaries, default target/debug), MDBOOK (default mdbook).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
BIN=${BIN:-$root/target/debug}
MDBOOK=${MDBOOK:-mdbook}
guide=$root/docs/guide

pids=()
work=$(mktemp -d /tmp/cosmian-guide.XXXXXX)
# cleanup (the EXIT trap), free_port, wait_port, start_swtpm, start_sim_agent.
. "$root/scripts/lib.sh"
trap cleanup EXIT
export TSS2_LOG=all+none

for b in cosmian_vm cosmian_vm_agent cosmian_vm_sim cosmian_fstool; do
    [ -x "$BIN/$b" ] || { echo "guide: $BIN/$b is missing: cargo build --workspace --all-features" >&2; exit 1; }
done

echo "== guide: a VM (swtpm, simulated boot and IMA, the agent with the simulated TEE)"
start_swtpm "$work/tpm"
"$BIN/cosmian_vm_sim" boot --tpm "$tcti" --event-log "$work/eventlog.bin"
mkdir -p "$work/app" "$work/run/home" "$work/path"
printf '#!/bin/sh\necho "my app"\n' > "$work/app/my_app.sh"
"$BIN/cosmian_vm_sim" ima-init --tpm "$tcti" --log "$work/ima.log"
"$BIN/cosmian_vm_sim" measure --tpm "$tcti" --log "$work/ima.log" "$BIN/cosmian_vm_agent" "$work/app/my_app.sh"
start_sim_agent "$BIN/cosmian_vm_agent"

# The PATH the blocks see: cosmian_vm trusting the simulated TEE, the other binaries as built.
# (`evidence verify` of raw TPM / IMA files refuses --insecure-sim-root: nothing simulated there.)
cat > "$work/path/cosmian_vm" <<SH
#!/bin/sh
sub=
for a in "\$@"; do case "\$a" in -*) ;; *) sub=\$a; break ;; esac; done
if [ "\$sub" = evidence ]; then
    case " \$* " in *" --bundle "*) ;; *) exec "$BIN/cosmian_vm" "\$@" ;; esac
fi
exec "$BIN/cosmian_vm" --allow-insecure-tls --insecure-sim-root "$work/data/sim/ark.pem" "\$@"
SH
chmod 755 "$work/path/cosmian_vm"
ln -s "$BIN/cosmian_fstool" "$work/path/cosmian_fstool"

echo "== guide: the command blocks"
COSMIAN_VM_URL="https://127.0.0.1:$agent_port" \
    TOKEN="$(cat "$work/data/enrolment-token")" \
    TPM="$tcti" \
    HOME="$work/run/home" \
    PATH="$work/path:$PATH" \
    python3 - "$guide/src" "$work/run" "$root" <<'PY'
import os, re, subprocess, sys

src, cwd, root = sys.argv[1:4]
summary = open(os.path.join(src, "SUMMARY.md")).read()
pages = re.findall(r"\]\(([^)]+\.md)\)", summary)
ci_text = open(os.path.join(root, ".ci/run")).read() + open(os.path.join(root, "scripts/test.sh")).read()
fence = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.S | re.M)
ran = ci = 0
errors = []
include = re.compile(r"\{\{#include ([^}]+)\}\}")
for page in pages:
    text = open(os.path.join(src, page)).read()
    # Pages included from docs/ are part of the guide: their blocks obey the same rules.
    base = os.path.dirname(os.path.join(src, page))
    text = include.sub(lambda m: open(os.path.join(base, m.group(1).strip())).read(), text)
    if sum(1 for line in text.splitlines() if line.startswith("```")) % 2:
        errors.append(f"{page}: a code fence is not closed (its block would be neither run nor checked)")
    for m in fence.finditer(text):
        info = [w.strip() for w in m.group(1).split(",") if w.strip()]
        lang = info[0] if info else ""
        code = m.group(2)
        where = f"{page}:{text[:m.start()].count(chr(10)) + 1}"
        if lang not in ("sh", "bash", "console", "shell"):
            continue
        if "ci" in info:
            for line in code.splitlines():
                line = line.strip()
                if line and not line.startswith("#") and line not in ci_text:
                    errors.append(f"{where}: `{line}` is marked ci but CI does not run it")
            ci += 1
            continue
        if "tested" not in info:
            errors.append(f"{where}: a command block that is not tested (mark it sh,tested)")
            continue
        want, expect = 0, []
        for w in info:
            if w.startswith("exit="):
                want = int(w[5:])
            elif w.startswith("expect="):
                expect.append(w[7:])
        print(f"--- {where}\n{code}", flush=True)
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, timeout=300,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(p.stdout, flush=True)
        ran += 1
        if p.returncode != want:
            errors.append(f"{where}: exited {p.returncode}, the page says {want}")
            break
        missing = [e for e in expect if e not in p.stdout]
        if missing:
            errors.append(f"{where}: the output does not contain {missing}")
            break
print(f"guide: {ran} blocks run, {ci} run by CI as scripts")
if errors:
    sys.exit("guide: FAILED\n" + "\n".join(errors))
PY

echo "== guide: mdbook build"
"$MDBOOK" build "$guide"
out=$root/target/guide

echo "== guide: links"
python3 - "$out" "$guide/src" <<'PY'
import os, re, sys, html.parser, urllib.parse

out = sys.argv[1]
class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])

pages = {}
for dirpath, _, files in os.walk(out):
    for f in files:
        if f.endswith(".html"):
            p = Page()
            p.feed(open(os.path.join(dirpath, f), encoding="utf-8").read())
            pages[os.path.normpath(os.path.join(dirpath, f))] = p
bad, checked = [], 0
for path, page in pages.items():
    if path.endswith(("print.html", "404.html", "toc.html")):
        continue
    for href in page.links:
        url = urllib.parse.urlsplit(href)
        if url.scheme or href.startswith("//") or href.startswith("mailto:"):
            continue  # external: not fetched (no network in CI)
        target = path if not url.path else os.path.normpath(os.path.join(os.path.dirname(path), url.path))
        if os.path.isdir(target):
            target = os.path.join(target, "index.html")
        checked += 1
        if not os.path.exists(target):
            bad.append(f"{os.path.relpath(path, out)}: {href}: no such page")
        elif url.fragment and target in pages and url.fragment not in pages[target].ids:
            bad.append(f"{os.path.relpath(path, out)}: {href}: no such anchor")
print(f"guide: {checked} internal links checked in {len(pages)} pages")
chapters = len(re.findall(r"\]\(([^)]+\.md)\)", open(os.path.join(sys.argv[2], "SUMMARY.md")).read()))
if len(pages) < chapters or checked == 0:
    sys.exit(f"guide: {len(pages)} pages and {checked} links, for {chapters} chapters: the book was not built where expected")
if bad:
    sys.exit("guide: broken links\n" + "\n".join(bad))
PY
echo "guide: done"
