// The JVM test program of the Kotlin binding, driven by tests/mobile_kotlin.rs:
// it uses the SDK exactly as an Android app would (SharecastUploader,
// Tracks.mediaCodecVideo with Annex B csd-0/csd-1 and frames, ShareMessages),
// and prints what happened, one fact per line, for the test to check.
//
//   push FRAMES_DIR SERVER TOKEN PIN [--drop-at N,M] [--spool DIR] [--hold]
//   resume SPOOL_DIR SERVER TOKEN PIN
//   decode MESSAGES_FILE
//   bench FRAMES_DIR SERVER TOKEN PIN ROUNDS
//
// FRAMES_DIR holds tracks.txt (one track a line: "video ID MIME W H FPS CSD0_HEX CSD1_HEX"
// or "audio ID MIME RATE CHANNELS CSD0_HEX") and frames.bin (records: track u8,
// keyframe u8, pts i64, dts i64, length u32, data; big-endian), as MediaCodec gives them.
import java.io.DataInputStream
import java.io.File
import kotlin.system.exitProcess
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitCancellation
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import net.sharecast.sdk.ShareMessages
import net.sharecast.sdk.SharecastUploader
import net.sharecast.sdk.Tracks
import net.sharecast.sdk.ffi.SharecastException
import net.sharecast.sdk.ffi.TrackSpec
import net.sharecast.sdk.ffi.UploadEvent
import net.sharecast.sdk.ffi.UploadSettings
import net.sharecast.sdk.ffi.initLogging

class Frame(val track: Int, val keyframe: Boolean, val ptsUs: Long, val dtsUs: Long, val data: ByteArray)

fun hex(s: String): ByteArray = ByteArray(s.length / 2) { s.substring(it * 2, it * 2 + 2).toInt(16).toByte() }

fun readTracks(dir: File): List<TrackSpec> = File(dir, "tracks.txt").readLines().filter { it.isNotBlank() }.map { line ->
    val f = line.split(" ")
    when (f[0]) {
        "video" -> Tracks.mediaCodecVideo(f[2], f[3].toInt(), f[4].toInt(), f[5].toInt(), hex(f[6]), if (f[7] == "-") null else hex(f[7]))
        "audio" -> Tracks.mediaCodecAudio(f[2], f[3].toInt(), f[4].toInt(), hex(f[5]))
        else -> throw IllegalArgumentException("bad track line: $line")
    }
}

fun readFrames(dir: File): List<Frame> {
    val frames = ArrayList<Frame>()
    DataInputStream(File(dir, "frames.bin").inputStream().buffered()).use { input ->
        while (input.available() > 0) {
            val track = input.readUnsignedByte()
            val key = input.readUnsignedByte() == 1
            val pts = input.readLong()
            val dts = input.readLong()
            val data = ByteArray(input.readInt())
            input.readFully(data)
            frames.add(Frame(track, key, pts, dts, data))
        }
    }
    return frames
}

fun settings(server: String, token: String, pin: String, spool: String?) =
    UploadSettings(servers = listOf(server), token = token, pinSha256 = pin, title = "kotlin test", spoolDir = spool)

fun say(line: String) {
    println(line)
    System.out.flush()
}

fun describe(e: UploadEvent): String = when (e) {
    is UploadEvent.Connected -> "connected ${e.sessionId} ${e.liveUrls.joinToString(" ")}"
    is UploadEvent.Advice -> "advice ${e.bitrateBps} ${e.fps} ${e.reason}"
    is UploadEvent.Reconnecting -> "reconnecting ${e.reason}"
    is UploadEvent.Resumed -> "resumed ${e.resumes}"
    is UploadEvent.Backlog -> "backlog ${e.frames} ${e.bytes} ${e.spoolBytes} ${e.connected}"
    is UploadEvent.Finished -> "finished ${e.attributes.json}"
    is UploadEvent.Failed -> "failed ${e.code} ${e.message}"
}

fun push(args: List<String>) = runBlocking {
    val dir = File(args[0])
    var dropAt = emptySet<Int>()
    var spool: String? = null
    var hold = false
    var i = 4
    while (i < args.size) {
        when (args[i]) {
            "--drop-at" -> { dropAt = args[i + 1].split(",").map { it.toInt() }.toSet(); i++ }
            "--spool" -> { spool = args[i + 1]; i++ }
            "--hold" -> hold = true
        }
        i++
    }
    val up = SharecastUploader.start(settings(args[1], args[2], args[3], spool), readTracks(dir))
    say("session ${up.sessionId}")
    val events = launch(Dispatchers.Default) { up.events.collect { say("event " + describe(it)) } }
    val frames = readFrames(dir)
    for ((n, f) in frames.withIndex()) {
        up.sendFrame(f.track, f.ptsUs, f.dtsUs, f.keyframe, f.data)
        say("accepted ${n + 1}")
        if ((n + 1) in dropAt) {
            // Let frames be in flight, then cut; wait for the resume before the next cut.
            kotlinx.coroutines.delay(30)
            val before = up.stats().resumes
            up.dropConnectionForTesting()
            say("dropped after ${n + 1}")
            while (up.stats().resumes == before) kotlinx.coroutines.delay(10)
        }
    }
    if (hold) {
        val s = up.stats()
        say("holding backlog=${s.backlogFrames} spool=${s.spoolBytes} acked=${s.framesAcked}")
        awaitCancellation()
    }
    val attrs = up.finish()
    events.join()
    say("stats resumes=${up.stats().resumes} frames=${frames.size}")
    say("attributes ${attrs.json}")
    up.close()
}

