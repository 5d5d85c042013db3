# Sourced by the benchmarks that compare with nginx-rtmp (bench/ingest.sh,
# bench/rtmp.sh): installs Debian's nginx and libnginx-mod-rtmp when they
# are missing, and writes a configuration for one worker taking publishers
# on 127.0.0.1:PORT (application "live", recording on, under DIR/rec).

# nginx_rtmp_install: the packages, the system's nginx service stopped.
nginx_rtmp_install() {
  local need=() p SUDO=""
  for p in nginx libnginx-mod-rtmp; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  [ ${#need[@]} -gt 0 ] || return 0
  echo "bench: installing ${need[*]}"
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  $SUDO systemctl stop nginx 2>/dev/null || $SUDO service nginx stop 2>/dev/null || true
}

# nginx_rtmp_config DIR PORT: DIR/nginx.conf, DIR/rec (recordings) and
# DIR/logs; DIR's parent must let nginx's unprivileged workers in.
nginx_rtmp_config() {
  local dir=$1 port=$2
  mkdir -p "$dir/rec" "$dir/logs"
  # nginx workers run as an unprivileged user: let them write the recordings.
  chmod 755 "$dir"; chmod 777 "$dir/rec"
  cat > "$dir/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events { worker_connections 4096; }
rtmp {
  server {
    listen 127.0.0.1:$port;
    application live {
      live on;
      record all;
      record_path $dir/rec;
    }
  }
}
CONF
}
