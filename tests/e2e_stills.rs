//! Still-frame shares: the still matches the frame at that time
//! (pixels against ffmpeg), enhancement brightens a dark frame, a drawing and
//! a comment travel with it, the share page carries Open Graph tags, offers the
//! download under the chosen name and starts the video within one frame of
//! the time point in headless Chromium; oEmbed; bad input stores nothing.

use std::process::Command;

use base64::Engine;
use image::DynamicImage;
use serde_json::{json, Value};
use sharecast_testkit::*;

fn fetch_image(url: &str) -> DynamicImage {
    let bytes = reqwest::blocking::get(url).unwrap().bytes().unwrap();
    image::load_from_memory(&bytes).unwrap()
}

fn mean_luma(img: &DynamicImage) -> f64 {
    let rgb = img.to_rgb8();
    rgb.pixels()
        .map(|p| (299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32) as f64 / 1000.0)
        .sum::<f64>()
        / rgb.pixels().len() as f64
}

fn stills_count(s: &Server) -> usize {
    std::fs::read_dir(s.data_dir().join("stills"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn still_frame_share_matches_the_frame_travels_with_comment_and_drawing() {
    let server = Server::start();
    let id = server.push_fixture(H264_AAC);
    let vod = server.session_file(&id, "source.mp4");

    // A drawing: an opaque red square in the top-left corner, transparent elsewhere.
    let mut drawing = image::RgbaImage::new(64, 36);
    for (x, y, p) in drawing.enumerate_pixels_mut() {
        *p = if x < 8 && y < 8 {
            image::Rgba([255, 0, 0, 255])
        } else {
            image::Rgba([0, 0, 0, 0])
        };
    }
    let mut png = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(drawing)
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(png.into_inner());

    let (st, still) = server.post(
        "/api/v1/stills",
        None,
        json!({ "content_id": id, "t_ms": 1500, "comment": "look <here>", "name": "my moment",
                "drawing_png_base64": b64 }),
    );
    assert_eq!(st, 200, "{still}");
    assert_eq!(still["video_id"], id.as_str());
    assert_eq!(still["time_point_ms"], 1500);
    let link = still["share_link"].as_str().unwrap().to_string();

    // The original is the frame at 1.5 s (ffmpeg), not a neighbour.
    let original = fetch_image(still["original_url"].as_str().unwrap());
    let at = mean_abs_diff(&original, &ffmpeg_frame(&vod, 1.5));
    let other = mean_abs_diff(&original, &ffmpeg_frame(&vod, 0.5));
    eprintln!("mean abs diff vs ffmpeg at 1.5 s: {at:.2}, at 0.5 s: {other:.2}");
    assert!(at < 6.0, "still differs from the frame at 1.5 s: {at}");
    assert!(
        other > at + 1.0,
        "the comparison cannot tell frames apart ({other} vs {at})"
    );

    // The shared image carries the drawing.
    let shared = fetch_image(still["image_url"].as_str().unwrap()).to_rgb8();
    let corner = shared.get_pixel(10, 10);
    assert!(
        corner[0] > 200 && corner[1] < 60 && corner[2] < 60,
        "no drawing: {corner:?}"
    );

    // Download under the chosen name.
    let resp = reqwest::blocking::get(format!(
        "{}?download=1",
        still["image_url"].as_str().unwrap()
    ))
    .unwrap();
    assert_eq!(
        resp.headers()["content-disposition"].to_str().unwrap(),
        "attachment; filename=\"my moment.jpg\""
    );

    // The page: Open Graph tags with the still and the escaped comment.
    let html = reqwest::blocking::get(&link).unwrap().text().unwrap();
    assert!(html.contains(&format!(
        "<meta property=\"og:image\" content=\"{}\">",
        still["image_url"].as_str().unwrap()
    )));
    assert!(html.contains("look &lt;here&gt;"));
    assert!(!html.contains("look <here>"));

    // oEmbed.
    let o: Value = reqwest::blocking::get(format!("{}/oembed?url={link}&format=json", server.http))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(o["type"], "photo");
    assert_eq!(o["url"], still["image_url"]);
    assert_eq!(o["width"], still["width"]);

    // In a real browser, the page starts the video within one frame of 1.5 s.
    let r = check_page(&link, "still-share-page.png");
    let started = r["started_at"]
        .as_f64()
        .or(r["seeked_to"].as_f64())
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        (started - 1.5).abs() <= 1.0 / 30.0 + 1e-3,
        "playback started at {started}: {r}"
    );
    assert!(
        r["second"]["currentTime"].as_f64().unwrap() > started,
        "not playing: {r}"
    );
    assert_eq!(r["og"]["og:image"], still["image_url"]);

    // Bad input: clear errors, nothing stored.
    let before = stills_count(&server);
    for (body, status, code) in [
        (
            json!({ "content_id": "00ff", "t_ms": 10 }),
            404,
            "unknown_asset",
        ),
        (json!({ "content_id": id, "t_ms": 60_000 }), 416, "past_end"),
        (
            json!({ "content_id": id, "t_ms": 10, "drawing_png_base64": "not base64!" }),
            400,
            "bad_drawing",
        ),
        (
            json!({ "content_id": id, "t_ms": 10, "comment": "x".repeat(1001) }),
            400,
            "comment_too_long",
        ),
        (
            json!({ "content_id": id, "t_ms": 10, "name": "../etc/passwd" }),
            400,
            "bad_name",
        ),
        (json!({ "content_id": "../x", "t_ms": 10 }), 400, "bad_id"),
    ] {
        let (st, e) = server.post("/api/v1/stills", None, body);
        assert_eq!(
            (st, e["error"]["code"].as_str()),
            (status, Some(code)),
            "{e}"
        );
    }
    assert_eq!(stills_count(&server), before);
    let r = reqwest::blocking::get(format!("{}/p/{}", server.http, "0".repeat(32))).unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn enhancing_a_dark_frame_makes_it_measurably_brighter() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("dark.mp4");
    let st = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            "num-buffers=45",
            "pattern=smpte",
            "!",
            "video/x-raw,width=320,height=240,framerate=30/1",
        ])
        .args([
            "!",
            "videobalance",
            "brightness=-0.75",
            "contrast=0.4",
            "!",
            "videoconvert",
            "!",
            "x264enc",
            "key-int-max=15",
        ])
        .args(["!", "h264parse", "!", "mp4mux", "!", "filesink"])
        .arg(format!("location={}", clip.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let r = server.push(&clip, &[]);
    assert!(r.ok, "{}", r.stderr);
    let (st, still) = server.post(
        "/api/v1/stills",
        None,
        json!({ "content_id": r.session(), "t_ms": 700, "enhance": true }),
    );
    assert_eq!(st, 200, "{still}");
    let original = fetch_image(still["original_url"].as_str().unwrap());
    let enhanced = fetch_image(still["image_url"].as_str().unwrap());
    let (a, b) = (mean_luma(&original), mean_luma(&enhanced));
    eprintln!("mean luma: original {a:.1}, enhanced {b:.1}");
    assert!(a < 60.0, "the test frame is not dark ({a})");
    assert!(
        b > a + 30.0,
        "enhanced {b} is not measurably brighter than {a}"
    );
}