fun resume(args: List<String>) = runBlocking {
    val r = SharecastUploader.resumePending(settings(args[1], args[2], args[3], args[0]))
    for (issue in r.issues) say("issue $issue")
    for (f in r.failed) say("failed ${f.session} ${f.code} ${f.message}")
    say("resumed ${r.uploads.size}")
    for (up in r.uploads) {
        val events = launch(Dispatchers.Default) { up.events.collect { say("event " + describe(it)) } }
        val attrs = up.finish()
        events.join()
        say("attributes ${up.sessionId} ${attrs.json}")
        up.close()
    }
}

// MESSAGES_FILE: "message FORMAT" then its PDUs in hex one a line; "wap CONTENT_TYPE HEX"
// for a WAP Push body. Parts are given shuffled.
fun decode(args: List<String>) {
    val rnd = java.util.Random(7)
    val lines = File(args[0]).readLines().filter { it.isNotBlank() }
    var i = 0
    ShareMessages().use { messages ->
        while (i < lines.size) {
            val head = lines[i].split(" ")
            i++
            when (head[0]) {
                "message" -> {
                    val pdus = ArrayList<ByteArray>()
                    while (i < lines.size && !lines[i].startsWith("message") && !lines[i].startsWith("wap")) {
                        pdus.add(hex(lines[i].trim())); i++
                    }
                    java.util.Collections.shuffle(pdus, rnd)
                    var done = 0
                    for (p in pdus) {
                        val share = messages.onSmsPdu(p, 0) ?: continue
                        done++
                        say("decoded ${head[1]} ${share.format} parts=${share.parts} mode=${share.playMode} url=${share.playUrl} attributes=${share.attributes.json}")
                    }
                    if (done != 1) say("error ${head[1]}: $done complete messages from ${pdus.size} PDUs")
                }
                "wap" -> {
                    val share = ShareMessages.decodeWapPush(head[1], hex(head[2]))
                    say("wap ${share.format} mode=${share.playMode} url=${share.playUrl}")
                }
                // A WAP Push body with an unsafe link: must be refused.
                "wapbad" -> try {
                    ShareMessages.decodeWapPush(head[1], hex(head[2]))
                    say("error: accepted an unsafe WAP Push")
                } catch (e: SharecastException.Message) {
                    say("refused ${e.kind}")
                }
            }
        }
    }
}

// CPU per sent Mbit/s through the binding: push the frames ROUNDS times as fast as the
// SDK takes them (the bench compares it with the same loop in Rust).
fun bench(args: List<String>) = runBlocking {
    val dir = File(args[0])
    val rounds = args[4].toInt()
    val tracks = readTracks(dir)
    val frames = readFrames(dir)
    var bytes = 0L
    val os = java.lang.management.ManagementFactory.getOperatingSystemMXBean() as com.sun.management.OperatingSystemMXBean
    suspend fun round(): Long {
        var sent = 0L
        val up = SharecastUploader.start(settings(args[1], args[2], args[3], null), tracks)
        val sink = launch(Dispatchers.Default) { up.events.collect { } }
        for (f in frames) {
            up.sendFrameBlocking(f.track, f.ptsUs, f.dtsUs, f.keyframe, f.data)
            sent += f.data.size
        }
        up.finish()
        sink.join()
        up.close()
        return sent
    }
    // One round to load classes and warm the JIT, not measured.
    round()
    val start = System.nanoTime()
    val cpu0 = os.processCpuTime
    repeat(rounds) { bytes += round() }
    val secs = (System.nanoTime() - start) / 1e9
    val cpu = (os.processCpuTime - cpu0) / 1e9
    say("bench rounds=$rounds bytes=$bytes wall_s=${"%.3f".format(secs)} cpu_s=${"%.3f".format(cpu)}")
}

fun main(argv: Array<String>) {
    initLogging(System.getenv("SHARECAST_SDK_LOG") ?: "warn")
    val args = argv.toList()
    try {
        when (args.firstOrNull()) {
            "push" -> push(args.drop(1))
            "resume" -> resume(args.drop(1))
            "decode" -> decode(args.drop(1))
            "bench" -> bench(args.drop(1))
            else -> { System.err.println("usage: push|resume|decode|bench ..."); exitProcess(2) }
        }
    } catch (e: SharecastException) {
        say("exception $e")
        exitProcess(1)
    }
    exitProcess(0)
}
