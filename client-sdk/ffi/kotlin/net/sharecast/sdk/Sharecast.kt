// The Kotlin API of the Sharecast SDK: suspend functions and a Flow of
// events on top of the generated binding (package net.sharecast.sdk.ffi,
// made by scripts/sdk-bindings.sh; never edited by hand). docs/mobile.md
// shows it in an Android app.
//
// Threading: every suspend function may be called from any coroutine
// (Dispatchers.Main included): the work runs on the SDK's own threads.
// sendFrameBlocking blocks its caller while the memory buffer is full:
// call it from the encoder's callback thread, never from the main thread.
// The events Flow is cold and is collected once per upload; it completes
// after Finished or Failed.
package net.sharecast.sdk

import java.io.File
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.flow
import net.sharecast.sdk.ffi.AudioCodec
import net.sharecast.sdk.ffi.NalFormat
import net.sharecast.sdk.ffi.PendingFailure
import net.sharecast.sdk.ffi.PlayerCaps
import net.sharecast.sdk.ffi.ReceiveOutcome
import net.sharecast.sdk.ffi.ReceivedShare
import net.sharecast.sdk.ffi.ShareReceiver
import net.sharecast.sdk.ffi.TrackSpec
import net.sharecast.sdk.ffi.Upload
import net.sharecast.sdk.ffi.UploadEvent
import net.sharecast.sdk.ffi.UploadSettings
import net.sharecast.sdk.ffi.UploadStats
import net.sharecast.sdk.ffi.VideoAttributes
import net.sharecast.sdk.ffi.VideoCodec
import net.sharecast.sdk.ffi.VideoConfig

/** A recording being uploaded while it is filmed. */
class SharecastUploader private constructor(private val raw: Upload) : AutoCloseable {
    companion object {
        /** Connect and announce the tracks; returns once the server has welcomed the session. */
        suspend fun start(settings: UploadSettings, tracks: List<TrackSpec>): SharecastUploader =
            SharecastUploader(net.sharecast.sdk.ffi.startUpload(settings, tracks))

        /**
         * At the next launch after the app was killed mid-recording: resume every unfinished
         * session of [UploadSettings.spoolDir]. Each returned uploader sends what the server
         * lacks; call [finish] on it for the VOD's attributes.
         */
        suspend fun resumePending(settings: UploadSettings): Resumed {
            val r = net.sharecast.sdk.ffi.resumePending(settings)
            return Resumed(r.uploads.map { SharecastUploader(it) }, r.failed, r.issues)
        }

        /** Delete a spooled session that [resumePending] reported as failed. */
        fun discardPending(spoolDir: File, sessionId: String) =
            net.sharecast.sdk.ffi.discardPending(spoolDir.path, sessionId)
    }

    /** What [resumePending] found. */
    data class Resumed(
        val uploads: List<SharecastUploader>,
        val failed: List<PendingFailure>,
        val issues: List<String>,
    )

    /** Session id given by the server. */
    val sessionId: String get() = raw.sessionId()

    /** Where viewers watch the live stream (RTSP, player page), with a playback token. */
    val liveUrls: List<String> get() = raw.liveUrls()

    /**
     * Connected, Advice (give it to MediaCodec.setParameters), Reconnecting, Resumed,
     * Backlog, then Finished with the attributes or Failed with an error code.
     */
    val events: Flow<UploadEvent> = flow {
        while (true) {
            val e = raw.nextEvent() ?: break
            emit(e)
        }
    }

    /**
     * Queue one encoded frame of track [track] (its index in the start list), capture
     * timestamps in microseconds. Without a spool it suspends while the memory buffer is
     * full; with one, a full spool throws SharecastException.Upload with code "spool_full".
     */
    suspend fun sendFrame(track: Int, ptsUs: Long, dtsUs: Long, keyframe: Boolean, bytes: ByteArray) =
        raw.sendFrame(track.toUByte(), ptsUs, dtsUs, keyframe, bytes)

