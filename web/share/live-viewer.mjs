// Drives the live player page (/watch/{id}) in the system Chromium (headless)
// for tests/e2e_resume.rs, printing one JSON object per line on stdout.
//
//   node web/share/live-viewer.mjs watch URL   # plays until killed
//   node web/share/live-viewer.mjs start URL   # reports where playback started, then exits
//   node web/share/live-viewer.mjs measure URL SECS  # plays SECS s, reports delays, then exits
//
// The first line is {"event":"launched","browser_pid":N}: the Chromium
// browser process (a process group leader, with its own children), so the
// test can SIGKILL the whole browser like a crash would. Then `watch` prints
// {"event":"state",...} every 200 ms with the page's window.sharecast state
// (mode, state, position_ms on the content timeline, segment, errors);
// `start` waits for the first `playing`, watches one more second and prints
// {"event":"started",...}. `measure` waits for the first `playing`, plays SECS
// seconds more and prints {"event":"measured",...}: the state before and
// after, hls.js's low-latency figures (parts loaded, part target, latency)
// and the capture-to-display delays the page recorded (ms, one per
// timeupdate, from #EXT-X-PROGRAM-DATE-TIME); tests/e2e_llhls.rs and
// bench/llhls.sh use it.
//
// playwright-core only drives the browser; no browser is downloaded.
import { chromium } from 'playwright-core';

const [mode, url, secs] = process.argv.slice(2);
if (!['watch', 'start', 'measure'].includes(mode) || !url) {
  console.error('usage: node live-viewer.mjs watch|start URL, or measure URL SECS');
  process.exit(2);
}
const print = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const server = await chromium.launchServer({
  executablePath,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required', '--mute-audio',
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
  ],
});
print({ event: 'launched', browser_pid: server.process().pid });
const browser = await chromium.connect(server.wsEndpoint());
// The test kills the browser under us in `watch` mode: end quietly then.
browser.on('disconnected', () => { print({ event: 'disconnected' }); process.exit(0); });
const page = await browser.newPage();
const logs = [];
page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
await page.goto(url, { waitUntil: 'load', timeout: 20000 });
const state = () => page.evaluate(() => {
  const s = window.sharecast;
  const v = document.getElementById('video');
  return {
    mode: s.mode, state: s.state, position_ms: s.positionMs, segment: s.segment,
    started: s.started, current_time: v.currentTime, errors: s.errors, kicked: s.kicked,
    low_latency: s.lowLatency, parts_loaded: s.partsLoaded, part_target: s.partTarget,
    part_hold_back: s.partHoldBack, latency: s.latency, target_latency: s.targetLatency,
  };
});

if (mode === 'watch') {
  for (;;) {
    try {
      print({ event: 'state', ...(await state()) });
    } catch (e) {
      print({ event: 'error', error: String(e) });
    }
    await new Promise((r) => setTimeout(r, 200));
  }
} else {
  const out = { event: mode === 'start' ? 'started' : 'measured' };
  try {
    await page.waitForFunction(() => window.sharecast.started !== null, null, { timeout: 20000 });
    out.first = await state();
    if (mode === 'measure') {
      // Only the delays measured from here on: the start-up is not counted.
      await page.evaluate(() => { window.sharecast.delays.length = 0; });
    }
    await page.waitForTimeout(mode === 'start' ? 1000 : 1000 * Number(secs || 5));
    out.later = await state();
    if (mode === 'measure') out.delays = await page.evaluate(() => window.sharecast.delays.slice());
  } catch (e) {
    out.error = String(e);
    out.last = await state().catch(() => null);
  }
  out.logs = logs.slice(-30);
  print(out);
  // A graceful close (browser.close, server.close) can wait forever on a
  // page that is playing live media: SIGKILL the browser, then leave.
  browser.removeAllListeners('disconnected');
  server.process().kill('SIGKILL');
  process.exit(0);
}
