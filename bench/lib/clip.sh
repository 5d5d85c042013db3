# Shared by the ingest benchmarks: the clip they upload, and CPU readings.
# Source it after WORK is set.

# A 10 s 2 Mbit/s 640x360 H.264 + AAC clip (sensor-like noise, so x264 really
# spends the bitrate), in $CLIP; its bitrate in $CLIP_MBPS.
bench_clip() {
  CLIP="$WORK/clip_2mbps.mp4"
  gst-launch-1.0 -q videotestsrc num-buffers=300 pattern=snow ! video/x-raw,width=640,height=360,framerate=30/1 \
    ! videoconvert ! video/x-raw,format=I420 ! x264enc bitrate=1900 key-int-max=30 speed-preset=ultrafast \
    ! h264parse ! mp4mux name=m ! filesink location="$CLIP" \
    audiotestsrc num-buffers=470 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 ! avenc_aac bitrate=96000 ! aacparse ! m.
  CLIP_MBPS=$(ffprobe -v error -show_entries format=bit_rate -of csv=p=0 "$CLIP" | awk '{printf "%.2f", $1/1e6}')
}

# CPU ticks (user + system) a process has used so far; 0 once it is gone.
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
