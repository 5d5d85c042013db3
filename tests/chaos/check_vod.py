#!/usr/bin/env python3
"""One chaos case's verdict (tests/chaos/run.sh calls it after each push).

Reads what `sharecast push` printed (its standard output, and its standard
error with a wall-clock time in front of every line), the VOD the server
wrote, and optionally the clip that was pushed, then prints one result line
and exits 1 when the VOD is not every frame exactly once:

- frames in the VOD (ffprobe packets, every stream) equal the frames the
  push sent (`frames N`), no packet repeats a timestamp of its stream;
- with --source: the decoded frames' MD5s of each stream equal the
  source's, in order (ffmpeg framemd5);
- with --link-back T (epoch seconds: when the link came back or changed):
  back-to-live is the time from T to the first progress line whose
  acknowledged count grew; drained is the time to the first line whose
  backlog is under half a second of media. Progress lines come every
  `--stats-interval-ms` (the script uses 100 ms): that is their resolution.

It also writes the line's figures as one JSON object (--json FILE), for the
table in bench/RESULTS.md.
"""

import argparse
import collections
import json
import re
import subprocess
import sys

PROGRESS = re.compile(r"^(\d+\.\d+) sent (\d+) acked (\d+) backlog (\d+) frames")


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def summary(path):
    """The push's `key value` lines."""
    out = {}
    for line in open(path, encoding="utf-8"):
        key, _, value = line.rstrip("\n").partition(" ")
        out.setdefault(key, value)
    return out


def packets(vod):
    """(stream index, pts) of every packet of the file."""
    text = run(["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts",
                "-of", "csv=p=0", vod])
    return [tuple(line.split(",")[:2]) for line in text.splitlines() if line.strip()]


def frame_md5s(path, stream):
    text = run(["ffmpeg", "-v", "error", "-i", path, "-map", stream, "-f", "framemd5", "-"])
    return [line.rsplit(",", 1)[1].strip() for line in text.splitlines()
            if line and not line.startswith("#")]


def progress(path):
    """(time, acked, backlog) of every progress line on the push's stderr."""
    rows = []
    for line in open(path, encoding="utf-8", errors="replace"):
        m = PROGRESS.match(line)
        if m:
            rows.append((float(m.group(1)), int(m.group(3)), int(m.group(4))))
    return rows


def back_to_live(rows, t, frames_per_s):
    """Seconds from t to the first growth of the acknowledged count, and to
    the backlog being under half a second of media (None: never)."""
    before = [r for r in rows if r[0] <= t]
    acked_at_t = before[-1][1] if before else 0
    after = [r for r in rows if r[0] > t]
    first_ack = next((r[0] - t for r in after if r[1] > acked_at_t), None)
    drained = next((r[0] - t for r in after if r[2] <= frames_per_s / 2), None)
    return first_ack, drained


def ms(v):
    return "-" if v is None else f"{v * 1000:.0f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--push-out", required=True)
    ap.add_argument("--push-err", required=True)
    ap.add_argument("--vod", required=True)
    ap.add_argument("--source")
    ap.add_argument("--link-back", type=float)
    ap.add_argument("--rss-file")
    ap.add_argument("--json")
    a = ap.parse_args()

    s = summary(a.push_out)
    sent = int(s["frames"])
    pk = packets(a.vod)
    per_stream = collections.Counter(pk)
    dups = sum(n - 1 for n in per_stream.values())
    missing = max(0, sent - len(per_stream))
    ok = len(pk) == sent and dups == 0
    hashes = "not compared (live encoder)"
    if a.source:
        same = all(frame_md5s(a.source, m) == frame_md5s(a.vod, m) for m in ("0:v", "0:a"))
        hashes = "match the source" if same else "DIFFER from the source"
        ok = ok and same
    duration = float(run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                          "-of", "csv=p=0", a.vod]).strip() or 1)
    first_ack = drained = None
    if a.link_back is not None:
        first_ack, drained = back_to_live(progress(a.push_err), a.link_back, len(pk) / duration)
    rss_kib = None
    if a.rss_file:
        nums = [l.strip() for l in open(a.rss_file) if l.strip().isdigit()]
        rss_kib = int(nums[-1]) if nums else None
    lat = s.get("ack_latency_ms", "none").split()
    p99 = float(lat[lat.index("p99") + 1]) if "p99" in lat else None
    held = int(s.get("peak_held_bytes", "0"))
    fig = {
        "case": a.name, "ok": ok, "frames_sent": sent, "frames_in_vod": len(pk),
        "duplicates": dups, "missing": missing, "hashes": hashes,
        "resumes": int(s.get("resumes", "0")),
        "back_to_live_ms": None if first_ack is None else round(first_ack * 1000),
        "drained_ms": None if drained is None else round(drained * 1000),
        "ack_p99_ms": p99, "sdk_peak_held_bytes": held, "push_peak_rss_kib": rss_kib,
    }
    print(
        f"chaos {a.name}: {'PASS' if ok else 'FAIL'}: frames sent {sent}, in VOD {len(pk)}, "
        f"duplicates {dups}, missing {missing}, decoded frames {hashes}, "
        f"resumes {fig['resumes']}, back to live {ms(first_ack)}, backlog drained {ms(drained)}, "
        f"ack p99 {'-' if p99 is None else f'{p99:.0f} ms'}, "
        f"SDK peak held {held / 1024:.0f} KiB, push peak RSS "
        f"{'-' if rss_kib is None else f'{rss_kib / 1024:.0f} MiB'}"
    )
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(fig, f)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
