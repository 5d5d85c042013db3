//! The server started in process with `sharecast::server::Server::start`, as
//! an embedding application (or a test that wants no child process) would:
//! a phone's upload through the client SDK becomes a VOD file that ffprobe
//! reads, and the asset is ready in the store and over HTTP. The store is on
//! the engine `SHARECAST_TEST_STORE` names (SQLite by default; `postgres`: a
//! fresh database on the tests' PostgreSQL, as `scripts/test.sh` runs it).

use sharecast::config::Config;
use sharecast::server::Server;
use sharecast_client_sdk::uploader::{Trust, Uploader, UploaderConfig};
use sharecast_testkit::{ffprobe, fixture, num, stream, H264_AAC};
use sharecast_transcoder::source::FileSource;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_server_turns_an_upload_into_a_vod_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (store, _database) = sharecast_store::testing::store_config().await;
    let cfg = Config::load_with(
        None,
        &[
            ("data_dir", data_dir.display().to_string().into()),
            ("store.url", store.url.clone().into()),
            ("ingest.listen", "127.0.0.1:0".into()),
            ("http.listen", "127.0.0.1:0".into()),
            ("live.rtsp_port", toml::Value::Integer(0)),
        ],
    )
    .unwrap();
    let server = Server::start(&cfg).await.unwrap();
    assert_eq!(server.store.engine(), sharecast_store::testing::engine());
    assert_eq!(
        data_dir.join(sharecast_store::SQLITE_FILE).exists(),
        store.url.is_empty(),
        "the SQLite file exists only when the store is SQLite"
    );
    let (_, token) = server.store.add_device("in-process").await.unwrap();

    let clip = fixture(H264_AAC).unwrap();
    let mut source = FileSource::open(&clip).unwrap();
    let upload = UploaderConfig::new(
        server.ingest_addr.to_string(),
        token,
        Trust::PinSha256(server.ingest.fingerprint().to_string()),
    );
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let uploader = Uploader::start(upload, source.tracks.clone(), now_us)
        .await
        .unwrap();
    let mut frames = 0;
    for frame in source.by_ref() {
        uploader.send(frame.unwrap()).await.unwrap();
        frames += 1;
    }
    assert!(frames > 0, "the fixture has frames");
    let attrs = uploader.finish().await.unwrap();

    let asset = server.store.asset(&attrs.id).await.unwrap().unwrap();
    assert_eq!(
        asset.attributes.as_ref().map(|a| a.id.as_str()),
        Some(attrs.id.as_str())
    );
    let vod = attrs.vod_url.clone().expect("a VOD URL");
    assert!(vod.starts_with(&server.public.http), "{vod}");
    let body = reqwest::get(&vod).await.unwrap();
    assert_eq!(body.status(), 200);
    let file = dir.path().join("vod.mp4");
    std::fs::write(&file, body.bytes().await.unwrap()).unwrap();
    let probe = ffprobe(&file);
    let video = stream(&probe, "video").expect("a video stream");
    assert_eq!(num(&video["width"]), 640.0);
    assert!(stream(&probe, "audio").is_some(), "an audio stream");
    let duration = num(&probe["format"]["duration"]);
    let expected = attrs.duration_ms as f64 / 1000.0;
    assert!(
        (duration - expected).abs() < 0.1,
        "{duration} vs {expected}"
    );

    assert!(server.ingest.sessions().is_empty(), "the session ended");
    server.close();
}
