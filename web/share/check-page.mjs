// Opens a share page in the system Chromium (headless) and reports, as one
// JSON line, what the <video> element did: used by tests/e2e_share.rs.
//
//   node web/share/check-page.mjs URL SCREENSHOT.png
//
// playwright-core only drives the browser; no browser is downloaded.
import { chromium } from 'playwright-core';

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error('usage: node check-page.mjs URL SCREENSHOT.png');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ],
});
const out = { url };
try {
  const page = await browser.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  const resp = await page.goto(url, { waitUntil: 'load', timeout: 20000 });
  out.status = resp ? resp.status() : null;
  out.og = await page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll('meta[property^="og:"]')].map((m) => [m.getAttribute('property'), m.content])));
  const state = () => page.evaluate(() => {
    const v = document.querySelector('video');
    return v && {
      currentTime: v.currentTime, duration: v.duration, paused: v.paused, ended: v.ended,
      readyState: v.readyState, error: v.error && v.error.code, src: v.currentSrc,
    };
  });
  try {
    await page.waitForFunction(() => {
      const v = document.querySelector('video');
      return v && (v.error || (v.readyState >= 2 && v.currentTime > 0));
    }, null, { timeout: 20000 });
  } catch (e) {
    out.wait_error = String(e);
  }
  out.first = await state();
  await page.waitForTimeout(700);
  out.second = await state();
  // Pages that seek to a time point record where playback really started.
  out.seeked_to = await page.evaluate(() => window.__sharecastSeekedTo ?? null);
  out.started_at = await page.evaluate(() => window.__sharecastStartedAt ?? null);
  await page.screenshot({ path: shot });
  out.logs = logs;
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
