// Drives the live player page (/watch/{id}) in the system Chromium (headless)
// for tests/e2e_resume.rs, printing one JSON object per line on stdout.
//
//   node web/share/live-viewer.mjs watch URL   # plays until killed
//   node web/share/live-viewer.mjs start URL   # reports where playback started, then exits
//
// The first line is {"event":"launched","browser_pid":N}: the Chromium
// browser process (a process group leader, with its own children), so the
// test can SIGKILL the whole browser like a crash would. Then `watch` prints
// {"event":"state",...} every 200 ms with the page's window.sharecast state
// (mode, state, position_ms on the content timeline, segment, errors);
// `start` waits for the first `playing`, watches one more second and prints
// {"event":"started",...}.
//
// playwright-core only drives the browser; no browser is downloaded.
import { chromium } from 'playwright-core';

const [mode, url] = process.argv.slice(2);
if (!['watch', 'start'].includes(mode) || !url) {
  console.error('usage: node live-viewer.mjs watch|start URL');
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
  const out = { event: 'started' };
  try {
    await page.waitForFunction(() => window.sharecast.started !== null, null, { timeout: 20000 });
    out.first = await state();
    await page.waitForTimeout(1000);
    out.later = await state();
  } catch (e) {
    out.error = String(e);
    out.last = await state().catch(() => null);
  }
  out.logs = logs.slice(-30);
  print(out);
  browser.removeAllListeners('disconnected');
  await browser.close();
  await server.close();
  process.exit(0);
}
