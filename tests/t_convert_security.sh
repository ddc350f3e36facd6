#!/bin/sh
# t_convert_security.sh - scripts/convert-demucs.py never runs code from a
# checkpoint.  t_convert.sh covers GLOBAL os.system + REDUCE; this covers the
# other opcodes that resolve a global (STACK_GLOBAL, INST, OBJ), other
# dangerous callables (builtins.eval/exec/getattr/__import__, posix.system,
# subprocess.Popen) and dotted names that walk from an allowed global towards
# a dangerous one.  Each payload is first shown to be live (plain
# pickle.loads runs it, in a control directory), then the converter must exit
# 65 naming the refused global, create no output, and never run it.
. "$(dirname "$0")/lib.sh"
CONV="$SS_ROOT/scripts/convert-demucs.py"
if ! command -v python3 >/dev/null 2>&1; then
    skip convert_security "python3 not found"; exit 0
fi

# craft.py DIR MARKER: one checkpoint per payload in DIR, each creating MARKER.
cat >"$T/craft.py" <<'EOF2'
import os, struct, sys, zipfile
out, marker = sys.argv[1], sys.argv[2]
def u(b):  # BINUNICODE
    return b"X" + struct.pack("<I", len(b)) + b
cmd = ("touch " + marker).encode()
py = ("open(%r, 'w').close()" % marker).encode()
P2, P4 = b"\x80\x02", b"\x80\x04"
pk = {
    "stack_global_eval": P4 + u(b"builtins") + u(b"eval") + b"\x93" + u(py) + b"\x85R.",
    "inst_system": b"(" + u(cmd) + b"ios\nsystem\n.",
    "obj_system": P2 + b"(cposix\nsystem\n" + u(cmd) + b"o.",
    "reduce_popen": P2 + b"csubprocess\nPopen\n(" + u(b"touch") + u(marker.encode()) + b"l\x85R.",
    "exec": P2 + b"cbuiltins\nexec\n" + u(py) + b"\x85R.",
    "getattr_import": P2 + b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n" + u(b"os") + b"\x85R"
                      + u(b"system") + b"tR" + u(cmd) + b"\x85R.",
    "dotted_globals": P4 + u(b"torch._utils") + u(b"_rebuild_tensor_v2.__globals__") + b"\x93.",
    "dotted_ordereddict": P4 + u(b"collections") + u(b"OrderedDict.__init__.__globals__") + b"\x93.",
}
for name, raw in pk.items():
    with zipfile.ZipFile(os.path.join(out, name + ".th"), "w") as z:
        z.writestr("archive/data.pkl", raw)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", b"\0" * 64)
EOF2
mkdir -p "$T/evil" "$T/ctl"
if ! python3 "$T/craft.py" "$T/ctl" "$T/LIVE" || ! python3 "$T/craft.py" "$T/evil" "$T/PWNED"; then
    fail craft "could not craft the test checkpoints"; exit 0
fi
unpickle='import pickle, sys, zipfile; pickle.loads(zipfile.ZipFile(sys.argv[1]).read("archive/data.pkl"))'
# refuse NAME GLOBAL [live]: converter exits 65 naming GLOBAL; nothing runs, nothing written
refuse() {
    rn=$1 rg=$2
    if [ "${3:-}" = live ]; then
        rm -f "$T/LIVE"
        python3 -c "$unpickle" "$T/ctl/$rn.th" >/dev/null 2>&1
        # Popen runs touch asynchronously: wait for it (bounded) before judging
        i=0; while [ ! -e "$T/LIVE" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        check "live_$rn" test -e "$T/LIVE"
    fi
    expect_exit "refuse_$rn" 65 python3 "$CONV" -o "$T/$rn.safetensors" "$T/evil/$rn.th"
    check "names_global_$rn" grep -qF "refusing to unpickle global $rg" "$T/out.refuse_$rn"
    check "no_output_$rn" test ! -e "$T/$rn.safetensors"
    check "no_exec_$rn" test ! -e "$T/PWNED"
}
refuse stack_global_eval builtins.eval live
refuse inst_system os.system live
refuse obj_system posix.system live
refuse reduce_popen subprocess.Popen live
refuse exec builtins.exec live
refuse getattr_import builtins.getattr live
refuse dotted_globals "torch._utils._rebuild_tensor_v2.__globals__"
refuse dotted_ordereddict "collections.OrderedDict.__init__.__globals__"
sleep 0.3   # a late Popen child (there should be none) would show up here
check no_exec_at_all test ! -e "$T/PWNED"
