"""Operating a real worker: /metrics, ``streamrec lag``, /model, JSON logs, and /dashboard
rendered in headless Chromium, all against a real broker and a real worker process."""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stream_app.kafka_io import ensure_topics
from stream_app.settings import settings_to_env
from tests.conftest import event, produce, wait_ready
from tests.test_deploy import deploy_metric_names, exposed_metric_names

pytestmark = pytest.mark.integration
NOW = time.time() - 3600
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _get(settings, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{settings.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _offsets_from_metrics(exposition: str, group: str) -> dict[tuple[str, int], dict]:
    """Per partition: committed, end and lag as /metrics reports them."""
    from prometheus_client.parser import text_string_to_metric_families

    rows: dict[tuple[str, int], dict] = {}
    fields = {
        "kafka_consumergroup_current_offset": "committed",
        "kafka_topic_partition_current_offset": "end",
        "kafka_consumergroup_lag": "lag",
    }
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in fields and sample.labels.get("consumergroup", group) == group:
                key = (sample.labels["topic"], int(sample.labels["partition"]))
                rows.setdefault(key, {})[fields[sample.name]] = int(sample.value)
    return rows


def _streamrec_lag(settings) -> dict:
    """``streamrec lag --json`` as an operator runs it, configured from the environment."""
    result = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "lag", "--json"],
        env={**os.environ, **settings_to_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def _by_partition(doc: dict) -> dict[tuple[str, int], dict]:
    return {(p["topic"], p["partition"]): p for p in doc["partitions"]}


def test_lag_command_and_metrics_agree_with_a_real_worker(make_settings, start_worker, catalog):
    # 15 events per user below: a history is embedded from its 5th event here (default 20).
    settings = make_settings(
        text_encoder="hashing", top_k=5, log_format="json", long_term_refresh_events=5
    )
    ensure_topics(settings)
    produce(settings, settings.topic_catalog, catalog, "item_id")
    items = [c["item_id"] for c in catalog]
    events = [
        event(f"ev{n}", f"user{n % 20}", items[n % len(items)], NOW + n, "click")
        for n in range(300)
    ]
    produce(settings, settings.topic_events, events, "user_id")

    # Before any worker ran, nothing is committed: lag counts from the log start.
    before = _streamrec_lag(settings)
    assert before["group"] == settings.app_id  # Faust's consumer group id is the app id
    rows = _by_partition(before)
    assert len(rows) == 2 * settings.partitions
    assert all(p["committed"] is None and p["lag"] == p["end"] for p in rows.values())
    events_lag = sum(p["lag"] for (topic, _), p in rows.items() if topic == settings.topic_events)
    assert events_lag == len(events)
    assert before["total_lag"] == len(events) + len(catalog)

    worker = start_worker(settings)
    wait_ready(settings, worker)
    deadline = time.monotonic() + 120
    while True:  # until the worker has processed and committed everything
        status, text = _get(settings, "/metrics")
        assert status == 200
        from_metrics = _offsets_from_metrics(text, settings.app_id)
        caught_up = len(from_metrics) == len(rows) and all(
            r.get("lag") == 0 and r.get("committed") == r.get("end") for r in from_metrics.values()
        )
        if caught_up or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert caught_up, from_metrics

    after = _by_partition(_streamrec_lag(settings))
    assert after.keys() == from_metrics.keys()
    for key, row in after.items():
        assert (row["committed"], row["end"], row["lag"]) == (
            from_metrics[key]["committed"],
            from_metrics[key]["end"],
            0,
        ), key
    assert sum(r["end"] for (t, _), r in after.items() if t == settings.topic_events) == 300

    # Every metric the dashboards, alerts and autoscaler query is exposed by this worker
    # (the long-term refresh timestamp appears once the periodic merge has run).
    deadline = time.monotonic() + 60
    while True:
        text = _get(settings, "/metrics")[1]
        missing = deploy_metric_names() - exposed_metric_names(text)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not missing, f"used under deploy/, absent from a real worker: {sorted(missing)}"
    assert "streamrec_events_in_total 300.0" in text
    assert 'streamrec_device_info{device="cpu",kind="cpu"} 1.0' in text

    status, body = _get(settings, "/model")
    model = json.loads(body)
    assert status == 200
    assert model["model_version"].startswith("streamrec-interest/")
    assert model["text_encoder"]["name"] == "hashing-256"
    assert model["device"] == "cpu" and model["catalog_items"] == len(catalog)
    assert model["refreshes"]["long_term"]["runs"] >= 1

    # STREAMREC_LOG_FORMAT=json: one JSON object per line; no catalog text, no events.
    lines = [line for line in worker.log().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message"} <= records[0].keys()
    logged = worker.log()
    assert "Nightmare" not in logged and "Party" not in logged  # catalog titles
    assert not any(f'"ev{n}"' in logged or f"ev{n} " in logged for n in range(300))


# -- the dashboard in a real browser ---------------------------------------------------------


def _chromium() -> str | None:
    candidates = [os.environ.get("STREAMREC_CHROMIUM", "")]
    candidates += ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
    return next((path for c in candidates if c and (path := shutil.which(c))), None)


class DevToolsPage:
    """Headless Chromium driven over the DevTools protocol (aiohttp's websocket client)."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1300) -> None:
        self.binary, self.width, self.height = binary, width, height
        self._profile = tempfile.mkdtemp(prefix="streamrec-chromium-")
        self._ids = iter(range(1, 1_000_000))

    async def __aenter__(self) -> "DevToolsPage":
        import aiohttp

        # Flags from this machine's notes: no sandbox as root, no background networking.
        self._proc = subprocess.Popen(
            [
                self.binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={self._profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert self._proc.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium opened no DevTools port"
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._ws.close()
        await self._session.close()
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        shutil.rmtree(self._profile, ignore_errors=True)

    async def call(self, method: str, **params):
        message_id = next(self._ids)
        await self._ws.send_json({"id": message_id, "method": method, "params": params})
        async for message in self._ws:
            reply = json.loads(message.data)
            if reply.get("id") == message_id:
                assert "error" not in reply, reply
                return reply["result"]
        raise ConnectionError("DevTools connection closed")

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


# What the page shows, read from its own state and from the pixels it drew.
DASHBOARD_STATE = """(() => {
  const d = window.streamrecDashboard;
  if (!d) return null;
  const ink = (key, series) => {  // pixels drawn in that series' colour
    const chart = d.charts[key], canvas = chart.canvas;
    const hex = chart.color(series), rgb = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (rgb.every((c, k) => Math.abs(data[i + k] - c) < 40) && data[i + 3] > 128) n++;
    }
    return n;
  };
  const text = id => document.getElementById(id).textContent;
  return {
    samples: d.samples.length,
    maxLag: Math.max(0, ...d.samples.map(s => s.d.lag.total || 0)),
    drawn: Object.fromEntries(Object.entries(d.charts).map(([k, c]) => [k, c.drawn])),
    ink: {lag: ink("lag", "total"), eventsIn: ink("throughput", "events in"),
          p95: ink("latency", "p95")},
    tiles: {lag: text("tile-lag"), eventsIn: text("tile-in"), p95: text("tile-p95"),
            device: text("tile-device"), status: text("status")},
  };
})()"""


def _dashboard_moving(state) -> bool:
    return bool(
        state
        and state["samples"] >= 10
        and state["maxLag"] > 0
        and state["drawn"]["throughput"]["max"] > 0
        and state["drawn"]["latency"]["series"].get("p95", 0) > 0
        and state["drawn"]["dead"]["series"]
    )


def test_dashboard_shows_lag_and_throughput_moving_in_headless_chromium(
    make_settings, start_worker, catalog, tmp_path
):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no headless Chromium (Debian: apt-get install chromium)")
    settings = make_settings(text_encoder="hashing", top_k=5)
    ensure_topics(settings)
    produce(settings, settings.topic_catalog, catalog, "item_id")
    worker = start_worker(settings)
    wait_ready(settings, worker)
    items = [c["item_id"] for c in catalog]
    stop = threading.Event()

    def keep_producing() -> None:  # bursts, so the lag between commits is visible
        n = 0
        while not stop.is_set() and n < 20_000:
            burst = [
                event(f"d{m}", f"viewer{m % 30}", items[m % len(items)], NOW + m)
                for m in range(n, n + 150)
            ]
            bad = [(b"viewer1", b"{not json")] if n % 600 == 0 else []
            produce(settings, settings.topic_events, burst, "user_id")
            if bad:
                produce(settings, settings.topic_events, bad)
            n += len(burst)
            stop.wait(0.5)

    producer = threading.Thread(target=keep_producing, daemon=True)
    producer.start()

    async def watch() -> dict:
        async with DevToolsPage(chromium) as page:
            await page.call("Page.navigate", url=f"http://127.0.0.1:{settings.web_port}/dashboard")
            deadline = time.monotonic() + 120
            state = None
            while time.monotonic() < deadline:
                state = await page.evaluate(DASHBOARD_STATE)
                if _dashboard_moving(state):
                    break
                await asyncio.sleep(1)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(tmp_path / "dashboard.png")
            shutil.copy(tmp_path / "dashboard.png", ARTIFACTS / "dashboard.png")
            return state

    try:
        state = asyncio.run(watch())
    finally:
        stop.set()
        producer.join(30)
    assert _dashboard_moving(state), state
    assert all(count > 20 for count in state["ink"].values()), state["ink"]
    assert state["drawn"]["lag"]["points"] > 0
    assert state["tiles"]["lag"] != "–" and state["tiles"]["eventsIn"] != "–"
    assert state["tiles"]["p95"].endswith("s") and state["tiles"]["device"] == "cpu (cpu)"
    assert state["tiles"]["status"] == "ready"
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
