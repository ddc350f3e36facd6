#!/usr/bin/env python3
"""Merge stemsplit --report-json files (the shards of one batch, or a run and
its --skip-existing reruns) into one report, and print a summary.

    merge-reports.py [-o MERGED.json] REPORT.json...

The merged document has the stemsplit report's shape ("files", "total", the
model and device of the first report) plus "reports": one entry per input
report.  An input listed in several reports keeps its best entry (ok, then
skipped, then failed), so a run merged with its rerun shows the final state.
Totals: "files", "failed", "skipped" count the merged entries;
"audio_seconds" sums the ok files; "wall_seconds" is the longest report's
wall time (shards run side by side) and "wall_seconds_sum" the sum.

Checks: reports of a sharded batch (--shard I/N) must all say the same N and
the same number of inputs, every part 1..N must be present, and together
they must list exactly that many inputs; an input found in two different
parts means the parts did not see the same list.

Exit status: 0 every file ok or skipped, 1 some file failed, 2 the reports
are inconsistent (missing or mismatched shards) or cannot be read.
Python standard library only.
"""
import argparse
import json
import sys

RANK = {"ok": 0, "skipped": 1, "failed": 2}


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit("merge-reports: %s: cannot read the report: %s" % (path, e)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise SystemExit("merge-reports: %s: not a stemsplit report (no \"files\" list)" % path)
    return doc


def main(argv):
    ap = argparse.ArgumentParser(description="Merge stemsplit --report-json files into one report.")
    ap.add_argument("-o", "--output", help="write the merged JSON here (default: standard output)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no summary on standard error")
    ap.add_argument("reports", nargs="+", help="report files")
    a = ap.parse_args(argv)

    docs = []
    for p in a.reports:
        try:
            docs.append((p, load(p)))
        except SystemExit as e:
            print(e, file=sys.stderr)
            return 2
    problems = []
    merged = {}                       # input -> (file entry, report index, shard index)
    order = []
    for k, (path, doc) in enumerate(docs):
        shard = doc.get("shard") or {}
        for f in doc["files"]:
            name = f.get("input")
            st = f.get("status")
            if not isinstance(name, str) or st not in RANK:
                problems.append("%s: a file entry without an input or with status %r" % (path, st))
                continue
            old = merged.get(name)
            if old is None:
                order.append(name)
                merged[name] = (f, k, shard.get("index"))
                continue
            if old[2] is not None and shard.get("index") is not None and old[2] != shard.get("index"):
                problems.append("%s is in shard %s (%s) and shard %s (%s): the shards did not see the same inputs"
                                % (name, old[2], docs[old[1]][0], shard.get("index"), path))
            if RANK[st] < RANK[old[0]["status"]]:
                merged[name] = (f, k, shard.get("index"))

    # shards: same N, same input count, all parts present, all inputs listed
    shards = [(p, d["shard"]) for p, d in docs if isinstance(d.get("shard"), dict)]
    if shards:
        counts = {s.get("count") for _, s in shards}
        inputs = {s.get("inputs") for _, s in shards}
        if len(shards) != len(docs):
            problems.append("some reports come from --shard runs and some do not")
        if len(counts) != 1:
            problems.append("the reports disagree on the number of shards: %s" % sorted(counts, key=str))
        if len(inputs) != 1:
            problems.append("the shards saw different numbers of inputs: %s" % sorted(inputs, key=str))
        if len(counts) == 1:
            n = counts.pop()
            have = {s.get("index") for _, s in shards}
            missing = [i for i in range(1, (n or 0) + 1) if i not in have]
            if missing:
                problems.append("shard%s %s of %d missing" % ("s" if len(missing) > 1 else "",
                                                              ", ".join(map(str, missing)), n))
            elif len(inputs) == 1:
                want = inputs.pop()
                if want != len(merged):
                    problems.append("the shards list %d inputs, the batch had %s" % (len(merged), want))

    files = [merged[name][0] for name in order]
    count = {s: sum(1 for f in files if f["status"] == s) for s in RANK}
    audio = sum(f.get("audio_seconds", 0) for f in files if f["status"] == "ok")
    walls = [d.get("total", {}).get("wall_seconds", 0) or 0 for _, d in docs]
    wall = max(walls) if walls else 0
    first = docs[0][1]
    out = {
        "version": first.get("version"),
        "git_commit": first.get("git_commit"),
        "device": first.get("device"),
        "model": first.get("model"),
        "reports": [{"path": p, "shard": d.get("shard"), "device": d.get("device"), "total": d.get("total")}
                    for p, d in docs],
        "files": files,
        "total": {
            "files": count["ok"], "failed": count["failed"], "skipped": count["skipped"],
            "audio_seconds": audio, "wall_seconds": wall, "wall_seconds_sum": sum(walls),
            "rtf": audio / wall if wall > 0 else 0.0,
        },
        "problems": problems,
    }
    models = {json.dumps(d.get("model"), sort_keys=True) for _, d in docs}
    if len(models) > 1:
        problems.append("the reports were made with different models")

    text = json.dumps(out, indent=2) + "\n"
    if a.output:
        try:
            with open(a.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            print("merge-reports: %s: %s" % (a.output, e), file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)

    if not a.quiet:
        what = "%d report%s" % (len(docs), "" if len(docs) == 1 else "s")
        if shards and len({s.get("count") for _, s in shards}) == 1:
            what += " (%d of %s shards)" % (len({s.get("index") for _, s in shards}), shards[0][1].get("count"))
        print("merged %s: %d files separated, %d failed, %d skipped; %.1f s of audio; wall %.2f s (longest), "
              "%.2f s summed" % (what, count["ok"], count["failed"], count["skipped"], audio, wall, sum(walls)),
              file=sys.stderr)
        failed = [f for f in files if f["status"] == "failed"]
        if failed:
            print("failed:", file=sys.stderr)
            for f in failed:
                print("  %s: %s" % (f["input"], f.get("error", "")), file=sys.stderr)
        for p in problems:
            print("merge-reports: %s" % p, file=sys.stderr)
    if problems:
        return 2
    return 1 if count["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
