"""The web console in a real browser: headless Debian Chromium driven by selenium.

The node serves /console/; the page loads a key file, signs every call itself and checks
receipts itself. A small proxy in front of the node can alter receipts on their way to the page,
which must then say "not verified". A failing test leaves a screenshot (conftest.py SHOTS).
"""

import base64
import http.client
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import c2sp_spec as spec
import pytest
from conftest import Server, free_port, init_ledger, new_uuid
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import checkpoint, cosignature

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMEDRIVER), reason="needs Debian's chromium-driver")
#: Where the closing note's screenshots go (set CONSOLE_NOTE_SHOTS; none by default).
NOTE_SHOTS = os.environ.get("CONSOLE_NOTE_SHOTS")
KEYS = {"everything": "admin,analytics,viewer,compute,auditor", "viewer": "viewer", "auditor": "auditor"}


class Tamper(ThreadingHTTPServer):
    """An HTTP proxy in front of the node that can alter receipts on their way (`mode`)."""

    daemon_threads = True

    def __init__(self, port: int, upstream: int) -> None:
        self.upstream = upstream
        self.mode: str | None = None  # None, "proof" or "checkpoint"
        super().__init__(("127.0.0.1", port), _Forward)


def _altered(receipt: bytes, mode: str) -> bytes:
    """The receipt with one bit flipped in its first proof hash, or in its checkpoint's root."""
    head, _, note = receipt.decode().partition("\n\n")
    if mode == "proof":
        lines = head.split("\n")
        at = next(i for i, line in enumerate(lines) if i > 1 and not line.startswith(("extra ", "index ")))
        raw = bytearray(base64.b64decode(lines[at]))
        raw[0] ^= 1
        lines[at] = base64.b64encode(bytes(raw)).decode()
        head = "\n".join(lines)
    else:
        body = note.split("\n")
        raw = bytearray(base64.b64decode(body[2]))
        raw[0] ^= 1
        body[2] = base64.b64encode(bytes(raw)).decode()
        note = "\n".join(body)
    return (head + "\n\n" + note).encode()


class _Forward(BaseHTTPRequestHandler):
    server: Tamper
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=90)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "connection"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        if self.server.mode and self.path.startswith("/ledger/receipts/") and answer.status == 200:
            data = _altered(data, self.server.mode)
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = _forward


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Tamper]]:
    """A node that also answers to the address of the tampering proxy in front of it."""
    data_dir = tmp_path_factory.mktemp("console") / "data"
    init_ledger(data_dir, KEYS)
    port, proxy_port = free_port(), free_port()
    srv = Server(data_dir, port, args=("--public-url", f"http://127.0.0.1:{port}",
                                       "--public-url", f"http://127.0.0.1:{proxy_port}"))
    srv.start()
    proxy = Tamper(proxy_port, port)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield srv, proxy
    proxy.shutdown()
    proxy.server_close()
    srv.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chromium: WebDriver) -> WebDriver:
    """The browser, for one test (the screenshot hook in conftest.py looks for this name)."""
    return chromium


def wait(browser: WebDriver, condition, seconds: float = 20, what: str = ""):  # type: ignore[no-untyped-def]
    try:
        return WebDriverWait(browser, seconds, poll_frequency=0.1).until(lambda d: condition())
    except TimeoutException as e:
        raise AssertionError(f"not seen within {seconds} s: {what}") from e


def text_of(browser: WebDriver, css: str) -> str:
    """The text of the first element matching css ("" when none; the page redraws as entries come)."""
    try:
        found = browser.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def click(browser: WebDriver, css: str) -> None:
    """Click the element matching css, once it is there (found again if the page redrew it)."""

    def clicked() -> bool:
        try:
            found = browser.find_elements(By.CSS_SELECTOR, css)
            if found:
                found[0].click()
            return bool(found)
        except StaleElementReferenceException:
            return False

    wait(browser, clicked, what=f"{css} to click")


def open_console(browser: WebDriver, srv: Server, key: str, *, url: str | None = None) -> None:
    browser.get((url or srv.url) + "/console/")
    wait(browser, lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1",
         what="the page's script started")
    browser.find_element(By.ID, "key-file").send_keys(str(srv.data_dir / "keys" / f"{key}.pem"))
    assert browser.find_element(By.ID, "key-id").get_attribute("value") == key  # from the file name
    browser.find_element(By.ID, "key-use").click()
    wait(browser, lambda: browser.find_element(By.ID, "key-status").get_attribute("data-loaded") == key,
         what="the key loaded")


def tab(browser: WebDriver, view: str) -> None:
    browser.find_element(By.CSS_SELECTOR, f'#tabs button[data-view="{view}"]').click()


