#!/usr/bin/env bash
# Runs Earshot's systemd units (systemd/) under a REAL systemd, booted as PID 1 of a fresh PID, mount,
# cgroup, UTS, IPC and network namespace, and walks the unattended workflow of docs/adaptation.md:
#
#   1. installs the binaries, the model, the units, sysusers and tmpfiles entries exactly where the
#      docs' Install sections put them (nothing in the units is rewritten; see "Rewrites" below);
#   2. starts earshotd through earshotd.socket only: a client in the earshot group (not root) connects,
#      systemd starts the daemon (Type=notify, User=earshot, the unit's sandbox), the client gets
#      `status` and a streamed FSDD recording's transcript;
#   3. enables earshot-adapt.path/.timer, drops $ITEMS FSDD recordings with .txt transcripts into the
#      spool as a member of the earshot group (written under a hidden name, then renamed in: the
#      spool's "hidden name, then rename" convention), and waits until systemd has run
#      earshot-adapt.service to the end (ExecCondition ingest -> adapt -> rm -> reload), with the
#      unit's command line as shipped;
#   4. checks the daemon now serves the adapted model (status, its journal), reads the adaptation's
#      scheduling, nice, OOM score, I/O class and cgroup limits from /proc and the cgroup files while
#      it runs, and triggers the path unit again with nothing new: the condition skips the run and
#      the unit does not fail; then a slow copy (30 hidden files, one every 0.2 s, as rsync's
#      temporary files arrive) must leave earshot-adapt.path active (with systemd's default start
#      limit on the service, or the 20-in-10-s trigger limit the path unit had, it went down);
#      prints what systemd itself logged at warning level (directives it could not apply here);
#   5. powers the namespace's systemd off (earshotd stops in order) and checks nothing is left: no
#      process or mount of the namespaces, no cgroup, host /etc/passwd, /etc/group, /etc/shadow and
#      the kernel settings systemd touches unchanged, the background `earshot train` still running.
#
# Run (as root, on Linux with /lib/systemd/systemd, unshare/nsenter from util-linux, overlayfs):
#   swift build -c release --product earshot && swift build -c release --product earshotd
#   sudo bench/systemd-workflow.sh     # ITEMS=40 recordings (digits 0-9 of each speaker in turn)
#
# The host is never changed: the namespace sees /etc, /var and /usr as overlays whose writes land in a
# temporary folder, a private /run, /tmp and /dev, / read-only, /proc/sys and /sys read-only (kernel
# settings are not namespaced), and the host units that act on the shared kernel (modules, sysctl,
# binfmt, clock, pstore...) masked in the overlay /etc. Signals only ever go to the namespace's PID 1,
# which this script started. Everything (overlays, cgroups, the temporary folder) is removed on exit,
# also on failure (trap).
#
# Rewrites: none in the units. They expect /usr/local/bin/earshot{,d} and
# /usr/share/earshot/models/earshot-base-en.safetensors; inside the namespace those paths are on the
# /usr overlay, so the release builds of this worktree are installed there, as the docs' Install
# sections do. Configuration written (the admin's part, docs/adaptation.md):
# /etc/earshot/earshotd.toml with `model` = the adapted path, `fallback_model` = the shipped model,
# and `capture.enabled = false`, because the namespace has no sound card (the daemon would otherwise
# retry the microphone forever and log it; sessions work either way).
#
# Exit status 0 when every check passed; the first failed check stops the run with its reason.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/bench/$(basename "${BASH_SOURCE[0]}")

