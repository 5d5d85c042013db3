#!/usr/bin/env python3
"""The soak (docs/reliability.md, "One-hour soak"): many phones pushing in
real time for a long time on loopback, with viewers joining and leaving.

    python3 tests/chaos/soak.py [--short] [--phones N] [--seconds S]

Full form: 50 phones for 3600 s; --short: 10 phones for 60 s (CI). Each
phone is its own device and pushes a clip (made here with GStreamer, like
the chaos clips) with `sharecast push --realtime` again and again until the
time is up; every push that ends is checked at once: the push succeeded,
and its VOD (`source.mp4`, ffprobe packets of every stream) holds exactly
the frames the push sent, no timestamp twice. The journal of a checked VOD
is deleted at once and its `source.mp4` once 200 newer recordings are
checked (the soak's disk stays bounded; the server never reads the journal
of an ended session again, and viewers fetch only the newest recordings).
The data directory's sessions are removed at the end (SOAK_KEEP=1 keeps
them).

Viewers join and leave all along: HLS players (the multivariant and media
playlists, init and the newest segments, reloaded every second for 5-20 s),
VOD fetches of finished recordings (HEAD, then a Range request), and RTSP
players (ffmpeg reading 3 s of a live session over TCP).

Every 10 s the server's RSS and open file descriptors (/proc) are sampled
into samples.csv with the phones live, VODs done and viewers active. At
the end: a table of RSS and fds per bucket (first / last / max; 5-minute
buckets, 20 s in a run shorter than 10 minutes), the server log's ERROR
lines (must be 0), and the VODs (every one complete). Exit status 1 when a
push failed, a VOD is incomplete, an ERROR was logged, the server died, or
the server's descriptors did not come back to their level before the
phones once every phone stopped (a leak).

The server runs with source-only recordings (`transcoder.renditions = []`:
one 480p x264 encode per phone is not what 2 cores can do 50 times over)
and without playback tokens (the viewers need none); everything else is
the default configuration. Logs and the CSV stay in target/soak/.
"""

import argparse
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SAMPLE_EVERY_S = 10
CLIP_S = 20
# Checked recordings kept on disk (older ones are deleted, journal and
# source.mp4: 50 phones for an hour record about 8 GB).
KEEP_VODS = 200


def log(msg):
    print(f"soak: {msg}", flush=True)