def submit(browser: WebDriver, action: str, **fields: str) -> str:
    """Fill and send one of the Actions forms; the text of what the page shows as the outcome."""
    tab(browser, "actions")
    for name, value in fields.items():
        field = browser.find_element(By.CSS_SELECTOR, f'#form-{action} input[name="{name}"]')
        field.clear()
        field.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, f'#form-{action} button[type="submit"]').click()
    wait(browser, lambda: text_of(browser, f"#result-{action}") not in ("", "sending…"), what=f"{action} answered")
    return text_of(browser, f"#result-{action}")


def check_entry(browser: WebDriver, seq: int) -> str:
    tab(browser, "ledger")
    click(browser, f'button.check[data-seq="{seq}"]')
    wait(browser, lambda: text_of(browser, "#entry-verdict").startswith(("verified", "not verified")),
         what=f"entry {seq} checked")
    return text_of(browser, "#entry-verdict")


def test_the_console_loads_a_key_and_shows_who_it_is(browser: WebDriver, node: tuple[Server, Tamper]) -> None:
    srv, _ = node
    open_console(browser, srv, "everything")
    assert text_of(browser, "#key-status") == "Key everything: admin, analytics, auditor, compute, viewer"
    tab(browser, "members")
    wait(browser, lambda: "viewer" in text_of(browser, "#view-members table"), what="the members table")
    assert "auditor" in text_of(browser, "#view-members table")


def test_a_problem_made_in_the_form_shows_its_learnuplets_once_an_algo_comes_elsewhere(
    browser: WebDriver, node: tuple[Server, Tamper]
) -> None:
    srv, _ = node
    open_console(browser, srv, "everything")
    problem = new_uuid()
    outcome = submit(browser, "problem", uuid=problem, workflow=new_uuid(), test_dataset="", size_train_dataset="1")
    assert outcome.startswith("accepted, entry"), outcome
    tab(browser, "platform")
    row = f'#panel-problem tr[data-uuid="{problem}"]'
    click(browser, row)
    wait(browser, lambda: "No algo for this problem yet" in text_of(browser, "#chain"), what="the empty chain")

    client = srv.client("everything")  # elsewhere: the stock signing client, not the page
    client.add_data([new_uuid(), new_uuid()], problem)
    algo = new_uuid()
    client.add_algo(algo, "linear", problem)
    chain = f'#chain div.algo[data-algo="{algo}"] tbody tr'
    wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, chain)) == 2,
         what="the algo's learnuplet chain, without a reload")
    first = text_of(browser, chain)
    assert first.startswith("0 todo"), first

    uplets = list(client.find_all("learnuplet", algo=algo))
    first_uplet = min(uplets, key=lambda u: u["rank"])
    outcome = submit(browser, "claim", learnuplet=first_uplet["uuid"], worker=new_uuid())
    assert outcome.startswith("accepted"), outcome
    outcome = submit(browser, "learndone", learnuplet=first_uplet["uuid"], status="done", perf="0.75",
                     train_perf="[0.7]", test_perf="[]")
    assert outcome.startswith("accepted"), outcome
    tab(browser, "platform")
    wait(browser, lambda: text_of(browser, chain).startswith("0 done 0.75"), what="the reported perf")
    second = max(uplets, key=lambda u: u["rank"])["uuid"]  # todo now; a worker elsewhere takes it
    assert client.post(f"/worker/learnuplet/{second}", {"worker": new_uuid()}).status_code == 200
    done = {"status": "done", "perf": 0.82, "train_perf": [0.8], "test_perf": []}
    assert client.post(f"/learndone/{second}", done).status_code == 200
    points = f'#chain div.algo[data-algo="{algo}"] svg circle'
    wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, points)) == 2, what="the chart's two points")
    assert text_of(browser, f'{chain}:nth-child(2)').startswith("1 done 0.82")
    if NOTE_SHOTS:
        Path(NOTE_SHOTS).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(NOTE_SHOTS) / "learnuplet-chain.png"))


def test_an_entry_opened_in_the_ledger_view_is_verified_in_the_page(
    browser: WebDriver, node: tuple[Server, Tamper]
) -> None:
    srv, _ = node
    client = srv.client("everything")
    seq = client.add_problem(new_uuid(), new_uuid(), [], 1)["receipt"]["seq"]
    client.add_problem(new_uuid(), new_uuid(), [], 1)  # the entry is not the tree's last
    open_console(browser, srv, "everything")
    verdict = check_entry(browser, seq)
    assert verdict.startswith("verified"), verdict
    wait(browser, lambda: text_of(browser, "#checkpoint-verdict").startswith("verified"), what="checkpoint checked")
    assert "node signature" in text_of(browser, "#ledger-checkpoint table")
    if NOTE_SHOTS:
        browser.save_screenshot(str(Path(NOTE_SHOTS) / "verified-entry.png"))
    verdict = check_entry(browser, 0)  # the genesis
    assert verdict.startswith("verified"), verdict


