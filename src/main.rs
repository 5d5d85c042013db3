//! `sharecast`: the one binary. `serve` runs every role in one process;
//! `device add` registers a phone; `push` is a phone simulator built on the
//! client SDK; `message` encodes and decodes share messages.

mod message_cmd;
mod push;
mod sim;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sharecast::config::Config;
use sharecast::secure;
use sharecast::server::Server;

#[derive(Parser)]
#[command(
    name = "sharecast",
    version,
    about = "Stream from a phone while filming; VOD + live; share by SMS/WAP Push"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every role (ingest, transcoder, live relay, HTTP) in one process.
    Serve(ServeArgs),
    /// Manage devices (phones allowed to upload).
    Device {
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    /// Act as a phone: upload a clip (or a live test pattern) while "filming".
    Push(push::PushArgs),
    /// Encode or decode share messages (SMS / WAP Push PDUs as hex).
    #[command(subcommand)]
    Message(message_cmd::MessageCmd),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML). Without it, embedded defaults are used.
    #[arg(long, env = "SHARECAST_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides `ingest.listen` (UDP).
    #[arg(long)]
    ingest_listen: Option<String>,
    /// Overrides `ingest.rtmp_listen` (TCP; RTMP publishers).
    #[arg(long)]
    rtmp_listen: Option<String>,
    /// Overrides `ingest.srt_listen` (UDP; SRT publishers).
    #[arg(long)]
    srt_listen: Option<String>,
    /// Overrides `ingest.rejoin_window_secs`.
    #[arg(long)]
    rejoin_window_secs: Option<u64>,
    /// Overrides `http.listen` (TCP).
    #[arg(long)]
    http_listen: Option<String>,
    /// Overrides `http.public_url`.
    #[arg(long)]
    public_url: Option<String>,
    /// Overrides `live.rtsp_port` (0 picks a free port).
    #[arg(long)]
    rtsp_port: Option<u16>,
    /// Overrides `ingest.max_frame_bytes`.
    #[arg(long)]
    max_frame_bytes: Option<u32>,
    /// Overrides `ingest.resume_timeout_secs`.
    #[arg(long)]
    resume_timeout_secs: Option<u64>,
}

