// Walks serin demo's dashboard in Debian's chromium, as a person would: the list shows
// the release, its page draws canary and primary from real Prometheus data, approving
// the waiting gate moves the release on. Screenshots of each page go to ARTIFACTS.
// Usage: node walk.mjs URL ARTIFACTS   (run by e2e/dashboard.rs)
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [url, artifacts] = process.argv.slice(2);
if (!url || !artifacts) {
  console.error("usage: node walk.mjs URL ARTIFACTS");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const shot = (page, name) => page.screenshot({ path: join(artifacts, name + ".png"), fullPage: true });
const step = (what) => console.log(new Date().toISOString() + " " + what);

const browser = await chromium.launch({
  executablePath: process.env.SERIN_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("requestfailed", (r) => {
    // The event stream is cut when the page navigates or closes; anything else counts.
    if (!r.url().endsWith("/api/changes")) problems.push("request failed: " + r.url());
  });

  step("open the list");
  await page.goto(url);
  const row = page.locator('tr[data-test=row][data-name="demo/podinfo"]');
  await row.waitFor({ timeout: 60_000 });
  await page.locator("#live.on").waitFor({ timeout: 10_000 });
  await shot(page, "1-list");

  step("the list at phone width");
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error("the list overflows a phone-width screen by " + overflow + "px");
  await shot(page, "2-list-phone");
  await page.setViewportSize({ width: 1280, height: 900 });

  step("open the release page");
  await row.locator("a").click();
  await page.waitForURL(/#\/demo\/podinfo$/);
  step("wait for charts of canary and primary with at least 3 points each");
  await page.waitForFunction(() => [...document.querySelectorAll(".chart[data-canary-points]")]
    .some((c) => +c.dataset.canaryPoints >= 3 && +c.dataset.primaryPoints >= 3), null, { timeout: 120_000 });
  // The lines are on the canvas: count pixels in the canary's and the primary's colours.
  const drawn = await page.evaluate(() => {
    const chart = [...document.querySelectorAll(".chart[data-canary-points]")]
      .find((c) => +c.dataset.canaryPoints >= 3 && +c.dataset.primaryPoints >= 3);
    const canvas = chart.querySelector("canvas");
    const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let canary = 0, primary = 0;
    for (let i = 0; i < px.length; i += 4) {
      const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
      if (a < 128) continue;
      if (r > 190 && g > 50 && g < 110 && b < 60) canary++; // #d9480f
      if (r < 70 && g > 60 && g < 120 && b > 180) primary++; // #2457d6
    }
    return { metric: chart.dataset.metric, canary, primary };
  });
  step("drawn: " + JSON.stringify(drawn));
  if (drawn.canary < 20 || drawn.primary < 20) throw new Error("series not drawn: " + JSON.stringify(drawn));

  step("wait for the gate before promotion");
  const approve = page.locator("button[data-verb=approve]");
  await approve.waitFor({ timeout: 180_000 });
  await shot(page, "3-release-waiting");
  await approve.click();
  const question = await page.locator("#confirm-text").textContent();
  step("asked: " + question);
  if (!/gate beforePromotion of revision \S+ at step \d+ of demo\/podinfo/.test(question)) {
    throw new Error("the confirmation does not name the exact gate passage: " + question);
  }
  await shot(page, "4-confirm");
  await page.locator("#confirm-yes").click();
  const outcome = page.locator("[data-test=outcome]");
  await outcome.waitFor({ timeout: 15_000 });
  const said = await outcome.textContent();
  step("outcome: " + said);
  if (!/approved by demo-user/.test(said)) throw new Error("approval not recorded: " + said);

  step("the release moves on");
  await page.waitForFunction(() => {
    const p = document.querySelector("h2 [data-test=phase]");
    return p && ["Promoting", "Succeeded"].includes(p.textContent);
  }, null, { timeout: 90_000 });
  await page.locator("#timeline li.approval", { hasText: "approved by demo-user via dashboard" })
    .waitFor({ timeout: 10_000 });
  await shot(page, "5-release-promoted");

  step("the release page at phone width");
  await page.setViewportSize({ width: 390, height: 844 });
  const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (over > 1) throw new Error("the release page overflows a phone-width screen by " + over + "px");
  await shot(page, "6-release-phone");
  if (problems.length) throw new Error("the page reported problems:\n" + problems.join("\n"));
  step("done");
} catch (e) {
  failed = true;
  console.error("FAILED: " + (e && e.stack ? e.stack : e));
  if (problems.length) console.error(problems.join("\n"));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
