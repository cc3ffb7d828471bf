// Plays a live stream in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser is ever downloaded) and checks that
// video.currentTime advances.
//
//   node play_live.mjs PAGE_URL SECONDS TIMEOUT_SECONDS
//
// PAGE_URL is a player page served by spate itself (see live_rtmp.rs): it
// must set window.__player_errors (array) and contain one <video>.
// Every request to a host other than 127.0.0.1/localhost is aborted and
// fails the run. Prints one JSON line with what happened; exits 0 on pass.
import { chromium } from 'playwright-core';

const [pageUrl, secondsArg, timeoutArg] = process.argv.slice(2);
const want = Number(secondsArg || 5);
const timeoutMs = Number(timeoutArg || 60) * 1000;
const started = Date.now();
const result = {
  ok: false,
  advanced: 0,
  currentTime: null,
  startTime: null,
  videoWidth: 0,
  videoHeight: 0,
  errors: [],
  blocked: [],
  console: [],
  why: '',
};

const finish = async (browser, code) => {
  if (browser) await browser.close().catch(() => {});
  console.log(JSON.stringify(result));
  process.exit(code);
};

const hardStop = setTimeout(() => {
  result.why = `hard timeout ${timeoutMs + 15000} ms`;
  console.log(JSON.stringify(result));
  process.exit(3);
}, timeoutMs + 15000);
hardStop.unref();

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-default-apps',
      '--disable-extensions',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  const page = await browser.newPage();
  await page.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    if (host === '127.0.0.1' || host === 'localhost') return route.continue();
    result.blocked.push(route.request().url());
    return route.abort();
  });
  page.on('pageerror', (e) => result.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (result.console.length < 50) result.console.push(`${m.type()}: ${m.text()}`);
  });
  await page.goto(pageUrl, { timeout: 20000 });
  while (Date.now() - started < timeoutMs) {
    const s = await page.evaluate(() => {
      const v = document.querySelector('video');
      return {
        t: v ? v.currentTime : null,
        w: v ? v.videoWidth : 0,
        h: v ? v.videoHeight : 0,
        errors: window.__player_errors || [],
        mediaError: v && v.error ? `${v.error.code} ${v.error.message}` : null,
      };
    });
    result.currentTime = s.t;
    result.videoWidth = s.w;
    result.videoHeight = s.h;
    result.errors = result.errors.filter((e) => e.startsWith('pageerror')).concat(s.errors);
    if (s.mediaError) result.errors.push(`video.error ${s.mediaError}`);
    if (result.errors.length) {
      result.why = 'player error';
      break;
    }
    if (s.t > 0 && result.startTime === null) result.startTime = s.t;
    if (result.startTime !== null) result.advanced = s.t - result.startTime;
    if (result.advanced >= want) {
      result.ok = result.blocked.length === 0;
      if (!result.ok) result.why = 'requests to non-loopback hosts';
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  if (!result.ok && !result.why) result.why = `currentTime advanced ${result.advanced.toFixed(2)} s in ${timeoutMs} ms, want ${want} s`;
  await finish(browser, result.ok ? 0 : 1);
} catch (e) {
  result.why = `exception: ${e && e.stack ? e.stack : e}`;
  await finish(browser, 2);
}