impl ServeArgs {
    /// The flags given, as keys of the configuration file.
    fn overrides(&self) -> Vec<(&'static str, toml::Value)> {
        let text = |v: &Option<String>| v.clone().map(toml::Value::String);
        let int = |v: Option<i64>| v.map(toml::Value::Integer);
        [
            (
                "data_dir",
                text(&self.data_dir.as_ref().map(|d| d.display().to_string())),
            ),
            ("ingest.listen", text(&self.ingest_listen)),
            ("ingest.rtmp_listen", text(&self.rtmp_listen)),
            ("ingest.srt_listen", text(&self.srt_listen)),
            (
                "ingest.rejoin_window_secs",
                int(self.rejoin_window_secs.and_then(|v| i64::try_from(v).ok())),
            ),
            ("http.listen", text(&self.http_listen)),
            ("http.public_url", text(&self.public_url)),
            ("live.rtsp_port", int(self.rtsp_port.map(i64::from))),
            (
                "ingest.max_frame_bytes",
                int(self.max_frame_bytes.map(i64::from)),
            ),
            (
                "ingest.resume_timeout_secs",
                int(self.resume_timeout_secs.and_then(|v| i64::try_from(v).ok())),
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
    }
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Register a device and print its token (shown once; stored hashed).
    Add {
        /// Device name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List devices.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make a publishing key (an RTMP stream key, docs/publishing.md) of a
    /// device and print it (shown once; stored hashed).
    AddKey {
        /// The device, by id or name.
        device: String,
        /// What the key is for.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a device's publishing keys (never the keys themselves).
    Keys {
        /// The device, by id or name.
        device: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a publishing key of a device.
    RevokeKey {
        /// The device, by id or name.
        device: String,
        /// The key's id (as `keys` lists it).
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where a `device` command finds the store.
#[derive(clap::Args)]
struct StoreArgs {
    /// Configuration file, for `data_dir`.
    #[arg(long, env = "SHARECAST_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        // Recent warnings and errors for the admin dashboard.
        .with(sharecast_api::admin::ErrorCapture)
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Cmd::Message(cmd) = cli.cmd {
        // Pure codecs: no runtime, no logging noise.
        return message_cmd::run(cmd);
    }
    init_logging();
    // Everything written from here on (database, keys, tokens, recordings)
    // is readable by this user only.
    secure::restrict_umask();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve(a) => serve(a).await,
            Cmd::Device { cmd } => device(cmd).await,
            Cmd::Push(a) => push::run(a).await,
            Cmd::Message(_) => Ok(()),
        }
    })
}

async fn device(cmd: DeviceCmd) -> Result<()> {
    match cmd {
        DeviceCmd::Add { name, store } => {
            let store = open_store(store).await?;
            let (dev, token) = store.add_device(&name).await?;
            eprintln!(
                "device {} ({}) added; its token (shown once):",
                dev.name, dev.id
            );
            println!("{token}");
        }
        DeviceCmd::List { store } => {
            for d in open_store(store).await?.devices().await? {
                println!("{}\t{}", d.id, d.name);
            }
        }
        DeviceCmd::AddKey {
            device,
            name,
            store,
        } => {
            let store = open_store(store).await?;
            let dev = find_device(&store, &device).await?;
            let (key, secret) = store.add_publishing_key(&dev.id, &name).await?;
            eprintln!(
                "publishing key {} of device {} made; the key (shown once):",
                key.id, dev.name
            );
            println!("{secret}");
        }
        DeviceCmd::Keys { device, store } => {
            let store = open_store(store).await?;
            let dev = find_device(&store, &device).await?;
            for k in store.publishing_keys(&dev.id).await? {
                println!("{}\t{}\t{}", k.id, k.created_unix_ms, k.name);
            }
        }
        DeviceCmd::RevokeKey { device, id, store } => {
            let store = open_store(store).await?;
            let dev = find_device(&store, &device).await?;
            if !store.revoke_publishing_key(&dev.id, &id).await? {
                anyhow::bail!("device {} has no publishing key {id}", dev.name);
            }
            eprintln!("publishing key {id} revoked");
        }
    }
    Ok(())
}

/// A device by id, else by name (refused when the name is not unique).
async fn find_device(store: &sharecast_api::Store, which: &str) -> Result<sharecast_store::Device> {
    let devices = store.devices().await?;
    if let Some(d) = devices.iter().find(|d| d.id == which) {
        return Ok(d.clone());
    }
    let mut named = devices.into_iter().filter(|d| d.name == which);
    match (named.next(), named.next()) {
        (Some(d), None) => Ok(d),
        (Some(_), Some(_)) => anyhow::bail!("several devices are named {which:?}; give its id"),
        (None, _) => anyhow::bail!("no device {which:?} (sharecast device list)"),
    }
}

/// The configured store (SQLite in the data directory, or PostgreSQL).
async fn open_store(args: StoreArgs) -> Result<sharecast_api::Store> {
    let StoreArgs { config, data_dir } = args;
    let mut cfg = Config::load(config.as_deref())?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    sharecast_api::Store::open(&cfg.store, &cfg.data_dir).await
}

async fn serve(a: ServeArgs) -> Result<()> {
    let cfg = Config::load_with(a.config.as_deref(), &a.overrides())?;
    let server = Server::start(&cfg).await?;
    let demo_token = demo_device(&cfg, &server).await?;
    print_banner(&cfg, &server, demo_token.as_deref());
    // Written last: whoever waits for it finds the banner printed. No
    // secrets in it.
    let info = serde_json::json!({
        "ingest": format!("127.0.0.1:{}", server.ingest_addr.port()),
        "http": server.public.http,
        "rtsp_port": server.public.rtsp_port,
        "fingerprint": server.ingest.fingerprint().to_string(),
        "rtmp": server.ingest.rtmp_addr().map(|a| format!("127.0.0.1:{}", a.port())),
        "srt": server.ingest.srt_addr().map(|a| format!("127.0.0.1:{}", a.port())),
        "pid": std::process::id(),
    });
    secure::write_private(
        &cfg.data_dir.join("server.json"),
        &serde_json::to_vec_pretty(&info)?,
    )?;
    wait_for_shutdown().await?;
    eprintln!("shutting down; open sessions will be recovered at the next start");
    server.close();
    Ok(())
}

/// A ready-made device for trying it out: made at the first start only (no
/// device yet), its token printed once and stored hashed like every device
/// token (`sharecast device add` makes more).
async fn demo_device(cfg: &Config, server: &Server) -> Result<Option<String>> {
    let _ = std::fs::remove_file(cfg.data_dir.join("demo-device-token"));
    if !server.store.devices().await?.is_empty() {
        return Ok(None);
    }
    let (_, token) = server.store.add_device("demo-phone").await?;
    Ok(Some(token))
}

/// What runs where, and how to try it.
fn print_banner(cfg: &Config, server: &Server, demo_token: Option<&str>) {
    let http = &server.public.http;
    let fingerprint = server.ingest.fingerprint().to_string();
    let ingest_port = server.ingest_addr.port();
    println!("Sharecast is running.");
    println!(
        "  QUIC ingest   udp {}  (certificate SHA-256 {fingerprint})",
        server.ingest_addr
    );
    if let Some(rtmp) = server.ingest.rtmp_addr() {
        println!("  RTMP ingest   rtmp://{rtmp}/live/<publishing key>  (docs/publishing.md)");
    }
    if let Some(srt) = server.ingest.srt_addr() {
        println!("  SRT ingest    srt://{srt}?streamid=<publishing key>  (docs/publishing.md)");
    }
    println!("  HTTP API      {http}/api/v1/health");
    println!("  VOD files     {http}/vod/<asset>/source.mp4");
    let metrics_auth = if cfg.http.metrics_public {
        ""
    } else {
        "  (Authorization: Bearer <admin token>)"
    };
    println!("  metrics       {http}/metrics{metrics_auth}");
    println!("  admin         {http}/admin?token={}", server.admin_token);
    println!("  live (HLS)    {http}/live/<session>/index.m3u8  player {http}/watch/<session>");
    println!(
        "  live (RTSP)   rtsp://{}:{}/live/<session>",
        server.public.rtsp_host, server.public.rtsp_port
    );
    println!("  data          {}", cfg.data_dir.display());
    println!();
    match demo_token {
        Some(token) => {
            println!("Demo device token (shown once; stored hashed): {token}");
            println!("Try it (in another terminal):");
            println!("  {}", push_command(ingest_port, token, &fingerprint));
        }
        None => {
            println!("Add a device (a phone) and push with its token:");
            println!(
                "  sharecast device add my-phone --data-dir {}",
                cfg.data_dir.display()
            );
            println!("  {}", push_command(ingest_port, "<token>", &fingerprint));
        }
    }
    println!();
}

/// The demo clip `serve` suggests pushing, relative to the repository root
/// (`fixtures/generate.sh` makes it).
const DEMO_CLIP: &str = "fixtures/media/h264_aac_640x360.mp4";

/// The exact `sharecast push` command `serve` prints for trying it: this very
/// binary (relative to the working directory when it lies inside it, as
/// `./target/debug/sharecast` does from the repository root), the demo
/// device's token, the certificate pin, and the demo clip when it is there
/// (otherwise a live test pattern, which needs no file).
fn push_command(ingest_port: u16, token: &str, fingerprint: &str) -> String {
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    let program = match (&exe, &cwd) {
        (Some(exe), Some(cwd)) => match exe.strip_prefix(cwd) {
            Ok(rel) => format!("./{}", rel.display()),
            Err(_) => exe.display().to_string(),
        },
        (Some(exe), None) => exe.display().to_string(),
        (None, _) => "sharecast".to_string(),
    };
    let input = if std::path::Path::new(DEMO_CLIP).is_file() {
        format!("{DEMO_CLIP} --realtime")
    } else {
        "testsrc --duration 10".to_string()
    };
    format!(
        "{} push --server 127.0.0.1:{ingest_port} --token {token} --pin {fingerprint} --input {input}",
        shell_word(&program)
    )
}

/// `word` quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./-:+=@%,".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Wait for Ctrl-C or SIGTERM.
async fn wait_for_shutdown() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
    }
}