# ---------------------------------------------------------------------------------------------------
# Inside the namespaces, before systemd: private mounts, then exec systemd as PID 1.
if [ "${1:-}" = "--namespace-init" ]; then
  W=$2
  mount --make-rprivate /
  # Writable views of /etc, /var and /usr whose writes land in $W (sysusers' /etc/passwd, the units,
  # /var/lib/earshot, /usr/local/bin...). Mounted before / is made read-only: an overlay keeps the
  # upper folder's mount as it was when mounted.
  for d in etc var usr; do
    mkdir -p "$W/ov/$d/up" "$W/ov/$d/wk"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/ov/$d/up,workdir=$W/ov/$d/wk" "/$d"
  done
  mount -o remount,bind,ro /
  # Kernel settings are global: systemd (PID 1, systemd-sysctl) must not write them.
  mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
  mount --bind /sys /sys && mount -o remount,bind,ro /sys
  # The cgroup hierarchies as this cgroup namespace sees them (rooted at the folders the outer script
  # made), so systemd's slices live under earshot-bench-PID/ on the host.
  mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
  for c in $(cat "$W/controllers"); do
    mkdir "/sys/fs/cgroup/$c"
    case $c in
      systemd) mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd ;;
      unified) mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified ;;
      *) mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" ;;
    esac
  done
  mount -o remount,ro /sys/fs/cgroup
  # A private /dev with the usual nodes (the units' PrivateDevices= builds its own from it).
  mount -t tmpfs -o mode=755,nosuid tmpfs /dev
  mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; mknod -m 666 /dev/full c 1 7
  mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9; mknod -m 666 /dev/tty c 5 0
  mkdir /dev/pts /dev/shm
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
  ln -s pts/ptmx /dev/ptmx
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
  ln -s /proc/self/fd /dev/fd
  ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
  mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp

  # The host's enabled units (postgresql, getty, apt timers...) are not this namespace's business, and
  # those that act on the shared kernel or clock are masked (in the overlay /etc only).
  # Only ever on the overlay: should its mount have failed silently, this would be the host's /etc.
  [ "$(findmnt -n -o FSTYPE /etc)" = overlay ] || { echo "namespace init: /etc is not the overlay; stopping" >&2; exit 1; }
  rm -rf /etc/systemd/system/*.wants
  for u in modprobe@.service systemd-modules-load.service systemd-sysctl.service systemd-binfmt.service \
           proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount systemd-timesyncd.service \
           systemd-remount-fs.service systemd-pstore.service systemd-random-seed.service \
           sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
           sys-fs-fuse-connections.mount kmod-static-nodes.service systemd-hwdb-update.service \
           systemd-udevd.service systemd-udev-trigger.service systemd-journald-audit.socket \
           systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.timer \
           systemd-firstboot.service systemd-logind.service getty@.service console-getty.service; do
    ln -sf /dev/null "/etc/systemd/system/$u"
  done
  mkdir -p /var/log/journal   # a persistent journal, read after the namespace is gone
  cat > /etc/systemd/system/earshot-bench.target <<'EOF'
[Unit]
Description=Earshot bench (bench/systemd-workflow.sh)
Wants=systemd-journald.service
After=systemd-journald.service
EOF
  hostname earshot-bench
  exec env -i container=earshot-bench PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=earshot-bench.target --show-status=no
fi

# ---------------------------------------------------------------------------------------------------
# Outside: the host side.
ITEMS=${ITEMS:-40}
BIN=$ROOT/.build/release
FSDD=${FSDD:-$ROOT/../shared/data/fsdd/recordings}
MODEL=$ROOT/models/earshot-base-en.safetensors
T0=$(date +%s)
say() { printf '[%4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
fail() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || { echo "systemd-workflow: needs root (it boots systemd in new namespaces)" >&2; exit 1; }
for b in /lib/systemd/systemd "$(command -v unshare)" "$(command -v nsenter)" "$(command -v setpriv)"; do
  [ -x "$b" ] || { echo "systemd-workflow: $b missing" >&2; exit 1; }
done
for b in "$BIN/earshot" "$BIN/earshotd"; do
  [ -x "$b" ] || { echo "systemd-workflow: $b not found; build with: swift build -c release --product earshot && swift build -c release --product earshotd" >&2; exit 1; }
done
[ -f "$MODEL" ] || { echo "systemd-workflow: $MODEL missing" >&2; exit 1; }
[ -f "$FSDD/0_george_0.wav" ] || { echo "systemd-workflow: FSDD recordings not in $FSDD (set FSDD)" >&2; exit 1; }
grep -qw overlay /proc/filesystems || { echo "systemd-workflow: the kernel has no overlayfs" >&2; exit 1; }

# What must be the same afterwards.
host_state() {
  sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow 2>/dev/null
  for k in kernel/pid_max fs/nr_open fs/file-max fs/protected_regular fs/protected_fifos kernel/core_pattern; do
    [ -r "/proc/sys/$k" ] && echo "$k=$(cat "/proc/sys/$k")"
  done
  echo "mounts=$(wc -l < /proc/self/mountinfo)"
}
BEFORE_STATE=$(host_state)
HOST_HAD_EARSHOT=$(getent passwd earshot >/dev/null && echo yes || echo no)
TRAIN_BEFORE=$(pgrep -f "earshot train" | sort | tr '\n' ' ' || true)
say "host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); earshot train pids before: ${TRAIN_BEFORE:-none}"

W=$(mktemp -d /tmp/earshot-systemd.XXXXXX)
chmod 755 "$W"
NAME=earshot-bench-$$
UNSHARE_PID="" NSPID="" PIDNS="" MNTNS=""
CGROUPS=()

# One folder per cgroup hierarchy, below the one this script runs in, for the namespace's systemd.
CONTROLLERS=()
while IFS=: read -r _ ctl path; do
  case $ctl in
    "") dir=/sys/fs/cgroup/unified; name=unified ;;
    name=systemd) dir=/sys/fs/cgroup/systemd; name=systemd ;;
    *,*) continue ;;   # a co-mounted hierarchy (cpu,cpuacct): not handled here
    *) dir=/sys/fs/cgroup/$ctl; name=$ctl ;;
  esac
  [ -d "$dir$path" ] || continue
  mkdir "$dir$path/$NAME"
  CGROUPS+=("$dir$path/$NAME")
  CONTROLLERS+=("$name")
  if [ "$name" = cpuset ]; then
    cat "$dir$path/cpuset.cpus" > "$dir$path/$NAME/cpuset.cpus"
    cat "$dir$path/cpuset.mems" > "$dir$path/$NAME/cpuset.mems"
  fi
done < /proc/self/cgroup
echo "${CONTROLLERS[*]}" > "$W/controllers"

in_ns() { timeout "${NS_TIMEOUT:-60}" nsenter --target "$NSPID" --all -- env SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 "$@"; }
# A member of the earshot group that is not root (docs: "usermod -aG earshot alice").
as_member() { in_ns setpriv --reuid=nobody --regid=nogroup --groups=earshot -- "$@"; }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$NSPID" ] && kill -0 "$NSPID" 2>/dev/null; then
    say "cleanup: powering the namespace's systemd off"
    NS_TIMEOUT=10 in_ns systemctl start --no-block --job-mode=replace-irreversibly poweroff.target >/dev/null 2>&1
    for _ in $(seq 1 60); do kill -0 "$NSPID" 2>/dev/null || break; sleep 1; done
    # Killing a PID namespace's init kills everything in that namespace, nothing outside it.
    kill -0 "$NSPID" 2>/dev/null && { say "cleanup: systemd did not stop in 60 s; SIGKILL to the namespace's PID 1"; kill -KILL "$NSPID"; }
  fi
  [ -n "$UNSHARE_PID" ] && wait "$UNSHARE_PID" 2>/dev/null
  local cg
  for cg in "${CGROUPS[@]}"; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
    [ -d "$cg" ] && say "cleanup: cgroup $cg could not be removed"
  done
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT INT TERM

# ---------------------------------------------------------------------------------------------------
say "1. booting /lib/systemd/systemd ($(/lib/systemd/systemd --version | head -1)) as PID 1 of new pid+mount+cgroup+uts+ipc+net namespaces"
bash -c 'for cg in "$@"; do echo $$ > "$cg/cgroup.procs"; done
         exec unshare --pid --fork --mount --mount-proc --cgroup --uts --ipc --net --propagation private \
           bash "'"$SELF"'" --namespace-init "'"$W"'"' _ "${CGROUPS[@]}" > "$W/console.log" 2>&1 &
UNSHARE_PID=$!
for _ in $(seq 1 100); do
  NSPID=$(pgrep -P "$UNSHARE_PID" || true)
  [ -n "$NSPID" ] && [ "$(cat "/proc/$NSPID/comm" 2>/dev/null)" = systemd ] && break
  kill -0 "$UNSHARE_PID" 2>/dev/null || { cat "$W/console.log"; fail "the namespace's init exited before systemd ran"; }
  sleep 0.1
done
[ "$(cat "/proc/$NSPID/comm" 2>/dev/null)" = systemd ] || { cat "$W/console.log"; fail "systemd did not start"; }
PIDNS=$(readlink "/proc/$NSPID/ns/pid"); MNTNS=$(readlink "/proc/$NSPID/ns/mnt")
state=""
for _ in $(seq 1 60); do
  state=$(NS_TIMEOUT=5 in_ns systemctl is-system-running 2>/dev/null || true)
  case $state in running|degraded) break ;; esac
  sleep 1
done
case $state in running|degraded) ;; *) cat "$W/console.log"; fail "systemd did not come up (state '$state')" ;; esac
say "   systemd is PID 1 of $PIDNS (host pid $NSPID); system state: $state"
if [ "$state" = degraded ]; then in_ns systemctl --failed --no-legend | sed 's/^/   failed: /'; fi

# ---------------------------------------------------------------------------------------------------
say "2. installing as docs/daemon.md and docs/adaptation.md say (inside the namespace)"
in_ns sh -euc '
  cd "$1"
  install -m 755 .build/release/earshot .build/release/earshotd /usr/local/bin/
  install -d /usr/share/earshot/models
  install -m 644 models/earshot-base-en.safetensors models/rehearsal-en.tsv /usr/share/earshot/models/
  install -m 644 systemd/earshot.sysusers /usr/lib/sysusers.d/earshot.conf && systemd-sysusers
  install -m 644 systemd/earshot.tmpfiles /usr/lib/tmpfiles.d/earshot.conf && systemd-tmpfiles --create earshot.conf
  install -m 644 systemd/earshotd.service systemd/earshotd.socket /etc/systemd/system/
  install -m 644 systemd/earshot-adapt.service systemd/earshot-adapt.path systemd/earshot-adapt.timer /etc/systemd/system/
  install -d /etc/earshot
  cat > /etc/earshot/earshotd.toml <<EOF
model = "/var/lib/earshot/models/adapted.safetensors"
fallback_model = "/usr/share/earshot/models/earshot-base-en.safetensors"

[capture]
enabled = false
EOF
  systemctl daemon-reload
' _ "$ROOT"
say "   $(in_ns id earshot)"
say "   $(in_ns stat -c '%A %U:%G %n' /var/lib/earshot/spool /var/lib/earshot/domain /var/lib/earshot/models /var/cache/earshot | tr '\n' ';')"
say "   host /etc/passwd has an earshot user: $(getent passwd earshot >/dev/null && echo yes || echo no) (before: $HOST_HAD_EARSHOT)"

# ---------------------------------------------------------------------------------------------------
say "3. socket activation: enable --now earshotd.socket only"
in_ns systemctl enable --now earshotd.socket 2>&1 | sed 's/^/   /'
[ "$(in_ns systemctl is-active earshotd.socket)" = active ] || fail "earshotd.socket is not active"
svc=$(in_ns systemctl is-active earshotd.service || true)
[ "$svc" = inactive ] || fail "earshotd.service is $svc before any client connected"
say "   earshotd.socket active, earshotd.service $svc; $(in_ns stat -c '%A %U:%G %n' /run/earshot/earshotd.sock)"
SOCK=/run/earshot/earshotd.sock
t=$(date +%s%N)
STATUS=$(as_member /usr/local/bin/earshot status --socket "$SOCK") || fail "earshot status (as a member of the earshot group) got no answer"
say "   first client (uid nobody, group earshot) answered after $(( ($(date +%s%N) - t) / 1000000 )) ms (daemon started by the socket):"
echo "$STATUS" | sed 's/^/     | /'
[ "$(in_ns systemctl is-active earshotd.service)" = active ] || fail "earshotd.service not active after the client connected"
DPID=$(in_ns systemctl show -P MainPID earshotd.service)
say "   earshotd.service active, MainPID $DPID, user $(in_ns ps -o user= -p "$DPID"), $(in_ns systemctl show -P StatusText earshotd.service)"
in_ns journalctl -b -u earshotd.service -o cat --no-pager | sed 's/^/     journal| /'
TEST_WAV=$FSDD/7_jackson_3.wav
TEXT=$(as_member /usr/local/bin/earshot stream --socket "$SOCK" "$TEST_WAV") || fail "earshot stream through the socket failed"
say "   earshot stream $(basename "$TEST_WAV") (\"seven\") with the fallback (shipped) model: '$TEXT'"

# ---------------------------------------------------------------------------------------------------
say "4. adaptation: $ITEMS FSDD items staged in the spool, enable --now earshot-adapt.path earshot-adapt.timer, rename them in"
WORDS=(zero one two three four five six seven eight nine)
SPEAKERS=(george jackson lucas nicolas)
SPOOL=/var/lib/earshot/spool
# Written into a hidden folder of the spool (ingest ignores dot names; the path unit does not see
# inside it), then renamed in by one mv: the spool's "write to a hidden name, then rename" convention,
# so the items appear together.
as_member mkdir "$SPOOL/.drop"
for i in $(seq 0 $((ITEMS - 1))); do
  d=$((i % 10)); s=${SPEAKERS[$(( (i / 10) % 4 ))]}; n=$((5 + i / 40))
  f=${d}_${s}_${n}
  as_member cp "$FSDD/$f.wav" "$SPOOL/.drop/$f.wav"
  echo "${WORDS[$d]}" | as_member sh -c "cat > '$SPOOL/.drop/$f.txt'"
done
in_ns systemctl enable --now earshot-adapt.path earshot-adapt.timer 2>&1 | sed 's/^/   /'
[ "$(in_ns systemctl is-active earshot-adapt.path)" = active ] || fail "earshot-adapt.path is not active"
# The journal from here on: a cursor, so that earlier lines of the unit are never counted.
cursor() { in_ns journalctl -n 1 -o cat --show-cursor --no-pager | sed -n 's/^-- cursor: //p'; }
adapt_journal() { in_ns journalctl -u earshot-adapt.service --after-cursor="$1" --no-pager "${@:2}"; }
C1=$(cursor)
DROP_T=$(date +%s)
as_member sh -c "cd '$SPOOL' && mv .drop/* . && rmdir .drop"
say "   dropped: $(in_ns ls "$SPOOL" | tr '\n' ' ')"

# While the service runs: the adaptation process's scheduling and limits, as the kernel sees them.
SEEN_ADAPT=""
RUN_LOG=$W/adapt-run.log
for _ in $(seq 1 1800); do
  res=$(in_ns systemctl show -P ActiveState earshot-adapt.service)
  if [ -z "$SEEN_ADAPT" ]; then
    apid=$(in_ns sh -c 'for p in $(systemctl show -P MainPID earshot-adapt.service) $(systemctl show -P ControlPID earshot-adapt.service); do [ "$p" != 0 ] && tr "\0" " " < /proc/$p/cmdline | grep -q " adapt " && echo $p; done' 2>/dev/null || true)
    if [ -n "$apid" ]; then
      SEEN_ADAPT=$apid
      in_ns sh -c '
        p=$1; cg=$(sed -n "s/^[0-9]*:memory://p" /proc/$p/cgroup)
        echo "cmdline:     $(tr "\0" " " < /proc/$p/cmdline)"
        echo "user:        $(ps -o user= -p $p)"
        echo "policy:      $(chrt -p $p | sed -n "s/.*policy: //p") (threads: $(ps -L -o cls= -p $p | sort | uniq -c | tr -s " " | tr "\n" ";"))"
        echo "nice:        $(cut -d" " -f19 /proc/$p/stat)"
        echo "ionice:      $(ionice -p $p)"
        echo "oom_score_adj: $(cat /proc/$p/oom_score_adj)"
        grep -E "^(NoNewPrivs|Seccomp|CapEff|CapBnd):" /proc/$p/status | tr -s "\t" " "
        echo "cgroup:      $cg"
        echo "memory.limit_in_bytes:      $(cat /sys/fs/cgroup/memory$cg/memory.limit_in_bytes)"
        echo "memory.memsw.limit_in_bytes: $(cat /sys/fs/cgroup/memory$cg/memory.memsw.limit_in_bytes 2>/dev/null || echo "(no swap accounting)")"
        echo "cpu.shares:  $(cat /sys/fs/cgroup/cpu$cg/cpu.shares 2>/dev/null || echo "?")"
        echo "pids.max:    $(cat /sys/fs/cgroup/pids$cg/pids.max 2>/dev/null || echo "?")"
        echo "blkio.weight: $(cat /sys/fs/cgroup/blkio$cg/blkio.weight 2>/dev/null || cat /sys/fs/cgroup/blkio$cg/blkio.bfq.weight 2>/dev/null || echo "(no blkio weight file)")"
        echo "mount ns differs from PID 1: $([ "$(readlink /proc/$p/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] && echo yes || echo no); net ns differs: $([ "$(readlink /proc/$p/ns/net)" != "$(readlink /proc/1/ns/net)" ] && echo yes || echo no)"
      ' _ "$apid" > "$RUN_LOG" 2>&1 || true
      say "   earshot adapt running as pid $apid (namespace's numbering); read from /proc and its cgroup:"
      sed 's/^/     | /' "$RUN_LOG"
    fi
  fi
  if adapt_journal "$C1" -o cat 2>/dev/null | grep -qE "^Finished |Failed with result|^Failed to start"; then
    [ "$res" = activating ] || break
  fi
  sleep 0.5
done
END_T=$(date +%s)
JOURNAL=$(adapt_journal "$C1" -o short-monotonic)
echo "$JOURNAL" | sed 's/^/     journal| /'
echo "$JOURNAL" | grep -q "Finished " || fail "earshot-adapt.service did not finish (see its journal above)"
[ -n "$SEEN_ADAPT" ] || say "   (the adaptation ended before its process could be sampled)"
say "   earshot-adapt.service ran to the end in $((END_T - DROP_T)) s after the drop: $(in_ns systemctl show -p Result -p ExecMainStatus earshot-adapt.service | tr '\n' ' ')"
echo "$JOURNAL" | grep -E "earshot\[[0-9]+\]: (before|after): " | sed 's/.*: \(before\|after\):/   adapt \1:/' || true
in_ns test -f /var/lib/earshot/models/adapted.safetensors || fail "no adapted model written"
in_ns test ! -e /var/lib/earshot/domain/.adapt-pending || fail ".adapt-pending still there"
say "   $(in_ns stat -c '%A %U:%G %s bytes %n' /var/lib/earshot/models/adapted.safetensors)"
say "   domain: $(in_ns sh -c 'ls /var/lib/earshot/domain | wc -l') files; spool now: '$(in_ns ls -A "$SPOOL" | tr '\n' ' ')'"
say "   the unit's resource settings as systemd holds them:"
in_ns systemctl show earshot-adapt.service -p CPUSchedulingPolicy -p Nice -p IOSchedulingClass -p IOSchedulingPriority \
  -p CPUWeight -p IOWeight -p MemoryHigh -p MemoryMax -p MemorySwapMax -p OOMScoreAdjust -p TasksMax | sed 's/^/     | /'

STATUS2=$(as_member /usr/local/bin/earshot status --socket "$SOCK") || fail "earshot status after the reload failed"
echo "$STATUS2" | sed 's/^/     | /'
echo "$STATUS2" | grep -q "adapted.safetensors" || fail "the daemon does not serve the adapted model"
say "   earshotd's journal since the drop:"
in_ns journalctl -u earshotd.service --after-cursor="$C1" -o cat --no-pager | sed 's/^/     journal| /'
[ "$(in_ns systemctl show -P MainPID earshotd.service)" = "$DPID" ] || fail "earshotd was restarted instead of reloaded"
TEXT2=$(as_member /usr/local/bin/earshot stream --socket "$SOCK" "$TEST_WAV") || fail "earshot stream after the reload failed"
say "   earshot stream $(basename "$TEST_WAV") (\"seven\", a take not in the drop) with the adapted model: '$TEXT2'"

say "   second trigger with nothing new (a hidden file created and removed in the spool)"
C2=$(cursor)
as_member sh -c "touch '$SPOOL/.poke' && rm '$SPOOL/.poke'"
for _ in $(seq 1 120); do
  J2=$(adapt_journal "$C2" -o cat)
  echo "$J2" | grep -qE "Skipped due to|^Finished |Failed with result" && [ "$(in_ns systemctl show -P ActiveState earshot-adapt.service)" != activating ] && break
  sleep 0.5
done
echo "$J2" | sed 's/^/     journal| /'
echo "$J2" | grep -q "nothing new" || fail "the path unit did not run the service (its condition) on the second change"
echo "$J2" | grep -q "Skipped due to 'exec-condition'" || fail "the second run was not skipped by its ExecCondition="
echo "$J2" | grep -q "Finished " && fail "the second run adapted again although nothing was new"
SHOW=$(in_ns systemctl show -p ActiveState -p Result -p ConditionResult earshot-adapt.service | tr '\n' ' ')
say "   after the second trigger: $SHOW; is-failed: $(in_ns systemctl is-failed earshot-adapt.service || true); path unit: $(in_ns systemctl is-active earshot-adapt.path)"
[ "$(in_ns systemctl is-failed earshot-adapt.service || true)" != failed ] || fail "the skipped run left the unit failed"
[ "$(in_ns systemctl is-active earshot-adapt.path)" = active ] || fail "earshot-adapt.path is no longer active: $(in_ns systemctl show -p Result earshot-adapt.path)"
say "   a slow copy: 30 files written one every 0.2 s (hidden names: each change runs the service, whose condition skips)"
C3=$(cursor)
as_member sh -c "cd '$SPOOL' && for i in \$(seq 1 30); do echo x > .slow-\$i; sleep 0.2; done; rm -f .slow-*"
sleep 2
J3=$(adapt_journal "$C3" -o cat)
say "   runs skipped by the condition during the copy: $(echo "$J3" | grep -c "Skipped due to" || true); path unit: $(in_ns systemctl show -p ActiveState -p Result earshot-adapt.path | tr '\n' ' ')"
in_ns journalctl -u earshot-adapt.path --after-cursor="$C3" -o cat --no-pager | sed 's/^/     journal| /'
[ "$(in_ns systemctl is-active earshot-adapt.path)" = active ] || fail "a slow copy into the spool stopped earshot-adapt.path: $(in_ns systemctl show -p Result earshot-adapt.path)"
say "   what systemd (PID 1) logged at warning level or above since boot:"
in_ns journalctl -b -p warning _PID=1 -o cat --no-pager | sed 's/^/     journal| /'
say "   timer: next run $(in_ns systemctl show -P NextElapseUSecRealtime earshot-adapt.timer)"

# ---------------------------------------------------------------------------------------------------
say "5. poweroff of the namespace's systemd"
MACHINE_ID=$(in_ns cat /etc/machine-id)
in_ns systemctl start --no-block --job-mode=replace-irreversibly poweroff.target
for _ in $(seq 1 90); do kill -0 "$NSPID" 2>/dev/null || break; sleep 1; done
kill -0 "$NSPID" 2>/dev/null && fail "systemd did not power off within 90 s"
wait "$UNSHARE_PID" && ns_rc=0 || ns_rc=$?
NSPID=""
say "   systemd exited (unshare status $ns_rc: systemd-shutdown ends a container's PID 1 that way)"
JDIR=$W/ov/var/up/log/journal/$MACHINE_ID
if [ -d "$JDIR" ]; then
  journalctl --directory="$JDIR" -u earshotd.service -o cat --no-pager | tail -n 6 | sed 's/^/     journal| /'
fi
UNSHARE_PID=""
left_p="" left_m=""
for p in /proc/[0-9]*; do
  if [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$PIDNS" ]; then left_p+=" ${p#/proc/}"; fi
  if [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$MNTNS" ]; then left_m+=" ${p#/proc/}"; fi
done
[ -z "$left_p$left_m" ] || fail "processes left in the namespaces: $left_p $left_m"
for cg in "${CGROUPS[@]}"; do find "$cg" -depth -type d -exec rmdir {} \; ; done
for cg in "${CGROUPS[@]}"; do [ ! -d "$cg" ] || fail "cgroup $cg left"; done
AFTER_STATE=$(host_state)
[ "$AFTER_STATE" = "$BEFORE_STATE" ] || { diff <(echo "$BEFORE_STATE") <(echo "$AFTER_STATE") || true; fail "the host changed"; }
TRAIN_AFTER=$(pgrep -f "earshot train" | sort | tr '\n' ' ' || true)
[ "$TRAIN_AFTER" = "$TRAIN_BEFORE" ] || fail "earshot train pids changed: before '$TRAIN_BEFORE', after '$TRAIN_AFTER'"
say "   left behind: no process and no mount of the namespaces, no cgroup; host /etc/passwd, group, shadow, gshadow, kernel settings and mount table unchanged; earshot train pids: ${TRAIN_AFTER:-none}"
say "all checks passed in $(( $(date +%s) - T0 )) s"