    /** [sendFrame] for the encoder's callback thread: blocks while the buffer is full. */
    fun sendFrameBlocking(track: Int, ptsUs: Long, dtsUs: Long, keyframe: Boolean, bytes: ByteArray) =
        raw.sendFrameBlocking(track.toUByte(), ptsUs, dtsUs, keyframe, bytes)

    /** Stop the recording; returns when the VOD exists, with its attributes. */
    suspend fun finish(): VideoAttributes = raw.finish()

    /** Current statistics. */
    fun stats(): UploadStats = raw.stats()

    /** Testing aid: cut the connection as a network drop would (the SDK resumes). */
    fun dropConnectionForTesting() = raw.dropConnection()

    override fun close() = raw.close()
}

/** Tracks described the way Android's MediaCodec and iOS's encoders give them. */
object Tracks {
    /**
     * A video track from MediaCodec's output format: mime "video/avc" or "video/hevc",
     * csd-0 (and csd-1 for H.264) as format.getByteBuffer("csd-0") holds them; frames are
     * the encoder's output buffers (Annex B).
     */
    fun mediaCodecVideo(
        mime: String,
        width: Int,
        height: Int,
        fps: Int,
        csd0: ByteArray,
        csd1: ByteArray?,
        rotation: Int = 0,
    ): TrackSpec = TrackSpec.Video(
        codec = videoCodec(mime),
        width = width.toUInt(),
        height = height.toUInt(),
        fps = fps.toUInt(),
        rotation = rotation.toUInt(),
        config = VideoConfig.MediaCodec(csd0, csd1),
        frameFormat = NalFormat.AnnexB,
    )

    /** An audio track from MediaCodec: mime "audio/mp4a-latm" or "audio/opus", csd-0. */
    fun mediaCodecAudio(mime: String, sampleRate: Int, channels: Int, csd0: ByteArray): TrackSpec =
        TrackSpec.Audio(
            codec = when (mime) {
                "audio/mp4a-latm" -> AudioCodec.AAC
                "audio/opus" -> AudioCodec.OPUS
                else -> throw IllegalArgumentException("unsupported audio mime $mime")
            },
            sampleRate = sampleRate.toUInt(),
            channels = channels.toUInt(),
            config = csd0,
        )

    private fun videoCodec(mime: String) = when (mime) {
        "video/avc" -> VideoCodec.H264
        "video/hevc" -> VideoCodec.H265
        else -> throw IllegalArgumentException("unsupported video mime $mime")
    }
}

/**
 * Reads received share messages: SMS PDUs as Android's SMS receiver delivers them (parts
 * in any order) and WAP Push bodies, into the video attributes and how to play it.
 */
class ShareMessages(caps: PlayerCaps? = null) : AutoCloseable {
    private val receiver = ShareReceiver(caps)

    /**
     * Give one SMS PDU (Telephony.Sms.Intents.getMessagesFromIntent(intent)[i].pdu).
     * Returns the share once its last part has arrived, else null. Throws
     * SharecastException.Message for a PDU that is not a share or a share with an
     * unsafe link (only http(s), and rtsp(s) for live streams, are ever offered).
     */
    fun onSmsPdu(pdu: ByteArray, nowMs: Long = System.nanoTime() / 1_000_000): ReceivedShare? =
        when (val o = receiver.pushPdu(pdu, nowMs.toULong())) {
            is ReceiveOutcome.Complete -> o.share
            else -> null
        }

    /** Forget messages whose parts did not all arrive within 5 minutes; says which. */
    fun expire(nowMs: Long = System.nanoTime() / 1_000_000): List<String> =
        receiver.expire(nowMs.toULong())

    companion object {
        /** A WAP Push body (WAP_PUSH_DELIVER intent: "data" extra and its mime type). */
        fun decodeWapPush(contentType: String, body: ByteArray, caps: PlayerCaps? = null): ReceivedShare =
            net.sharecast.sdk.ffi.decodeWapPush(contentType, body, caps)
    }

    override fun close() = receiver.close()
}