class Soak:
    def __init__(self, a):
        self.a = a
        self.bin = os.environ.get("SHARECAST_BIN", os.path.join(ROOT, "target/debug/sharecast"))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.out = os.path.join(os.environ.get("SOAK_DIR", os.path.join(ROOT, "target/soak")),
                                f"{stamp}-{'short' if a.short else 'full'}")
        self.data = os.path.join(self.out, "data")
        os.makedirs(self.out, exist_ok=True)
        self.lock = threading.Lock()
        self.live = {}  # phone -> session id being pushed
        self.finished = []  # session ids of checked VODs
        self.results = []  # (phone, session, frames sent, packets, dups, ok, why)
        self.viewers_active = 0
        self.viewer_counts = {"hls": 0, "vod": 0, "rtsp": 0, "failed": 0}
        self.viewer_failures = []
        self.push_secs = []  # wall time of every push of the CLIP_S clip
        self.stop_at = 0.0
        self.server = None

    # ------------------------------------------------------------ setup ---

    def clip(self):
        path = os.path.join(self.out, f"clip-{CLIP_S}s.mp4")
        subprocess.run(
            ["gst-launch-1.0", "-q", "-e", "mp4mux", "name=mux", "!", "filesink", f"location={path}",
             "videotestsrc", f"num-buffers={CLIP_S * 25}", "pattern=ball", "!",
             "video/x-raw,width=320,height=240,framerate=25/1", "!", "timeoverlay", "!",
             "videoconvert", "!", "x264enc", "speed-preset=veryfast", "key-int-max=25",
             "bitrate=300", "bframes=0", "!", "h264parse", "!", "mux.",
             "audiotestsrc", f"num-buffers={(CLIP_S * 48000 + 1023) // 1024}",
             "samplesperbuffer=1024", "wave=sine", "!", "audio/x-raw,rate=48000,channels=2", "!",
             "audioconvert", "!", "avenc_aac", "bitrate=64000", "!", "aacparse", "!", "mux."],
            check=True, capture_output=True)
        return path

    def start_server(self):
        cfg = os.path.join(self.out, "sharecast.toml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(f'data_dir = "{self.data}"\n'
                    '[ingest]\nlisten = "127.0.0.1:0"\n'
                    '[http]\nlisten = "127.0.0.1:0"\n'
                    '[live]\nrtsp_port = 0\nplayback_tokens = false\n'
                    '[transcoder]\nrenditions = []\n')
        self.server_log = os.path.join(self.out, "server.log")
        self.server = subprocess.Popen(
            [self.bin, "serve", "--config", cfg],
            stdout=open(os.path.join(self.out, "server.out"), "w"),
            stderr=open(self.server_log, "w"),
            env=dict(os.environ, RUST_LOG=os.environ.get("SOAK_RUST_LOG", "info")))
        info_path = os.path.join(self.data, "server.json")
        for _ in range(1200):
            if os.path.exists(info_path) and os.path.getsize(info_path) > 0:
                break
            if self.server.poll() is not None:
                raise SystemExit(f"soak: the server exited; see {self.server_log}")
            time.sleep(0.1)
        time.sleep(0.2)
        self.info = json.load(open(info_path))
        self.http = self.info["http"].rstrip("/")
        self.admin = open(os.path.join(self.data, "admin-token")).read().strip()

    def add_device(self, name):
        out = subprocess.run([self.bin, "device", "add", name, "--data-dir", self.data],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, RUST_LOG="warn"))
        return out.stdout.strip()

    # ----------------------------------------------------------- phones ---

    def push_once(self, phone, token, clip):
        d = os.path.join(self.out, "phones", str(phone))
        os.makedirs(d, exist_ok=True)
        err = open(os.path.join(d, "push.err"), "a")
        p = subprocess.Popen(
            [self.bin, "push", "--server", self.info["ingest"], "--token", token,
             "--pin", self.info["fingerprint"], "--input", clip, "--realtime",
             "--stats-interval-ms", "10000"],
            stdout=subprocess.PIPE, stderr=err, text=True, env=dict(os.environ, RUST_LOG="warn"))
        lines = {}
        for line in p.stdout:
            key, _, value = line.strip().partition(" ")
            lines.setdefault(key, value)
            if key == "session":
                with self.lock:
                    self.live[phone] = value
        status = p.wait()
        with self.lock:
            self.live.pop(phone, None)
        return status, lines

    def check(self, phone, status, lines):
        session = lines.get("session")
        if status != 0 or not session or "frames" not in lines:
            return (phone, session, None, None, None, False, f"push status {status}")
        sent = int(lines["frames"])
        vod = os.path.join(self.data, "sessions", session, "source.mp4")
        try:
            text = subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts", "-of",
                 "csv=p=0", vod], check=True, capture_output=True, text=True).stdout
        except subprocess.CalledProcessError as e:
            return (phone, session, sent, None, None, False, f"ffprobe: {e.stderr.strip()}")
        pk = [tuple(l.split(",")[:2]) for l in text.splitlines() if l.strip()]
        dups = len(pk) - len(set(pk))
        ok = len(pk) == sent and dups == 0
        if ok:
            try:
                os.remove(os.path.join(self.data, "sessions", session, "journal"))
            except OSError:
                pass
        return (phone, session, sent, len(pk), dups, ok, "" if ok else "VOD incomplete")

    def phone(self, phone, token, clip):
        # Phones join over the first 20 s (or the first third of a short run).
        time.sleep(random.uniform(0, min(20.0, self.a.seconds / 3)))
        while time.time() < self.stop_at:
            began = time.time()
            status, lines = self.push_once(phone, token, clip)
            took = time.time() - began
            r = self.check(phone, status, lines)
            with self.lock:
                self.results.append(r)
                self.push_secs.append(took)
                if r[5]:
                    self.finished.append(r[1])
                    old = self.finished[-KEEP_VODS - 1] if len(self.finished) > KEEP_VODS else None
            if r[5] and old:
                # Viewers fetch only the newest KEEP_VODS recordings.
                try:
                    os.remove(os.path.join(self.data, "sessions", old, "source.mp4"))
                except OSError:
                    pass
            if not r[5]:
                log(f"phone {phone}: session {r[1]}: {r[6]} (sent {r[2]}, in VOD {r[3]}, dups {r[4]})")

    # ---------------------------------------------------------- viewers ---

    def get(self, path, headers=None, method="GET"):
        req = urllib.request.Request(self.http + path, headers=headers or {}, method=method)
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read()

    def hls_viewer(self, sid):
        _, master = self.get(f"/live/{sid}/index.m3u8")
        assert b"#EXTM3U" in master, "no multivariant playlist"
        self.get(f"/live/{sid}/source/init.mp4")
        seen = set()
        until = time.time() + random.uniform(5, 20)
        while time.time() < until:
            _, pl = self.get(f"/live/{sid}/source/index.m3u8")
            segs = re.findall(r"^(seg\d+\.m4s)", pl.decode(), re.M)
            for s in segs[-2:]:
                if s not in seen:
                    self.get(f"/live/{sid}/source/{s}")
                    seen.add(s)
            if b"#EXT-X-ENDLIST" in pl:
                break
            time.sleep(1)

    def vod_viewer(self, sid):
        self.get(f"/vod/{sid}/source.mp4", method="HEAD")
        st, body = self.get(f"/vod/{sid}/source.mp4", headers={"Range": "bytes=0-65535"})
        assert st == 206 and len(body) > 0, f"range answer {st}"

    def rtsp_viewer(self, sid):
        url = f"rtsp://127.0.0.1:{self.info['rtsp_port']}/live/{sid}"
        subprocess.run(["ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", url, "-t", "3",
                        "-f", "null", "-"], check=True, capture_output=True, timeout=30)

    def viewer(self, n):
        rng = random.Random(n)
        while time.time() < self.stop_at:
            time.sleep(rng.uniform(0.5, 3))
            with self.lock:
                live = list(self.live.values())
                done = self.finished[-KEEP_VODS // 2:]
            kind = rng.choices(["hls", "vod", "rtsp"], [6, 3, 1])[0]
            pool = done if kind == "vod" else live
            if not pool:
                continue
            sid = rng.choice(pool)
            with self.lock:
                self.viewers_active += 1
            try:
                getattr(self, f"{kind}_viewer")(sid)
                ok = True
            except subprocess.CalledProcessError as e:
                ok = False
                why = f"{kind} {sid}: {(e.stderr or b'').decode(errors='replace').strip()[-300:]}"
            except (urllib.error.URLError, OSError, AssertionError,
                    subprocess.SubprocessError) as e:
                ok = False
                why = f"{kind} {sid}: {e}"
            with self.lock:
                self.viewers_active -= 1
                self.viewer_counts[kind] += 1
                if not ok:
                    self.viewer_counts["failed"] += 1
                    self.viewer_failures.append(why)

    # ---------------------------------------------------------- samples ---

    def proc(self):
        pid = self.server.pid
        rss = 0
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        return rss, len(os.listdir(f"/proc/{pid}/fd"))

    def sampler(self, writer, f, start, until):
        while True:
            rss, fds = self.proc()
            with self.lock:
                row = [round(time.time() - start), rss, fds, len(self.live),
                       sum(1 for r in self.results if r[5]), self.viewers_active]
            writer.writerow(row)
            f.flush()
            self.samples.append(row)
            if time.time() >= until() or self.server.poll() is not None:
                return
            time.sleep(SAMPLE_EVERY_S)

    # ------------------------------------------------------------- run ---

    def run(self):
        clip = self.clip()
        self.start_server()
        log(f"{self.a.phones} phones, {self.a.seconds} s, {self.bin}; logs in {self.out}")
        tokens = [self.add_device(f"soak-phone-{i}") for i in range(self.a.phones)]
        start = time.time()
        self.stop_at = start + self.a.seconds
        self.samples = []
        f = open(os.path.join(self.out, "samples.csv"), "w", newline="")
        writer = csv.writer(f)
        writer.writerow(["t_s", "rss_kib", "fds", "phones_live", "vods_done", "viewers_active"])
        base_rss, base_fds = self.proc()
        phones = [threading.Thread(target=self.phone, args=(i, t, clip)) for i, t in enumerate(tokens)]
        viewers = [threading.Thread(target=self.viewer, args=(i,))
                   for i in range(max(2, self.a.phones // 10))]
        done = {"at": float("inf")}
        sampler = threading.Thread(target=self.sampler,
                                   args=(writer, f, start, lambda: done["at"]))
        for t in phones + viewers + [sampler]:
            t.start()
        for t in phones + viewers:
            t.join()
        # Settle, then one more sample with every phone gone.
        time.sleep(15)
        done["at"] = time.time()
        sampler.join()
        end_rss, end_fds = self.proc()
        return self.report(start, base_fds, end_fds, base_rss, end_rss)

    def report(self, start, base_fds, end_fds, base_rss, end_rss):
        bucket = 300 if self.a.seconds >= 600 else 20
        print(f"{'bucket':>11} {'RSS MiB first/last/max':>24} {'fds first/last/max':>20} "
              f"{'phones':>7} {'VODs':>6}")
        by = {}
        for row in self.samples:
            by.setdefault(row[0] // bucket, []).append(row)
        for b, rows in sorted(by.items()):
            rss = [r[1] / 1024 for r in rows]
            fds = [r[2] for r in rows]
            print(f"{b * bucket:>5}-{(b + 1) * bucket:<5} "
                  f"{rss[0]:>8.0f}/{rss[-1]:.0f}/{max(rss):.0f}".ljust(37)
                  + f"{fds[0]:>6}/{fds[-1]}/{max(fds)}".ljust(21)
                  + f"{rows[-1][3]:>7} {rows[-1][4]:>6}")
        errors = [l for l in open(self.server_log, errors="replace") if re.search(r"\bERROR\b", l)]
        warns = sum(1 for l in open(self.server_log, errors="replace") if re.search(r"\bWARN\b", l))
        bad = [r for r in self.results if not r[5]]
        sent = sum(r[2] or 0 for r in self.results)
        in_vod = sum(r[3] or 0 for r in self.results)
        alive = self.server.poll() is None
        # Descriptors back to their level before the phones (a few of slack
        # for the store's pool and the HTTP keep-alive of the last viewers).
        leak = end_fds > base_fds + 16
        log(f"{len(self.results)} VODs, {len(bad)} incomplete or failed; frames sent {sent}, "
            f"in VODs {in_vod}")
        secs = sorted(self.push_secs) or [0]
        log(f"push wall time for the {CLIP_S} s clip (real time: {CLIP_S} s plus the handshake "
            f"and the finish): median {secs[len(secs) // 2]:.1f} s, max {secs[-1]:.1f} s")
        log(f"viewers: {self.viewer_counts['hls']} HLS, {self.viewer_counts['vod']} VOD, "
            f"{self.viewer_counts['rtsp']} RTSP, {self.viewer_counts['failed']} failed")
        for w in self.viewer_failures[:10]:
            log(f"  viewer failed: {w}")
        log(f"server RSS {base_rss / 1024:.0f} MiB before the phones, {end_rss / 1024:.0f} MiB "
            f"after; fds {base_fds} before, {end_fds} after")
        log(f"server log: {len(errors)} ERROR lines, {warns} WARN lines")
        for e in errors[:10]:
            log(f"  {e.rstrip()}")
        log(f"took {time.time() - start:.0f} s; samples in {self.out}/samples.csv")
        ok = alive and not errors and not bad and self.results and not leak
        if not alive:
            log("FAIL: the server died")
        if leak:
            log(f"FAIL: {end_fds - base_fds} descriptors more than before the phones")
        log("PASS" if ok else "FAIL")
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump({"phones": self.a.phones, "seconds": self.a.seconds, "vods": len(self.results),
                       "incomplete": len(bad), "frames_sent": sent, "frames_in_vods": in_vod,
                       "errors": len(errors), "warns": warns, "viewers": self.viewer_counts,
                       "fds_before": base_fds, "fds_after": end_fds,
                       "rss_kib_before": base_rss, "rss_kib_after": end_rss, "ok": bool(ok)}, f)
        return 0 if ok else 1

    def close(self):
        if self.server and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="10 phones for 60 s (CI)")
    ap.add_argument("--phones", type=int)
    ap.add_argument("--seconds", type=int)
    a = ap.parse_args()
    a.phones = a.phones or (10 if a.short else 50)
    a.seconds = a.seconds or (60 if a.short else 3600)
    s = Soak(a)
    try:
        return s.run()
    finally:
        s.close()
        if not os.environ.get("SOAK_KEEP"):
            shutil.rmtree(os.path.join(s.data, "sessions"), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