@pytest.mark.parametrize(("mode", "reason"), [
    ("proof", "not verified: the inclusion proof does not lead to the checkpoint's root"),
    ("checkpoint", "not verified: the checkpoint signature by"),
])
def test_a_receipt_altered_on_its_way_is_not_verified(
    browser: WebDriver, node: tuple[Server, Tamper], mode: str, reason: str
) -> None:
    srv, proxy = node
    client = srv.client("everything")
    seq = client.add_problem(new_uuid(), new_uuid(), [], 1)["receipt"]["seq"]
    client.add_problem(new_uuid(), new_uuid(), [], 1)
    through = f"http://127.0.0.1:{proxy.server_address[1]}"
    open_console(browser, srv, "everything", url=through)
    assert check_entry(browser, seq).startswith("verified")  # the proxy alone changes nothing
    proxy.mode = mode
    try:
        verdict = check_entry(browser, seq)
    finally:
        proxy.mode = None
    assert verdict.startswith(reason), verdict


def test_a_key_without_the_role_sees_the_servers_refusal(browser: WebDriver, node: tuple[Server, Tamper]) -> None:
    srv, _ = node
    open_console(browser, srv, "viewer")
    tab(browser, "actions")
    assert "your key lacks it" in text_of(browser, "#action-problem legend")
    outcome = submit(browser, "problem", uuid=new_uuid(), workflow=new_uuid(), test_dataset="", size_train_dataset="1")
    assert outcome.startswith('403: {"title":"Forbidden","description":'), outcome
    assert "admin" in outcome
    tab(browser, "ledger")  # the viewer is no auditor either
    wait(browser, lambda: text_of(browser, "#ledger-checkpoint").startswith("Checkpoint\n403:"),
         what="the checkpoint's 403")


def test_a_form_refuses_what_it_can_tell_is_wrong_without_sending(
    browser: WebDriver, node: tuple[Server, Tamper]
) -> None:
    srv, _ = node
    open_console(browser, srv, "everything")
    size = srv.head()["size"]
    outcome = submit(browser, "problem", uuid="not-a-uuid", workflow=new_uuid(), size_train_dataset="1")
    assert outcome == 'not sent: uuid: "not-a-uuid" is not a uuid'
    outcome = submit(browser, "algo", uuid=new_uuid(), name="x", problem=new_uuid())
    assert outcome.startswith('400: {"title":"Bad Request"'), outcome  # the server's word: no such problem
    assert srv.head()["size"] == size


def test_the_document_view_shows_a_document_and_its_history(browser: WebDriver, node: tuple[Server, Tamper]) -> None:
    srv, _ = node
    client = srv.client("everything")
    problem, algo = new_uuid(), new_uuid()
    client.add_problem(problem, new_uuid(), [], 1)
    client.add_data(new_uuid(), problem)
    client.add_algo(algo, "history", problem)
    uplet = next(iter(client.find_all("learnuplet", algo=algo)))["uuid"]
    claimed = client.post(f"/worker/learnuplet/{uplet}", {"worker": new_uuid()}).json()["receipt"]["seq"]
    done = {"status": "done", "perf": 0.5, "train_perf": [0.5], "test_perf": []}
    assert client.post(f"/learndone/{uplet}", done).status_code == 200

    open_console(browser, srv, "everything")
    tab(browser, "document")
    Select(browser.find_element(By.ID, "doc-collection")).select_by_visible_text("learnuplet")
    browser.find_element(By.ID, "doc-uuid").send_keys(uplet)
    browser.find_element(By.CSS_SELECTOR, '#doc-form button[type="submit"]').click()
    wait(browser, lambda: '"status": "done"' in text_of(browser, "#doc-json"), what="the document")
    # A node without the history endpoint (GET /{collection}/{uuid}/history): its error shows as it came.
    wait(browser, lambda: text_of(browser, "#doc-history").startswith("History"), what="the history part")
    history = text_of(browser, "#doc-history")
    if history.startswith("History\n404:"):
        assert '"title":"Not Found"' in history
        return
    wait(browser, lambda: "checking" not in text_of(browser, "#doc-history"), what="history proofs checked")
    history = text_of(browser, "#doc-history")
    assert history.startswith("History (3 versions)"), history
    assert history.count("verified: in the tree") == 3, history
    at = browser.find_element(By.ID, "doc-at")
    at.send_keys(str(claimed))
    browser.find_element(By.CSS_SELECTOR, '#doc-form button[type="submit"]').click()
    wait(browser, lambda: '"status": "pending"' in text_of(browser, "#doc-json"), what="the version as of the claim")


