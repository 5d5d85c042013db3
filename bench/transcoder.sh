#!/usr/bin/env bash
# Transcoder benchmark (release build). Prints:
#  - ladder encode CPU seconds per minute of input (480p H.264 + AAC rendition,
#    measured as the extra CPU over a source-only recording of the same input),
#    against the equivalent ffmpeg command line (same x264 settings, same
#    input), as a ratio;
#  - passthrough remux throughput (MB/s) and VOD-ready latency for a
#    10-minute recording (and a 1-minute one, to show it does not grow).
# Inputs are generated once into $CARGO_TARGET_DIR/bench-media/ (720p30 H.264
# ~2 Mbit/s of noise, so the x264 target bitrate is reached, + AAC).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
MEDIA="$CARGO_TARGET_DIR/bench-media"
mkdir -p "$MEDIA"

clip="$MEDIA/clip_720p_10s.mp4"
if [ ! -s "$clip" ]; then
  echo "bench: generating $clip"
  gst-launch-1.0 -q -e mp4mux name=mux ! filesink location="$clip.tmp" \
    videotestsrc num-buffers=300 pattern=snow ! video/x-raw,width=1280,height=720,framerate=30/1 \
      ! videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=veryfast key-int-max=30 bitrate=2000 bframes=2 ! h264parse ! mux. \
    audiotestsrc num-buffers=470 samplesperbuffer=1024 wave=sine ! audio/x-raw,rate=48000,channels=2 \
      ! audioconvert ! avenc_aac bitrate=128000 ! aacparse ! mux.
  mv "$clip.tmp" "$clip"
fi
loop() { # loop N OUT: the clip N times, no re-encode
  [ -s "$2" ] || ffmpeg -v error -stream_loop $(($1 - 1)) -i "$clip" -c copy -y "$2"
}
in1="$MEDIA/input_1min.mp4"; loop 6 "$in1"
in10="$MEDIA/input_10min.mp4"; loop 60 "$in10"

cargo build --release -q -p sharecast-transcoder --example bench_ladder
BIN="$CARGO_TARGET_DIR/release/examples/bench_ladder"

echo "== ladder: 1 minute of 720p30 input -> 480p H.264 (x264 veryfast, 1000 kbit/s CBR, GOP 60, no B-frames, main) + AAC"
out=$("$BIN" ladder "$in1")
echo "$out"
ours=$(echo "$out" | awk '/^ladder_cpu_s_per_min_input/ {print $2}')

# The same work with ffmpeg: decode, scale to 480 lines, x264 with the same
# settings as x264enc's (pass=cbr = ABR with vbv-maxrate = bitrate and a
# 600 ms buffer), audio copied.
tmp=$(mktemp -d)
TIMEFORMAT='%U %S'
t=$( { time ffmpeg -v error -i "$in1" -vf scale=-2:480 -c:v libx264 -preset veryfast \
      -b:v 1000k -maxrate 1000k -bufsize 600k -g 60 -bf 0 -profile:v main -pix_fmt yuv420p \
      -c:a copy -y "$tmp/ff.mp4" >/dev/null; } 2>&1 )
ff_cpu=$(echo "$t" | awk '{print $1+$2}')
media_s=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$in1")
ff=$(awk -v c="$ff_cpu" -v d="$media_s" 'BEGIN {printf "%.2f", c*60/d}')
echo "ffmpeg_cpu_s_per_min_input $ff"
awk -v a="$ours" -v b="$ff" 'BEGIN {printf "ladder_cpu_ratio_vs_ffmpeg %.2f\n", a/b}'
rm -rf "$tmp"

echo "== passthrough remux + VOD-ready latency, 1 minute"
"$BIN" remux "$in1"
echo "== passthrough remux + VOD-ready latency, 10 minutes"
"$BIN" remux "$in10"
