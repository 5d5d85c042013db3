// The Swift API of the Sharecast SDK: async/await and an AsyncStream of
// events on top of the generated binding (SharecastFFI.swift, made by
// scripts/sdk-bindings.sh and compiled into the same module; never edited
// by hand). docs/mobile.md shows it in an iOS app.
//
// Threading: every async function may be awaited from any task (the main
// actor included): the work runs on the SDK's own threads.
// sendFrameBlocking blocks its caller while the memory buffer is full:
// call it from VideoToolbox's output callback queue, never the main
// thread. `events` is read by one consumer per upload and finishes after
// .finished or .failed.

import Foundation

/// A recording being uploaded while it is filmed.
public final class SharecastUploader: @unchecked Sendable {
    private let raw: Upload

    private init(_ raw: Upload) { self.raw = raw }

    /// Connect and announce the tracks; returns once the server has welcomed the session.
    public static func start(settings: UploadSettings, tracks: [TrackSpec]) async throws -> SharecastUploader {
        SharecastUploader(try await startUpload(settings: settings, tracks: tracks))
    }

    /// At the next launch after the app was killed mid-recording: resume every unfinished
    /// session of `settings.spoolDir`; call `finish()` on each for its attributes.
    public static func resumePending(settings: UploadSettings) async throws -> (uploads: [SharecastUploader], failed: [PendingFailure], issues: [String]) {
        let r = try await SharecastFFI.resumePending(settings: settings)
        return (r.uploads.map { SharecastUploader($0) }, r.failed, r.issues)
    }

    /// Session id given by the server.
    public var sessionId: String { raw.sessionId() }

    /// Where viewers watch the live stream, with a playback token.
    public var liveUrls: [String] { raw.liveUrls() }

    /// .connected, .advice (set kVTCompressionPropertyKey_AverageBitRate), .reconnecting,
    /// .resumed, .backlog, then .finished with the attributes or .failed with an error code.
    public var events: AsyncStream<UploadEvent> {
        let raw = self.raw
        return AsyncStream { continuation in
            let task = Task {
                while let e = await raw.nextEvent() {
                    continuation.yield(e)
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Queue one encoded frame (VideoToolbox's sample buffer data, length-prefixed), capture
    /// timestamps in microseconds. With a spool, a full spool throws code "spool_full".
    public func sendFrame(track: UInt8, ptsUs: Int64, dtsUs: Int64, keyframe: Bool, bytes: Data) async throws {
        try await raw.sendFrame(track: track, ptsUs: ptsUs, dtsUs: dtsUs, keyframe: keyframe, data: bytes)
    }

    /// `sendFrame` for VideoToolbox's callback queue: blocks while the memory buffer is full.
    public func sendFrameBlocking(track: UInt8, ptsUs: Int64, dtsUs: Int64, keyframe: Bool, bytes: Data) throws {
        try raw.sendFrameBlocking(track: track, ptsUs: ptsUs, dtsUs: dtsUs, keyframe: keyframe, data: bytes)
    }

    /// Stop the recording; returns when the VOD exists, with its attributes.
    public func finish() async throws -> VideoAttributes { try await raw.finish() }

    /// Current statistics.
    public func stats() -> UploadStats { raw.stats() }
}

/// Tracks described the way VideoToolbox and AudioToolbox give them.
public enum Tracks {
    /// A video track from a CMVideoFormatDescription's parameter sets (each without a start
    /// code) and its NAL unit header length (usually 4).
    public static func videoToolbox(codec: VideoCodec, width: UInt32, height: UInt32, fps: UInt32,
                                    parameterSets: [Data], nalUnitHeaderLength: UInt8 = 4,
                                    rotation: UInt32 = 0) -> TrackSpec {
        .video(codec: codec, width: width, height: height, fps: fps, rotation: rotation,
               config: .parameterSets(sets: parameterSets),
               frameFormat: .lengthPrefixed(lengthSize: nalUnitHeaderLength))
    }

    /// An AAC track from AudioToolbox's magic cookie (an esds descriptor).
    public static func aac(sampleRate: UInt32, channels: UInt32, magicCookie: Data) -> TrackSpec {
        .audio(codec: .aac, sampleRate: sampleRate, channels: channels, config: magicCookie)
    }
}

/// Reads received share messages into the video attributes and how to play it.
public final class ShareMessages {
    private let receiver: ShareReceiver

    public init(caps: PlayerCaps? = nil) { receiver = ShareReceiver(caps: caps) }

    /// Give one SMS PDU; returns the share once its last part has arrived, else nil.
    public func onSmsPdu(_ pdu: Data, nowMs: UInt64 = UInt64(ProcessInfo.processInfo.systemUptime * 1000)) throws -> ReceivedShare? {
        if case let .complete(share) = try receiver.pushPdu(pdu: pdu, nowMs: nowMs) { return share }
        return nil
    }

    /// A WAP Push body and its content type.
    public static func decodeWapPush(contentType: String, body: Data, caps: PlayerCaps? = nil) throws -> ReceivedShare {
        try SharecastFFI.decodeWapPush(contentType: contentType, body: body, caps: caps)
    }
}