def in_page(browser: WebDriver, node: tuple[Server, Tamper], body: str, *args: object) -> object:
    """Run `body` (an async function body given `v`, the page's verify.js, and `args`) in the page."""
    srv, _ = node
    if not browser.current_url.startswith(srv.url + "/console"):
        browser.get(srv.url + "/console/")
    script = (
        "const done = arguments[arguments.length - 1]; const args = Array.from(arguments).slice(0, -1);"
        "import('/console/verify.js').then(async (v) => { " + body + " })"
        ".then(done, (e) => done('error: ' + e.message));"
    )
    browser.set_script_timeout(60)
    return browser.execute_async_script(script, *args)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_pages_inclusion_check_agrees_with_rfc_9162_for_every_index_of_small_trees(
    browser: WebDriver, node: tuple[Server, Tamper]
) -> None:
    cases = []
    for size in range(1, 21):
        leaves = [spec.leaf(bytes([size, i])) for i in range(size)]
        root = spec.mth(leaves)
        for index in range(size):
            cases.append([index, size, b64(leaves[index]), [b64(p) for p in spec.inclusion(index, leaves)], b64(root)])
    failures = in_page(browser, node, """
        const d = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
        const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
        const bad = [];
        for (const [index, size, leaf, proof, root] of args[0]) {
            const path = proof.map(d);
            const got = await v.rootFromInclusion(index, size, d(leaf), path);
            if (!same(got, d(root))) bad.push(`${index}/${size}: wrong root`);
            if (path.length) {
                const flipped = path.map((p, i) => (i === 0 ? Uint8Array.from(p, (x, j) => (j === 0 ? x ^ 1 : x)) : p));
                const got2 = await v.rootFromInclusion(index, size, d(leaf), flipped);
                if (same(got2, d(root))) bad.push(`${index}/${size}: a flipped proof passed`);
                let refused = false;
                try { await v.rootFromInclusion(index, size, d(leaf), path.slice(1)); } catch { refused = true; }
                if (!refused) bad.push(`${index}/${size}: a short proof passed`);
            }
        }
        return bad;""", cases)
    assert failures == [], failures


def test_the_page_checks_a_checkpoints_signature_and_its_witness_cosignatures(
    browser: WebDriver, node: tuple[Server, Tamper]
) -> None:
    node_key, witness_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    origin = "example.test/log"
    note = checkpoint.sign(checkpoint.Checkpoint(origin, 5, bytes(range(32)), bytes(32)), node_key)
    body = note.partition("\n\n")[0] + "\n"
    witness = cosignature.WitnessKey("witness.test/w1", witness_key.public_key())
    cosigned = note + cosignature.cosign(body, witness.name, witness_key, 1_700_000_000).line()
    forged = cosigned[:-6] + ("A" if cosigned[-6] != "A" else "B") + cosigned[-5:]
    vkey = checkpoint.vkey(origin, node_key.public_key())
    check = """
        const [note, vkey, witnesses] = args;
        try {
            const keys = await Promise.all(witnesses.map((w) => v.parseVkey(w, 0x04)));
            const { checkpoint, signatures } = await v.checkCheckpoint(note, await v.parseVkey(vkey, 0x01), keys);
            return signatures.map((s) => `${s.name} ${s.kind} ${s.verified}${s.time ? " " + s.time : ""}`)
                .concat([`size ${checkpoint.size}`]);
        } catch (e) { return `not verified: ${e.message}`; }"""
    assert in_page(browser, node, check, cosigned, vkey, [witness.vkey()]) == [
        f"{origin} node signature true", "witness.test/w1 cosignature true 1700000000", "size 5"]
    assert in_page(browser, node, check, cosigned, vkey, []) == [  # no key for the witness: shown, not checked
        f"{origin} node signature true", "witness.test/w1 cosignature null 1700000000", "size 5"]
    assert in_page(browser, node, check, forged, vkey, [witness.vkey()]) == (
        "not verified: the cosignature by witness witness.test/w1 does not verify")
    other = checkpoint.vkey(origin, Ed25519PrivateKey.generate().public_key())
    assert in_page(browser, node, check, cosigned, other, []) == (
        f"not verified: the checkpoint carries no signature by {origin}")
    altered = cosigned.replace("\n5\n", "\n6\n", 1)
    assert in_page(browser, node, check, altered, vkey, []) == (
        f"not verified: the checkpoint signature by {origin} does not verify")
