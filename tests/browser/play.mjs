// Plays a media URL of a running spate in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser is ever
// downloaded) with hls.js, dash.js or mpegts.js, and checks that
// video.currentTime advances.
//
//   node play.mjs ORIGIN PLAYER SRC SECONDS TIMEOUT_SECONDS [QUERY]
//
// ORIGIN is the server, e.g. http://127.0.0.1:20123. PLAYER is hls, dash or
// mpegts; SRC the media URL, usually a path on ORIGIN (/hls/x/index.m3u8).
// QUERY (optional) is appended to the page's query string, e.g.
// "type=flv&live=1" for mpegts.js.
//
// The page (play.html) and the player libraries are answered by playwright
// itself for ORIGIN/__test/* (from this directory and node_modules), so the
// page, the libraries and the media share the server's origin and nothing
// needs copying into the server's root. ORIGIN/__test/time answers the
// current time (ISO 8601): dash.js's fallback clock source, used only when
// the MPD has no <UTCTiming>; its hits are counted in `timeFallbackHits`.
// Every request to a host other than 127.0.0.1/localhost is aborted and
// fails the run.
//
// Pass: currentTime advances by >= SECONDS from when it first moves, with no
// fatal player error (hls.js Hls.Events.ERROR with fatal, any dash.js
// 'error'/'playbackError', any mpegts.js ERROR), no video.error, no page
// error, and no blocked request. Prints one JSON line; exits 0 on pass.
import { chromium } from 'playwright-core';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [origin, player, src, secondsArg, timeoutArg, extraQuery] = process.argv.slice(2);
if (!origin || !player || !src) {
  console.error('usage: node play.mjs ORIGIN hls|dash|mpegts SRC SECONDS TIMEOUT_SECONDS [QUERY]');
  process.exit(64);
}
const want = Number(secondsArg || 6);
const timeoutMs = Number(timeoutArg || 60) * 1000;
const started = Date.now();

// What /__test/<name> serves.
const LIBS = {
  'play.html': [join(here, 'play.html'), 'text/html; charset=utf-8'],
  'hls.js': [join(here, 'node_modules/hls.js/dist/hls.min.js'), 'text/javascript'],
  'dash.js': [join(here, 'node_modules/dashjs/dist/modern/umd/dash.all.min.js'), 'text/javascript'],
  'mpegts.js': [join(here, 'node_modules/mpegts.js/dist/mpegts.js'), 'text/javascript'],
};

const result = {
  ok: false,
  player,
  src,
  advanced: 0,
  currentTime: null,
  startTime: null,
  videoWidth: 0,
  videoHeight: 0,
  errors: [],
  warnings: [],
  events: [],
  blocked: [],
  timeFallbackHits: 0,
  requests: [],
  console: [],
  why: '',
  elapsedMs: 0,
};

const print = () => {
  result.elapsedMs = Date.now() - started;
  console.log(JSON.stringify(result));
};

const finish = async (browser, code) => {
  if (browser) await browser.close().catch(() => {});
  print();
  process.exit(code);
};

const hardStop = setTimeout(() => {
  result.why = `hard timeout ${timeoutMs + 15000} ms`;
  print();
  process.exit(3);
}, timeoutMs + 15000);
hardStop.unref();

const isLoopback = (host) => host === '127.0.0.1' || host === 'localhost' || host === '[::1]' || host === '::1';

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
  await page.route('**/*', async (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === 'blob:' || url.protocol === 'data:') return route.continue();
    if (!isLoopback(url.hostname)) {
      result.blocked.push(url.href);
      return route.abort();
    }
    if (!url.pathname.startsWith('/__test/')) return route.continue();
    const name = url.pathname.slice('/__test/'.length);
    if (name === 'time') {
      result.timeFallbackHits += 1;
      return route.fulfill({
        status: 200,
        headers: { 'content-type': 'text/plain', 'access-control-allow-origin': '*' },
        body: new Date().toISOString(),
      });
    }
    const lib = LIBS[name];
    if (!lib) return route.fulfill({ status: 404, body: `play.mjs has no /__test/${name}` });
    try {
      return route.fulfill({ status: 200, headers: { 'content-type': lib[1] }, body: await readFile(lib[0]) });
    } catch (e) {
      result.errors.push(`play.mjs cannot read ${lib[0]}: ${e.message}`);
      return route.fulfill({ status: 500, body: String(e) });
    }
  });
  page.on('response', (r) => {
    if (result.requests.length < 400 && !new URL(r.url()).pathname.startsWith('/__test/')) {
      result.requests.push(`${((Date.now() - started) / 1000).toFixed(2)} ${r.status()} ${r.request().method()} ${r.url()}`);
    }
  });
  page.on('requestfailed', (r) => {
    if (result.requests.length < 400) result.requests.push(`${((Date.now() - started) / 1000).toFixed(2)} FAILED ${r.url()} ${r.failure() && r.failure().errorText}`);
  });
  page.on('pageerror', (e) => result.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (result.console.length < 80) result.console.push(`${m.type()}: ${m.text()}`.slice(0, 500));
  });
  const query = new URLSearchParams({ player, src });
  const pageUrl = `${origin}/__test/play.html?${query}${extraQuery ? `&${extraQuery}` : ''}`;
  await page.goto(pageUrl, { timeout: 20000 });
  const pageErrors = () => result.errors.filter((e) => e.startsWith('pageerror') || e.startsWith('play.mjs'));
  while (Date.now() - started < timeoutMs) {
    const s = await page.evaluate(() => {
      const v = document.querySelector('video');
      return {
        t: v ? v.currentTime : null,
        w: v ? v.videoWidth : 0,
        h: v ? v.videoHeight : 0,
        errors: window.__player_errors || [],
        warnings: window.__player_warnings || [],
        events: window.__player_events || [],
        mediaError: v && v.error ? `${v.error.code} ${v.error.message}` : null,
      };
    });
    result.currentTime = s.t;
    result.videoWidth = s.w;
    result.videoHeight = s.h;
    result.warnings = s.warnings;
    result.events = s.events;
    result.errors = pageErrors().concat(s.errors);
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
  if (!result.ok && !result.why) {
    result.why = `currentTime advanced ${result.advanced.toFixed(2)} s in ${timeoutMs} ms, want ${want} s`;
  }
  if (result.blocked.length && result.ok === false && result.why === 'player error') {
    result.why += ' (and requests to non-loopback hosts)';
  }
  await finish(browser, result.ok ? 0 : 1);
} catch (e) {
  result.why = `exception: ${e && e.stack ? e.stack : e}`;
  await finish(browser, 2);
}
